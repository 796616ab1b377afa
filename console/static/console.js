// awsfota console: live updates and a few conveniences. The pages work
// without this script; it adds Server-Sent Events, drag and drop, and
// "select all". No framework, no build step, nothing from another origin.
(() => {
  'use strict';

  // Live pages: the page's own URL, asked for as an event stream, sends the
  // parts of the page that changed, rendered (and escaped) by the server's
  // templates. They replace the elements with the same id; nothing a device
  // sent is ever interpreted as markup here.
  const main = document.querySelector('main[data-live]');
  const state = document.getElementById('live-state');
  const problem = document.getElementById('problem');
  const setState = (s, text) => {
    if (state) {
      state.dataset.state = s;
      state.textContent = text;
    }
  };
  if (main && 'EventSource' in window) {
    const label = state ? state.textContent : 'Live';
    const es = new EventSource(location.href);
    es.addEventListener('open', () => setState('live', label));
    es.addEventListener('error', () => setState('down', 'Reconnecting…'));
    es.addEventListener('patch', (ev) => {
      for (const p of JSON.parse(ev.data)) {
        const el = document.getElementById(p.id);
        if (!el) continue;
        const t = document.createElement('template');
        t.innerHTML = p.html;
        el.replaceWith(t.content);
      }
      document.body.dataset.patched = String(Number(document.body.dataset.patched || 0) + 1);
    });
    es.addEventListener('problem', (ev) => {
      const msg = JSON.parse(ev.data).message;
      if (!problem) return;
      problem.textContent = msg;
      problem.hidden = !msg;
    });
    window.addEventListener('pagehide', () => es.close());
  }

  // Drag and drop onto the upload zone fills the file input.
  for (const drop of document.querySelectorAll('[data-drop]')) {
    const input = drop.querySelector('input[type="file"]');
    const name = drop.querySelector('[data-file-name]');
    const show = () => {
      const f = input.files && input.files[0];
      if (name) name.textContent = f ? `${f.name} — ${size(f.size)}` : '';
    };
    input.addEventListener('change', show);
    for (const t of ['dragenter', 'dragover']) {
      drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add('over'); });
    }
    for (const t of ['dragleave', 'dragend', 'drop']) {
      drop.addEventListener(t, () => drop.classList.remove('over'));
    }
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      if (e.dataTransfer && e.dataTransfer.files.length) {
        input.files = e.dataTransfer.files;
        show();
      }
    });
  }

  // "Select all" for a list of checkboxes.
  for (const b of document.querySelectorAll('[data-select-all]')) {
    b.addEventListener('click', () => {
      const boxes = [...document.querySelectorAll(`input[type="checkbox"][name="${b.dataset.selectAll}"]`)];
      const all = boxes.every((x) => x.checked);
      for (const x of boxes) x.checked = !all;
      b.textContent = all ? 'Select all' : 'Select none';
    });
  }

  // A delete is confirmed by typing the job id: the button waits for it.
  for (const form of document.querySelectorAll('form[data-confirm]')) {
    const input = form.querySelector('input[name="confirm"]');
    const button = form.querySelector('button[type="submit"]');
    const check = () => { button.disabled = input.value !== form.dataset.confirm; };
    input.addEventListener('input', check);
    check();
  }

  function size(n) {
    if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
    if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
    return `${n} B`;
  }
})();

package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/mcuboot"
	"github.com/awsfota/awsfota/sim"
	"github.com/schollz/progressbar/v3"
)

// fleetView shows one line per device: a progress bar, what the device is
// doing and what the cloud sees. On a terminal the lines are redrawn in
// place; in a pipe each change is printed once, as a log line.
type fleetView struct {
	w     io.Writer
	tty   bool
	mu    sync.Mutex
	order []string
	rows  map[string]*deviceRow
	drawn int
	stopC chan struct{}
	done  chan struct{}
}

type deviceRow struct {
	bar    *progressbar.ProgressBar
	total  int64
	bytes  int64
	device string // what the device says it is doing
	cloud  string // the execution as the cloud sees it
	modem  string // the modem firmware at the last boot
	logged string
}

func newFleetView(w io.Writer, tty bool, things []string) *fleetView {
	v := &fleetView{w: w, tty: tty, rows: map[string]*deviceRow{}, order: things}
	width := 0
	for _, th := range things {
		width = max(width, len(th))
	}
	for _, th := range things {
		v.rows[th] = &deviceRow{device: "waiting for a job", cloud: "-",
			bar: progressbar.NewOptions64(1, progressbar.OptionSetWriter(io.Discard), progressbar.OptionSetWidth(24),
				progressbar.OptionSetDescription(fmt.Sprintf("%-*s", width, th)), progressbar.OptionThrottle(0),
				progressbar.OptionSetPredictTime(false), progressbar.OptionSetElapsedTime(false),
				progressbar.OptionSetRenderBlankState(true))}
	}
	return v
}

func (v *fleetView) event(thing string, e agent.AppEvent) {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := v.rows[thing]
	if r == nil {
		return
	}
	switch e.Kind {
	case agent.EventStart:
		r.device = "downloading"
		if e.Total > 0 {
			r.total = e.Total
			r.bar.ChangeMax64(e.Total)
		}
	case agent.EventProgress:
		if e.Total > 0 && e.Total != r.total {
			r.total = e.Total
			r.bar.ChangeMax64(e.Total)
		}
		r.bytes = e.Bytes
		r.bar.Set64(e.Bytes)
		if e.Percent >= 100 {
			r.device = "verifying"
		}
	case agent.EventDone:
		r.device = "verified " + e.Version + ", rebooting into it"
	case agent.EventError:
		r.device = "failed: " + e.Reason
	case agent.EventRetry:
		r.device = "trial cut short by a reset: installing again"
	case agent.EventCanceled:
		r.device = "job canceled: " + e.Message
	case agent.EventCompleted:
		r.device = "reported " + string(e.Status)
	}
	v.logLocked(thing, r)
}

func (v *fleetView) boot(thing string, res sim.BootResult, run dfu.Running) {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := v.rows[thing]
	if r == nil {
		return
	}
	modem := res.ModemVersion != "" && r.modem != "" && res.ModemVersion != r.modem
	switch {
	case res.Refused != nil:
		r.device = "bootloader refused the image"
	case res.Swap == mcuboot.SwapTest:
		r.device = "booted " + run.Version + " on trial: self-test, confirm"
	case res.Swap == mcuboot.SwapRevert:
		r.device = "bootloader reverted to " + run.Version
	case res.ModemRefused != nil:
		r.device = "the modem refused its update"
	case modem:
		r.device = "modem restarted on " + res.ModemVersion
	default:
		r.modem = res.ModemVersion
		return
	}
	r.modem = res.ModemVersion
	v.logLocked(thing, r)
}

func (v *fleetView) cloud(execs []jobsvc.Execution) { v.cloudLabeled(execs, "") }

// cloudLabeled shows executions with a label (the job they belong to).
func (v *fleetView) cloudLabeled(execs []jobsvc.Execution, label string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, x := range execs {
		r := v.rows[x.Thing]
		if r == nil {
			continue
		}
		c := label + string(x.Status)
		if s := x.StatusDetails["state"]; s != "" && !x.Status.Terminal() {
			c += " " + s
		}
		if c != r.cloud {
			r.cloud = c
			v.logLocked(x.Thing, r)
		}
	}
}

// logLocked prints a changed row when not on a terminal.
func (v *fleetView) logLocked(thing string, r *deviceRow) {
	if v.tty {
		return
	}
	line := fmt.Sprintf("%s: %s (cloud: %s)", thing, r.device, r.cloud)
	if line != r.logged {
		r.logged = line
		fmt.Fprintln(v.w, line)
	}
}

func (r *deviceRow) line() string {
	s := strings.TrimLeft(r.bar.String(), "\r")
	if i := strings.LastIndex(s, "|"); i >= 0 {
		s = s[:i+1] // drop the bar's own rate: the row says more
	}
	count := ""
	if r.total > 0 {
		count = fmt.Sprintf(" %4d/%d KiB", r.bytes>>10, r.total>>10)
	}
	return fmt.Sprintf("%s%s  %-40s cloud: %s", s, count, r.device, r.cloud)
}

func (v *fleetView) start() {
	if !v.tty {
		return
	}
	v.stopC, v.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(v.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			v.draw()
			select {
			case <-v.stopC:
				return
			case <-t.C:
			}
		}
	}()
}

func (v *fleetView) stop() {
	if v.stopC != nil {
		close(v.stopC)
		<-v.done
		v.draw()
	}
}

func (v *fleetView) draw() {
	v.mu.Lock()
	defer v.mu.Unlock()
	var b strings.Builder
	if v.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", v.drawn)
	}
	for _, th := range v.order {
		b.WriteString("\r\x1b[2K")
		b.WriteString(v.rows[th].line())
		b.WriteByte('\n')
	}
	v.drawn = len(v.order)
	io.WriteString(v.w, b.String())
}

// progress shows how far a long step has come, as a bar on stderr when
// stderr is a terminal and not at all otherwise (a pipe or a log stays
// clean). It draws nothing until the step has run for env.progressAfter, so
// quick work prints nothing, and it clears its line when done, before the
// command prints its result. A nil *progress is valid and does nothing.
//
// Every command whose work can take more than a second uses it:
//
//	p := e.progress("hashing app.bin", size)
//	defer p.Done()
//	_, err := io.Copy(h, p.Reader(f))
type progress struct {
	e     *env
	what  string
	start time.Time

	mu    sync.Mutex
	total int64 // -1: unknown
	n     int64
	bar   *progressbar.ProgressBar
	done  bool
}

// progress starts showing the progress of what, total bytes long (-1 if
// unknown). It returns nil when stderr is not a terminal.
func (e *env) progress(what string, total int64) *progress {
	if !e.tty(e.errOut) {
		return nil
	}
	return &progress{e: e, what: what, total: total, start: time.Now()}
}

// Set records that n bytes are done.
func (p *progress) Set(n int64) { p.update(func(int64) int64 { return n }) }

// Add records n more bytes done (never more than the total).
func (p *progress) Add(n int64) { p.update(func(done int64) int64 { return done + n }) }

func (p *progress) update(next func(done int64) int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n = next(p.n)
	if p.total >= 0 {
		p.n = min(p.n, p.total)
	}
	p.drawLocked()
}

// SetTotal changes the size of the work, once it is known.
func (p *progress) SetTotal(total int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if total != p.total {
		p.total = total
		if p.bar != nil {
			p.bar.ChangeMax64(total)
		}
	}
}

func (p *progress) drawLocked() {
	if p.done {
		return
	}
	if p.bar == nil {
		if time.Since(p.start) < p.e.progressAfter {
			return
		}
		p.bar = progressbar.NewOptions64(p.total, progressbar.OptionSetWriter(p.e.errOut), progressbar.OptionSetDescription(p.what),
			progressbar.OptionShowBytes(true), progressbar.OptionShowCount(), progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionSetRenderBlankState(true),
			// No spinner for an unknown size: its goroutine would outlive Done.
			progressbar.OptionSetSpinnerChangeInterval(0))
	}
	p.bar.Set64(p.n)
}

// Done ends the progress and clears its line.
func (p *progress) Done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.done && p.bar != nil {
		p.bar.Exit() // no more drawing
		p.bar.Clear()
	}
	p.done = true
}

// Reader counts what is read from r as done.
func (p *progress) Reader(r io.Reader) io.Reader {
	if p == nil {
		return r
	}
	return progressReader{r, p}
}

type progressReader struct {
	r io.Reader
	p *progress
}

func (r progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.p.Add(int64(n))
	return n, err
}

// ReaderAt counts what is read from r as done, up to the total: the readers
// of an image read it once, and its header and TLVs a second time.
func (p *progress) ReaderAt(r io.ReaderAt) io.ReaderAt {
	if p == nil {
		return r
	}
	return progressReaderAt{r, p}
}

type progressReaderAt struct {
	r io.ReaderAt
	p *progress
}

func (r progressReaderAt) ReadAt(b []byte, off int64) (int, error) {
	n, err := r.r.ReadAt(b, off)
	r.p.Add(int64(n))
	return n, err
}

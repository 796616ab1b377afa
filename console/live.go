package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/awsfota/awsfota/clock"
)

// hub hands the feed's changes to the live streams that show what changed.
type hub struct {
	s    *Server
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

// subscriber is one live stream: wake is signalled (never blocking: it has
// room for one signal) when a change is relevant to its page.
type subscriber struct {
	mu       sync.Mutex
	relevant func(Change) bool // nil: everything is
	wake     chan struct{}
}

func newHub(s *Server) *hub { return &hub{s: s, subs: map[*subscriber]struct{}{}} }

func (h *hub) join() *subscriber {
	sub := &subscriber{wake: make(chan struct{}, 1)}
	h.mu.Lock()
	h.subs[sub] = struct{}{}
	h.mu.Unlock()
	return sub
}

func (h *hub) leave(sub *subscriber) {
	h.mu.Lock()
	delete(h.subs, sub)
	h.mu.Unlock()
}

func (sub *subscriber) setRelevant(f func(Change) bool) {
	sub.mu.Lock()
	sub.relevant = f
	sub.mu.Unlock()
}

func (sub *subscriber) signal() {
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

// publish wakes the streams a change concerns; c nil wakes them all.
func (h *hub) publish(c *Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		sub.mu.Lock()
		f := sub.relevant
		sub.mu.Unlock()
		if c == nil || f == nil || f(*c) {
			sub.signal()
		}
	}
}

// follow subscribes to the feed until ctx ends, again each time the
// subscription ends (the console fell behind): every change updates the
// execution cache and the timeline and wakes the streams it concerns.
func (h *hub) follow(ctx context.Context, feed ChangeFeed) {
	s := h.s
	retry := time.Duration(0)
	wait := func() bool { // false when ctx ended
		retry = min(max(2*retry, time.Second), 30*time.Second)
		t := s.cfg.Clock.NewTimer(retry)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C():
			return true
		}
	}
	for epoch := uint64(1); ctx.Err() == nil; epoch++ {
		ch, err := feed.Subscribe(ctx)
		if err != nil {
			s.log.Warn("console: subscribing to the Jobs service's changes failed; trying again", "err", err)
			if !wait() {
				return
			}
			continue
		}
		began := s.cfg.Clock.Now()
		s.cache.setEpoch(epoch)
		h.publish(nil) // what pages show may have changed unseen
		for c := range ch {
			if c.Thing != "" {
				if c.Execution != nil {
					e := *c.Execution
					e.JobID, e.Thing = c.JobID, c.Thing
					s.cache.put(c.JobID, e, true, epoch)
					s.events.observe(e)
				} else {
					s.cache.remove(c.JobID, c.Thing)
				}
			}
			h.publish(&c)
		}
		s.cache.setEpoch(0)
		h.publish(nil)
		if s.cfg.Clock.Now().Sub(began) > time.Minute {
			retry = 0 // it worked for a while: subscribe again at once
		} else if ctx.Err() == nil && !wait() {
			return
		}
	}
}

// streamGap is the shortest time between two refreshes of a stream: the
// changes of a busy rollout are coalesced.
const streamGap = 250 * time.Millisecond

// keepAlive is how often an idle stream sends a comment, so that proxies
// and browsers keep it open.
const keepAlive = 20 * time.Second

// stream serves a page's event stream: "patch" events carry the parts of
// the page that changed, re-rendered (a JSON list of {id, html}); a
// "problem" event says why the page could not be refreshed. The parts are
// re-read when the feed reports a relevant change (at most every
// streamGap), and by polling: every PollMax with a feed, else from PollMin
// doubling up to PollMax while nothing changes.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, build func(context.Context) (liveView, error)) error {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel) // Close ends every stream
	defer stop()

	sub := s.hub.join()
	defer s.hub.leave(sub)
	send := func(event string, data any) error {
		b, err := json.Marshal(data)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if _, err := fmt.Fprint(w, "retry: 3000\n\n"); err != nil {
		return nil
	}
	d := &differ{s: s, last: map[string]string{}, kids: map[string][]string{}}
	problem := ""
	// refresh re-reads the page and sends what changed; it reports whether
	// anything did.
	refresh := func() (bool, error) {
		v, err := build(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			if msg := err.Error(); msg != problem {
				problem = msg
				return true, send("problem", map[string]string{"message": msg})
			}
			return false, nil
		}
		if problem != "" {
			problem = ""
			if err := send("problem", map[string]string{"message": ""}); err != nil {
				return false, err
			}
		}
		sub.setRelevant(v.relevant)
		patches, err := d.diff(v.parts())
		if err != nil || len(patches) == 0 {
			return false, err
		}
		return true, send("patch", patches)
	}
	if _, err := refresh(); err != nil {
		return nil
	}
	clk := s.cfg.Clock
	poll := s.cfg.PollMin
	if s.cfg.Feed != nil {
		poll = s.cfg.PollMax
	}
	pollT := clk.NewTimer(poll)
	defer pollT.Stop()
	aliveT := clk.NewTimer(keepAlive)
	defer aliveT.Stop()
	var gapT clock.Timer
	var gapC <-chan time.Time
	last := clk.Now()
	for {
		select {
		case <-ctx.Done():
			if gapT != nil {
				gapT.Stop()
			}
			return nil
		case <-sub.wake:
			if gapC == nil {
				gapT = clk.NewTimer(max(streamGap-clk.Now().Sub(last), 0))
				gapC = gapT.C()
			}
			continue
		case <-gapC:
			gapC = nil
		case <-pollT.C():
		case <-aliveT.C():
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return nil
			}
			aliveT.Reset(keepAlive)
			continue
		}
		changed, err := refresh()
		if err != nil {
			return nil
		}
		last = clk.Now()
		if s.cfg.Feed == nil {
			poll = nextPoll(poll, s.cfg.PollMin, s.cfg.PollMax, changed)
		}
		pollT.Stop()
		pollT.Reset(poll)
	}
}

// nextPoll is the polling interval after a refresh: back to lo when
// something changed, else doubled up to hi.
func nextPoll(cur, lo, hi time.Duration, changed bool) time.Duration {
	if changed {
		return lo
	}
	return min(max(2*cur, lo), hi)
}

// patch is a part of a page to replace.
type patch struct {
	ID   string `json:"id"`
	HTML string `json:"html"`
}

// differ remembers what a stream last sent of each part, to send only what
// changed.
type differ struct {
	s    *Server
	last map[string]string   // part id → HTML sent
	kids map[string][]string // container id → its children's ids sent
}

func (d *differ) diff(parts []part) ([]patch, error) {
	var out []patch
	for _, p := range parts {
		ids := make([]string, len(p.Children))
		for i, c := range p.Children {
			ids[i] = c.ID
		}
		if p.Children != nil && slices.Equal(ids, d.kids[p.ID]) {
			for _, c := range p.Children {
				html, err := d.s.renderPart(c)
				if err != nil {
					return nil, err
				}
				if html != d.last[c.ID] {
					d.last[c.ID] = html
					out = append(out, patch{c.ID, html})
				}
			}
			continue
		}
		html, err := d.s.renderPart(p)
		if err != nil {
			return nil, err
		}
		if html != d.last[p.ID] {
			out = append(out, patch{p.ID, html})
			d.last[p.ID] = html
		}
		d.kids[p.ID] = ids
		for _, c := range p.Children {
			if d.last[c.ID], err = d.s.renderPart(c); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// renderPart renders one part of a page.
func (s *Server) renderPart(p part) (string, error) {
	var b bytes.Buffer
	if err := partsTmpl.ExecuteTemplate(&b, p.Tmpl, p.Data); err != nil {
		return "", err
	}
	return strings.TrimSpace(b.String()), nil
}

package download

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/awsfota/awsfota/clock"
)

// watchdog cancels an attempt when no byte has arrived for the read timeout.
// It measures time on the Downloader's clock, from the attempt's start, so
// that touch costs one clock read and an atomic store, and the timer is
// re-armed only when it fires.
type watchdog struct {
	clock   clock.Clock
	timeout time.Duration
	start   time.Time
	last    atomic.Int64 // time.Duration since start of the latest touch
	stop    chan struct{}
	done    chan struct{}
}

// watch starts the watchdog of one attempt; cancel is the attempt's. The
// timer is created before watch returns, so a test that sees it among a fake
// clock's timers knows the attempt is being watched. A nil *watchdog (no
// ReadTimeout) does nothing.
func (d *Downloader) watch(cancel context.CancelCauseFunc) *watchdog {
	if d.readTimeout <= 0 {
		return nil
	}
	w := &watchdog{
		clock:   d.clock,
		timeout: d.readTimeout,
		start:   d.clock.Now(),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	t := d.clock.NewTimer(d.readTimeout)
	go w.run(t, cancel)
	return w
}

func (w *watchdog) run(t clock.Timer, cancel context.CancelCauseFunc) {
	defer close(w.done)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C():
			idle := w.clock.Now().Sub(w.start) - time.Duration(w.last.Load())
			if idle >= w.timeout {
				cancel(fmt.Errorf("%w: no data for %v; the network or the server stopped sending", ErrStalled, w.timeout))
				return
			}
			t.Reset(w.timeout - idle)
		}
	}
}

// touch records that bytes arrived.
func (w *watchdog) touch() {
	if w != nil {
		w.last.Store(int64(w.clock.Now().Sub(w.start)))
	}
}

// close stops the watchdog and waits for its goroutine to end.
func (w *watchdog) close() {
	if w != nil {
		close(w.stop)
		<-w.done
	}
}

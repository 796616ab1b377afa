package cli

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// service speaks systemd's notify protocol for `device run` under
// Type=notify: READY=1 once the agent runs, STATUS= lines, STOPPING=1, and
// WATCHDOG=1 every half WatchdogSec for as long as the agent's loop answers
// (runner.Ping). Before the loop first answers — the agent is starting, and
// may wait for RAUC to finish an install, within its own time limits — the
// watchdog is fed too. Outside systemd (no NOTIFY_SOCKET) it does nothing.
type service struct {
	ready    atomic.Bool
	agent    atomic.Pointer[watched] // the agent running now; nil between runs
	interval time.Duration           // half WatchdogSec; 0: no watchdog
	done     chan struct{}
	stopped  chan struct{}

	lastStatus string // owned by the agent's goroutine (OnEvent)
}

// pinger is what the watchdog asks whether the agent is alive.
type pinger interface {
	Ping(ctx context.Context) error
}

// watched is an agent and whether its loop ever answered.
type watched struct {
	p        pinger
	answered atomic.Bool
}

func notify(state string) { daemon.SdNotify(false, state) }

// startService starts the watchdog when systemd asked for one.
func startService(ctx context.Context) *service {
	s := &service{done: make(chan struct{}), stopped: make(chan struct{})}
	if d, err := daemon.SdWatchdogEnabled(false); err == nil && d > 0 {
		s.interval = d / 2
	}
	go s.watchdog(ctx)
	return s
}

// running says which agent runs (nil: none, between a reboot request and
// the next run), and that the service is ready once one does.
func (s *service) running(p pinger) {
	if p == nil {
		s.agent.Store(nil)
		return
	}
	s.agent.Store(&watched{p: p})
	if !s.ready.Swap(true) {
		notify(daemon.SdNotifyReady)
	}
}

// status sets systemd's status line when it changed.
func (s *service) status(line string) {
	if line == "" || line == s.lastStatus {
		return
	}
	s.lastStatus = line
	notify("STATUS=" + line)
}

func (s *service) watchdog(ctx context.Context) {
	defer close(s.stopped)
	if s.interval <= 0 {
		<-s.done
		return
	}
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		// Between runs (waiting for the reboot) there is no loop to ask: the
		// process is where it should be.
		if w := s.agent.Load(); w != nil {
			pctx, cancel := context.WithTimeout(ctx, s.interval)
			err := w.p.Ping(pctx)
			cancel()
			switch {
			case err == nil:
				w.answered.Store(true)
			case w.answered.Load():
				continue // stuck, or stopping: let systemd's watchdog act
			}
		}
		notify(daemon.SdNotifyWatchdog)
	}
}

// stop ends the watchdog and tells systemd the service is stopping.
func (s *service) stop() {
	close(s.done)
	<-s.stopped
	notify(daemon.SdNotifyStopping)
}

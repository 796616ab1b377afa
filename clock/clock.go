// Package clock gives the rest of awsfota time as an input: a Clock that
// production code receives through its constructor, the real one backed by
// package time, and a Fake that tests move forward by hand.
//
// Nothing in awsfota reads the wall clock or sleeps directly where behaviour
// depends on time (backoff, timeouts, rate limits, job timers); it asks its
// Clock, so a test can make an hour pass in a microsecond and never needs a
// sleep to synchronise.
//
// It imports only the standard library.
package clock

import "time"

// Clock tells the time and makes timers. Implementations are safe for
// concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a Timer that fires once, d after Now.
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer, as time.Timer, behind an interface so that a Fake
// can fire it.
type Timer interface {
	// C delivers the time once the timer fires. The channel has a buffer of one,
	// so a timer that fires while nobody listens does not block the clock.
	C() <-chan time.Time
	// Stop prevents the timer from firing. It reports whether the call stopped
	// the timer (false when it had already fired or been stopped).
	Stop() bool
	// Reset makes the timer fire d from now; it reports whether the timer had
	// been active.
	Reset(d time.Duration) bool
}

// Real returns the Clock of package time.
func Real() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

// Sleep waits for d on c, or until done is closed. It returns false when done
// was closed first.
func Sleep(c Clock, d time.Duration, done <-chan struct{}) bool {
	if d <= 0 {
		select {
		case <-done:
			return false
		default:
			return true
		}
	}
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-done:
		return false
	}
}

package clock

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestFakeFiresInOrder(t *testing.T) {
	f := NewFake(epoch)
	late := f.NewTimer(2 * time.Second)
	early := f.NewTimer(time.Second)
	f.Advance(1500 * time.Millisecond)
	select {
	case at := <-early.C():
		if !at.Equal(epoch.Add(time.Second)) {
			t.Fatalf("early timer fired at %v, want %v", at, epoch.Add(time.Second))
		}
	default:
		t.Fatal("early timer did not fire")
	}
	select {
	case <-late.C():
		t.Fatal("late timer fired early")
	default:
	}
	if got := f.Now(); !got.Equal(epoch.Add(1500 * time.Millisecond)) {
		t.Fatalf("Now = %v", got)
	}
	f.Advance(time.Second)
	select {
	case <-late.C():
	default:
		t.Fatal("late timer did not fire")
	}
}

func TestFakeStopReset(t *testing.T) {
	f := NewFake(epoch)
	tm := f.NewTimer(time.Second)
	if !tm.Stop() {
		t.Fatal("Stop of an active timer returned false")
	}
	if tm.Stop() {
		t.Fatal("second Stop returned true")
	}
	f.Advance(time.Hour)
	select {
	case <-tm.C():
		t.Fatal("stopped timer fired")
	default:
	}
	if tm.Reset(time.Minute) {
		t.Fatal("Reset of a stopped timer reported it active")
	}
	if f.Timers() != 1 {
		t.Fatalf("Timers = %d, want 1", f.Timers())
	}
	f.Advance(time.Minute)
	select {
	case <-tm.C():
	default:
		t.Fatal("reset timer did not fire")
	}
}

func TestWaitTimersAndSleep(t *testing.T) {
	f := NewFake(epoch)
	done := make(chan bool)
	go func() { done <- Sleep(f, time.Minute, nil) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.WaitTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if d, ok := f.NextDeadline(); !ok || !d.Equal(epoch.Add(time.Minute)) {
		t.Fatalf("NextDeadline = %v %v", d, ok)
	}
	f.Advance(time.Minute)
	if !<-done {
		t.Fatal("Sleep returned false without done")
	}
}

func TestSleepInterrupted(t *testing.T) {
	stop := make(chan struct{})
	close(stop)
	if Sleep(Real(), time.Hour, stop) {
		t.Fatal("Sleep on a closed channel returned true")
	}
	if Sleep(Real(), 0, stop) {
		t.Fatal("zero Sleep on a closed channel returned true")
	}
	if !Sleep(Real(), 0, nil) {
		t.Fatal("zero Sleep returned false")
	}
}

func TestRealTimer(t *testing.T) {
	c := Real()
	tm := c.NewTimer(time.Millisecond)
	<-tm.C()
	if tm.Stop() {
		t.Fatal("Stop after fire returned true")
	}
	if c.Now().IsZero() {
		t.Fatal("zero time")
	}
}

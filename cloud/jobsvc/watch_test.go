package jobsvc

import (
	"testing"

	"github.com/awsfota/awsfota/iotjobs"
)

// drain returns the changes waiting on ch (they are sent before the method
// that commits them returns).
func drain(ch <-chan Change) []Change {
	var out []Change
	for {
		select {
		case c, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, c)
		default:
			return out
		}
	}
}

// TestSubscribe follows a job through its life in the change stream: the
// creation with its queued executions, a device's progress report with its
// statusDetails, the completion, and the deletion.
func TestSubscribe(t *testing.T) {
	f := newFixture(t)
	ch, cancel := f.s.Subscribe(100)
	defer cancel()

	f.job("j", "a", "b")
	got := drain(ch)
	execs, jobs := 0, 0
	for _, c := range got {
		switch {
		case c.Thing != "" && c.Execution != nil && c.Execution.Status == iotjobs.StatusQueued:
			execs++
		case c.Thing == "" && c.Job != nil && c.Job.Status == JobInProgress && c.Counts[iotjobs.StatusQueued] == 2:
			jobs++
		default:
			t.Errorf("unexpected change at creation: %+v", c)
		}
	}
	if execs != 2 || jobs != 1 {
		t.Fatalf("creation: %d execution changes, %d job changes; want 2 and 1: %+v", execs, jobs, got)
	}

	f.update("a", "j", `{"status":"IN_PROGRESS","statusDetails":{"state":"downloading","progress":"40"}}`)
	got = drain(ch)
	if len(got) != 2 || got[0].Thing != "a" || got[0].Execution.Status != iotjobs.StatusInProgress ||
		got[0].Execution.StatusDetails["progress"] != "40" || got[1].Thing != "" || got[1].Counts[iotjobs.StatusInProgress] != 1 {
		t.Fatalf("progress report: got %+v", got)
	}
	// The change is a copy: what the subscriber holds does not move.
	got[0].Execution.StatusDetails["progress"] = "99"
	if e := f.exec("j", "a"); e.StatusDetails["progress"] != "40" {
		t.Errorf("the service's execution changed with the subscriber's copy: %v", e.StatusDetails)
	}

	f.update("a", "j", `{"status":"SUCCEEDED"}`)
	f.update("b", "j", `{"status":"FAILED","statusDetails":{"reason":"<script>alert(1)</script>"}}`)
	got = drain(ch)
	last := got[len(got)-1]
	if last.Thing != "" || last.Job == nil || last.Job.Status != JobCompleted || last.Counts[iotjobs.StatusFailed] != 1 {
		t.Fatalf("completion: last change %+v", last)
	}

	if err := f.s.DeleteJob("j", false); err != nil {
		t.Fatal(err)
	}
	got = drain(ch)
	deleted := map[string]bool{}
	for _, c := range got {
		if c.Execution != nil || c.Job != nil {
			t.Errorf("deletion: change %+v carries a state", c)
		}
		deleted[c.Thing] = true
	}
	if !deleted["a"] || !deleted["b"] || !deleted[""] {
		t.Fatalf("deletion: got %+v", got)
	}
}

// TestSubscribeSlowSubscriber: the service never waits for a subscriber; one
// that falls behind is dropped (its channel closed), the others go on.
func TestSubscribeSlowSubscriber(t *testing.T) {
	f := newFixture(t)
	slow, cancelSlow := f.s.Subscribe(1)
	defer cancelSlow()
	fast, cancelFast := f.s.Subscribe(100)
	defer cancelFast()

	f.job("j", "a", "b", "c") // 3 execution changes and a job change
	got := drain(slow)
	if len(got) != 1 {
		t.Fatalf("the slow subscriber got %d changes, want the 1 its buffer held", len(got))
	}
	if _, ok := <-slow; ok {
		t.Fatal("the slow subscriber's channel is still open")
	}
	if n := len(drain(fast)); n != 4 {
		t.Fatalf("the other subscriber got %d changes, want 4", n)
	}
	cancelSlow() // after a drop: harmless
	cancelFast()
	if _, ok := <-fast; ok {
		t.Fatal("cancel left the channel open")
	}
	f.update("a", "j", `{"status":"IN_PROGRESS"}`) // no subscriber left: nothing blocks
}

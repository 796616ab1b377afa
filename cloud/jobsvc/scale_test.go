package jobsvc

import (
	"fmt"
	"testing"
	"time"

	"github.com/awsfota/awsfota/iotjobs"
)

func fleetOf(n int) []string {
	things := make([]string, n)
	for i := range things {
		things[i] = fmt.Sprintf("sim-%05d", i+1)
	}
	return things
}

// TestRolloutAndAbortAt10000: a job on 10 000 things releases exactly
// maximumPerMinute a minute (fake clock), and its abort rule cancels it at
// the failure share it names, counted over 10 000 executions.
func TestRolloutAndAbortAt10000(t *testing.T) {
	if testing.Short() || raceEnabled {
		// Seconds of bbolt work, a minute and a half under the race
		// detector, for no concurrency of its own: the scale is what it tests.
		t.Skip("10 000 things: run it without -race and -short")
	}
	const n = 10_000
	things := fleetOf(n)

	t.Run("rollout", func(t *testing.T) {
		f := newFixture(t)
		f.create(JobSpec{JobID: "j", Things: things, Rollout: &RolloutConfig{MaximumPerMinute: 1000}})
		for minute := 0; minute <= 10; minute++ {
			info, err := f.s.JobInfo("j")
			if err != nil {
				t.Fatal(err)
			}
			want := min(n, 1000*(minute+1))
			if got := n - int(info.Waiting); got != want {
				t.Fatalf("after %d min: %d things released, want %d", minute, got, want)
			}
			if minute < 10 {
				f.tick(time.Minute)
			}
		}
		if _, ok := f.s.NextTimer(); ok {
			t.Error("a rollout timer is left once every thing is released")
		}
	})

	t.Run("abort", func(t *testing.T) {
		f := newFixture(t)
		f.create(JobSpec{JobID: "j", Things: things, Abort: &AbortConfig{CriteriaList: []AbortCriteria{
			{FailureType: FailureFailed, Action: "CANCEL", ThresholdPercentage: 10, MinNumberOfExecutedThings: 1000}}}})
		// Every tenth thing but one in twenty fails: 14% of those that
		// finish, from the first.
		report := func(i int) {
			status := iotjobs.StatusSucceeded
			if i%10 == 0 || i%25 == 0 {
				status = iotjobs.StatusFailed
			}
			if _, rej, err := f.s.DeviceRequest(things[i], "j", &iotjobs.UpdateRequest{Status: status}); err != nil || rej != nil {
				t.Fatalf("%s: %v %+v", things[i], err, rej)
			}
		}
		for i := range 999 {
			report(i)
		}
		if s := f.jobStatus("j"); s != JobInProgress {
			t.Fatalf("job %s below minNumberOfExecutedThings", s)
		}
		report(999)
		j, err := f.s.DescribeJob("j")
		if err != nil {
			t.Fatal(err)
		}
		if j.Status != JobCanceled || j.ReasonCode != AbortReasonCode {
			t.Fatalf("after 1000 executions, 14%% failed: job %s (%s), want CANCELED by the abort rule", j.Status, j.ReasonCode)
		}
		info, _ := f.s.JobInfo("j")
		if got := info.Counts[iotjobs.StatusCanceled]; got != n-1000 {
			t.Errorf("%d executions canceled, want the %d not yet run", got, n-1000)
		}
	})
}

package jobsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awsfota/awsfota/iotjobs"
	bolt "go.etcd.io/bbolt"
)

// The service applying the rules in bbolt, on a fake clock: timers fire
// from Tick after the clock is moved, never from a sleep.

func (f *fixture) create(spec JobSpec) Job {
	f.t.Helper()
	if spec.Document == nil {
		spec.Document = []byte(`{"operation":"app_fw_update"}`)
	}
	j, err := f.s.CreateJob(spec)
	if err != nil {
		f.t.Fatal(err)
	}
	return j
}

func (f *fixture) exec(job, thing string) Execution {
	f.t.Helper()
	e, err := f.s.DescribeExecution(job, thing)
	if err != nil {
		f.t.Fatal(err)
	}
	return e
}

// tick moves the clock by d, fires the timers and returns what was sent.
func (f *fixture) tick(d time.Duration) []Message {
	f.t.Helper()
	f.rec.take()
	f.clk.Advance(d)
	if err := f.s.Tick(); err != nil {
		f.t.Fatal(err)
	}
	return f.rec.take()
}

func (f *fixture) update(thing, job, payload string) iotjobs.UpdateResponse {
	f.t.Helper()
	var r iotjobs.UpdateResponse
	find(f.t, f.call(thing, iotjobs.UpdateTopic(thing, job), payload), iotjobs.UpdateTopic(thing, job).Accepted(), &r)
	return r
}

func (f *fixture) rejected(thing string, topic iotjobs.Topic, payload string) iotjobs.ErrorResponse {
	f.t.Helper()
	var r iotjobs.ErrorResponse
	find(f.t, f.call(thing, topic, payload), topic.Rejected(), &r)
	return r
}

func (f *fixture) startNext(thing, payload string) *iotjobs.JobExecution {
	f.t.Helper()
	var r iotjobs.ExecutionResponse
	find(f.t, f.call(thing, iotjobs.StartNextTopic(thing), payload), iotjobs.StartNextTopic(thing).Accepted(), &r)
	return r.Execution
}

func (f *fixture) describe(thing, job, payload string) *iotjobs.JobExecution {
	f.t.Helper()
	var r iotjobs.ExecutionResponse
	find(f.t, f.call(thing, iotjobs.DescribeTopic(thing, job), payload), iotjobs.DescribeTopic(thing, job).Accepted(), &r)
	return r.Execution
}

// findTopic is find for topics outside a thing's jobs namespace (events).
func findTopic(t *testing.T, msgs []Message, topic string, v any) {
	t.Helper()
	for _, m := range msgs {
		if m.Topic == topic {
			if m.ClientID != "" {
				t.Fatalf("%s addressed to %s", topic, m.ClientID)
			}
			if v != nil {
				if err := json.Unmarshal(m.Payload, v); err != nil {
					t.Fatal(err)
				}
			}
			return
		}
	}
	t.Fatalf("no message on %s; got %v", topic, topics(msgs))
}

func hasTopic(msgs []Message, topic string) bool {
	return slices.Contains(topics(msgs), topic)
}

func topics(msgs []Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Topic)
	}
	return out
}

// statuses lists the statuses of a job's executions on things ("-" for none).
func (f *fixture) statuses(job string, things ...string) string {
	var out []string
	for _, th := range things {
		e, err := f.s.DescribeExecution(job, th)
		if err != nil {
			out = append(out, "-")
			continue
		}
		out = append(out, string(e.Status))
	}
	return strings.Join(out, ",")
}

func (f *fixture) jobStatus(id string) JobStatus {
	f.t.Helper()
	j, err := f.s.DescribeJob(id)
	if err != nil {
		f.t.Fatal(err)
	}
	return j.Status
}

func TestInProgressTimeout(t *testing.T) {
	f := newFixture(t)
	f.create(JobSpec{JobID: "j", Things: []string{"dev-1"}, Timeout: &TimeoutConfig{InProgressTimeoutInMinutes: 10}})
	// The timer runs from IN_PROGRESS, not from QUEUED.
	if msgs := f.tick(time.Hour); len(msgs) != 0 {
		t.Fatalf("a QUEUED execution timed out: %v", topics(msgs))
	}
	x := f.startNext("dev-1", `{}`)
	if x.ApproximateSecondsBeforeTimedOut == nil || *x.ApproximateSecondsBeforeTimedOut != 600 {
		t.Fatalf("approximateSecondsBeforeTimedOut %v", x.ApproximateSecondsBeforeTimedOut)
	}
	if msgs := f.tick(10*time.Minute - time.Second); len(msgs) != 0 || f.exec("j", "dev-1").Status != iotjobs.StatusInProgress {
		t.Fatal("timed out early")
	}
	// A progress update does not restart the in-progress timer.
	f.update("dev-1", "j", `{"status":"IN_PROGRESS","statusDetails":{"p":"1"}}`)
	msgs := f.tick(time.Second)
	e := f.exec("j", "dev-1")
	if e.Status != iotjobs.StatusTimedOut || e.VersionNumber != 4 || e.StatusDetails["p"] != "1" {
		t.Fatalf("%+v", e)
	}
	var ev ExecutionEvent
	findTopic(t, msgs, "$aws/events/jobExecution/j/timed_out", &ev)
	if ev.EventType != "JOB_EXECUTION" || ev.Operation != "timed_out" || ev.Status != iotjobs.StatusTimedOut ||
		ev.ThingArn != "arn:aws:iot:us-east-1:000000000000:thing/dev-1" || ev.EventID == "" || ev.StatusDetails["p"] != "1" {
		t.Fatalf("%+v", ev)
	}
	var nn iotjobs.NotifyNextMessage
	find(t, msgs, iotjobs.NotifyNextTopic("dev-1"), &nn)
	if nn.Execution != nil {
		t.Fatalf("notify-next %+v", nn)
	}
	var je JobEvent
	findTopic(t, msgs, "$aws/events/job/j/completed", &je)
	if je.Status != "COMPLETED" || je.JobProcessDetails == nil || je.JobProcessDetails.NumberOfSucceededThings != 0 ||
		je.CompletedAt != f.clk.Now().UnixMilli() || je.Timestamp != f.clk.Now().Unix() || f.jobStatus("j") != JobCompleted {
		t.Fatalf("%+v", je)
	}
	// Too late now.
	r := f.rejected("dev-1", iotjobs.UpdateTopic("dev-1", "j"), `{"status":"SUCCEEDED"}`)
	if r.Code != iotjobs.CodeInvalidStateTransition || r.ExecutionState.Status != iotjobs.StatusTimedOut {
		t.Fatalf("%+v", r)
	}
}

func TestStepTimeout(t *testing.T) {
	f := newFixture(t)
	f.create(JobSpec{JobID: "j", Things: []string{"dev-1"}})
	// start-next sets it; -1 is refused there.
	if r := f.rejected("dev-1", iotjobs.StartNextTopic("dev-1"), `{"stepTimeoutInMinutes":-1}`); r.Code != iotjobs.CodeInvalidRequest {
		t.Fatal(r)
	}
	f.startNext("dev-1", `{"stepTimeoutInMinutes":5}`)
	f.tick(4 * time.Minute)
	// An update with a new step timeout restarts it from now.
	f.update("dev-1", "j", `{"status":"IN_PROGRESS","stepTimeoutInMinutes":5}`)
	if f.tick(4 * time.Minute); f.exec("j", "dev-1").Status != iotjobs.StatusInProgress {
		t.Fatal("the reset step timer fired early")
	}
	// Without stepTimeoutInMinutes the current step timer keeps running.
	f.update("dev-1", "j", `{"status":"IN_PROGRESS","statusDetails":{"p":"2"}}`)
	if f.tick(time.Minute); f.exec("j", "dev-1").Status != iotjobs.StatusTimedOut {
		t.Fatalf("%+v", f.exec("j", "dev-1"))
	}

	// -1 clears it.
	f.create(JobSpec{JobID: "k", Things: []string{"dev-1"}})
	f.startNext("dev-1", `{"stepTimeoutInMinutes":1}`)
	if x := f.describe("dev-1", "k", `{}`); x.ApproximateSecondsBeforeTimedOut == nil || *x.ApproximateSecondsBeforeTimedOut != 60 {
		t.Fatalf("%+v", x)
	}
	f.update("dev-1", "k", `{"status":"IN_PROGRESS","stepTimeoutInMinutes":-1}`)
	if x := f.describe("dev-1", "k", `{}`); x.ApproximateSecondsBeforeTimedOut != nil {
		t.Fatalf("%+v", x)
	}
	if f.tick(48 * time.Hour); f.exec("k", "dev-1").Status != iotjobs.StatusInProgress {
		t.Fatal("a cleared step timer fired")
	}
	if _, ok := f.s.NextTimer(); ok {
		t.Fatal("timers left behind")
	}
}

// TestRunTimers lets the service fire its own timers on the fake clock.
func TestRunTimers(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.s.RunTimers(ctx) }()
	defer func() { cancel(); <-done }()

	f.create(JobSpec{JobID: "j", Things: []string{"dev-1"}})
	f.startNext("dev-1", `{"stepTimeoutInMinutes":3}`)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := f.clk.WaitTimers(wctx, 1); err != nil {
		t.Fatal("RunTimers did not arm a timer for the step timeout")
	}
	f.clk.Advance(3 * time.Minute)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for f.exec("j", "dev-1").Status != iotjobs.StatusTimedOut {
		select {
		case <-wctx.Done():
			t.Fatal("the step timer did not fire")
		case <-tick.C:
		}
	}
}

func TestTimersSurviveRestart(t *testing.T) {
	f := newFixture(t)
	f.create(JobSpec{JobID: "j", Things: []string{"dev-1", "dev-2"}, Timeout: &TimeoutConfig{InProgressTimeoutInMinutes: 1}, Rollout: &RolloutConfig{MaximumPerMinute: 1}})
	f.startNext("dev-1", `{}`)
	f.db.Close()
	f.open()
	f.tick(time.Minute)
	if got := f.statuses("j", "dev-1", "dev-2"); got != "TIMED_OUT,QUEUED" {
		t.Fatal(got)
	}
}

func TestRolloutMaximumPerMinuteService(t *testing.T) {
	f := newFixture(t)
	things := []string{"d1", "d2", "d3", "d4", "d5"}
	f.create(JobSpec{JobID: "j", Things: things, Rollout: &RolloutConfig{MaximumPerMinute: 2}})
	msgs := f.rec.take()
	if got := f.statuses("j", things...); got != "QUEUED,QUEUED,-,-,-" {
		t.Fatal(got)
	}
	if hasTopic(msgs, iotjobs.NotifyNextTopic("d3").String()) {
		t.Fatal("a thing not yet released was notified")
	}
	info, _ := f.s.JobInfo("j")
	if info.Waiting != 3 || info.Counts[iotjobs.StatusQueued] != 2 {
		t.Fatalf("%+v", info)
	}
	// Finishing everything released does not complete the job.
	f.update("d1", "j", `{"status":"SUCCEEDED"}`)
	f.update("d2", "j", `{"status":"SUCCEEDED"}`)
	if f.jobStatus("j") != JobInProgress {
		t.Fatal("completed with things waiting")
	}
	if msgs := f.tick(59 * time.Second); len(msgs) != 0 {
		t.Fatalf("released early: %v", topics(msgs))
	}
	msgs = f.tick(time.Second)
	if got := f.statuses("j", things...); got != "SUCCEEDED,SUCCEEDED,QUEUED,QUEUED,-" || !hasTopic(msgs, iotjobs.NotifyNextTopic("d4").String()) {
		t.Fatal(got, topics(msgs))
	}
	f.tick(time.Minute)
	if got := f.statuses("j", things...); got != "SUCCEEDED,SUCCEEDED,QUEUED,QUEUED,QUEUED" {
		t.Fatal(got)
	}
	for _, th := range things[2:] {
		f.update(th, "j", `{"status":"SUCCEEDED"}`)
	}
	if f.jobStatus("j") != JobCompleted {
		t.Fatal("not completed")
	}
	if _, ok := f.s.NextTimer(); ok {
		t.Fatal("rollout timer left behind")
	}
}

func TestRolloutExponentialService(t *testing.T) {
	f := newFixture(t)
	var things []string
	for i := range 10 {
		things = append(things, fmt.Sprintf("d%02d", i))
	}
	f.create(JobSpec{JobID: "j", Things: things, Rollout: &RolloutConfig{ExponentialRate: &ExponentialRate{
		BaseRatePerMinute: 1, IncrementFactor: 3, RateIncreaseCriteria: RateIncreaseCriteria{NumberOfSucceededThings: 1}}}})
	released := func() int64 {
		info, _ := f.s.JobInfo("j")
		return int64(len(things)) - info.Waiting
	}
	if released() != 1 {
		t.Fatal(released())
	}
	f.tick(time.Minute)
	if released() != 2 {
		t.Fatal(released())
	}
	// One success triples the rate from the next window: 3 more.
	f.update("d00", "j", `{"status":"SUCCEEDED"}`)
	f.tick(time.Minute)
	if released() != 5 {
		t.Fatal(released())
	}
}

func TestAbortService(t *testing.T) {
	f := newFixture(t)
	things := []string{"d1", "d2", "d3", "d4", "d5"}
	f.create(JobSpec{JobID: "j", Things: things, Abort: &AbortConfig{CriteriaList: []AbortCriteria{
		{FailureType: FailureFailed, Action: "CANCEL", ThresholdPercentage: 50, MinNumberOfExecutedThings: 2}}}})
	f.startNext("d3", `{}`)
	f.update("d1", "j", `{"status":"FAILED"}`) // 1 executed: below the minimum
	if f.jobStatus("j") != JobInProgress {
		t.Fatal("aborted below minNumberOfExecutedThings")
	}
	f.update("d2", "j", `{"status":"SUCCEEDED"}`) // 1 of 2 failed: 50%
	msgs := f.last
	if got := f.statuses("j", things...); got != "FAILED,SUCCEEDED,IN_PROGRESS,CANCELED,CANCELED" {
		t.Fatal(got)
	}
	j, _ := f.s.DescribeJob("j")
	if j.Status != JobCanceled || j.ReasonCode != AbortReasonCode || !strings.Contains(j.Comment, "abortConfig") ||
		!strings.Contains(j.Comment, "1 of 2 executed things ended FAILED") || j.ForceCanceled {
		t.Fatalf("%+v", j)
	}
	// The cancellation is announced first, then its end, as on AWS.
	var je JobEvent
	ts := topics(msgs)
	if i, k := slices.Index(ts, "$aws/events/job/j/cancellation_in_progress"), slices.Index(ts, "$aws/events/job/j/canceled"); i < 0 || k < i {
		t.Fatalf("events %v", ts)
	}
	findTopic(t, msgs, "$aws/events/job/j/canceled", &je)
	findTopic(t, msgs, "$aws/events/jobExecution/j/canceled", nil)
	if je.Status != "CANCELED" || je.Comment != j.Comment || je.JobProcessDetails != nil || je.CreatedAt != j.CreatedAt.UnixMilli() {
		t.Fatalf("%+v", je)
	}
	// The IN_PROGRESS one may still finish; the job stays CANCELED.
	f.update("d3", "j", `{"status":"SUCCEEDED"}`)
	if f.jobStatus("j") != JobCanceled {
		t.Fatal(f.jobStatus("j"))
	}
	// Things still waiting for a rollout never get an execution.
	f.create(JobSpec{JobID: "k", Things: things, Rollout: &RolloutConfig{MaximumPerMinute: 2}, Abort: &AbortConfig{CriteriaList: []AbortCriteria{
		{FailureType: FailureAll, Action: "CANCEL", ThresholdPercentage: 100, MinNumberOfExecutedThings: 1}}}})
	f.update("d1", "k", `{"status":"REJECTED"}`)
	if got := f.statuses("k", things...); got != "REJECTED,CANCELED,-,-,-" {
		t.Fatal(got)
	}
	if f.tick(time.Hour); f.statuses("k", things...) != "REJECTED,CANCELED,-,-,-" {
		t.Fatal("released after the abort")
	}
}

func TestRetryService(t *testing.T) {
	f := newFixture(t)
	f.create(JobSpec{JobID: "j", Things: []string{"dev-1"}, Retry: &RetryConfig{CriteriaList: []RetryCriteria{
		{FailureType: FailureFailed, NumberOfRetries: 1}, {FailureType: FailureTimedOut, NumberOfRetries: 1}}}})
	f.startNext("dev-1", `{}`)
	r := f.update("dev-1", "j", `{"status":"FAILED","includeJobExecutionState":true}`)
	msgs := f.last
	if r.ExecutionState.Status != iotjobs.StatusFailed {
		t.Fatalf("%+v", r.ExecutionState)
	}
	findTopic(t, msgs, "$aws/events/jobExecution/j/failed", nil)
	var nn iotjobs.NotifyNextMessage
	find(t, msgs, iotjobs.NotifyNextTopic("dev-1"), &nn)
	if nn.Execution == nil || nn.Execution.JobID != "j" || nn.Execution.ExecutionNumber != 2 || nn.Execution.Status != iotjobs.StatusQueued || nn.Execution.VersionNumber != 1 {
		t.Fatalf("notify-next %+v", nn.Execution)
	}
	e := f.exec("j", "dev-1")
	if e.ExecutionNumber != 2 || e.RetryAttempt != 1 || f.jobStatus("j") != JobInProgress {
		t.Fatalf("%+v", e)
	}
	// The failed execution is still there by its number (terminal: the
	// device API answers TerminalStateReached).
	if r := f.rejected("dev-1", iotjobs.DescribeTopic("dev-1", "j"), `{"executionNumber":1}`); r.Code != iotjobs.CodeTerminalStateReached {
		t.Fatalf("%+v", r)
	}
	if old, err := f.s.DescribeExecutionNumber("j", "dev-1", 1); err != nil || old.Status != iotjobs.StatusFailed {
		t.Fatal(old, err)
	}
	if rj := f.rejected("dev-1", iotjobs.UpdateTopic("dev-1", "j"), `{"status":"SUCCEEDED","executionNumber":1}`); rj.Code != iotjobs.CodeInvalidStateTransition || rj.ExecutionState.Status != iotjobs.StatusFailed {
		t.Fatalf("%+v", rj)
	}
	if rj := f.rejected("dev-1", iotjobs.UpdateTopic("dev-1", "j"), `{"status":"SUCCEEDED","executionNumber":7}`); rj.Code != iotjobs.CodeResourceNotFound {
		t.Fatalf("%+v", rj)
	}
	// The retry times out, is retried once more (TIMED_OUT budget), then fails for good.
	f.startNext("dev-1", `{"stepTimeoutInMinutes":1}`)
	f.tick(time.Minute)
	if e := f.exec("j", "dev-1"); e.ExecutionNumber != 3 || e.Status != iotjobs.StatusQueued {
		t.Fatalf("%+v", e)
	}
	f.update("dev-1", "j", `{"status":"FAILED"}`)
	if e := f.exec("j", "dev-1"); e.ExecutionNumber != 3 || e.Status != iotjobs.StatusFailed || f.jobStatus("j") != JobCompleted {
		t.Fatalf("%+v", e)
	}
	info, _ := f.s.JobInfo("j")
	if info.Counts[iotjobs.StatusFailed] != 1 || info.Counts[iotjobs.StatusQueued] != 0 {
		t.Fatalf("counts %v", info.Counts)
	}
}

// memGroups is an in-memory Groups: group → members.
type memGroups struct {
	mu sync.Mutex
	m  map[string][]string
}

func (g *memGroups) ThingsInGroup(group string) ([]string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.m[group]
	if !ok {
		return nil, errors.New("no such group")
	}
	return slices.Clone(m), nil
}

func (g *memGroups) GroupsOfThing(thing string) ([]string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for name, m := range g.m {
		if slices.Contains(m, thing) {
			out = append(out, name)
		}
	}
	return out, nil
}

func (g *memGroups) set(group string, things ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.m[group] = things
}

func TestGroupsSnapshotAndContinuous(t *testing.T) {
	g := &memGroups{m: map[string][]string{"fleet": {"a", "b"}, "other": {"z"}}}
	f := newFixture(t, func(c *Config) { c.Groups = g })
	snap := f.create(JobSpec{JobID: "snap", Groups: []string{"fleet"}})
	cont := f.create(JobSpec{JobID: "cont", Groups: []string{"fleet"}, Things: []string{"z"}, TargetSelection: Continuous})
	if snap.TargetSelection != Snapshot || cont.TargetSelection != Continuous ||
		!slices.Equal(cont.Targets, []string{"arn:aws:iot:us-east-1:000000000000:thing/z", "arn:aws:iot:us-east-1:000000000000:thinggroup/fleet"}) {
		t.Fatalf("%+v %+v", snap, cont)
	}
	if got := f.statuses("cont", "a", "b", "c", "z"); got != "QUEUED,QUEUED,-,QUEUED" {
		t.Fatal(got)
	}
	// c joins the group: the continuous job reaches it, the snapshot one does not.
	g.set("fleet", "a", "b", "c")
	f.rec.take()
	if err := f.s.ReconcileThing("c"); err != nil {
		t.Fatal(err)
	}
	msgs := f.rec.take()
	if got := f.statuses("cont", "c") + f.statuses("snap", "c"); got != "QUEUED-" || !hasTopic(msgs, iotjobs.NotifyNextTopic("c").String()) {
		t.Fatal(got, topics(msgs))
	}
	// Reconciling again changes nothing.
	if f.s.ReconcileThing("c"); len(f.rec.take()) != 0 {
		t.Fatal("a second reconcile sent messages")
	}
	// b leaves: its continuous execution is REMOVED, its snapshot one stays.
	f.startNext("b", `{}`) // snap is b's oldest: IN_PROGRESS
	g.set("fleet", "a", "c")
	f.rec.take()
	f.s.ReconcileThing("b")
	msgs = f.rec.take()
	if got := f.statuses("cont", "b") + "," + f.statuses("snap", "b"); got != "REMOVED,IN_PROGRESS" {
		t.Fatal(got)
	}
	findTopic(t, msgs, "$aws/events/jobExecution/cont/removed", nil)
	// z is targeted directly: leaving "other" changes nothing.
	g.set("other")
	f.s.ReconcileThing("z")
	if f.statuses("cont", "z") != "QUEUED" {
		t.Fatal("a directly targeted thing was removed")
	}
	// b comes back: a new execution, number 2.
	g.set("fleet", "a", "b", "c")
	f.s.ReconcileThing("b")
	if e := f.exec("cont", "b"); e.Status != iotjobs.StatusQueued || e.ExecutionNumber != 2 {
		t.Fatalf("%+v", e)
	}
	// A thing whose execution ended does not run the job again when it rejoins.
	f.update("a", "cont", `{"status":"SUCCEEDED"}`)
	g.set("fleet", "b", "c")
	f.s.ReconcileThing("a")
	g.set("fleet", "a", "b", "c")
	f.s.ReconcileThing("a")
	if e := f.exec("cont", "a"); e.Status != iotjobs.StatusSucceeded || e.ExecutionNumber != 1 {
		t.Fatalf("%+v", e)
	}
	// A continuous job never completes on its own.
	for _, th := range []string{"b", "c", "z"} {
		f.update(th, "cont", `{"status":"SUCCEEDED"}`)
	}
	if f.jobStatus("cont") != JobInProgress {
		t.Fatal("a continuous job completed")
	}
	// Unknown groups and group targets without a resolver are refused.
	if _, err := f.s.CreateJob(JobSpec{JobID: "x", Groups: []string{"nope"}, Document: []byte(`{}`)}); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	f2 := newFixture(t)
	if _, err := f2.s.CreateJob(JobSpec{JobID: "x", Groups: []string{"fleet"}, Document: []byte(`{}`)}); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	// An empty group: a snapshot job with nothing to do is complete at once.
	g.set("empty")
	if j := f.create(JobSpec{JobID: "e", Groups: []string{"empty"}}); j.Status != JobCompleted {
		t.Fatalf("%+v", j)
	}
}

func TestRolloutWithContinuousLeave(t *testing.T) {
	g := &memGroups{m: map[string][]string{"fleet": {"a", "b", "c"}}}
	f := newFixture(t, func(c *Config) { c.Groups = g })
	f.create(JobSpec{JobID: "j", Groups: []string{"fleet"}, TargetSelection: Continuous, Rollout: &RolloutConfig{MaximumPerMinute: 1}})
	g.set("fleet", "a", "b")
	f.s.ReconcileThing("c") // c leaves while waiting for the rollout
	f.tick(time.Minute)
	f.tick(time.Minute)
	if got := f.statuses("j", "a", "b", "c"); got != "QUEUED,QUEUED,-" {
		t.Fatal(got)
	}
}

func TestCancelJobService(t *testing.T) {
	f := newFixture(t)
	things := []string{"d1", "d2", "d3"}
	f.create(JobSpec{JobID: "j", Things: things})
	f.startNext("d1", `{}`)
	f.update("d2", "j", `{"status":"SUCCEEDED"}`)
	f.rec.take()
	j, err := f.s.CancelJob("j", false, "bad build", "BAD_BUILD")
	if err != nil || j.Status != JobCanceled || j.Comment != "bad build" || j.ReasonCode != "BAD_BUILD" || j.ForceCanceled {
		t.Fatalf("%+v %v", j, err)
	}
	msgs := f.rec.take()
	if got := f.statuses("j", things...); got != "IN_PROGRESS,SUCCEEDED,CANCELED" {
		t.Fatal(got)
	}
	findTopic(t, msgs, "$aws/events/job/j/canceled", nil)
	var nn iotjobs.NotifyNextMessage
	find(t, msgs, iotjobs.NotifyNextTopic("d3"), &nn)
	if nn.Execution != nil {
		t.Fatal("d3 still has a next execution")
	}
	// Again with force: the IN_PROGRESS one goes too, with forceCanceled.
	j, _ = f.s.CancelJob("j", true, "", "")
	if e := f.exec("j", "d1"); !j.ForceCanceled || e.Status != iotjobs.StatusCanceled || !e.ForceCanceled || j.Comment != "bad build" {
		t.Fatalf("%+v %+v", j, e)
	}
	// The device learns it is over by reading the execution, and which
	// status it has by updating it.
	if r := f.rejected("d1", iotjobs.DescribeTopic("d1", "j"), `{}`); r.Code != iotjobs.CodeTerminalStateReached {
		t.Fatal(r)
	}
	if r := f.rejected("d1", iotjobs.UpdateTopic("d1", "j"), `{"status":"SUCCEEDED","expectedVersion":2}`); r.Code != iotjobs.CodeVersionMismatch || r.ExecutionState.Status != iotjobs.StatusCanceled {
		t.Fatalf("%+v", r)
	}
	if _, err := f.s.CancelJob("nope", false, "", ""); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	f.create(JobSpec{JobID: "done", Things: []string{"d1"}})
	f.update("d1", "done", `{"status":"SUCCEEDED"}`)
	if _, err := f.s.CancelJob("done", true, "", ""); !errors.Is(err, ErrInvalidState) {
		t.Fatal(err)
	}
}

func TestCancelExecutionService(t *testing.T) {
	f := newFixture(t)
	f.create(JobSpec{JobID: "j", Things: []string{"d1", "d2"}})
	f.startNext("d1", `{}`)
	if _, err := f.s.CancelExecution("j", "d1", CancelRequest{}); !errors.Is(err, ErrInvalidState) {
		t.Fatal(err)
	}
	v := int64(1)
	if _, err := f.s.CancelExecution("j", "d1", CancelRequest{Force: true, ExpectedVersion: &v}); !errors.Is(err, ErrVersionConflict) {
		t.Fatal(err)
	}
	f.rec.take()
	e, err := f.s.CancelExecution("j", "d1", CancelRequest{Force: true, StatusDetails: iotjobs.StatusDetails{"why": "ops"}})
	if err != nil || e.Status != iotjobs.StatusCanceled || !e.ForceCanceled || e.StatusDetails["why"] != "ops" {
		t.Fatalf("%+v %v", e, err)
	}
	msgs := f.rec.take()
	findTopic(t, msgs, "$aws/events/jobExecution/j/canceled", nil)
	find(t, msgs, iotjobs.NotifyNextTopic("d1"), nil)
	if _, err := f.s.CancelExecution("j", "d1", CancelRequest{Force: true}); !errors.Is(err, ErrInvalidState) {
		t.Fatal(err)
	}
	if _, err := f.s.CancelExecution("j", "nope", CancelRequest{}); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	// The job completes once its last execution is canceled.
	f.s.CancelExecution("j", "d2", CancelRequest{})
	if f.jobStatus("j") != JobCompleted {
		t.Fatal(f.jobStatus("j"))
	}
}

func TestDeleteJobService(t *testing.T) {
	f := newFixture(t)
	f.create(JobSpec{JobID: "a", Things: []string{"d1", "d2"}, Timeout: &TimeoutConfig{InProgressTimeoutInMinutes: 5}, Rollout: &RolloutConfig{MaximumPerMinute: 1}})
	f.clk.Advance(time.Second)
	f.create(JobSpec{JobID: "b", Things: []string{"d1"}})
	f.startNext("d1", `{}`)
	if err := f.s.DeleteJob("a", false); !errors.Is(err, ErrInvalidState) {
		t.Fatal(err)
	}
	f.s.CancelJob("a", false, "", "")
	// As on AWS, a CANCELED job may be deleted without force even though
	// an execution of it is still IN_PROGRESS.
	f.rec.take()
	if err := f.s.DeleteJob("a", false); err != nil {
		t.Fatal("a CANCELED job with an IN_PROGRESS execution was not deletable:", err)
	}
	var je JobEvent
	findTopic(t, f.rec.take(), "$aws/events/job/a/deletion_in_progress", &je)
	if je.Status != "DELETION_IN_PROGRESS" || je.Operation != "deletion_in_progress" {
		t.Fatalf("%+v", je)
	}
	// The deletion takes a while: the job shows DELETION_IN_PROGRESS, its
	// id cannot be reused, it cannot be deleted or canceled again.
	if j, err := f.s.DescribeJob("a"); err != nil || j.Status != JobDeletionInProgress {
		t.Fatalf("%+v %v", j, err)
	}
	if _, err := f.s.CreateJob(JobSpec{JobID: "a", Things: []string{"d2"}, Document: []byte(`{}`)}); !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	if err := f.s.DeleteJob("a", true); !errors.Is(err, ErrInvalidState) {
		t.Fatal(err)
	}
	if _, err := f.s.CancelJob("a", true, "", ""); !errors.Is(err, ErrInvalidState) {
		t.Fatal(err)
	}
	msgs := f.tick(DefaultDeletionDelay)
	findTopic(t, msgs, "$aws/events/job/a/deleted", &je)
	if je.Status != "DELETED" {
		t.Fatalf("%+v", je)
	}
	findTopic(t, msgs, "$aws/events/jobExecution/a/deleted", nil)
	var nn iotjobs.NotifyNextMessage
	find(t, msgs, iotjobs.NotifyNextTopic("d1"), &nn)
	if nn.Execution == nil || nn.Execution.JobID != "b" {
		t.Fatalf("notify-next %+v", nn.Execution)
	}
	if _, err := f.s.DescribeJob("a"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if r := f.rejected("d1", iotjobs.DescribeTopic("d1", "a"), `{}`); r.Code != iotjobs.CodeResourceNotFound {
		t.Fatal(r)
	}
	if _, ok := f.s.NextTimer(); ok {
		t.Fatal("the deleted job's timers are left")
	}
	if err := f.s.DeleteJob("a", true); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	// The id can be used again.
	f.create(JobSpec{JobID: "a", Things: []string{"d2"}})
	if e := f.exec("a", "d2"); e.ExecutionNumber != 1 || e.Status != iotjobs.StatusQueued {
		t.Fatalf("%+v", e)
	}
}

func TestDeletionsAtOnceAreLimited(t *testing.T) {
	f := newFixture(t)
	for i := range MaxConcurrentDeletions + 1 {
		id := fmt.Sprint("j", i)
		f.create(JobSpec{JobID: id, Things: []string{"d1"}})
		err := f.s.DeleteJob(id, true)
		if i < MaxConcurrentDeletions && err != nil {
			t.Fatal(i, err)
		}
		if i == MaxConcurrentDeletions && !errors.Is(err, ErrLimitExceeded) {
			t.Fatalf("deletion %d: %v", i+1, err)
		}
	}
	f.tick(DefaultDeletionDelay)
	if err := f.s.DeleteJob(fmt.Sprint("j", MaxConcurrentDeletions), true); err != nil {
		t.Fatal(err)
	}
}

func TestPresignedURLsOnEveryDelivery(t *testing.T) {
	var mu sync.Mutex
	n := 0
	var expiries []time.Duration
	presign := func(bucket, key string, exp time.Duration) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		expiries = append(expiries, exp)
		return fmt.Sprintf("http://127.0.0.1:4566/%s/%s?X-Amz-Signature=%d", bucket, key, n), nil
	}
	f := newFixture(t, func(c *Config) { c.Presign = presign })
	doc := `{"url":"${aws:iot:s3-presigned-url:https://s3.us-east-1.amazonaws.com/fw/app.bin}"}`
	f.create(JobSpec{JobID: "j", Things: []string{"d1"}, Document: []byte(doc), PresignedURL: &PresignedURLConfig{ExpiresInSec: 120}})
	urls := map[string]bool{}
	url := func(raw json.RawMessage) string {
		t.Helper()
		var d struct{ URL string }
		if err := json.Unmarshal(raw, &d); err != nil || !strings.HasPrefix(d.URL, "http://127.0.0.1:4566/fw/app.bin?X-Amz-Signature=") {
			t.Fatalf("document %s: %v", raw, err)
		}
		if urls[d.URL] {
			t.Fatalf("URL %s delivered twice", d.URL)
		}
		urls[d.URL] = true
		return d.URL
	}
	var nn iotjobs.NotifyNextMessage
	find(t, f.rec.take(), iotjobs.NotifyNextTopic("d1"), &nn)
	url(nn.Execution.JobDocument)
	url(f.describe("d1", "$next", `{}`).JobDocument)
	url(f.describe("d1", "j", `{"includeJobDocument":true}`).JobDocument)
	url(f.startNext("d1", `{}`).JobDocument)
	url(f.update("d1", "j", `{"status":"IN_PROGRESS","includeJobDocument":true}`).JobDocument)
	if len(f.describe("d1", "j", `{"includeJobDocument":false}`).JobDocument) != 0 {
		t.Fatal("document sent although not asked for")
	}
	mu.Lock()
	if slices.ContainsFunc(expiries, func(d time.Duration) bool { return d != 2*time.Minute }) {
		t.Fatalf("expiries %v", expiries)
	}
	mu.Unlock()
	// The stored document keeps its placeholder.
	if d, _ := f.s.JobDocument("j"); string(d) != doc {
		t.Fatal(string(d))
	}
	// Without a presigner, such a document is refused; so is a malformed placeholder.
	f2 := newFixture(t)
	if _, err := f2.s.CreateJob(JobSpec{JobID: "j", Things: []string{"d1"}, Document: []byte(doc)}); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	if _, err := f.s.CreateJob(JobSpec{JobID: "k", Things: []string{"d1"}, Document: []byte(`{"u":"${aws:iot:s3-presigned-url:nope}"}`)}); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
}

func TestTerminalStateReached(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Groups = nil })
	f.create(JobSpec{JobID: "j", Things: []string{"d1"}, Retry: &RetryConfig{CriteriaList: []RetryCriteria{{FailureType: FailureFailed, NumberOfRetries: 1}}}})
	f.update("d1", "j", `{"status":"FAILED"}`)
	// The retry (execution 2) is pending; execution 1 is terminal.
	msgs := f.call("d1", iotjobs.DescribeTopic("d1", "j"), `{"clientToken":"c","executionNumber":1}`)
	var r iotjobs.ErrorResponse
	find(t, msgs, iotjobs.DescribeTopic("d1", "j").Rejected(), &r)
	if r.Code != iotjobs.CodeTerminalStateReached || r.ClientToken != "c" || r.ExecutionState != nil {
		t.Fatalf("%+v", r)
	}
	f.update("d1", "j", `{"status":"SUCCEEDED"}`)
	find(t, f.call("d1", iotjobs.DescribeTopic("d1", "j"), `{"clientToken":"d"}`), iotjobs.DescribeTopic("d1", "j").Rejected(), &r)
	if r.Code != iotjobs.CodeTerminalStateReached || r.ClientToken != "d" {
		t.Fatalf("%+v", r)
	}
	// An update of it says which terminal state it is in.
	if r := f.rejected("d1", iotjobs.UpdateTopic("d1", "j"), `{"status":"IN_PROGRESS"}`); r.Code != iotjobs.CodeInvalidStateTransition ||
		r.ExecutionState == nil || r.ExecutionState.Status != iotjobs.StatusSucceeded {
		t.Fatalf("%+v", r)
	}
}

func TestInvalidJSONAndUTF8(t *testing.T) {
	f := newFixture(t)
	f.create(JobSpec{JobID: "j", Things: []string{"d1"}})
	for _, p := range []string{`{"status":`, "{\"status\":\"IN_PROGRESS\",\"clientToken\":\"\xff\"}", `[1,2]x`} {
		if r := f.rejected("d1", iotjobs.UpdateTopic("d1", "j"), p); r.Code != iotjobs.CodeInvalidJSON {
			t.Errorf("%q: %+v", p, r)
		}
	}
	// Valid JSON of the wrong shape is InvalidRequest.
	for _, p := range []string{`[1]`, `"x"`, `{"status":["x"]}`, `{"expectedVersion":"one"}`} {
		if r := f.rejected("d1", iotjobs.UpdateTopic("d1", "j"), p); r.Code != iotjobs.CodeInvalidRequest {
			t.Errorf("%q: %+v", p, r)
		}
	}
}

func TestInternalError(t *testing.T) {
	f := newFixture(t)
	f.create(JobSpec{JobID: "j", Things: []string{"d1"}})
	// A damaged record: the request is answered InternalError, not dropped.
	if err := f.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketExecs).Put(execKey("d1", "j"), []byte("{")) }); err != nil {
		t.Fatal(err)
	}
	r := f.rejected("d1", iotjobs.GetPendingTopic("d1"), `{"clientToken":"tok"}`)
	if r.Code != iotjobs.CodeInternalError || r.ClientToken != "tok" {
		t.Fatalf("%+v", r)
	}
}

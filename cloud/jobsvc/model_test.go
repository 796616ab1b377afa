package jobsvc

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/awsfota/awsfota/iotjobs"
)

// The pure rules of the service, tested without a database, a broker or a
// clock: time is a parameter.

func ex(st iotjobs.Status) Execution {
	return Execution{JobID: "j", Thing: "t", Status: st, QueuedAt: t0, LastUpdatedAt: t0, VersionNumber: 3, ExecutionNumber: 1}
}

func TestTransitionTable(t *testing.T) {
	all := []iotjobs.Status{iotjobs.StatusQueued, iotjobs.StatusInProgress, iotjobs.StatusSucceeded, iotjobs.StatusFailed,
		iotjobs.StatusRejected, iotjobs.StatusTimedOut, iotjobs.StatusRemoved, iotjobs.StatusCanceled}
	allowed := map[[2]iotjobs.Status]bool{
		{iotjobs.StatusQueued, iotjobs.StatusInProgress}:     true,
		{iotjobs.StatusQueued, iotjobs.StatusSucceeded}:      true, // unconfirmed on AWS: allowed
		{iotjobs.StatusQueued, iotjobs.StatusFailed}:         true,
		{iotjobs.StatusQueued, iotjobs.StatusRejected}:       true,
		{iotjobs.StatusInProgress, iotjobs.StatusInProgress}: true,
		{iotjobs.StatusInProgress, iotjobs.StatusSucceeded}:  true,
		{iotjobs.StatusInProgress, iotjobs.StatusFailed}:     true,
	}
	now := t0.Add(time.Minute)
	for _, from := range all {
		for _, to := range all {
			e := ex(from)
			got, rej := applyUpdate(e, iotjobs.UpdateRequest{Status: to}, 0, now)
			switch {
			case !to.DeviceSettable():
				if rej == nil || rej.Code != iotjobs.CodeInvalidRequest || rej.ExecutionState != nil {
					t.Errorf("%s→%s: %+v, want InvalidRequest without executionState", from, to, rej)
				}
			case allowed[[2]iotjobs.Status{from, to}]:
				if rej != nil {
					t.Errorf("%s→%s refused: %v", from, to, rej)
					continue
				}
				if got.Status != to || got.VersionNumber != 4 || !got.LastUpdatedAt.Equal(now) {
					t.Errorf("%s→%s: %+v", from, to, got)
				}
			default:
				if rej == nil || rej.Code != iotjobs.CodeInvalidStateTransition || rej.ExecutionState == nil ||
					rej.ExecutionState.Status != from || rej.ExecutionState.VersionNumber != 3 {
					t.Errorf("%s→%s: %+v, want InvalidStateTransition with the execution's state", from, to, rej)
				}
			}
		}
	}
}

func TestApplyUpdateRejections(t *testing.T) {
	ip := ex(iotjobs.StatusInProgress)
	long := map[string]string{}
	for i := range 11 {
		long[fmt.Sprintf("k%d", i)] = "v"
	}
	cases := []struct {
		name  string
		req   iotjobs.UpdateRequest
		code  iotjobs.ErrorCode
		state bool
	}{
		{"no status", iotjobs.UpdateRequest{}, iotjobs.CodeInvalidRequest, false},
		{"service status", iotjobs.UpdateRequest{Status: iotjobs.StatusCanceled}, iotjobs.CodeInvalidRequest, false},
		{"11 details", iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress, StatusDetails: long}, iotjobs.CodeInvalidRequest, false},
		{"bad key", iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress, StatusDetails: iotjobs.StatusDetails{"a b": "v"}}, iotjobs.CodeInvalidRequest, false},
		{"empty value", iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress, StatusDetails: iotjobs.StatusDetails{"k": ""}}, iotjobs.CodeInvalidRequest, false},
		{"control char", iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress, StatusDetails: iotjobs.StatusDetails{"k": "a\nb"}}, iotjobs.CodeInvalidRequest, false},
		{"long value", iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress, StatusDetails: iotjobs.StatusDetails{"k": strings.Repeat("é", 1025)}}, iotjobs.CodeInvalidRequest, false},
		{"step 0", iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress, StepTimeoutInMinutes: iotjobs.Ptr(0)}, iotjobs.CodeInvalidRequest, false},
		{"step -2", iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress, StepTimeoutInMinutes: iotjobs.Ptr(-2)}, iotjobs.CodeInvalidRequest, false},
		{"step 10081", iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress, StepTimeoutInMinutes: iotjobs.Ptr(10081)}, iotjobs.CodeInvalidRequest, false},
		{"negative version", iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress, ExpectedVersion: iotjobs.Ptr(-1)}, iotjobs.CodeInvalidRequest, false},
		{"execution number", iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress, ExecutionNumber: iotjobs.Ptr(2)}, iotjobs.CodeResourceNotFound, false},
		{"version", iotjobs.UpdateRequest{Status: iotjobs.StatusSucceeded, ExpectedVersion: iotjobs.Ptr(2)}, iotjobs.CodeVersionMismatch, true},
		{"version before transition", iotjobs.UpdateRequest{Status: iotjobs.StatusRejected, ExpectedVersion: iotjobs.Ptr(2)}, iotjobs.CodeVersionMismatch, true},
		{"rejected from in progress", iotjobs.UpdateRequest{Status: iotjobs.StatusRejected, ExpectedVersion: iotjobs.Ptr(3)}, iotjobs.CodeInvalidStateTransition, true},
	}
	for _, c := range cases {
		got, rej := applyUpdate(ip, c.req, 0, t0)
		if rej == nil || rej.Code != c.code || (rej.ExecutionState != nil) != c.state || rej.Message == "" {
			t.Errorf("%s: %+v", c.name, rej)
		}
		if got.VersionNumber != ip.VersionNumber || got.Status != ip.Status {
			t.Errorf("%s: a rejected update changed the execution", c.name)
		}
	}
	// Accepted edge values: 10 details of 1024 characters, step 10080, -1.
	ten := iotjobs.StatusDetails{}
	for i := range 10 {
		ten[fmt.Sprintf("k:%d", i)] = strings.Repeat("x", 1024)
	}
	for _, req := range []iotjobs.UpdateRequest{
		{Status: iotjobs.StatusInProgress, StatusDetails: ten, ExpectedVersion: iotjobs.Ptr(3), ExecutionNumber: iotjobs.Ptr(1)},
		{Status: iotjobs.StatusInProgress, StepTimeoutInMinutes: iotjobs.Ptr(10080)},
		{Status: iotjobs.StatusInProgress, StepTimeoutInMinutes: iotjobs.Ptr(-1)},
	} {
		if _, rej := applyUpdate(ip, req, 0, t0); rej != nil {
			t.Errorf("%+v refused: %v", req, rej)
		}
	}
}

func TestApplyUpdateTimersAndDetails(t *testing.T) {
	q := ex(iotjobs.StatusQueued)
	q.StatusDetails = iotjobs.StatusDetails{"keep": "me"}
	now := t0.Add(time.Hour)
	// QUEUED→IN_PROGRESS starts the in-progress timer and a step timer.
	e, rej := applyUpdate(q, iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress, StepTimeoutInMinutes: iotjobs.Ptr(5)}, 30*time.Minute, now)
	if rej != nil {
		t.Fatal(rej)
	}
	if !e.StartedAt.Equal(now) || !e.InProgressTimeoutAt.Equal(now.Add(30*time.Minute)) || !e.StepTimeoutAt.Equal(now.Add(5*time.Minute)) ||
		!e.Deadline().Equal(now.Add(5*time.Minute)) || e.StatusDetails["keep"] != "me" {
		t.Fatalf("%+v", e)
	}
	if s := e.SecondsBeforeTimedOut(now.Add(time.Minute)); s == nil || *s != 240 {
		t.Fatalf("approximateSecondsBeforeTimedOut %v", s)
	}
	// A later IN_PROGRESS neither restarts startedAt nor the in-progress
	// timer; an omitted step timeout keeps the step timer; details replace.
	later := now.Add(2 * time.Minute)
	e2, _ := applyUpdate(e, iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress, StatusDetails: iotjobs.StatusDetails{"p": "1"}}, 30*time.Minute, later)
	if !e2.StartedAt.Equal(now) || !e2.InProgressTimeoutAt.Equal(e.InProgressTimeoutAt) || !e2.StepTimeoutAt.Equal(e.StepTimeoutAt) ||
		len(e2.StatusDetails) != 1 || e2.StatusDetails["p"] != "1" {
		t.Fatalf("%+v", e2)
	}
	// A new step timeout restarts the step timer from now; -1 clears it.
	e3, _ := applyUpdate(e2, iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress, StepTimeoutInMinutes: iotjobs.Ptr(60)}, 30*time.Minute, later)
	if !e3.StepTimeoutAt.Equal(later.Add(time.Hour)) || !e3.Deadline().Equal(e.InProgressTimeoutAt) {
		t.Fatalf("%+v", e3)
	}
	e4, _ := applyUpdate(e3, iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress, StepTimeoutInMinutes: iotjobs.Ptr(-1)}, 30*time.Minute, later)
	if !e4.StepTimeoutAt.IsZero() || !e4.Deadline().Equal(e.InProgressTimeoutAt) {
		t.Fatalf("%+v", e4)
	}
	// A terminal status stops every timer.
	e5, _ := applyUpdate(e3, iotjobs.UpdateRequest{Status: iotjobs.StatusSucceeded}, 30*time.Minute, later)
	if !e5.Deadline().IsZero() || e5.SecondsBeforeTimedOut(later) != nil {
		t.Fatalf("%+v", e5)
	}
	// No timers at all: no deadline.
	if e6, _ := applyUpdate(q, iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress}, 0, now); !e6.Deadline().IsZero() {
		t.Fatalf("%+v", e6)
	}
}

func TestTimeOut(t *testing.T) {
	e := ex(iotjobs.StatusInProgress)
	e.StepTimeoutAt = t0.Add(10 * time.Minute)
	if _, ok := timeOut(e, t0.Add(10*time.Minute-time.Nanosecond)); ok {
		t.Fatal("timed out early")
	}
	got, ok := timeOut(e, t0.Add(10*time.Minute))
	if !ok || got.Status != iotjobs.StatusTimedOut || got.VersionNumber != 4 || !got.Deadline().IsZero() {
		t.Fatalf("%+v %v", got, ok)
	}
	if _, ok := timeOut(ex(iotjobs.StatusInProgress), t0.Add(1000*time.Hour)); ok {
		t.Fatal("timed out without a timer")
	}
	done := ex(iotjobs.StatusSucceeded)
	done.StepTimeoutAt = t0
	if _, ok := timeOut(done, t0.Add(time.Hour)); ok {
		t.Fatal("a terminal execution timed out")
	}
}

func TestCancelRules(t *testing.T) {
	for _, c := range []struct {
		from    iotjobs.Status
		force   bool
		changed bool
	}{
		{iotjobs.StatusQueued, false, true}, {iotjobs.StatusQueued, true, true},
		{iotjobs.StatusInProgress, false, false}, {iotjobs.StatusInProgress, true, true},
		{iotjobs.StatusSucceeded, true, false}, {iotjobs.StatusFailed, true, false},
	} {
		got, changed := cancelForJob(ex(c.from), c.force, t0)
		if changed != c.changed || changed && (got.Status != iotjobs.StatusCanceled || got.ForceCanceled != (c.from == iotjobs.StatusInProgress)) {
			t.Errorf("CancelJob on %s force=%v: %+v %v", c.from, c.force, got, changed)
		}
	}
	v := int64(3)
	bad := int64(2)
	for _, c := range []struct {
		from iotjobs.Status
		req  CancelRequest
		err  error
	}{
		{iotjobs.StatusQueued, CancelRequest{}, nil},
		{iotjobs.StatusQueued, CancelRequest{ExpectedVersion: &v, StatusDetails: iotjobs.StatusDetails{"why": "operator"}}, nil},
		{iotjobs.StatusInProgress, CancelRequest{Force: true}, nil},
		{iotjobs.StatusInProgress, CancelRequest{}, ErrInvalidState},
		{iotjobs.StatusSucceeded, CancelRequest{Force: true}, ErrInvalidState},
		{iotjobs.StatusQueued, CancelRequest{ExpectedVersion: &bad}, ErrVersionConflict},
		{iotjobs.StatusQueued, CancelRequest{StatusDetails: iotjobs.StatusDetails{"bad key": "v"}}, ErrInvalid},
	} {
		got, err := cancelExecution(ex(c.from), c.req, t0)
		if !errors.Is(err, c.err) || err == nil && got.Status != iotjobs.StatusCanceled {
			t.Errorf("CancelJobExecution on %s %+v: %+v %v", c.from, c.req, got, err)
		}
		if err == nil && c.req.StatusDetails != nil && got.StatusDetails["why"] != "operator" {
			t.Errorf("statusDetails not set: %+v", got)
		}
	}
}

func TestRetryRules(t *testing.T) {
	cfg := &RetryConfig{CriteriaList: []RetryCriteria{{FailureType: FailureFailed, NumberOfRetries: 2}, {FailureType: FailureAll, NumberOfRetries: 1}}}
	failed := ex(iotjobs.StatusFailed)
	r1, ok := retry(cfg, failed, 7, t0)
	if !ok || r1.Status != iotjobs.StatusQueued || r1.ExecutionNumber != 2 || r1.VersionNumber != 1 || r1.RetryAttempt != 1 ||
		r1.Retries[FailureFailed] != 1 || r1.Seq != 7 || !r1.QueuedAt.Equal(t0) {
		t.Fatalf("%+v %v", r1, ok)
	}
	r1.Status = iotjobs.StatusFailed
	r2, ok := retry(cfg, r1, 8, t0)
	if !ok || r2.ExecutionNumber != 3 || r2.Retries[FailureFailed] != 2 {
		t.Fatalf("%+v", r2)
	}
	r2.Status = iotjobs.StatusFailed
	if _, ok := retry(cfg, r2, 9, t0); ok {
		t.Fatal("FAILED retried beyond its numberOfRetries")
	}
	// TIMED_OUT falls back to ALL: once.
	r2.Status = iotjobs.StatusTimedOut
	r3, ok := retry(cfg, r2, 9, t0)
	if !ok || r3.Retries[FailureAll] != 1 || r3.RetryAttempt != 3 {
		t.Fatalf("%+v", r3)
	}
	r3.Status = iotjobs.StatusTimedOut
	if _, ok := retry(cfg, r3, 10, t0); ok {
		t.Fatal("ALL retried beyond its numberOfRetries")
	}
	for _, st := range []iotjobs.Status{iotjobs.StatusRejected, iotjobs.StatusCanceled, iotjobs.StatusRemoved, iotjobs.StatusSucceeded} {
		if _, ok := retry(cfg, ex(st), 1, t0); ok {
			t.Errorf("%s retried", st)
		}
	}
	if _, ok := retry(nil, failed, 1, t0); ok {
		t.Error("retried without a retry config")
	}
	if _, ok := retry(&RetryConfig{CriteriaList: []RetryCriteria{{FailureType: FailureTimedOut, NumberOfRetries: 3}}}, failed, 1, t0); ok {
		t.Error("FAILED retried by a TIMED_OUT criterion")
	}
}

func TestAbortRules(t *testing.T) {
	cfg := &AbortConfig{CriteriaList: []AbortCriteria{{FailureType: FailureFailed, Action: "CANCEL", ThresholdPercentage: 50, MinNumberOfExecutedThings: 4}}}
	c := func(s, f, r, to, q int64) Counts {
		return Counts{iotjobs.StatusSucceeded: s, iotjobs.StatusFailed: f, iotjobs.StatusRejected: r, iotjobs.StatusTimedOut: to, iotjobs.StatusQueued: q}
	}
	for _, tc := range []struct {
		counts Counts
		due    bool
	}{
		{c(0, 3, 0, 0, 10), false}, // 3 executed < 4
		{c(1, 3, 0, 0, 10), true},  // 75% ≥ 50%
		{c(2, 2, 0, 0, 10), true},  // 50% ≥ 50%
		{c(3, 2, 0, 0, 10), false}, // 40%
		{c(2, 1, 2, 0, 10), false}, // REJECTED is not FAILED
	} {
		if _, due := abortDue(cfg, tc.counts); due != tc.due {
			t.Errorf("%v: due %v", tc.counts, due)
		}
	}
	all := &AbortConfig{CriteriaList: []AbortCriteria{{FailureType: FailureAll, Action: "CANCEL", ThresholdPercentage: 30, MinNumberOfExecutedThings: 1}}}
	if _, due := abortDue(all, c(4, 0, 1, 1, 0)); !due {
		t.Error("ALL counts REJECTED and TIMED_OUT")
	}
	if _, due := abortDue(all, Counts{iotjobs.StatusCanceled: 5, iotjobs.StatusRemoved: 5}); due {
		t.Error("canceled and removed executions are not executed")
	}
	if _, due := abortDue(nil, c(0, 10, 0, 0, 0)); due {
		t.Error("abort without criteria")
	}
}

func TestTargeted(t *testing.T) {
	j := &Job{TargetThings: []string{"a"}, TargetGroups: []string{"g1", "g2"}}
	for _, c := range []struct {
		thing  string
		groups []string
		want   bool
	}{{"a", nil, true}, {"b", nil, false}, {"b", []string{"g2"}, true}, {"b", []string{"x", "g1"}, true}, {"b", []string{"x"}, false}} {
		if got := targeted(j, c.thing, c.groups); got != c.want {
			t.Errorf("%s in %v: %v", c.thing, c.groups, got)
		}
	}
}

// rollout replays a rollout over the given minutes: at each step the clock
// is at t0+offset and returns how many executions were released.
func TestRolloutMaximumPerMinute(t *testing.T) {
	cfg := &RolloutConfig{MaximumPerMinute: 2}
	var st rolloutState
	waiting := int64(5)
	step := func(at time.Duration, want int64, wantWake time.Duration) {
		t.Helper()
		n, s2, wake := rolloutStep(cfg, st, t0.Add(at), waiting, 0)
		st = s2
		waiting -= n
		if n != want {
			t.Fatalf("at %v: released %d, want %d", at, n, want)
		}
		if wantWake < 0 && !wake.IsZero() || wantWake >= 0 && !wake.Equal(t0.Add(wantWake)) {
			t.Fatalf("at %v: wake %v, want t0+%v", at, wake, wantWake)
		}
	}
	step(0, 2, time.Minute)
	step(30*time.Second, 0, time.Minute)
	step(time.Minute, 2, 2*time.Minute)
	step(time.Minute+59*time.Second, 0, 2*time.Minute)
	step(5*time.Minute+10*time.Second, 1, -1) // windows stay aligned to t0
	if st.Released != 5 || !st.WindowStart.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("%+v", st)
	}
	// Without a config, everything goes at once.
	if n, _, wake := rolloutStep(nil, rolloutState{}, t0, 1000, 0); n != 1000 || !wake.IsZero() {
		t.Fatal(n, wake)
	}
}

func TestRolloutExponentialByNotified(t *testing.T) {
	cfg := &RolloutConfig{ExponentialRate: &ExponentialRate{BaseRatePerMinute: 1, IncrementFactor: 2,
		RateIncreaseCriteria: RateIncreaseCriteria{NumberOfNotifiedThings: 2}}}
	var st rolloutState
	waiting := int64(100)
	var got []int64
	for m := range 6 {
		n, s2, _ := rolloutStep(cfg, st, t0.Add(time.Duration(m)*time.Minute), waiting, 0)
		st, waiting = s2, waiting-n
		got = append(got, n)
	}
	// Each window allows the rate current when it opens, and every 2 things
	// notified double the rate: 1; 1 (2 notified: rate 2); 2 (4: rate 4);
	// 4 (8: two increases, rate 16); 16 (24: eight increases, capped at
	// 1000); the 76 left.
	want := []int64{1, 1, 2, 4, 16, 76}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("per minute %v, want %v (state %+v)", got, want, st)
	}
}

func TestRolloutExponentialBySucceededAndCaps(t *testing.T) {
	cfg := &RolloutConfig{MaximumPerMinute: 3, ExponentialRate: &ExponentialRate{BaseRatePerMinute: 1, IncrementFactor: 1.5,
		RateIncreaseCriteria: RateIncreaseCriteria{NumberOfSucceededThings: 1}}}
	var st rolloutState
	n, st, wake := rolloutStep(cfg, st, t0, 10, 0)
	if n != 1 || !wake.Equal(t0.Add(time.Minute)) {
		t.Fatal(n, wake)
	}
	// One success mid-window: the rate grows, but the window keeps its
	// allowance.
	n, st, _ = rolloutStep(cfg, st, t0.Add(10*time.Second), 9, 1)
	if n != 0 || st.Rate != 1.5 {
		t.Fatalf("%d %+v", n, st)
	}
	// Next window: floor(1.5) = 1.
	n, st, _ = rolloutStep(cfg, st, t0.Add(time.Minute), 9, 1)
	if n != 1 {
		t.Fatal(n)
	}
	// Three more successes: 1.5·1.5³ ≈ 5 but maximumPerMinute caps at 3.
	n, st, _ = rolloutStep(cfg, st, t0.Add(2*time.Minute), 8, 4)
	if n != 3 || st.Rate < 5 {
		t.Fatalf("%d %+v", n, st)
	}
	// AWS's ceiling of 1000 per minute.
	big := &RolloutConfig{ExponentialRate: &ExponentialRate{BaseRatePerMinute: 900, IncrementFactor: 5,
		RateIncreaseCriteria: RateIncreaseCriteria{NumberOfNotifiedThings: 1}}}
	var bs rolloutState
	_, bs, _ = rolloutStep(big, bs, t0, 5000, 0)
	n, bs, _ = rolloutStep(big, bs, t0.Add(time.Minute), 4100, 0)
	if n != MaxRolloutPerMinute || bs.Rate != MaxRolloutPerMinute {
		t.Fatalf("%d %+v", n, bs)
	}
}

func TestParseS3URL(t *testing.T) {
	for _, c := range []struct{ url, bucket, key string }{
		{"https://s3.amazonaws.com/fw/app.bin", "fw", "app.bin"},
		{"https://s3.eu-west-1.amazonaws.com/fw/dir/app 1.bin", "fw", "dir/app 1.bin"},
		{"https://s3-eu-west-1.amazonaws.com/fw/a%2Bb.bin", "fw", "a+b.bin"},
		{"https://fw.s3.amazonaws.com/dir/app.bin", "fw", "dir/app.bin"},
		{"https://my.bucket.s3.us-east-1.amazonaws.com/app.bin", "my.bucket", "app.bin"},
		{"http://127.0.0.1:4566/fw/app.bin", "fw", "app.bin"},
	} {
		b, k, err := ParseS3URL(c.url)
		if err != nil || b != c.bucket || k != c.key {
			t.Errorf("%s: %q %q %v", c.url, b, k, err)
		}
	}
	for _, bad := range []string{"", "s3://fw/app.bin", "https://s3.amazonaws.com/fw", "https://s3.amazonaws.com/", "ftp://x/y/z", "https://fw.s3.amazonaws.com/"} {
		if _, _, err := ParseS3URL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSubstitutePresigned(t *testing.T) {
	var asked []string
	presign := func(bucket, key string, exp time.Duration) (string, error) {
		asked = append(asked, fmt.Sprintf("%s/%s/%v", bucket, key, exp))
		return "http://127.0.0.1:1/" + bucket + "/" + key + "?X-Amz-Signature=abc&X-Amz-Expires=" + fmt.Sprint(int(exp.Seconds())), nil
	}
	doc := []byte(`{"a":"${aws:iot:s3-presigned-url:https://s3.us-east-1.amazonaws.com/fw/app.bin}","b":"${aws:iot:s3-presigned-url-v2:https://fw.s3.amazonaws.com/x/y}","c":"plain"}`)
	out, err := substitutePresigned(doc, presign, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":"http://127.0.0.1:1/fw/app.bin?X-Amz-Signature=abc&X-Amz-Expires=60","b":"http://127.0.0.1:1/fw/x/y?X-Amz-Signature=abc&X-Amz-Expires=60","c":"plain"}`
	if string(out) != want || len(asked) != 2 || asked[1] != "fw/x/y/1m0s" {
		t.Fatalf("%s\n%v", out, asked)
	}
	if out, err := substitutePresigned([]byte(`{"x":1}`), nil, time.Minute); err != nil || string(out) != `{"x":1}` {
		t.Fatal(out, err)
	}
	if _, err := substitutePresigned(doc, nil, time.Minute); !errors.Is(err, errNoPresigner) {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`{"a":"${aws:iot:s3-presigned-url:https://s3.amazonaws.com/fw"}`,
		`{"a":"${aws:iot:s3-presigned-url:s3://fw/app}"}`,
		`{"a":"${aws:iot:s3-presigned-url-v3:https://s3.amazonaws.com/fw/k}"}`,
	} {
		if _, err := findPlaceholders([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if got := jsonStringSafe(`a"b\c`); got != `a\"b\\c` {
		t.Fatal(got)
	}
}

func TestValidateSpec(t *testing.T) {
	ok := func() JobSpec { return JobSpec{JobID: "j", Things: []string{"a"}, Document: []byte(`{}`)} }
	good := []func(*JobSpec){
		func(s *JobSpec) {},
		func(s *JobSpec) { s.Things, s.Groups = nil, []string{"g"} },
		func(s *JobSpec) { s.TargetSelection = Continuous },
		func(s *JobSpec) { s.PresignedURL = &PresignedURLConfig{ExpiresInSec: 60} },
		func(s *JobSpec) { s.Timeout = &TimeoutConfig{InProgressTimeoutInMinutes: 10080} },
		func(s *JobSpec) { s.Rollout = &RolloutConfig{MaximumPerMinute: 1000} },
		func(s *JobSpec) {
			s.Rollout = &RolloutConfig{ExponentialRate: &ExponentialRate{BaseRatePerMinute: 1, IncrementFactor: 1.1, RateIncreaseCriteria: RateIncreaseCriteria{NumberOfSucceededThings: 1000}}}
		},
		func(s *JobSpec) {
			s.Abort = &AbortConfig{CriteriaList: []AbortCriteria{{FailureType: FailureAll, Action: "CANCEL", ThresholdPercentage: 100, MinNumberOfExecutedThings: 1}}}
		},
		func(s *JobSpec) {
			s.Retry = &RetryConfig{CriteriaList: []RetryCriteria{{FailureType: FailureFailed, NumberOfRetries: 5}, {FailureType: FailureTimedOut, NumberOfRetries: 5}}}
		},
	}
	for i, f := range good {
		s := ok()
		f(&s)
		if err := validateSpec(&s); err != nil {
			t.Errorf("good %d: %v", i, err)
		}
		if s.TargetSelection == "" {
			t.Errorf("good %d: targetSelection not defaulted", i)
		}
	}
	bad := []func(*JobSpec){
		func(s *JobSpec) { s.JobID = "a b" },
		func(s *JobSpec) { s.JobID = strings.Repeat("j", 65) },
		func(s *JobSpec) { s.Document = []byte(`[]`) },
		func(s *JobSpec) { s.Document = []byte(`null`) },
		func(s *JobSpec) { s.Document = []byte(`{"x":"` + strings.Repeat("x", 32*1024) + `"}`) },
		func(s *JobSpec) { s.Things = nil },
		func(s *JobSpec) { s.Things = []string{"a/b"} },
		func(s *JobSpec) { s.Description = strings.Repeat("d", 2029) },
		func(s *JobSpec) { s.TargetSelection = "SOMETIMES" },
		func(s *JobSpec) { s.PresignedURL = &PresignedURLConfig{ExpiresInSec: 59} },
		func(s *JobSpec) { s.PresignedURL = &PresignedURLConfig{ExpiresInSec: 3601} },
		func(s *JobSpec) { s.Timeout = &TimeoutConfig{} },
		func(s *JobSpec) { s.Timeout = &TimeoutConfig{InProgressTimeoutInMinutes: 10081} },
		func(s *JobSpec) { s.Rollout = &RolloutConfig{} },
		func(s *JobSpec) { s.Rollout = &RolloutConfig{MaximumPerMinute: 1001} },
		func(s *JobSpec) {
			s.Rollout = &RolloutConfig{ExponentialRate: &ExponentialRate{BaseRatePerMinute: 1, IncrementFactor: 1.09, RateIncreaseCriteria: RateIncreaseCriteria{NumberOfNotifiedThings: 1}}}
		},
		func(s *JobSpec) {
			s.Rollout = &RolloutConfig{ExponentialRate: &ExponentialRate{BaseRatePerMinute: 1, IncrementFactor: 2}}
		},
		func(s *JobSpec) {
			s.Rollout = &RolloutConfig{ExponentialRate: &ExponentialRate{BaseRatePerMinute: 0, IncrementFactor: 2, RateIncreaseCriteria: RateIncreaseCriteria{NumberOfNotifiedThings: 1}}}
		},
		func(s *JobSpec) { s.Abort = &AbortConfig{} },
		func(s *JobSpec) {
			s.Abort = &AbortConfig{CriteriaList: []AbortCriteria{{FailureType: "BAD", Action: "CANCEL", ThresholdPercentage: 10, MinNumberOfExecutedThings: 1}}}
		},
		func(s *JobSpec) {
			s.Abort = &AbortConfig{CriteriaList: []AbortCriteria{{FailureType: FailureAll, Action: "PAUSE", ThresholdPercentage: 10, MinNumberOfExecutedThings: 1}}}
		},
		func(s *JobSpec) {
			s.Abort = &AbortConfig{CriteriaList: []AbortCriteria{{FailureType: FailureAll, Action: "CANCEL", ThresholdPercentage: 101, MinNumberOfExecutedThings: 1}}}
		},
		func(s *JobSpec) {
			s.Abort = &AbortConfig{CriteriaList: []AbortCriteria{{FailureType: FailureAll, Action: "CANCEL", ThresholdPercentage: 10}}}
		},
		func(s *JobSpec) { s.Retry = &RetryConfig{} },
		func(s *JobSpec) {
			s.Retry = &RetryConfig{CriteriaList: []RetryCriteria{{FailureType: FailureRejected, NumberOfRetries: 1}}}
		},
		func(s *JobSpec) {
			s.Retry = &RetryConfig{CriteriaList: []RetryCriteria{{FailureType: FailureFailed, NumberOfRetries: 11}}}
		},
		func(s *JobSpec) {
			s.Retry = &RetryConfig{CriteriaList: []RetryCriteria{{FailureType: FailureFailed, NumberOfRetries: 6}, {FailureType: FailureAll, NumberOfRetries: 5}}}
		},
		func(s *JobSpec) {
			s.Retry = &RetryConfig{CriteriaList: []RetryCriteria{{FailureType: FailureFailed, NumberOfRetries: 1}, {FailureType: FailureFailed, NumberOfRetries: 1}}}
		},
	}
	for i, f := range bad {
		s := ok()
		f(&s)
		if err := validateSpec(&s); !errors.Is(err, ErrInvalid) {
			t.Errorf("bad %d: %v", i, err)
		}
	}
}

func TestNotifyKeys(t *testing.T) {
	a := Execution{JobID: "a", Status: iotjobs.StatusQueued, QueuedAt: t0, ExecutionNumber: 1}
	b := Execution{JobID: "b", Status: iotjobs.StatusQueued, QueuedAt: t0.Add(time.Second), ExecutionNumber: 1}
	start := func(e Execution) Execution { e.Status = iotjobs.StatusInProgress; return e }
	done := func(e Execution) Execution { e.Status = iotjobs.StatusSucceeded; return e }
	retried := func(e Execution) Execution { e.ExecutionNumber++; return e }
	for _, c := range []struct {
		name               string
		before, after      []Execution
		notify, notifyNext bool
	}{
		{"queued", nil, []Execution{a}, true, true},
		{"second queued", []Execution{a}, []Execution{a, b}, true, false},
		{"head starts", []Execution{a, b}, []Execution{start(a), b}, true, false},
		{"non-head starts: becomes head", []Execution{a, b}, []Execution{a, start(b)}, true, true},
		{"head done", []Execution{start(a), b}, []Execution{done(a), b}, true, true},
		{"last done", []Execution{start(a)}, []Execution{done(a)}, true, true},
		{"progress", []Execution{start(a)}, []Execution{start(a)}, false, false},
		{"retried head", []Execution{a}, []Execution{retried(a)}, true, true},
		{"deleted", []Execution{a, b}, []Execution{b}, true, true},
	} {
		if got := pendingKey(c.before) != pendingKey(c.after); got != c.notify {
			t.Errorf("%s: notify %v", c.name, got)
		}
		if got := headKey(c.before) != headKey(c.after); got != c.notifyNext {
			t.Errorf("%s: notify-next %v", c.name, got)
		}
	}
}

package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/awsfota/awsfota/iotjobs"
)

func TestHappyPathAcrossReboot(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	if e := x.event(EventStart); e.JobID != "fw-1" || e.Total != 4096 {
		t.Fatalf("start event %+v", e)
	}
	sd := x.action(StartDownload{}).(StartDownload)
	if sd.URL != "http://127.0.0.1:4566/fw/app.bin" || sd.Offset != 0 || sd.Size != 4096 {
		t.Fatalf("StartDownload %+v", sd)
	}
	toRebooting(t, x)
	if x.saved.Image == nil || string(x.saved.Image.BootHash) != string(newHash) {
		t.Fatal("verified image not persisted before the reboot")
	}

	// The bootloader swapped: the new image runs on trial.
	y := x.restart(Boot{Version: "1.0.1", BootHash: newHash})
	y.want(SelfTest{})
	y.phase(PhaseTesting)
	y.not(Confirm{})
	y.step(SelfTested{Base: y.b()})
	y.want(Confirm{})
	y.not(Publish{})
	y.step(Confirmed{Base: y.b()})
	y.phase(PhaseReporting)
	y.noPublish() // not connected yet
	y.connect()
	y.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusInProgress, 5, testDoc("")))
	u := y.update("fw-1")
	if u.Status != iotjobs.StatusSucceeded || u.StatusDetails["fwversion"] != "1.0.1" || u.StatusDetails["from"] != "1.0.0" || *u.ExpectedVersion != 5 {
		t.Fatalf("final report %+v", u)
	}
	y.accept("fw-1", u)
	y.phase(PhaseIdle)
	if e := y.event(EventCompleted); e.Status != iotjobs.StatusSucceeded {
		t.Fatalf("completed %+v", e)
	}
	// And it asks for the next job.
	var req iotjobs.DescribeRequest
	y.onlyPublish(iotjobs.DescribeTopic(thing, iotjobs.NextJobID), &req)
	y.not(Reboot{})
}

func TestIdleWithNothingPending(t *testing.T) {
	x := newH(t, State{}, defaultCfg())
	x.start(oldBoot)
	x.noPublish()
	x.connect()
	x.answerNext(nil)
	x.noPublish()
	x.phase(PhaseIdle)
	// A notify-next with a job starts it.
	x.msg(iotjobs.NotifyNextTopic(thing), iotjobs.NotifyNextMessage{Timestamp: 1, Execution: execution("fw-2", iotjobs.StatusQueued, 1, testDoc(""))})
	if u := x.update("fw-2"); u.Status != iotjobs.StatusInProgress {
		t.Fatal(u)
	}
}

func TestDuplicateNotifyNextIsHarmless(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	for i := 0; i < 3; i++ {
		x.msg(iotjobs.NotifyNextTopic(thing), iotjobs.NotifyNextMessage{Timestamp: 1, Execution: execution("fw-1", iotjobs.StatusQueued, 1, testDoc(""))})
		x.noPublish()
		x.not(StopDownload{}, ResetTarget{}, StartDownload{})
	}
	// A late duplicate $next/get reply (no request in flight) is ignored too.
	x.msg(iotjobs.DescribeTopic(thing, iotjobs.NextJobID).Accepted(), iotjobs.ExecutionResponse{Execution: execution("fw-9", iotjobs.StatusQueued, 1, testDoc("")), ClientToken: "n1-1"})
	x.noPublish()
	x.phase(PhaseDownloading)
}

func TestNotifyNextForAnotherJobCancels(t *testing.T) {
	for _, status := range []iotjobs.Status{iotjobs.StatusCanceled, iotjobs.StatusRemoved, iotjobs.StatusTimedOut} {
		t.Run(string(status), func(t *testing.T) {
			x := toDownloading(t, defaultCfg())
			x.msg(iotjobs.NotifyNextTopic(thing), iotjobs.NotifyNextMessage{Timestamp: 2, Execution: execution("fw-2", iotjobs.StatusQueued, 1, testDoc(""))})
			x.not(StopDownload{}) // not before the cloud confirms
			x.answerDescribe("fw-1", execution("fw-1", status, 3, testDoc("")))
			x.want(StopDownload{}, ResetTarget{})
			x.phase(PhaseIdle)
			if e := x.event(EventCanceled); e.JobID != "fw-1" || !strings.Contains(e.Message, string(status)) {
				t.Fatalf("canceled event %+v", e)
			}
			// It never reports on fw-1 again and moves on to the next job.
			x.answerNext(execution("fw-2", iotjobs.StatusQueued, 1, testDoc("")))
			x.update("fw-2")
			x.step(DownloadProgress{x.b(), 100, 100, 4096, ""}) // stale event from the stopped download
			x.noPublish()
		})
	}
}

func TestStaleNotifyNextDoesNotCancel(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	x.msg(iotjobs.NotifyNextTopic(thing), iotjobs.NotifyNextMessage{Timestamp: 0})
	x.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusInProgress, 2, testDoc("")))
	x.not(StopDownload{}, ResetTarget{})
	x.noPublish()
	x.phase(PhaseDownloading)
}

func TestJobDeletedWhileDownloading(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	x.msg(iotjobs.NotifyTopic(thing), iotjobs.NotifyMessage{Timestamp: 3, Jobs: map[iotjobs.Status][]iotjobs.JobExecutionSummary{}})
	var req iotjobs.DescribeRequest
	x.onlyPublish(iotjobs.DescribeTopic(thing, "fw-1"), &req)
	x.msg(iotjobs.DescribeTopic(thing, "fw-1").Rejected(), iotjobs.ErrorResponse{Code: iotjobs.CodeResourceNotFound, ClientToken: req.ClientToken})
	x.want(StopDownload{}, ResetTarget{})
	x.event(EventCanceled)
	x.phase(PhaseIdle)
}

func TestCancelDuringVerify(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	toVerifying(t, x)
	x.msg(iotjobs.NotifyNextTopic(thing), iotjobs.NotifyNextMessage{Timestamp: 4})
	x.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusCanceled, 4, testDoc("")))
	x.want(ResetTarget{})
	x.phase(PhaseIdle)
	// The verification finishing afterwards changes nothing.
	x.step(Verified{Base: x.b(), Image: newImg})
	x.not(Schedule{}, Persist{})
	x.phase(PhaseIdle)
}

func TestCancelBeforeSchedule(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	u := toReady(t, x)
	// The ready report is refused: the job was canceled meanwhile.
	x.reject("fw-1", u, iotjobs.CodeTerminalStateReached, &iotjobs.JobExecutionState{Status: iotjobs.StatusCanceled, VersionNumber: 4})
	x.want(ResetTarget{})
	x.not(Schedule{}, Reboot{})
	x.phase(PhaseIdle)
}

func TestVersionMismatchOnEachReport(t *testing.T) {
	// For each report, the cloud's version moved on (someone else wrote
	// statusDetails, or our earlier reply was lost): resend with the new one.
	x := newH(t, State{}, defaultCfg())
	x.start(oldBoot)
	x.connect()
	x.answerNext(execution("fw-1", iotjobs.StatusQueued, 1, testDoc("")))
	u := x.update("fw-1")
	x.reject("fw-1", u, iotjobs.CodeVersionMismatch, &iotjobs.JobExecutionState{Status: iotjobs.StatusQueued, VersionNumber: 2})
	u2 := x.update("fw-1")
	if *u2.ExpectedVersion != 2 || u2.Status != iotjobs.StatusInProgress {
		t.Fatalf("resent start %+v", u2)
	}
	x.not(StartDownload{})
	x.accept("fw-1", u2)
	x.want(StartDownload{})

	// Progress report.
	x.step(DownloadProgress{x.b(), 2048, 2048, 4096, ""})
	p := x.update("fw-1")
	x.reject("fw-1", p, iotjobs.CodeVersionMismatch, &iotjobs.JobExecutionState{Status: iotjobs.StatusInProgress, VersionNumber: 7})
	p2 := x.update("fw-1")
	if *p2.ExpectedVersion != 7 || p2.StatusDetails["progress"] != "50" {
		t.Fatalf("resent progress %+v", p2)
	}
	x.accept("fw-1", p2)
	x.step(DownloadDone{Base: x.b(), Total: 4096, ETag: ""})
	x.step(Verified{Base: x.b(), Image: newImg})
	r := x.update("fw-1")
	// The ready report was applied, but its reply was lost: the mismatch
	// carries exactly what we sent, so it counts as accepted.
	x.reject("fw-1", r, iotjobs.CodeVersionMismatch, &iotjobs.JobExecutionState{Status: r.Status, StatusDetails: r.StatusDetails, VersionNumber: 9})
	x.want(Schedule{})
	x.noPublish()
	x.step(Scheduled{Base: x.b()})

	y := x.restart(Boot{Version: "1.0.1", BootHash: newHash, Confirmed: true}) // confirmed before a power cut
	y.phase(PhaseReporting)
	y.connect()
	y.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusInProgress, 10, testDoc("")))
	f := y.update("fw-1")
	y.reject("fw-1", f, iotjobs.CodeVersionMismatch, &iotjobs.JobExecutionState{Status: iotjobs.StatusInProgress, VersionNumber: 11})
	f2 := y.update("fw-1")
	if *f2.ExpectedVersion != 11 || f2.Status != iotjobs.StatusSucceeded {
		t.Fatalf("resent final %+v", f2)
	}
	y.accept("fw-1", f2)
	y.phase(PhaseIdle)
}

func TestVersionMismatchWithoutStateRereads(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	x.step(DownloadProgress{x.b(), 2048, 2048, 4096, ""})
	p := x.update("fw-1")
	x.reject("fw-1", p, iotjobs.CodeVersionMismatch, nil)
	x.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusInProgress, 6, testDoc("")))
	if p2 := x.update("fw-1"); *p2.ExpectedVersion != 6 {
		t.Fatalf("resent %+v", p2)
	}
}

func TestRejectedUpdateRetriedWithBackoff(t *testing.T) {
	x := toDownloading(t, Config{RetryMin: time.Second, RetryMax: 4 * time.Second})
	x.step(DownloadDone{Base: x.b(), Total: 4096, ETag: ""})
	x.step(Verified{Base: x.b(), Image: newImg})
	u := x.update("fw-1")
	var waits []time.Duration
	for i := 0; i < 4; i++ {
		x.reject("fw-1", u, iotjobs.CodeInternalError, nil)
		x.noPublish()
		if x.last.WakeAt.IsZero() {
			t.Fatal("no wake-up asked for the retry")
		}
		waits = append(waits, x.last.WakeAt.Sub(x.now))
		x.now = x.last.WakeAt.Add(-time.Millisecond)
		x.step(Tick{x.b()})
		x.noPublish() // not yet
		x.now = x.now.Add(time.Millisecond)
		x.step(Tick{x.b()})
		u = x.update("fw-1") // never dropped
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("backoff %v, want %v", waits, want)
		}
	}
	x.accept("fw-1", u)
	x.want(Schedule{})
}

func TestUnansweredRequestIsResent(t *testing.T) {
	x := newH(t, State{}, Config{ReplyTimeout: 5 * time.Second})
	x.start(oldBoot)
	x.connect()
	var first iotjobs.DescribeRequest
	x.onlyPublish(iotjobs.DescribeTopic(thing, iotjobs.NextJobID), &first)
	if !x.last.WakeAt.Equal(x.now.Add(5 * time.Second)) {
		t.Fatalf("WakeAt %v", x.last.WakeAt)
	}
	x.advance(5 * time.Second)
	x.step(Tick{x.b()})
	var second iotjobs.DescribeRequest
	x.onlyPublish(iotjobs.DescribeTopic(thing, iotjobs.NextJobID), &second)
	if second.ClientToken == first.ClientToken {
		t.Fatal("resent with the same token")
	}
	// The late reply to the first request is ignored.
	x.msg(iotjobs.DescribeTopic(thing, iotjobs.NextJobID).Accepted(), iotjobs.ExecutionResponse{Execution: execution("old", iotjobs.StatusQueued, 1, testDoc("")), ClientToken: first.ClientToken})
	x.noPublish()
	x.phase(PhaseIdle)
}

func TestReportLostBeforeReboot(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	u := toReady(t, x)
	// The connection drops before the reply; the report may have been applied.
	x.step(Disconnected{x.b()})
	x.connect()
	// First re-read the execution: the ready report was applied (version 5).
	x.answerDescribe("fw-1", &iotjobs.JobExecution{JobID: "fw-1", Status: iotjobs.StatusInProgress, StatusDetails: u.StatusDetails, VersionNumber: 5})
	u2 := x.update("fw-1")
	if *u2.ExpectedVersion != 5 || u2.StatusDetails["state"] != "ready_to_reboot" {
		t.Fatalf("resent %+v", u2)
	}
	x.not(Schedule{})
	x.accept("fw-1", u2)
	x.want(Schedule{})
}

func TestFinalReportLostThenApplied(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	toRebooting(t, x)
	y := x.restart(Boot{Version: "1.0.1", BootHash: newHash, Confirmed: true})
	y.connect()
	y.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusInProgress, 4, testDoc("")))
	y.update("fw-1")
	// Power cut before the reply: after restart the execution is SUCCEEDED.
	z := y.restart(Boot{Version: "1.0.1", BootHash: newHash, Confirmed: true})
	z.phase(PhaseReporting)
	z.connect()
	z.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusSucceeded, 5, testDoc("")))
	z.phase(PhaseIdle)
	if e := z.event(EventCompleted); e.Status != iotjobs.StatusSucceeded {
		t.Fatal(e)
	}
	for _, a := range z.last.Actions {
		if n, ok := a.(Notify); ok && n.Event.Kind == EventCanceled {
			t.Fatal("an applied report was taken for a cancel")
		}
	}
}

func TestSelfTestFailure(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	toRebooting(t, x)
	y := x.restart(Boot{Version: "1.0.1", BootHash: newHash})
	y.step(SelfTested{Base: y.b(), Err: "sensor bus does not answer"})
	y.not(Confirm{})
	y.phase(PhaseReporting)
	y.connect()
	y.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusInProgress, 4, testDoc("")))
	u := y.update("fw-1")
	if u.Status != iotjobs.StatusFailed || u.StatusDetails["reason"] != ReasonSelfTestFailed || !strings.Contains(u.StatusDetails["message"], "sensor") {
		t.Fatalf("report %+v", u)
	}
	y.not(Reboot{})
	y.accept("fw-1", u)
	y.want(Reboot{}) // the reboot reverts the unconfirmed image
	y.phase(PhaseIdle)
}

func TestRollbackByBootloader(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	toRebooting(t, x)
	y := x.restart(oldBoot) // the bootloader refused or reverted
	// A revert leaves the image in the slot, a refusal erases it: look.
	if v := y.action(Verify{}).(Verify); !v.Resume || v.Size != 4096 {
		t.Fatalf("recheck %+v", v)
	}
	y.not(SelfTest{}, Confirm{}, StartDownload{})
	y.phase(PhaseVerifying)
	y.step(Verified{Base: y.b(), Failure: VerifyInvalid, Message: "no MCUboot image in the slot"})
	y.want(ResetTarget{})
	y.not(StartDownload{}, Schedule{})
	y.phase(PhaseReporting)
	y.connect()
	y.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusInProgress, 4, testDoc("")))
	u := y.update("fw-1")
	if u.Status != iotjobs.StatusFailed || u.StatusDetails["reason"] != ReasonRollback || u.StatusDetails["attempts"] != "1" ||
		u.StatusDetails["message"] != "after the reboot the device runs 1.0.0, not 1.0.1, and the slot no longer holds it (no MCUboot image in the slot): the bootloader refused it" {
		t.Fatalf("report %+v", u)
	}
}

// Every state persisted on the way must resume sensibly after a restart.
func TestRestartFromEveryPersistedState(t *testing.T) {
	var states []State
	x := newH(t, State{}, defaultCfg())
	record := func() {
		for _, a := range x.last.Actions {
			if p, ok := a.(Persist); ok {
				states = append(states, p.State)
			}
		}
	}
	x.start(oldBoot)
	x.connect()
	x.answerNext(execution("fw-1", iotjobs.StatusQueued, 1, testDoc("")))
	record()
	u := x.update("fw-1")
	x.accept("fw-1", u)
	record()
	x.step(DownloadProgress{x.b(), 2048, 2048, 4096, `"e"`})
	record()
	x.accept("fw-1", x.update("fw-1"))
	x.step(DownloadDone{Base: x.b(), Total: 4096, ETag: `"e"`})
	record()
	x.step(Verified{Base: x.b(), Image: newImg})
	record()
	x.accept("fw-1", x.update("fw-1"))
	x.step(Scheduled{Base: x.b()})
	record()

	for _, st := range states {
		t.Run(string(st.Phase), func(t *testing.T) {
			boot := oldBoot
			if st.Phase == PhaseRebooting {
				boot = Boot{Version: "1.0.1", BootHash: newHash}
			}
			y := newH(t, st, defaultCfg())
			y.step(Started{y.b(), boot, "r"})
			switch st.Phase {
			case PhaseStarting:
				y.connect()
				y.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusQueued, 1, testDoc("")))
				if u := y.update("fw-1"); u.Status != iotjobs.StatusInProgress {
					t.Fatal(u)
				}
			case PhaseDownloading:
				sd := y.action(StartDownload{}).(StartDownload)
				if sd.Offset != st.Offset || sd.ETag != st.ETag {
					t.Fatalf("resume %+v from %+v", sd, st)
				}
			case PhaseVerifying:
				if v := y.action(Verify{}).(Verify); !v.Resume || v.Size != 4096 {
					t.Fatal(v)
				}
			case PhaseReady:
				y.connect()
				y.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusInProgress, 3, testDoc("")))
				if u := y.update("fw-1"); u.StatusDetails["state"] != "ready_to_reboot" {
					t.Fatal(u)
				}
			case PhaseRebooting:
				y.want(SelfTest{})
			default:
				t.Fatalf("unexpected persisted phase %s", st.Phase)
			}
		})
	}
	if len(states) < 6 {
		t.Fatalf("only %d persisted states", len(states))
	}
}

func TestSwapHappenedButRebootNotRecorded(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	u := toReady(t, x)
	x.accept("fw-1", u)
	x.want(Schedule{})
	// Power cut after the trailer was written, before Scheduled was handled.
	y := x.restart(Boot{Version: "1.0.1", BootHash: newHash})
	y.want(SelfTest{})
	y.phase(PhaseTesting)
}

func TestRejectedOnlyFromQueued(t *testing.T) {
	custom := []byte(`{"operation":"reboot"}`)
	x := newH(t, State{}, defaultCfg())
	x.start(oldBoot)
	x.connect()
	x.answerNext(execution("c-1", iotjobs.StatusQueued, 1, custom))
	u := x.update("c-1")
	if u.Status != iotjobs.StatusRejected || u.StatusDetails["reason"] != ReasonUnsupportedOperation {
		t.Fatalf("report %+v", u)
	}
	// The same job already IN_PROGRESS (state lost) can only be FAILED.
	x = newH(t, State{}, defaultCfg())
	x.start(oldBoot)
	x.connect()
	x.answerNext(execution("c-1", iotjobs.StatusInProgress, 3, custom))
	if u := x.update("c-1"); u.Status != iotjobs.StatusFailed {
		t.Fatalf("report %+v", u)
	}
	// If the cloud still refuses REJECTED, the agent says FAILED.
	x = newH(t, State{}, defaultCfg())
	x.start(oldBoot)
	x.connect()
	x.answerNext(execution("c-1", iotjobs.StatusQueued, 1, custom))
	u = x.update("c-1")
	x.reject("c-1", u, iotjobs.CodeInvalidStateTransition, &iotjobs.JobExecutionState{Status: iotjobs.StatusInProgress, VersionNumber: 2})
	if u2 := x.update("c-1"); u2.Status != iotjobs.StatusFailed {
		t.Fatalf("resent %+v", u2)
	}
	if x.saved.Outcome.Status != iotjobs.StatusFailed {
		t.Fatal("persisted outcome still REJECTED")
	}
}

func TestCustomJobHandler(t *testing.T) {
	x := newH(t, State{}, Config{CustomJobs: true})
	x.start(oldBoot)
	x.connect()
	x.answerNext(execution("c-1", iotjobs.StatusQueued, 1, []byte(`{"operation":"reboot","delay":3}`)))
	rc := x.action(RunCustom{}).(RunCustom)
	if rc.JobID != "c-1" || !strings.Contains(string(rc.Document), "delay") {
		t.Fatal(rc)
	}
	x.phase(PhaseCustom)
	x.noPublish()
	x.step(CustomDone{Base: x.b(), JobID: "c-1", Status: iotjobs.StatusSucceeded, Details: iotjobs.StatusDetails{"rebooted": "yes"}})
	u := x.update("c-1")
	if u.Status != iotjobs.StatusSucceeded || u.StatusDetails["rebooted"] != "yes" {
		t.Fatal(u)
	}
	// After a restart mid-job the handler gets it again.
	y := newH(t, State{Phase: PhaseCustom, Job: &Job{ID: "c-1", Document: []byte(`{}`)}}, Config{CustomJobs: true})
	y.step(Started{y.b(), oldBoot, "x"})
	y.want(RunCustom{})
}

func TestDocumentFailures(t *testing.T) {
	cases := []struct {
		doc    string
		reason string
	}{
		{`{"operation":"app_fw_update"}`, ReasonInvalidDocument},
		{`"a string"`, ReasonInvalidDocument},
		{`{"location":{"host":"` + strings.Repeat("h", 300) + `","path":"p"}}`, ReasonLimitExceeded},
		{`{"location":{"protocol":"ftp:","host":"h","path":"p"}}`, ReasonUnsupportedOperation},
	}
	for _, c := range cases {
		x := newH(t, State{}, defaultCfg())
		x.start(oldBoot)
		x.connect()
		x.answerNext(execution("bad", iotjobs.StatusInProgress, 2, []byte(c.doc)))
		u := x.update("bad")
		if u.Status != iotjobs.StatusFailed || u.StatusDetails["reason"] != c.reason || u.StatusDetails["message"] == "" {
			t.Errorf("%s: report %+v", c.doc, u)
		}
		x.not(StartDownload{})
		if e := x.event(EventError); e.Reason != c.reason {
			t.Errorf("error event %+v", e)
		}
	}
}

func TestImageChecks(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	cases := []struct {
		name   string
		doc    []byte
		cfg    Config
		img    Image
		reason string
	}{
		{"size", testDoc(""), defaultCfg(), Image{Size: 4000, SHA256: newImg.SHA256, BootHash: newHash, Version: "1.0.1"}, ReasonHashMismatch},
		{"sha256", testDoc(`,"sha256":"` + sha + `"`), defaultCfg(), newImg, ReasonHashMismatch},
		{"fwversion", testDoc(""), defaultCfg(), Image{Size: 4096, SHA256: newImg.SHA256, BootHash: newHash, Version: "1.0.2"}, ReasonVersionMismatch},
		{"downgrade", []byte(`{"size":4096,"location":{"url":"http://h/p"}}`), defaultCfg(), Image{Size: 4096, BootHash: newHash, Version: "0.9.0"}, ReasonDowngrade},
		{"same version", []byte(`{"size":4096,"location":{"url":"http://h/p"}}`), defaultCfg(), Image{Size: 4096, BootHash: newHash, Version: "1.0.0"}, ReasonDowngrade},
		{"downgrade allowed", []byte(`{"size":4096,"location":{"url":"http://h/p"}}`), Config{AllowDowngrade: true}, Image{Size: 4096, BootHash: newHash, Version: "0.9.0"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := toDownloading(t, c.cfg, c.doc)
			x.step(DownloadDone{Base: x.b(), Total: 4096, ETag: ""})
			x.step(Verified{Base: x.b(), Image: c.img})
			u := x.update("fw-1")
			if c.reason == "" {
				if u.StatusDetails["state"] != "ready_to_reboot" {
					t.Fatal(u)
				}
				return
			}
			x.want(ResetTarget{})
			if u.Status != iotjobs.StatusFailed || u.StatusDetails["reason"] != c.reason {
				t.Fatalf("report %+v", u)
			}
		})
	}
	// The target's own refusals.
	for f, reason := range map[VerifyFailure]string{VerifyHashMismatch: ReasonHashMismatch, VerifyInvalid: ReasonInvalidImage, VerifyIO: ReasonFlashError,
		VerifyBadSignature: ReasonBadSignature, VerifyUnsigned: ReasonUnsigned} {
		x := toDownloading(t, defaultCfg())
		x.step(DownloadDone{Base: x.b(), Total: 4096, ETag: ""})
		x.step(Verified{Base: x.b(), Failure: f, Message: "boom"})
		x.want(ResetTarget{})
		if u := x.update("fw-1"); u.StatusDetails["reason"] != reason {
			t.Fatalf("%v: %+v", f, u)
		}
	}
}

func TestDownloadFailures(t *testing.T) {
	for f, reason := range map[DownloadFailure]string{FailNetwork: ReasonDownloadFailed, FailNotFound: ReasonDownloadFailed,
		FailTooLarge: ReasonTooLarge, FailTarget: ReasonFlashError} {
		x := toDownloading(t, defaultCfg())
		x.step(DownloadFailed{x.b(), f, "it broke"})
		x.want(ResetTarget{})
		if u := x.update("fw-1"); u.StatusDetails["reason"] != reason || u.StatusDetails["message"] != "it broke" {
			t.Fatalf("%v: %+v", f, u)
		}
	}
}

func TestExpiredURLIsRefreshed(t *testing.T) {
	x := toDownloading(t, Config{MaxURLRefreshes: 2})
	x.step(DownloadProgress{x.b(), 1024, 1024, 4096, `"e"`})
	x.accept("fw-1", x.update("fw-1"))
	fresh := []byte(`{"operation":"app_fw_update","size":4096,"location":{"url":"http://127.0.0.1:4566/fw/app.bin?sig=fresh"}}`)
	for i := 0; i < 2; i++ {
		x.step(DownloadFailed{x.b(), FailURLRejected, "403"})
		x.not(ResetTarget{})
		x.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusInProgress, 4, fresh))
		sd := x.action(StartDownload{}).(StartDownload)
		if !strings.HasSuffix(sd.URL, "sig=fresh") || sd.Offset != 1024 || sd.ETag != `"e"` {
			t.Fatalf("restart %+v", sd)
		}
	}
	// Still refused with no progress in between: give up.
	x.step(DownloadFailed{x.b(), FailURLRejected, "403"})
	x.want(ResetTarget{})
	if u := x.update("fw-1"); u.StatusDetails["reason"] != ReasonDownloadFailed {
		t.Fatal(u)
	}
}

func TestProgressRateLimit(t *testing.T) {
	x := toDownloading(t, Config{ProgressPercent: 25, ProgressInterval: time.Minute})
	reports := 0
	for recv := int64(100); recv <= 4000; recv += 100 {
		x.advance(time.Second)
		x.step(DownloadProgress{x.b(), recv, recv, 4096, ""})
		if len(x.published()) > 0 {
			reports++
			x.accept("fw-1", x.update("fw-1"))
		}
	}
	if reports != 3 { // 25, 50, 75 percent
		t.Fatalf("%d progress reports, want 3", reports)
	}
	// Slow download: the interval forces a report.
	x.advance(2 * time.Minute)
	x.step(DownloadProgress{x.b(), 4050, 4050, 4096, ""})
	if u := x.update("fw-1"); u.StatusDetails["bytes"] != "4050" {
		t.Fatal(u)
	}
}

func TestStateValidation(t *testing.T) {
	bad := []string{
		`{"phase":"idle","job":{"id":"x"}}`,
		`{"phase":"weird"}`,
		`{"phase":"downloading"}`,
		`{"phase":"reporting","job":{"id":"x"}}`,
		`{"phase":"testing","job":{"id":"x"}}`,
		`{"phase":"testing","job":{"id":"x"},"image":{"type":"mcuboot"},"trial":"maybe"}`,
		`{"phase":"downloading","job":{"id":"x"},"canceled":"gone"}`,
		`[`,
	}
	for _, b := range bad {
		if _, err := UnmarshalState([]byte(b)); err == nil {
			t.Errorf("%s accepted", b)
		}
	}
	if s, err := UnmarshalState([]byte(`{}`)); err != nil || s.Phase != PhaseIdle {
		t.Fatal(s, err)
	}
	if _, err := New(Config{Thing: "a b"}, State{}); err == nil {
		t.Fatal("bad thing accepted")
	}
}

func TestVersionHelpers(t *testing.T) {
	if !sameVersion("v1.0.2", "1.0.2") || !sameVersion("1.0.2", "1.0.2+7") || sameVersion("1.0.2+1", "1.0.2+7") || sameVersion("1.0.3", "1.0.2") {
		t.Fatal("sameVersion")
	}
	if !sameVersion("release-7", "1.0.0") {
		t.Fatal("an unparseable fwversion must not block")
	}
	if !newer("1.0.1", "1.0.0") || newer("1.0.0", "1.0.0") || newer("0.9.9", "1.0.0") || !newer("1.0.0", "") || newer("x", "1.0.0") {
		t.Fatal("newer")
	}
}

func TestIgnoresOtherThingsAndGarbage(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	x.step(Message{x.b(), iotjobs.NotifyNextTopic("dev-2").String(), []byte(`{"timestamp":1}`)})
	x.step(Message{x.b(), iotjobs.NotifyNextTopic(thing).String(), []byte(`garbage`)})
	x.step(Message{x.b(), "some/other/topic", []byte(`{}`)})
	x.noPublish()
	x.not(StopDownload{})
}

func TestSecurityCounterDowngrade(t *testing.T) {
	c := func(n uint32) *uint32 { return &n }
	cases := []struct {
		name    string
		running *uint32
		image   *uint32
		allow   bool
		reason  string
	}{
		{"higher", c(3), c(4), false, ""},
		{"equal", c(3), c(3), false, ""},
		{"lower", c(3), c(2), false, ReasonDowngrade},
		{"missing", c(3), nil, false, ReasonDowngrade},
		{"running has none", nil, c(1), false, ""},
		{"allowed", c(3), c(2), true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := newH(t, State{}, Config{AllowDowngrade: tc.allow})
			x.start(Boot{Version: "1.0.0", BootHash: oldHash, Confirmed: true, SecurityCounter: tc.running})
			x.connect()
			x.answerNext(execution("fw-1", iotjobs.StatusQueued, 1, testDoc("")))
			x.accept("fw-1", x.update("fw-1"))
			x.step(DownloadDone{Base: x.b(), Total: 4096, ETag: ""})
			img := newImg
			img.SecurityCounter = tc.image
			x.step(Verified{Base: x.b(), Image: img})
			u := x.update("fw-1")
			if tc.reason == "" {
				if u.StatusDetails["state"] != "ready_to_reboot" {
					t.Fatalf("report %+v", u)
				}
				return
			}
			if u.StatusDetails["reason"] != tc.reason || !strings.Contains(u.StatusDetails["message"], "security counter") {
				t.Fatalf("report %+v", u)
			}
			x.want(ResetTarget{})
		})
	}
}

func modemDoc(extra string) []byte {
	return []byte(`{"operation":"modem_fw_update","fwversion":"mfw_1.3.2"` + extra + `,"location":{"url":"http://h/m.patch"}}`)
}

var modemBoot = Boot{Version: "1.0.0", BootHash: oldHash, Confirmed: true, Components: map[string]string{"modem": "mfw_1.3.1"}}

func TestModemUpdate(t *testing.T) {
	base := strings.Repeat("ab", 32)
	x := newH(t, State{}, defaultCfg())
	x.start(modemBoot)
	x.connect()
	x.answerNext(execution("m-1", iotjobs.StatusQueued, 1, modemDoc(`,"base":{"sha256":"`+base+`","size":4096}`)))
	x.accept("m-1", x.update("m-1"))
	sd := x.action(StartDownload{}).(StartDownload)
	if sd.Component != "modem" || len(sd.BaseSHA256) != 32 || sd.BaseSize != 4096 {
		t.Fatalf("StartDownload %+v", sd)
	}
	x.step(DownloadDone{Base: x.b(), Total: 900, ETag: ""})
	if v := x.action(Verify{}).(Verify); v.Component != "modem" {
		t.Fatal(v)
	}
	x.step(Verified{Base: x.b(), Image: Image{Type: "delta", Size: 900, SHA256: []byte("s")}})
	u := x.update("m-1")
	if u.StatusDetails["component"] != "modem" || u.StatusDetails["fwversion"] != "mfw_1.3.2" {
		t.Fatalf("ready %+v", u)
	}
	x.accept("m-1", u)
	if s := x.action(Schedule{}).(Schedule); s.Component != "modem" {
		t.Fatal(s)
	}
	x.step(Scheduled{Base: x.b()})
	x.want(Reboot{})

	// The modem restarted with the new firmware: SUCCEEDED, no self-test.
	y := x.restart(Boot{Version: "1.0.0", BootHash: oldHash, Confirmed: true, Components: map[string]string{"modem": "mfw_1.3.2"}})
	y.not(SelfTest{}, Confirm{})
	y.phase(PhaseReporting)
	y.connect()
	y.answerDescribe("m-1", execution("m-1", iotjobs.StatusInProgress, 3, modemDoc("")))
	f := y.update("m-1")
	if f.Status != iotjobs.StatusSucceeded || f.StatusDetails["fwversion"] != "mfw_1.3.2" || f.StatusDetails["from"] != "mfw_1.3.1" {
		t.Fatalf("final %+v", f)
	}

	// The modem kept its old firmware: FAILED.
	z := x.restart(modemBoot)
	if z.saved.Outcome.Status != iotjobs.StatusFailed || z.saved.Outcome.Details["reason"] != ReasonModemUpdateFailed {
		t.Fatalf("outcome %+v", z.saved.Outcome)
	}
}

func TestBaseMismatchAndUnsupportedComponent(t *testing.T) {
	x := newH(t, State{}, defaultCfg())
	x.start(modemBoot)
	x.connect()
	x.answerNext(execution("d-1", iotjobs.StatusQueued, 1, testDoc(`,"base":{"sha256":"`+strings.Repeat("cd", 32)+`"}`)))
	x.accept("d-1", x.update("d-1"))
	x.step(DownloadFailed{x.b(), FailBaseMismatch, "runs another image"})
	x.want(ResetTarget{})
	if u := x.update("d-1"); u.StatusDetails["reason"] != ReasonBaseMismatch {
		t.Fatal(u)
	}
	// A device without a modem declines a modem job.
	x = newH(t, State{}, defaultCfg())
	x.start(oldBoot)
	x.connect()
	x.answerNext(execution("m-2", iotjobs.StatusQueued, 1, modemDoc("")))
	if u := x.update("m-2"); u.Status != iotjobs.StatusRejected || u.StatusDetails["reason"] != ReasonUnsupportedOperation {
		t.Fatal(u)
	}
	// An image type the component cannot take.
	x = toDownloading(t, defaultCfg())
	x.step(DownloadFailed{x.b(), FailUnsupported, "a modem image"})
	if u := x.update("fw-1"); u.StatusDetails["reason"] != ReasonUnsupportedOperation {
		t.Fatal(u)
	}
	// A file that is no image at all.
	x = toDownloading(t, defaultCfg())
	x.step(DownloadFailed{x.b(), FailInvalidImage, "not a firmware image"})
	if u := x.update("fw-1"); u.Status != iotjobs.StatusFailed || u.StatusDetails["reason"] != ReasonInvalidImage {
		t.Fatal(u)
	}
}

func TestComponentVersionMatching(t *testing.T) {
	cases := []struct {
		want, from, running string
		ok                  bool
	}{
		{"mfw_1.3.2", "mfw_1.3.1", "mfw_1.3.2", true},
		{"mfw_1.3.2", "mfw_1.3.1", "mfw_1.3.1", false},
		{"1.3.2", "1.3.1", "v1.3.2", true},
		{"1.3.2", "1.3.1", "1.3.2+7", true},
		{"1.3.2+1", "1.3.1", "1.3.2+7", false},
		{"", "mfw_1.3.1", "mfw_1.3.5", true},
		{"", "mfw_1.3.1", "mfw_1.3.1", false},
		{"1.3.2", "1.3.1", "", false},
	}
	for _, c := range cases {
		a := &Agent{st: State{Job: &Job{Component: "modem", FWVersion: c.want}, FromVersion: c.from}, boot: Boot{Components: map[string]string{"modem": c.running}}}
		if got := a.componentUpdated(); got != c.ok {
			t.Errorf("want %q from %q, running %q: %v", c.want, c.from, c.running, got)
		}
	}
}

func TestRestartInVerifyingFetchesDeltasAgain(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	x.step(DownloadDone{Base: x.b(), Total: 900, Kind: "delta"})
	y := x.restart(oldBoot)
	sd := y.action(StartDownload{}).(StartDownload)
	if sd.Offset != 0 || y.saved.Phase != PhaseDownloading {
		t.Fatalf("restart %+v in %s", sd, y.saved.Phase)
	}
	y.not(Verify{})
	// A full application image is re-checked in place.
	x = toDownloading(t, defaultCfg())
	x.step(DownloadDone{Base: x.b(), Total: 4096, Kind: "mcuboot"})
	y = x.restart(oldBoot)
	if v := y.action(Verify{}).(Verify); !v.Resume {
		t.Fatal(v)
	}
}

func TestStepTimeoutSentWithProgress(t *testing.T) {
	x := toDownloading(t, defaultCfg(), testDoc(`,"stepTimeoutInMinutes":7`))
	x.step(DownloadProgress{x.b(), 2048, 2048, 4096, ""})
	if u := x.update("fw-1"); u.StepTimeoutInMinutes == nil || *u.StepTimeoutInMinutes != 7 {
		t.Fatalf("progress report %+v", u)
	}
}

// The cloud may answer a describe of an execution that is over either with
// the execution (the local cloud before, and a lenient broker) or, as AWS
// documents it, with TerminalStateReached, which does not say how it
// ended. The agent works with both.

// terminalReached answers the pending {job}/get with TerminalStateReached.
func (x *h) terminalReached(job string) {
	x.t.Helper()
	var req iotjobs.DescribeRequest
	x.onlyPublish(iotjobs.DescribeTopic(thing, job), &req)
	x.msg(iotjobs.DescribeTopic(thing, job).Rejected(), iotjobs.ErrorResponse{Code: iotjobs.CodeTerminalStateReached,
		Message: "terminal", ClientToken: req.ClientToken, Timestamp: x.now.Unix()})
}

func TestTerminalStateReachedWhileDownloading(t *testing.T) {
	for _, reply := range []string{"accepted CANCELED", "TerminalStateReached"} {
		t.Run(reply, func(t *testing.T) {
			x := toDownloading(t, defaultCfg())
			x.msg(iotjobs.NotifyNextTopic(thing), iotjobs.NotifyNextMessage{Timestamp: 4})
			if reply == "TerminalStateReached" {
				x.terminalReached("fw-1")
			} else {
				x.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusCanceled, 4, testDoc("")))
			}
			x.want(StopDownload{}, ResetTarget{})
			x.event(EventCanceled)
			x.phase(PhaseIdle)
			x.not(Reboot{})
		})
	}
}

func TestFinalReportAfterRebootMeetsTerminalStateReached(t *testing.T) {
	for _, c := range []struct {
		name   string
		status iotjobs.Status // the execution's terminal status the update's rejection carries
		want   AppEventKind
	}{
		{"our report was applied", iotjobs.StatusSucceeded, EventCompleted},
		{"the cloud canceled it", iotjobs.StatusCanceled, EventCanceled},
	} {
		t.Run(c.name, func(t *testing.T) {
			x := toDownloading(t, defaultCfg())
			toRebooting(t, x)
			y := x.restart(Boot{Version: "1.0.1", BootHash: newHash, Confirmed: true})
			y.connect()
			y.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusInProgress, 4, testDoc("")))
			y.update("fw-1")
			// Power cut before the reply; after the restart the describe is
			// answered TerminalStateReached: the agent sends its report again,
			// and the rejection says how the execution ended.
			z := y.restart(Boot{Version: "1.0.1", BootHash: newHash, Confirmed: true})
			z.connect()
			z.terminalReached("fw-1")
			u := z.update("fw-1")
			if u.Status != iotjobs.StatusSucceeded {
				t.Fatalf("resent report %+v", u)
			}
			z.reject("fw-1", u, iotjobs.CodeInvalidStateTransition, &iotjobs.JobExecutionState{Status: c.status, VersionNumber: 5})
			z.phase(PhaseIdle)
			z.event(c.want)
			// Idle again: it asks for its next job.
			var req iotjobs.DescribeRequest
			z.onlyPublish(iotjobs.DescribeTopic(thing, iotjobs.NextJobID), &req)
		})
	}
}

func TestTerminalStateReachedTwiceGivesUp(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	u := toReady(t, x)
	// A cloud whose update rejection carries no state: the agent re-reads,
	// hears TerminalStateReached again, and stops rather than loop.
	x.reject("fw-1", u, iotjobs.CodeTerminalStateReached, nil)
	x.terminalReached("fw-1")
	u2 := x.update("fw-1")
	x.reject("fw-1", u2, iotjobs.CodeTerminalStateReached, nil)
	x.terminalReached("fw-1")
	x.want(ResetTarget{})
	x.event(EventCanceled)
	x.phase(PhaseIdle)
}

package agent

import (
	"strings"
	"testing"

	"github.com/awsfota/awsfota/iotjobs"
)

var trialBoot = Boot{Version: "1.0.1", BootHash: newHash} // the new image, on trial

// reinstall runs a device back on its old image after an interrupted trial
// through the recheck of the slot, the ready report of the next attempt and
// the reboot into it; it returns that ready report.
func reinstall(t *testing.T, y *h, version int64) iotjobs.UpdateRequest {
	t.Helper()
	if v := y.action(Verify{}).(Verify); !v.Resume || v.Size != 4096 {
		t.Fatalf("recheck %+v", v)
	}
	y.not(StartDownload{}, ResetTarget{})
	if !y.saved.Recheck || y.saved.Interrupted == "" {
		t.Fatalf("persisted %+v", y.saved)
	}
	y.step(Verified{Base: y.b(), Image: newImg})
	y.phase(PhaseReady)
	y.connect()
	y.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusInProgress, version, testDoc("")))
	u := y.update("fw-1")
	if u.Status != iotjobs.StatusInProgress || u.StatusDetails["state"] != "ready_to_reboot" {
		t.Fatalf("ready report %+v", u)
	}
	y.not(Schedule{})
	y.accept("fw-1", u)
	y.want(Schedule{})
	y.step(Scheduled{Base: y.b()})
	y.want(Reboot{})
	y.phase(PhaseRebooting)
	if y.saved.Trial != "" || y.saved.Recheck {
		t.Fatalf("the next attempt starts with %+v", y.saved)
	}
	return u
}

// A reset during the self-test (power loss, watchdog) is not the image's
// fault: the agent installs the image again from the slot, and the job
// succeeds on the second attempt, saying so.
func TestResetDuringSelfTestRetries(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	toRebooting(t, x)
	if x.saved.Attempts != 1 || x.saved.Trial != "" {
		t.Fatalf("persisted before the reboot: %+v", x.saved)
	}
	y := x.restart(trialBoot)
	y.want(SelfTest{})
	y.phase(PhaseTesting)
	if y.saved.Trial != TrialSelfTest {
		t.Fatalf("trial marker %q before the self-test", y.saved.Trial)
	}
	z := y.restart(oldBoot) // the watchdog fired; MCUboot reverted
	z.phase(PhaseVerifying)
	if e := z.event(EventRetry); !strings.HasSuffix(e.Message, "during its self-test reverted the new image: installing it again (attempt 2 of 3)") {
		t.Fatalf("retry event %+v", e)
	}
	if e := z.published(); len(e) != 0 {
		t.Fatalf("published before connecting: %v", e)
	}
	u := reinstall(t, z, 6)
	if u.StatusDetails["attempt"] != "2" || !strings.Contains(u.StatusDetails["interrupted"], "during its self-test") {
		t.Fatalf("ready report %+v", u)
	}
	if z.saved.Attempts != 2 {
		t.Fatalf("attempts %d", z.saved.Attempts)
	}
	w := z.restart(trialBoot)
	w.want(SelfTest{})
	w.step(SelfTested{Base: w.b()})
	w.want(Confirm{})
	if w.saved.Trial != TrialPassed {
		t.Fatalf("trial marker %q before confirming", w.saved.Trial)
	}
	w.step(Confirmed{Base: w.b()})
	w.connect()
	w.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusInProgress, 9, testDoc("")))
	f := w.update("fw-1")
	if f.Status != iotjobs.StatusSucceeded || f.StatusDetails["attempts"] != "2" {
		t.Fatalf("final report %+v", f)
	}
}

// A power cut right after the trial boot, before the agent noted that the
// new image runs: the slot still holds it (a refusal would have erased
// it), so it is installed again.
func TestResetRightAfterTrialBootRetries(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	toRebooting(t, x)
	y := x.restart(oldBoot)
	u := reinstall(t, y, 5)
	if u.StatusDetails["attempt"] != "2" || !strings.Contains(u.StatusDetails["interrupted"], "runs 1.0.0, not 1.0.1") {
		t.Fatalf("ready report %+v", u)
	}
}

// A reset after the self-test passed but before the confirmation landed.
func TestResetBeforeConfirmRetries(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	toRebooting(t, x)
	y := x.restart(trialBoot)
	y.step(SelfTested{Base: y.b()})
	y.want(Confirm{})
	z := y.restart(oldBoot) // cut before Confirm was written
	u := reinstall(t, z, 5)
	if !strings.Contains(u.StatusDetails["interrupted"], "after its self-test passed, before it was confirmed") {
		t.Fatalf("ready report %+v", u)
	}
}

// Every attempt reset: after InstallAttempts the job FAILED, with the count.
func TestResetsExhaustAttempts(t *testing.T) {
	for _, n := range []int{0, 2} { // 0: the default, 3
		cfg := defaultCfg()
		cfg.InstallAttempts = n
		want := n
		if n == 0 {
			want = 3
		}
		x := toDownloading(t, cfg)
		toRebooting(t, x)
		y := x
		for i := 1; ; i++ {
			y = y.restart(trialBoot)
			y.phase(PhaseTesting)
			y = y.restart(oldBoot)
			if i == want {
				break
			}
			reinstall(t, y, int64(10*i))
		}
		y.want(ResetTarget{})
		y.not(Verify{}, StartDownload{})
		y.phase(PhaseReporting)
		y.connect()
		y.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusInProgress, 50, testDoc("")))
		u := y.update("fw-1")
		d := u.StatusDetails
		if u.Status != iotjobs.StatusFailed || d["reason"] != ReasonTrialReset || d["attempts"] != itoa(want) ||
			!strings.HasSuffix(d["message"], "during its self-test reverted the new image (attempt "+itoa(want)+" of "+itoa(want)+")") {
			t.Fatalf("%d attempts: report %+v", want, u)
		}
	}
}

func itoa(n int) string { return string(rune('0' + n)) }

// A failed self-test is the image's fault: FAILED at once, no retry.
func TestSelfTestFailureIsNotRetried(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	toRebooting(t, x)
	y := x.restart(trialBoot)
	y.step(SelfTested{Base: y.b(), Err: "the radio does not answer"})
	y.phase(PhaseReporting)
	// A cut before the report: the image reverts, the verdict stays.
	z := y.restart(oldBoot)
	z.not(Verify{}, StartDownload{})
	z.phase(PhaseReporting)
	z.connect()
	z.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusInProgress, 4, testDoc("")))
	if u := z.update("fw-1"); u.StatusDetails["reason"] != ReasonSelfTestFailed || u.StatusDetails["attempts"] != "1" {
		t.Fatalf("report %+v", u)
	}
}

// The slot lost the image after the new image had run: fetch it again.
func TestSlotLostAfterTrialRefetches(t *testing.T) {
	x := toDownloading(t, defaultCfg())
	toRebooting(t, x)
	y := x.restart(trialBoot)
	z := y.restart(oldBoot)
	z.step(Verified{Base: z.b(), Failure: VerifyHashMismatch, Message: "the image's hash does not match"})
	sd := z.action(StartDownload{}).(StartDownload)
	if sd.Offset != 0 || sd.ETag != "" {
		t.Fatalf("refetch %+v", sd)
	}
	z.phase(PhaseDownloading)
	z.not(ResetTarget{})
	if z.saved.Attempts != 1 || z.saved.Recheck {
		t.Fatalf("persisted %+v", z.saved)
	}
}

// A delta is fetched again (the slot holds what the patch made); a RAUC
// image is not installed again: RAUC counts its own boot attempts.
func TestRetryByImageKind(t *testing.T) {
	st := func(kind string) State {
		im := newImg
		return State{Phase: PhaseTesting, Job: &Job{ID: "fw-1", Document: testDoc(""), URL: "http://h/p", Size: 4096}, Kind: kind, Total: 4096,
			Offset: 4096, Image: &im, FromVersion: "1.0.0", Attempts: 1, Trial: TrialSelfTest}
	}
	x := newH(t, st("delta"), defaultCfg())
	x.step(Started{x.b(), oldBoot, "r"})
	if sd := x.action(StartDownload{}).(StartDownload); sd.Offset != 0 {
		t.Fatalf("delta refetch %+v", sd)
	}
	x.not(Verify{})

	y := newH(t, st("rauc"), defaultCfg())
	y.step(Started{y.b(), oldBoot, "r"})
	y.not(Verify{}, StartDownload{})
	y.phase(PhaseReporting)
	if o := y.saved.Outcome; o.Details["reason"] != ReasonTrialReset || strings.Contains(o.Details["message"], "attempt ") {
		t.Fatalf("outcome %+v", o)
	}
}

// trialCanceled runs a job to its trial and cancels it (with force) there.
func trialCanceled(t *testing.T, mode TrialCancel) *h {
	t.Helper()
	cfg := defaultCfg()
	cfg.CancelDuringTrial = mode
	x := toDownloading(t, cfg)
	toRebooting(t, x)
	y := x.restart(trialBoot)
	y.phase(PhaseTesting)
	y.connect()
	y.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusCanceled, 7, testDoc("")))
	if e := y.event(EventCanceled); !strings.Contains(e.Message, "CANCELED") {
		t.Fatalf("canceled event %+v", e)
	}
	return y
}

func TestCancelDuringTrialFinishKeepsAPassingImage(t *testing.T) {
	y := trialCanceled(t, "") // the default: finish
	y.not(Reboot{}, ResetTarget{}, Confirm{})
	y.noPublish()
	y.phase(PhaseTesting)
	if y.saved.Canceled == "" || !strings.Contains(y.event(EventCanceled).Message, "goes on") {
		t.Fatalf("persisted %+v", y.saved)
	}
	// A repeated word of the cancel changes nothing.
	y.msg(iotjobs.NotifyNextTopic(thing), iotjobs.NotifyNextMessage{Timestamp: 9})
	y.answerDescribe("fw-1", execution("fw-1", iotjobs.StatusCanceled, 7, testDoc("")))
	y.not(Notify{}, Reboot{})
	y.step(SelfTested{Base: y.b()})
	y.want(Confirm{})
	y.step(Confirmed{Base: y.b()})
	y.phase(PhaseIdle)
	if e := y.event(EventCanceled); !strings.Contains(e.Message, "1.0.1 passed its self-test and is kept") {
		t.Fatalf("end event %+v", e)
	}
	y.not(Reboot{})
	// Nothing is reported on the canceled job: the agent asks for the next.
	var req iotjobs.DescribeRequest
	y.onlyPublish(iotjobs.DescribeTopic(thing, iotjobs.NextJobID), &req)
}

func TestCancelDuringTrialFinishRevertsAFailingImage(t *testing.T) {
	y := trialCanceled(t, TrialFinish)
	y.step(SelfTested{Base: y.b(), Err: "no radio"})
	y.not(Confirm{})
	y.want(Reboot{})
	y.phase(PhaseIdle)
	if e := y.event(EventCanceled); !strings.Contains(e.Message, "self-test failed (no radio)") {
		t.Fatalf("end event %+v", e)
	}
	for _, p := range y.published() {
		if strings.Contains(p.Topic, "fw-1") {
			t.Fatalf("reported on the canceled job: %s", p.Topic)
		}
	}
}

// A cut during a canceled trial: the bootloader reverts, and the agent,
// knowing the job is canceled, does not install it again.
func TestCancelDuringTrialThenReset(t *testing.T) {
	y := trialCanceled(t, TrialFinish)
	z := y.restart(oldBoot)
	z.not(Verify{}, StartDownload{}, Reboot{})
	z.phase(PhaseIdle)
	if e := z.event(EventCanceled); !strings.Contains(e.Message, "runs 1.0.0 again") {
		t.Fatalf("event %+v", e)
	}
	// Confirmed just before the cut: kept.
	w := trialCanceled(t, TrialFinish)
	v := w.restart(Boot{Version: "1.0.1", BootHash: newHash, Confirmed: true})
	v.phase(PhaseIdle)
	v.not(Reboot{}, SelfTest{})
}

func TestCancelDuringTrialRevert(t *testing.T) {
	y := trialCanceled(t, TrialRevert)
	y.want(Reboot{})
	y.not(Confirm{}, ResetTarget{})
	y.phase(PhaseIdle)
	if e := y.event(EventCanceled); !strings.Contains(e.Message, "rebooting to revert 1.0.1") {
		t.Fatalf("event %+v", e)
	}
	// A self-test result racing the reboot changes nothing.
	y.step(SelfTested{Base: y.b()})
	y.not(Confirm{}, Persist{})
}

func TestParseTrialCancel(t *testing.T) {
	for in, want := range map[string]TrialCancel{"": "", "finish": TrialFinish, "revert": TrialRevert} {
		if got, err := ParseTrialCancel(in); err != nil || got != want {
			t.Errorf("%q: %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"Revert", "keep", " finish"} {
		if _, err := ParseTrialCancel(in); err == nil || !strings.Contains(err.Error(), `"finish" or "revert"`) {
			t.Errorf("%q: %v", in, err)
		}
	}
}

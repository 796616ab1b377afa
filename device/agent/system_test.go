package agent

import (
	"testing"
	"time"

	"github.com/awsfota/awsfota/iotjobs"
)

// A Linux device whose application is installed by RAUC.
var raucBoot = Boot{Version: "1.0.0", BootHash: oldHash, AppComponent: "rauc", Compatible: "acme-gw"}

func raucDoc(compatible string) []byte {
	return []byte(`{"operation":"app_fw_update","component":"rauc","compatible":"` + compatible + `","fwversion":"1.0.1","size":4096,"location":{"url":"http://127.0.0.1:4566/fw/b.raucb"}}`)
}

func TestIncompatibleJobFailsBeforeDownloading(t *testing.T) {
	x := newH(t, State{}, defaultCfg())
	x.start(raucBoot)
	x.connect()
	x.answerNext(execution("other", iotjobs.StatusQueued, 1, raucDoc("acme-camera")))
	x.not(StartDownload{})
	u := x.update("other")
	if u.Status != iotjobs.StatusFailed || u.StatusDetails["reason"] != ReasonIncompatible {
		t.Fatalf("report %+v", u)
	}
	if m := u.StatusDetails["message"]; m != `the image is for "acme-camera" systems and this device is "acme-gw": nothing was downloaded` {
		t.Fatalf("message %q", m)
	}
	if e := x.event(EventError); e.Reason != ReasonIncompatible {
		t.Fatalf("event %+v", e)
	}
}

func TestSystemUpdaterTakesItsComponentAsTheApplication(t *testing.T) {
	// The RAUC device takes the rauc job into its application target.
	x := newH(t, State{}, defaultCfg())
	x.start(raucBoot)
	x.connect()
	x.answerNext(execution("r-1", iotjobs.StatusQueued, 1, raucDoc("acme-gw")))
	x.accept("r-1", x.update("r-1"))
	if sd := x.action(StartDownload{}).(StartDownload); sd.Component != "" {
		t.Fatalf("StartDownload %+v", sd)
	}
	// An MCUboot device declines it.
	y := newH(t, State{}, defaultCfg())
	y.start(oldBoot)
	y.connect()
	y.answerNext(execution("r-2", iotjobs.StatusQueued, 1, raucDoc("acme-gw")))
	if u := y.update("r-2"); u.Status != iotjobs.StatusRejected || u.StatusDetails["reason"] != ReasonUnsupportedOperation {
		t.Fatalf("report %+v", u)
	}
	// A document without compatible is left to the installer to check.
	z := newH(t, State{}, defaultCfg())
	z.start(raucBoot)
	z.connect()
	z.answerNext(execution("r-3", iotjobs.StatusQueued, 1, []byte(`{"component":"rauc","location":{"url":"http://h/b.raucb"}}`)))
	z.accept("r-3", z.update("r-3"))
	z.want(StartDownload{})
}

func TestInstallProgressIsReported(t *testing.T) {
	x := toDownloading(t, Config{ProgressPercent: 20, ProgressInterval: time.Minute})
	// Not while downloading.
	x.step(InstallProgress{x.b(), 50, "Copying image"})
	x.noPublish()
	toVerifying(t, x)
	reports := 0
	for _, pct := range []int{0, 10, 20, 30, 40, 45, 90, 100} {
		x.advance(time.Second)
		x.step(InstallProgress{x.b(), pct, "Copying image to rootfs.1"})
		if e := x.event(EventInstalling); e.Percent != pct || e.Message != "Copying image to rootfs.1" {
			t.Fatalf("event %+v", e)
		}
		if len(x.published()) > 0 {
			u := x.update("fw-1")
			if u.Status != iotjobs.StatusInProgress || u.StatusDetails["state"] != "installing" || u.StatusDetails["step"] != "Copying image to rootfs.1" {
				t.Fatalf("report %+v", u)
			}
			reports++
			x.accept("fw-1", u)
		}
	}
	if reports != 4 { // 0, 20, 40, 90
		t.Fatalf("%d install reports, want 4", reports)
	}
	// The verdict replaces any pending progress report.
	x.step(InstallProgress{x.b(), 100, "done"})
	x.step(Verified{Base: x.b(), Image: newImg})
	if u := x.update("fw-1"); u.StatusDetails["state"] != "ready_to_reboot" {
		t.Fatalf("report %+v", u)
	}
	x.step(InstallProgress{x.b(), 100, "late"})
	x.not(Notify{})
}

func TestInstallerRefusals(t *testing.T) {
	for f, reason := range map[VerifyFailure]string{VerifyIncompatible: ReasonIncompatible, VerifyInstallError: ReasonInstallFailed} {
		x := toDownloading(t, defaultCfg())
		x.step(DownloadDone{Base: x.b(), Total: 4096})
		x.step(Verified{Base: x.b(), Failure: f, Message: "RAUC says no"})
		x.want(ResetTarget{})
		if u := x.update("fw-1"); u.Status != iotjobs.StatusFailed || u.StatusDetails["reason"] != reason || u.StatusDetails["message"] != "RAUC says no" {
			t.Fatalf("%v: %+v", f, u)
		}
	}
}

func TestRestartDuringInstallChecksTheFileAgain(t *testing.T) {
	// A staged bundle (no image kind) is installed again from the file the
	// device kept, not downloaded again.
	x := toDownloading(t, defaultCfg())
	x.step(DownloadDone{Base: x.b(), Total: 4096})
	y := x.restart(raucBoot)
	if v := y.action(Verify{}).(Verify); !v.Resume || v.Size != 4096 {
		t.Fatalf("verify %+v", v)
	}
	y.not(StartDownload{})
}

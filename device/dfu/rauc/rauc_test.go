package rauc

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/awsfota/awsfota/device/dfu"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fake is a RAUC with two slots whose bootloader boots the primary one.
type fake struct {
	mu         sync.Mutex
	sys        System
	installErr error
	marks      []string
}

func newFake() *fake {
	return &fake{sys: System{Compatible: "awsfota-test", BootSlot: "A", Primary: "rootfs.0", Slots: []Slot{
		{Name: "rootfs.0", Class: "rootfs", BootName: "A", State: "booted", BootStatus: "good", BundleVersion: "1.0.0", SHA256: "aaaa"},
		{Name: "rootfs.1", Class: "rootfs", BootName: "B", State: "inactive", BootStatus: "good"},
	}}}
}

func (f *fake) Install(_ context.Context, bundle string, progress func(int, string)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.installErr != nil {
		return f.installErr
	}
	progress(40, "Copying image to rootfs.1")
	other := &f.sys.Slots[0]
	if f.sys.BootSlot == "A" {
		other = &f.sys.Slots[1]
	}
	other.BundleVersion, other.SHA256 = "1.2.3", "sha-of-"+bundle
	f.sys.Primary = other.Name
	progress(100, "Installing done.")
	return nil
}

func (f *fake) WaitIdle(context.Context) error { return nil }

func (f *fake) Status(context.Context) (System, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sys
	s.Slots = append([]Slot(nil), f.sys.Slots...)
	return s, nil
}

func (f *fake) Mark(_ context.Context, state, slot string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.marks = append(f.marks, state+" "+slot)
	return nil
}

// reboot boots the primary slot.
func (f *fake) reboot() {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, _ := f.sys.Slot(f.sys.Primary)
	f.sys.BootSlot = s.BootName
}

// stage downloads a test bundle (package raucb's testdata, made by RAUC:
// compatible awsfota-test, version 1.2.3) or, for a name that is no file,
// the name's bytes.
func stage(t *testing.T, tg *Target, name string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "raucb", "testdata", name))
	if err != nil {
		b = []byte(name)
	}
	if err := tg.Init(int64(len(b)), 0); err != nil {
		t.Fatal(err)
	}
	if err := tg.Write(b); err != nil {
		t.Fatal(err)
	}
}

func newTarget(t *testing.T, f *fake) *Target {
	tg, err := New(Config{Service: f, Staging: filepath.Join(t.TempDir(), "bundle.raucb")})
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func TestInstallRebootConfirm(t *testing.T) {
	f := newFake()
	tg := newTarget(t, f)
	run, err := tg.Running()
	if err != nil || run.Version != "1.0.0" || run.AppComponent != "rauc" || run.Compatible != "awsfota-test" || run.Confirmed {
		t.Fatalf("running %+v %v", run, err)
	}
	stage(t, tg, "plain-rsa.raucb")
	var steps []string
	im, err := tg.Install(context.Background(), dfu.InstallRequest{Progress: func(p int, m string) { steps = append(steps, m) }})
	if err != nil {
		t.Fatal(err)
	}
	if im.Type != dfu.TypeRAUC || im.Version != "1.2.3" || im.Size != 17775 || len(steps) != 3 {
		t.Fatalf("image %+v, steps %q", im, steps)
	}
	f.reboot()
	run, err = tg.Running()
	if err != nil || !bytes.Equal(run.BootHash, im.BootHash) || run.Version != "1.2.3" {
		t.Fatalf("after the reboot %+v %v", run, err)
	}
	if err := tg.Confirm(); err != nil || f.marks[len(f.marks)-1] != "good booted" {
		t.Fatalf("confirm %v, marks %q", err, f.marks)
	}
}

func TestFallbackIsAnotherIdentity(t *testing.T) {
	// The same image in both slots: booting the old slot must not pass for
	// the new one.
	a := Slot{BootName: "A", SHA256: "same"}
	b := Slot{BootName: "B", SHA256: "same"}
	if bytes.Equal(BootHash(a), BootHash(b)) {
		t.Fatal("two slots with the same image share an identity")
	}
}

func TestInstallRefusals(t *testing.T) {
	f := newFake()
	f.sys.Compatible = "acme-gw"
	tg := newTarget(t, f)

	stage(t, tg, "plain-rsa.raucb")
	if _, err := tg.Install(context.Background(), dfu.InstallRequest{}); !errors.Is(err, dfu.ErrIncompatible) ||
		err.Error() != `dfu: the image is for another system: the bundle is for "awsfota-test" systems and this device is "acme-gw" (RAUC's compatible): it was not installed` {
		t.Fatalf("incompatible: %v", err)
	}
	if f.sys.Primary != "rootfs.0" {
		t.Fatal("an incompatible bundle was installed")
	}
	// A manifest this reader cannot read (xz): RAUC checks it.
	stage(t, tg, "plain-xz.raucb")
	if _, err := tg.Install(context.Background(), dfu.InstallRequest{}); err != nil {
		t.Fatalf("xz bundle: %v", err)
	}
	f.sys.Compatible = "awsfota-test"

	stage(t, tg, "an MCUboot image, say")
	if _, err := tg.Install(context.Background(), dfu.InstallRequest{}); !errors.Is(err, dfu.ErrInvalidImage) || !strings.Contains(err.Error(), "not a RAUC bundle") {
		t.Fatalf("not a bundle: %v", err)
	}

	stage(t, tg, "plain-rsa.raucb")
	f.installErr = &InstallError{Result: 1, LastError: "Failed to write slot rootfs.1: No space left on device"}
	if _, err := tg.Install(context.Background(), dfu.InstallRequest{}); !errors.Is(err, dfu.ErrInstallFailed) || !strings.Contains(err.Error(), "No space left") {
		t.Fatalf("failed install: %v", err)
	}
	// Not a verdict of RAUC: a failure to talk to it.
	f.installErr = errors.New("the bus went away")
	if _, err := tg.Install(context.Background(), dfu.InstallRequest{}); err == nil || errors.Is(err, dfu.ErrInstallFailed) {
		t.Fatalf("bus failure: %v", err)
	}
	f.installErr = nil

	// RAUC installed, but the bootloader still boots the running slot.
	f2 := newFake()
	tg2, _ := New(Config{Service: &stuckPrimary{fake: f2}, Staging: tg.Path()})
	stage(t, tg2, "plain-rsa.raucb")
	if _, err := tg2.Install(context.Background(), dfu.InstallRequest{}); !errors.Is(err, dfu.ErrInstallFailed) || !strings.Contains(err.Error(), "did not switch") {
		t.Fatalf("no switch: %v", err)
	}
}

// stuckPrimary is a RAUC whose bootloader never changes its primary slot.
type stuckPrimary struct{ *fake }

func (s *stuckPrimary) Install(context.Context, string, func(int, string)) error { return nil }

func TestResetAndHealthCheck(t *testing.T) {
	f := newFake()
	tg := newTarget(t, f)
	stage(t, tg, "plain-rsa.raucb")
	if err := tg.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tg.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("reset left the bundle")
	}
	if f.marks[0] != "active booted" {
		t.Fatalf("marks %q", f.marks)
	}
	check := tg.CheckHealth(func(context.Context) error { return errors.New("nginx did not start") })
	if err := check(context.Background()); err == nil || err.Error() != "nginx did not start" {
		t.Fatalf("check %v", err)
	}
	if f.marks[1] != "bad booted" {
		t.Fatalf("marks %q", f.marks)
	}
	if err := tg.CheckHealth(func(context.Context) error { return nil })(context.Background()); err != nil || len(f.marks) != 2 {
		t.Fatalf("passing check %v, marks %q", err, f.marks)
	}
	if err := tg.CheckHealth(nil)(context.Background()); err != nil {
		t.Fatal(err)
	}
}

//go:build rauc

package rauc

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/internal/rauctest"
)

// The tests here run against the real RAUC service (build tag rauc).

func realTarget(t *testing.T) (*rauctest.System, *DBus, *Target) {
	t.Helper()
	dir := t.TempDir()
	sys := rauctest.Start(t, dir, "awsfota-test", "1.0.0")
	d, err := Dial(sys.Bus)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	d.Poll = 200 * time.Millisecond
	tg, err := New(Config{Service: d, Staging: filepath.Join(dir, "staging", "bundle.raucb")})
	if err != nil {
		t.Fatal(err)
	}
	return sys, d, tg
}

func stageFile(t *testing.T, tg *Target, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Init(int64(len(b)), 0); err != nil {
		t.Fatal(err)
	}
	// In pieces, as a download writes it.
	for len(b) > 0 {
		n := min(len(b), 32<<10)
		if err := tg.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
}

func reconnect(t *testing.T, sys *rauctest.System, tg *Target) {
	t.Helper()
	d, err := Dial(sys.Bus)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	d.Poll = 200 * time.Millisecond
	tg.svc = d
}

func TestRealRAUCInstallRebootConfirm(t *testing.T) {
	sys, d, tg := realTarget(t)
	st, err := d.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Compatible != "awsfota-test" || st.BootSlot != "A" || len(st.Slots) != 2 {
		t.Fatalf("status %+v", st)
	}
	if run, err := tg.Running(); err != nil || run.Version != "1.0.0" {
		t.Fatalf("factory %+v %v", run, err)
	}
	img := bytes.Repeat([]byte("rootfs 1.1.0 "), 20000)
	stageFile(t, tg, sys.Bundle("b110", "awsfota-test", "1.1.0", img))
	var steps []string
	im, err := tg.Install(context.Background(), dfu.InstallRequest{Progress: func(p int, m string) { steps = append(steps, m) }})
	if err != nil {
		t.Fatalf("%v\nRAUC's log:\n%s", err, sys.Log())
	}
	if im.Version != "1.1.0" || im.Type != dfu.TypeRAUC {
		t.Fatalf("image %+v", im)
	}
	if !strings.Contains(strings.Join(steps, "|"), "Copying image to rootfs.1") {
		t.Fatalf("progress %q", steps)
	}
	if !bytes.Equal(sys.SlotImage("B", len(img)), img) {
		t.Fatal("slot B does not hold the image")
	}
	if order, _ := sys.BootState(); order[0] != "B" {
		t.Fatalf("boot order %v after the install", order)
	}

	if b := sys.Reboot(); b != "B" {
		t.Fatalf("booted %s", b)
	}
	reconnect(t, sys, tg)
	run, err := tg.Running()
	if err != nil || !bytes.Equal(run.BootHash, im.BootHash) || run.Version != "1.1.0" || run.Confirmed {
		t.Fatalf("running %+v %v", run, err)
	}
	if err := tg.Confirm(); err != nil {
		t.Fatal(err)
	}
	if _, left := sys.BootState(); left["B"] != rauctest.Attempts {
		t.Fatalf("attempts left %v after mark good", left)
	}
}

func TestRealRAUCRefusesTamperedAndIncompatibleBundles(t *testing.T) {
	sys, _, tg := realTarget(t)
	other := sys.Bundle("other", "acme-camera", "2.0", bytes.Repeat([]byte{1}, 50000))
	stageFile(t, tg, other)
	if _, err := tg.Install(context.Background(), dfu.InstallRequest{}); !errors.Is(err, dfu.ErrIncompatible) {
		t.Fatalf("incompatible: %v", err)
	}

	good := sys.Bundle("good", "awsfota-test", "2.0", bytes.Repeat([]byte("x"), 100000))
	b, _ := os.ReadFile(good)
	b[len(b)/2] ^= 0xff // inside the image, under the signature
	tampered := filepath.Join(sys.Dir, "tampered.raucb")
	os.WriteFile(tampered, b, 0o644)
	stageFile(t, tg, tampered)
	_, err := tg.Install(context.Background(), dfu.InstallRequest{})
	if !errors.Is(err, dfu.ErrInstallFailed) || !strings.Contains(strings.ToLower(err.Error()), "signature") {
		t.Fatalf("tampered: %v", err)
	}
	if order, _ := sys.BootState(); order[0] != "A" {
		t.Fatalf("boot order %v: a refused bundle changed it", order)
	}
}

func TestRealRAUCInstallWaitsForOneRunning(t *testing.T) {
	sys, d, tg := realTarget(t)
	bundle := sys.Bundle("big", "awsfota-test", "3.0", bytes.Repeat([]byte("y"), 900_000))
	stageFile(t, tg, bundle)
	if _, _, err := tg.Finish(); err != nil {
		t.Fatal(err)
	}
	// Someone else (the previous life of this process) starts an install.
	if err := d.obj.Call(iface+".InstallBundle", 0, tg.Path(), map[string]any{}).Err; err != nil {
		t.Fatal(err)
	}
	im, err := tg.Install(context.Background(), dfu.InstallRequest{})
	if err != nil {
		t.Fatalf("%v\n%s", err, sys.Log())
	}
	if im.Version != "3.0" {
		t.Fatal(im)
	}
	if n := strings.Count(sys.Log(), "succeeded"); n < 2 {
		t.Fatalf("%d installs succeeded, want both:\n%s", n, sys.Log())
	}
}

func TestRealRAUCFailedHealthCheckFallsBack(t *testing.T) {
	sys, _, tg := realTarget(t)
	stageFile(t, tg, sys.Bundle("b", "awsfota-test", "1.2.0", bytes.Repeat([]byte("z"), 40000)))
	if _, err := tg.Install(context.Background(), dfu.InstallRequest{}); err != nil {
		t.Fatal(err)
	}
	sys.Reboot()
	reconnect(t, sys, tg)
	err := tg.CheckHealth(func(context.Context) error { return errors.New("app did not answer") })(context.Background())
	if err == nil {
		t.Fatal("check passed")
	}
	if b := sys.Reboot(); b != "A" {
		t.Fatalf("after a failed health check the bootloader booted %s", b)
	}
	reconnect(t, sys, tg)
	// Reset (the job's end) keeps A the primary slot.
	if err := tg.Reset(); err != nil {
		t.Fatal(err)
	}
	if order, _ := sys.BootState(); order[0] != "A" {
		t.Fatalf("boot order %v", order)
	}
}

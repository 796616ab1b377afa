package exectarget

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/awsfota/awsfota/device/command"
	"github.com/awsfota/awsfota/device/dfu"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// vendor writes a "vendor tool" into dir: install copies the file to
// dir/installed and records its environment; version prints dir/current;
// confirm writes dir/confirmed.
func vendor(t *testing.T, dir string) Config {
	t.Helper()
	script := `#!/bin/sh
set -e
D=` + dir + `
case "$1" in
install)
	[ -n "$FAIL" ] && { echo "checking $AWSFOTA_FILE"; echo "signature invalid" >&2; exit 4; }
	cp "$AWSFOTA_FILE" "$D/installed"
	env | grep '^AWSFOTA_' | sort > "$D/install-env"
	echo "$AWSFOTA_FWVERSION" > "$D/next"
	echo "installed $AWSFOTA_FWVERSION";;
version) cat "$D/current";;
confirm) cp "$D/current" "$D/confirmed";;
esac
`
	tool := filepath.Join(dir, "tool.sh")
	if err := os.WriteFile(tool, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "current"), []byte("v1.0.0\n"), 0o644)
	return Config{
		Staging: filepath.Join(dir, "staging", "image"),
		Install: command.Command{Argv: []string{tool, "install"}},
		Version: command.Command{Argv: []string{tool, "version"}},
		Confirm: command.Command{Argv: []string{tool, "confirm"}},
	}
}

func stage(t *testing.T, tg *Target, img []byte) {
	t.Helper()
	if err := tg.Init(int64(len(img)), 0); err != nil {
		t.Fatal(err)
	}
	if err := tg.Write(img); err != nil {
		t.Fatal(err)
	}
}

func TestInstallRebootConfirm(t *testing.T) {
	dir := t.TempDir()
	tg, err := New(vendor(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	run, err := tg.Running()
	if err != nil || run.Version != "1.0.0" || run.Confirmed {
		t.Fatalf("running %+v %v", run, err)
	}
	img := bytes.Repeat([]byte("firmware"), 5000)
	stage(t, tg, img)
	var steps []string
	doc := []byte(`{"fwversion":"1.1.0","location":{"url":"http://h/f"}}`)
	im, err := tg.Install(context.Background(), dfu.InstallRequest{JobID: "job-7", Document: doc, FWVersion: "v1.1.0",
		Progress: func(pct int, msg string) { steps = append(steps, msg) }})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(img)
	if im.Type != dfu.TypeFile || im.Size != int64(len(img)) || !bytes.Equal(im.SHA256, sum[:]) || im.Version != "1.1.0" || len(steps) != 2 {
		t.Fatalf("image %+v, steps %q", im, steps)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "installed")); !bytes.Equal(b, img) {
		t.Fatal("the install command did not get the file")
	}
	env, _ := os.ReadFile(filepath.Join(dir, "install-env"))
	for _, want := range []string{"AWSFOTA_FILE=" + tg.Path(), "AWSFOTA_FWVERSION=v1.1.0", "AWSFOTA_JOB_ID=job-7",
		"AWSFOTA_JOB_DOCUMENT=" + string(doc), "AWSFOTA_SHA256=" + hex.EncodeToString(sum[:]), "AWSFOTA_SIZE=40000"} {
		if !strings.Contains(string(env), want+"\n") {
			t.Errorf("install environment lacks %s:\n%s", want, env)
		}
	}
	// The "reboot": the device now runs what was installed.
	next, _ := os.ReadFile(filepath.Join(dir, "next"))
	os.WriteFile(filepath.Join(dir, "current"), next, 0o644)
	run, err = tg.Running()
	if err != nil || !bytes.Equal(run.BootHash, im.BootHash) || run.Version != "1.1.0" {
		t.Fatalf("after the reboot %+v %v, want the installed image %x", run, err, im.BootHash)
	}
	if err := tg.Confirm(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "confirmed")); string(b) != "v1.1.0\n" {
		t.Fatalf("confirmed %q", b)
	}
	if err := tg.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tg.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("reset left the staged file")
	}
}

func TestInstallFailures(t *testing.T) {
	dir := t.TempDir()
	cfg := vendor(t, dir)
	tg, _ := New(cfg)
	stage(t, tg, []byte("image"))

	// No fwversion: the target could not tell the new version runs.
	if _, err := tg.Install(context.Background(), dfu.InstallRequest{}); !errors.Is(err, dfu.ErrInvalidImage) || !strings.Contains(err.Error(), "fwversion") {
		t.Fatalf("no fwversion: %v", err)
	}

	// The tool refuses: its output is in the error.
	t.Setenv("FAIL", "1")
	_, err := tg.Install(context.Background(), dfu.InstallRequest{FWVersion: "2.0"})
	var ce *command.Error
	if !errors.Is(err, dfu.ErrInstallFailed) || !errors.As(err, &ce) || ce.ExitCode != 4 || !strings.Contains(err.Error(), "signature invalid") {
		t.Fatalf("refused: %v", err)
	}

	// A hanging tool is killed at its timeout.
	cfg.Install = command.Command{Shell: "sleep 30", Timeout: 100 * time.Millisecond}
	tg2, _ := New(cfg)
	stage(t, tg2, []byte("image"))
	if _, err := tg2.Install(context.Background(), dfu.InstallRequest{FWVersion: "2.0"}); !errors.Is(err, dfu.ErrInstallFailed) || !errors.Is(err, command.ErrTimeout) {
		t.Fatalf("hanging: %v", err)
	}
	// A canceled install returns the context's error, not a verdict.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tg2.Install(ctx, dfu.InstallRequest{FWVersion: "2.0"}); !errors.Is(err, context.Canceled) || errors.Is(err, dfu.ErrInstallFailed) {
		t.Fatalf("canceled: %v", err)
	}
	tg2.Reset()
	tg.Reset()
}

func TestVersionCommandProblems(t *testing.T) {
	dir := t.TempDir()
	cfg := vendor(t, dir)
	cfg.Compatible = "acme-gw"
	os.WriteFile(filepath.Join(dir, "current"), []byte("\n"), 0o644)
	tg, _ := New(cfg)
	if run, err := tg.Running(); err == nil || !strings.Contains(err.Error(), "printed nothing") || run.Compatible != "acme-gw" {
		t.Fatalf("%+v %v", run, err)
	}
	cfg.Version = command.Command{Shell: "exit 1"}
	tg, _ = New(cfg)
	if _, err := tg.Running(); err == nil {
		t.Fatal("a failing version command passed")
	}
}

func TestNewNeedsTheCommands(t *testing.T) {
	cfg := vendor(t, t.TempDir())
	for _, c := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Staging = "" }, "staging"},
		{func(c *Config) { c.Install = command.Command{} }, "install command"},
		{func(c *Config) { c.Version = command.Command{} }, "version command"},
	} {
		bad := cfg
		c.edit(&bad)
		if _, err := New(bad); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error naming %q, got %v", c.want, err)
		}
	}
}

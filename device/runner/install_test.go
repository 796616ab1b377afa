package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/device/command"
	"github.com/awsfota/awsfota/device/dfu/exectarget"
	"github.com/awsfota/awsfota/device/download"
	"github.com/awsfota/awsfota/device/state"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/jobdoc"
)

// execDevice is a device updated by a vendor tool (a shell script): install
// records the file and the job document, version prints what "runs".
type execDevice struct {
	dir   string
	store *state.Mem
	tg    *exectarget.Target
}

func newExecDevice(t *testing.T, install string) *execDevice {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "current"), []byte("1.0.0\n"), 0o644)
	tg, err := exectarget.New(exectarget.Config{
		Staging: filepath.Join(dir, "staging"),
		Install: command.Command{Shell: install},
		Version: command.Command{Shell: "cat " + filepath.Join(dir, "current")},
		Confirm: command.Command{Shell: "touch " + filepath.Join(dir, "confirmed")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &execDevice{dir: dir, store: &state.Mem{}, tg: tg}
}

func (d *execDevice) runner(t *testing.T, f Fetcher, events chan<- agent.AppEvent, selfTest func(context.Context) error) *Runner {
	t.Helper()
	r, err := New(Config{
		Agent: agent.Config{Thing: thing, Limits: jobdoc.DefaultLimits(), ProgressPercent: 1},
		Store: d.store, Target: d.tg, Boot: d.tg, Fetcher: f, SelfTest: selfTest,
		OnEvent: func(e agent.AppEvent) { events <- e },
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestInstallerTargetAcrossReboot(t *testing.T) {
	img := bytes.Repeat([]byte("linux rootfs "), 20000)
	srv := serve(t, img)
	sum := sha256.Sum256(img)
	doc, _ := jobdoc.Marshal(jobdoc.Spec{FWVersion: "1.1.0", Size: int64(len(img)), SHA256: sum[:], URL: srv.URL + "/rootfs.img"})
	j := &jobs{exec: iotjobs.JobExecution{JobID: "os-1", ThingName: thing, JobDocument: doc, Status: iotjobs.StatusQueued, VersionNumber: 1, ExecutionNumber: 1}}
	d := newExecDevice(t, `cp "$AWSFOTA_FILE" installed && printf '%s' "$AWSFOTA_JOB_DOCUMENT" > document && echo "$AWSFOTA_FWVERSION" > next`)
	d.tg.Reset()
	events := make(chan agent.AppEvent, 1000)
	f := download.New(download.Config{})
	defer f.CloseIdleConnections()
	// The install command runs in the test's working directory: give it the
	// device's.
	t.Chdir(d.dir)

	r := d.runner(t, f, events, nil)
	j.r = r
	if err := wait(t, runUntil(t, r, j)); !errors.Is(err, ErrReboot) {
		t.Fatalf("Run = %v, want ErrReboot", err)
	}
	if b, _ := os.ReadFile(filepath.Join(d.dir, "installed")); !bytes.Equal(b, img) {
		t.Fatal("the install command did not get the image")
	}
	if b, _ := os.ReadFile(filepath.Join(d.dir, "document")); !bytes.Equal(b, doc) {
		t.Fatalf("the install command got document %s", b)
	}
	_, ups := j.snapshot()
	installing := false
	for _, u := range ups {
		if u.StatusDetails["state"] == "installing" {
			installing = true
		}
	}
	if !installing {
		t.Fatalf("no installing report among %v", ups)
	}
	kinds := map[agent.AppEventKind]bool{}
	for _, e := range drain(events) {
		kinds[e.Kind] = true
	}
	if !kinds[agent.EventInstalling] || !kinds[agent.EventDone] {
		t.Fatalf("events %v", kinds)
	}

	// The reboot: the device runs what the install command installed.
	next, _ := os.ReadFile(filepath.Join(d.dir, "next"))
	os.WriteFile(filepath.Join(d.dir, "current"), next, 0o644)
	tested := make(chan struct{}, 1)
	r2 := d.runner(t, f, events, func(context.Context) error { tested <- struct{}{}; return nil })
	runToCompletion(t, r2, j, events)
	<-tested
	x, _ := j.snapshot()
	if x.Status != iotjobs.StatusSucceeded || x.StatusDetails["fwversion"] != "1.1.0" || x.StatusDetails["from"] != "1.0.0" {
		t.Fatalf("cloud sees %s %v", x.Status, x.StatusDetails)
	}
	if _, err := os.Stat(filepath.Join(d.dir, "confirmed")); err != nil {
		t.Fatal("not confirmed")
	}
}

// runToCompletion runs r against j until the job completes, then stops it.
func runToCompletion(t *testing.T, r *Runner, j *jobs, events <-chan agent.AppEvent) {
	t.Helper()
	j.r = r
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, j) }()
	r.Connected()
	waitCompleted(t, events)
	cancel()
	wait(t, done)
}

func waitCompleted(t *testing.T, events <-chan agent.AppEvent) agent.AppEvent {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e := <-events:
			if e.Kind == agent.EventCompleted {
				return e
			}
		case <-deadline:
			t.Fatal("no completion")
		}
	}
}

func TestInstallerRefusalIsReportedWithItsOutput(t *testing.T) {
	img := []byte("not what the tool wants")
	srv := serve(t, img)
	doc, _ := jobdoc.Marshal(jobdoc.Spec{FWVersion: "1.1.0", URL: srv.URL + "/x"})
	j := &jobs{exec: iotjobs.JobExecution{JobID: "os-2", ThingName: thing, JobDocument: doc, Status: iotjobs.StatusQueued, VersionNumber: 1, ExecutionNumber: 1}}
	d := newExecDevice(t, `echo "swupdate: ERROR: no .swu header" >&2; exit 1`)
	events := make(chan agent.AppEvent, 1000)
	f := download.New(download.Config{})
	defer f.CloseIdleConnections()
	runToCompletion(t, d.runner(t, f, events, nil), j, events)
	x, _ := j.snapshot()
	if x.Status != iotjobs.StatusFailed || x.StatusDetails["reason"] != agent.ReasonInstallFailed || !strings.Contains(x.StatusDetails["message"], "no .swu header") {
		t.Fatalf("cloud sees %s %v", x.Status, x.StatusDetails)
	}
	if _, err := os.Stat(d.tg.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the refused file was kept")
	}
}

func TestPing(t *testing.T) {
	d := newExecDevice(t, "true")
	r := d.runner(t, download.New(download.Config{}), make(chan agent.AppEvent, 100), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, &jobs{}) }()
	if err := r.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	cancel()
	wait(t, done)
	if err := r.Ping(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("after Run: %v", err)
	}
}

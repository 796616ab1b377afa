package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/device/dfu/mcubootslot"
	"github.com/awsfota/awsfota/device/download"
	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/device/state"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/jobdoc"
	"github.com/awsfota/awsfota/mcuboot"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const thing = "dev-1"

var geo = flash.Geometry{Size: 256 * 1024, SectorSize: 4096, WriteAlign: 4}

func image(t *testing.T, n int, ver string) []byte {
	t.Helper()
	p := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	v, _ := mcuboot.ParseVersion(ver)
	var b bytes.Buffer
	if _, err := mcuboot.Create(&b, bytes.NewReader(p), int64(n), mcuboot.CreateOptions{Version: v, PadHeader: true}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// jobs is a minimal Jobs service for one execution, answering the runner's
// publishes through Deliver. It records every accepted update.
type jobs struct {
	mu      sync.Mutex
	r       *Runner
	exec    iotjobs.JobExecution
	updates []iotjobs.UpdateRequest
}

func (j *jobs) Publish(_ context.Context, topic string, payload []byte) error {
	t, err := iotjobs.ParseTopic(topic)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	var reply iotjobs.Topic
	var msg any
	switch t.Op {
	case iotjobs.OpDescribe:
		var req iotjobs.DescribeRequest
		iotjobs.Decode(payload, &req)
		e := j.exec
		var ep *iotjobs.JobExecution
		if !(t.JobID == iotjobs.NextJobID && e.Status.Terminal()) {
			ep = &e
		}
		reply, msg = t.Accepted(), iotjobs.ExecutionResponse{Execution: ep, ClientToken: req.ClientToken}
	case iotjobs.OpUpdate:
		var u iotjobs.UpdateRequest
		iotjobs.Decode(payload, &u)
		if u.ExpectedVersion != nil && int64(*u.ExpectedVersion) != j.exec.VersionNumber {
			st := j.exec.State()
			reply, msg = t.Rejected(), iotjobs.ErrorResponse{Code: iotjobs.CodeVersionMismatch, ClientToken: u.ClientToken, ExecutionState: &st}
			break
		}
		j.exec.Status, j.exec.StatusDetails = u.Status, u.StatusDetails
		j.exec.VersionNumber++
		j.updates = append(j.updates, u)
		st := j.exec.State()
		reply, msg = t.Accepted(), iotjobs.UpdateResponse{ExecutionState: &st, ClientToken: u.ClientToken}
	default:
		return nil
	}
	r := j.r
	go r.Deliver(reply.String(), iotjobs.Encode(msg))
	return nil
}

func (j *jobs) snapshot() (iotjobs.JobExecution, []iotjobs.UpdateRequest) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.exec, append([]iotjobs.UpdateRequest(nil), j.updates...)
}

type device struct {
	primary, secondary *flash.Mem
	store              *state.Mem
}

func newDevice(t *testing.T, running []byte) *device {
	d := &device{store: &state.Mem{}}
	d.primary, _ = flash.NewMem(geo)
	d.secondary, _ = flash.NewMem(geo)
	d.primary.WriteAt(running, 0)
	return d
}

// swap plays the bootloader's part for a test swap: exchange the images and
// leave the primary on trial (magic, copy_done set, image_ok unset).
func (d *device) swap(t *testing.T) {
	a, b := d.primary.Bytes(), d.secondary.Bytes()
	l := mcuboot.Layout{SlotSize: geo.Size}
	if st, _ := mcuboot.ReadTrailer(d.secondary, l); mcuboot.DecideSwap(mcuboot.TrailerState{}, st) != mcuboot.SwapTest {
		t.Fatal("no test swap requested")
	}
	n := geo.Size - mcubootslot.Reserved(geo, mcubootslot.Options{})
	d.primary.Erase(0, geo.Size)
	d.secondary.Erase(0, geo.Size)
	d.primary.WriteAt(b[:n], 0)
	d.secondary.WriteAt(a[:n], 0)
	off, blk := l.MagicBlock()
	d.primary.WriteAt(blk, off)
	d.primary.WriteAt(l.FlagBlock(1, 4), l.CopyDoneOffset())
}

func (d *device) runner(t *testing.T, f Fetcher, events chan<- agent.AppEvent, selfTest func(context.Context) error) *Runner {
	t.Helper()
	r, err := New(Config{
		Agent:   agent.Config{Thing: thing, Limits: jobdoc.DefaultLimits()},
		Store:   d.store,
		Target:  mcubootslot.NewTarget(d.secondary, mcubootslot.Options{}),
		Boot:    mcubootslot.NewPrimary(d.primary, mcubootslot.Options{}),
		Fetcher: f, SelfTest: selfTest, CheckpointBytes: 8192,
		OnEvent: func(e agent.AppEvent) { events <- e },
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func serve(t *testing.T, img []byte) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, "app.bin", time.Time{}, bytes.NewReader(img))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func runUntil(t *testing.T, r *Runner, tr Transport) <-chan error {
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background(), tr) }()
	r.Connected()
	return done
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("runner did not stop")
	}
	return nil
}

func drain(ch chan agent.AppEvent) []agent.AppEvent {
	var out []agent.AppEvent
	for {
		select {
		case e := <-ch:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestUpdateAcrossReboot(t *testing.T) {
	oldImg, newImg := image(t, 10000, "1.0.0"), image(t, 50001, "1.0.1")
	srv := serve(t, newImg)
	sum := sha256.Sum256(newImg)
	doc, _ := jobdoc.Marshal(jobdoc.Spec{FWVersion: "1.0.1", Size: int64(len(newImg)), SHA256: sum[:], URL: srv.URL + "/fw/app.bin", SeedLocation: true})
	j := &jobs{exec: iotjobs.JobExecution{JobID: "fw-1", ThingName: thing, JobDocument: json.RawMessage(doc), Status: iotjobs.StatusQueued, VersionNumber: 1, ExecutionNumber: 1}}
	d := newDevice(t, oldImg)
	events := make(chan agent.AppEvent, 1000)
	f := download.New(download.Config{})
	defer f.CloseIdleConnections()

	r := d.runner(t, f, events, nil)
	j.r = r
	if err := wait(t, runUntil(t, r, j)); !errors.Is(err, ErrReboot) {
		t.Fatalf("Run = %v, want ErrReboot", err)
	}
	if !bytes.Equal(d.secondary.Bytes()[:len(newImg)], newImg) {
		t.Fatal("secondary slot does not hold the image")
	}
	exec, _ := j.snapshot()
	if exec.Status != iotjobs.StatusInProgress || exec.StatusDetails["state"] != "ready_to_reboot" {
		t.Fatalf("before reboot the cloud sees %s %v", exec.Status, exec.StatusDetails)
	}
	var kinds []agent.AppEventKind
	for _, e := range drain(events) {
		kinds = append(kinds, e.Kind)
	}
	if kinds[0] != agent.EventStart || kinds[len(kinds)-1] != agent.EventDone {
		t.Fatalf("events %v", kinds)
	}

	d.swap(t)
	r2 := d.runner(t, f, events, func(ctx context.Context) error { return nil })
	j.r = r2
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r2.Run(ctx, j) }()
	r2.Connected()
	deadline := time.After(20 * time.Second)
	for {
		if e := <-events; e.Kind == agent.EventCompleted {
			if e.Status != iotjobs.StatusSucceeded {
				t.Fatalf("completed with %s", e.Status)
			}
			break
		}
		select {
		case <-deadline:
			t.Fatal("no completion")
		default:
		}
	}
	cancel()
	if err := wait(t, done); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	exec, ups := j.snapshot()
	if exec.Status != iotjobs.StatusSucceeded || exec.StatusDetails["fwversion"] != "1.0.1" {
		t.Fatalf("cloud sees %s %v", exec.Status, exec.StatusDetails)
	}
	if int(exec.VersionNumber) != len(ups)+1 {
		t.Fatalf("versionNumber %d after %d updates", exec.VersionNumber, len(ups))
	}
	run, _ := mcubootslot.NewPrimary(d.primary, mcubootslot.Options{}).Running()
	if run.Version != "1.0.1" || !run.Confirmed {
		t.Fatalf("running %+v", run)
	}
	for _, u := range ups[:len(ups)-1] {
		if u.Status != iotjobs.StatusInProgress {
			t.Fatalf("%s reported before the end", u.Status)
		}
	}
}

func TestSelfTestFailureRevertsAndReportsFailed(t *testing.T) {
	oldImg, newImg := image(t, 10000, "1.0.0"), image(t, 20000, "1.0.1")
	srv := serve(t, newImg)
	doc, _ := jobdoc.Marshal(jobdoc.Spec{URL: srv.URL + "/a.bin"})
	j := &jobs{exec: iotjobs.JobExecution{JobID: "fw-1", JobDocument: doc, Status: iotjobs.StatusQueued, VersionNumber: 1, ExecutionNumber: 1}}
	d := newDevice(t, oldImg)
	events := make(chan agent.AppEvent, 1000)
	f := download.New(download.Config{})
	defer f.CloseIdleConnections()
	r := d.runner(t, f, events, nil)
	j.r = r
	if err := wait(t, runUntil(t, r, j)); !errors.Is(err, ErrReboot) {
		t.Fatal(err)
	}
	d.swap(t)
	r2 := d.runner(t, f, events, func(ctx context.Context) error {
		<-ctx.Done() // hangs: the timeout must end it
		return ctx.Err()
	})
	r2.cfg.Agent.SelfTestTimeout = 50 * time.Millisecond
	j.r = r2
	// After the FAILED report is accepted the agent asks for a reboot (which
	// reverts the unconfirmed image).
	if err := wait(t, runUntil(t, r2, j)); !errors.Is(err, ErrReboot) {
		t.Fatal(err)
	}
	exec, _ := j.snapshot()
	if exec.Status != iotjobs.StatusFailed || exec.StatusDetails["reason"] != agent.ReasonSelfTestFailed {
		t.Fatalf("cloud sees %s %v", exec.Status, exec.StatusDetails)
	}
	run, _ := mcubootslot.NewPrimary(d.primary, mcubootslot.Options{}).Running()
	if run.Confirmed {
		t.Fatal("image confirmed although its self-test failed")
	}
}

// A runner stopped during the self-test (a shutdown, the watchdog) leaves
// the trial marker for the next start and does not take the self-test's
// interruption for a failure (which the loop would see only when it picks
// the self-test's result before its own end: a race the runner closes).
func TestStopDuringSelfTestIsNotAFailure(t *testing.T) {
	oldImg, newImg := image(t, 10000, "1.0.0"), image(t, 20000, "1.0.1")
	srv := serve(t, newImg)
	doc, _ := jobdoc.Marshal(jobdoc.Spec{URL: srv.URL + "/a.bin"})
	j := &jobs{exec: iotjobs.JobExecution{JobID: "fw-1", JobDocument: doc, Status: iotjobs.StatusQueued, VersionNumber: 1, ExecutionNumber: 1}}
	d := newDevice(t, oldImg)
	events := make(chan agent.AppEvent, 1000)
	f := download.New(download.Config{})
	defer f.CloseIdleConnections()
	r := d.runner(t, f, events, nil)
	j.r = r
	if err := wait(t, runUntil(t, r, j)); !errors.Is(err, ErrReboot) {
		t.Fatal(err)
	}
	d.swap(t)
	started := make(chan struct{})
	r2 := d.runner(t, f, events, func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		return errors.New("interrupted") // what a self-test cut short may say
	})
	j.r = r2
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r2.Run(ctx, j) }()
	<-started
	cancel()
	if err := wait(t, done); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	rec, err := d.store.Load()
	if err != nil {
		t.Fatal(err)
	}
	st, err := agent.UnmarshalState(rec)
	if err != nil || st.Phase != agent.PhaseTesting || st.Trial != agent.TrialSelfTest || st.Outcome != nil {
		t.Fatalf("persisted %+v (%v)", st, err)
	}
}

func TestBadDownloadFailsJob(t *testing.T) {
	oldImg := image(t, 10000, "1.0.0")
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	doc, _ := jobdoc.Marshal(jobdoc.Spec{URL: srv.URL + "/missing.bin"})
	j := &jobs{exec: iotjobs.JobExecution{JobID: "fw-1", JobDocument: doc, Status: iotjobs.StatusQueued, VersionNumber: 1, ExecutionNumber: 1}}
	d := newDevice(t, oldImg)
	events := make(chan agent.AppEvent, 1000)
	f := download.New(download.Config{})
	defer f.CloseIdleConnections()
	r := d.runner(t, f, events, nil)
	j.r = r
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, j) }()
	r.Connected()
	for e := range events {
		if e.Kind == agent.EventCompleted {
			break
		}
	}
	cancel()
	wait(t, done)
	exec, _ := j.snapshot()
	if exec.Status != iotjobs.StatusFailed || exec.StatusDetails["reason"] != agent.ReasonDownloadFailed {
		t.Fatalf("cloud sees %s %v", exec.Status, exec.StatusDetails)
	}
}

// A file that is not a firmware image at all (an HTML error page served
// with 200, say) fails the job as invalid_image, not unsupported_operation.
func TestNotAnImageFailsAsInvalidImage(t *testing.T) {
	oldImg := image(t, 10000, "1.0.0")
	page := bytes.Repeat([]byte("<html><body>Sign in to continue</body></html>\n"), 100)
	srv := serve(t, page)
	doc, _ := jobdoc.Marshal(jobdoc.Spec{URL: srv.URL + "/app.bin", Size: int64(len(page))})
	j := &jobs{exec: iotjobs.JobExecution{JobID: "fw-1", JobDocument: doc, Status: iotjobs.StatusQueued, VersionNumber: 1, ExecutionNumber: 1}}
	d := newDevice(t, oldImg)
	events := make(chan agent.AppEvent, 1000)
	f := download.New(download.Config{})
	defer f.CloseIdleConnections()
	r, err := New(Config{
		Agent: agent.Config{Thing: thing, Limits: jobdoc.DefaultLimits()},
		Store: d.store,
		Target: &dfu.Router{Resume: dfu.TypeMCUboot, Targets: map[dfu.ImageType]dfu.Target{
			dfu.TypeMCUboot: mcubootslot.NewTarget(d.secondary, mcubootslot.Options{})}},
		Boot:    mcubootslot.NewPrimary(d.primary, mcubootslot.Options{}),
		Fetcher: f, CheckpointBytes: 8192,
		OnEvent: func(e agent.AppEvent) { events <- e },
	})
	if err != nil {
		t.Fatal(err)
	}
	j.r = r
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, j) }()
	r.Connected()
	for e := range events {
		if e.Kind == agent.EventCompleted {
			break
		}
	}
	cancel()
	wait(t, done)
	exec, _ := j.snapshot()
	if exec.Status != iotjobs.StatusFailed || exec.StatusDetails["reason"] != agent.ReasonInvalidImage {
		t.Fatalf("cloud sees %s %v", exec.Status, exec.StatusDetails)
	}
}

func TestNewChecksConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("empty config accepted")
	}
	d := newDevice(t, nil)
	_, err := New(Config{Store: d.store, Target: mcubootslot.NewTarget(d.secondary, mcubootslot.Options{}), Boot: mcubootslot.NewPrimary(d.primary, mcubootslot.Options{})})
	if err == nil {
		t.Fatal("missing fetcher accepted")
	}
	_ = fmt.Sprint()
}

func TestCustomJobHandler(t *testing.T) {
	j := &jobs{exec: iotjobs.JobExecution{JobID: "reboot-1", JobDocument: json.RawMessage(`{"operation":"reboot","delaySeconds":2}`),
		Status: iotjobs.StatusQueued, VersionNumber: 1, ExecutionNumber: 1}}
	d := newDevice(t, image(t, 1000, "1.0.0"))
	events := make(chan agent.AppEvent, 100)
	got := make(chan string, 1)
	r, err := New(Config{
		Agent: agent.Config{Thing: thing}, Store: d.store, Fetcher: download.New(download.Config{}),
		Target: mcubootslot.NewTarget(d.secondary, mcubootslot.Options{}), Boot: mcubootslot.NewPrimary(d.primary, mcubootslot.Options{}),
		OnEvent: func(e agent.AppEvent) { events <- e },
		Custom: func(_ context.Context, jobID string, doc []byte) (iotjobs.Status, iotjobs.StatusDetails) {
			got <- jobID + " " + string(doc)
			return iotjobs.StatusSucceeded, iotjobs.StatusDetails{"rebooted": "later"}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	j.r = r
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, j) }()
	r.Connected()
	if s := <-got; s != `reboot-1 {"operation":"reboot","delaySeconds":2}` {
		t.Fatal(s)
	}
	for e := range events {
		if e.Kind == agent.EventCompleted {
			break
		}
	}
	cancel()
	wait(t, done)
	exec, _ := j.snapshot()
	if exec.Status != iotjobs.StatusSucceeded || exec.StatusDetails["rebooted"] != "later" {
		t.Fatalf("cloud sees %s %v", exec.Status, exec.StatusDetails)
	}
}

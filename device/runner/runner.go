// Package runner performs what the agent decides: it feeds the agent events
// from the MQTT connection, the downloader, the DFU target, the bootloader and
// the clock, and carries out the agent's actions in order — persist first,
// then publish, download, verify, schedule, reboot, self-test, confirm, and
// tell the application.
//
// The runner owns one goroutine (Run's) that talks to the agent; downloads,
// verification, the self-test and publishes run in helpers that post their
// results back as events, so a cancel is acted on while a download or a
// verification is still running. Everything it uses is declared here as a
// small interface and handed in, so it runs the same on a simulated device and
// on a real one.
//
// It imports the standard library, iotjobs, clock and the other device/*
// packages; it must never import cloud/* or sim/.
package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/device/download"
	"github.com/awsfota/awsfota/device/state"
	"github.com/awsfota/awsfota/iotjobs"
)

// Transport publishes Jobs requests. mqttconn.Conn implements it. Publish may
// be called from several goroutines.
type Transport interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// Fetcher downloads an object into a sink. *download.Downloader implements it.
type Fetcher interface {
	Fetch(ctx context.Context, req download.Request, sink download.Sink) (download.Result, error)
}

// Boot reads and confirms the running image. mcubootslot.Primary implements it.
type Boot interface {
	Running() (dfu.Running, error)
	Confirm() error
}

// Component is an updatable part of the device besides the application:
// the modem.
type Component struct {
	// Target receives its images (a dfu.Router picks by image type).
	Target dfu.Target
	// Base reads its running firmware, for the base check of delta jobs;
	// nil leaves that check to the target.
	Base io.ReaderAt
	// Version returns the version it runs.
	Version func() (string, error)
}

// Config wires a runner.
type Config struct {
	Agent  agent.Config
	Store  state.Store
	Target dfu.Target // application images
	Boot   Boot
	// Base reads the running application image (the primary slot), for the
	// base check of delta jobs before anything is downloaded; nil leaves that
	// check to the target.
	Base io.ReaderAt
	// Components are the other updatable parts, by the name jobs use
	// ("modem").
	Components map[string]Component
	Fetcher    Fetcher
	Clock      clock.Clock // nil: clock.Real()

	// SelfTest checks the new image after a reboot; it must return within the
	// context's deadline (Agent.SelfTestTimeout). Nil: the image passes.
	SelfTest func(ctx context.Context) error
	// Custom handles custom jobs: jobs whose document is not a firmware
	// update. It returns the execution's final status (SUCCEEDED, FAILED or
	// REJECTED) and statusDetails. Nil: such jobs are REJECTED.
	Custom func(ctx context.Context, jobID string, document []byte) (iotjobs.Status, iotjobs.StatusDetails)
	// OnEvent receives the application events; it must not block for long.
	OnEvent func(agent.AppEvent)
	// CheckpointBytes is how often the download is made durable and its
	// offset persisted (64 KiB).
	CheckpointBytes int64
	Logger          *slog.Logger
}

// ErrReboot is returned by Run when the agent asks for a reboot. The caller
// reboots (a simulated device restarts through its bootloader).
var ErrReboot = errors.New("runner: reboot requested")

// Runner runs one agent. Connected, Disconnected and Deliver may be called
// from any goroutine; Run from one.
type Runner struct {
	cfg    Config
	log    *slog.Logger
	events chan agent.Event
	pings  chan chan struct{}
	done   chan struct{} // closed when Run ends
	once   sync.Once

	// Owned by Run's goroutine.
	ag        *agent.Agent
	tr        Transport
	ctx       context.Context
	wg        sync.WaitGroup
	work      context.CancelFunc // the running target worker (download or verify)
	workDone  chan struct{}
	timer     clock.Timer
	lastSaved []byte
}

// New checks cfg and returns a runner.
func New(cfg Config) (*Runner, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("runner: a state store is required")
	case cfg.Target == nil:
		return nil, errors.New("runner: a DFU target is required")
	case cfg.Boot == nil:
		return nil, errors.New("runner: a boot control is required")
	case cfg.Fetcher == nil:
		return nil, errors.New("runner: a fetcher is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	// Custom jobs go to the application exactly when it handles them.
	cfg.Agent.CustomJobs = cfg.Custom != nil
	if cfg.CheckpointBytes <= 0 {
		cfg.CheckpointBytes = 64 << 10
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{cfg: cfg, log: log, events: make(chan agent.Event, 64), pings: make(chan chan struct{}), done: make(chan struct{})}, nil
}

// post hands an event to Run; it gives up once Run has ended.
func (r *Runner) post(ev agent.Event) {
	select {
	case r.events <- ev:
	case <-r.done:
	}
}

// postWork hands a target worker's event to Run; it also gives up when the
// worker is stopped (Run may be waiting for it).
func (r *Runner) postWork(ctx context.Context, ev agent.Event) {
	select {
	case r.events <- ev:
	case <-ctx.Done():
	case <-r.done:
	}
}

func (r *Runner) base() agent.Base { return agent.Base{At: r.cfg.Clock.Now()} }

// Connected tells the runner the transport is up and subscribed.
func (r *Runner) Connected() { r.post(agent.Connected{Base: r.base()}) }

// Disconnected tells the runner the transport is down.
func (r *Runner) Disconnected() { r.post(agent.Disconnected{Base: r.base()}) }

// Deliver hands a received MQTT message to the runner.
func (r *Runner) Deliver(topic string, payload []byte) {
	r.post(agent.Message{Base: r.base(), Topic: topic, Payload: payload})
}

// ErrStopped is returned by Ping once Run has ended.
var ErrStopped = errors.New("runner: not running")

// Ping returns once Run's loop has come round to answer it: the loop is not
// stuck. A service's watchdog pings it (systemd's WATCHDOG=1). It fails with
// ctx's error, or ErrStopped when Run has ended.
func (r *Runner) Ping(ctx context.Context) error {
	p := make(chan struct{})
	select {
	case r.pings <- p:
	case <-r.done:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-p:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run loads the persisted state, starts the agent and performs its actions
// until ctx ends (it returns ctx's error) or the agent asks for a reboot (it
// returns ErrReboot). A Runner runs once.
func (r *Runner) Run(ctx context.Context, tr Transport) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	r.tr, r.ctx = tr, ctx
	defer func() {
		cancel()
		r.stopWork()
		r.once.Do(func() { close(r.done) })
		r.wg.Wait()
		if r.timer != nil {
			r.timer.Stop()
		}
	}()
	st := agent.State{}
	rec, err := r.cfg.Store.Load()
	switch {
	case errors.Is(err, state.ErrNoState):
	case err != nil:
		return fmt.Errorf("runner: loading the agent state: %w", err)
	default:
		if st, err = agent.UnmarshalState(rec); err != nil {
			return fmt.Errorf("runner: %w (delete the state directory to start afresh; an update in progress is then reported again from the start)", err)
		}
		r.lastSaved = rec
	}
	if r.ag, err = agent.New(r.cfg.Agent, st); err != nil {
		return err
	}
	run, err := r.cfg.Boot.Running()
	if err != nil {
		r.log.Warn("cannot tell which image runs", "err", err)
	}
	boot := agent.Boot{Version: run.Version, BootHash: run.BootHash, Confirmed: run.Confirmed, SecurityCounter: run.SecurityCounter,
		AppComponent: run.AppComponent, Compatible: run.Compatible}
	for name, c := range r.cfg.Components {
		if boot.Components == nil {
			boot.Components = map[string]string{}
		}
		v := ""
		if c.Version != nil {
			if v, err = c.Version(); err != nil {
				r.log.Warn("cannot tell which firmware a component runs", "component", name, "err", err)
			}
		}
		boot.Components[name] = v
	}
	r.log.Info("agent starting", "phase", st.Phase, "running", run.Version, "confirmed", run.Confirmed)
	if err := r.step(agent.Started{Base: r.base(), Boot: boot, Nonce: nonce()}); err != nil {
		return err
	}
	for {
		var tick <-chan time.Time
		if r.timer != nil {
			tick = r.timer.C()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-r.events:
			if err := r.step(ev); err != nil {
				return err
			}
		case <-tick:
			r.timer = nil
			if err := r.step(agent.Tick{Base: r.base()}); err != nil {
				return err
			}
		case p := <-r.pings:
			close(p)
		}
	}
}

func nonce() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// step feeds one event and performs the resulting actions in order; the
// results of actions done on the spot are fed back before step returns.
func (r *Runner) step(ev agent.Event) error {
	queue := []agent.Event{ev}
	for len(queue) > 0 {
		rd := r.ag.Step(queue[0])
		queue = queue[1:]
		for _, a := range rd.Actions {
			follow, err := r.perform(a)
			if err != nil {
				return err
			}
			if follow != nil {
				queue = append(queue, follow)
			}
		}
		if r.timer != nil {
			r.timer.Stop()
			r.timer = nil
		}
		if !rd.WakeAt.IsZero() {
			r.timer = r.cfg.Clock.NewTimer(max(rd.WakeAt.Sub(r.cfg.Clock.Now()), 0))
		}
	}
	return nil
}

// perform carries out one action. Actions done on the spot return the event
// that reports their result.
func (r *Runner) perform(a agent.Action) (agent.Event, error) {
	switch a := a.(type) {
	case agent.Persist:
		rec := a.State.Marshal()
		if string(rec) == string(r.lastSaved) {
			return nil, nil
		}
		if err := r.cfg.Store.Save(rec); err != nil {
			// Without durable state the agent could report what is not true
			// after a restart: stop here rather than go on.
			return nil, fmt.Errorf("runner: persisting the agent state: %w", err)
		}
		r.lastSaved = rec
	case agent.Publish:
		r.goPublish(a)
	case agent.StartDownload:
		r.stopWork()
		r.startDownload(a)
	case agent.StopDownload:
		r.stopWork()
	case agent.Verify:
		r.stopWork()
		var req dfu.InstallRequest
		if j := r.ag.State().Job; j != nil {
			req = dfu.InstallRequest{JobID: j.ID, Document: j.Document, FWVersion: j.FWVersion}
		}
		r.startVerify(a, req)
	case agent.Schedule:
		r.stopWork()
		t, _, err := r.target(a.Component)
		if err == nil {
			err = t.Schedule(a.Permanent)
		}
		return agent.Scheduled{Base: r.base(), Err: errText(err)}, nil
	case agent.ResetTarget:
		r.stopWork()
		t, _, err := r.target(a.Component)
		if err == nil {
			err = t.Reset()
		}
		if err != nil {
			r.log.Error("resetting the DFU target failed", "component", a.Component, "err", err)
		}
	case agent.Reboot:
		r.log.Info("reboot requested")
		return nil, ErrReboot
	case agent.SelfTest:
		r.goSelfTest(a.Timeout)
	case agent.Confirm:
		err := r.cfg.Boot.Confirm()
		return agent.Confirmed{Base: r.base(), Err: errText(err)}, nil
	case agent.RunCustom:
		r.goCustom(a)
	case agent.Notify:
		r.log.Info("event", "kind", a.Event.Kind, "job", a.Event.JobID, "percent", a.Event.Percent, "reason", a.Event.Reason, "message", a.Event.Message)
		if r.cfg.OnEvent != nil {
			r.cfg.OnEvent(a.Event)
		}
	default:
		return nil, fmt.Errorf("runner: unknown action %T", a)
	}
	return nil, nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (r *Runner) goPublish(p agent.Publish) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
		defer cancel()
		if err := r.tr.Publish(ctx, p.Topic, p.Payload); err != nil {
			// The agent sends it again when no reply comes.
			r.log.Warn("publish failed", "topic", p.Topic, "err", err)
		}
	}()
}

func (r *Runner) goSelfTest(timeout time.Duration) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		var err error
		if r.cfg.SelfTest != nil {
			ctx, cancel := context.WithTimeout(r.ctx, timeout)
			err = r.cfg.SelfTest(ctx)
			if r.ctx.Err() != nil {
				// The runner stops (a reboot, a shutdown): the self-test was
				// cut short, not failed. The agent runs it again after the
				// restart, or tells the reset from its persisted trial marker.
				cancel()
				return
			}
			if err == nil && ctx.Err() != nil {
				err = fmt.Errorf("the self-test did not finish within %v", timeout)
			}
			cancel()
		}
		r.post(agent.SelfTested{Base: r.base(), Err: errText(err)})
	}()
}

func (r *Runner) goCustom(c agent.RunCustom) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		status, details := iotjobs.StatusRejected, iotjobs.StatusDetails{"reason": agent.ReasonUnsupportedOperation}
		if r.cfg.Custom != nil {
			status, details = r.cfg.Custom(r.ctx, c.JobID, c.Document)
		}
		r.post(agent.CustomDone{Base: r.base(), JobID: c.JobID, Status: status, Details: details})
	}()
}

// startWork runs f as the one target worker.
func (r *Runner) startWork(f func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan struct{})
	r.work, r.workDone = cancel, done
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(done)
		f(ctx)
	}()
}

// stopWork cancels the target worker and waits for it, so the target is
// never used by two goroutines.
func (r *Runner) stopWork() {
	if r.work == nil {
		return
	}
	r.work()
	<-r.workDone
	r.work, r.workDone = nil, nil
}

// targetError marks an error of the DFU target inside a download.
type targetError struct{ err error }

func (e *targetError) Error() string { return e.err.Error() }
func (e *targetError) Unwrap() error { return e.err }

// sink adapts the DFU target to the downloader.
type sink struct {
	t    dfu.Target
	size int64
}

func (s *sink) Write(p []byte) (int, error) {
	if err := s.t.Write(p); err != nil {
		return 0, &targetError{err}
	}
	return len(p), nil
}

func (s *sink) Restart() error {
	if err := s.t.Init(s.size, 0); err != nil {
		return &targetError{err}
	}
	return nil
}

// target returns the target and base reader of a component ("" is the
// application).
func (r *Runner) target(component string) (dfu.Target, io.ReaderAt, error) {
	if component == "" {
		return r.cfg.Target, r.cfg.Base, nil
	}
	c, ok := r.cfg.Components[component]
	if !ok || c.Target == nil {
		return nil, nil, fmt.Errorf("%w: this device has no %q to update", dfu.ErrUnsupportedType, component)
	}
	return c.Target, c.Base, nil
}

func (r *Runner) startDownload(a agent.StartDownload) {
	r.startWork(func(ctx context.Context) {
		t, base, err := r.target(a.Component)
		if err != nil {
			r.postWork(ctx, agent.DownloadFailed{Base: r.base(), Failure: agent.FailUnsupported, Message: err.Error()})
			return
		}
		if len(a.BaseSHA256) > 0 && base != nil && a.Offset == 0 {
			// A delta: make sure it applies before fetching a byte of it.
			if err := dfu.CheckBase(base, a.BaseSize, a.BaseSHA256); err != nil {
				failure := agent.FailTarget
				if errors.Is(err, dfu.ErrBaseMismatch) {
					failure = agent.FailBaseMismatch
				}
				r.postWork(ctx, agent.DownloadFailed{Base: r.base(), Failure: failure, Message: err.Error()})
				return
			}
		}
		if err := t.Init(a.Size, a.Offset); err != nil {
			failure := agent.FailTarget
			if errors.Is(err, dfu.ErrTooLarge) {
				failure = agent.FailTooLarge
			}
			r.postWork(ctx, agent.DownloadFailed{Base: r.base(), Failure: failure, Message: err.Error()})
			return
		}
		var lastCkpt int64 = a.Offset
		req := download.Request{URL: a.URL, Offset: a.Offset, Size: a.Size, ETag: a.ETag,
			OnProgress: func(p download.Progress) {
				if p.Offset < lastCkpt {
					lastCkpt = 0 // restarted from the beginning
				}
				if p.Offset-lastCkpt < r.cfg.CheckpointBytes && (p.Total == 0 || p.Offset < p.Total) {
					return
				}
				durable, err := t.Checkpoint()
				if err != nil {
					r.log.Warn("checkpoint failed", "err", err)
					return
				}
				lastCkpt = p.Offset
				r.postWork(ctx, agent.DownloadProgress{Base: r.base(), Received: p.Offset, Durable: durable, Total: p.Total, ETag: p.ETag})
			}}
		res, err := r.cfg.Fetcher.Fetch(ctx, req, &sink{t: t, size: a.Size})
		if ctx.Err() != nil {
			return // stopped by the agent: no event
		}
		if err != nil {
			var te *targetError
			failure := agent.FailNetwork
			switch {
			case errors.Is(err, dfu.ErrTooLarge):
				failure = agent.FailTooLarge
			case errors.Is(err, dfu.ErrBaseMismatch):
				failure = agent.FailBaseMismatch
			case errors.Is(err, dfu.ErrInvalidImage):
				failure = agent.FailInvalidImage
			case errors.Is(err, dfu.ErrUnsupportedType):
				failure = agent.FailUnsupported
			case errors.As(err, &te):
				failure = agent.FailTarget
			case errors.Is(err, download.ErrURLRejected):
				failure = agent.FailURLRejected
			case errors.Is(err, download.ErrNotFound):
				failure = agent.FailNotFound
			}
			r.postWork(ctx, agent.DownloadFailed{Base: r.base(), Failure: failure, Message: err.Error()})
			return
		}
		kind := ""
		if k, ok := t.(interface{ Kind() dfu.ImageType }); ok {
			kind = k.Kind().String()
		}
		r.postWork(ctx, agent.DownloadDone{Base: r.base(), Total: res.Size, ETag: res.ETag, Kind: kind})
	})
}

// startVerify checks the complete image; an Installer installs it too,
// reporting its progress, with req saying which job it is for.
func (r *Runner) startVerify(v agent.Verify, req dfu.InstallRequest) {
	r.startWork(func(ctx context.Context) {
		t, _, err := r.target(v.Component)
		if err != nil {
			r.postWork(ctx, agent.Verified{Base: r.base(), Failure: agent.VerifyInvalid, Message: err.Error()})
			return
		}
		if v.Resume {
			if err := t.Init(v.Size, v.Size); err != nil {
				r.postWork(ctx, agent.Verified{Base: r.base(), Failure: agent.VerifyIO, Message: err.Error()})
				return
			}
		}
		var im dfu.Image
		if in, ok := t.(dfu.Installer); ok {
			req.Progress = func(pct int, msg string) {
				r.postWork(ctx, agent.InstallProgress{Base: r.base(), Percent: pct, Message: msg})
			}
			im, err = in.Install(ctx, req)
		} else {
			im, err = t.Done()
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			f := agent.VerifyIO
			switch {
			case errors.Is(err, dfu.ErrIncompatible):
				f = agent.VerifyIncompatible
			case errors.Is(err, dfu.ErrInstallFailed):
				f = agent.VerifyInstallError
			case errors.Is(err, dfu.ErrBaseMismatch):
				f = agent.VerifyInvalid
			case errors.Is(err, dfu.ErrBadSignature):
				f = agent.VerifyBadSignature
			case errors.Is(err, dfu.ErrUnsigned):
				f = agent.VerifyUnsigned
			case errors.Is(err, dfu.ErrHashMismatch):
				f = agent.VerifyHashMismatch
			case errors.Is(err, dfu.ErrInvalidImage):
				f = agent.VerifyInvalid
			}
			r.postWork(ctx, agent.Verified{Base: r.base(), Failure: f, Message: err.Error()})
			return
		}
		r.postWork(ctx, agent.Verified{Base: r.base(), Image: agent.Image{Type: im.Type.String(), Size: im.Size, SHA256: im.SHA256,
			BootHash: im.BootHash, Version: im.Version, SecurityCounter: im.SecurityCounter}})
	})
}

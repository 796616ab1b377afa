package agent

import (
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/jobdoc"
)

// Config holds the agent's settings. Zero fields take the defaults shown.
type Config struct {
	Thing  string        // the thing name (MQTT client id); required
	Limits jobdoc.Limits // document limits (jobdoc.DefaultLimits)

	ProgressPercent  int           // report progress every N percent (10)
	ProgressInterval time.Duration // ... or every interval, whichever first (30s)
	ReplyTimeout     time.Duration // resend a Jobs request unanswered for this long (20s)
	RetryMin         time.Duration // first backoff after a rejected or failed request (1s)
	RetryMax         time.Duration // backoff ceiling (5m)
	SelfTestTimeout  time.Duration // the application's self-test must pass within (60s)
	MaxURLRefreshes  int           // fresh URLs asked for without progress before failing (3)

	// CustomJobs says the application handles jobs whose operation is not a
	// firmware update (RunCustom actions); otherwise they are REJECTED.
	CustomJobs bool
	// AllowDowngrade accepts images not newer than the running one.
	AllowDowngrade bool
	// InstallAttempts is how many trial boots an application image gets
	// when each ends in a reset before its self-test passed (power loss,
	// watchdog) and the bootloader reverted it: the agent installs it again
	// until then, and reports FAILED after the last (3).
	InstallAttempts int
	// CancelDuringTrial says how a job canceled (with force) while its new
	// image is on trial ends: TrialFinish (the default) lets the self-test
	// decide — confirm the image when it passes, revert when it fails;
	// TrialRevert reboots to the old image at once.
	CancelDuringTrial TrialCancel
	// Jitter returns a value in [0,1) that spreads retries; nil: no jitter.
	Jitter func() float64
}

func (c *Config) setDefaults() {
	if c.Limits == (jobdoc.Limits{}) {
		c.Limits = jobdoc.DefaultLimits()
	}
	if c.ProgressPercent <= 0 {
		c.ProgressPercent = 10
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = 30 * time.Second
	}
	if c.ReplyTimeout <= 0 {
		c.ReplyTimeout = 20 * time.Second
	}
	if c.RetryMin <= 0 {
		c.RetryMin = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Minute
	}
	if c.SelfTestTimeout <= 0 {
		c.SelfTestTimeout = time.Minute
	}
	if c.MaxURLRefreshes <= 0 {
		c.MaxURLRefreshes = 3
	}
	if c.InstallAttempts <= 0 {
		c.InstallAttempts = 3
	}
	if c.CancelDuringTrial == "" {
		c.CancelDuringTrial = TrialFinish
	}
}

// TrialCancel is what a job canceled while its new image is on trial does.
type TrialCancel string

// The outcomes of a cancel during a trial.
const (
	TrialFinish TrialCancel = "finish" // the self-test decides: confirm when it passes, revert when it fails
	TrialRevert TrialCancel = "revert" // reboot to the old image at once
)

// ParseTrialCancel reads a CancelDuringTrial setting; "" is the default.
func ParseTrialCancel(s string) (TrialCancel, error) {
	switch t := TrialCancel(s); t {
	case "", TrialFinish, TrialRevert:
		return t, nil
	}
	return "", fmt.Errorf("agent: a cancel during a trial can %q or %q, not %q", TrialFinish, TrialRevert, s)
}

type reqKind int

const (
	reqNext reqKind = iota + 1
	reqDescribe
	reqUpdate
)

type repKind int

const (
	repStart repKind = iota + 1
	repProgress
	repReady
	repFinal
)

type report struct {
	kind    repKind
	status  iotjobs.Status
	details iotjobs.StatusDetails
}

type request struct {
	kind     reqKind
	token    string
	jobID    string
	report   *report
	deadline time.Time
}

// Agent is the FOTA state machine. It is not safe for concurrent use: one
// goroutine (the runner) feeds it events.
type Agent struct {
	cfg Config
	st  State

	now       time.Time
	started   bool
	boot      Boot
	nonce     string
	seq       int
	connected bool
	synced    bool // the current job was (re)read since connecting
	check     bool // a notification suggests the current job is gone: re-read it
	refresh   bool // the download needs a fresh URL from a re-read
	needNext  bool // idle: ask for the next job
	probed    bool // a TerminalStateReached describe was answered by sending the pending report
	inflight  *request
	want      *report
	retryAt   time.Time
	failures  int
	running   bool // a download is running

	progressAt  time.Time
	progressPct int
	lastPct     int // last percent told to the application

	installAt  time.Time // the last install progress report; zero before the first
	installPct int

	out []Action
}

// New returns an agent that resumes from st (the zero State when nothing was
// persisted). cfg.Thing is required.
func New(cfg Config, st State) (*Agent, error) {
	if err := iotjobs.ValidateThingName(cfg.Thing); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	cfg.setDefaults()
	if st.Phase == "" {
		st.Phase = PhaseIdle
	}
	return &Agent{cfg: cfg, st: st}, nil
}

// State returns the current persisted state.
func (a *Agent) State() State { return a.st }

// Step feeds one event to the agent and returns what to do.
func (a *Agent) Step(ev Event) Ready {
	a.out = nil
	if t := ev.at(); t.After(a.now) {
		a.now = t
	}
	if s, ok := ev.(Started); ok {
		a.onStarted(s)
	} else if a.started {
		switch e := ev.(type) {
		case Connected:
			a.connected = true
			a.synced = false
			a.inflight = nil
			a.retryAt = time.Time{}
		case Disconnected:
			a.connected = false
			a.inflight = nil
		case Message:
			a.onMessage(e)
		case DownloadProgress:
			a.onProgress(e)
		case DownloadDone:
			a.onDownloadDone(e)
		case DownloadFailed:
			a.onDownloadFailed(e)
		case InstallProgress:
			a.onInstallProgress(e)
		case Verified:
			a.onVerified(e)
		case Scheduled:
			a.onScheduled(e)
		case SelfTested:
			a.onSelfTested(e)
		case Confirmed:
			a.onConfirmed(e)
		case CustomDone:
			a.onCustomDone(e)
		case Tick:
			if a.inflight != nil && !a.now.Before(a.inflight.deadline) {
				a.inflight = nil // unanswered: the pump sends it again
			}
		}
	}
	a.pump()
	return Ready{Actions: a.out, WakeAt: a.wakeAt()}
}

func (a *Agent) emit(acts ...Action) { a.out = append(a.out, acts...) }

func (a *Agent) persist() { a.emit(Persist{State: a.st}) }

func (a *Agent) notify(e AppEvent) {
	if a.st.Job != nil && e.JobID == "" {
		e.JobID = a.st.Job.ID
	}
	a.emit(Notify{Event: e})
}

func (a *Agent) onStarted(e Started) {
	a.started, a.boot, a.nonce = true, e.Boot, e.Nonce
	a.connected, a.inflight, a.want, a.running = false, nil, nil, false
	switch a.st.Phase {
	case PhaseIdle:
		a.needNext = true
	case PhaseStarting:
		a.want = a.startReport()
	case PhaseDownloading:
		a.startDownload()
	case PhaseVerifying:
		if a.comp() == "" && (a.st.Kind == "" || a.st.Kind == "mcuboot" || a.st.Kind == "rauc" || a.st.Kind == "file") {
			a.emit(Verify{Size: a.st.Total, Resume: true})
			break
		}
		// A delta or a component image cannot be re-checked where it
		// stands: fetch it again (it is small, and nothing was installed).
		a.st.Phase, a.st.Offset, a.st.ETag, a.st.Kind = PhaseDownloading, 0, "", ""
		a.persist()
		a.startDownload()
	case PhaseReady:
		if a.runsNewImage() {
			// The swap happened although the reboot was not recorded.
			a.st.Attempts++
			a.afterReboot()
			return
		}
		a.want = a.readyReport()
	case PhaseRebooting, PhaseTesting:
		a.afterReboot()
	case PhaseReporting:
		a.want = a.finalReport()
	case PhaseCustom:
		// The application may have been interrupted: hand it the job again.
		a.emit(RunCustom{JobID: a.st.Job.ID, Document: a.st.Job.Document})
	}
}

// comp is the component the current job updates: "" for the application.
func (a *Agent) comp() string {
	if a.st.Job == nil {
		return ""
	}
	return a.st.Job.Component
}

// runsNewImage reports whether the device now runs what the job installed.
func (a *Agent) runsNewImage() bool {
	if a.comp() != "" {
		return a.componentUpdated()
	}
	return a.st.Image != nil && len(a.boot.BootHash) > 0 && string(a.boot.BootHash) == string(a.st.Image.BootHash)
}

// componentUpdated reports whether a component (the modem) now runs the
// version the job installs: the document's fwversion, else the image's, else
// any version other than the one it ran before.
func (a *Agent) componentUpdated() bool {
	running, ok := a.boot.Components[a.comp()]
	if !ok || running == "" {
		return false
	}
	want := a.st.Job.FWVersion
	if want == "" && a.st.Image != nil {
		want = a.st.Image.Version
	}
	if want == "" {
		return running != a.st.FromVersion
	}
	w, ok := parseVersion(want)
	if !ok {
		return strings.TrimPrefix(want, "v") == strings.TrimPrefix(running, "v")
	}
	r, ok := parseVersion(running)
	if !ok {
		return false
	}
	if !strings.Contains(want, "+") {
		r[3] = 0
	}
	return compareVersions(w, r) == 0
}

// newVersion is the version the job installs, as far as it is known.
func (a *Agent) newVersion() string {
	if a.st.Image != nil && a.st.Image.Version != "" {
		return a.st.Image.Version
	}
	return a.st.Job.FWVersion
}

// afterReboot decides what the image running after the swap means.
func (a *Agent) afterReboot() {
	if c := a.comp(); c != "" {
		// A component (the modem) installs its update when it restarts; it has
		// no trial to confirm.
		if !a.componentUpdated() {
			a.fail(ReasonModemUpdateFailed, fmt.Sprintf("after its restart the %s runs %s, not %s", c,
				orUnknown(a.boot.Components[c]), orUnknown(a.newVersion())), true)
			return
		}
		a.succeed()
		return
	}
	if !a.runsNewImage() {
		if a.st.Canceled != "" {
			// Canceled during the trial, which a reset ended: the bootloader
			// reverted the image, as a failed self-test would have.
			a.endCanceledTrial(fmt.Sprintf("the trial of %s was cut short by a reset and the device runs %s again",
				a.st.Image.Version, orUnknown(a.boot.Version)), false)
			return
		}
		a.trialInterrupted()
		return
	}
	if a.boot.Confirmed {
		// A permanent swap, or an image confirmed before a power cut.
		if a.st.Canceled != "" {
			a.endCanceledTrial(fmt.Sprintf("%s passed its self-test and is kept", a.st.Image.Version), false)
			return
		}
		a.succeed()
		return
	}
	a.st.Phase, a.st.Trial = PhaseTesting, TrialSelfTest
	a.persist()
	a.emit(SelfTest{Timeout: a.cfg.SelfTestTimeout})
}

// retryable reports whether the job's image can be installed again after a
// trial that a reset cut short: an application image in MCUboot slots (full
// or delta), whose bootloader reverts an unconfirmed image. A system
// updater (RAUC) counts its own boot attempts.
func (a *Agent) retryable() bool {
	return a.comp() == "" && (a.st.Kind == "" || a.st.Kind == "mcuboot" || a.st.Kind == "delta")
}

// trialInterrupted handles a device back on its old image after a reboot
// into the new one that ended without a verdict: the trial marker says how
// far it went. While attempts remain the image is installed again — from
// the slot when it still holds it — else the job FAILED.
func (a *Agent) trialInterrupted() {
	why := fmt.Sprintf("after the reboot the device runs %s, not %s", orUnknown(a.boot.Version), a.st.Image.Version)
	reason := ReasonTrialReset
	switch a.st.Trial {
	case TrialSelfTest:
		why += ": a reset (power loss, watchdog) during its self-test reverted the new image"
	case TrialPassed:
		why += ": a reset after its self-test passed, before it was confirmed, reverted the new image"
	default:
		why += ": the bootloader refused or reverted the new image"
		reason = ReasonRollback
	}
	if !a.retryable() {
		a.fail(reason, why, true)
		return
	}
	if a.st.Attempts >= a.cfg.InstallAttempts {
		a.fail(reason, fmt.Sprintf("%s (attempt %d of %d)", why, a.st.Attempts, a.cfg.InstallAttempts), true)
		return
	}
	a.st.Interrupted = why
	a.notify(AppEvent{Kind: EventRetry, Message: fmt.Sprintf("%s: installing it again (attempt %d of %d)", why, a.st.Attempts+1, a.cfg.InstallAttempts)})
	a.want = &report{kind: repProgress, status: iotjobs.StatusInProgress, details: iotjobs.StatusDetails{
		"state": "retrying", "attempt": strconv.Itoa(a.st.Attempts + 1), "interrupted": clean(why)}}
	if a.st.Kind == "delta" {
		// The slot holds what the patch made, not the patch: fetch it again.
		a.refetch()
		return
	}
	// MCUboot's revert leaves the image in the secondary slot: check it is
	// still there rather than download it again.
	a.st.Phase, a.st.Recheck = PhaseVerifying, true
	a.persist()
	a.emit(Verify{Size: a.st.Total, Resume: true})
}

// refetch downloads the job's image again from the start.
func (a *Agent) refetch() {
	a.st.Phase, a.st.Offset, a.st.ETag, a.st.Kind, a.st.Recheck = PhaseDownloading, 0, "", "", false
	a.persist()
	a.startDownload()
}

// endCanceledTrial ends the trial of a job canceled during it: the job is
// over for the device, which reports nothing more on it; reboot reverts the
// image.
func (a *Agent) endCanceledTrial(what string, reboot bool) {
	id, why := a.st.Job.ID, a.st.Canceled
	a.clear()
	a.persist()
	a.notify(AppEvent{Kind: EventCanceled, JobID: id, Message: why + "; " + what})
	if reboot {
		a.emit(Reboot{})
	}
}

func counterText(c *uint32) string {
	if c == nil {
		return "(none)"
	}
	return strconv.FormatUint(uint64(*c), 10)
}

func orText(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown image"
	}
	return s
}

// ---- Jobs messages ----

func (a *Agent) onMessage(m Message) {
	t, err := iotjobs.ParseTopic(m.Topic)
	if err != nil || t.Thing != a.cfg.Thing {
		return
	}
	switch {
	case t.Op == iotjobs.OpNotifyNext && t.Reply == iotjobs.ReplyNone:
		var n iotjobs.NotifyNextMessage
		if iotjobs.Decode(m.Payload, &n) != nil {
			return
		}
		a.onNext(n.Execution)
	case t.Op == iotjobs.OpNotify && t.Reply == iotjobs.ReplyNone:
		var n iotjobs.NotifyMessage
		if iotjobs.Decode(m.Payload, &n) != nil {
			return
		}
		a.onNotify(n)
	case t.Op == iotjobs.OpDescribe && t.Reply == iotjobs.ReplyAccepted:
		var r iotjobs.ExecutionResponse
		if iotjobs.Decode(m.Payload, &r) != nil {
			return
		}
		req := a.match(r.ClientToken)
		if req == nil {
			return
		}
		if req.kind == reqNext {
			a.onNext(r.Execution)
		} else if req.kind == reqDescribe {
			a.onDescribed(req, r.Execution)
		}
	case t.Op == iotjobs.OpDescribe && t.Reply == iotjobs.ReplyRejected:
		var r iotjobs.ErrorResponse
		if iotjobs.Decode(m.Payload, &r) != nil {
			return
		}
		req := a.match(r.ClientToken)
		if req == nil {
			return
		}
		if req.kind == reqDescribe && a.st.Job != nil && req.jobID == a.st.Job.ID {
			switch r.Code {
			case iotjobs.CodeResourceNotFound:
				a.abandon("the job execution no longer exists")
				return
			case iotjobs.CodeTerminalStateReached:
				a.onTerminalReached()
				return
			}
		}
		a.backoff()
	case t.Op == iotjobs.OpUpdate && t.Reply == iotjobs.ReplyAccepted:
		var r iotjobs.UpdateResponse
		if iotjobs.Decode(m.Payload, &r) != nil {
			return
		}
		if req := a.match(r.ClientToken); req != nil && req.kind == reqUpdate {
			v := int64(0)
			if r.ExecutionState != nil {
				v = r.ExecutionState.VersionNumber
			}
			a.onUpdateAccepted(req, v)
		}
	case t.Op == iotjobs.OpUpdate && t.Reply == iotjobs.ReplyRejected:
		var r iotjobs.ErrorResponse
		if iotjobs.Decode(m.Payload, &r) != nil {
			return
		}
		if req := a.match(r.ClientToken); req != nil && req.kind == reqUpdate {
			a.onUpdateRejected(req, &r)
		}
	}
}

// match returns the request in flight that a reply with tok answers, and
// clears it.
func (a *Agent) match(tok string) *request {
	if a.inflight == nil || tok == "" || a.inflight.token != tok {
		return nil // a late or foreign reply
	}
	r := a.inflight
	a.inflight = nil
	return r
}

func (a *Agent) onNext(e *iotjobs.JobExecution) {
	if a.st.Job == nil {
		a.needNext = false
		if e != nil && !e.Status.Terminal() {
			a.take(e)
		}
		return
	}
	if e != nil && e.JobID == a.st.Job.ID {
		return // duplicate or late: nothing changed for us
	}
	// Another job (or none) is next: ours may have been canceled, removed or
	// timed out. Re-read it before acting on a possibly stale message.
	a.check = true
}

func (a *Agent) onNotify(n iotjobs.NotifyMessage) {
	if a.st.Job == nil {
		if len(n.Jobs[iotjobs.StatusQueued])+len(n.Jobs[iotjobs.StatusInProgress]) > 0 {
			a.needNext = true
		}
		return
	}
	for _, list := range n.Jobs {
		for _, s := range list {
			if s.JobID == a.st.Job.ID {
				return
			}
		}
	}
	a.check = true
}

// take starts work on a new execution.
func (a *Agent) take(e *iotjobs.JobExecution) {
	job := &Job{ID: e.JobID, ExecutionNumber: e.ExecutionNumber, VersionNumber: e.VersionNumber, Document: e.JobDocument}
	a.st = State{Phase: PhaseStarting, Job: job, FromVersion: a.boot.Version}
	a.synced = true
	declinable := e.Status == iotjobs.StatusQueued
	doc, err := jobdoc.Parse(e.JobDocument, a.cfg.Limits)
	if err != nil {
		reason := ReasonInvalidDocument
		switch {
		case errors.Is(err, jobdoc.ErrTooLong):
			reason = ReasonLimitExceeded
		case errors.Is(err, jobdoc.ErrUnsupported):
			reason = ReasonUnsupportedOperation
		}
		a.notify(AppEvent{Kind: EventError, Reason: reason, Message: err.Error()})
		a.decide(Outcome{Status: failOrReject(reason == ReasonUnsupportedOperation && declinable), Details: failure(reason, err.Error())})
		return
	}
	job.Kind = doc.Kind
	if doc.Kind == jobdoc.KindCustom {
		if a.cfg.CustomJobs {
			a.st.Phase = PhaseCustom
			a.persist()
			a.emit(RunCustom{JobID: job.ID, Document: job.Document})
			return
		}
		msg := fmt.Sprintf("operation %q is not a firmware update and the device has no handler for it", doc.Operation)
		a.notify(AppEvent{Kind: EventError, Reason: ReasonUnsupportedOperation, Message: msg})
		a.decide(Outcome{Status: failOrReject(declinable), Details: failure(ReasonUnsupportedOperation, msg)})
		return
	}
	job.URL, job.Size, job.SHA256, job.FWVersion = doc.URL, doc.Size, doc.SHA256, doc.FWVersion
	if doc.Base != nil {
		job.BaseSHA256, job.BaseSize = doc.Base.SHA256, doc.Base.Size
	}
	job.StepTimeout = doc.StepTimeoutMinutes
	if doc.Compatible != "" && a.boot.Compatible != "" && doc.Compatible != a.boot.Compatible {
		msg := fmt.Sprintf("the image is for %q systems and this device is %q: nothing was downloaded", doc.Compatible, a.boot.Compatible)
		a.notify(AppEvent{Kind: EventError, Reason: ReasonIncompatible, Message: msg})
		a.decide(Outcome{Status: iotjobs.StatusFailed, Details: failure(ReasonIncompatible, msg)})
		return
	}
	if doc.Component != "" && doc.Component == a.boot.AppComponent {
		doc.Component = jobdoc.ComponentApp // this device's system updater installs the application
	}
	if doc.Component != "" && doc.Component != jobdoc.ComponentApp {
		running, ok := a.boot.Components[doc.Component]
		if !ok {
			msg := fmt.Sprintf("the job updates the %s, which this device cannot update", doc.Component)
			a.notify(AppEvent{Kind: EventError, Reason: ReasonUnsupportedOperation, Message: msg})
			a.decide(Outcome{Status: failOrReject(declinable), Details: failure(ReasonUnsupportedOperation, msg)})
			return
		}
		job.Component, a.st.FromVersion = doc.Component, running
	}
	a.persist()
	a.want = a.startReport()
}

func failOrReject(reject bool) iotjobs.Status {
	if reject {
		return iotjobs.StatusRejected
	}
	return iotjobs.StatusFailed
}

func failure(reason, msg string) iotjobs.StatusDetails {
	return iotjobs.StatusDetails{"state": "failed", "reason": reason, "message": clean(msg)}
}

// clean makes a message fit AWS's statusDetails value rules.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > iotjobs.MaxStatusDetailValLen {
		s = string(r[:iotjobs.MaxStatusDetailValLen-1]) + "…"
	}
	if s == "" {
		s = "-"
	}
	return s
}

func (a *Agent) onDescribed(req *request, e *iotjobs.JobExecution) {
	if a.st.Job == nil || req.jobID != a.st.Job.ID {
		return
	}
	if e == nil || e.JobID != a.st.Job.ID {
		a.abandon("the job execution no longer exists")
		return
	}
	a.synced, a.check, a.probed = true, false, false
	a.st.Job.VersionNumber = e.VersionNumber
	if e.Status.Terminal() {
		a.onTerminal(e.Status)
		return
	}
	if a.refresh {
		a.refresh = false
		doc, err := jobdoc.Parse(e.JobDocument, a.cfg.Limits)
		if err != nil || doc.URL == "" {
			a.fail(ReasonDownloadFailed, "the server refused the image URL and the job's document gives no usable fresh one", true)
			return
		}
		a.st.Job.URL = doc.URL
		a.persist()
		a.startDownload()
	}
}

// onTerminalReached handles AWS's answer to a describe of an execution
// that is over (TerminalStateReached), which does not say how it ended. A
// report still to be sent goes out: its rejection (InvalidStateTransition)
// carries the execution's status, which tells our own applied report (its
// reply lost) from a cancel or a timeout. Without one, or when even that
// did not tell, the job is over for the device.
func (a *Agent) onTerminalReached() {
	a.check, a.refresh = false, false
	if a.want != nil && !a.probed {
		a.probed, a.synced = true, true
		return
	}
	a.abandon("the cloud ended the execution (TerminalStateReached)")
}

// onTerminal handles the cloud's word that the execution is over.
func (a *Agent) onTerminal(s iotjobs.Status) {
	if a.st.Phase == PhaseReporting && a.st.Outcome != nil && a.st.Outcome.Status == s {
		a.complete() // our report was applied; its reply was lost
		return
	}
	a.abandon(fmt.Sprintf("the cloud set the execution to %s", s))
}

func (a *Agent) onUpdateAccepted(req *request, version int64) {
	if a.st.Job == nil || req.jobID != a.st.Job.ID {
		return
	}
	if version > 0 {
		a.st.Job.VersionNumber = version
	} else {
		a.st.Job.VersionNumber++
	}
	a.failures = 0
	if a.want == req.report {
		a.want = nil
	}
	switch req.report.kind {
	case repStart:
		if a.st.Phase == PhaseStarting {
			a.st.Phase = PhaseDownloading
			a.st.Offset, a.st.ETag, a.st.Total = 0, "", 0
			a.persist()
			a.notify(AppEvent{Kind: EventStart, Total: a.st.Job.Size})
			a.startDownload()
		}
	case repReady:
		if a.st.Phase == PhaseReady {
			a.emit(Schedule{Component: a.comp()})
		}
	case repFinal:
		a.complete()
	}
}

func (a *Agent) onUpdateRejected(req *request, r *iotjobs.ErrorResponse) {
	if a.st.Job == nil || req.jobID != a.st.Job.ID {
		return
	}
	es := r.ExecutionState
	switch r.Code {
	case iotjobs.CodeVersionMismatch:
		if es == nil {
			a.synced = false // re-read, then send again
			return
		}
		a.st.Job.VersionNumber = es.VersionNumber
		if es.Status.Terminal() {
			a.onTerminal(es.Status)
			return
		}
		if es.Status == req.report.status && maps.Equal(es.StatusDetails, req.report.details) {
			// The same report was applied before (its reply was lost).
			a.onUpdateAccepted(req, es.VersionNumber)
			return
		}
		// Send again with the current version: the pump does it now.
	case iotjobs.CodeInvalidStateTransition, iotjobs.CodeTerminalStateReached:
		if es != nil && es.Status.Terminal() {
			a.st.Job.VersionNumber = es.VersionNumber
			a.onTerminal(es.Status)
			return
		}
		if req.report.status == iotjobs.StatusRejected && a.want == req.report {
			// REJECTED is only valid from QUEUED: say FAILED instead.
			a.want = &report{kind: req.report.kind, status: iotjobs.StatusFailed, details: req.report.details}
			if a.st.Outcome != nil {
				a.st.Outcome.Status = iotjobs.StatusFailed
				a.persist()
			}
			return
		}
		a.synced = false
	case iotjobs.CodeResourceNotFound:
		a.abandon("the job execution no longer exists")
	default:
		// InvalidRequest, InvalidJson, RequestThrottled, InternalError, or a
		// code from the future: never drop the report, retry with backoff.
		a.backoff()
	}
}

func (a *Agent) backoff() {
	a.failures++
	d := a.cfg.RetryMin
	for i := 1; i < a.failures && d < a.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, a.cfg.RetryMax)
	if a.cfg.Jitter != nil {
		d = d/2 + time.Duration(a.cfg.Jitter()*float64(d/2))
	}
	a.retryAt = a.now.Add(d)
}

// abandon stops work on a job the cloud no longer wants.
func (a *Agent) abandon(why string) {
	id := a.st.Job.ID
	if a.st.Phase == PhaseTesting {
		a.cancelTrial(why)
		return
	}
	if a.running {
		a.emit(StopDownload{})
		a.running = false
	}
	switch a.st.Phase {
	case PhaseStarting, PhaseDownloading, PhaseVerifying, PhaseReady:
		a.emit(ResetTarget{Component: a.comp()})
	}
	a.clear()
	a.persist()
	a.notify(AppEvent{Kind: EventCanceled, JobID: id, Message: why})
}

// cancelTrial handles a job the cloud ended while its new image is on
// trial, as Config.CancelDuringTrial says.
func (a *Agent) cancelTrial(why string) {
	if a.st.Canceled != "" {
		return // known already
	}
	if a.cfg.CancelDuringTrial == TrialRevert {
		// The image is not confirmed: the reboot reverts it, and so would a
		// power cut before it.
		a.st.Canceled = why
		a.endCanceledTrial(fmt.Sprintf("rebooting to revert %s (cancelDuringTrial %q)", a.st.Image.Version, TrialRevert), true)
		return
	}
	a.st.Canceled = why
	a.persist()
	a.notify(AppEvent{Kind: EventCanceled, Message: fmt.Sprintf("%s; the trial of %s goes on: it is kept if its self-test passes, else reverted (cancelDuringTrial %q)",
		why, a.st.Image.Version, TrialFinish)})
}

func (a *Agent) clear() {
	a.st = State{Phase: PhaseIdle}
	a.want, a.check, a.refresh, a.synced, a.probed = nil, false, false, true, false
	a.needNext = true
	a.failures, a.retryAt = 0, time.Time{}
	if a.inflight != nil && a.inflight.kind != reqNext {
		a.inflight = nil
	}
}

// complete ends a job whose terminal status the cloud accepted.
func (a *Agent) complete() {
	id, out := a.st.Job.ID, a.st.Outcome
	a.clear()
	a.persist()
	a.notify(AppEvent{Kind: EventCompleted, JobID: id, Status: out.Status, Reason: out.Details["reason"]})
	if out.Reboot {
		a.emit(Reboot{})
	}
}

// ---- download, verify, schedule, test ----

func (a *Agent) startDownload() {
	size := a.st.Total
	if size == 0 {
		size = a.st.Job.Size
	}
	a.running = true
	a.progressAt, a.progressPct, a.lastPct = a.now, 0, -1
	j := a.st.Job
	a.emit(StartDownload{URL: j.URL, Offset: a.st.Offset, Size: size, ETag: a.st.ETag, Component: j.Component,
		BaseSHA256: j.BaseSHA256, BaseSize: j.BaseSize})
}

func (a *Agent) onProgress(e DownloadProgress) {
	if a.st.Phase != PhaseDownloading || !a.running {
		return
	}
	if e.Durable != a.st.Offset || e.ETag != a.st.ETag || e.Total != a.st.Total {
		if e.Durable > a.st.Offset {
			a.st.Refreshes = 0
		}
		a.st.Offset, a.st.ETag, a.st.Total = e.Durable, e.ETag, e.Total
		a.persist()
	}
	pct := 0
	if e.Total > 0 {
		pct = int(e.Received * 100 / e.Total)
	}
	a.lastPct = pct
	a.notify(AppEvent{Kind: EventProgress, Percent: pct, Bytes: e.Received, Total: e.Total})
	if pct >= a.progressPct+a.cfg.ProgressPercent || a.now.Sub(a.progressAt) >= a.cfg.ProgressInterval {
		a.progressPct, a.progressAt = pct, a.now
		if a.want == nil || a.want.kind == repProgress {
			details := iotjobs.StatusDetails{"state": "downloading", "bytes": strconv.FormatInt(e.Received, 10)}
			if e.Total > 0 {
				details["progress"] = strconv.Itoa(pct)
				details["size"] = strconv.FormatInt(e.Total, 10)
			}
			a.want = &report{kind: repProgress, status: iotjobs.StatusInProgress, details: details}
		}
	}
}

func (a *Agent) onDownloadDone(e DownloadDone) {
	if a.st.Phase != PhaseDownloading || !a.running {
		return
	}
	a.running = false
	a.installAt = time.Time{}
	a.st.Phase, a.st.Total, a.st.Offset, a.st.ETag, a.st.Kind = PhaseVerifying, e.Total, e.Total, e.ETag, e.Kind
	if a.want != nil && a.want.kind == repProgress {
		a.want = nil
	}
	a.persist()
	if a.lastPct != 100 {
		a.notify(AppEvent{Kind: EventProgress, Percent: 100, Bytes: e.Total, Total: e.Total})
	}
	a.emit(Verify{Size: e.Total, Component: a.comp()})
}

func (a *Agent) onDownloadFailed(e DownloadFailed) {
	if a.st.Phase != PhaseDownloading || !a.running {
		return
	}
	a.running = false
	switch e.Failure {
	case FailURLRejected:
		if a.st.Refreshes < a.cfg.MaxURLRefreshes {
			a.st.Refreshes++
			a.persist()
			a.refresh, a.synced = true, false // re-read the execution for a fresh URL
			return
		}
		a.fail(ReasonDownloadFailed, fmt.Sprintf("%s (still refused after %d fresh URLs)", e.Message, a.st.Refreshes), true)
	case FailTooLarge:
		a.fail(ReasonTooLarge, e.Message, true)
	case FailTarget:
		a.fail(ReasonFlashError, e.Message, true)
	case FailBaseMismatch:
		a.fail(ReasonBaseMismatch, e.Message, true)
	case FailUnsupported:
		a.fail(ReasonUnsupportedOperation, e.Message, true)
	case FailInvalidImage:
		a.fail(ReasonInvalidImage, e.Message, true)
	default:
		a.fail(ReasonDownloadFailed, e.Message, true)
	}
}

// onInstallProgress reports an installer's progress, rate-limited as the
// download's.
func (a *Agent) onInstallProgress(e InstallProgress) {
	if a.st.Phase != PhaseVerifying {
		return
	}
	pct := min(max(e.Percent, 0), 100)
	a.notify(AppEvent{Kind: EventInstalling, Percent: pct, Message: e.Message})
	if !a.installAt.IsZero() && pct < a.installPct+a.cfg.ProgressPercent && a.now.Sub(a.installAt) < a.cfg.ProgressInterval {
		return
	}
	a.installPct, a.installAt = pct, a.now
	if a.want == nil || a.want.kind == repProgress {
		d := iotjobs.StatusDetails{"state": "installing", "progress": strconv.Itoa(pct)}
		if e.Message != "" {
			d["step"] = clean(e.Message)
		}
		a.want = &report{kind: repProgress, status: iotjobs.StatusInProgress, details: d}
	}
}

func (a *Agent) onVerified(e Verified) {
	if a.st.Phase != PhaseVerifying {
		return
	}
	if a.st.Recheck {
		a.st.Recheck = false
		if e.Failure != 0 || a.st.Image == nil || string(e.Image.BootHash) != string(a.st.Image.BootHash) {
			if a.st.Trial == "" {
				// The image never ran and the slot lost it: the bootloader
				// erased it, as MCUboot does with an image it refuses.
				a.fail(ReasonRollback, fmt.Sprintf("after the reboot the device runs %s, not %s, and the slot no longer holds it (%s): the bootloader refused it",
					orUnknown(a.boot.Version), a.st.Image.Version, orText(e.Message, "it holds another image")), true)
				return
			}
			a.refetch() // the slot lost the image: fetch it again
			return
		}
	}
	switch e.Failure {
	case VerifyHashMismatch:
		a.fail(ReasonHashMismatch, e.Message, true)
		return
	case VerifyInvalid:
		a.fail(ReasonInvalidImage, e.Message, true)
		return
	case VerifyIO:
		a.fail(ReasonFlashError, e.Message, true)
		return
	case VerifyBadSignature:
		a.fail(ReasonBadSignature, e.Message, true)
		return
	case VerifyUnsigned:
		a.fail(ReasonUnsigned, e.Message, true)
		return
	case VerifyIncompatible:
		a.fail(ReasonIncompatible, e.Message, true)
		return
	case VerifyInstallError:
		a.fail(ReasonInstallFailed, e.Message, true)
		return
	}
	im, job := e.Image, a.st.Job
	switch {
	case job.Size > 0 && im.Size != job.Size:
		a.fail(ReasonHashMismatch, fmt.Sprintf("the image has %d bytes, the job document says %d", im.Size, job.Size), true)
		return
	case len(job.SHA256) > 0 && string(job.SHA256) != string(im.SHA256):
		a.fail(ReasonHashMismatch, fmt.Sprintf("the image's SHA-256 is %x, the job document says %x", im.SHA256, job.SHA256), true)
		return
	case job.FWVersion != "" && !sameVersion(job.FWVersion, im.Version):
		a.fail(ReasonVersionMismatch, fmt.Sprintf("the image is version %s, the job document says %s", im.Version, job.FWVersion), true)
		return
	case !a.cfg.AllowDowngrade && im.Version != "" && !newer(im.Version, a.st.FromVersion):
		a.fail(ReasonDowngrade, fmt.Sprintf("the image is version %s and the device runs %s: only newer images are installed (AllowDowngrade changes that)", im.Version, a.st.FromVersion), true)
		return
	case !a.cfg.AllowDowngrade && a.comp() == "" && a.boot.SecurityCounter != nil && (im.SecurityCounter == nil || *im.SecurityCounter < *a.boot.SecurityCounter):
		a.fail(ReasonDowngrade, fmt.Sprintf("the image's security counter %s is lower than the running image's %d: the bootloader would refuse it",
			counterText(im.SecurityCounter), *a.boot.SecurityCounter), true)
		return
	}
	a.st.Image = &im
	a.st.Phase = PhaseReady
	a.persist()
	a.want = a.readyReport()
}

func (a *Agent) onScheduled(e Scheduled) {
	if a.st.Phase != PhaseReady {
		return
	}
	if e.Err != "" {
		a.fail(ReasonFlashError, "requesting the swap failed: "+e.Err, true)
		return
	}
	a.st.Phase, a.st.Trial, a.st.Recheck = PhaseRebooting, "", false
	a.st.Attempts++
	a.persist()
	a.notify(AppEvent{Kind: EventDone, ImageType: a.st.Image.Type, Version: a.newVersion(), RebootRequired: true})
	a.emit(Reboot{})
}

func (a *Agent) onSelfTested(e SelfTested) {
	if a.st.Phase != PhaseTesting {
		return
	}
	if e.Err != "" && a.st.Canceled != "" {
		a.endCanceledTrial(fmt.Sprintf("its self-test failed (%s): rebooting to revert it", e.Err), true)
		return
	}
	if e.Err != "" {
		// Do not confirm: the reboot after the report reverts the image.
		a.decide(Outcome{Status: iotjobs.StatusFailed, Details: failure(ReasonSelfTestFailed, e.Err), Reboot: true})
		a.notify(AppEvent{Kind: EventError, Reason: ReasonSelfTestFailed, Message: e.Err})
		return
	}
	a.st.Trial = TrialPassed
	a.persist()
	a.emit(Confirm{})
}

func (a *Agent) onConfirmed(e Confirmed) {
	if a.st.Phase != PhaseTesting {
		return
	}
	if a.st.Canceled != "" {
		if e.Err != "" {
			a.endCanceledTrial("confirming it failed ("+e.Err+"): rebooting to revert it", true)
			return
		}
		a.endCanceledTrial(fmt.Sprintf("%s passed its self-test and is kept", a.st.Image.Version), false)
		return
	}
	if e.Err != "" {
		a.decide(Outcome{Status: iotjobs.StatusFailed, Details: failure(ReasonFlashError, "confirming the image failed: "+e.Err), Reboot: true})
		a.notify(AppEvent{Kind: EventError, Reason: ReasonFlashError, Message: e.Err})
		return
	}
	a.succeed()
}

func (a *Agent) onCustomDone(e CustomDone) {
	if a.st.Phase != PhaseCustom || a.st.Job.ID != e.JobID {
		return
	}
	st := e.Status
	if st != iotjobs.StatusSucceeded && st != iotjobs.StatusRejected {
		st = iotjobs.StatusFailed
	}
	d := e.Details
	if iotjobs.ValidateStatusDetails(d) != nil {
		d = iotjobs.StatusDetails{"reason": ReasonCustomFailed, "message": "the handler's statusDetails break AWS's limits"}
	}
	a.decide(Outcome{Status: st, Details: d})
}

func (a *Agent) succeed() {
	d := iotjobs.StatusDetails{"state": "succeeded", "fwversion": a.newVersion()}
	if c := a.comp(); c != "" {
		d["component"] = c
		d["fwversion"] = a.boot.Components[c]
	}
	if a.st.FromVersion != "" {
		d["from"] = a.st.FromVersion
	}
	a.decide(Outcome{Status: iotjobs.StatusSucceeded, Details: d})
}

// fail decides a FAILED outcome; reset discards the target's contents.
func (a *Agent) fail(reason, msg string, reset bool) {
	if a.running {
		a.emit(StopDownload{})
		a.running = false
	}
	if reset {
		a.emit(ResetTarget{Component: a.comp()})
	}
	a.notify(AppEvent{Kind: EventError, Reason: reason, Message: msg})
	a.decide(Outcome{Status: iotjobs.StatusFailed, Details: failure(reason, msg)})
}

// decide records the outcome and starts reporting it.
func (a *Agent) decide(o Outcome) {
	if a.st.Attempts > 0 && o.Details != nil {
		o.Details["attempts"] = strconv.Itoa(a.st.Attempts)
	}
	a.st.Phase, a.st.Outcome = PhaseReporting, &o
	a.persist()
	a.want = a.finalReport()
}

func (a *Agent) startReport() *report {
	d := iotjobs.StatusDetails{"state": "downloading"}
	if a.st.FromVersion != "" {
		d["from"] = a.st.FromVersion
	}
	return &report{kind: repStart, status: iotjobs.StatusInProgress, details: d}
}

func (a *Agent) readyReport() *report {
	d := iotjobs.StatusDetails{"state": "ready_to_reboot"}
	if v := a.newVersion(); v != "" {
		d["fwversion"] = v
	}
	if c := a.comp(); c != "" {
		d["component"] = c
	}
	if a.st.FromVersion != "" {
		d["from"] = a.st.FromVersion
	}
	if a.st.Attempts > 0 {
		// Installing again after a trial that a reset cut short.
		d["attempt"] = strconv.Itoa(a.st.Attempts + 1)
		if a.st.Interrupted != "" {
			d["interrupted"] = clean(a.st.Interrupted)
		}
	}
	return &report{kind: repReady, status: iotjobs.StatusInProgress, details: d}
}

func (a *Agent) finalReport() *report {
	return &report{kind: repFinal, status: a.st.Outcome.Status, details: a.st.Outcome.Details}
}

// ---- requests ----

func (a *Agent) token() string {
	a.seq++
	return fmt.Sprintf("%s-%d", a.nonce, a.seq)
}

// pump sends the next Jobs request when none is in flight.
func (a *Agent) pump() {
	if !a.started || !a.connected || a.inflight != nil || a.now.Before(a.retryAt) {
		return
	}
	thing := a.cfg.Thing
	switch {
	case a.st.Job != nil && (!a.synced || a.check):
		r := &request{kind: reqDescribe, token: a.token(), jobID: a.st.Job.ID}
		inc := true
		a.send(r, iotjobs.DescribeTopic(thing, a.st.Job.ID), iotjobs.DescribeRequest{IncludeJobDocument: &inc, ClientToken: r.token})
	case a.st.Job != nil && a.want != nil:
		r := &request{kind: reqUpdate, token: a.token(), jobID: a.st.Job.ID, report: a.want}
		req := iotjobs.UpdateRequest{
			Status:                   a.want.status,
			StatusDetails:            a.want.details,
			ExpectedVersion:          iotjobs.Ptr(a.st.Job.VersionNumber),
			IncludeJobExecutionState: true,
			ClientToken:              r.token,
		}
		if a.want.status == iotjobs.StatusInProgress && a.st.Job.StepTimeout > 0 {
			// Each report restarts the cloud's step timer: a device that
			// falls silent is timed out.
			req.StepTimeoutInMinutes = iotjobs.Ptr(a.st.Job.StepTimeout)
		}
		a.send(r, iotjobs.UpdateTopic(thing, a.st.Job.ID), req)
	case a.st.Job == nil && a.needNext:
		r := &request{kind: reqNext, token: a.token()}
		a.send(r, iotjobs.DescribeTopic(thing, iotjobs.NextJobID), iotjobs.DescribeRequest{ClientToken: r.token})
	}
}

func (a *Agent) send(r *request, t iotjobs.Topic, msg any) {
	r.deadline = a.now.Add(a.cfg.ReplyTimeout)
	a.inflight = r
	a.emit(Publish{Topic: t.String(), Payload: iotjobs.Encode(msg)})
}

func (a *Agent) wakeAt() time.Time {
	var w time.Time
	if a.inflight != nil {
		w = a.inflight.deadline
	}
	if a.retryAt.After(a.now) && (w.IsZero() || a.retryAt.Before(w)) {
		w = a.retryAt
	}
	return w
}

// ---- versions ----

// parseVersion reads "1.2.3", "v1.2.3" or "1.2.3+4".
func parseVersion(s string) ([4]uint64, bool) {
	var v [4]uint64
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	main, build, hasBuild := strings.Cut(s, "+")
	parts := strings.Split(main, ".")
	if s == "" || len(parts) > 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return v, false
		}
		v[i] = n
	}
	if hasBuild {
		n, err := strconv.ParseUint(build, 10, 32)
		if err != nil {
			return v, false
		}
		v[3] = n
	}
	return v, true
}

func compareVersions(a, b [4]uint64) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// sameVersion compares a document's fwversion with an image's version; a
// fwversion that is not a version number cannot be checked and passes.
func sameVersion(doc, image string) bool {
	d, ok1 := parseVersion(doc)
	i, ok2 := parseVersion(image)
	if !ok1 || !ok2 {
		return true
	}
	if !strings.Contains(doc, "+") {
		i[3] = 0 // the document does not name a build
	}
	return compareVersions(d, i) == 0
}

// newer reports whether image is newer than running; an unknown running
// version (no image, or not a version number) lets any image through.
func newer(image, running string) bool {
	r, ok := parseVersion(running)
	if !ok {
		return true
	}
	i, ok := parseVersion(image)
	if !ok {
		return false
	}
	return compareVersions(i, r) > 0
}

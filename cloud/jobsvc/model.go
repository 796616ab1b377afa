// Package jobsvc is the local cloud's AWS IoT Jobs service: jobs, job
// templates, their executions on things, and the device API (get,
// start-next, {jobId}/get, {jobId}/update, over MQTT through HandleDevice
// or any other way through DeviceRequest) with the notifications AWS sends
// (notify, notify-next) and, once UpdateEventConfigurations enables them,
// the $aws/events/job and $aws/events/jobExecution events, persisted in
// bbolt so that the cloud survives a restart.
//
// The rules — which status may follow which, versionNumber and
// executionNumber, which execution is next, when a notification is due, when
// a timer times an execution out, how fast a rollout releases executions and
// in which maintenance windows, when abort criteria cancel a job, when a
// failure is retried, which things a job targets, how presigned-URL
// placeholders are replaced — are pure functions in model.go, rollout.go,
// schedule.go, cron.go and presign.go, tested without a database, a broker
// or a wall clock. Service applies them in bbolt transactions and hands the
// resulting messages to a Publisher (the broker) after each commit; time
// comes from an injected clock.Clock and timers (execution timeouts,
// rollout windows, schedule starts and ends, deletions) fire from Tick
// (RunTimers calls it when a deadline arrives). Watch streams every
// committed change of a job or an execution, numbered, to in-process
// consumers such as a console.
//
// It imports the standard library, bbolt, clock and iotjobs; cloud/* must
// never import device/* or sim/.
package jobsvc

import (
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"time"

	"github.com/awsfota/awsfota/iotjobs"
)

// JobStatus is the status of a job as a whole.
type JobStatus string

// Job statuses.
const (
	JobInProgress JobStatus = "IN_PROGRESS"
	JobCanceled   JobStatus = "CANCELED"
	JobCompleted  JobStatus = "COMPLETED"
	// JobScheduled: the job waits for its schedulingConfig.startTime.
	JobScheduled JobStatus = "SCHEDULED"
	// JobDeletionInProgress: DeleteJob was called; the job and its
	// executions disappear when the deletion ends (Config.DeletionDelay).
	JobDeletionInProgress JobStatus = "DELETION_IN_PROGRESS"
)

// TargetSelection says whether a job also runs on things that join a target
// group after its creation.
type TargetSelection string

// Target selections.
const (
	// Snapshot jobs run on the things targeted when they are created and
	// complete when all those executions are terminal.
	Snapshot TargetSelection = "SNAPSHOT"
	// Continuous jobs also run on things added to a target group later, and
	// mark REMOVED the executions of things that leave it. They never
	// complete on their own.
	Continuous TargetSelection = "CONTINUOUS"
)

// PresignedURLConfig is CreateJob's presignedUrlConfig.
type PresignedURLConfig struct {
	RoleARN      string `json:"roleArn,omitempty"`
	ExpiresInSec int64  `json:"expiresInSec,omitempty"`
}

// TimeoutConfig is CreateJob's timeoutConfig.
type TimeoutConfig struct {
	InProgressTimeoutInMinutes int64 `json:"inProgressTimeoutInMinutes,omitempty"`
}

// RolloutConfig is CreateJob's jobExecutionsRolloutConfig.
type RolloutConfig struct {
	MaximumPerMinute int64            `json:"maximumPerMinute,omitempty"`
	ExponentialRate  *ExponentialRate `json:"exponentialRate,omitempty"`
}

// ExponentialRate is a rollout whose rate grows by IncrementFactor each time
// RateIncreaseCriteria is met.
type ExponentialRate struct {
	BaseRatePerMinute    int64                `json:"baseRatePerMinute"`
	IncrementFactor      float64              `json:"incrementFactor"`
	RateIncreaseCriteria RateIncreaseCriteria `json:"rateIncreaseCriteria"`
}

// RateIncreaseCriteria: one of the two is set.
type RateIncreaseCriteria struct {
	NumberOfNotifiedThings  int64 `json:"numberOfNotifiedThings,omitempty"`
	NumberOfSucceededThings int64 `json:"numberOfSucceededThings,omitempty"`
}

// AbortConfig is CreateJob's abortConfig.
type AbortConfig struct {
	CriteriaList []AbortCriteria `json:"criteriaList"`
}

// Failure types of abort and retry criteria.
const (
	FailureFailed   = "FAILED"
	FailureRejected = "REJECTED"
	FailureTimedOut = "TIMED_OUT"
	FailureAll      = "ALL"
)

// AbortCriteria cancels the job when ThresholdPercentage of the executed
// things failed with FailureType, once MinNumberOfExecutedThings have
// executed.
type AbortCriteria struct {
	FailureType               string  `json:"failureType"`
	Action                    string  `json:"action"`
	ThresholdPercentage       float64 `json:"thresholdPercentage"`
	MinNumberOfExecutedThings int64   `json:"minNumberOfExecutedThings"`
}

// RetryConfig is CreateJob's jobExecutionsRetryConfig.
type RetryConfig struct {
	CriteriaList []RetryCriteria `json:"criteriaList"`
}

// RetryCriteria allows NumberOfRetries new executions after a failure of
// FailureType (FAILED, TIMED_OUT or ALL).
type RetryCriteria struct {
	FailureType     string `json:"failureType"`
	NumberOfRetries int64  `json:"numberOfRetries"`
}

// Job is a job: a document sent to target things.
type Job struct {
	ID          string `json:"jobId"`
	ARN         string `json:"jobArn"`
	Description string `json:"description,omitempty"`
	// Document is the job document exactly as it was given (GetJobDocument
	// returns these bytes, so that hashes and diffs of it hold).
	Document string `json:"documentText"`
	// LegacyDocument is where an earlier version kept the document (as
	// compacted JSON); it is read once and moved to Document.
	LegacyDocument json.RawMessage `json:"document,omitempty"`
	// DocumentSource is where the document was read from, if it came from
	// the object store (CreateJob's documentSource).
	DocumentSource string `json:"documentSource,omitempty"`
	// Targets are the things and thing groups targeted, as ARNs.
	Targets []string `json:"targets"`
	// TargetThings and TargetGroups are the same targets by name.
	TargetThings    []string        `json:"targetThings,omitempty"`
	TargetGroups    []string        `json:"targetGroups,omitempty"`
	TargetSelection TargetSelection `json:"targetSelection"`
	Status          JobStatus       `json:"status"`
	ForceCanceled   bool            `json:"forceCanceled,omitempty"`
	Comment         string          `json:"comment,omitempty"`
	ReasonCode      string          `json:"reasonCode,omitempty"`
	CreatedAt       time.Time       `json:"createdAt"`
	LastUpdatedAt   time.Time       `json:"lastUpdatedAt"`
	CompletedAt     time.Time       `json:"completedAt,omitzero"`

	Settings
	Scheduling *SchedulingConfig `json:"schedulingConfig,omitempty"`
	// TemplateARN is the job template the job was created from, if any.
	TemplateARN string `json:"jobTemplateArn,omitempty"`
	// RolloutStopped: the scheduling end time passed with endBehavior
	// STOP_ROLLOUT; no new execution is created.
	RolloutStopped bool `json:"rolloutStopped,omitempty"`
	// DeleteAt is when a deletion in progress ends.
	DeleteAt time.Time `json:"deleteAt,omitzero"`
}

// Execution is a job's execution on one thing.
type Execution struct {
	JobID           string                `json:"jobId"`
	Thing           string                `json:"thingName"`
	Status          iotjobs.Status        `json:"status"`
	StatusDetails   iotjobs.StatusDetails `json:"statusDetails,omitempty"`
	QueuedAt        time.Time             `json:"queuedAt"`
	StartedAt       time.Time             `json:"startedAt,omitzero"`
	LastUpdatedAt   time.Time             `json:"lastUpdatedAt"`
	VersionNumber   int64                 `json:"versionNumber"`
	ExecutionNumber int64                 `json:"executionNumber"`
	Seq             uint64                `json:"seq"` // creation order, breaks queuedAt ties
	ForceCanceled   bool                  `json:"forceCanceled,omitempty"`
	// RetryAttempt counts the retries that led to this execution (0 for the
	// first); Retries counts them per retry criterion's failure type.
	RetryAttempt int64            `json:"retryAttempt,omitempty"`
	Retries      map[string]int64 `json:"retries,omitempty"`
	// StepTimeoutAt and InProgressTimeoutAt are the deadlines of the step
	// timer (set by the device) and of the job's in-progress timer; zero
	// when not running.
	StepTimeoutAt       time.Time `json:"stepTimeoutAt,omitzero"`
	InProgressTimeoutAt time.Time `json:"inProgressTimeoutAt,omitzero"`
}

func epoch(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// Deadline is when the execution times out (the earlier of its timers), or
// zero when no timer runs.
func (e *Execution) Deadline() time.Time {
	d := e.StepTimeoutAt
	if !e.InProgressTimeoutAt.IsZero() && (d.IsZero() || e.InProgressTimeoutAt.Before(d)) {
		d = e.InProgressTimeoutAt
	}
	return d
}

// SecondsBeforeTimedOut is approximateSecondsBeforeTimedOut at now, or nil
// when no timer runs.
func (e *Execution) SecondsBeforeTimedOut(now time.Time) *int64 {
	d := e.Deadline()
	if d.IsZero() || e.Status.Terminal() {
		return nil
	}
	s := max(int64(d.Sub(now)/time.Second), 0)
	return &s
}

// Wire returns the execution as the MQTT API shows it at now, with the job
// document when doc is not nil.
func (e *Execution) Wire(doc json.RawMessage, now time.Time) *iotjobs.JobExecution {
	return &iotjobs.JobExecution{
		JobID:                            e.JobID,
		ThingName:                        e.Thing,
		JobDocument:                      doc,
		Status:                           e.Status,
		StatusDetails:                    e.StatusDetails,
		QueuedAt:                         epoch(e.QueuedAt),
		StartedAt:                        epoch(e.StartedAt),
		LastUpdatedAt:                    epoch(e.LastUpdatedAt),
		VersionNumber:                    e.VersionNumber,
		ExecutionNumber:                  e.ExecutionNumber,
		ApproximateSecondsBeforeTimedOut: e.SecondsBeforeTimedOut(now),
	}
}

// Summary returns the execution's summary form.
func (e *Execution) Summary() iotjobs.JobExecutionSummary {
	return e.Wire(nil, time.Time{}).Summary()
}

// State returns the execution's state form.
func (e *Execution) State() *iotjobs.JobExecutionState {
	st := iotjobs.JobExecutionState{Status: e.Status, StatusDetails: e.StatusDetails, VersionNumber: e.VersionNumber}
	return &st
}

// pending returns a thing's IN_PROGRESS and QUEUED executions, each oldest
// first.
func pending(execs []Execution) (inProgress, queued []Execution) {
	for _, e := range execs {
		switch e.Status {
		case iotjobs.StatusInProgress:
			inProgress = append(inProgress, e)
		case iotjobs.StatusQueued:
			queued = append(queued, e)
		}
	}
	byAge := func(s []Execution) {
		sort.SliceStable(s, func(i, j int) bool {
			if !s[i].QueuedAt.Equal(s[j].QueuedAt) {
				return s[i].QueuedAt.Before(s[j].QueuedAt)
			}
			return s[i].Seq < s[j].Seq
		})
	}
	byAge(inProgress)
	byAge(queued)
	return inProgress, queued
}

// next is the thing's next pending execution: the oldest IN_PROGRESS one,
// else the oldest QUEUED one, else nil.
func next(execs []Execution) *Execution {
	ip, q := pending(execs)
	switch {
	case len(ip) > 0:
		return &ip[0]
	case len(q) > 0:
		return &q[0]
	}
	return nil
}

// MaxNotifyJobs is how many executions a notify (JobExecutionsChanged)
// message lists at most, as AWS's current documentation says.
const MaxNotifyJobs = 15

// notifyMessage is the JobExecutionsChanged message for a thing's executions.
func notifyMessage(execs []Execution, now time.Time) iotjobs.NotifyMessage {
	ip, q := pending(execs)
	m := iotjobs.NotifyMessage{Timestamp: now.Unix(), Jobs: map[iotjobs.Status][]iotjobs.JobExecutionSummary{}}
	n := 0
	for _, list := range []struct {
		status iotjobs.Status
		execs  []Execution
	}{{iotjobs.StatusInProgress, ip}, {iotjobs.StatusQueued, q}} {
		for _, e := range list.execs {
			if n == MaxNotifyJobs {
				break
			}
			m.Jobs[list.status] = append(m.Jobs[list.status], e.Summary())
			n++
		}
	}
	return m
}

// pendingKey identifies the pending set for change detection: which
// executions are pending and in which status. A notify is due when it
// changes: an execution was queued, changed to another non-terminal status,
// or became terminal (or was deleted).
func pendingKey(execs []Execution) string {
	ip, q := pending(execs)
	k := ""
	for _, e := range ip {
		k += fmt.Sprintf("I:%s#%d,", e.JobID, e.ExecutionNumber)
	}
	for _, e := range q {
		k += fmt.Sprintf("Q:%s#%d,", e.JobID, e.ExecutionNumber)
	}
	return k
}

// headKey identifies the head of the queue for notify-next: only a change of
// which execution is next counts, not QUEUED→IN_PROGRESS of the same one.
func headKey(execs []Execution) string {
	if h := next(execs); h != nil {
		return fmt.Sprintf("%s#%d", h.JobID, h.ExecutionNumber)
	}
	return ""
}

// reject builds a rejection.
func reject(code iotjobs.ErrorCode, format string, args ...any) *iotjobs.ErrorResponse {
	return &iotjobs.ErrorResponse{Code: code, Message: fmt.Sprintf(format, args...)}
}

// rejectWithState builds a rejection that carries the execution's state, as
// InvalidStateTransition and VersionMismatch do.
func rejectWithState(e Execution, code iotjobs.ErrorCode, format string, args ...any) *iotjobs.ErrorResponse {
	r := reject(code, format, args...)
	r.ExecutionState = e.State()
	return r
}

// MaxTimeoutMinutes bounds step and in-progress timeouts (7 days).
const MaxTimeoutMinutes = 10080

// validStepTimeout checks stepTimeoutInMinutes: 1..10080, or -1 (clear)
// when clear is allowed.
func validStepTimeout(v *iotjobs.Int, clear bool) *iotjobs.ErrorResponse {
	if v == nil {
		return nil
	}
	n := int64(*v)
	if n == -1 && clear {
		return nil
	}
	if n < 1 || n > MaxTimeoutMinutes {
		hint := ""
		if clear {
			hint = ", or -1 to clear the step timer"
		}
		return reject(iotjobs.CodeInvalidRequest, "stepTimeoutInMinutes %d is out of range: use 1..%d%s", n, MaxTimeoutMinutes, hint)
	}
	return nil
}

// transitionAllowed reports whether a device may move an execution from one
// status to another. QUEUED may go anywhere a device can set (QUEUED →
// SUCCEEDED or FAILED directly is allowed: unconfirmed on AWS, the lenient
// choice); IN_PROGRESS may repeat or finish but not be REJECTED; a terminal
// execution never changes.
func transitionAllowed(from, to iotjobs.Status) bool {
	switch from {
	case iotjobs.StatusQueued:
		return to.DeviceSettable()
	case iotjobs.StatusInProgress:
		return to.DeviceSettable() && to != iotjobs.StatusRejected
	}
	return false
}

// applyUpdate applies an UpdateJobExecution request (a device's) to e at
// now; inProgressTimeout is the job's in-progress timeout (0: none). It
// returns the updated execution, or the rejection. The order of the checks
// is: the request's contents (InvalidRequest), the execution number
// (ResourceNotFound), expectedVersion (VersionMismatch), the transition
// (InvalidStateTransition).
func applyUpdate(e Execution, req iotjobs.UpdateRequest, inProgressTimeout time.Duration, now time.Time) (Execution, *iotjobs.ErrorResponse) {
	if req.Status == "" {
		return e, reject(iotjobs.CodeInvalidRequest, "status is required: IN_PROGRESS, SUCCEEDED, FAILED or REJECTED")
	}
	if !req.Status.DeviceSettable() {
		return e, reject(iotjobs.CodeInvalidRequest, "status %q cannot be set by a device: use IN_PROGRESS, SUCCEEDED, FAILED or REJECTED", req.Status)
	}
	if req.StatusDetails != nil {
		if err := iotjobs.ValidateStatusDetails(req.StatusDetails); err != nil {
			return e, reject(iotjobs.CodeInvalidRequest, "%v", err)
		}
	}
	if r := validStepTimeout(req.StepTimeoutInMinutes, true); r != nil {
		return e, r
	}
	if req.ExpectedVersion != nil && *req.ExpectedVersion < 0 {
		return e, reject(iotjobs.CodeInvalidRequest, "expectedVersion %d must not be negative", *req.ExpectedVersion)
	}
	if req.ExecutionNumber != nil && int64(*req.ExecutionNumber) != e.ExecutionNumber {
		return e, reject(iotjobs.CodeResourceNotFound, "job %s has no execution number %d on thing %s (the current one is %d)", e.JobID, *req.ExecutionNumber, e.Thing, e.ExecutionNumber)
	}
	if req.ExpectedVersion != nil && int64(*req.ExpectedVersion) != e.VersionNumber {
		return e, rejectWithState(e, iotjobs.CodeVersionMismatch, "expectedVersion %d does not match the current versionNumber %d: read the execution and retry", *req.ExpectedVersion, e.VersionNumber)
	}
	if !transitionAllowed(e.Status, req.Status) {
		why := ""
		switch {
		case e.Status.Terminal():
			why = ": the execution is in a terminal state"
		case req.Status == iotjobs.StatusRejected:
			why = ": only a QUEUED execution can be rejected; report FAILED instead"
		}
		return e, rejectWithState(e, iotjobs.CodeInvalidStateTransition, "job %s on thing %s cannot go from %s to %s%s", e.JobID, e.Thing, e.Status, req.Status, why)
	}
	if req.Status == iotjobs.StatusInProgress && e.StartedAt.IsZero() {
		e.StartedAt = now
		if inProgressTimeout > 0 {
			e.InProgressTimeoutAt = now.Add(inProgressTimeout)
		}
	}
	if req.StepTimeoutInMinutes != nil {
		if n := int64(*req.StepTimeoutInMinutes); n == -1 {
			e.StepTimeoutAt = time.Time{}
		} else {
			e.StepTimeoutAt = now.Add(time.Duration(n) * time.Minute)
		}
	}
	e.Status = req.Status
	if req.StatusDetails != nil {
		e.StatusDetails = maps.Clone(req.StatusDetails)
	}
	if e.Status.Terminal() {
		e.StepTimeoutAt, e.InProgressTimeoutAt = time.Time{}, time.Time{}
	}
	e.VersionNumber++
	e.LastUpdatedAt = now
	return e, nil
}

// serviceSet moves a non-terminal execution to a terminal status the service
// sets (TIMED_OUT, CANCELED, REMOVED). Like a device update it increments
// versionNumber (unconfirmed on AWS) and stops the timers.
func serviceSet(e Execution, status iotjobs.Status, now time.Time) Execution {
	e.Status = status
	e.StepTimeoutAt, e.InProgressTimeoutAt = time.Time{}, time.Time{}
	e.VersionNumber++
	e.LastUpdatedAt = now
	return e
}

// timeOut returns e TIMED_OUT when one of its timers has expired at now.
func timeOut(e Execution, now time.Time) (Execution, bool) {
	d := e.Deadline()
	if e.Status.Terminal() || d.IsZero() || now.Before(d) {
		return e, false
	}
	return serviceSet(e, iotjobs.StatusTimedOut, now), true
}

// cancelForJob is what CancelJob (and an abort) does to one execution:
// QUEUED ones are canceled, IN_PROGRESS ones only with force.
func cancelForJob(e Execution, force bool, now time.Time) (Execution, bool) {
	switch {
	case e.Status == iotjobs.StatusQueued:
		return serviceSet(e, iotjobs.StatusCanceled, now), true
	case e.Status == iotjobs.StatusInProgress && force:
		e = serviceSet(e, iotjobs.StatusCanceled, now)
		e.ForceCanceled = true
		return e, true
	}
	return e, false
}

// CancelRequest is CancelJobExecution's input beyond the job and thing.
type CancelRequest struct {
	Force           bool
	ExpectedVersion *int64
	StatusDetails   iotjobs.StatusDetails
}

// cancelExecution applies CancelJobExecution to e. Errors wrap ErrInvalid,
// ErrVersionConflict or ErrInvalidState.
func cancelExecution(e Execution, req CancelRequest, now time.Time) (Execution, error) {
	if req.StatusDetails != nil {
		if err := iotjobs.ValidateStatusDetails(req.StatusDetails); err != nil {
			return e, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	if req.ExpectedVersion != nil && *req.ExpectedVersion != e.VersionNumber {
		return e, fmt.Errorf("%w: expectedVersion %d does not match the execution's versionNumber %d", ErrVersionConflict, *req.ExpectedVersion, e.VersionNumber)
	}
	switch {
	case e.Status.Terminal():
		return e, fmt.Errorf("%w: the execution of job %s on %s is already %s", ErrInvalidState, e.JobID, e.Thing, e.Status)
	case e.Status == iotjobs.StatusInProgress && !req.Force:
		return e, fmt.Errorf("%w: the execution of job %s on %s is IN_PROGRESS; cancel it with force", ErrInvalidState, e.JobID, e.Thing)
	}
	ne, _ := cancelForJob(e, true, now)
	ne.ForceCanceled = e.Status == iotjobs.StatusInProgress
	if req.StatusDetails != nil {
		ne.StatusDetails = maps.Clone(req.StatusDetails)
	}
	return ne, nil
}

// newExecution is a thing's fresh QUEUED execution of a job.
func newExecution(jobID, thing string, number int64, seq uint64, now time.Time) Execution {
	return Execution{JobID: jobID, Thing: thing, Status: iotjobs.StatusQueued, QueuedAt: now, LastUpdatedAt: now,
		VersionNumber: 1, ExecutionNumber: number, Seq: seq}
}

// retryCriterion returns the retry criterion that applies to a failure of
// status: the one naming the status, else the one for ALL.
func retryCriterion(cfg *RetryConfig, status iotjobs.Status) (RetryCriteria, bool) {
	if cfg == nil {
		return RetryCriteria{}, false
	}
	var typ string
	switch status {
	case iotjobs.StatusFailed:
		typ = FailureFailed
	case iotjobs.StatusTimedOut:
		typ = FailureTimedOut
	default:
		return RetryCriteria{}, false
	}
	var all *RetryCriteria
	for i, c := range cfg.CriteriaList {
		switch c.FailureType {
		case typ:
			return c, true
		case FailureAll:
			all = &cfg.CriteriaList[i]
		}
	}
	if all != nil {
		return *all, true
	}
	return RetryCriteria{}, false
}

// retry returns the execution that retries e, when e failed in a way the
// job's retry criteria still allow: a new QUEUED execution with the next
// executionNumber and versionNumber 1.
func retry(cfg *RetryConfig, e Execution, seq uint64, now time.Time) (Execution, bool) {
	c, ok := retryCriterion(cfg, e.Status)
	if !ok || e.Retries[c.FailureType] >= c.NumberOfRetries {
		return e, false
	}
	n := newExecution(e.JobID, e.Thing, e.ExecutionNumber+1, seq, now)
	n.RetryAttempt = e.RetryAttempt + 1
	n.Retries = maps.Clone(e.Retries)
	if n.Retries == nil {
		n.Retries = map[string]int64{}
	}
	n.Retries[c.FailureType]++
	return n, true
}

// Counts are how many things' (latest) executions of a job are in each
// status.
type Counts map[iotjobs.Status]int64

// executed is how many things have finished executing: SUCCEEDED, FAILED,
// REJECTED or TIMED_OUT (canceled and removed executions never ran).
func (c Counts) executed() int64 {
	return c[iotjobs.StatusSucceeded] + c[iotjobs.StatusFailed] + c[iotjobs.StatusRejected] + c[iotjobs.StatusTimedOut]
}

func (c Counts) failures(typ string) int64 {
	switch typ {
	case FailureFailed:
		return c[iotjobs.StatusFailed]
	case FailureRejected:
		return c[iotjobs.StatusRejected]
	case FailureTimedOut:
		return c[iotjobs.StatusTimedOut]
	case FailureAll:
		return c[iotjobs.StatusFailed] + c[iotjobs.StatusRejected] + c[iotjobs.StatusTimedOut]
	}
	return 0
}

// abortDue returns the first abort criterion the counts meet: at least
// MinNumberOfExecutedThings executed and failures of its type at least
// ThresholdPercentage of them. Counts are of each thing's latest execution,
// so a failure that is being retried does not count until its retries are
// spent (unconfirmed on AWS).
func abortDue(cfg *AbortConfig, c Counts) (AbortCriteria, bool) {
	if cfg == nil {
		return AbortCriteria{}, false
	}
	executed := c.executed()
	for _, a := range cfg.CriteriaList {
		if executed == 0 || executed < a.MinNumberOfExecutedThings {
			continue
		}
		if float64(c.failures(a.FailureType))*100 >= a.ThresholdPercentage*float64(executed) {
			return a, true
		}
	}
	return AbortCriteria{}, false
}

// targeted reports whether job targets thing, given the groups the thing
// belongs to (directly or through a child group).
func targeted(j *Job, thing string, groups []string) bool {
	for _, t := range j.TargetThings {
		if t == thing {
			return true
		}
	}
	for _, g := range j.TargetGroups {
		for _, h := range groups {
			if g == h {
				return true
			}
		}
	}
	return false
}

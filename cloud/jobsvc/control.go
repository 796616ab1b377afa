package jobsvc

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/iotjobs"
	bolt "go.etcd.io/bbolt"
)

// The control plane: what the AWS IoT API's job operations do.

// Settings are the settings of a job that UpdateJob may change and a job
// template carries.
type Settings struct {
	PresignedURL *PresignedURLConfig `json:"presignedUrlConfig,omitempty"`
	Timeout      *TimeoutConfig      `json:"timeoutConfig,omitempty"`
	Rollout      *RolloutConfig      `json:"jobExecutionsRolloutConfig,omitempty"`
	Abort        *AbortConfig        `json:"abortConfig,omitempty"`
	Retry        *RetryConfig        `json:"jobExecutionsRetryConfig,omitempty"`
}

// merge sets the settings u gives (those not nil); with keep, only those s
// does not have.
func (s *Settings) merge(u Settings, keep bool) {
	setPtr(&s.PresignedURL, u.PresignedURL, keep)
	setPtr(&s.Timeout, u.Timeout, keep)
	setPtr(&s.Rollout, u.Rollout, keep)
	setPtr(&s.Abort, u.Abort, keep)
	setPtr(&s.Retry, u.Retry, keep)
}

func setPtr[T any](dst **T, src *T, keep bool) {
	if src != nil && (!keep || *dst == nil) {
		*dst = src
	}
}

// JobSpec describes a job to create.
type JobSpec struct {
	JobID string
	// Things and Groups are the targets: things and thing groups (static
	// or dynamic), by name. At least one target is needed.
	Things []string
	Groups []string
	// Document is the job document, a JSON object of at most 32 KiB. It is
	// kept byte for byte.
	Document []byte
	// DocumentSource records where the document was read from, if anywhere.
	DocumentSource  string
	Description     string
	TargetSelection TargetSelection // default SNAPSHOT
	PresignedURL    *PresignedURLConfig
	Timeout         *TimeoutConfig
	Rollout         *RolloutConfig
	Abort           *AbortConfig
	Retry           *RetryConfig
	Scheduling      *SchedulingConfig
	// TemplateID names a job template: what the spec leaves out (document,
	// description, settings, maintenance windows) comes from it.
	TemplateID string
}

func (spec *JobSpec) settings() Settings {
	return Settings{spec.PresignedURL, spec.Timeout, spec.Rollout, spec.Abort, spec.Retry}
}

// applyTemplate fills what spec leaves out from the template.
func (spec *JobSpec) applyTemplate(t JobTemplate) {
	if spec.Document == nil && spec.DocumentSource == "" {
		spec.Document, spec.DocumentSource = []byte(t.Document), t.DocumentSource
	}
	if spec.Description == "" {
		spec.Description = t.Description
	}
	set := spec.settings()
	set.merge(t.Settings, true)
	spec.PresignedURL, spec.Timeout, spec.Rollout, spec.Abort, spec.Retry = set.PresignedURL, set.Timeout, set.Rollout, set.Abort, set.Retry
	if len(t.MaintenanceWindows) > 0 && (spec.Scheduling == nil || len(spec.Scheduling.MaintenanceWindows) == 0) {
		sc := SchedulingConfig{}
		if spec.Scheduling != nil {
			sc = *spec.Scheduling
		}
		sc.MaintenanceWindows = slices.Clone(t.MaintenanceWindows)
		spec.Scheduling = &sc
	}
}

// CreateJob creates a job and queues an execution on each target thing (at
// the rollout's pace, if it has one), or, with a schedulingConfig start
// time, makes it SCHEDULED until then. Errors wrap ErrInvalid, ErrExists or
// ErrNotFound (a target group, a template).
func (s *Service) CreateJob(spec JobSpec) (Job, error) {
	var templateARN string
	if spec.TemplateID != "" {
		t, err := s.DescribeJobTemplate(spec.TemplateID)
		if err != nil {
			return Job{}, err
		}
		spec.applyTemplate(t)
		templateARN = t.ARN
	}
	if err := validateSpec(&spec); err != nil {
		return Job{}, err
	}
	if len(spec.Groups) > 0 && s.cfg.Groups == nil {
		return Job{}, fmt.Errorf("%w: this Jobs service cannot target thing groups", ErrInvalid)
	}
	for _, d := range []struct {
		what string
		list []string
	}{{"thing", spec.Things}, {"thing group", spec.Groups}} {
		sorted := slices.Clone(d.list)
		sort.Strings(sorted)
		for i := 1; i < len(sorted); i++ {
			if sorted[i] == sorted[i-1] {
				return Job{}, fmt.Errorf("%w: %s %s is targeted twice", ErrInvalid, d.what, sorted[i])
			}
		}
	}
	job := Job{ID: spec.JobID, ARN: s.JobARN(spec.JobID), Description: spec.Description, Document: string(spec.Document),
		DocumentSource: spec.DocumentSource, TargetThings: slices.Clone(spec.Things), TargetGroups: slices.Clone(spec.Groups),
		TargetSelection: spec.TargetSelection, Status: JobInProgress, Settings: spec.settings(), Scheduling: spec.Scheduling,
		TemplateARN: templateARN}
	if err := s.checkPlaceholders(&job); err != nil {
		return Job{}, err
	}
	for _, th := range spec.Things {
		job.Targets = append(job.Targets, s.ThingARN(th))
	}
	for _, g := range spec.Groups {
		job.Targets = append(job.Targets, s.GroupARN(g))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Clock.Now().UTC()
	job.CreatedAt, job.LastUpdatedAt = now, now
	sc, err := parseSchedule(spec.Scheduling, now)
	if err != nil {
		return Job{}, err
	}
	var members []string
	if sc.start.IsZero() {
		// Group members are read under the lock and before the write
		// transaction, so that a thing added to a group concurrently either
		// is seen here or is reconciled after this job exists.
		if members, err = s.members(job.TargetThings, job.TargetGroups); err != nil {
			return Job{}, err
		}
	} else {
		job.Status = JobScheduled
	}
	err = s.commit(func(t *txn) error {
		if old, exists := t.job(job.ID); exists {
			if old.Status == JobDeletionInProgress {
				return fmt.Errorf("%w: job %s is being deleted; its id can be used again once the deletion ends", ErrExists, job.ID)
			}
			return fmt.Errorf("%w: job %s exists; choose another job id", ErrExists, job.ID)
		}
		j := job
		t.markJob(&j)
		if _, err := t.state(j.ID); err != nil {
			return err
		}
		if !sc.start.IsZero() {
			if err := t.moveTimer(time.Time{}, sc.start, timerStart, j.ID); err != nil {
				return err
			}
		}
		if !sc.end.IsZero() {
			if err := t.moveTimer(time.Time{}, sc.end, timerEnd, j.ID); err != nil {
				return err
			}
		}
		if j.Status == JobScheduled {
			return nil
		}
		return t.enqueue(j.ID, members)
	})
	if err != nil {
		return Job{}, err
	}
	return s.DescribeJob(job.ID)
}

// checkPlaceholders refuses a document whose presigned-URL placeholders
// are malformed or cannot be resolved (the presigner refuses the bucket or
// the key), so that no device ever receives a literal ${aws:iot:...}.
func (s *Service) checkPlaceholders(j *Job) error {
	ph, err := findPlaceholders([]byte(j.Document))
	if err != nil {
		return fmt.Errorf("%w: the job document: %v", ErrInvalid, err)
	}
	if len(ph) == 0 {
		return nil
	}
	if s.cfg.Presign == nil {
		return fmt.Errorf("%w: the job document holds presigned-URL placeholders but this service cannot presign", ErrInvalid)
	}
	if _, err := substitutePresigned([]byte(j.Document), s.cfg.Presign, j.presignExpiry()); err != nil {
		return fmt.Errorf("%w: the job document's presigned-URL placeholder cannot be resolved: %v; name a valid bucket and key", ErrInvalid, err)
	}
	return nil
}

// members returns the things a job's targets reach now, sorted. The caller
// holds s.mu and no transaction.
func (s *Service) members(things, groups []string) ([]string, error) {
	members := slices.Clone(things)
	for _, g := range groups {
		if s.cfg.Groups == nil {
			return nil, fmt.Errorf("%w: this Jobs service cannot target thing groups", ErrInvalid)
		}
		m, err := s.cfg.Groups.ThingsInGroup(g)
		if err != nil {
			return nil, fmt.Errorf("%w: thing group %s: %v", ErrNotFound, g, err)
		}
		members = append(members, m...)
	}
	sort.Strings(members)
	return slices.Compact(members), nil
}

// validateSpec checks a job's id, document and configuration against AWS's
// rules, and defaults targetSelection.
// validateDocument checks a job document: a JSON object of at most 32 KiB.
func validateDocument(doc []byte) error {
	if len(doc) > iotjobs.MaxJobDocumentSize {
		return fmt.Errorf("%w: the job document has %d bytes; at most %d are allowed", ErrInvalid, len(doc), iotjobs.MaxJobDocumentSize)
	}
	var probe map[string]any
	if err := json.Unmarshal(doc, &probe); err != nil {
		return fmt.Errorf("%w: the job document must be a JSON object: %v", ErrInvalid, err)
	} else if probe == nil {
		return fmt.Errorf("%w: the job document must be a JSON object, not null", ErrInvalid)
	}
	return nil
}

func validateDescription(d string) error {
	if len(d) > 2028 {
		return fmt.Errorf("%w: the description has %d characters; at most 2028 are allowed", ErrInvalid, len(d))
	}
	return nil
}

func validateSpec(spec *JobSpec) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if err := iotjobs.ValidateJobID(spec.JobID); err != nil {
		return bad("%v", err)
	}
	if err := validateDocument(spec.Document); err != nil {
		return err
	}
	if err := validateDescription(spec.Description); err != nil {
		return err
	}
	if len(spec.Things)+len(spec.Groups) == 0 {
		return bad("a job needs at least one target thing or thing group")
	}
	for _, th := range spec.Things {
		if err := iotjobs.ValidateThingName(th); err != nil {
			return bad("%v", err)
		}
	}
	switch spec.TargetSelection {
	case "":
		spec.TargetSelection = Snapshot
	case Snapshot, Continuous:
	default:
		return bad("targetSelection %q: use SNAPSHOT or CONTINUOUS", spec.TargetSelection)
	}
	return validateConfig(spec.settings())
}

// validateConfig checks a job's (or a template's) settings against AWS's
// rules.
func validateConfig(c Settings) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if p := c.PresignedURL; p != nil && p.ExpiresInSec != 0 && (p.ExpiresInSec < MinPresignSeconds || p.ExpiresInSec > MaxPresignSeconds) {
		return bad("presignedUrlConfig.expiresInSec %d: use %d..%d", p.ExpiresInSec, MinPresignSeconds, MaxPresignSeconds)
	}
	if to := c.Timeout; to != nil && (to.InProgressTimeoutInMinutes < 1 || to.InProgressTimeoutInMinutes > MaxTimeoutMinutes) {
		return bad("timeoutConfig.inProgressTimeoutInMinutes %d: use 1..%d", to.InProgressTimeoutInMinutes, MaxTimeoutMinutes)
	}
	if r := c.Rollout; r != nil {
		if r.MaximumPerMinute == 0 && r.ExponentialRate == nil {
			return bad("jobExecutionsRolloutConfig needs maximumPerMinute or exponentialRate")
		}
		if r.MaximumPerMinute != 0 && (r.MaximumPerMinute < 1 || r.MaximumPerMinute > MaxRolloutPerMinute) {
			return bad("maximumPerMinute %d: use 1..%d", r.MaximumPerMinute, MaxRolloutPerMinute)
		}
		if e := r.ExponentialRate; e != nil {
			if e.BaseRatePerMinute < 1 || e.BaseRatePerMinute > MaxRolloutPerMinute {
				return bad("exponentialRate.baseRatePerMinute %d: use 1..%d", e.BaseRatePerMinute, MaxRolloutPerMinute)
			}
			if e.IncrementFactor < 1.1 || e.IncrementFactor > 5 {
				return bad("exponentialRate.incrementFactor %g: use 1.1..5", e.IncrementFactor)
			}
			c := e.RateIncreaseCriteria
			if (c.NumberOfNotifiedThings > 0) == (c.NumberOfSucceededThings > 0) {
				return bad("exponentialRate.rateIncreaseCriteria needs exactly one of numberOfNotifiedThings and numberOfSucceededThings")
			}
			if c.NumberOfNotifiedThings > 1000 || c.NumberOfSucceededThings > 1000 || c.NumberOfNotifiedThings < 0 || c.NumberOfSucceededThings < 0 {
				return bad("exponentialRate.rateIncreaseCriteria: use 1..1000")
			}
		}
	}
	if a := c.Abort; a != nil {
		if len(a.CriteriaList) == 0 {
			return bad("abortConfig.criteriaList is empty")
		}
		for i, c := range a.CriteriaList {
			switch c.FailureType {
			case FailureFailed, FailureRejected, FailureTimedOut, FailureAll:
			default:
				return bad("abortConfig.criteriaList[%d].failureType %q: use FAILED, REJECTED, TIMED_OUT or ALL", i, c.FailureType)
			}
			if c.Action != "CANCEL" {
				return bad("abortConfig.criteriaList[%d].action %q: use CANCEL", i, c.Action)
			}
			if c.ThresholdPercentage <= 0 || c.ThresholdPercentage > 100 {
				return bad("abortConfig.criteriaList[%d].thresholdPercentage %g: use more than 0, at most 100", i, c.ThresholdPercentage)
			}
			if c.MinNumberOfExecutedThings < 1 {
				return bad("abortConfig.criteriaList[%d].minNumberOfExecutedThings %d: use 1 or more", i, c.MinNumberOfExecutedThings)
			}
		}
	}
	if r := c.Retry; r != nil {
		if len(r.CriteriaList) == 0 {
			return bad("jobExecutionsRetryConfig.criteriaList is empty")
		}
		total := int64(0)
		seen := map[string]bool{}
		for i, c := range r.CriteriaList {
			switch c.FailureType {
			case FailureFailed, FailureTimedOut, FailureAll:
			default:
				return bad("jobExecutionsRetryConfig.criteriaList[%d].failureType %q: use FAILED, TIMED_OUT or ALL", i, c.FailureType)
			}
			if seen[c.FailureType] {
				return bad("jobExecutionsRetryConfig names failureType %s twice", c.FailureType)
			}
			seen[c.FailureType] = true
			if c.NumberOfRetries < 0 || c.NumberOfRetries > 10 {
				return bad("jobExecutionsRetryConfig.criteriaList[%d].numberOfRetries %d: use 0..10", i, c.NumberOfRetries)
			}
			total += c.NumberOfRetries
		}
		if total > 10 {
			return bad("jobExecutionsRetryConfig allows %d retries in total; at most 10 are allowed", total)
		}
	}
	return nil
}

// JobInfo is a job with its progress.
type JobInfo struct {
	Job
	Counts Counts
	// Waiting is how many targeted things the rollout has not reached yet.
	Waiting int64
}

// DescribeJob returns a job.
func (s *Service) DescribeJob(id string) (Job, error) {
	info, err := s.JobInfo(id)
	return info.Job, err
}

// JobInfo returns a job with its execution counts.
func (s *Service) JobInfo(id string) (JobInfo, error) {
	var info JobInfo
	err := s.db.View(func(tx *bolt.Tx) error {
		t := newTxn(s, tx, s.cfg.Clock.Now().UTC())
		j, ok := t.job(id)
		if !ok {
			return fmt.Errorf("%w: job %s does not exist", ErrNotFound, id)
		}
		st, err := t.state(id)
		if err != nil {
			return err
		}
		info = JobInfo{Job: *j, Counts: st.Counts, Waiting: st.Waiting}
		return nil
	})
	return info, err
}

// ListJobs returns every job, oldest first.
func (s *Service) ListJobs() ([]Job, error) {
	var out []Job
	err := s.db.View(func(tx *bolt.Tx) error {
		t := newTxn(s, tx, time.Time{})
		return tx.Bucket(bucketJobs).ForEach(func(k, _ []byte) error {
			if j, ok := t.job(string(k)); ok {
				out = append(out, *j)
			}
			return nil
		})
	})
	sort.SliceStable(out, func(i, k int) bool {
		if !out[i].CreatedAt.Equal(out[k].CreatedAt) {
			return out[i].CreatedAt.Before(out[k].CreatedAt)
		}
		return out[i].ID < out[k].ID
	})
	return out, err
}

// DescribeExecution returns the latest execution of a job on a thing.
func (s *Service) DescribeExecution(jobID, thing string) (Execution, error) {
	return s.DescribeExecutionNumber(jobID, thing, 0)
}

// DescribeExecutionNumber returns an execution of a job on a thing by its
// number (0: the latest).
func (s *Service) DescribeExecutionNumber(jobID, thing string, number int64) (Execution, error) {
	var e Execution
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketExecs).Get(execKey(thing, jobID))
		if b == nil {
			return fmt.Errorf("%w: job %s has no execution on thing %s", ErrNotFound, jobID, thing)
		}
		if err := json.Unmarshal(b, &e); err != nil {
			return err
		}
		if number != 0 && number != e.ExecutionNumber {
			var ok bool
			if e, ok = history(tx, thing, jobID, number); !ok {
				return fmt.Errorf("%w: job %s has no execution number %d on thing %s", ErrNotFound, jobID, number, thing)
			}
		}
		return nil
	})
	return e, err
}

// ListExecutionsForJob returns the latest execution of a job on each
// thing, by thing name.
func (s *Service) ListExecutionsForJob(jobID string) ([]Execution, error) {
	var out []Execution
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketJobs).Get([]byte(jobID)) == nil {
			return fmt.Errorf("%w: job %s does not exist", ErrNotFound, jobID)
		}
		var err error
		out, err = jobExecs(tx, jobID)
		return err
	})
	return out, err
}

// ListExecutionsForThing returns the latest execution of every job on a
// thing, oldest first.
func (s *Service) ListExecutionsForThing(thing string) ([]Execution, error) {
	var out []Execution
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = newTxn(s, tx, time.Time{}).thingExecs(thing)
		return err
	})
	sort.SliceStable(out, func(i, k int) bool { return out[i].Seq < out[k].Seq })
	return out, err
}

// JobDocument returns a job's document exactly as it was given
// (placeholders kept).
func (s *Service) JobDocument(jobID string) (string, error) {
	j, err := s.DescribeJob(jobID)
	return j.Document, err
}

// ScheduledRollouts returns when the job's next maintenance windows open
// (at most ScheduledRolloutsShown), from now; none for a job without
// windows or one that is over.
func (j *Job) ScheduledRollouts(now time.Time) []time.Time {
	if j.Scheduling == nil || len(j.Scheduling.MaintenanceWindows) == 0 || (j.Status != JobScheduled && j.Status != JobInProgress) {
		return nil
	}
	ws, err := parseWindows(j.Scheduling.MaintenanceWindows)
	if err != nil {
		return nil
	}
	if st, err := ParseScheduleTime(j.Scheduling.StartTime); err == nil && st.After(now) {
		now = st
	}
	return upcomingRollouts(ws, now, ScheduledRolloutsShown)
}

// CancelJob cancels a job: it becomes CANCELED, its QUEUED executions are
// CANCELED and, with force, so are its IN_PROGRESS ones. A COMPLETED job, or
// one being deleted, cannot be canceled (ErrInvalidState); canceling a
// CANCELED job again changes nothing unless force is newly given.
func (s *Service) CancelJob(jobID string, force bool, comment, reasonCode string) (Job, error) {
	err := s.update(func(t *txn) error {
		j, ok := t.job(jobID)
		if !ok {
			return fmt.Errorf("%w: job %s does not exist", ErrNotFound, jobID)
		}
		switch j.Status {
		case JobCompleted:
			return fmt.Errorf("%w: job %s is COMPLETED and cannot be canceled", ErrInvalidState, jobID)
		case JobDeletionInProgress:
			return fmt.Errorf("%w: job %s is being deleted and cannot be canceled", ErrInvalidState, jobID)
		}
		return t.cancelJob(j, force, comment, reasonCode)
	})
	if err != nil {
		return Job{}, err
	}
	return s.DescribeJob(jobID)
}

// CancelExecution cancels one execution (CancelJobExecution): a QUEUED one,
// or an IN_PROGRESS one with force. Errors wrap ErrNotFound, ErrInvalid,
// ErrVersionConflict or ErrInvalidState.
func (s *Service) CancelExecution(jobID, thing string, req CancelRequest) (Execution, error) {
	var out Execution
	err := s.update(func(t *txn) error {
		e, ok := t.exec(thing, jobID)
		if !ok {
			return fmt.Errorf("%w: job %s has no execution on thing %s", ErrNotFound, jobID, thing)
		}
		ne, err := cancelExecution(e, req, t.now)
		if err != nil {
			return err
		}
		out = ne
		return t.setExec(ne)
	})
	return out, err
}

// DeleteJob starts deleting a job, as AWS does it: the job becomes
// DELETION_IN_PROGRESS (its rollout stops; its id cannot be reused) and,
// Config.DeletionDelay later on the service's clock, it and all its
// executions are gone. Without force the job must be COMPLETED or CANCELED
// (a CANCELED job may still have executions IN_PROGRESS). Errors wrap
// ErrNotFound, ErrInvalidState (not finished and no force, or already
// being deleted) or ErrLimitExceeded (MaxConcurrentDeletions deletions are
// in progress).
func (s *Service) DeleteJob(jobID string, force bool) error {
	return s.update(func(t *txn) error {
		j, ok := t.job(jobID)
		if !ok {
			return fmt.Errorf("%w: job %s does not exist", ErrNotFound, jobID)
		}
		switch {
		case j.Status == JobDeletionInProgress:
			return fmt.Errorf("%w: job %s is already being deleted", ErrInvalidState, jobID)
		case !force && (j.Status == JobInProgress || j.Status == JobScheduled):
			return fmt.Errorf("%w: job %s is %s; cancel it first or delete it with force", ErrInvalidState, jobID, j.Status)
		}
		if n := t.tx.Bucket(bucketDeleting).Stats().KeyN; n >= MaxConcurrentDeletions {
			return fmt.Errorf("%w: %d jobs are being deleted, the most AWS allows at once; retry when one is gone", ErrLimitExceeded, n)
		}
		if err := t.unschedule(j); err != nil {
			return err
		}
		if _, err := t.dequeue(jobID, -1); err != nil {
			return err
		}
		st, err := t.state(jobID)
		if err != nil {
			return err
		}
		st.WakeAt = time.Time{}
		t.markState(jobID)
		delay := max(s.cfg.DeletionDelay, 0)
		j.Status, j.LastUpdatedAt, j.DeleteAt = JobDeletionInProgress, t.now, t.now.Add(delay)
		t.markJob(j)
		if err := t.tx.Bucket(bucketDeleting).Put([]byte(jobID), nil); err != nil {
			return err
		}
		if err := t.moveTimer(time.Time{}, j.DeleteAt, timerDeletion, jobID); err != nil {
			return err
		}
		t.jobEvent(j, JobEventDeletionInProgress)
		return nil
	})
}

// finishDeletion ends a deletion: the job's executions (earlier ones too)
// and the job are removed, devices are notified, the deleted events go out.
func (t *txn) finishDeletion(jobID string) error {
	j, ok := t.job(jobID)
	if !ok || j.Status != JobDeletionInProgress {
		return nil
	}
	execs, err := t.jobExecs(jobID)
	if err != nil {
		return err
	}
	for _, e := range execs {
		before, err := t.execsAround(e.Thing, jobID)
		if err != nil {
			return err
		}
		after := slices.DeleteFunc(slices.Clone(before), func(x Execution) bool { return x.JobID == jobID })
		if err := t.changeThing(e.Thing, before, after); err != nil {
			return err
		}
		t.execEvent(e, JobEventDeleted)
	}
	t.jobEvent(j, JobEventDeleted)
	if err := t.flush(); err != nil {
		return err
	}
	delete(t.jobs, jobID)
	delete(t.dirtyJobs, jobID)
	delete(t.states, jobID)
	delete(t.dirtyState, jobID)
	t.touched = slices.DeleteFunc(t.touched, func(id string) bool { return id == jobID })
	for _, b := range [][]byte{bucketJobs, bucketJobState, bucketContinuous, bucketDeleting} {
		if err := t.tx.Bucket(b).Delete([]byte(jobID)); err != nil {
			return err
		}
	}
	t.jobChanged(j, true)
	return nil
}

// DeleteExecution deletes one execution of a job on a thing, by number
// (DeleteJobExecution): a terminal one, or an IN_PROGRESS one with force.
// When the latest execution goes, the thing's previous execution of the
// job (a retry's failure), if any, becomes the latest. Errors wrap
// ErrNotFound or ErrInvalidState.
func (s *Service) DeleteExecution(jobID, thing string, number int64, force bool) error {
	return s.update(func(t *txn) error {
		cur, ok := t.exec(thing, jobID)
		if !ok {
			return fmt.Errorf("%w: job %s has no execution on thing %s", ErrNotFound, jobID, thing)
		}
		if number != cur.ExecutionNumber {
			old, ok := history(t.tx, thing, jobID, number)
			if !ok {
				return fmt.Errorf("%w: job %s has no execution number %d on thing %s", ErrNotFound, jobID, number, thing)
			}
			t.execChanged(old, true)
			t.execEvent(old, JobEventDeleted)
			return t.tx.Bucket(bucketHistory).Delete(historyKey(old))
		}
		switch {
		case cur.Status.Terminal():
		case cur.Status == iotjobs.StatusInProgress && force:
		case cur.Status == iotjobs.StatusInProgress:
			return fmt.Errorf("%w: the execution of job %s on %s is IN_PROGRESS; delete it with force", ErrInvalidState, jobID, thing)
		default:
			return fmt.Errorf("%w: the execution of job %s on %s is %s; only a terminal execution (or an IN_PROGRESS one, with force) can be deleted", ErrInvalidState, jobID, thing, cur.Status)
		}
		before, err := t.execsAround(thing, jobID)
		if err != nil {
			return err
		}
		prev, hasPrev := t.latestHistory(thing, jobID)
		if !hasPrev {
			after := slices.DeleteFunc(slices.Clone(before), func(x Execution) bool { return x.JobID == jobID })
			if err := t.changeThing(thing, before, after); err != nil {
				return err
			}
			t.execEvent(cur, JobEventDeleted)
			return nil
		}
		// The previous execution (terminal) takes the deleted one's place.
		st, err := t.state(jobID)
		if err != nil {
			return err
		}
		st.Counts[cur.Status]--
		st.Counts[prev.Status]++
		t.markState(jobID)
		if d := cur.Deadline(); !d.IsZero() {
			if err := t.moveTimer(d, time.Time{}, timerExecution, thing+"\x00"+jobID); err != nil {
				return err
			}
		}
		if err := t.tx.Bucket(bucketHistory).Delete(historyKey(prev)); err != nil {
			return err
		}
		b, err := json.Marshal(prev)
		if err != nil {
			return err
		}
		if err := t.tx.Bucket(bucketExecs).Put(execKey(thing, jobID), b); err != nil {
			return err
		}
		if err := setPending(t.tx, thing, jobID, isPending(prev.Status)); err != nil {
			return err
		}
		t.execChanged(cur, true)
		t.execEvent(cur, JobEventDeleted)
		after := slices.Clone(before)
		for i := range after {
			if after[i].JobID == jobID {
				after[i] = prev
			}
		}
		t.notifyThing(thing, before, after)
		t.touch(jobID)
		return nil
	})
}

// latestHistory returns the highest-numbered earlier execution of a job on
// a thing.
func (t *txn) latestHistory(thing, jobID string) (Execution, bool) {
	prefix := []byte(thing + "\x00" + jobID + "\x00")
	c := t.tx.Bucket(bucketHistory).Cursor()
	var last []byte
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		last = v
	}
	var e Execution
	if last == nil || json.Unmarshal(last, &e) != nil {
		return e, false
	}
	return e, true
}

// JobUpdate is UpdateJob's input: the fields given replace the job's.
type JobUpdate struct {
	Description *string
	Settings
}

// UpdateJob changes a job's description and settings (UpdateJob). A new
// rollout rate applies from the next one-minute window; a new timeout to
// executions that start after; new abort criteria are checked at once.
// Errors wrap ErrNotFound, ErrInvalid or ErrInvalidState (a job being
// deleted).
func (s *Service) UpdateJob(jobID string, u JobUpdate) error {
	if u.Description != nil {
		if err := validateDescription(*u.Description); err != nil {
			return err
		}
	}
	if err := validateConfig(u.Settings); err != nil {
		return err
	}
	return s.update(func(t *txn) error {
		j, ok := t.job(jobID)
		if !ok {
			return fmt.Errorf("%w: job %s does not exist", ErrNotFound, jobID)
		}
		if j.Status == JobDeletionInProgress {
			return fmt.Errorf("%w: job %s is being deleted", ErrInvalidState, jobID)
		}
		if u.Description != nil {
			j.Description = *u.Description
		}
		j.Settings.merge(u.Settings, false)
		if u.Rollout != nil {
			st, err := t.state(jobID)
			if err != nil {
				return err
			}
			st.Rollout.Rate = 0 // the new rate, from the next window
			t.markState(jobID)
		}
		j.LastUpdatedAt = t.now
		t.markJob(j)
		t.touch(jobID)
		return nil
	})
}

// MaxJobTargets is how many targets a job may have, as on AWS.
const MaxJobTargets = 100

// AssociateTargets adds things and thing groups to a CONTINUOUS job that is
// IN_PROGRESS (AssociateTargetsWithJob); the things they reach get
// executions through the rollout. Errors wrap ErrNotFound, ErrInvalid or
// ErrLimitExceeded.
func (s *Service) AssociateTargets(jobID string, things, groups []string, comment string) (Job, error) {
	for _, th := range things {
		if err := iotjobs.ValidateThingName(th); err != nil {
			return Job{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	members, err := s.members(things, groups)
	if err != nil {
		return Job{}, err
	}
	err = s.commit(func(t *txn) error {
		j, ok := t.job(jobID)
		if !ok {
			return fmt.Errorf("%w: job %s does not exist", ErrNotFound, jobID)
		}
		if j.TargetSelection != Continuous {
			return fmt.Errorf("%w: job %s is SNAPSHOT; targets can be added to CONTINUOUS jobs only", ErrInvalid, jobID)
		}
		if j.Status != JobInProgress {
			return fmt.Errorf("%w: job %s is %s; targets can be added to an IN_PROGRESS job only", ErrInvalid, jobID, j.Status)
		}
		for _, th := range things {
			if !slices.Contains(j.TargetThings, th) {
				j.TargetThings = append(j.TargetThings, th)
				j.Targets = append(j.Targets, t.s.ThingARN(th))
			}
		}
		for _, g := range groups {
			if !slices.Contains(j.TargetGroups, g) {
				j.TargetGroups = append(j.TargetGroups, g)
				j.Targets = append(j.Targets, t.s.GroupARN(g))
			}
		}
		if len(j.Targets) > MaxJobTargets {
			return fmt.Errorf("%w: job %s would have %d targets; at most %d are allowed", ErrLimitExceeded, jobID, len(j.Targets), MaxJobTargets)
		}
		if comment != "" {
			j.Comment = comment
		}
		j.LastUpdatedAt = t.now
		t.markJob(j)
		var add []string
		for _, th := range members {
			if t.reaches(j, th) {
				add = append(add, th)
			}
		}
		return t.enqueue(jobID, add)
	})
	if err != nil {
		return Job{}, err
	}
	return s.DescribeJob(jobID)
}

// reaches reports whether a job targeting thing should give it an
// execution now: it has none (or its last one was REMOVED) and is not
// waiting for the rollout already.
func (t *txn) reaches(j *Job, thing string) bool {
	if j.RolloutStopped {
		return false
	}
	cur, has := t.exec(thing, j.ID)
	return (!has || cur.Status == iotjobs.StatusRemoved) && t.tx.Bucket(bucketWaitThing).Get([]byte(j.ID+"\x00"+thing)) == nil
}

// ReconcileThing brings a thing's executions of CONTINUOUS jobs in line
// with its current thing groups (static, and dynamic ones whose query it
// matches): a job that now targets it gives it an execution (through the
// rollout), one that no longer does marks its pending execution REMOVED.
// Call it after every change of the thing's group membership, of its
// attributes, and after deleting the thing.
func (s *Service) ReconcileThing(thing string) error {
	if s.cfg.Groups == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	groups, err := s.cfg.Groups.GroupsOfThing(thing)
	if err != nil {
		return fmt.Errorf("jobsvc: groups of %s: %w", thing, err)
	}
	return s.commit(func(t *txn) error {
		var ids []string
		t.tx.Bucket(bucketContinuous).ForEach(func(k, _ []byte) error {
			ids = append(ids, string(k))
			return nil
		})
		for _, id := range ids {
			j, ok := t.job(id)
			if !ok || j.Status != JobInProgress {
				continue
			}
			cur, has := t.exec(thing, id)
			if targeted(j, thing, groups) {
				if t.reaches(j, thing) {
					if err := t.enqueue(id, []string{thing}); err != nil {
						return err
					}
				}
				continue
			}
			if _, err := t.unqueue(id, thing); err != nil {
				return err
			}
			if has && !cur.Status.Terminal() {
				if err := t.setExec(serviceSet(cur, iotjobs.StatusRemoved, t.now)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Tick applies every timer due at the clock's current time: executions
// whose step or in-progress timer expired become TIMED_OUT, rollouts whose
// next window opened release more executions, scheduled jobs start and
// end, deletions end. RunTimers calls it; tests call it after moving a
// fake clock.
func (s *Service) Tick() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Scheduled jobs that start need their targets' members, read before
	// the write transaction as CreateJob does.
	starting := map[string][]string{}
	var due []*Job
	s.db.View(func(tx *bolt.Tx) error {
		t := newTxn(s, tx, s.cfg.Clock.Now().UTC())
		for _, k := range dueTimers(tx, t.now) {
			if k[8] == timerStart {
				if j, ok := t.job(string(k[9:])); ok && j.Status == JobScheduled {
					due = append(due, j)
				}
			}
		}
		return nil
	})
	for _, j := range due {
		m, err := s.members(j.TargetThings, j.TargetGroups)
		if err != nil {
			s.log.Warn("a scheduled job's targets cannot be read; it starts with its things only", "job", j.ID, "err", err)
			m, _ = s.members(j.TargetThings, nil)
		}
		starting[j.ID] = m
	}
	return s.commit(func(t *txn) error {
		b := t.tx.Bucket(bucketTimers)
		for _, k := range dueTimers(t.tx, t.now) {
			id := string(k[9:])
			if k[8] == timerStart {
				if _, ok := starting[id]; !ok {
					continue // came due after the members were read: next Tick
				}
			}
			if err := b.Delete(k); err != nil {
				return err
			}
			t.timers = true
			if err := t.fire(k[8], id, starting[id]); err != nil {
				return err
			}
		}
		return nil
	})
}

// dueTimers returns the keys of the timers due at now, earliest first.
func dueTimers(tx *bolt.Tx, now time.Time) [][]byte {
	var due [][]byte
	c := tx.Bucket(bucketTimers).Cursor()
	for k, _ := c.First(); len(k) > 9; k, _ = c.Next() {
		if time.Unix(0, int64(binary.BigEndian.Uint64(k))).After(now) {
			break
		}
		due = append(due, bytes.Clone(k))
	}
	return due
}

// fire applies one due timer.
func (t *txn) fire(kind byte, id string, members []string) error {
	switch kind {
	case timerExecution:
		thing, job, _ := strings.Cut(id, "\x00")
		e, ok := t.exec(thing, job)
		if !ok {
			return nil
		}
		if ne, expired := timeOut(e, t.now); expired {
			return t.setExec(ne)
		}
	case timerRollout:
		if _, ok := t.job(id); !ok {
			return nil
		}
		st, err := t.state(id)
		if err != nil {
			return err
		}
		// The key is gone: forget it, so that flush does not look for it.
		t.stateWake[id] = time.Time{}
		st.WakeAt = time.Time{}
		t.markState(id)
		t.touch(id)
	case timerStart:
		j, ok := t.job(id)
		if !ok || j.Status != JobScheduled {
			return nil
		}
		j.Status, j.LastUpdatedAt = JobInProgress, t.now
		t.markJob(j)
		return t.enqueue(id, members)
	case timerEnd:
		j, ok := t.job(id)
		if !ok || (j.Status != JobInProgress && j.Status != JobScheduled) {
			return nil
		}
		sc, err := readSchedule(j.Scheduling)
		if err != nil {
			return nil
		}
		switch sc.endBehavior {
		case EndCancel, EndForceCancel:
			return t.cancelJob(j, sc.endBehavior == EndForceCancel, fmt.Sprintf("the schedule's endTime %s passed (endBehavior %s)", j.Scheduling.EndTime, sc.endBehavior), "")
		default:
			if j.Status == JobScheduled {
				return nil
			}
			j.RolloutStopped, j.LastUpdatedAt = true, t.now
			t.markJob(j)
			t.touch(id)
		}
	case timerDeletion:
		return t.finishDeletion(id)
	}
	return nil
}

// NextTimer returns when the earliest timer is due; ok is false when none
// is set.
func (s *Service) NextTimer() (at time.Time, ok bool) {
	s.db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketTimers).Cursor().First()
		if len(k) > 9 {
			at, ok = time.Unix(0, int64(binary.BigEndian.Uint64(k))), true
		}
		return nil
	})
	return at, ok
}

// RunTimers fires the service's timers on its clock until ctx ends: it
// waits for the earliest deadline (or for a change of the timers) and calls
// Tick.
func (s *Service) RunTimers(ctx context.Context) {
	for {
		var fire <-chan time.Time
		var tm clock.Timer
		if at, ok := s.NextTimer(); ok {
			d := at.Sub(s.cfg.Clock.Now())
			if d <= 0 {
				if err := s.Tick(); err != nil {
					s.log.Error("jobs timers failed", "err", err)
					// Wait for a change rather than spin on a failing store.
					d = time.Second
				} else {
					continue
				}
			}
			tm = s.cfg.Clock.NewTimer(d)
			fire = tm.C()
		}
		select {
		case <-ctx.Done():
			if tm != nil {
				tm.Stop()
			}
			return
		case <-fire:
		case <-s.kick:
		}
		if tm != nil {
			tm.Stop()
		}
	}
}

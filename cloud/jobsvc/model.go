// Package jobsvc is the local cloud's AWS IoT Jobs service: jobs, their
// executions on things, and the device MQTT API (get, start-next,
// {jobId}/get, {jobId}/update) with the notifications AWS sends (notify,
// notify-next), persisted in bbolt so that the cloud survives a restart.
//
// The rules of executions — which status may follow which, versionNumber,
// which execution is next, when a notification is due — are pure functions
// in this file, tested without a database or a broker. Service applies them
// in bbolt transactions and hands the resulting messages to a Publisher (the
// broker) after each commit.
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
)

// Job is a job: a document sent to target things.
type Job struct {
	ID              string          `json:"jobId"`
	ARN             string          `json:"jobArn"`
	Description     string          `json:"description,omitempty"`
	Document        json.RawMessage `json:"document"`
	Targets         []string        `json:"targets"`
	TargetSelection string          `json:"targetSelection"`
	Status          JobStatus       `json:"status"`
	CreatedAt       time.Time       `json:"createdAt"`
	LastUpdatedAt   time.Time       `json:"lastUpdatedAt"`
	CompletedAt     time.Time       `json:"completedAt,omitzero"`
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
}

func epoch(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// Wire returns the execution as the MQTT API shows it, with the job document
// when doc is not nil.
func (e *Execution) Wire(doc json.RawMessage) *iotjobs.JobExecution {
	return &iotjobs.JobExecution{
		JobID:           e.JobID,
		ThingName:       e.Thing,
		JobDocument:     doc,
		Status:          e.Status,
		StatusDetails:   e.StatusDetails,
		QueuedAt:        epoch(e.QueuedAt),
		StartedAt:       epoch(e.StartedAt),
		LastUpdatedAt:   epoch(e.LastUpdatedAt),
		VersionNumber:   e.VersionNumber,
		ExecutionNumber: e.ExecutionNumber,
	}
}

// Summary returns the execution's summary form.
func (e *Execution) Summary() iotjobs.JobExecutionSummary { return e.Wire(nil).Summary() }

// State returns the execution's state form.
func (e *Execution) State() *iotjobs.JobExecutionState {
	st := e.Wire(nil).State()
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

// maxNotifyJobs is how many executions a notify message lists at most.
const maxNotifyJobs = 10

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
			if n == maxNotifyJobs {
				break
			}
			m.Jobs[list.status] = append(m.Jobs[list.status], e.Summary())
			n++
		}
	}
	return m
}

// pendingKey identifies the pending set for change detection: which jobs are
// pending and in which status.
func pendingKey(execs []Execution) string {
	ip, q := pending(execs)
	k := ""
	for _, e := range ip {
		k += "I:" + e.JobID + ","
	}
	for _, e := range q {
		k += "Q:" + e.JobID + ","
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

// applyUpdate applies an UpdateJobExecution request to e at now. It returns
// the updated execution, or the rejection.
func applyUpdate(e Execution, req iotjobs.UpdateRequest, now time.Time) (Execution, *iotjobs.ErrorResponse) {
	if req.Status == "" {
		return e, reject(iotjobs.CodeInvalidRequest, "status is required")
	}
	if !req.Status.DeviceSettable() {
		return e, reject(iotjobs.CodeInvalidRequest, "status %q cannot be set by a device: use IN_PROGRESS, SUCCEEDED, FAILED or REJECTED", req.Status)
	}
	if req.StatusDetails != nil {
		if err := iotjobs.ValidateStatusDetails(req.StatusDetails); err != nil {
			return e, reject(iotjobs.CodeInvalidRequest, "%v", err)
		}
	}
	if req.StepTimeoutInMinutes != nil {
		if v := int64(*req.StepTimeoutInMinutes); v != -1 && (v < 1 || v > 10080) {
			return e, reject(iotjobs.CodeInvalidRequest, "stepTimeoutInMinutes %d: use 1..10080, or -1 to clear", v)
		}
	}
	if req.ExecutionNumber != nil && int64(*req.ExecutionNumber) != e.ExecutionNumber {
		return e, reject(iotjobs.CodeResourceNotFound, "job %s has no execution %d on thing %s", e.JobID, *req.ExecutionNumber, e.Thing)
	}
	if e.Status.Terminal() {
		return e, reject(iotjobs.CodeTerminalStateReached, "the execution of job %s on %s is already %s", e.JobID, e.Thing, e.Status)
	}
	if req.ExpectedVersion != nil && int64(*req.ExpectedVersion) != e.VersionNumber {
		r := reject(iotjobs.CodeVersionMismatch, "expectedVersion %d does not match the current versionNumber %d", *req.ExpectedVersion, e.VersionNumber)
		r.ExecutionState = e.State()
		return e, r
	}
	if req.Status == iotjobs.StatusRejected && e.Status != iotjobs.StatusQueued {
		r := reject(iotjobs.CodeInvalidStateTransition, "cannot go from %s to REJECTED: only a QUEUED execution can be rejected", e.Status)
		r.ExecutionState = e.State()
		return e, r
	}
	if e.Status == iotjobs.StatusQueued && req.Status == iotjobs.StatusInProgress || e.StartedAt.IsZero() && req.Status == iotjobs.StatusInProgress {
		e.StartedAt = now
	}
	e.Status = req.Status
	if req.StatusDetails != nil {
		e.StatusDetails = maps.Clone(req.StatusDetails)
	}
	e.VersionNumber++
	e.LastUpdatedAt = now
	return e, nil
}

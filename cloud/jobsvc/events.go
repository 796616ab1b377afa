package jobsvc

import (
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	"github.com/awsfota/awsfota/iotjobs"
)

// Event topics AWS IoT publishes for monitoring clients (an application,
// not the devices). The local cloud always publishes them; on AWS they are
// enabled with UpdateEventConfigurations.
const (
	jobEventsPrefix       = "$aws/events/job/"
	executionEventsPrefix = "$aws/events/jobExecution/"
)

// Job event operations.
const (
	JobEventCompleted = "completed"
	JobEventCanceled  = "canceled"
	JobEventDeleted   = "deleted"
)

// JobEventTopic is $aws/events/job/{jobId}/{operation}.
func JobEventTopic(jobID, op string) string { return jobEventsPrefix + jobID + "/" + op }

// ExecutionEventTopic is $aws/events/jobExecution/{jobId}/{operation}; the
// operation is the lower-case terminal status (succeeded, failed, rejected,
// canceled, timed_out, removed) or deleted.
func ExecutionEventTopic(jobID, op string) string { return executionEventsPrefix + jobID + "/" + op }

// ProcessDetails counts a job's executions by status, as DescribeJob's
// jobProcessDetails and the job events do.
type ProcessDetails struct {
	ProcessingTargets        []string `json:"processingTargets,omitempty"`
	NumberOfCanceledThings   int64    `json:"numberOfCanceledThings"`
	NumberOfSucceededThings  int64    `json:"numberOfSucceededThings"`
	NumberOfFailedThings     int64    `json:"numberOfFailedThings"`
	NumberOfRejectedThings   int64    `json:"numberOfRejectedThings"`
	NumberOfQueuedThings     int64    `json:"numberOfQueuedThings"`
	NumberOfInProgressThings int64    `json:"numberOfInProgressThings"`
	NumberOfRemovedThings    int64    `json:"numberOfRemovedThings"`
	NumberOfTimedOutThings   int64    `json:"numberOfTimedOutThings"`
}

// Details returns the counts in jobProcessDetails form.
func (c Counts) Details() ProcessDetails {
	return ProcessDetails{
		NumberOfCanceledThings:   c[iotjobs.StatusCanceled],
		NumberOfSucceededThings:  c[iotjobs.StatusSucceeded],
		NumberOfFailedThings:     c[iotjobs.StatusFailed],
		NumberOfRejectedThings:   c[iotjobs.StatusRejected],
		NumberOfQueuedThings:     c[iotjobs.StatusQueued],
		NumberOfInProgressThings: c[iotjobs.StatusInProgress],
		NumberOfRemovedThings:    c[iotjobs.StatusRemoved],
		NumberOfTimedOutThings:   c[iotjobs.StatusTimedOut],
	}
}

// JobEvent is the payload of a $aws/events/job/... message. Times are epoch
// seconds.
type JobEvent struct {
	EventType         string          `json:"eventType"` // "JOB"
	EventID           string          `json:"eventId"`
	Timestamp         int64           `json:"timestamp"`
	Operation         string          `json:"operation"`
	JobID             string          `json:"jobId"`
	Status            string          `json:"status"`
	TargetSelection   TargetSelection `json:"targetSelection"`
	Targets           []string        `json:"targets"`
	Description       string          `json:"description,omitempty"`
	Comment           string          `json:"comment,omitempty"`
	ReasonCode        string          `json:"reasonCode,omitempty"`
	CreatedAt         int64           `json:"createdAt"`
	LastUpdatedAt     int64           `json:"lastUpdatedAt"`
	CompletedAt       int64           `json:"completedAt,omitempty"`
	JobProcessDetails ProcessDetails  `json:"jobProcessDetails"`
}

// ExecutionEvent is the payload of a $aws/events/jobExecution/... message.
type ExecutionEvent struct {
	EventType     string                `json:"eventType"` // "JOB_EXECUTION"
	EventID       string                `json:"eventId"`
	Timestamp     int64                 `json:"timestamp"`
	Operation     string                `json:"operation"`
	JobID         string                `json:"jobId"`
	ThingArn      string                `json:"thingArn"`
	Status        iotjobs.Status        `json:"status"`
	StatusDetails iotjobs.StatusDetails `json:"statusDetails,omitempty"`
}

func eventID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// jobEvent builds a job event; status may differ from the job's (deleted).
func jobEvent(j *Job, op, status string, c Counts, now time.Time) JobEvent {
	return JobEvent{EventType: "JOB", EventID: eventID(), Timestamp: now.Unix(), Operation: op, JobID: j.ID,
		Status: status, TargetSelection: j.TargetSelection, Targets: j.Targets, Description: j.Description,
		Comment: j.Comment, ReasonCode: j.ReasonCode, CreatedAt: epoch(j.CreatedAt), LastUpdatedAt: epoch(j.LastUpdatedAt),
		CompletedAt: epoch(j.CompletedAt), JobProcessDetails: c.Details()}
}

// executionEvent builds the event of an execution that became terminal (op
// is its status in lower case) or was deleted.
func executionEvent(e Execution, thingARN, op string, now time.Time) ExecutionEvent {
	return ExecutionEvent{EventType: "JOB_EXECUTION", EventID: eventID(), Timestamp: now.Unix(), Operation: op,
		JobID: e.JobID, ThingArn: thingARN, Status: e.Status, StatusDetails: e.StatusDetails}
}

// executionEventOp is the event operation of a terminal status.
func executionEventOp(s iotjobs.Status) string { return strings.ToLower(string(s)) }

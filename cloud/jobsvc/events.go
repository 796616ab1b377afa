package jobsvc

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/awsfota/awsfota/iotjobs"
	bolt "go.etcd.io/bbolt"
)

// Event topics AWS IoT publishes for monitoring clients (an application,
// not the devices), once UpdateEventConfigurations enables the JOB and
// JOB_EXECUTION event types; both are off until then, as on AWS.
const (
	jobEventsPrefix       = "$aws/events/job/"
	executionEventsPrefix = "$aws/events/jobExecution/"
)

// Job event operations (the last topic level).
const (
	JobEventCompleted              = "completed"
	JobEventCanceled               = "canceled"
	JobEventDeleted                = "deleted"
	JobEventCancellationInProgress = "cancellation_in_progress"
	JobEventDeletionInProgress     = "deletion_in_progress"
)

// Event types of UpdateEventConfigurations. The local cloud publishes JOB
// and JOB_EXECUTION events; the others are kept and described, and never
// published.
const (
	EventTypeJob          = "JOB"
	EventTypeJobExecution = "JOB_EXECUTION"
)

// EventTypes are every event type AWS IoT's UpdateEventConfigurations
// knows.
var EventTypes = []string{"THING", "THING_GROUP", "THING_TYPE", "THING_GROUP_MEMBERSHIP", "THING_GROUP_HIERARCHY",
	"THING_TYPE_ASSOCIATION", EventTypeJob, EventTypeJobExecution, "POLICY", "CERTIFICATE", "CA_CERTIFICATE"}

// JobEventTopic is $aws/events/job/{jobId}/{operation}.
func JobEventTopic(jobID, op string) string { return jobEventsPrefix + jobID + "/" + op }

// ExecutionEventTopic is $aws/events/jobExecution/{jobId}/{operation}; the
// operation is the lower-case terminal status (succeeded, failed, rejected,
// canceled, timed_out, removed) or deleted.
func ExecutionEventTopic(jobID, op string) string { return executionEventsPrefix + jobID + "/" + op }

// ProcessDetails counts a job's executions by status, as DescribeJob's
// jobProcessDetails does.
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

// EventProcessDetails is the jobProcessDetails of a "completed" job event:
// the counters AWS's documented payload carries.
type EventProcessDetails struct {
	NumberOfCanceledThings  int64 `json:"numberOfCanceledThings"`
	NumberOfRejectedThings  int64 `json:"numberOfRejectedThings"`
	NumberOfFailedThings    int64 `json:"numberOfFailedThings"`
	NumberOfRemovedThings   int64 `json:"numberOfRemovedThings"`
	NumberOfSucceededThings int64 `json:"numberOfSucceededThings"`
}

// JobEvent is the payload of a $aws/events/job/... message, as AWS
// documents it: timestamp in epoch seconds, createdAt, lastUpdatedAt and
// completedAt in epoch milliseconds. Status is the job's (COMPLETED,
// CANCELED), or the operation's (CANCELLATION_IN_PROGRESS,
// DELETION_IN_PROGRESS, DELETED).
type JobEvent struct {
	EventType         string               `json:"eventType"` // "JOB"
	EventID           string               `json:"eventId"`
	Timestamp         int64                `json:"timestamp"`
	Operation         string               `json:"operation"`
	JobID             string               `json:"jobId"`
	Status            string               `json:"status"`
	TargetSelection   TargetSelection      `json:"targetSelection"`
	Targets           []string             `json:"targets"`
	Description       string               `json:"description,omitempty"`
	CompletedAt       int64                `json:"completedAt,omitempty"`
	CreatedAt         int64                `json:"createdAt"`
	LastUpdatedAt     int64                `json:"lastUpdatedAt"`
	Comment           string               `json:"comment,omitempty"`
	JobProcessDetails *EventProcessDetails `json:"jobProcessDetails,omitempty"`
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

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// jobEvent builds a job event; the status is the operation's.
func jobEvent(j *Job, op string, c Counts, now time.Time) JobEvent {
	e := JobEvent{EventType: "JOB", EventID: eventID(), Timestamp: now.Unix(), Operation: op, JobID: j.ID,
		Status: strings.ToUpper(op), TargetSelection: j.TargetSelection, Targets: j.Targets, Description: j.Description,
		CreatedAt: millis(j.CreatedAt), LastUpdatedAt: millis(j.LastUpdatedAt), Comment: j.Comment}
	if op == JobEventCompleted {
		e.CompletedAt = millis(j.CompletedAt)
		e.JobProcessDetails = &EventProcessDetails{NumberOfCanceledThings: c[iotjobs.StatusCanceled], NumberOfRejectedThings: c[iotjobs.StatusRejected],
			NumberOfFailedThings: c[iotjobs.StatusFailed], NumberOfRemovedThings: c[iotjobs.StatusRemoved], NumberOfSucceededThings: c[iotjobs.StatusSucceeded]}
	}
	return e
}

// executionEvent builds the event of an execution that became terminal (op
// is its status in lower case) or was deleted.
func executionEvent(e Execution, thingARN, op string, now time.Time) ExecutionEvent {
	return ExecutionEvent{EventType: "JOB_EXECUTION", EventID: eventID(), Timestamp: now.Unix(), Operation: op,
		JobID: e.JobID, ThingArn: thingARN, Status: e.Status, StatusDetails: e.StatusDetails}
}

// executionEventOp is the event operation of a terminal status.
func executionEventOp(s iotjobs.Status) string { return strings.ToLower(string(s)) }

// EventConfigurations is what DescribeEventConfigurations shows: which
// event types are enabled, and when the configuration was made and last
// changed.
type EventConfigurations struct {
	Enabled          map[string]bool `json:"enabled"`
	CreationDate     time.Time       `json:"creationDate"`
	LastModifiedDate time.Time       `json:"lastModifiedDate"`
}

var keyEvents = []byte("events")

// loadEvents reads the stored event configuration (every type off when
// none is stored).
func loadEvents(tx *bolt.Tx) (EventConfigurations, error) {
	c := EventConfigurations{Enabled: map[string]bool{}}
	if b := tx.Bucket(bucketConfig).Get(keyEvents); b != nil {
		if err := json.Unmarshal(b, &c); err != nil {
			return c, fmt.Errorf("jobsvc: stored event configuration: %w", err)
		}
	}
	if c.Enabled == nil {
		c.Enabled = map[string]bool{}
	}
	return c, nil
}

// EventConfigurations returns the event configuration.
func (s *Service) EventConfigurations() (EventConfigurations, error) {
	var c EventConfigurations
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		c, err = loadEvents(tx)
		return err
	})
	for _, t := range EventTypes {
		if _, ok := c.Enabled[t]; !ok {
			c.Enabled[t] = false
		}
	}
	return c, err
}

// UpdateEventConfigurations enables or disables event types (the ones not
// named keep their setting). Errors wrap ErrInvalid for an unknown type.
func (s *Service) UpdateEventConfigurations(enabled map[string]bool) error {
	for t := range enabled {
		if !slices.Contains(EventTypes, t) {
			return fmt.Errorf("%w: event type %q: use one of %s", ErrInvalid, t, strings.Join(EventTypes, ", "))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var c EventConfigurations
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if c, err = loadEvents(tx); err != nil {
			return err
		}
		now := s.cfg.Clock.Now().UTC()
		if c.CreationDate.IsZero() {
			c.CreationDate = now
		}
		c.LastModifiedDate = now
		for t, on := range enabled {
			c.Enabled[t] = on
		}
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketConfig).Put(keyEvents, b)
	})
	if err == nil {
		s.events.Store(&c)
	}
	return err
}

// eventsOn reports whether events of a type are published.
func (s *Service) eventsOn(typ string) bool {
	c := s.events.Load()
	return c != nil && c.Enabled[typ]
}

// jobEvent publishes a job event if JOB events are enabled.
func (t *txn) jobEvent(j *Job, op string) {
	if !t.s.eventsOn(EventTypeJob) {
		return
	}
	var c Counts
	if st, err := t.state(j.ID); err == nil {
		c = st.Counts
	}
	t.send(JobEventTopic(j.ID, op), jobEvent(j, op, c, t.now), "")
}

// execEvent publishes an execution event if JOB_EXECUTION events are
// enabled.
func (t *txn) execEvent(e Execution, op string) {
	if !t.s.eventsOn(EventTypeJobExecution) {
		return
	}
	t.send(ExecutionEventTopic(e.JobID, op), executionEvent(e, t.s.ThingARN(e.Thing), op, t.now), "")
}

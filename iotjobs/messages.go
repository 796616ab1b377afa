package iotjobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Status is the status of a job execution.
type Status string

// Execution statuses. The device may set IN_PROGRESS, SUCCEEDED, FAILED and
// REJECTED; the service sets the others.
const (
	StatusQueued     Status = "QUEUED"
	StatusInProgress Status = "IN_PROGRESS"
	StatusSucceeded  Status = "SUCCEEDED"
	StatusFailed     Status = "FAILED"
	StatusRejected   Status = "REJECTED"
	StatusTimedOut   Status = "TIMED_OUT"
	StatusRemoved    Status = "REMOVED"
	StatusCanceled   Status = "CANCELED"
)

// Terminal reports whether no further update can change the execution.
func (s Status) Terminal() bool {
	switch s {
	case StatusSucceeded, StatusFailed, StatusRejected, StatusTimedOut, StatusRemoved, StatusCanceled:
		return true
	}
	return false
}

// DeviceSettable reports whether a device may request s in UpdateJobExecution.
func (s Status) DeviceSettable() bool {
	switch s {
	case StatusInProgress, StatusSucceeded, StatusFailed, StatusRejected:
		return true
	}
	return false
}

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	return s == StatusQueued || s.Terminal() || s == StatusInProgress
}

// StatusDetails is the free-form string map a device attaches to an execution.
type StatusDetails map[string]string

// Limits of the Jobs service that both sides check.
const (
	MaxClientTokenLen     = 64
	MaxStatusDetails      = 10
	MaxStatusDetailKeyLen = 128
	MaxStatusDetailValLen = 1024
	MaxJobDocumentSize    = 32 * 1024
	MaxJobIDLen           = 64
	MaxThingNameLen       = 128
)

// Int is an integer that decodes from a JSON number or from a JSON string
// holding a number: AWS accepts both for expectedVersion and executionNumber,
// and the seed device sends expectedVersion as a string. It encodes as a
// number.
type Int int64

// UnmarshalJSON accepts 3 and "3".
func (n *Int) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		*n = Int(v)
		return nil
	}
	var v int64
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("%s is not an integer", b)
	}
	*n = Int(v)
	return nil
}

// Ptr returns a pointer to an Int holding v, for optional request fields.
func Ptr(v int64) *Int { n := Int(v); return &n }

// JobExecution is a job execution as the MQTT API returns it. Timestamps are
// seconds since the Unix epoch; JobDocument is the document as a JSON value.
type JobExecution struct {
	JobID                            string          `json:"jobId"`
	ThingName                        string          `json:"thingName,omitempty"`
	JobDocument                      json.RawMessage `json:"jobDocument,omitempty"`
	Status                           Status          `json:"status"`
	StatusDetails                    StatusDetails   `json:"statusDetails,omitempty"`
	QueuedAt                         int64           `json:"queuedAt"`
	StartedAt                        int64           `json:"startedAt,omitempty"`
	LastUpdatedAt                    int64           `json:"lastUpdatedAt"`
	VersionNumber                    int64           `json:"versionNumber"`
	ExecutionNumber                  int64           `json:"executionNumber"`
	ApproximateSecondsBeforeTimedOut *int64          `json:"approximateSecondsBeforeTimedOut,omitempty"`
}

// Summary returns the summary form of e.
func (e *JobExecution) Summary() JobExecutionSummary {
	return JobExecutionSummary{
		JobID:           e.JobID,
		QueuedAt:        e.QueuedAt,
		StartedAt:       e.StartedAt,
		LastUpdatedAt:   e.LastUpdatedAt,
		VersionNumber:   e.VersionNumber,
		ExecutionNumber: e.ExecutionNumber,
	}
}

// State returns the execution-state form of e.
func (e *JobExecution) State() JobExecutionState {
	return JobExecutionState{Status: e.Status, StatusDetails: e.StatusDetails, VersionNumber: e.VersionNumber}
}

// JobExecutionSummary is the short form of an execution used in lists.
type JobExecutionSummary struct {
	JobID           string `json:"jobId"`
	QueuedAt        int64  `json:"queuedAt"`
	StartedAt       int64  `json:"startedAt,omitempty"`
	LastUpdatedAt   int64  `json:"lastUpdatedAt"`
	VersionNumber   int64  `json:"versionNumber"`
	ExecutionNumber int64  `json:"executionNumber"`
}

// JobExecutionState is what UpdateJobExecution returns when asked and what a
// VersionMismatch or InvalidStateTransition rejection carries.
type JobExecutionState struct {
	Status        Status        `json:"status"`
	StatusDetails StatusDetails `json:"statusDetails,omitempty"`
	VersionNumber int64         `json:"versionNumber"`
}

// GetPendingRequest is the GetPendingJobExecutions request.
type GetPendingRequest struct {
	ClientToken string `json:"clientToken,omitempty"`
}

// GetPendingResponse is the accepted reply to GetPendingJobExecutions.
type GetPendingResponse struct {
	InProgressJobs []JobExecutionSummary `json:"inProgressJobs"`
	QueuedJobs     []JobExecutionSummary `json:"queuedJobs"`
	Timestamp      int64                 `json:"timestamp"`
	ClientToken    string                `json:"clientToken,omitempty"`
}

// StartNextRequest is the StartNextPendingJobExecution request.
type StartNextRequest struct {
	StatusDetails        StatusDetails `json:"statusDetails,omitempty"`
	StepTimeoutInMinutes *Int          `json:"stepTimeoutInMinutes,omitempty"`
	ClientToken          string        `json:"clientToken,omitempty"`
}

// ExecutionResponse is the accepted reply to StartNextPendingJobExecution and
// DescribeJobExecution. Execution is nil when nothing is pending.
type ExecutionResponse struct {
	Execution   *JobExecution `json:"execution,omitempty"`
	Timestamp   int64         `json:"timestamp"`
	ClientToken string        `json:"clientToken,omitempty"`
}

// DescribeRequest is the DescribeJobExecution request. IncludeJobDocument
// defaults to true over MQTT.
type DescribeRequest struct {
	ExecutionNumber    *Int   `json:"executionNumber,omitempty"`
	IncludeJobDocument *bool  `json:"includeJobDocument,omitempty"`
	ClientToken        string `json:"clientToken,omitempty"`
}

// UpdateRequest is the UpdateJobExecution request. Omitted StatusDetails keep
// the stored ones.
type UpdateRequest struct {
	Status                   Status        `json:"status"`
	StatusDetails            StatusDetails `json:"statusDetails,omitempty"`
	ExpectedVersion          *Int          `json:"expectedVersion,omitempty"`
	ExecutionNumber          *Int          `json:"executionNumber,omitempty"`
	IncludeJobExecutionState bool          `json:"includeJobExecutionState,omitempty"`
	IncludeJobDocument       bool          `json:"includeJobDocument,omitempty"`
	StepTimeoutInMinutes     *Int          `json:"stepTimeoutInMinutes,omitempty"`
	ClientToken              string        `json:"clientToken,omitempty"`
}

// UpdateResponse is the accepted reply to UpdateJobExecution.
type UpdateResponse struct {
	ExecutionState *JobExecutionState `json:"executionState,omitempty"`
	JobDocument    json.RawMessage    `json:"jobDocument,omitempty"`
	Timestamp      int64              `json:"timestamp"`
	ClientToken    string             `json:"clientToken,omitempty"`
}

// NotifyMessage is JobExecutionsChanged, published on the notify topic. Jobs
// maps IN_PROGRESS and QUEUED to their executions; it is empty (not absent)
// when nothing is pending.
type NotifyMessage struct {
	Timestamp int64                            `json:"timestamp"`
	Jobs      map[Status][]JobExecutionSummary `json:"jobs"`
}

// NotifyNextMessage is NextJobExecutionChanged, published on notify-next.
// Execution is nil when the thing has no pending execution left.
type NotifyNextMessage struct {
	Timestamp int64         `json:"timestamp"`
	Execution *JobExecution `json:"execution,omitempty"`
}

// ErrorCode is the code of a rejected reply.
type ErrorCode string

// Rejection codes of the Jobs device API.
const (
	CodeInvalidTopic           ErrorCode = "InvalidTopic"
	CodeInvalidJSON            ErrorCode = "InvalidJson"
	CodeInvalidRequest         ErrorCode = "InvalidRequest"
	CodeInvalidStateTransition ErrorCode = "InvalidStateTransition"
	CodeResourceNotFound       ErrorCode = "ResourceNotFound"
	CodeVersionMismatch        ErrorCode = "VersionMismatch"
	CodeInternalError          ErrorCode = "InternalError"
	CodeRequestThrottled       ErrorCode = "RequestThrottled"
	CodeTerminalStateReached   ErrorCode = "TerminalStateReached"
)

// ErrorResponse is the payload of every rejected reply. ExecutionState is
// present only with InvalidStateTransition and VersionMismatch.
type ErrorResponse struct {
	Code           ErrorCode          `json:"code"`
	Message        string             `json:"message"`
	ClientToken    string             `json:"clientToken,omitempty"`
	Timestamp      int64              `json:"timestamp"`
	ExecutionState *JobExecutionState `json:"executionState,omitempty"`
}

// Error makes a rejection usable as a Go error.
func (e *ErrorResponse) Error() string {
	return fmt.Sprintf("jobs request rejected: %s: %s", e.Code, e.Message)
}

// ErrMalformed is wrapped by every Decode error: the payload is not the JSON
// the message type requires.
var ErrMalformed = errors.New("malformed Jobs message")

// Decode parses a Jobs message payload into v (a pointer to one of this
// package's message types). An empty payload decodes as {} — AWS treats an
// empty request as one without fields. Errors wrap ErrMalformed and say which
// field was wrong.
func Decode(payload []byte, v any) error {
	if len(bytes.TrimSpace(payload)) == 0 {
		payload = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fmt.Errorf("%w: field %q: %v", ErrMalformed, te.Field, err)
		}
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON object", ErrMalformed)
	}
	return nil
}

// Encode renders a message as JSON.
func Encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only unsupported values fail, and every message type here is plain data.
		panic(fmt.Sprintf("iotjobs: encoding %T: %v", v, err))
	}
	return b
}

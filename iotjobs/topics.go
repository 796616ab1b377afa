package iotjobs

import (
	"fmt"
	"strings"
)

// NextJobID is the job id that names "the next pending execution" in
// DescribeJobExecution requests ($aws/things/T/jobs/$next/get).
const NextJobID = "$next"

// Operation names one device API of the Jobs service.
type Operation string

// The device-facing operations. The request topic of each is given next to it.
const (
	OpGetPending Operation = "get"        // jobs/get
	OpStartNext  Operation = "start-next" // jobs/start-next
	OpDescribe   Operation = "describe"   // jobs/{jobId}/get
	OpUpdate     Operation = "update"     // jobs/{jobId}/update
	OpNotify     Operation = "notify"     // jobs/notify (service → device)
	OpNotifyNext Operation = "notify-next"
)

// Reply distinguishes a request topic from its accepted and rejected replies.
type Reply string

// Reply kinds; ReplyNone is the request itself (or a notification).
const (
	ReplyNone     Reply = ""
	ReplyAccepted Reply = "accepted"
	ReplyRejected Reply = "rejected"
)

// Topic is a parsed Jobs topic.
type Topic struct {
	Thing string
	Op    Operation
	JobID string // for OpDescribe and OpUpdate
	Reply Reply
}

const (
	thingsPrefix = "$aws/things/"
	jobsSegment  = "/jobs/"
)

// String renders t as an MQTT topic name.
func (t Topic) String() string {
	var b strings.Builder
	b.WriteString(thingsPrefix)
	b.WriteString(t.Thing)
	b.WriteString(jobsSegment)
	switch t.Op {
	case OpGetPending:
		b.WriteString("get")
	case OpStartNext:
		b.WriteString("start-next")
	case OpDescribe:
		b.WriteString(t.JobID)
		b.WriteString("/get")
	case OpUpdate:
		b.WriteString(t.JobID)
		b.WriteString("/update")
	case OpNotify:
		b.WriteString("notify")
	case OpNotifyNext:
		b.WriteString("notify-next")
	}
	if t.Reply != ReplyNone {
		b.WriteByte('/')
		b.WriteString(string(t.Reply))
	}
	return b.String()
}

// Accepted returns the topic of t's accepted reply.
func (t Topic) Accepted() Topic { t.Reply = ReplyAccepted; return t }

// Rejected returns the topic of t's rejected reply.
func (t Topic) Rejected() Topic { t.Reply = ReplyRejected; return t }

// Request returns the request topic t replies to.
func (t Topic) Request() Topic { t.Reply = ReplyNone; return t }

// GetPendingTopic is the GetPendingJobExecutions request topic.
func GetPendingTopic(thing string) Topic { return Topic{Thing: thing, Op: OpGetPending} }

// StartNextTopic is the StartNextPendingJobExecution request topic.
func StartNextTopic(thing string) Topic { return Topic{Thing: thing, Op: OpStartNext} }

// DescribeTopic is the DescribeJobExecution request topic; jobID may be NextJobID.
func DescribeTopic(thing, jobID string) Topic {
	return Topic{Thing: thing, Op: OpDescribe, JobID: jobID}
}

// UpdateTopic is the UpdateJobExecution request topic.
func UpdateTopic(thing, jobID string) Topic {
	return Topic{Thing: thing, Op: OpUpdate, JobID: jobID}
}

// NotifyTopic is where the service publishes JobExecutionsChanged.
func NotifyTopic(thing string) Topic { return Topic{Thing: thing, Op: OpNotify} }

// NotifyNextTopic is where the service publishes NextJobExecutionChanged.
func NotifyNextTopic(thing string) Topic { return Topic{Thing: thing, Op: OpNotifyNext} }

// JobsFilter is the MQTT filter that covers every Jobs topic of a thing.
func JobsFilter(thing string) string { return thingsPrefix + thing + "/jobs/#" }

// ErrNotJobsTopic is returned by ParseTopic for a topic outside
// $aws/things/{thing}/jobs/.
var ErrNotJobsTopic = fmt.Errorf("not an AWS IoT Jobs topic")

// ErrUnknownJobsTopic is returned by ParseTopic for a topic inside the jobs
// namespace that names no Jobs API; the service answers it with InvalidTopic.
var ErrUnknownJobsTopic = fmt.Errorf("no such AWS IoT Jobs API")

// ParseTopic parses an MQTT topic name of the Jobs API. It returns
// ErrNotJobsTopic when the topic is outside any thing's jobs namespace and
// ErrUnknownJobsTopic (with the thing filled in) when it is inside the
// namespace but names no API.
func ParseTopic(name string) (Topic, error) {
	rest, ok := strings.CutPrefix(name, thingsPrefix)
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q does not start with %q", ErrNotJobsTopic, name, thingsPrefix)
	}
	thing, rest, ok := strings.Cut(rest, "/")
	if !ok || thing == "" {
		return Topic{}, fmt.Errorf("%w: %q has no thing name", ErrNotJobsTopic, name)
	}
	rest, ok = strings.CutPrefix(rest, "jobs/")
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q is not under %sjobs/", ErrNotJobsTopic, name, thingsPrefix+thing+"/")
	}
	t := Topic{Thing: thing}
	unknown := func() (Topic, error) {
		return Topic{Thing: thing}, fmt.Errorf("%w: %q", ErrUnknownJobsTopic, name)
	}
	parts := strings.Split(rest, "/")
	// Trailing accepted/rejected.
	if n := len(parts); n >= 2 {
		switch parts[n-1] {
		case string(ReplyAccepted):
			t.Reply = ReplyAccepted
			parts = parts[:n-1]
		case string(ReplyRejected):
			t.Reply = ReplyRejected
			parts = parts[:n-1]
		}
	}
	switch {
	case len(parts) == 1 && parts[0] == "get":
		t.Op = OpGetPending
	case len(parts) == 1 && parts[0] == "start-next":
		t.Op = OpStartNext
	case len(parts) == 1 && parts[0] == "notify" && t.Reply == ReplyNone:
		t.Op = OpNotify
	case len(parts) == 1 && parts[0] == "notify-next" && t.Reply == ReplyNone:
		t.Op = OpNotifyNext
	case len(parts) == 2 && parts[1] == "get" && parts[0] != "":
		t.Op, t.JobID = OpDescribe, parts[0]
	case len(parts) == 2 && parts[1] == "update" && parts[0] != "":
		t.Op, t.JobID = OpUpdate, parts[0]
	default:
		return unknown()
	}
	return t, nil
}

// DeviceFilters are the subscriptions a device needs for the Jobs API: its
// notifications and the replies to every request it makes. (On AWS replies
// reach the requester even without them; other brokers route by
// subscription.)
func DeviceFilters(thing string) []string {
	p := thingsPrefix + thing + "/jobs/"
	return []string{p + "notify", p + "notify-next", p + "+/get/+", p + "+/update/+", p + "get/+", p + "start-next/+"}
}

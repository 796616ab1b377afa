package jobsvc

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/iotjobs"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

type recorder struct {
	mu   sync.Mutex
	msgs []Message
}

func (r *recorder) Publish(m Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
}

// take returns and clears what was published.
func (r *recorder) take() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.msgs
	r.msgs = nil
	return m
}

type fixture struct {
	t   *testing.T
	s   *Service
	rec *recorder
	clk *clock.Fake
	db  *bolt.DB
	dir string
	cfg Config
	// last is what the last call sent.
	last []Message
}

// newFixture opens a service on a fake clock, with the JOB and
// JOB_EXECUTION events enabled; opts adjust its Config.
func newFixture(t *testing.T, opts ...func(*Config)) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{t: t, rec: &recorder{}, clk: clock.NewFake(t0), dir: dir}
	f.cfg = Config{Region: "us-east-1", AccountID: "000000000000", Clock: f.clk}
	for _, o := range opts {
		o(&f.cfg)
	}
	f.open()
	if err := f.s.UpdateEventConfigurations(map[string]bool{EventTypeJob: true, EventTypeJobExecution: true}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) open() {
	db, err := bolt.Open(filepath.Join(f.dir, "c.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { db.Close() })
	// Every test leaves the pending index as the executions say (runs
	// before the database closes).
	f.t.Cleanup(func() { checkPendingIndex(f.t, db) })
	s, err := Open(db, f.cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	s.SetPublisher(f.rec)
	f.s, f.db = s, db
}

func (f *fixture) job(id string, things ...string) {
	f.t.Helper()
	if _, err := f.s.CreateJob(JobSpec{JobID: id, Things: things, Document: []byte(`{"operation":"app_fw_update","n":"` + id + `"}`)}); err != nil {
		f.t.Fatal(err)
	}
}

// call publishes a device request and returns everything the service sent.
func (f *fixture) call(thing string, topic iotjobs.Topic, payload string) []Message {
	f.t.Helper()
	f.rec.take()
	f.s.HandleDevice(thing, thing, topic.String(), []byte(payload))
	f.last = f.rec.take()
	return f.last
}

// reply finds the message on topic and decodes it.
func find(t *testing.T, msgs []Message, topic iotjobs.Topic, v any) Message {
	t.Helper()
	for _, m := range msgs {
		if m.Topic == topic.String() {
			if v != nil {
				reflect.ValueOf(v).Elem().SetZero()
				if err := iotjobs.Decode(m.Payload, v); err != nil {
					t.Fatal(err)
				}
			}
			return m
		}
	}
	var got []string
	for _, m := range msgs {
		got = append(got, m.Topic)
	}
	t.Fatalf("no message on %s; got %v", topic, got)
	return Message{}
}

func has(msgs []Message, topic iotjobs.Topic) bool {
	for _, m := range msgs {
		if m.Topic == topic.String() {
			return true
		}
	}
	return false
}

func TestCreateJobNotifies(t *testing.T) {
	f := newFixture(t)
	f.job("fw-1", "dev-1", "dev-2")
	msgs := f.rec.take()
	for _, th := range []string{"dev-1", "dev-2"} {
		var nn iotjobs.NotifyNextMessage
		m := find(t, msgs, iotjobs.NotifyNextTopic(th), &nn)
		if m.ClientID != "" || nn.Execution == nil || nn.Execution.JobID != "fw-1" || nn.Execution.Status != iotjobs.StatusQueued ||
			nn.Execution.VersionNumber != 1 || !strings.Contains(string(nn.Execution.JobDocument), "app_fw_update") {
			t.Fatalf("notify-next %+v", nn.Execution)
		}
		var n iotjobs.NotifyMessage
		find(t, msgs, iotjobs.NotifyTopic(th), &n)
		if len(n.Jobs[iotjobs.StatusQueued]) != 1 {
			t.Fatalf("notify %+v", n)
		}
	}
	// A second job does not change dev-1's head: notify, but no notify-next.
	f.clk.Advance(time.Second)
	f.job("fw-2", "dev-1")
	msgs = f.rec.take()
	if has(msgs, iotjobs.NotifyNextTopic("dev-1")) {
		t.Fatal("notify-next sent although the head did not change")
	}
	var n iotjobs.NotifyMessage
	find(t, msgs, iotjobs.NotifyTopic("dev-1"), &n)
	if q := n.Jobs[iotjobs.StatusQueued]; len(q) != 2 || q[0].JobID != "fw-1" {
		t.Fatalf("notify %+v", n)
	}
	if _, err := f.s.CreateJob(JobSpec{JobID: "fw-1", Things: []string{"dev-1"}, Document: []byte(`{}`)}); !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
}

func TestCreateJobValidation(t *testing.T) {
	f := newFixture(t)
	cases := []JobSpec{
		{JobID: "bad id", Things: []string{"a"}, Document: []byte(`{}`)},
		{JobID: "j", Things: nil, Document: []byte(`{}`)},
		{JobID: "j", Things: []string{"a"}, Document: []byte(`[1]`)},
		{JobID: "j", Things: []string{"a", "a"}, Document: []byte(`{}`)},
		{JobID: "j", Things: []string{"a/b"}, Document: []byte(`{}`)},
		{JobID: "j", Things: []string{"a"}, Document: []byte(`{"x":"` + strings.Repeat("x", 33000) + `"}`)},
	}
	for _, c := range cases {
		if _, err := f.s.CreateJob(c); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", c.JobID, err)
		}
	}
}

func TestDeviceFlow(t *testing.T) {
	f := newFixture(t)
	f.job("fw-1", "dev-1")
	f.clk.Advance(time.Second)
	f.job("fw-2", "dev-1")

	// $next/get returns the oldest queued, with its document, to the requester only.
	var r iotjobs.ExecutionResponse
	m := find(t, f.call("dev-1", iotjobs.DescribeTopic("dev-1", "$next"), `{"clientToken":"t1"}`), iotjobs.DescribeTopic("dev-1", "$next").Accepted(), &r)
	if m.ClientID != "dev-1" || r.ClientToken != "t1" || r.Execution.JobID != "fw-1" || len(r.Execution.JobDocument) == 0 {
		t.Fatalf("$next: %+v %s", r.Execution, m.ClientID)
	}
	find(t, f.call("dev-1", iotjobs.DescribeTopic("dev-1", "fw-2"), `{"includeJobDocument":false}`), iotjobs.DescribeTopic("dev-1", "fw-2").Accepted(), &r)
	if r.Execution.JobID != "fw-2" || len(r.Execution.JobDocument) != 0 {
		t.Fatalf("describe without document: %+v", r.Execution)
	}

	// IN_PROGRESS, expectedVersion as the seed sends it (a string).
	f.clk.Advance(time.Second)
	msgs := f.call("dev-1", iotjobs.UpdateTopic("dev-1", "fw-1"), `{"status":"IN_PROGRESS","statusDetails":null,"expectedVersion":"1","clientToken":"t2","includeJobExecutionState":true}`)
	var ur iotjobs.UpdateResponse
	find(t, msgs, iotjobs.UpdateTopic("dev-1", "fw-1").Accepted(), &ur)
	if ur.ClientToken != "t2" || ur.ExecutionState == nil || ur.ExecutionState.VersionNumber != 2 || ur.ExecutionState.Status != iotjobs.StatusInProgress {
		t.Fatalf("update reply %+v", ur)
	}
	if has(msgs, iotjobs.NotifyNextTopic("dev-1")) {
		t.Fatal("notify-next on QUEUED→IN_PROGRESS of the head")
	}
	if !has(msgs, iotjobs.NotifyTopic("dev-1")) {
		t.Fatal("no notify on a status change")
	}
	if msgs[0].Topic != iotjobs.UpdateTopic("dev-1", "fw-1").Accepted().String() {
		t.Fatal("the reply must come before the notifications")
	}
	e, _ := f.s.DescribeExecution("fw-1", "dev-1")
	if !e.StartedAt.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("startedAt %v", e.StartedAt)
	}

	// IN_PROGRESS again with details: no notify (nothing in the pending set changed).
	msgs = f.call("dev-1", iotjobs.UpdateTopic("dev-1", "fw-1"), `{"status":"IN_PROGRESS","statusDetails":{"progress":"50"},"expectedVersion":2}`)
	find(t, msgs, iotjobs.UpdateTopic("dev-1", "fw-1").Accepted(), &ur)
	if ur.ExecutionState != nil {
		t.Fatal("executionState without includeJobExecutionState")
	}
	if has(msgs, iotjobs.NotifyTopic("dev-1")) || has(msgs, iotjobs.NotifyNextTopic("dev-1")) {
		t.Fatal("notification for a progress update")
	}
	// Omitted statusDetails keep the stored ones.
	f.call("dev-1", iotjobs.UpdateTopic("dev-1", "fw-1"), `{"status":"IN_PROGRESS","expectedVersion":3}`)
	if e, _ := f.s.DescribeExecution("fw-1", "dev-1"); e.StatusDetails["progress"] != "50" || e.VersionNumber != 4 {
		t.Fatalf("execution %+v", e)
	}

	// Wrong version.
	var rej iotjobs.ErrorResponse
	find(t, f.call("dev-1", iotjobs.UpdateTopic("dev-1", "fw-1"), `{"status":"SUCCEEDED","expectedVersion":2,"clientToken":"t3"}`), iotjobs.UpdateTopic("dev-1", "fw-1").Rejected(), &rej)
	if rej.Code != iotjobs.CodeVersionMismatch || rej.ClientToken != "t3" || rej.ExecutionState == nil || rej.ExecutionState.VersionNumber != 4 {
		t.Fatalf("rejection %+v", rej)
	}
	// REJECTED from IN_PROGRESS.
	find(t, f.call("dev-1", iotjobs.UpdateTopic("dev-1", "fw-1"), `{"status":"REJECTED"}`), iotjobs.UpdateTopic("dev-1", "fw-1").Rejected(), &rej)
	if rej.Code != iotjobs.CodeInvalidStateTransition || rej.ExecutionState == nil || rej.ExecutionState.Status != iotjobs.StatusInProgress {
		t.Fatalf("rejection %+v", rej)
	}

	// SUCCEEDED: the head moves to fw-2, the job completes.
	msgs = f.call("dev-1", iotjobs.UpdateTopic("dev-1", "fw-1"), `{"status":"SUCCEEDED","statusDetails":{"fwversion":"1.0.1"},"expectedVersion":4}`)
	find(t, msgs, iotjobs.UpdateTopic("dev-1", "fw-1").Accepted(), nil)
	var nn iotjobs.NotifyNextMessage
	find(t, msgs, iotjobs.NotifyNextTopic("dev-1"), &nn)
	if nn.Execution == nil || nn.Execution.JobID != "fw-2" {
		t.Fatalf("notify-next %+v", nn)
	}
	if j, _ := f.s.DescribeJob("fw-1"); j.Status != JobCompleted || j.CompletedAt.IsZero() {
		t.Fatalf("job %+v", j)
	}
	if j, _ := f.s.DescribeJob("fw-2"); j.Status != JobInProgress {
		t.Fatalf("job %+v", j)
	}
	// A terminal execution cannot change: InvalidStateTransition, with its state.
	find(t, f.call("dev-1", iotjobs.UpdateTopic("dev-1", "fw-1"), `{"status":"IN_PROGRESS"}`), iotjobs.UpdateTopic("dev-1", "fw-1").Rejected(), &rej)
	if rej.Code != iotjobs.CodeInvalidStateTransition || rej.ExecutionState == nil || rej.ExecutionState.Status != iotjobs.StatusSucceeded {
		t.Fatalf("rejection %+v", rej)
	}
	// REJECTED from QUEUED is fine; then nothing is pending.
	msgs = f.call("dev-1", iotjobs.UpdateTopic("dev-1", "fw-2"), `{"status":"REJECTED","statusDetails":{"reason":"unsupported_operation"}}`)
	find(t, msgs, iotjobs.NotifyNextTopic("dev-1"), &nn)
	if nn.Execution != nil {
		t.Fatalf("notify-next %+v", nn)
	}
	var n iotjobs.NotifyMessage
	m = find(t, msgs, iotjobs.NotifyTopic("dev-1"), &n)
	if string(m.Payload) != `{"timestamp":`+itoa(f.clk.Now().Unix())+`,"jobs":{}}` {
		t.Fatalf("empty notify %s", m.Payload)
	}
	find(t, f.call("dev-1", iotjobs.DescribeTopic("dev-1", "$next"), `{}`), iotjobs.DescribeTopic("dev-1", "$next").Accepted(), &r)
	if r.Execution != nil {
		t.Fatal("$next with nothing pending has an execution")
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestGetPendingAndStartNext(t *testing.T) {
	f := newFixture(t)
	var g iotjobs.GetPendingResponse
	find(t, f.call("dev-1", iotjobs.GetPendingTopic("dev-1"), ``), iotjobs.GetPendingTopic("dev-1").Accepted(), &g)
	if g.InProgressJobs == nil || g.QueuedJobs == nil || len(g.QueuedJobs) != 0 {
		t.Fatalf("empty get %+v", g)
	}
	var sn iotjobs.ExecutionResponse
	m := find(t, f.call("dev-1", iotjobs.StartNextTopic("dev-1"), `{"clientToken":"s0"}`), iotjobs.StartNextTopic("dev-1").Accepted(), &sn)
	if sn.Execution != nil || strings.Contains(string(m.Payload), "execution") {
		t.Fatalf("start-next with nothing: %s", m.Payload)
	}
	f.job("a", "dev-1")
	f.clk.Advance(time.Second)
	f.job("b", "dev-1")
	msgs := f.call("dev-1", iotjobs.StartNextTopic("dev-1"), `{"statusDetails":{"state":"starting"},"clientToken":"s1"}`)
	find(t, msgs, iotjobs.StartNextTopic("dev-1").Accepted(), &sn)
	if sn.Execution.JobID != "a" || sn.Execution.Status != iotjobs.StatusInProgress || sn.Execution.VersionNumber != 2 ||
		sn.Execution.StatusDetails["state"] != "starting" || len(sn.Execution.JobDocument) == 0 {
		t.Fatalf("start-next %+v", sn.Execution)
	}
	// Again: the IN_PROGRESS one comes back unchanged.
	find(t, f.call("dev-1", iotjobs.StartNextTopic("dev-1"), `{}`), iotjobs.StartNextTopic("dev-1").Accepted(), &sn)
	if sn.Execution.JobID != "a" || sn.Execution.VersionNumber != 2 {
		t.Fatalf("second start-next %+v", sn.Execution)
	}
	find(t, f.call("dev-1", iotjobs.GetPendingTopic("dev-1"), `{"clientToken":"g"}`), iotjobs.GetPendingTopic("dev-1").Accepted(), &g)
	if len(g.InProgressJobs) != 1 || g.InProgressJobs[0].JobID != "a" || len(g.QueuedJobs) != 1 || g.QueuedJobs[0].JobID != "b" || g.ClientToken != "g" {
		t.Fatalf("get %+v", g)
	}
}

func TestRejections(t *testing.T) {
	f := newFixture(t)
	f.job("fw-1", "dev-1")
	cases := []struct {
		topic   iotjobs.Topic
		payload string
		code    iotjobs.ErrorCode
	}{
		{iotjobs.UpdateTopic("dev-1", "fw-1"), `{"status":`, iotjobs.CodeInvalidJSON},
		{iotjobs.UpdateTopic("dev-1", "fw-1"), `{"status":5,"clientToken":"c"}`, iotjobs.CodeInvalidRequest},
		{iotjobs.UpdateTopic("dev-1", "fw-1"), `{"clientToken":"c"}`, iotjobs.CodeInvalidRequest},
		{iotjobs.UpdateTopic("dev-1", "fw-1"), `{"status":"QUEUED","clientToken":"c"}`, iotjobs.CodeInvalidRequest},
		{iotjobs.UpdateTopic("dev-1", "fw-1"), `{"status":"TIMED_OUT","clientToken":"c"}`, iotjobs.CodeInvalidRequest},
		{iotjobs.UpdateTopic("dev-1", "fw-1"), `{"status":"IN_PROGRESS","statusDetails":{"bad key":"v"},"clientToken":"c"}`, iotjobs.CodeInvalidRequest},
		{iotjobs.UpdateTopic("dev-1", "fw-1"), `{"status":"IN_PROGRESS","stepTimeoutInMinutes":0,"clientToken":"c"}`, iotjobs.CodeInvalidRequest},
		{iotjobs.UpdateTopic("dev-1", "fw-1"), `{"status":"IN_PROGRESS","executionNumber":2,"clientToken":"c"}`, iotjobs.CodeResourceNotFound},
		{iotjobs.UpdateTopic("dev-1", "nope"), `{"status":"IN_PROGRESS","clientToken":"c"}`, iotjobs.CodeResourceNotFound},
		{iotjobs.UpdateTopic("dev-1", "$next"), `{"status":"IN_PROGRESS","clientToken":"c"}`, iotjobs.CodeInvalidRequest},
		{iotjobs.DescribeTopic("dev-1", "nope"), `{"clientToken":"c"}`, iotjobs.CodeResourceNotFound},
		{iotjobs.DescribeTopic("dev-1", "fw-1"), `{"executionNumber":9,"clientToken":"c"}`, iotjobs.CodeResourceNotFound},
		{iotjobs.GetPendingTopic("dev-1"), `{"clientToken":"` + strings.Repeat("x", 65) + `"}`, iotjobs.CodeInvalidRequest},
	}
	for _, c := range cases {
		var rej iotjobs.ErrorResponse
		m := find(t, f.call("dev-1", c.topic, c.payload), c.topic.Rejected(), &rej)
		if rej.Code != c.code || rej.Message == "" || m.ClientID != "dev-1" {
			t.Errorf("%s %s: %+v", c.topic, c.payload, rej)
		}
		if strings.Contains(c.payload, `"clientToken":"c"`) && rej.ClientToken != "c" {
			t.Errorf("%s %s: token not echoed", c.topic, c.payload)
		}
	}
	if e, _ := f.s.DescribeExecution("fw-1", "dev-1"); e.VersionNumber != 1 || e.Status != iotjobs.StatusQueued {
		t.Fatalf("a rejected request changed the execution: %+v", e)
	}
	// Unknown API in the jobs namespace.
	f.rec.take()
	f.s.HandleDevice("dev-1", "dev-1", "$aws/things/dev-1/jobs/fw-1/delete", []byte(`{"clientToken":"z"}`))
	var rej iotjobs.ErrorResponse
	m := f.rec.take()
	if len(m) != 1 || m[0].Topic != "$aws/things/dev-1/jobs/fw-1/delete/rejected" {
		t.Fatalf("InvalidTopic reply %+v", m)
	}
	iotjobs.Decode(m[0].Payload, &rej)
	if rej.Code != iotjobs.CodeInvalidTopic || rej.ClientToken != "z" {
		t.Fatal(rej)
	}
	// Another thing's topic, and replies published by a client, are ignored.
	if msgs := f.call("dev-1", iotjobs.GetPendingTopic("dev-2"), `{}`); len(msgs) != 0 {
		t.Fatalf("served another thing's topic: %v", msgs)
	}
	if msgs := f.call("dev-1", iotjobs.GetPendingTopic("dev-1").Accepted(), `{}`); len(msgs) != 0 {
		t.Fatal("answered a reply topic")
	}
}

func TestPersistence(t *testing.T) {
	f := newFixture(t)
	f.job("fw-1", "dev-1", "dev-2")
	f.call("dev-1", iotjobs.UpdateTopic("dev-1", "fw-1"), `{"status":"SUCCEEDED"}`)
	f.db.Close()
	f.open()
	execs, err := f.s.ListExecutionsForJob("fw-1")
	if err != nil || len(execs) != 2 || execs[0].Status != iotjobs.StatusSucceeded || execs[1].Status != iotjobs.StatusQueued {
		t.Fatalf("after reopen %+v %v", execs, err)
	}
	jobs, _ := f.s.ListJobs()
	if len(jobs) != 1 || jobs[0].ARN != "arn:aws:iot:us-east-1:000000000000:job/fw-1" {
		t.Fatalf("jobs %+v", jobs)
	}
	th, _ := f.s.ListExecutionsForThing("dev-2")
	if len(th) != 1 {
		t.Fatal(th)
	}
	if _, err := f.s.ListExecutionsForJob("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := f.s.DescribeJob("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

func TestNextOrdering(t *testing.T) {
	ex := func(id string, st iotjobs.Status, q int, seq uint64) Execution {
		return Execution{JobID: id, Status: st, QueuedAt: t0.Add(time.Duration(q) * time.Second), Seq: seq}
	}
	cases := []struct {
		execs []Execution
		want  string
	}{
		{nil, ""},
		{[]Execution{ex("a", iotjobs.StatusSucceeded, 0, 1)}, ""},
		{[]Execution{ex("a", iotjobs.StatusQueued, 5, 1), ex("b", iotjobs.StatusQueued, 3, 2)}, "b"},
		{[]Execution{ex("a", iotjobs.StatusQueued, 1, 1), ex("b", iotjobs.StatusInProgress, 3, 2)}, "b"},
		{[]Execution{ex("a", iotjobs.StatusQueued, 1, 2), ex("b", iotjobs.StatusQueued, 1, 1)}, "b"},
	}
	for i, c := range cases {
		got := ""
		if h := next(c.execs); h != nil {
			got = h.JobID
		}
		if got != c.want {
			t.Errorf("case %d: next = %q, want %q", i, got, c.want)
		}
	}
	many := make([]Execution, 15)
	for i := range many {
		many[i] = ex(string(rune('a'+i)), iotjobs.StatusQueued, i, uint64(i))
	}
	if n := notifyMessage(many, t0); len(n.Jobs[iotjobs.StatusQueued]) != MaxNotifyJobs {
		t.Fatalf("notify lists %d", len(n.Jobs[iotjobs.StatusQueued]))
	}
}

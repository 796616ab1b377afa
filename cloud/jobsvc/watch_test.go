package jobsvc

import (
	"errors"
	"testing"
	"time"

	"github.com/awsfota/awsfota/iotjobs"
	bolt "go.etcd.io/bbolt"
)

func TestWatchSeesEveryChangeInOrder(t *testing.T) {
	f := newFixture(t)
	w := f.s.Watch(0)
	defer w.Close()
	f.create(JobSpec{JobID: "j", Things: []string{"d1"}})
	f.update("d1", "j", `{"status":"SUCCEEDED"}`)
	var got []Change
	for len(got) < 4 {
		select {
		case c := <-w.C:
			got = append(got, c)
		case <-time.After(10 * time.Second):
			t.Fatalf("changes so far: %+v", got)
		}
	}
	// Creation: the job and its execution; the update: the execution, then
	// the job completed.
	want := []struct {
		kind   ChangeKind
		status string
	}{{ChangeJob, "IN_PROGRESS"}, {ChangeExecution, "QUEUED"}, {ChangeExecution, "SUCCEEDED"}, {ChangeJob, "COMPLETED"}}
	for i, c := range got {
		status := ""
		if c.Job != nil {
			status = string(c.Job.Status)
		} else {
			status = string(c.Execution.Status)
		}
		if c.Seq != uint64(i+1) || c.Kind != want[i].kind || status != want[i].status || c.At.IsZero() {
			t.Fatalf("change %d: %+v (status %s), want %+v", i, c, status, want[i])
		}
	}
	if f.s.LastSeq() != 4 {
		t.Fatal(f.s.LastSeq())
	}
	// A deletion: the execution and the job, marked deleted.
	f.s.DeleteJob("j", false)
	<-w.C // DELETION_IN_PROGRESS
	f.tick(DefaultDeletionDelay)
	e, j := <-w.C, <-w.C
	if e.Kind != ChangeExecution || !e.Deleted || e.Execution.Thing != "d1" || j.Kind != ChangeJob || !j.Deleted || j.Job.ID != "j" || j.Seq != 7 {
		t.Fatalf("%+v %+v", e, j)
	}
	// The numbers go on across a restart.
	f.db.Close()
	f.open()
	w2 := f.s.Watch(1)
	defer w2.Close()
	f.create(JobSpec{JobID: "k", Things: []string{"d1"}})
	if c := <-w2.C; c.Seq != 8 {
		t.Fatalf("%+v", c)
	}
}

func TestWatcherThatFallsBehindIsClosed(t *testing.T) {
	f := newFixture(t)
	w := f.s.Watch(1)
	f.create(JobSpec{JobID: "j", Things: []string{"d1", "d2"}})
	// Three changes into a buffer of one: the watcher is dropped, the
	// service carries on.
	n := 0
	for range w.C {
		n++
	}
	if n != 1 || !errors.Is(w.Err(), ErrWatchLagged) {
		t.Fatal(n, w.Err())
	}
	w.Close() // harmless after the service closed it
	if e := f.exec("j", "d2"); e.Status != iotjobs.StatusQueued {
		t.Fatal(e)
	}
}

func TestLimiter(t *testing.T) {
	if l := newLimiter(0, 5); l != nil || !l.allow("x", t0) {
		t.Fatal("a zero rate must not limit")
	}
	l := newLimiter(2, 0) // burst defaults to the rate
	at := t0
	if got := allowed(l, "a", at, 3); got != 2 {
		t.Fatalf("burst of 2: %d of 3 allowed", got)
	}
	if !l.allow("b", at) {
		t.Fatal("things share a bucket")
	}
	if l.allow("a", at.Add(400*time.Millisecond)) {
		t.Fatal("refilled too fast")
	}
	if !l.allow("a", at.Add(500*time.Millisecond)) {
		t.Fatal("not refilled at the rate")
	}
	if got := allowed(l, "a", at.Add(time.Hour), 3); got != 2 {
		t.Fatalf("refill above the burst: %d of 3 allowed", got)
	}
}

// allowed asks the limiter n times for thing at one instant and counts the
// requests it allows.
func allowed(l *limiter, thing string, at time.Time, n int) int {
	k := 0
	for range n {
		if l.allow(thing, at) {
			k++
		}
	}
	return k
}

func TestDocumentKeptExactly(t *testing.T) {
	f := newFixture(t)
	doc := "{ \"operation\" : \"app_fw_update\",\n\t\"n\": 1.0 }"
	f.create(JobSpec{JobID: "j", Things: []string{"d1"}, Document: []byte(doc)})
	if d, _ := f.s.JobDocument("j"); d != doc {
		t.Fatalf("%q", d)
	}
	// Devices get it as a JSON value.
	if x := f.describe("d1", "j", `{}`); string(x.JobDocument) != `{"operation":"app_fw_update","n":1.0}` {
		t.Fatalf("%s", x.JobDocument)
	}
	// A job stored by an earlier version (compacted, under "document") is
	// read.
	if err := f.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJobs).Put([]byte("old"), []byte(`{"jobId":"old","status":"COMPLETED","targets":[],"targetThings":["d1"],"document":{"a":1}}`))
	}); err != nil {
		t.Fatal(err)
	}
	if d, err := f.s.JobDocument("old"); err != nil || d != `{"a":1}` {
		t.Fatalf("%q %v", d, err)
	}
}

func TestEventsOffByDefault(t *testing.T) {
	f := newFixture(t)
	if err := f.s.UpdateEventConfigurations(map[string]bool{EventTypeJob: false, EventTypeJobExecution: false}); err != nil {
		t.Fatal(err)
	}
	f.create(JobSpec{JobID: "j", Things: []string{"d1"}})
	msgs := f.call("d1", iotjobs.UpdateTopic("d1", "j"), `{"status":"SUCCEEDED"}`)
	for _, m := range msgs {
		if len(m.Topic) > 11 && m.Topic[:11] == "$aws/events" {
			t.Fatalf("event %s while events are off", m.Topic)
		}
	}
	// Only JOB on: job events without execution events; the setting
	// survives a restart.
	f.s.UpdateEventConfigurations(map[string]bool{EventTypeJob: true})
	f.db.Close()
	f.open()
	f.create(JobSpec{JobID: "k", Things: []string{"d1"}})
	msgs = f.call("d1", iotjobs.UpdateTopic("d1", "k"), `{"status":"SUCCEEDED"}`)
	if !hasTopic(msgs, "$aws/events/job/k/completed") || hasTopic(msgs, "$aws/events/jobExecution/k/succeeded") {
		t.Fatal(topics(msgs))
	}
	c, _ := f.s.EventConfigurations()
	if !c.Enabled[EventTypeJob] || c.Enabled[EventTypeJobExecution] || len(c.Enabled) != len(EventTypes) || c.CreationDate.IsZero() {
		t.Fatalf("%+v", c)
	}
	if err := f.s.UpdateEventConfigurations(map[string]bool{"JOBS": true}); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
}

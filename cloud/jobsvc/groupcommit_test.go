package jobsvc

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/awsfota/awsfota/iotjobs"
	bolt "go.etcd.io/bbolt"
)

// txid is the id of the last committed write transaction: it grows by one
// per commit.
func txid(t *testing.T, db *bolt.DB) int {
	t.Helper()
	var id int
	if err := db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestGroupCommit: device requests that arrive while a commit is under way
// are committed together, in one transaction; each gets the answer it would
// have had alone — including one rejected in the middle of the batch, whose
// change is not kept — and no reply goes out before the commit.
func TestGroupCommit(t *testing.T) {
	f := newFixture(t)
	const n = 40
	things := make([]string, n)
	for i := range things {
		things[i] = fmt.Sprintf("thing-%02d", i)
	}
	f.create(JobSpec{JobID: "j", Things: things})
	f.rec.take()
	before := txid(t, f.db)

	// Hold the service's lock as a long commit would: the first request
	// leads and waits for it, the others queue behind it.
	f.s.mu.Lock()
	type answer struct {
		resp any
		rej  *iotjobs.ErrorResponse
		err  error
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i, th := range things {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := &iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress, ExpectedVersion: iotjobs.Ptr(int64(1))}
			if i == n/2 {
				req.ExpectedVersion = iotjobs.Ptr(int64(7)) // wrong: VersionMismatch
			}
			resp, rej, err := f.s.DeviceRequest(th, "j", req)
			answers[i] = answer{resp, rej, err}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.s.groupMu.Lock()
		queued := len(f.s.pending)
		f.s.groupMu.Unlock()
		if queued == n {
			break
		}
		if time.Now().After(deadline) {
			f.s.mu.Unlock()
			t.Fatalf("only %d of %d requests queued", queued, n)
		}
		time.Sleep(time.Millisecond) // polling with a deadline, not synchronising
	}
	if got := f.rec.take(); len(got) != 0 {
		t.Errorf("%d messages went out before the commit", len(got))
	}
	f.s.mu.Unlock()
	wg.Wait()

	for i, a := range answers {
		switch {
		case a.err != nil:
			t.Errorf("%s: %v", things[i], a.err)
		case i == n/2:
			if a.rej == nil || a.rej.Code != iotjobs.CodeVersionMismatch {
				t.Errorf("%s (wrong expectedVersion): rejection %+v, want VersionMismatch", things[i], a.rej)
			}
			if got := f.exec("j", things[i]).Status; got != iotjobs.StatusQueued {
				t.Errorf("%s: the rejected update left the execution %s", things[i], got)
			}
		default:
			if a.rej != nil {
				t.Errorf("%s: rejected: %+v", things[i], a.rej)
			}
			if got := f.exec("j", things[i]); got.Status != iotjobs.StatusInProgress || got.VersionNumber != 2 {
				t.Errorf("%s: execution %s version %d, want IN_PROGRESS version 2", things[i], got.Status, got.VersionNumber)
			}
		}
	}
	// One batch, replayed around the rejection: the requests before it,
	// the rejection (rolled back: no commit), the requests after it.
	if commits := txid(t, f.db) - before; commits > 3 {
		t.Errorf("%d requests took %d commits; want them grouped (at most 3)", n, commits)
	}
}

// TestReadsAreNotCommitted: get-pending and describe are answered from a
// read transaction (no commit, no fsync), with the answers a commit would
// give; while a commit is under way (it holds the service's lock) no such
// reply goes out, so replies and notifications keep their order.
func TestReadsAreNotCommitted(t *testing.T) {
	f := newFixture(t)
	things := []string{"thing-a", "thing-b", "thing-c"}
	f.create(JobSpec{JobID: "j", Things: things})
	f.rec.take()
	before := txid(t, f.db)
	for _, th := range things {
		resp, rej, err := f.s.DeviceRequest(th, "", &iotjobs.GetPendingRequest{ClientToken: "p"})
		if err != nil || rej != nil {
			t.Fatalf("%s: get pending: %v %+v", th, err, rej)
		}
		if q := resp.(iotjobs.GetPendingResponse).QueuedJobs; len(q) != 1 || q[0].JobID != "j" {
			t.Errorf("%s: queued %+v, want j", th, q)
		}
		resp, rej, err = f.s.DeviceRequest(th, "$next", &iotjobs.DescribeRequest{})
		if err != nil || rej != nil {
			t.Fatalf("%s: describe $next: %v %+v", th, err, rej)
		}
		if e := resp.(iotjobs.ExecutionResponse).Execution; e == nil || e.JobID != "j" || e.Status != iotjobs.StatusQueued {
			t.Errorf("%s: describe $next gave %+v, want j QUEUED", th, e)
		}
		if _, rej, _ = f.s.DeviceRequest(th, "nope", &iotjobs.DescribeRequest{}); rej == nil || rej.Code != iotjobs.CodeResourceNotFound {
			t.Errorf("%s: describe of no job: %+v, want ResourceNotFound", th, rej)
		}
	}
	if commits := txid(t, f.db) - before; commits != 0 {
		t.Errorf("%d reads took %d commits; want none", 3*len(things), commits)
	}

	// A commit under way: the reply waits for it.
	f.s.mu.Lock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.s.HandleDevice("thing-a", "thing-a", "$aws/things/thing-a/jobs/get", []byte(`{"clientToken":"q"}`))
	}()
	select {
	case <-done:
		f.s.mu.Unlock()
		t.Fatal("a read was answered while a commit held the service")
	case <-time.After(50 * time.Millisecond): // a bound on a wrong early answer, not synchronisation
	}
	if got := f.rec.take(); len(got) != 0 {
		t.Errorf("%d messages went out during the commit", len(got))
	}
	f.s.mu.Unlock()
	<-done
	got := f.rec.take()
	if len(got) != 1 || got[0].Topic != "$aws/things/thing-a/jobs/get/accepted" || got[0].ClientID != "thing-a" {
		t.Fatalf("reply %+v, want one get/accepted to thing-a", got)
	}

	// An operation that writes falls back to a commit.
	n := txid(t, f.db)
	_, rej, err := f.s.run(func(x *txn) (any, *iotjobs.ErrorResponse, error) {
		return nil, nil, x.tx.Bucket(bucketConfig).Put([]byte("read-test"), []byte("x"))
	}, nil, readOnly)
	if err != nil || rej != nil {
		t.Fatalf("a writing op run as read-only: %v %+v", err, rej)
	}
	if commits := txid(t, f.db) - n; commits != 1 {
		t.Errorf("a writing op took %d commits, want 1", commits)
	}
	f.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketConfig).Get([]byte("read-test")); string(v) != "x" {
			t.Errorf("the write was not kept: %q", v)
		}
		return nil
	})
}

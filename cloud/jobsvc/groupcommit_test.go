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

package jobsvc

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/awsfota/awsfota/iotjobs"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// checkPendingIndex fails t unless bucketPending names exactly the stored
// executions that are QUEUED or IN_PROGRESS.
func checkPendingIndex(t *testing.T, db *bolt.DB) {
	t.Helper()
	var want, got []string
	damaged := map[string]bool{} // records a test broke on purpose
	err := db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketExecs).ForEach(func(k, v []byte) error {
			var e Execution
			if err := json.Unmarshal(v, &e); err != nil {
				damaged[string(k)] = true
				return nil
			}
			if isPending(e.Status) {
				want = append(want, string(k))
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketPending).ForEach(func(k, _ []byte) error {
			if !damaged[string(k)] {
				got = append(got, string(k))
			}
			return nil
		})
	})
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return // the test closed it (and reopened the file as another DB)
	}
	if err != nil {
		t.Errorf("reading the pending index: %v", err)
		return
	}
	if !slices.Equal(got, want) {
		t.Errorf("the pending index names %q; the pending executions are %q", got, want)
	}
}

// A data directory from before the index gets it when the service opens.
func TestPendingIndexBuiltOnOpen(t *testing.T) {
	f := newFixture(t)
	f.create(JobSpec{JobID: "old", Things: []string{"d1", "d2"}})
	f.update("d1", "old", `{"status":"SUCCEEDED"}`)
	f.create(JobSpec{JobID: "new", Things: []string{"d1"}})
	if err := f.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketPending) }); err != nil {
		t.Fatal(err)
	}
	f.db.Close()
	f.open()
	resp, rej, err := f.s.DeviceRequest("d1", "", &iotjobs.GetPendingRequest{})
	if err != nil || rej != nil {
		t.Fatal(err, rej)
	}
	if q := resp.(iotjobs.GetPendingResponse).QueuedJobs; len(q) != 1 || q[0].JobID != "new" {
		t.Fatalf("d1's queued jobs %+v after the index was rebuilt, want new", q)
	}
	checkPendingIndex(t, f.db)
}

// BenchmarkGetPendingWithHistory is a device's get-pending, what it asks
// every time it connects, on a thing that has finished 200 jobs: its cost
// must not grow with them.
func BenchmarkGetPendingWithHistory(b *testing.B) {
	f := newFixture(&testing.T{})
	for i := range 200 {
		id := fmt.Sprintf("done-%03d", i)
		f.create(JobSpec{JobID: id, Things: []string{"d1"}})
		f.update("d1", id, `{"status":"SUCCEEDED"}`)
	}
	f.create(JobSpec{JobID: "next", Things: []string{"d1"}})
	b.ReportAllocs()
	for b.Loop() {
		resp, rej, err := f.s.DeviceRequest("d1", "", &iotjobs.GetPendingRequest{})
		if err != nil || rej != nil || len(resp.(iotjobs.GetPendingResponse).QueuedJobs) != 1 {
			b.Fatal(err, rej, resp)
		}
	}
}

// Deleting a pending execution whose job ran on the thing before leaves
// the earlier, finished execution in its place, and not pending.
func TestPendingIndexAfterDeletingARetry(t *testing.T) {
	f := newFixture(t)
	f.create(JobSpec{JobID: "j", Things: []string{"d1"}, Retry: &RetryConfig{CriteriaList: []RetryCriteria{{FailureType: FailureFailed, NumberOfRetries: 1}}}})
	f.startNext("d1", `{}`)
	f.update("d1", "j", `{"status":"FAILED"}`)
	f.startNext("d1", `{}`) // the retry, execution 2, IN_PROGRESS
	if err := f.s.DeleteExecution("j", "d1", 2, true); err != nil {
		t.Fatal(err)
	}
	if e := f.exec("j", "d1"); e.ExecutionNumber != 1 || e.Status != iotjobs.StatusFailed {
		t.Fatalf("latest execution %+v, want number 1 FAILED", e)
	}
	resp, rej, err := f.s.DeviceRequest("d1", "", &iotjobs.GetPendingRequest{})
	if err != nil || rej != nil {
		t.Fatal(err, rej)
	}
	if r := resp.(iotjobs.GetPendingResponse); len(r.InProgressJobs)+len(r.QueuedJobs) != 0 {
		t.Fatalf("pending %+v, want none", r)
	}
	checkPendingIndex(t, f.db)
}

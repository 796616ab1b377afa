package jobsvc

import (
	"encoding/binary"
	"errors"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The change stream: every committed change of a job or an execution, in
// commit order, numbered. It is meant for an in-process console (or a
// test) that shows the fleet live without polling.
//
// A consumer calls Watch, then reads the state it shows (ListJobs,
// ListExecutionsForJob, ...), then applies each Change it receives: a
// Change carries the whole new state of the job or execution, so applying
// one that the read already reflected changes nothing.

// ChangeKind says what a Change is about.
type ChangeKind string

// Change kinds.
const (
	ChangeJob       ChangeKind = "job"
	ChangeExecution ChangeKind = "execution"
)

// Change is one committed change.
type Change struct {
	// Seq numbers changes from 1, without gaps, across restarts: a
	// consumer that sees a gap missed changes (see ErrWatchLagged).
	Seq  uint64
	At   time.Time
	Kind ChangeKind
	// Job is the job as the change left it (Kind ChangeJob): created,
	// updated, its status changed, or (Deleted) its last state.
	Job *Job
	// Execution is the execution as the change left it (Kind
	// ChangeExecution), or (Deleted) its last state. An execution is
	// identified by JobID, Thing and ExecutionNumber.
	Execution *Execution
	// Deleted: the job or execution no longer exists.
	Deleted bool
}

// ErrWatchLagged: a watcher did not keep up; its channel was closed.
// Watch again and re-read the state.
var ErrWatchLagged = errors.New("jobsvc: the watcher fell behind and was closed; watch again and re-read the state")

// DefaultWatchBuffer is Watch's buffer when none is given.
const DefaultWatchBuffer = 1024

// Watcher receives changes on C until Close, or until it falls behind by
// more than its buffer (then C is closed and Err returns ErrWatchLagged).
type Watcher struct {
	C <-chan Change

	s   *Service
	c   chan Change
	err error // set, under s.watchMu, when C is closed for lagging
}

// Watch starts a watcher whose channel holds up to buffer changes (0:
// DefaultWatchBuffer). Delivery never blocks the service: a watcher that
// lets its buffer fill is closed with ErrWatchLagged. Close it when done.
func (s *Service) Watch(buffer int) *Watcher {
	if buffer <= 0 {
		buffer = DefaultWatchBuffer
	}
	c := make(chan Change, buffer)
	w := &Watcher{C: c, s: s, c: c}
	s.watchMu.Lock()
	s.watchers[w] = true
	s.watchMu.Unlock()
	return w
}

// Close stops the watcher and closes C (if it is not closed already).
func (w *Watcher) Close() {
	w.s.watchMu.Lock()
	defer w.s.watchMu.Unlock()
	if w.s.watchers[w] {
		delete(w.s.watchers, w)
		close(w.c)
	}
}

// Err returns ErrWatchLagged after the watcher was closed for falling
// behind, nil otherwise.
func (w *Watcher) Err() error {
	w.s.watchMu.Lock()
	defer w.s.watchMu.Unlock()
	return w.err
}

// LastSeq returns the number of the last committed change (0: none yet).
func (s *Service) LastSeq() uint64 {
	var n uint64
	s.db.View(func(tx *bolt.Tx) error {
		n = readSeq(tx)
		return nil
	})
	return n
}

var keySeq = []byte("changeSeq")

func readSeq(tx *bolt.Tx) uint64 {
	if b := tx.Bucket(bucketConfig).Get(keySeq); len(b) == 8 {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// changeLog collects a transaction's changes: one per job and one per
// execution (its last state), in the order they were first changed.
type changeLog struct {
	order []string
	byKey map[string]*Change
}

func (l *changeLog) add(key string, c Change) {
	if l.byKey == nil {
		l.byKey = map[string]*Change{}
	}
	if old, ok := l.byKey[key]; ok {
		*old = c
		return
	}
	l.order = append(l.order, key)
	l.byKey[key] = &c
}

func (t *txn) jobChanged(j *Job, deleted bool) {
	cp := *j
	t.changes.add("j\x00"+j.ID, Change{Kind: ChangeJob, Job: &cp, Deleted: deleted})
}

func (t *txn) execChanged(e Execution, deleted bool) {
	t.changes.add("e\x00"+e.Thing+"\x00"+e.JobID+"\x00"+strconv.FormatInt(e.ExecutionNumber, 10),
		Change{Kind: ChangeExecution, Execution: &e, Deleted: deleted})
}

// numberChanges gives the transaction's changes their numbers, stored with
// the transaction.
func (t *txn) numberChanges() ([]Change, error) {
	if len(t.changes.order) == 0 {
		return nil, nil
	}
	seq := readSeq(t.tx)
	out := make([]Change, 0, len(t.changes.order))
	for _, k := range t.changes.order {
		c := *t.changes.byKey[k]
		seq++
		c.Seq, c.At = seq, t.now
		out = append(out, c)
	}
	return out, t.tx.Bucket(bucketConfig).Put(keySeq, binary.BigEndian.AppendUint64(nil, seq))
}

// deliver hands committed changes to the watchers. The caller holds s.mu,
// so that changes arrive in commit order.
func (s *Service) deliver(changes []Change) {
	if len(changes) == 0 {
		return
	}
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for w := range s.watchers {
		for _, c := range changes {
			select {
			case w.c <- c:
				continue
			default:
			}
			w.err = ErrWatchLagged
			delete(s.watchers, w)
			close(w.c)
			break
		}
	}
}

package jobsvc

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Change is one committed change of the service's state, as Subscribe
// delivers it: an execution that changed (Thing is set) or a job that did
// (Thing is empty). Its values are the service's own and must not be
// modified.
type Change struct {
	JobID string
	// Thing names the thing whose execution of the job changed; empty for a
	// change of the job itself (created, canceled, completed, deleted, or its
	// counts moved).
	Thing string
	// Execution is the execution after the change (the latest one of the job
	// on Thing: a retry replaces a failure); nil when it was deleted.
	Execution *Execution
	// Job is the job after a job change; nil when the job was deleted.
	Job *Job
	// Counts are the job's execution counts by status after a job change.
	Counts Counts
}

// watchers are the subscriptions to the service's changes.
type watchers struct {
	mu   sync.Mutex
	subs map[*watcher]struct{}
	n    atomic.Int32 // len(subs), read without the lock by commit
}

type watcher struct {
	ch     chan Change
	closed bool
}

// Subscribe returns a channel that receives every change committed after
// Subscribe returns, in commit order, and a function that ends the
// subscription. The service never waits for a subscriber: one that lets more
// than buffer changes pile up is dropped — its channel is closed, as it is
// by cancel — and should re-read what it shows and subscribe again. Changes
// are sent after the commit, before the method that made them returns.
func (s *Service) Subscribe(buffer int) (<-chan Change, func()) {
	w := &watcher{ch: make(chan Change, max(buffer, 1))}
	s.watch.mu.Lock()
	if s.watch.subs == nil {
		s.watch.subs = map[*watcher]struct{}{}
	}
	s.watch.subs[w] = struct{}{}
	s.watch.n.Store(int32(len(s.watch.subs)))
	s.watch.mu.Unlock()
	return w.ch, func() {
		s.watch.mu.Lock()
		defer s.watch.mu.Unlock()
		s.watch.drop(w)
	}
}

// drop ends a subscription; the caller holds mu.
func (ws *watchers) drop(w *watcher) {
	if w.closed {
		return
	}
	w.closed = true
	close(w.ch)
	delete(ws.subs, w)
	ws.n.Store(int32(len(ws.subs)))
}

// recordExec notes a changed (or, with e nil, deleted) execution for the
// subscribers. It is called for every write of an execution in a
// transaction.
func (t *txn) recordExec(jobID, thing string, e *Execution) {
	if t.s.watch.n.Load() == 0 {
		return
	}
	var c *Execution
	if e != nil {
		cp := *e
		cp.StatusDetails = maps.Clone(e.StatusDetails)
		cp.Retries = maps.Clone(e.Retries)
		c = &cp
	}
	t.changes = append(t.changes, Change{JobID: jobID, Thing: thing, Execution: c})
}

// collectJobs adds a change for every job the transaction touched — whose
// record, counts or executions it wrote — with the job as it now is in the
// transaction (nil when it was deleted). It runs in the transaction, after
// the last write.
func (t *txn) collectJobs() {
	if t.s.watch.n.Load() == 0 {
		return
	}
	seen := map[string]bool{}
	var ids []string
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, c := range t.changes {
		add(c.JobID)
	}
	for id := range t.dirtyJobs {
		add(id)
	}
	for id := range t.dirtyState {
		add(id)
	}
	for _, id := range ids {
		c := Change{JobID: id}
		if t.tx.Bucket(bucketJobs).Get([]byte(id)) != nil {
			if j, ok := t.job(id); ok {
				cp := *j
				c.Job = &cp
			}
			if st, err := t.state(id); err == nil {
				c.Counts = maps.Clone(st.Counts)
			}
		}
		t.changes = append(t.changes, c)
	}
}

// broadcast hands a committed transaction's changes to the subscribers.
// The caller holds s.mu, so that changes go out in commit order.
func (s *Service) broadcast(changes []Change) {
	if len(changes) == 0 {
		return
	}
	s.watch.mu.Lock()
	defer s.watch.mu.Unlock()
	for w := range s.watch.subs {
		for _, c := range changes {
			select {
			case w.ch <- c:
			default:
				s.log.Warn("a subscriber to the Jobs service's changes fell behind; dropping it")
				s.watch.drop(w)
			}
			if w.closed {
				break
			}
		}
	}
}

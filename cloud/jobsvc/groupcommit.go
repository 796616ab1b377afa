package jobsvc

import (
	bolt "go.etcd.io/bbolt"
)

// Group commit. Every state change is made durable (bbolt fsyncs each
// commit) before any message about it goes out, and a commit costs two
// fsyncs whatever it holds: one request per commit caps a fleet at a few
// hundred requests a second on an ordinary disk. So requests that arrive
// while a commit is being made wait, and the next commit holds them all:
// each still runs alone, in arrival order, with its own txn (settled and
// flushed before the next one starts, so it sees what they changed), and
// nothing of any of them is published before the one fsync that covers them
// all. The result is the same as committing them one by one.
//
// A request that fails (a rejection rolls its transaction back) cannot be
// undone inside a shared bbolt transaction: the batch is then abandoned and
// replayed as the requests before it (together), the failing one alone,
// and the requests after it (together again). Requests change nothing but
// their transaction until it commits, so replaying them is safe.
//
// The first request that finds no commit under way leads: it commits the
// batch, then hands the lead to the oldest request that arrived meanwhile,
// so that no goroutine runs for the service and no caller commits forever.

// groupCall is one request waiting for a group commit.
type groupCall struct {
	f    func(t *txn) error
	err  error
	done chan bool // true: lead the next batch; false: committed, err is the result
}

// commitGrouped commits f with the requests that arrive at the same time
// (see above) and returns its result, as commit would. The caller must not
// hold s.mu.
func (s *Service) commitGrouped(f func(t *txn) error) error {
	c := &groupCall{f: f, done: make(chan bool, 1)}
	s.groupMu.Lock()
	s.pending = append(s.pending, c)
	lead := !s.leading
	s.leading = true
	s.groupMu.Unlock()
	if !lead && !<-c.done {
		return c.err
	}
	// The batch is taken once the lock is ours: what arrives while another
	// commit holds it joins.
	s.mu.Lock()
	s.groupMu.Lock()
	batch := s.pending
	s.pending = nil
	s.groupMu.Unlock()
	s.commitBatch(batch)
	s.mu.Unlock()

	s.groupMu.Lock()
	if len(s.pending) > 0 {
		s.pending[0].done <- true
	} else {
		s.leading = false
	}
	s.groupMu.Unlock()
	for _, o := range batch {
		if o != c {
			o.done <- false
		}
	}
	return c.err
}

// commitBatch commits the calls in one transaction, or replays them as
// described above when one fails, setting each call's err. The caller
// holds s.mu.
func (s *Service) commitBatch(batch []*groupCall) {
	for len(batch) > 0 {
		if len(batch) == 1 {
			batch[0].err = s.commit(batch[0].f)
			return
		}
		type done struct {
			t       *txn
			changes []Change
		}
		var (
			results []done
			failed  = -1
		)
		err := s.db.Update(func(tx *bolt.Tx) error {
			results = results[:0]
			now := s.cfg.Clock.Now().UTC()
			for i, c := range batch {
				t := newTxn(s, tx, now)
				err := c.f(t)
				if err == nil {
					err = t.settle()
				}
				if err == nil {
					err = t.flush()
				}
				var changes []Change
				if err == nil {
					changes, err = t.numberChanges()
				}
				if err != nil {
					failed = i
					return err
				}
				results = append(results, done{t, changes})
			}
			return nil
		})
		if failed >= 0 {
			// Replay: the ones before together, the failing one alone, then
			// the rest.
			s.commitBatch(batch[:failed])
			batch[failed].err = s.commit(batch[failed].f)
			batch = batch[failed+1:]
			continue
		}
		kick := false
		for i, c := range batch {
			c.err = err
			if err == nil {
				kick = kick || results[i].t.timers
				s.publish(results[i].t.msgs)
				s.deliver(results[i].changes)
			}
		}
		if kick {
			select {
			case s.kick <- struct{}{}:
			default:
			}
		}
		return
	}
}

package jobsvc

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/iotjobs"
	bolt "go.etcd.io/bbolt"
)

// Message is an MQTT message the service sends.
type Message struct {
	Topic   string
	Payload []byte
	// ClientID, when set, is the only client that receives the message (a
	// reply goes to the requester alone, as on AWS); otherwise the message
	// goes to the topic's subscribers. A broker that cannot address one
	// client (an external one) publishes it to the topic.
	ClientID string
}

// Publisher delivers the service's messages. The broker implements it.
// Publish is called with the service's lock held, in commit order; it must
// not block for long and must not call back into the Service.
type Publisher interface {
	Publish(m Message)
}

// Groups tells the service which things are in which static thing groups.
// The registry implements it. Both methods must be safe for concurrent use
// and must not call back into the Service.
type Groups interface {
	// ThingsInGroup returns the things in a group or in any of its
	// descendants; an error when there is no such group.
	ThingsInGroup(group string) ([]string, error)
	// GroupsOfThing returns the groups a thing belongs to, directly or as a
	// member of a descendant group (none for an unknown thing).
	GroupsOfThing(thing string) ([]string, error)
}

// Config configures the service.
type Config struct {
	Region    string
	AccountID string
	Clock     clock.Clock
	// Presign replaces presigned-URL placeholders in documents; without it
	// a job whose document holds one is refused.
	Presign Presigner
	// Groups resolves thing-group targets; without it a job may target
	// things only.
	Groups Groups
	// StrictTerminalDescribe makes a DescribeJobExecution ({jobId}/get) of
	// an execution in a terminal state answer TerminalStateReached, the
	// documented meaning of that code, instead of the execution (the
	// default, lenient choice: devices read CANCELED, TIMED_OUT or REMOVED
	// that way; unconfirmed on AWS).
	StrictTerminalDescribe bool
	Logger                 *slog.Logger
}

// Errors of the control-plane methods.
var (
	// ErrNotFound: no such job, execution or thing group.
	ErrNotFound = errors.New("resource not found")
	// ErrExists: a job with that id exists.
	ErrExists = errors.New("resource already exists")
	// ErrInvalid: the request breaks a rule (the message says which).
	ErrInvalid = errors.New("invalid request")
	// ErrInvalidState: the job or execution is in a state that forbids the
	// operation (AWS's InvalidStateTransitionException).
	ErrInvalidState = errors.New("invalid state transition")
	// ErrVersionConflict: expectedVersion does not match (AWS's
	// VersionConflictException).
	ErrVersionConflict = errors.New("version conflict")
)

var (
	bucketJobs       = []byte("jobs.jobs")       // jobId → Job
	bucketJobState   = []byte("jobs.state")      // jobId → jobState
	bucketExecs      = []byte("jobs.executions") // thing \x00 jobId → latest Execution
	bucketByJob      = []byte("jobs.byjob")      // jobId \x00 thing → nothing
	bucketHistory    = []byte("jobs.history")    // thing \x00 jobId \x00 executionNumber(8) → earlier Execution
	bucketWaiting    = []byte("jobs.waiting")    // jobId \x00 seq(8) → thing waiting for the rollout
	bucketWaitThing  = []byte("jobs.waitthing")  // jobId \x00 thing → its key in bucketWaiting
	bucketTimers     = []byte("jobs.timers")     // unix nanos(8) kind(1) id → nothing
	bucketContinuous = []byte("jobs.continuous") // jobId of every IN_PROGRESS CONTINUOUS job → nothing
	allBuckets       = [][]byte{bucketJobs, bucketJobState, bucketExecs, bucketByJob, bucketHistory, bucketWaiting,
		bucketWaitThing, bucketTimers, bucketContinuous}
)

// Timer kinds in bucketTimers.
const (
	timerExecution = 'e' // id: thing \x00 jobId
	timerRollout   = 'r' // id: jobId
)

// Service is the Jobs service. It is safe for concurrent use.
type Service struct {
	db    *bolt.DB
	cfg   Config
	log   *slog.Logger
	pub   atomic.Pointer[Publisher]
	mu    sync.Mutex    // serialises state changes and their notifications
	kick  chan struct{} // a timer was added or moved
	watch watchers      // Subscribe's subscribers (watch.go)
}

// Open prepares the service's buckets in db.
func Open(db *bolt.DB, cfg Config) (*Service, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("jobsvc: %w", err)
	}
	return &Service{db: db, cfg: cfg, log: log, kick: make(chan struct{}, 1)}, nil
}

// SetPublisher sets where messages go (until then they are dropped).
func (s *Service) SetPublisher(p Publisher) { s.pub.Store(&p) }

func (s *Service) publish(msgs []Message) {
	p := s.pub.Load()
	if p == nil {
		return
	}
	for _, m := range msgs {
		(*p).Publish(m)
	}
}

// JobARN returns a job's ARN.
func (s *Service) JobARN(id string) string {
	return fmt.Sprintf("arn:aws:iot:%s:%s:job/%s", s.cfg.Region, s.cfg.AccountID, id)
}

// ThingARN returns a thing's ARN.
func (s *Service) ThingARN(name string) string {
	return fmt.Sprintf("arn:aws:iot:%s:%s:thing/%s", s.cfg.Region, s.cfg.AccountID, name)
}

// GroupARN returns a thing group's ARN.
func (s *Service) GroupARN(name string) string {
	return fmt.Sprintf("arn:aws:iot:%s:%s:thinggroup/%s", s.cfg.Region, s.cfg.AccountID, name)
}

func execKey(thing, job string) []byte { return []byte(thing + "\x00" + job) }

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func historyKey(e Execution) []byte {
	return append([]byte(e.Thing+"\x00"+e.JobID+"\x00"), u64(uint64(e.ExecutionNumber))...)
}

func timerKey(at time.Time, kind byte, id string) []byte {
	k := u64(uint64(at.UnixNano()))
	k = append(k, kind)
	return append(k, id...)
}

// jobState is what changes as a job's executions progress; it is kept apart
// from the Job (and its document) because it changes on most updates.
type jobState struct {
	Counts  Counts       `json:"counts"`
	Rollout rolloutState `json:"rollout"`
	// Waiting is how many things wait in the rollout queue.
	Waiting int64 `json:"waiting"`
	// WakeAt is when the rollout releases more (zero: nothing waits).
	WakeAt time.Time `json:"wakeAt,omitzero"`
}

// txn is one state change: what was read and written, the messages to send.
type txn struct {
	tx   *bolt.Tx
	s    *Service
	now  time.Time
	msgs []Message

	jobs       map[string]*Job
	dirtyJobs  map[string]bool
	states     map[string]*jobState
	stateWake  map[string]time.Time // WakeAt as loaded, to move its timer
	dirtyState map[string]bool
	touched    []string // jobs whose progress must be re-evaluated
	timers     bool     // the timer set changed
	changes    []Change // for Subscribe's subscribers (watch.go)
}

func newTxn(s *Service, tx *bolt.Tx, now time.Time) *txn {
	return &txn{tx: tx, s: s, now: now, jobs: map[string]*Job{}, dirtyJobs: map[string]bool{},
		states: map[string]*jobState{}, stateWake: map[string]time.Time{}, dirtyState: map[string]bool{}}
}

func (t *txn) job(id string) (*Job, bool) {
	if j, ok := t.jobs[id]; ok {
		return j, j != nil
	}
	b := t.tx.Bucket(bucketJobs).Get([]byte(id))
	if b == nil {
		return nil, false
	}
	var j Job
	if json.Unmarshal(b, &j) != nil {
		return nil, false
	}
	if j.TargetSelection == "" {
		j.TargetSelection = Snapshot
	}
	if len(j.TargetThings) == 0 && len(j.TargetGroups) == 0 {
		// Stored by an earlier version: targets were thing names.
		j.TargetThings = j.Targets
		j.Targets = nil
		for _, th := range j.TargetThings {
			j.Targets = append(j.Targets, t.s.ThingARN(th))
		}
	}
	t.jobs[id] = &j
	return &j, true
}

func (t *txn) markJob(j *Job) {
	t.jobs[j.ID] = j
	t.dirtyJobs[j.ID] = true
}

// state returns a job's progress record, rebuilding it from the executions
// for a job stored by an earlier version.
func (t *txn) state(id string) (*jobState, error) {
	if st, ok := t.states[id]; ok {
		return st, nil
	}
	st := &jobState{}
	if b := t.tx.Bucket(bucketJobState).Get([]byte(id)); b != nil {
		if err := json.Unmarshal(b, st); err != nil {
			return nil, fmt.Errorf("jobsvc: stored state of job %s: %w", id, err)
		}
	} else {
		execs, err := t.jobExecs(id)
		if err != nil {
			return nil, err
		}
		for _, e := range execs {
			st.Rollout.Released++
			if st.Counts == nil {
				st.Counts = Counts{}
			}
			st.Counts[e.Status]++
		}
		t.dirtyState[id] = true
	}
	if st.Counts == nil {
		st.Counts = Counts{}
	}
	t.states[id] = st
	t.stateWake[id] = st.WakeAt
	return st, nil
}

func (t *txn) markState(id string) { t.dirtyState[id] = true }

// touch asks for the job's progress (abort, rollout, completion) to be
// re-evaluated before the transaction commits.
func (t *txn) touch(id string) {
	if !slices.Contains(t.touched, id) {
		t.touched = append(t.touched, id)
	}
}

// flush writes what the transaction changed in jobs and their states.
func (t *txn) flush() error {
	for id := range t.dirtyJobs {
		j := t.jobs[id]
		if j == nil {
			continue
		}
		b, err := json.Marshal(j)
		if err != nil {
			return err
		}
		if err := t.tx.Bucket(bucketJobs).Put([]byte(id), b); err != nil {
			return err
		}
		cont := t.tx.Bucket(bucketContinuous)
		if j.TargetSelection == Continuous && j.Status == JobInProgress {
			err = cont.Put([]byte(id), nil)
		} else {
			err = cont.Delete([]byte(id))
		}
		if err != nil {
			return err
		}
	}
	for id := range t.dirtyState {
		st := t.states[id]
		if st == nil {
			continue
		}
		if old := t.stateWake[id]; !old.Equal(st.WakeAt) {
			if err := t.moveTimer(old, st.WakeAt, timerRollout, id); err != nil {
				return err
			}
			t.stateWake[id] = st.WakeAt
		}
		b, err := json.Marshal(st)
		if err != nil {
			return err
		}
		if err := t.tx.Bucket(bucketJobState).Put([]byte(id), b); err != nil {
			return err
		}
	}
	return nil
}

func (t *txn) moveTimer(old, new time.Time, kind byte, id string) error {
	b := t.tx.Bucket(bucketTimers)
	if !old.IsZero() {
		if err := b.Delete(timerKey(old, kind, id)); err != nil {
			return err
		}
	}
	if !new.IsZero() {
		if err := b.Put(timerKey(new, kind, id), nil); err != nil {
			return err
		}
	}
	t.timers = true
	return nil
}

// thingExecs returns the latest execution of every job on a thing.
func (t *txn) thingExecs(thing string) ([]Execution, error) {
	var out []Execution
	prefix := []byte(thing + "\x00")
	c := t.tx.Bucket(bucketExecs).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var e Execution
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("jobsvc: stored execution %q: %w", k, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func (t *txn) exec(thing, job string) (Execution, bool) {
	var e Execution
	b := t.tx.Bucket(bucketExecs).Get(execKey(thing, job))
	if b == nil || json.Unmarshal(b, &e) != nil {
		return e, false
	}
	return e, true
}

// jobExecs returns the latest execution of a job on each thing, by thing.
func (t *txn) jobExecs(jobID string) ([]Execution, error) {
	return jobExecs(t.tx, jobID)
}

func jobExecs(tx *bolt.Tx, jobID string) ([]Execution, error) {
	var out []Execution
	prefix := []byte(jobID + "\x00")
	c := tx.Bucket(bucketByJob).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		thing := string(k[len(prefix):])
		b := tx.Bucket(bucketExecs).Get(execKey(thing, jobID))
		if b == nil {
			continue
		}
		var e Execution
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, fmt.Errorf("jobsvc: stored execution of %s on %s: %w", jobID, thing, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// history returns an earlier execution of a job on a thing by number.
func history(tx *bolt.Tx, thing, job string, number int64) (Execution, bool) {
	var e Execution
	b := tx.Bucket(bucketHistory).Get(historyKey(Execution{Thing: thing, JobID: job, ExecutionNumber: number}))
	if b == nil || json.Unmarshal(b, &e) != nil {
		return e, false
	}
	return e, true
}

// putExec writes e as the latest execution of its job on its thing; old is
// what it replaces (nil for a new one). Counts and timers follow.
func (t *txn) putExec(old *Execution, e Execution) error {
	st, err := t.state(e.JobID)
	if err != nil {
		return err
	}
	var oldDeadline time.Time
	if old != nil {
		st.Counts[old.Status]--
		if old.ExecutionNumber == e.ExecutionNumber {
			oldDeadline = old.Deadline()
		} else if err := t.archive(*old); err != nil {
			return err
		}
	}
	st.Counts[e.Status]++
	t.markState(e.JobID)
	if d := e.Deadline(); !d.Equal(oldDeadline) {
		if err := t.moveTimer(oldDeadline, d, timerExecution, e.Thing+"\x00"+e.JobID); err != nil {
			return err
		}
	}
	t.recordExec(e.JobID, e.Thing, &e)
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketByJob).Put([]byte(e.JobID+"\x00"+e.Thing), nil); err != nil {
		return err
	}
	return t.tx.Bucket(bucketExecs).Put(execKey(e.Thing, e.JobID), b)
}

// archive keeps a replaced execution (a retried or re-run one) so that it
// can still be described by its number.
func (t *txn) archive(e Execution) error {
	if d := e.Deadline(); !d.IsZero() {
		if err := t.moveTimer(d, time.Time{}, timerExecution, e.Thing+"\x00"+e.JobID); err != nil {
			return err
		}
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return t.tx.Bucket(bucketHistory).Put(historyKey(e), b)
}

// deleteExec removes a job's executions on a thing, the earlier ones too.
func (t *txn) deleteExec(e Execution) error {
	t.recordExec(e.JobID, e.Thing, nil)
	if st, err := t.state(e.JobID); err == nil {
		st.Counts[e.Status]--
		t.markState(e.JobID)
	}
	if d := e.Deadline(); !d.IsZero() {
		if err := t.moveTimer(d, time.Time{}, timerExecution, e.Thing+"\x00"+e.JobID); err != nil {
			return err
		}
	}
	h := t.tx.Bucket(bucketHistory)
	prefix := []byte(e.Thing + "\x00" + e.JobID + "\x00")
	var keys [][]byte
	c := h.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := h.Delete(k); err != nil {
			return err
		}
	}
	if err := t.tx.Bucket(bucketByJob).Delete([]byte(e.JobID + "\x00" + e.Thing)); err != nil {
		return err
	}
	return t.tx.Bucket(bucketExecs).Delete(execKey(e.Thing, e.JobID))
}

func (t *txn) send(topic string, v any, client string) {
	t.msgs = append(t.msgs, Message{Topic: topic, Payload: iotjobs.Encode(v), ClientID: client})
}

// document returns the job's document as a device receives it now: with
// every presigned-URL placeholder replaced by a fresh URL.
func (t *txn) document(jobID string) json.RawMessage {
	j, ok := t.job(jobID)
	if !ok {
		return nil
	}
	doc, err := substitutePresigned(j.Document, t.s.cfg.Presign, j.presignExpiry())
	if err != nil {
		t.s.log.Warn("job document delivered without presigned URLs", "job", jobID, "err", err)
	}
	return doc
}

// changeThing replaces a thing's executions by after: what differs is
// written, executions missing from after are deleted, and what follows is
// done — retries of failures, events, notify and notify-next when due, and
// the affected jobs are touched for their progress.
func (t *txn) changeThing(thing string, before, after []Execution) error {
	old := map[string]Execution{}
	for _, e := range before {
		old[e.JobID] = e
	}
	after = slices.Clone(after)
	seen := map[string]bool{}
	for i := range after {
		e := after[i]
		seen[e.JobID] = true
		o, had := old[e.JobID]
		if had && o.ExecutionNumber == e.ExecutionNumber && o.VersionNumber == e.VersionNumber && o.Status == e.Status &&
			o.Deadline().Equal(e.Deadline()) {
			continue
		}
		var prev *Execution
		if had {
			prev = &o
		}
		if e.Status.Terminal() && (!had || o.ExecutionNumber != e.ExecutionNumber || !o.Status.Terminal()) {
			t.send(ExecutionEventTopic(e.JobID, executionEventOp(e.Status)), executionEvent(e, t.s.ThingARN(thing), executionEventOp(e.Status), t.now), "")
			if j, ok := t.job(e.JobID); ok && j.Status == JobInProgress {
				seq, _ := t.tx.Bucket(bucketExecs).NextSequence()
				if r, ok := retry(j.Retry, e, seq, t.now); ok {
					// The failed execution is kept in the history; the
					// retry takes its place.
					if err := t.putExec(prev, e); err != nil {
						return err
					}
					failed := e
					prev = &failed
					after[i], e = r, r
				}
			}
		}
		if err := t.putExec(prev, e); err != nil {
			return err
		}
		t.touch(e.JobID)
	}
	for _, o := range before {
		if !seen[o.JobID] {
			if err := t.deleteExec(o); err != nil {
				return err
			}
			t.touch(o.JobID)
		}
	}
	if pendingKey(before) != pendingKey(after) {
		t.send(iotjobs.NotifyTopic(thing).String(), notifyMessage(after, t.now), "")
	}
	if headKey(before) != headKey(after) {
		m := iotjobs.NotifyNextMessage{Timestamp: t.now.Unix()}
		if h := next(after); h != nil {
			m.Execution = h.Wire(t.document(h.JobID), t.now)
		}
		t.send(iotjobs.NotifyNextTopic(thing).String(), m, "")
	}
	return nil
}

// setExec replaces one execution of a thing.
func (t *txn) setExec(e Execution) error {
	before, err := t.thingExecs(e.Thing)
	if err != nil {
		return err
	}
	after := slices.Clone(before)
	found := false
	for i := range after {
		if after[i].JobID == e.JobID {
			after[i], found = e, true
		}
	}
	if !found {
		after = append(after, e)
	}
	return t.changeThing(e.Thing, before, after)
}

// createExecution gives a thing a new QUEUED execution of a job: the first,
// or the next number after an earlier one that ended (a re-run).
func (t *txn) createExecution(jobID, thing string) error {
	number := int64(1)
	if cur, ok := t.exec(thing, jobID); ok {
		if !cur.Status.Terminal() {
			return nil
		}
		number = cur.ExecutionNumber + 1
	}
	seq, _ := t.tx.Bucket(bucketExecs).NextSequence()
	return t.setExec(newExecution(jobID, thing, number, seq, t.now))
}

// enqueue puts things in the job's rollout queue, in order.
func (t *txn) enqueue(jobID string, things []string) error {
	st, err := t.state(jobID)
	if err != nil {
		return err
	}
	w, wt := t.tx.Bucket(bucketWaiting), t.tx.Bucket(bucketWaitThing)
	for _, th := range things {
		if wt.Get([]byte(jobID+"\x00"+th)) != nil {
			continue
		}
		seq, _ := w.NextSequence()
		k := append([]byte(jobID+"\x00"), u64(seq)...)
		if err := w.Put(k, []byte(th)); err != nil {
			return err
		}
		if err := wt.Put([]byte(jobID+"\x00"+th), k); err != nil {
			return err
		}
		st.Waiting++
	}
	t.markState(jobID)
	t.touch(jobID)
	return nil
}

// dequeue takes up to n things from the front of the job's rollout queue
// (all of them when n < 0).
func (t *txn) dequeue(jobID string, n int64) ([]string, error) {
	st, err := t.state(jobID)
	if err != nil {
		return nil, err
	}
	w, wt := t.tx.Bucket(bucketWaiting), t.tx.Bucket(bucketWaitThing)
	prefix := []byte(jobID + "\x00")
	var keys [][]byte
	var things []string
	c := w.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && (n < 0 || int64(len(things)) < n); k, v = c.Next() {
		keys = append(keys, bytes.Clone(k))
		things = append(things, string(v))
	}
	for i, k := range keys {
		if err := w.Delete(k); err != nil {
			return nil, err
		}
		if err := wt.Delete([]byte(jobID + "\x00" + things[i])); err != nil {
			return nil, err
		}
	}
	st.Waiting -= int64(len(things))
	t.markState(jobID)
	return things, nil
}

// unqueue takes one thing out of the job's rollout queue; it reports
// whether it was there.
func (t *txn) unqueue(jobID, thing string) (bool, error) {
	wt := t.tx.Bucket(bucketWaitThing)
	k := wt.Get([]byte(jobID + "\x00" + thing))
	if k == nil {
		return false, nil
	}
	if err := t.tx.Bucket(bucketWaiting).Delete(bytes.Clone(k)); err != nil {
		return false, err
	}
	if err := wt.Delete([]byte(jobID + "\x00" + thing)); err != nil {
		return false, err
	}
	st, err := t.state(jobID)
	if err != nil {
		return false, err
	}
	st.Waiting--
	t.markState(jobID)
	return true, nil
}

// settle re-evaluates every touched job until nothing more follows: abort
// criteria, the rollout, completion.
func (t *txn) settle() error {
	for len(t.touched) > 0 {
		id := t.touched[0]
		t.touched = t.touched[1:]
		if err := t.progress(id); err != nil {
			return err
		}
	}
	return nil
}

func (t *txn) progress(id string) error {
	j, ok := t.job(id)
	if !ok || j.Status != JobInProgress {
		return nil
	}
	st, err := t.state(id)
	if err != nil {
		return err
	}
	if a, due := abortDue(j.Abort, st.Counts); due {
		return t.abort(j, a)
	}
	if st.Waiting > 0 {
		n, rs, wake := rolloutStep(j.Rollout, st.Rollout, t.now, st.Waiting, st.Counts[iotjobs.StatusSucceeded])
		st.Rollout, st.WakeAt = rs, wake
		t.markState(id)
		things, err := t.dequeue(id, n)
		if err != nil {
			return err
		}
		for _, th := range things {
			if err := t.createExecution(id, th); err != nil {
				return err
			}
		}
	} else if !st.WakeAt.IsZero() {
		st.WakeAt = time.Time{}
		t.markState(id)
	}
	if j.TargetSelection == Snapshot && st.Waiting == 0 && st.Counts[iotjobs.StatusQueued]+st.Counts[iotjobs.StatusInProgress] == 0 {
		j.Status, j.CompletedAt, j.LastUpdatedAt = JobCompleted, t.now, t.now
		t.markJob(j)
		t.send(JobEventTopic(id, JobEventCompleted), jobEvent(j, JobEventCompleted, string(j.Status), st.Counts, t.now), "")
	}
	return nil
}

// abort cancels a job whose abort criteria were met: its QUEUED executions
// and the things still waiting for the rollout.
func (t *txn) abort(j *Job, a AbortCriteria) error {
	st, err := t.state(j.ID)
	if err != nil {
		return err
	}
	executed := st.Counts.executed()
	comment := fmt.Sprintf("aborted: %d of %d executed things ended %s, at least %g%% with %d executed", st.Counts.failures(a.FailureType), executed, a.FailureType, a.ThresholdPercentage, a.MinNumberOfExecutedThings)
	return t.cancelJob(j, false, comment, "")
}

// cancelJob marks the job CANCELED and cancels its QUEUED executions (and,
// with force, its IN_PROGRESS ones); things waiting for the rollout get no
// execution.
func (t *txn) cancelJob(j *Job, force bool, comment, reason string) error {
	wasCanceled := j.Status == JobCanceled
	j.Status, j.LastUpdatedAt = JobCanceled, t.now
	j.ForceCanceled = j.ForceCanceled || force
	if comment != "" {
		j.Comment = comment
	}
	if reason != "" {
		j.ReasonCode = reason
	}
	t.markJob(j)
	if _, err := t.dequeue(j.ID, -1); err != nil {
		return err
	}
	st, err := t.state(j.ID)
	if err != nil {
		return err
	}
	st.WakeAt = time.Time{}
	execs, err := t.jobExecs(j.ID)
	if err != nil {
		return err
	}
	for _, e := range execs {
		if ne, changed := cancelForJob(e, force, t.now); changed {
			if err := t.setExec(ne); err != nil {
				return err
			}
		}
	}
	if !wasCanceled {
		t.send(JobEventTopic(j.ID, JobEventCanceled), jobEvent(j, JobEventCanceled, string(j.Status), st.Counts, t.now), "")
	}
	return nil
}

// commit runs f in a write transaction, settles the jobs it touched, and
// publishes the messages after the commit. The caller holds s.mu.
func (s *Service) commit(f func(t *txn) error) error {
	var t *txn
	err := s.db.Update(func(tx *bolt.Tx) error {
		t = newTxn(s, tx, s.cfg.Clock.Now().UTC())
		if err := f(t); err != nil {
			return err
		}
		if err := t.settle(); err != nil {
			return err
		}
		if err := t.flush(); err != nil {
			return err
		}
		t.collectJobs()
		return nil
	})
	if err != nil {
		return err
	}
	if t.timers {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	s.publish(t.msgs)
	s.broadcast(t.changes)
	return nil
}

// update takes the lock and commits f.
func (s *Service) update(f func(t *txn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commit(f)
}

// JobSpec describes a job to create.
type JobSpec struct {
	JobID string
	// Things and Groups are the targets: things and static thing groups,
	// by name. At least one target is needed.
	Things []string
	Groups []string
	// Document is the job document, a JSON object of at most 32 KiB.
	Document []byte
	// DocumentSource records where the document was read from, if anywhere.
	DocumentSource  string
	Description     string
	TargetSelection TargetSelection // default SNAPSHOT
	PresignedURL    *PresignedURLConfig
	Timeout         *TimeoutConfig
	Rollout         *RolloutConfig
	Abort           *AbortConfig
	Retry           *RetryConfig
}

// CreateJob creates a job and queues an execution on each target thing (at
// the rollout's pace, if it has one). Errors wrap ErrInvalid, ErrExists or
// ErrNotFound (a target group).
func (s *Service) CreateJob(spec JobSpec) (Job, error) {
	if err := validateSpec(&spec); err != nil {
		return Job{}, err
	}
	if len(spec.Groups) > 0 && s.cfg.Groups == nil {
		return Job{}, fmt.Errorf("%w: this Jobs service cannot target thing groups", ErrInvalid)
	}
	for _, d := range []struct {
		what string
		list []string
	}{{"thing", spec.Things}, {"thing group", spec.Groups}} {
		sorted := slices.Clone(d.list)
		sort.Strings(sorted)
		for i := 1; i < len(sorted); i++ {
			if sorted[i] == sorted[i-1] {
				return Job{}, fmt.Errorf("%w: %s %s is targeted twice", ErrInvalid, d.what, sorted[i])
			}
		}
	}
	if _, err := findPlaceholders(spec.Document); err != nil {
		return Job{}, fmt.Errorf("%w: the job document: %v", ErrInvalid, err)
	} else if ph, _ := findPlaceholders(spec.Document); len(ph) > 0 && s.cfg.Presign == nil {
		return Job{}, fmt.Errorf("%w: the job document holds presigned-URL placeholders but this service cannot presign", ErrInvalid)
	}
	now := s.cfg.Clock.Now().UTC()
	job := Job{ID: spec.JobID, ARN: s.JobARN(spec.JobID), Description: spec.Description, Document: json.RawMessage(spec.Document),
		DocumentSource: spec.DocumentSource, TargetThings: slices.Clone(spec.Things), TargetGroups: slices.Clone(spec.Groups),
		TargetSelection: spec.TargetSelection, Status: JobInProgress, CreatedAt: now, LastUpdatedAt: now,
		PresignedURL: spec.PresignedURL, Timeout: spec.Timeout, Rollout: spec.Rollout, Abort: spec.Abort, Retry: spec.Retry}
	for _, th := range spec.Things {
		job.Targets = append(job.Targets, s.ThingARN(th))
	}
	for _, g := range spec.Groups {
		job.Targets = append(job.Targets, s.GroupARN(g))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	// Group members are read under the lock and before the write
	// transaction, so that a thing added to a group concurrently either is
	// seen here or is reconciled after this job exists.
	members := slices.Clone(spec.Things)
	for _, g := range spec.Groups {
		m, err := s.cfg.Groups.ThingsInGroup(g)
		if err != nil {
			return Job{}, fmt.Errorf("%w: thing group %s: %v", ErrNotFound, g, err)
		}
		members = append(members, m...)
	}
	sort.Strings(members)
	members = slices.Compact(members)
	err := s.commit(func(t *txn) error {
		if _, exists := t.job(job.ID); exists {
			return fmt.Errorf("%w: job %s exists; choose another job id", ErrExists, job.ID)
		}
		j := job
		t.markJob(&j)
		if _, err := t.state(j.ID); err != nil {
			return err
		}
		return t.enqueue(j.ID, members)
	})
	if err != nil {
		return Job{}, err
	}
	return s.DescribeJob(job.ID)
}

// validateSpec checks a job's id, document and configuration against AWS's
// rules, and defaults targetSelection.
func validateSpec(spec *JobSpec) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if err := iotjobs.ValidateJobID(spec.JobID); err != nil {
		return bad("%v", err)
	}
	if len(spec.Document) > iotjobs.MaxJobDocumentSize {
		return bad("the job document has %d bytes; at most %d are allowed", len(spec.Document), iotjobs.MaxJobDocumentSize)
	}
	var probe map[string]any
	if err := json.Unmarshal(spec.Document, &probe); err != nil {
		return bad("the job document must be a JSON object: %v", err)
	} else if probe == nil {
		return bad("the job document must be a JSON object, not null")
	}
	if len(spec.Description) > 2028 {
		return bad("the description has %d characters; at most 2028 are allowed", len(spec.Description))
	}
	if len(spec.Things)+len(spec.Groups) == 0 {
		return bad("a job needs at least one target thing or thing group")
	}
	for _, th := range spec.Things {
		if err := iotjobs.ValidateThingName(th); err != nil {
			return bad("%v", err)
		}
	}
	switch spec.TargetSelection {
	case "":
		spec.TargetSelection = Snapshot
	case Snapshot, Continuous:
	default:
		return bad("targetSelection %q: use SNAPSHOT or CONTINUOUS", spec.TargetSelection)
	}
	if p := spec.PresignedURL; p != nil && p.ExpiresInSec != 0 && (p.ExpiresInSec < MinPresignSeconds || p.ExpiresInSec > MaxPresignSeconds) {
		return bad("presignedUrlConfig.expiresInSec %d: use %d..%d", p.ExpiresInSec, MinPresignSeconds, MaxPresignSeconds)
	}
	if to := spec.Timeout; to != nil && (to.InProgressTimeoutInMinutes < 1 || to.InProgressTimeoutInMinutes > MaxTimeoutMinutes) {
		return bad("timeoutConfig.inProgressTimeoutInMinutes %d: use 1..%d", to.InProgressTimeoutInMinutes, MaxTimeoutMinutes)
	}
	if r := spec.Rollout; r != nil {
		if r.MaximumPerMinute == 0 && r.ExponentialRate == nil {
			return bad("jobExecutionsRolloutConfig needs maximumPerMinute or exponentialRate")
		}
		if r.MaximumPerMinute != 0 && (r.MaximumPerMinute < 1 || r.MaximumPerMinute > MaxRolloutPerMinute) {
			return bad("maximumPerMinute %d: use 1..%d", r.MaximumPerMinute, MaxRolloutPerMinute)
		}
		if e := r.ExponentialRate; e != nil {
			if e.BaseRatePerMinute < 1 || e.BaseRatePerMinute > MaxRolloutPerMinute {
				return bad("exponentialRate.baseRatePerMinute %d: use 1..%d", e.BaseRatePerMinute, MaxRolloutPerMinute)
			}
			if e.IncrementFactor < 1.1 || e.IncrementFactor > 5 {
				return bad("exponentialRate.incrementFactor %g: use 1.1..5", e.IncrementFactor)
			}
			c := e.RateIncreaseCriteria
			if (c.NumberOfNotifiedThings > 0) == (c.NumberOfSucceededThings > 0) {
				return bad("exponentialRate.rateIncreaseCriteria needs exactly one of numberOfNotifiedThings and numberOfSucceededThings")
			}
			if c.NumberOfNotifiedThings > 1000 || c.NumberOfSucceededThings > 1000 || c.NumberOfNotifiedThings < 0 || c.NumberOfSucceededThings < 0 {
				return bad("exponentialRate.rateIncreaseCriteria: use 1..1000")
			}
		}
	}
	if a := spec.Abort; a != nil {
		if len(a.CriteriaList) == 0 {
			return bad("abortConfig.criteriaList is empty")
		}
		for i, c := range a.CriteriaList {
			switch c.FailureType {
			case FailureFailed, FailureRejected, FailureTimedOut, FailureAll:
			default:
				return bad("abortConfig.criteriaList[%d].failureType %q: use FAILED, REJECTED, TIMED_OUT or ALL", i, c.FailureType)
			}
			if c.Action != "CANCEL" {
				return bad("abortConfig.criteriaList[%d].action %q: use CANCEL", i, c.Action)
			}
			if c.ThresholdPercentage <= 0 || c.ThresholdPercentage > 100 {
				return bad("abortConfig.criteriaList[%d].thresholdPercentage %g: use more than 0, at most 100", i, c.ThresholdPercentage)
			}
			if c.MinNumberOfExecutedThings < 1 {
				return bad("abortConfig.criteriaList[%d].minNumberOfExecutedThings %d: use 1 or more", i, c.MinNumberOfExecutedThings)
			}
		}
	}
	if r := spec.Retry; r != nil {
		if len(r.CriteriaList) == 0 {
			return bad("jobExecutionsRetryConfig.criteriaList is empty")
		}
		total := int64(0)
		seen := map[string]bool{}
		for i, c := range r.CriteriaList {
			switch c.FailureType {
			case FailureFailed, FailureTimedOut, FailureAll:
			default:
				return bad("jobExecutionsRetryConfig.criteriaList[%d].failureType %q: use FAILED, TIMED_OUT or ALL", i, c.FailureType)
			}
			if seen[c.FailureType] {
				return bad("jobExecutionsRetryConfig names failureType %s twice", c.FailureType)
			}
			seen[c.FailureType] = true
			if c.NumberOfRetries < 0 || c.NumberOfRetries > 10 {
				return bad("jobExecutionsRetryConfig.criteriaList[%d].numberOfRetries %d: use 0..10", i, c.NumberOfRetries)
			}
			total += c.NumberOfRetries
		}
		if total > 10 {
			return bad("jobExecutionsRetryConfig allows %d retries in total; at most 10 are allowed", total)
		}
	}
	return nil
}

// JobInfo is a job with its progress.
type JobInfo struct {
	Job
	Counts Counts
	// Waiting is how many targeted things the rollout has not reached yet.
	Waiting int64
}

// DescribeJob returns a job.
func (s *Service) DescribeJob(id string) (Job, error) {
	info, err := s.JobInfo(id)
	return info.Job, err
}

// JobInfo returns a job with its execution counts.
func (s *Service) JobInfo(id string) (JobInfo, error) {
	var info JobInfo
	err := s.db.View(func(tx *bolt.Tx) error {
		t := newTxn(s, tx, s.cfg.Clock.Now().UTC())
		j, ok := t.job(id)
		if !ok {
			return fmt.Errorf("%w: job %s does not exist", ErrNotFound, id)
		}
		st, err := t.state(id)
		if err != nil {
			return err
		}
		info = JobInfo{Job: *j, Counts: st.Counts, Waiting: st.Waiting}
		return nil
	})
	return info, err
}

// ListJobs returns every job, oldest first.
func (s *Service) ListJobs() ([]Job, error) {
	var out []Job
	err := s.db.View(func(tx *bolt.Tx) error {
		t := newTxn(s, tx, time.Time{})
		return tx.Bucket(bucketJobs).ForEach(func(k, _ []byte) error {
			if j, ok := t.job(string(k)); ok {
				out = append(out, *j)
			}
			return nil
		})
	})
	sort.SliceStable(out, func(i, k int) bool {
		if !out[i].CreatedAt.Equal(out[k].CreatedAt) {
			return out[i].CreatedAt.Before(out[k].CreatedAt)
		}
		return out[i].ID < out[k].ID
	})
	return out, err
}

// DescribeExecution returns the latest execution of a job on a thing.
func (s *Service) DescribeExecution(jobID, thing string) (Execution, error) {
	return s.DescribeExecutionNumber(jobID, thing, 0)
}

// DescribeExecutionNumber returns an execution of a job on a thing by its
// number (0: the latest).
func (s *Service) DescribeExecutionNumber(jobID, thing string, number int64) (Execution, error) {
	var e Execution
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketExecs).Get(execKey(thing, jobID))
		if b == nil {
			return fmt.Errorf("%w: job %s has no execution on thing %s", ErrNotFound, jobID, thing)
		}
		if err := json.Unmarshal(b, &e); err != nil {
			return err
		}
		if number != 0 && number != e.ExecutionNumber {
			var ok bool
			if e, ok = history(tx, thing, jobID, number); !ok {
				return fmt.Errorf("%w: job %s has no execution number %d on thing %s", ErrNotFound, jobID, number, thing)
			}
		}
		return nil
	})
	return e, err
}

// ListExecutionsForJob returns the latest execution of a job on each
// thing, by thing name.
func (s *Service) ListExecutionsForJob(jobID string) ([]Execution, error) {
	var out []Execution
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketJobs).Get([]byte(jobID)) == nil {
			return fmt.Errorf("%w: job %s does not exist", ErrNotFound, jobID)
		}
		var err error
		out, err = jobExecs(tx, jobID)
		return err
	})
	return out, err
}

// ListExecutionsForThing returns the latest execution of every job on a
// thing, oldest first.
func (s *Service) ListExecutionsForThing(thing string) ([]Execution, error) {
	var out []Execution
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = newTxn(s, tx, time.Time{}).thingExecs(thing)
		return err
	})
	sort.SliceStable(out, func(i, k int) bool { return out[i].Seq < out[k].Seq })
	return out, err
}

// JobDocument returns a job's document as stored (placeholders kept).
func (s *Service) JobDocument(jobID string) (json.RawMessage, error) {
	j, err := s.DescribeJob(jobID)
	return j.Document, err
}

// CancelJob cancels a job: it becomes CANCELED, its QUEUED executions are
// CANCELED and, with force, so are its IN_PROGRESS ones. A COMPLETED job
// cannot be canceled (ErrInvalidState); canceling a CANCELED job again
// changes nothing unless force is newly given.
func (s *Service) CancelJob(jobID string, force bool, comment, reasonCode string) (Job, error) {
	err := s.update(func(t *txn) error {
		j, ok := t.job(jobID)
		if !ok {
			return fmt.Errorf("%w: job %s does not exist", ErrNotFound, jobID)
		}
		if j.Status == JobCompleted {
			return fmt.Errorf("%w: job %s is COMPLETED and cannot be canceled", ErrInvalidState, jobID)
		}
		return t.cancelJob(j, force, comment, reasonCode)
	})
	if err != nil {
		return Job{}, err
	}
	return s.DescribeJob(jobID)
}

// CancelExecution cancels one execution (CancelJobExecution): a QUEUED one,
// or an IN_PROGRESS one with force. Errors wrap ErrNotFound, ErrInvalid,
// ErrVersionConflict or ErrInvalidState.
func (s *Service) CancelExecution(jobID, thing string, req CancelRequest) (Execution, error) {
	var out Execution
	err := s.update(func(t *txn) error {
		e, ok := t.exec(thing, jobID)
		if !ok {
			return fmt.Errorf("%w: job %s has no execution on thing %s", ErrNotFound, jobID, thing)
		}
		ne, err := cancelExecution(e, req, t.now)
		if err != nil {
			return err
		}
		out = ne
		return t.setExec(ne)
	})
	return out, err
}

// DeleteJob deletes a job and all its executions. Without force the job
// must be COMPLETED or CANCELED with no execution IN_PROGRESS
// (ErrInvalidState otherwise).
func (s *Service) DeleteJob(jobID string, force bool) error {
	return s.update(func(t *txn) error {
		j, ok := t.job(jobID)
		if !ok {
			return fmt.Errorf("%w: job %s does not exist", ErrNotFound, jobID)
		}
		st, err := t.state(jobID)
		if err != nil {
			return err
		}
		if !force {
			if j.Status == JobInProgress {
				return fmt.Errorf("%w: job %s is IN_PROGRESS; cancel it first or delete it with force", ErrInvalidState, jobID)
			}
			if st.Counts[iotjobs.StatusInProgress] > 0 {
				return fmt.Errorf("%w: job %s has executions IN_PROGRESS; delete it with force", ErrInvalidState, jobID)
			}
		}
		if _, err := t.dequeue(jobID, -1); err != nil {
			return err
		}
		st.WakeAt = time.Time{}
		counts := maps.Clone(st.Counts)
		execs, err := t.jobExecs(jobID)
		if err != nil {
			return err
		}
		for _, e := range execs {
			before, err := t.thingExecs(e.Thing)
			if err != nil {
				return err
			}
			after := slices.DeleteFunc(slices.Clone(before), func(x Execution) bool { return x.JobID == jobID })
			if err := t.changeThing(e.Thing, before, after); err != nil {
				return err
			}
			t.send(ExecutionEventTopic(jobID, JobEventDeleted), executionEvent(e, t.s.ThingARN(e.Thing), JobEventDeleted, t.now), "")
		}
		t.send(JobEventTopic(jobID, JobEventDeleted), jobEvent(j, JobEventDeleted, "DELETION_IN_PROGRESS", counts, t.now), "")
		if err := t.flush(); err != nil { // moves the rollout timer away
			return err
		}
		delete(t.jobs, jobID)
		delete(t.dirtyJobs, jobID)
		delete(t.states, jobID)
		delete(t.dirtyState, jobID)
		t.touched = slices.DeleteFunc(t.touched, func(id string) bool { return id == jobID })
		for _, b := range [][]byte{bucketJobs, bucketJobState, bucketContinuous} {
			if err := t.tx.Bucket(b).Delete([]byte(jobID)); err != nil {
				return err
			}
		}
		return nil
	})
}

// ReconcileThing brings a thing's executions of CONTINUOUS jobs in line
// with its current thing groups: a job that now targets it gives it an
// execution (through the rollout), one that no longer does marks its
// pending execution REMOVED. Call it after every change of the thing's
// group membership, and after deleting the thing.
func (s *Service) ReconcileThing(thing string) error {
	if s.cfg.Groups == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	groups, err := s.cfg.Groups.GroupsOfThing(thing)
	if err != nil {
		return fmt.Errorf("jobsvc: groups of %s: %w", thing, err)
	}
	return s.commit(func(t *txn) error {
		var ids []string
		t.tx.Bucket(bucketContinuous).ForEach(func(k, _ []byte) error {
			ids = append(ids, string(k))
			return nil
		})
		for _, id := range ids {
			j, ok := t.job(id)
			if !ok || j.Status != JobInProgress {
				continue
			}
			cur, has := t.exec(thing, id)
			if targeted(j, thing, groups) {
				if (!has || cur.Status == iotjobs.StatusRemoved) && t.tx.Bucket(bucketWaitThing).Get([]byte(id+"\x00"+thing)) == nil {
					if err := t.enqueue(id, []string{thing}); err != nil {
						return err
					}
				}
				continue
			}
			if _, err := t.unqueue(id, thing); err != nil {
				return err
			}
			if has && !cur.Status.Terminal() {
				if err := t.setExec(serviceSet(cur, iotjobs.StatusRemoved, t.now)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Tick applies every timer due at the clock's current time: executions
// whose step or in-progress timer expired become TIMED_OUT, rollouts whose
// next window opened release more executions. RunTimers calls it; tests
// call it after moving a fake clock.
func (s *Service) Tick() error {
	return s.update(func(t *txn) error {
		b := t.tx.Bucket(bucketTimers)
		var due [][]byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil && len(k) > 9; k, _ = c.Next() {
			if time.Unix(0, int64(binary.BigEndian.Uint64(k))).After(t.now) {
				break
			}
			due = append(due, bytes.Clone(k))
		}
		for _, k := range due {
			if err := b.Delete(k); err != nil {
				return err
			}
			t.timers = true
			id := string(k[9:])
			switch k[8] {
			case timerExecution:
				thing, job, _ := strings.Cut(id, "\x00")
				e, ok := t.exec(thing, job)
				if !ok {
					continue
				}
				if ne, expired := timeOut(e, t.now); expired {
					if err := t.setExec(ne); err != nil {
						return err
					}
				}
			case timerRollout:
				if _, ok := t.job(id); !ok {
					continue
				}
				st, err := t.state(id)
				if err != nil {
					return err
				}
				// The key is gone: forget it, so that flush does not look for it.
				t.stateWake[id] = time.Time{}
				st.WakeAt = time.Time{}
				t.markState(id)
				t.touch(id)
			}
		}
		return nil
	})
}

// NextTimer returns when the earliest timer is due; ok is false when none
// is set.
func (s *Service) NextTimer() (at time.Time, ok bool) {
	s.db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketTimers).Cursor().First()
		if len(k) > 9 {
			at, ok = time.Unix(0, int64(binary.BigEndian.Uint64(k))), true
		}
		return nil
	})
	return at, ok
}

// RunTimers fires the service's timers on its clock until ctx ends: it
// waits for the earliest deadline (or for a change of the timers) and calls
// Tick.
func (s *Service) RunTimers(ctx context.Context) {
	for {
		var fire <-chan time.Time
		var tm clock.Timer
		if at, ok := s.NextTimer(); ok {
			d := at.Sub(s.cfg.Clock.Now())
			if d <= 0 {
				if err := s.Tick(); err != nil {
					s.log.Error("jobs timers failed", "err", err)
					// Wait for a change rather than spin on a failing store.
					d = time.Second
				} else {
					continue
				}
			}
			tm = s.cfg.Clock.NewTimer(d)
			fire = tm.C()
		}
		select {
		case <-ctx.Done():
			if tm != nil {
				tm.Stop()
			}
			return
		case <-fire:
		case <-s.kick:
		}
		if tm != nil {
			tm.Stop()
		}
	}
}

package jobsvc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	// DeletionDelay is how long DeleteJob takes: the job shows
	// DELETION_IN_PROGRESS (and its id cannot be reused) until then.
	// Default DefaultDeletionDelay; negative: no delay (deleted on the
	// next Tick).
	DeletionDelay time.Duration
	// DeviceRequestRate limits each thing's Jobs requests (get, start-next,
	// {jobId}/get, {jobId}/update) to this many per second, in bursts of
	// up to DeviceRequestBurst (default: the rate, at least 1); a request
	// over the limit is rejected with RequestThrottled, as AWS does. 0: no
	// limit.
	DeviceRequestRate  float64
	DeviceRequestBurst int
	Logger             *slog.Logger
}

// DefaultDeletionDelay is Config.DeletionDelay's default.
const DefaultDeletionDelay = time.Second

// MaxConcurrentDeletions is how many jobs may be DELETION_IN_PROGRESS at
// once, as on AWS; one more DeleteJob fails with ErrLimitExceeded.
const MaxConcurrentDeletions = 10

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
	// ErrLimitExceeded: a limit of AWS's is reached (AWS's
	// LimitExceededException): ten deletions in progress, a hundred
	// targets.
	ErrLimitExceeded = errors.New("limit exceeded")
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
	bucketDeleting   = []byte("jobs.deleting")   // jobId of every DELETION_IN_PROGRESS job → nothing
	bucketTemplates  = []byte("jobs.templates")  // jobTemplateId → JobTemplate
	bucketConfig     = []byte("jobs.config")     // "events" → EventConfigurations, "changeSeq" → last change number
	// thing \x00 jobId of every latest execution QUEUED or IN_PROGRESS →
	// nothing: what a device asks for when it connects, found without
	// reading the thing's finished executions.
	bucketPending = []byte("jobs.pending")
	allBuckets    = [][]byte{bucketJobs, bucketJobState, bucketExecs, bucketByJob, bucketHistory, bucketWaiting,
		bucketWaitThing, bucketTimers, bucketContinuous, bucketDeleting, bucketTemplates, bucketConfig, bucketPending}
)

// Timer kinds in bucketTimers.
const (
	timerExecution = 'e' // id: thing \x00 jobId
	timerRollout   = 'r' // id: jobId
	timerStart     = 's' // id: jobId; a SCHEDULED job's startTime
	timerEnd       = 'x' // id: jobId; a schedule's endTime
	timerDeletion  = 'd' // id: jobId; a deletion ends
)

// Service is the Jobs service. It is safe for concurrent use.
type Service struct {
	db     *bolt.DB
	cfg    Config
	log    *slog.Logger
	pub    atomic.Pointer[Publisher]
	mu     sync.Mutex    // serialises state changes and their notifications
	kick   chan struct{} // a timer was added or moved
	events atomic.Pointer[EventConfigurations]
	limit  *limiter

	watchMu  sync.Mutex
	watchers map[*Watcher]bool // the live watchers

	jobs jobCache // decoded jobs (jobcache.go)

	groupMu sync.Mutex   // guards the group commit's queue (groupcommit.go)
	pending []*groupCall // requests waiting for the next commit
	leading bool         // a request is committing a batch
}

// Open prepares the service's buckets in db.
func Open(db *bolt.DB, cfg Config) (*Service, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.DeletionDelay == 0 {
		cfg.DeletionDelay = DefaultDeletionDelay
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var events EventConfigurations
	err := db.Update(func(tx *bolt.Tx) error {
		indexed := tx.Bucket(bucketPending) != nil
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if !indexed { // a data directory from before the index
			if err := indexPending(tx); err != nil {
				return err
			}
		}
		var err error
		events, err = loadEvents(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jobsvc: %w", err)
	}
	s := &Service{db: db, cfg: cfg, log: log, kick: make(chan struct{}, 1), limit: newLimiter(cfg.DeviceRequestRate, cfg.DeviceRequestBurst)}
	s.watchers = map[*Watcher]bool{}
	s.events.Store(&events)
	return s, nil
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
	changes    changeLog
}

// unchanged reports whether the transaction holds no change to commit: no
// dirty job or state, no progress to settle, no timer moved, no change or
// message recorded.
func (t *txn) unchanged() bool {
	return len(t.dirtyJobs) == 0 && len(t.dirtyState) == 0 && len(t.touched) == 0 && !t.timers &&
		len(t.changes.order) == 0 && len(t.msgs) == 0
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
	if j, ok := t.s.jobs.get(id, b); ok {
		t.jobs[id] = &j
		return &j, true
	}
	var j Job
	if json.Unmarshal(b, &j) != nil {
		return nil, false
	}
	defer func() { t.s.jobs.put(id, b, j) }()
	if j.TargetSelection == "" {
		j.TargetSelection = Snapshot
	}
	if j.Document == "" && len(j.LegacyDocument) > 0 {
		// Stored by an earlier version, compacted: the exact text is lost.
		j.Document, j.LegacyDocument = string(j.LegacyDocument), nil
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
	t.jobChanged(j, false)
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

// pendingExecs returns the thing's executions that are QUEUED or
// IN_PROGRESS, found through bucketPending: the cost of a device's
// get-pending, start-next or describe $next does not grow with the jobs it
// has finished.
func (t *txn) pendingExecs(thing string) ([]Execution, error) {
	var out []Execution
	prefix := []byte(thing + "\x00")
	execs := t.tx.Bucket(bucketExecs)
	c := t.tx.Bucket(bucketPending).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		v := execs.Get(k)
		if v == nil {
			return nil, fmt.Errorf("jobsvc: the pending index names execution %q, which is not stored", k)
		}
		var e Execution
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("jobsvc: stored execution %q: %w", k, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// execsAround returns what a change to a job's execution on a thing is
// weighed against (changeThing): the thing's pending executions, which
// notify and notify-next are about, and the job's latest execution
// whatever its status.
func (t *txn) execsAround(thing, jobID string) ([]Execution, error) {
	out, err := t.pendingExecs(thing)
	if err != nil {
		return nil, err
	}
	for _, e := range out {
		if e.JobID == jobID {
			return out, nil
		}
	}
	if e, ok := t.exec(thing, jobID); ok {
		out = append(out, e)
	}
	return out, nil
}

// isPending reports whether an execution in this status is pending: what
// get-pending lists and notify-next chooses from.
func isPending(s iotjobs.Status) bool {
	return s == iotjobs.StatusQueued || s == iotjobs.StatusInProgress
}

// setPending records in bucketPending whether a thing's latest execution
// of a job is pending.
func setPending(tx *bolt.Tx, thing, jobID string, pending bool) error {
	if pending {
		return tx.Bucket(bucketPending).Put(execKey(thing, jobID), nil)
	}
	return tx.Bucket(bucketPending).Delete(execKey(thing, jobID))
}

// indexPending fills bucketPending from the stored executions.
func indexPending(tx *bolt.Tx) error {
	p := tx.Bucket(bucketPending)
	return tx.Bucket(bucketExecs).ForEach(func(k, v []byte) error {
		var e struct{ Status iotjobs.Status }
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("jobsvc: stored execution %q: %w", k, err)
		}
		if isPending(e.Status) {
			return p.Put(bytes.Clone(k), nil)
		}
		return nil
	})
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
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketByJob).Put([]byte(e.JobID+"\x00"+e.Thing), nil); err != nil {
		return err
	}
	t.execChanged(e, false)
	// The index is written when pending-ness changes (QUEUED to
	// IN_PROGRESS and progress reports leave its pages clean).
	if old == nil || isPending(old.Status) != isPending(e.Status) {
		if err := setPending(t.tx, e.Thing, e.JobID, isPending(e.Status)); err != nil {
			return err
		}
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
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		keys = append(keys, bytes.Clone(k))
		var old Execution
		if json.Unmarshal(v, &old) == nil {
			t.execChanged(old, true)
		}
	}
	t.execChanged(e, true)
	for _, k := range keys {
		if err := h.Delete(k); err != nil {
			return err
		}
	}
	if err := t.tx.Bucket(bucketByJob).Delete([]byte(e.JobID + "\x00" + e.Thing)); err != nil {
		return err
	}
	if err := setPending(t.tx, e.Thing, e.JobID, false); err != nil {
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
	doc, err := substitutePresigned([]byte(j.Document), t.s.cfg.Presign, j.presignExpiry())
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
			t.execEvent(e, executionEventOp(e.Status))
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
	t.notifyThing(thing, before, after)
	return nil
}

// notifyThing sends notify and notify-next when a thing's executions
// changed in a way that is due: notify when the pending set changed,
// notify-next when its head did.
func (t *txn) notifyThing(thing string, before, after []Execution) {
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
}

// setExec replaces one execution of a thing.
func (t *txn) setExec(e Execution) error {
	before, err := t.execsAround(e.Thing, e.JobID)
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
	if st.Waiting > 0 && j.RolloutStopped {
		// The schedule's end time stopped the rollout: who waits gets none.
		if _, err := t.dequeue(id, -1); err != nil {
			return err
		}
	}
	if st.Waiting > 0 {
		var windows []window
		if j.Scheduling != nil {
			// Checked at creation; an error here cannot happen.
			windows, _ = parseWindows(j.Scheduling.MaintenanceWindows)
		}
		if open, _ := openWindow(windows, t.now); !open {
			// Outside every maintenance window: nothing is released until
			// the next one opens.
			st.WakeAt = nextWindow(windows, t.now)
			t.markState(id)
		} else {
			n, rs, wake := rolloutStep(j.Rollout, st.Rollout, t.now, st.Waiting, st.Counts[iotjobs.StatusSucceeded])
			st.Rollout, st.WakeAt = rs, wake
			if n < st.Waiting {
				st.WakeAt = releaseWake(windows, wake)
				if st.WakeAt.IsZero() || !st.WakeAt.After(t.now) {
					// The window closes before the rollout's next minute:
					// look again when the next one opens.
					st.WakeAt = releaseWake(windows, t.now.Add(time.Minute))
				}
			}
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
		}
	} else if !st.WakeAt.IsZero() {
		st.WakeAt = time.Time{}
		t.markState(id)
	}
	if j.TargetSelection == Snapshot && st.Waiting == 0 && st.Counts[iotjobs.StatusQueued]+st.Counts[iotjobs.StatusInProgress] == 0 {
		j.Status, j.CompletedAt, j.LastUpdatedAt = JobCompleted, t.now, t.now
		t.markJob(j)
		t.jobEvent(j, JobEventCompleted)
	}
	return nil
}

// AbortReasonCode is the reasonCode a job canceled by its abort
// configuration gets; its comment says which criterion was met.
const AbortReasonCode = "ABORT_CRITERIA_MET"

// abort cancels a job whose abort criteria were met: its QUEUED executions
// and the things still waiting for the rollout.
func (t *txn) abort(j *Job, a AbortCriteria) error {
	st, err := t.state(j.ID)
	if err != nil {
		return err
	}
	executed := st.Counts.executed()
	comment := fmt.Sprintf("Job aborted by its abortConfig: %d of %d executed things ended %s, reaching thresholdPercentage %g with minNumberOfExecutedThings %d",
		st.Counts.failures(a.FailureType), executed, a.FailureType, a.ThresholdPercentage, a.MinNumberOfExecutedThings)
	return t.cancelJob(j, false, comment, AbortReasonCode)
}

// cancelJob marks the job CANCELED and cancels its QUEUED executions (and,
// with force, its IN_PROGRESS ones); things waiting for the rollout get no
// execution. The cancellation_in_progress event comes first, then canceled,
// as on AWS (where the cancellation takes a while).
func (t *txn) cancelJob(j *Job, force bool, comment, reason string) error {
	wasCanceled := j.Status == JobCanceled
	if comment != "" {
		j.Comment = comment
	}
	if reason != "" {
		j.ReasonCode = reason
	}
	j.LastUpdatedAt = t.now
	if !wasCanceled {
		t.jobEvent(j, JobEventCancellationInProgress)
	}
	if err := t.unschedule(j); err != nil {
		return err
	}
	j.Status = JobCanceled
	j.ForceCanceled = j.ForceCanceled || force
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
		t.jobEvent(j, JobEventCanceled)
	}
	return nil
}

// unschedule removes a job's start and end timers.
func (t *txn) unschedule(j *Job) error {
	if j.Scheduling == nil {
		return nil
	}
	sc, err := readSchedule(j.Scheduling)
	if err != nil {
		return nil // cannot be: it was checked at creation
	}
	if !sc.start.IsZero() && j.Status == JobScheduled {
		if err := t.moveTimer(sc.start, time.Time{}, timerStart, j.ID); err != nil {
			return err
		}
	}
	if !sc.end.IsZero() {
		if err := t.moveTimer(sc.end, time.Time{}, timerEnd, j.ID); err != nil {
			return err
		}
	}
	return nil
}

// commit runs f in a write transaction, settles the jobs it touched, and
// publishes the messages and the changes after the commit. The caller holds
// s.mu.
func (s *Service) commit(f func(t *txn) error) error {
	var (
		t       *txn
		changes []Change
	)
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
		var err error
		changes, err = t.numberChanges()
		return err
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
	s.deliver(changes)
	return nil
}

// update commits f with the other requests of the moment (see
// commitGrouped); the caller must not hold s.mu.
func (s *Service) update(f func(t *txn) error) error {
	return s.commitGrouped(f)
}

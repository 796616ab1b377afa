package jobsvc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

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
	// goes to the topic's subscribers.
	ClientID string
}

// Publisher delivers the service's messages. The broker implements it.
// Publish must not call back into the Service.
type Publisher interface {
	Publish(m Message)
}

// Config configures the service.
type Config struct {
	Region    string
	AccountID string
	Clock     clock.Clock
}

// Errors of the control-plane methods.
var (
	ErrNotFound = errors.New("resource not found")
	ErrExists   = errors.New("resource already exists")
	ErrInvalid  = errors.New("invalid request")
	ErrConflict = errors.New("conflicting state")
)

var (
	bucketJobs  = []byte("jobs.jobs")
	bucketExecs = []byte("jobs.executions") // thing \x00 jobId → Execution
	bucketByJob = []byte("jobs.byjob")      // jobId \x00 thing → nothing
)

// Service is the Jobs service. It is safe for concurrent use.
type Service struct {
	db  *bolt.DB
	cfg Config
	pub atomic.Pointer[Publisher]
	mu  sync.Mutex // serialises state changes and their notifications
}

// Open prepares the service's buckets in db.
func Open(db *bolt.DB, cfg Config) (*Service, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketJobs, bucketExecs, bucketByJob} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("jobsvc: %w", err)
	}
	return &Service{db: db, cfg: cfg}, nil
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

func execKey(thing, job string) []byte { return []byte(thing + "\x00" + job) }

// txn is one state change: executions read and written, messages to send.
type txn struct {
	tx   *bolt.Tx
	s    *Service
	msgs []Message
	jobs map[string]*Job
}

func (t *txn) job(id string) (*Job, bool) {
	if j, ok := t.jobs[id]; ok {
		return j, true
	}
	b := t.tx.Bucket(bucketJobs).Get([]byte(id))
	if b == nil {
		return nil, false
	}
	var j Job
	if json.Unmarshal(b, &j) != nil {
		return nil, false
	}
	if t.jobs == nil {
		t.jobs = map[string]*Job{}
	}
	t.jobs[id] = &j
	return &j, true
}

func (t *txn) putJob(j *Job) error {
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if t.jobs != nil {
		t.jobs[j.ID] = j
	}
	return t.tx.Bucket(bucketJobs).Put([]byte(j.ID), b)
}

// thingExecs returns every execution of a thing.
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

func (t *txn) putExec(e Execution) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketByJob).Put([]byte(e.JobID+"\x00"+e.Thing), nil); err != nil {
		return err
	}
	return t.tx.Bucket(bucketExecs).Put(execKey(e.Thing, e.JobID), b)
}

func (t *txn) send(topic iotjobs.Topic, v any, client string) {
	t.msgs = append(t.msgs, Message{Topic: topic.String(), Payload: iotjobs.Encode(v), ClientID: client})
}

// changeThing replaces a thing's executions by after (those that differ are
// written) and queues the notifications the change calls for.
func (t *txn) changeThing(thing string, before, after []Execution) error {
	old := map[string]Execution{}
	for _, e := range before {
		old[e.JobID] = e
	}
	for _, e := range after {
		if o, ok := old[e.JobID]; ok && o.VersionNumber == e.VersionNumber && o.Status == e.Status {
			continue
		}
		if err := t.putExec(e); err != nil {
			return err
		}
		if e.Status.Terminal() {
			if err := t.maybeComplete(e.JobID); err != nil {
				return err
			}
		}
	}
	now := t.s.cfg.Clock.Now()
	if pendingKey(before) != pendingKey(after) {
		t.send(iotjobs.NotifyTopic(thing), notifyMessage(after, now), "")
	}
	if headKey(before) != headKey(after) {
		m := iotjobs.NotifyNextMessage{Timestamp: now.Unix()}
		if h := next(after); h != nil {
			var doc json.RawMessage
			if j, ok := t.job(h.JobID); ok {
				doc = j.Document
			}
			m.Execution = h.Wire(doc)
		}
		t.send(iotjobs.NotifyNextTopic(thing), m, "")
	}
	return nil
}

// maybeComplete marks a job COMPLETED when all its executions are terminal.
func (t *txn) maybeComplete(jobID string) error {
	j, ok := t.job(jobID)
	if !ok || j.Status != JobInProgress {
		return nil
	}
	prefix := []byte(jobID + "\x00")
	c := t.tx.Bucket(bucketByJob).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		thing := strings.TrimPrefix(string(k), string(prefix))
		b := t.tx.Bucket(bucketExecs).Get(execKey(thing, jobID))
		var e Execution
		if b == nil || json.Unmarshal(b, &e) != nil {
			continue
		}
		if !e.Status.Terminal() {
			return nil
		}
	}
	now := t.s.cfg.Clock.Now().UTC()
	j.Status, j.CompletedAt, j.LastUpdatedAt = JobCompleted, now, now
	return t.putJob(j)
}

// update runs f in a write transaction and publishes its messages after the
// commit.
func (s *Service) update(f func(t *txn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &txn{s: s}
	err := s.db.Update(func(tx *bolt.Tx) error {
		t.tx = tx
		return f(t)
	})
	if err != nil {
		return err
	}
	s.publish(t.msgs)
	return nil
}

// JobSpec describes a job to create.
type JobSpec struct {
	JobID       string
	Things      []string // target thing names
	Document    []byte
	Description string
}

// CreateJob creates a snapshot job and queues an execution on each target.
func (s *Service) CreateJob(spec JobSpec) (Job, error) {
	if err := iotjobs.ValidateJobID(spec.JobID); err != nil {
		return Job{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(spec.Document) > iotjobs.MaxJobDocumentSize {
		return Job{}, fmt.Errorf("%w: the job document has %d bytes; at most %d are allowed", ErrInvalid, len(spec.Document), iotjobs.MaxJobDocumentSize)
	}
	var probe map[string]any
	if err := json.Unmarshal(spec.Document, &probe); err != nil {
		return Job{}, fmt.Errorf("%w: the job document must be a JSON object: %v", ErrInvalid, err)
	}
	if len(spec.Things) == 0 {
		return Job{}, fmt.Errorf("%w: a job needs at least one target", ErrInvalid)
	}
	things := append([]string(nil), spec.Things...)
	sort.Strings(things)
	for i, th := range things {
		if err := iotjobs.ValidateThingName(th); err != nil {
			return Job{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if i > 0 && things[i-1] == th {
			return Job{}, fmt.Errorf("%w: thing %s is targeted twice", ErrInvalid, th)
		}
	}
	now := s.cfg.Clock.Now().UTC()
	job := Job{ID: spec.JobID, ARN: s.JobARN(spec.JobID), Description: spec.Description, Document: json.RawMessage(spec.Document),
		Targets: things, TargetSelection: "SNAPSHOT", Status: JobInProgress, CreatedAt: now, LastUpdatedAt: now}
	err := s.update(func(t *txn) error {
		if _, exists := t.job(job.ID); exists {
			return fmt.Errorf("%w: job %s", ErrExists, job.ID)
		}
		if err := t.putJob(&job); err != nil {
			return err
		}
		for _, th := range things {
			before, err := t.thingExecs(th)
			if err != nil {
				return err
			}
			seq, _ := t.tx.Bucket(bucketExecs).NextSequence()
			e := Execution{JobID: job.ID, Thing: th, Status: iotjobs.StatusQueued, QueuedAt: now, LastUpdatedAt: now,
				VersionNumber: 1, ExecutionNumber: 1, Seq: seq}
			if err := t.changeThing(th, before, append(before, e)); err != nil {
				return err
			}
		}
		return nil
	})
	return job, err
}

// DescribeJob returns a job.
func (s *Service) DescribeJob(id string) (Job, error) {
	var j Job
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs).Get([]byte(id))
		if b == nil {
			return fmt.Errorf("%w: job %s", ErrNotFound, id)
		}
		return json.Unmarshal(b, &j)
	})
	return j, err
}

// ListJobs returns every job, oldest first.
func (s *Service) ListJobs() ([]Job, error) {
	var out []Job
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJobs).ForEach(func(_, v []byte) error {
			var j Job
			if err := json.Unmarshal(v, &j); err != nil {
				return err
			}
			out = append(out, j)
			return nil
		})
	})
	sort.SliceStable(out, func(i, k int) bool { return out[i].CreatedAt.Before(out[k].CreatedAt) })
	return out, err
}

// DescribeExecution returns the execution of a job on a thing.
func (s *Service) DescribeExecution(jobID, thing string) (Execution, error) {
	var e Execution
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketExecs).Get(execKey(thing, jobID))
		if b == nil {
			return fmt.Errorf("%w: job %s has no execution on %s", ErrNotFound, jobID, thing)
		}
		return json.Unmarshal(b, &e)
	})
	return e, err
}

// ListExecutionsForJob returns a job's executions, by thing name.
func (s *Service) ListExecutionsForJob(jobID string) ([]Execution, error) {
	var out []Execution
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketJobs).Get([]byte(jobID)) == nil {
			return fmt.Errorf("%w: job %s", ErrNotFound, jobID)
		}
		prefix := []byte(jobID + "\x00")
		c := tx.Bucket(bucketByJob).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			thing := strings.TrimPrefix(string(k), string(prefix))
			var e Execution
			if b := tx.Bucket(bucketExecs).Get(execKey(thing, jobID)); b != nil && json.Unmarshal(b, &e) == nil {
				out = append(out, e)
			}
		}
		return nil
	})
	return out, err
}

// ListExecutionsForThing returns a thing's executions, oldest first.
func (s *Service) ListExecutionsForThing(thing string) ([]Execution, error) {
	var out []Execution
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = (&txn{tx: tx, s: s}).thingExecs(thing)
		return err
	})
	sort.SliceStable(out, func(i, k int) bool { return out[i].Seq < out[k].Seq })
	return out, err
}

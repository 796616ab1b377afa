package jobsvc

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/awsfota/awsfota/iotjobs"
	bolt "go.etcd.io/bbolt"
)

// HandleDevice serves one message a device published in its jobs namespace:
// thing is the thing the connection acts as, clientID the connection to
// answer. Replies go to that client only; notifications to subscribers.
// Messages outside the jobs request API (replies and notifications a client
// publishes itself) are ignored.
func (s *Service) HandleDevice(thing, clientID, topic string, payload []byte) {
	t, err := iotjobs.ParseTopic(topic)
	if errors.Is(err, iotjobs.ErrUnknownJobsTopic) && t.Thing == thing {
		r := reject(iotjobs.CodeInvalidTopic, "%s is not an AWS IoT Jobs API topic: use get, start-next, {jobId}/get or {jobId}/update", topic)
		r.ClientToken, r.Timestamp = tokenOf(payload), s.cfg.Clock.Now().Unix()
		s.mu.Lock()
		s.publish([]Message{{Topic: topic + "/rejected", Payload: iotjobs.Encode(r), ClientID: clientID}})
		s.mu.Unlock()
		return
	}
	if err != nil || t.Thing != thing || t.Reply != iotjobs.ReplyNone {
		return
	}
	if r := s.throttle(thing); r != nil {
		r.ClientToken, r.Timestamp = tokenOf(payload), s.cfg.Clock.Now().Unix()
		s.mu.Lock()
		s.publish([]Message{{Topic: t.Rejected().String(), Payload: iotjobs.Encode(r), ClientID: clientID}})
		s.mu.Unlock()
		return
	}
	switch t.Op {
	case iotjobs.OpGetPending:
		var req iotjobs.GetPendingRequest
		s.serve(t, clientID, payload, &req, &req.ClientToken, readOnly, func(x *txn) (any, *iotjobs.ErrorResponse, error) {
			return s.getPending(x, thing, &req)
		})
	case iotjobs.OpStartNext:
		var req iotjobs.StartNextRequest
		s.serve(t, clientID, payload, &req, &req.ClientToken, changing, func(x *txn) (any, *iotjobs.ErrorResponse, error) {
			return s.startNext(x, thing, &req)
		})
	case iotjobs.OpDescribe:
		var req iotjobs.DescribeRequest
		s.serve(t, clientID, payload, &req, &req.ClientToken, readOnly, func(x *txn) (any, *iotjobs.ErrorResponse, error) {
			return s.describe(x, thing, t.JobID, &req)
		})
	case iotjobs.OpUpdate:
		var req iotjobs.UpdateRequest
		s.serve(t, clientID, payload, &req, &req.ClientToken, changing, func(x *txn) (any, *iotjobs.ErrorResponse, error) {
			return s.updateExec(x, thing, t.JobID, &req)
		})
	}
}

// throttle takes a request from thing's allowance; a rejection when it is
// spent.
func (s *Service) throttle(thing string) *iotjobs.ErrorResponse {
	if s.limit.allow(thing, s.cfg.Clock.Now()) {
		return nil
	}
	return reject(iotjobs.CodeRequestThrottled, "thing %s made more than %g Jobs requests a second: slow down and retry later", thing, s.cfg.DeviceRequestRate)
}

// DeviceRequest serves one Jobs device request of thing that came by
// another way than MQTT (the iot-jobs-data HTTP API): req is the decoded
// request, whose type names the operation (*iotjobs.GetPendingRequest,
// *iotjobs.StartNextRequest, *iotjobs.DescribeRequest or
// *iotjobs.UpdateRequest), jobID the job (or $next) of a describe or an
// update. It returns the
// accepted reply, or the rejection (with the code the MQTT API would
// send); the notifications the request causes go out as over MQTT. The
// error is a failure of the service itself.
func (s *Service) DeviceRequest(thing, jobID string, req any) (any, *iotjobs.ErrorResponse, error) {
	if r := s.throttle(thing); r != nil {
		return nil, r, nil
	}
	var f func(x *txn) (any, *iotjobs.ErrorResponse, error)
	token, kind := "", changing
	switch r := req.(type) {
	case *iotjobs.GetPendingRequest:
		f, token, kind = func(x *txn) (any, *iotjobs.ErrorResponse, error) { return s.getPending(x, thing, r) }, r.ClientToken, readOnly
	case *iotjobs.StartNextRequest:
		f, token = func(x *txn) (any, *iotjobs.ErrorResponse, error) { return s.startNext(x, thing, r) }, r.ClientToken
	case *iotjobs.DescribeRequest:
		f, token, kind = func(x *txn) (any, *iotjobs.ErrorResponse, error) { return s.describe(x, thing, jobID, r) }, r.ClientToken, readOnly
	case *iotjobs.UpdateRequest:
		f, token = func(x *txn) (any, *iotjobs.ErrorResponse, error) { return s.updateExec(x, thing, jobID, r) }, r.ClientToken
	default:
		return nil, nil, fmt.Errorf("jobsvc: %T is not a Jobs device request", req)
	}
	if err := iotjobs.ValidateClientToken(token); err != nil {
		return nil, reject(iotjobs.CodeInvalidRequest, "%v", err), nil
	}
	return s.run(f, nil, kind)
}

// requestKind tells run whether a request is expected to change state.
type requestKind bool

const (
	readOnly requestKind = true  // get pending, describe: answered from a read
	changing requestKind = false // start next, update: committed
)

// run commits op; a rejection changes nothing. reply, when set, makes the
// messages that go out ahead of the notifications the change caused (the
// MQTT reply). A readOnly op is first tried in a read transaction
// (answerFromRead). The caller must not hold s.mu: requests are committed
// in groups (commitGrouped).
func (s *Service) run(op func(x *txn) (any, *iotjobs.ErrorResponse, error), reply func(resp any) []Message, kind requestKind) (any, *iotjobs.ErrorResponse, error) {
	if kind == readOnly {
		if resp, rej, ok := s.answerFromRead(op, reply); ok {
			return resp, rej, nil
		}
	}
	var (
		resp any
		rej  *iotjobs.ErrorResponse
	)
	err := s.commitGrouped(func(x *txn) error {
		var err error
		resp, rej, err = op(x)
		if err != nil {
			return err
		}
		if rej != nil {
			return errRollback // a rejected request changes nothing
		}
		if reply != nil {
			x.msgs = append(reply(resp), x.msgs...)
		}
		return nil
	})
	if errors.Is(err, errRollback) {
		return nil, rej, nil
	}
	return resp, nil, err
}

// answerFromRead runs op in a read transaction and, when it changed
// nothing, sends its reply; ok is false when op must be committed instead
// (it tried to write, or left work for a commit). A read costs no write
// transaction and no fsync: a fleet's connection storm asks get-pending and
// describe of every device, and committing each group of them cost the
// cloud two fsyncs and a tenth of its CPU.
//
// It holds s.mu, as a commit does: no commit is under way while it reads,
// so what it sees is durable (bbolt shows a commit's meta page to readers
// before it is synced), and its reply goes out in order with the
// notifications of the commits around it, as if it had been committed.
func (s *Service) answerFromRead(op func(x *txn) (any, *iotjobs.ErrorResponse, error), reply func(resp any) []Message) (resp any, rej *iotjobs.ErrorResponse, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t *txn
	err := s.db.View(func(tx *bolt.Tx) error {
		t = newTxn(s, tx, s.cfg.Clock.Now().UTC())
		var err error
		resp, rej, err = op(t)
		return err
	})
	if err != nil || !t.unchanged() {
		return nil, nil, false
	}
	if rej != nil {
		return nil, rej, true
	}
	if reply != nil {
		s.publish(reply(resp))
	}
	return resp, nil, true
}

// tokenOf digs the clientToken out of a payload that did not decode, so
// that even a rejection of bad JSON can be matched by the device.
func tokenOf(payload []byte) string {
	var tok struct {
		ClientToken string `json:"clientToken"`
	}
	json.Unmarshal(payload, &tok)
	return tok.ClientToken
}

// serve decodes a request, runs op in a transaction and sends the reply
// (accepted or rejected) to the requester, then the notifications.
func (s *Service) serve(t iotjobs.Topic, client string, payload []byte, req any, token *string, kind requestKind,
	op func(x *txn) (any, *iotjobs.ErrorResponse, error)) {
	rejected := func(r *iotjobs.ErrorResponse, tok string) {
		r.ClientToken, r.Timestamp = tok, s.cfg.Clock.Now().Unix()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.publish([]Message{{Topic: t.Rejected().String(), Payload: iotjobs.Encode(r), ClientID: client}})
	}
	if len(payload) > 0 && (!utf8.Valid(payload) || !json.Valid(payload)) {
		rejected(reject(iotjobs.CodeInvalidJSON, "the request is not valid UTF-8 JSON"), tokenOf(payload))
		return
	}
	if err := iotjobs.Decode(payload, req); err != nil {
		rejected(reject(iotjobs.CodeInvalidRequest, "%v", err), tokenOf(payload))
		return
	}
	if err := iotjobs.ValidateClientToken(*token); err != nil {
		rejected(reject(iotjobs.CodeInvalidRequest, "%v", err), "")
		return
	}
	// The reply goes first, then the notifications the change caused.
	_, rej, err := s.run(op, func(resp any) []Message {
		return []Message{{Topic: t.Accepted().String(), Payload: iotjobs.Encode(resp), ClientID: client}}
	}, kind)
	switch {
	case rej != nil:
		rejected(rej, *token)
	case err != nil:
		s.log.Error("jobs request failed", "topic", t.String(), "err", err)
		rejected(reject(iotjobs.CodeInternalError, "the local Jobs service failed: %v", err), *token)
	}
}

// errRollback aborts a transaction whose request was rejected.
var errRollback = errors.New("rejected: roll back")

func (s *Service) getPending(x *txn, thing string, req *iotjobs.GetPendingRequest) (any, *iotjobs.ErrorResponse, error) {
	execs, err := x.pendingExecs(thing)
	if err != nil {
		return nil, nil, err
	}
	ip, q := pending(execs)
	resp := iotjobs.GetPendingResponse{InProgressJobs: []iotjobs.JobExecutionSummary{}, QueuedJobs: []iotjobs.JobExecutionSummary{},
		Timestamp: x.now.Unix(), ClientToken: req.ClientToken}
	for _, e := range ip {
		resp.InProgressJobs = append(resp.InProgressJobs, e.Summary())
	}
	for _, e := range q {
		resp.QueuedJobs = append(resp.QueuedJobs, e.Summary())
	}
	return resp, nil, nil
}

// inProgressTimeout is the job's in-progress timeout (0: none).
func (x *txn) inProgressTimeout(jobID string) time.Duration {
	if j, ok := x.job(jobID); ok && j.Timeout != nil {
		return time.Duration(j.Timeout.InProgressTimeoutInMinutes) * time.Minute
	}
	return 0
}

func (s *Service) startNext(x *txn, thing string, req *iotjobs.StartNextRequest) (any, *iotjobs.ErrorResponse, error) {
	if req.StatusDetails != nil {
		if err := iotjobs.ValidateStatusDetails(req.StatusDetails); err != nil {
			return nil, reject(iotjobs.CodeInvalidRequest, "%v", err), nil
		}
	}
	if r := validStepTimeout(req.StepTimeoutInMinutes, false); r != nil {
		return nil, r, nil
	}
	execs, err := x.pendingExecs(thing)
	if err != nil {
		return nil, nil, err
	}
	resp := iotjobs.ExecutionResponse{Timestamp: x.now.Unix(), ClientToken: req.ClientToken}
	h := next(execs)
	if h == nil {
		return resp, nil, nil
	}
	if h.Status == iotjobs.StatusQueued {
		upd := iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress, StatusDetails: req.StatusDetails, StepTimeoutInMinutes: req.StepTimeoutInMinutes}
		ne, rej := applyUpdate(*h, upd, x.inProgressTimeout(h.JobID), x.now)
		if rej != nil {
			return nil, rej, nil
		}
		if err := x.setExec(ne); err != nil {
			return nil, nil, err
		}
		h = &ne
	}
	resp.Execution = h.Wire(x.document(h.JobID), x.now)
	return resp, nil, nil
}

func (s *Service) describe(x *txn, thing, jobID string, req *iotjobs.DescribeRequest) (any, *iotjobs.ErrorResponse, error) {
	resp := iotjobs.ExecutionResponse{Timestamp: x.now.Unix(), ClientToken: req.ClientToken}
	var e Execution
	if jobID == iotjobs.NextJobID {
		execs, err := x.pendingExecs(thing)
		if err != nil {
			return nil, nil, err
		}
		h := next(execs)
		if h == nil {
			return resp, nil, nil
		}
		e = *h
	} else {
		cur, ok := x.exec(thing, jobID)
		if !ok {
			return nil, reject(iotjobs.CodeResourceNotFound, "job %s has no execution on thing %s", jobID, thing), nil
		}
		e = cur
	}
	if req.ExecutionNumber != nil && int64(*req.ExecutionNumber) != e.ExecutionNumber {
		old, ok := history(x.tx, thing, e.JobID, int64(*req.ExecutionNumber))
		if !ok {
			return nil, reject(iotjobs.CodeResourceNotFound, "job %s has no execution number %d on thing %s", e.JobID, *req.ExecutionNumber, thing), nil
		}
		e = old
	}
	if e.Status.Terminal() {
		// As AWS documents it: a describe of an execution in a terminal
		// state. The device learns the status by updating it
		// (InvalidStateTransition carries executionState).
		return nil, reject(iotjobs.CodeTerminalStateReached, "the execution %d of job %s on %s is in a terminal state (%s): it can no longer change", e.ExecutionNumber, e.JobID, thing, e.Status), nil
	}
	var doc json.RawMessage
	if req.IncludeJobDocument == nil || *req.IncludeJobDocument {
		doc = x.document(e.JobID)
	}
	resp.Execution = e.Wire(doc, x.now)
	return resp, nil, nil
}

func (s *Service) updateExec(x *txn, thing, jobID string, req *iotjobs.UpdateRequest) (any, *iotjobs.ErrorResponse, error) {
	if jobID == iotjobs.NextJobID {
		return nil, reject(iotjobs.CodeInvalidRequest, "$next cannot be updated: name the job"), nil
	}
	cur, ok := x.exec(thing, jobID)
	if !ok {
		return nil, reject(iotjobs.CodeResourceNotFound, "job %s has no execution on thing %s", jobID, thing), nil
	}
	if req.ExecutionNumber != nil && int64(*req.ExecutionNumber) != cur.ExecutionNumber {
		if old, ok := history(x.tx, thing, jobID, int64(*req.ExecutionNumber)); ok {
			// An earlier execution, replaced by a retry or a re-run: it is
			// terminal.
			cur = old
		}
	}
	ne, rej := applyUpdate(cur, *req, x.inProgressTimeout(jobID), x.now)
	if rej != nil {
		return nil, rej, nil
	}
	if err := x.setExec(ne); err != nil {
		return nil, nil, err
	}
	resp := iotjobs.UpdateResponse{Timestamp: x.now.Unix(), ClientToken: req.ClientToken}
	if req.IncludeJobExecutionState {
		resp.ExecutionState = ne.State()
	}
	if req.IncludeJobDocument {
		resp.JobDocument = x.document(jobID)
	}
	return resp, nil, nil
}

package jobsvc

import (
	"encoding/json"
	"errors"

	"github.com/awsfota/awsfota/iotjobs"
)

// HandleDevice serves one message a device published in its jobs namespace:
// thing is the thing the connection acts as, clientID the connection to
// answer. Replies go to that client only; notifications to subscribers.
// Messages outside the jobs request API (replies and notifications a client
// publishes itself) are ignored.
func (s *Service) HandleDevice(thing, clientID, topic string, payload []byte) {
	t, err := iotjobs.ParseTopic(topic)
	if errors.Is(err, iotjobs.ErrUnknownJobsTopic) && t.Thing == thing {
		var tok struct {
			ClientToken string `json:"clientToken"`
		}
		json.Unmarshal(payload, &tok)
		r := reject(iotjobs.CodeInvalidTopic, "%s is not an AWS IoT Jobs API topic", topic)
		r.ClientToken, r.Timestamp = tok.ClientToken, s.cfg.Clock.Now().Unix()
		s.publish([]Message{{Topic: topic + "/rejected", Payload: iotjobs.Encode(r), ClientID: clientID}})
		return
	}
	if err != nil || t.Thing != thing || t.Reply != iotjobs.ReplyNone {
		return
	}
	switch t.Op {
	case iotjobs.OpGetPending:
		var req iotjobs.GetPendingRequest
		s.serve(t, clientID, payload, &req, func(x *txn, now int64) (any, *iotjobs.ErrorResponse, error) {
			execs, err := x.thingExecs(thing)
			if err != nil {
				return nil, nil, err
			}
			ip, q := pending(execs)
			resp := iotjobs.GetPendingResponse{InProgressJobs: []iotjobs.JobExecutionSummary{}, QueuedJobs: []iotjobs.JobExecutionSummary{},
				Timestamp: now, ClientToken: req.ClientToken}
			for _, e := range ip {
				resp.InProgressJobs = append(resp.InProgressJobs, e.Summary())
			}
			for _, e := range q {
				resp.QueuedJobs = append(resp.QueuedJobs, e.Summary())
			}
			return resp, nil, nil
		}, func() string { return req.ClientToken })
	case iotjobs.OpStartNext:
		var req iotjobs.StartNextRequest
		s.serve(t, clientID, payload, &req, func(x *txn, now int64) (any, *iotjobs.ErrorResponse, error) {
			return s.startNext(x, thing, &req, now)
		}, func() string { return req.ClientToken })
	case iotjobs.OpDescribe:
		var req iotjobs.DescribeRequest
		s.serve(t, clientID, payload, &req, func(x *txn, now int64) (any, *iotjobs.ErrorResponse, error) {
			return s.describe(x, thing, t.JobID, &req, now)
		}, func() string { return req.ClientToken })
	case iotjobs.OpUpdate:
		var req iotjobs.UpdateRequest
		s.serve(t, clientID, payload, &req, func(x *txn, now int64) (any, *iotjobs.ErrorResponse, error) {
			return s.updateExec(x, thing, t.JobID, &req, now)
		}, func() string { return req.ClientToken })
	}
}

// serve decodes a request, runs op in a transaction and sends the reply
// (accepted or rejected) to the requester, then the notifications.
func (s *Service) serve(t iotjobs.Topic, client string, payload []byte, req any,
	op func(x *txn, now int64) (any, *iotjobs.ErrorResponse, error), token func() string) {
	now := s.cfg.Clock.Now().Unix()
	if err := iotjobs.Decode(payload, req); err != nil {
		var tok struct {
			ClientToken string `json:"clientToken"`
		}
		json.Unmarshal(payload, &tok)
		code := iotjobs.CodeInvalidJSON
		if json.Valid(payload) || len(payload) == 0 {
			code = iotjobs.CodeInvalidRequest
		}
		r := reject(code, "%v", err)
		r.ClientToken, r.Timestamp = tok.ClientToken, now
		s.publish([]Message{{Topic: t.Rejected().String(), Payload: iotjobs.Encode(r), ClientID: client}})
		return
	}
	if err := iotjobs.ValidateClientToken(token()); err != nil {
		r := reject(iotjobs.CodeInvalidRequest, "%v", err)
		r.Timestamp = now
		s.publish([]Message{{Topic: t.Rejected().String(), Payload: iotjobs.Encode(r), ClientID: client}})
		return
	}
	var (
		resp any
		rej  *iotjobs.ErrorResponse
	)
	err := s.update(func(x *txn) error {
		var err error
		resp, rej, err = op(x, now)
		if err != nil {
			return err
		}
		if rej != nil {
			return errRollback // a rejected request changes nothing
		}
		// The reply goes first, then the notifications the change caused.
		reply := Message{Topic: t.Accepted().String(), Payload: iotjobs.Encode(resp), ClientID: client}
		x.msgs = append([]Message{reply}, x.msgs...)
		return nil
	})
	switch {
	case errors.Is(err, errRollback):
		rej.ClientToken, rej.Timestamp = token(), now
		s.publish([]Message{{Topic: t.Rejected().String(), Payload: iotjobs.Encode(rej), ClientID: client}})
	case err != nil:
		r := reject(iotjobs.CodeInternalError, "the local Jobs service failed: %v", err)
		r.ClientToken, r.Timestamp = token(), now
		s.publish([]Message{{Topic: t.Rejected().String(), Payload: iotjobs.Encode(r), ClientID: client}})
	}
}

// errRollback aborts a transaction whose request was rejected.
var errRollback = errors.New("rejected: roll back")

func (s *Service) startNext(x *txn, thing string, req *iotjobs.StartNextRequest, now int64) (any, *iotjobs.ErrorResponse, error) {
	if req.StatusDetails != nil {
		if err := iotjobs.ValidateStatusDetails(req.StatusDetails); err != nil {
			return nil, reject(iotjobs.CodeInvalidRequest, "%v", err), nil
		}
	}
	execs, err := x.thingExecs(thing)
	if err != nil {
		return nil, nil, err
	}
	resp := iotjobs.ExecutionResponse{Timestamp: now, ClientToken: req.ClientToken}
	h := next(execs)
	if h == nil {
		return resp, nil, nil
	}
	if h.Status == iotjobs.StatusQueued {
		upd := iotjobs.UpdateRequest{Status: iotjobs.StatusInProgress, StatusDetails: req.StatusDetails, StepTimeoutInMinutes: req.StepTimeoutInMinutes}
		ne, rej := applyUpdate(*h, upd, s.cfg.Clock.Now().UTC())
		if rej != nil {
			return nil, rej, nil
		}
		after := replace(execs, ne)
		if err := x.changeThing(thing, execs, after); err != nil {
			return nil, nil, err
		}
		h = &ne
	}
	j, _ := x.job(h.JobID)
	resp.Execution = h.Wire(docOf(j))
	return resp, nil, nil
}

func docOf(j *Job) json.RawMessage {
	if j == nil {
		return nil
	}
	return j.Document
}

func replace(execs []Execution, e Execution) []Execution {
	out := make([]Execution, len(execs))
	for i, x := range execs {
		if x.JobID == e.JobID {
			x = e
		}
		out[i] = x
	}
	return out
}

func (s *Service) describe(x *txn, thing, jobID string, req *iotjobs.DescribeRequest, now int64) (any, *iotjobs.ErrorResponse, error) {
	execs, err := x.thingExecs(thing)
	if err != nil {
		return nil, nil, err
	}
	resp := iotjobs.ExecutionResponse{Timestamp: now, ClientToken: req.ClientToken}
	var e *Execution
	if jobID == iotjobs.NextJobID {
		e = next(execs)
		if e == nil {
			return resp, nil, nil
		}
	} else {
		for i := range execs {
			if execs[i].JobID == jobID {
				e = &execs[i]
			}
		}
		if e == nil {
			return nil, reject(iotjobs.CodeResourceNotFound, "job %s has no execution on thing %s", jobID, thing), nil
		}
	}
	if req.ExecutionNumber != nil && int64(*req.ExecutionNumber) != e.ExecutionNumber {
		return nil, reject(iotjobs.CodeResourceNotFound, "job %s has no execution %d on thing %s", e.JobID, *req.ExecutionNumber, thing), nil
	}
	var doc json.RawMessage
	if req.IncludeJobDocument == nil || *req.IncludeJobDocument {
		j, _ := x.job(e.JobID)
		doc = docOf(j)
	}
	resp.Execution = e.Wire(doc)
	return resp, nil, nil
}

func (s *Service) updateExec(x *txn, thing, jobID string, req *iotjobs.UpdateRequest, now int64) (any, *iotjobs.ErrorResponse, error) {
	if jobID == iotjobs.NextJobID {
		return nil, reject(iotjobs.CodeInvalidRequest, "$next cannot be updated: name the job"), nil
	}
	execs, err := x.thingExecs(thing)
	if err != nil {
		return nil, nil, err
	}
	var cur *Execution
	for i := range execs {
		if execs[i].JobID == jobID {
			cur = &execs[i]
		}
	}
	if cur == nil {
		return nil, reject(iotjobs.CodeResourceNotFound, "job %s has no execution on thing %s", jobID, thing), nil
	}
	ne, rej := applyUpdate(*cur, *req, s.cfg.Clock.Now().UTC())
	if rej != nil {
		return nil, rej, nil
	}
	if err := x.changeThing(thing, execs, replace(execs, ne)); err != nil {
		return nil, nil, err
	}
	resp := iotjobs.UpdateResponse{Timestamp: now, ClientToken: req.ClientToken}
	if req.IncludeJobExecutionState {
		resp.ExecutionState = ne.State()
	}
	if req.IncludeJobDocument {
		j, _ := x.job(jobID)
		resp.JobDocument = docOf(j)
	}
	return resp, nil, nil
}

package iotapi

import (
	"net/http"

	"github.com/awsfota/awsfota/iotjobs"
)

// The AWS IoT Jobs data plane over HTTPS (the iot-jobs-data API): what a
// device can do over MQTT, as REST-JSON requests signed with SigV4 for the
// service "iot-jobs-data". AWS serves it on a host of its own
// (DescribeEndpoint iot:Jobs); the local cloud on its HTTP port, routed by
// the signing name.

// ServiceJobsData is the signing name of the iot-jobs-data API.
const ServiceJobsData = "iot-jobs-data"

// JobsData returns the iot-jobs-data handler.
func (a *API) JobsData() http.Handler { return a.data }

func (a *API) dataRoutes() {
	a.data = http.NewServeMux()
	handle := func(pattern, op string, h handlerFunc) {
		a.data.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Amzn-RequestId", requestID())
			if err := a.authenticateAs(r, ServiceJobsData); err != nil {
				a.fail(w, r, op, err)
				return
			}
			v, err := h(r)
			if err != nil {
				a.fail(w, r, op, err)
				return
			}
			a.reply(w, v)
		})
	}
	handle("GET /things/{thingName}/jobs", "GetPendingJobExecutions", a.getPendingJobExecutions)
	handle("PUT /things/{thingName}/jobs/{jobId}", "StartNextPendingJobExecution", a.startNextPendingJobExecution)
	handle("GET /things/{thingName}/jobs/{jobId}", "DescribeJobExecution", a.describeJobExecutionData)
	handle("POST /things/{thingName}/jobs/{jobId}", "UpdateJobExecution", a.updateJobExecution)
	a.data.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, "", apiErr(http.StatusNotImplemented, "NotImplementedException",
			"the awsfota local cloud does not implement %s %s of the iot-jobs-data API (StartCommandExecution and commands are not served); see docs/local-cloud.md", r.Method, r.URL.Path))
	})
}

// dataExecution is a job execution as the iot-jobs-data API shows it: the
// document is a string, times are epoch seconds.
type dataExecution struct {
	JobID                            string                `json:"jobId"`
	ThingName                        string                `json:"thingName"`
	Status                           iotjobs.Status        `json:"status"`
	StatusDetails                    iotjobs.StatusDetails `json:"statusDetails,omitempty"`
	QueuedAt                         int64                 `json:"queuedAt,omitempty"`
	StartedAt                        int64                 `json:"startedAt,omitempty"`
	LastUpdatedAt                    int64                 `json:"lastUpdatedAt,omitempty"`
	ApproximateSecondsBeforeTimedOut *int64                `json:"approximateSecondsBeforeTimedOut,omitempty"`
	VersionNumber                    int64                 `json:"versionNumber"`
	ExecutionNumber                  int64                 `json:"executionNumber"`
	JobDocument                      string                `json:"jobDocument,omitempty"`
}

func dataExecutionOf(e *iotjobs.JobExecution) *dataExecution {
	if e == nil {
		return nil
	}
	return &dataExecution{e.JobID, e.ThingName, e.Status, e.StatusDetails, e.QueuedAt, e.StartedAt, e.LastUpdatedAt,
		e.ApproximateSecondsBeforeTimedOut, e.VersionNumber, e.ExecutionNumber, string(e.JobDocument)}
}

// deviceRequest runs a device request and maps a rejection to the
// iot-jobs-data API's error.
func (a *API) deviceRequest(r *http.Request, jobID string, req any) (any, error) {
	resp, rej, err := a.cfg.Jobs.DeviceRequest(r.PathValue("thingName"), jobID, req)
	if err != nil {
		return nil, err
	}
	if rej != nil {
		return nil, dataError(rej)
	}
	return resp, nil
}

// dataError is the iot-jobs-data error for an MQTT API rejection.
func dataError(rej *iotjobs.ErrorResponse) *apiError {
	var ae *apiError
	switch rej.Code {
	case iotjobs.CodeResourceNotFound:
		ae = notFound("%s", rej.Message)
	case iotjobs.CodeInvalidStateTransition, iotjobs.CodeVersionMismatch:
		ae = apiErr(http.StatusConflict, "InvalidStateTransitionException", "%s", rej.Message)
		ae.ExecutionState = rej.ExecutionState
	case iotjobs.CodeTerminalStateReached:
		ae = apiErr(http.StatusGone, "TerminalStateException", "%s", rej.Message)
	case iotjobs.CodeRequestThrottled:
		ae = apiErr(http.StatusTooManyRequests, "ThrottlingException", "%s", rej.Message)
	case iotjobs.CodeInternalError:
		ae = apiErr(http.StatusServiceUnavailable, "ServiceUnavailableException", "%s", rej.Message)
	default:
		ae = invalid("%s", rej.Message)
	}
	return ae
}

func (a *API) getPendingJobExecutions(r *http.Request) (any, error) {
	v, err := a.deviceRequest(r, "", &iotjobs.GetPendingRequest{})
	if err != nil {
		return nil, err
	}
	g := v.(iotjobs.GetPendingResponse)
	return struct {
		InProgressJobs []iotjobs.JobExecutionSummary `json:"inProgressJobs"`
		QueuedJobs     []iotjobs.JobExecutionSummary `json:"queuedJobs"`
	}{g.InProgressJobs, g.QueuedJobs}, nil
}

func (a *API) startNextPendingJobExecution(r *http.Request) (any, error) {
	if r.PathValue("jobId") != iotjobs.NextJobID {
		return nil, apiErr(http.StatusMethodNotAllowed, "InvalidRequestException", "PUT is StartNextPendingJobExecution, on /things/THING/jobs/$next only")
	}
	var req iotjobs.StartNextRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	req.ClientToken = ""
	v, err := a.deviceRequest(r, "", &req)
	if err != nil {
		return nil, err
	}
	return struct {
		Execution *dataExecution `json:"execution,omitempty"`
	}{dataExecutionOf(v.(iotjobs.ExecutionResponse).Execution)}, nil
}

func (a *API) describeJobExecutionData(r *http.Request) (any, error) {
	req := iotjobs.DescribeRequest{}
	if r.URL.Query().Get("includeJobDocument") != "" {
		b, err := queryBool(r, "includeJobDocument")
		if err != nil {
			return nil, err
		}
		req.IncludeJobDocument = &b
	}
	if n, ok, err := queryInt(r, "executionNumber"); err != nil {
		return nil, err
	} else if ok {
		req.ExecutionNumber = iotjobs.Ptr(n)
	}
	v, err := a.deviceRequest(r, r.PathValue("jobId"), &req)
	if err != nil {
		return nil, err
	}
	return struct {
		Execution *dataExecution `json:"execution,omitempty"`
	}{dataExecutionOf(v.(iotjobs.ExecutionResponse).Execution)}, nil
}

func (a *API) updateJobExecution(r *http.Request) (any, error) {
	var req iotjobs.UpdateRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	req.ClientToken = ""
	v, err := a.deviceRequest(r, r.PathValue("jobId"), &req)
	if err != nil {
		return nil, err
	}
	u := v.(iotjobs.UpdateResponse)
	out := struct {
		ExecutionState *iotjobs.JobExecutionState `json:"executionState,omitempty"`
		JobDocument    string                     `json:"jobDocument,omitempty"`
	}{ExecutionState: u.ExecutionState}
	if len(u.JobDocument) > 0 {
		out.JobDocument = string(u.JobDocument)
	}
	return out, nil
}

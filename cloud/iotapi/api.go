// Package iotapi is the local cloud's AWS IoT control plane: the REST-JSON
// subset of the AWS IoT API a FOTA operator uses — things, static and
// dynamic thing groups, certificates (CreateKeysAndCertificate,
// AttachThingPrincipal, UpdateCertificate, ...), jobs, job templates and
// job executions, the event configuration, DescribeEndpoint — on the same
// paths, methods, JSON field names, HTTP status codes and error types as
// AWS (taken from the aws-sdk-go-v2 service/iot serializers), so that the
// official SDKs and the AWS CLI (`--endpoint-url`) work against it
// unmodified. JobsData serves the Jobs device API over HTTPS (the
// iot-jobs-data API).
//
// Every request must carry a valid SigV4 signature (checked with
// cloud/sigv4) whose scope names the service "iot" (the SDKs) or
// "execute-api" (the AWS CLI, after the service model's signing name);
// "iot-jobs-data" for JobsData.
// Errors are answered in AWS's shape: {"message": ..., "__type": ...} with
// the error type also in the x-amzn-ErrorType header.
//
// The handler is a thin HTTP façade: the registry keeps things, groups and
// certificates, jobsvc keeps jobs, pki issues certificates; a certificate
// made INACTIVE or REVOKED has its live MQTT connections dropped through
// Config.Disconnect.
//
// It imports the standard library, clock and the cloud packages it fronts;
// cloud/* must never import device/* or sim/.
package iotapi

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/cloud/pki"
	"github.com/awsfota/awsfota/cloud/registry"
	"github.com/awsfota/awsfota/cloud/sigv4"
)

// Config configures the API.
type Config struct {
	Region    string
	AccountID string
	// Credentials are the access keys accepted in signatures.
	Credentials []sigv4.Credentials
	Clock       clock.Clock
	Registry    *registry.Registry
	Jobs        *jobsvc.Service
	CA          *pki.CA
	// Disconnect drops the live MQTT connections that authenticated with a
	// certificate (UpdateCertificate to INACTIVE or REVOKED). Optional.
	Disconnect func(certificateID string)
	// CertificateChanged is told of every change of a certificate's status
	// and of its deletion, after the registry recorded it (the local cloud
	// rewrites an external broker's revocation list). Optional.
	CertificateChanged func(certificateID string)
	// PrincipalsChanged is told when a certificate is attached to a thing
	// or detached from one, after the registry recorded it (the local cloud
	// rewrites an external broker's access list). Optional.
	PrincipalsChanged func()
	// OpenObject reads an object of the local object store, for CreateJob's
	// documentSource. Optional.
	OpenObject func(bucket, key string) (io.ReadCloser, error)
	// Endpoint returns the host names DescribeEndpoint answers with: of the
	// MQTT broker (iot:Data-ATS, iot:Data) and of the HTTP API (iot:Jobs).
	// As on AWS the answer is a host without a port: the ports are in
	// endpoints.json.
	Endpoint func(endpointType string) string
	Logger   *slog.Logger
}

// API is the AWS IoT control-plane handler. It is safe for concurrent use.
type API struct {
	cfg      Config
	log      *slog.Logger
	verifier *sigv4.Verifier
	mux      *http.ServeMux
	data     *http.ServeMux // the iot-jobs-data API
}

// Signing names accepted in the credential scope.
const (
	ServiceIoT        = "iot"
	ServiceExecuteAPI = "execute-api"
)

// New returns the API.
func New(cfg Config) (*API, error) {
	if cfg.Registry == nil || cfg.Jobs == nil || cfg.CA == nil {
		return nil, errors.New("iotapi: a registry, a jobs service and a CA are required")
	}
	if len(cfg.Credentials) == 0 {
		return nil, errors.New("iotapi: no credentials to verify signatures with")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	creds := map[string]string{}
	for _, c := range cfg.Credentials {
		creds[c.AccessKeyID] = c.SecretAccessKey
	}
	a := &API{cfg: cfg, log: log, mux: http.NewServeMux()}
	a.verifier = &sigv4.Verifier{Region: cfg.Region, Clock: cfg.Clock, Lookup: func(id string) (string, bool) {
		s, ok := creds[id]
		return s, ok
	}}
	a.routes()
	a.dataRoutes()
	return a, nil
}

// handlerFunc serves one operation: it returns the response body (nil for
// none) or an error.
type handlerFunc func(r *http.Request) (any, error)

func (a *API) handle(pattern, op string, h handlerFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		v, err := h(r)
		if err != nil {
			a.fail(w, r, op, err)
			return
		}
		a.reply(w, v)
	})
}

func (a *API) routes() {
	// Things, groups, certificates.
	a.handle("POST /things/{thingName}", "CreateThing", a.createThing)
	a.handle("GET /things/{thingName}", "DescribeThing", a.describeThing)
	a.handle("PATCH /things/{thingName}", "UpdateThing", a.updateThing)
	a.handle("GET /things", "ListThings", a.listThings)
	a.handle("DELETE /things/{thingName}", "DeleteThing", a.deleteThing)
	a.handle("POST /thing-groups/{thingGroupName}", "CreateThingGroup", a.createThingGroup)
	a.handle("GET /thing-groups/{thingGroupName}", "DescribeThingGroup", a.describeThingGroup)
	a.handle("GET /thing-groups", "ListThingGroups", a.listThingGroups)
	a.handle("DELETE /thing-groups/{thingGroupName}", "DeleteThingGroup", a.deleteThingGroup)
	a.handle("POST /dynamic-thing-groups/{thingGroupName}", "CreateDynamicThingGroup", a.createDynamicThingGroup)
	a.handle("PATCH /dynamic-thing-groups/{thingGroupName}", "UpdateDynamicThingGroup", a.updateDynamicThingGroup)
	a.handle("DELETE /dynamic-thing-groups/{thingGroupName}", "DeleteDynamicThingGroup", a.deleteDynamicThingGroup)
	a.handle("PUT /thing-groups/addThingToThingGroup", "AddThingToThingGroup", a.addThingToThingGroup)
	a.handle("PUT /thing-groups/removeThingFromThingGroup", "RemoveThingFromThingGroup", a.removeThingFromThingGroup)
	a.handle("GET /thing-groups/{thingGroupName}/things", "ListThingsInThingGroup", a.listThingsInThingGroup)
	a.handle("GET /things/{thingName}/thing-groups", "ListThingGroupsForThing", a.listThingGroupsForThing)
	a.handle("POST /keys-and-certificate", "CreateKeysAndCertificate", a.createKeysAndCertificate)
	a.handle("GET /certificates/{certificateId}", "DescribeCertificate", a.describeCertificate)
	a.handle("GET /certificates", "ListCertificates", a.listCertificates)
	a.handle("PUT /certificates/{certificateId}", "UpdateCertificate", a.updateCertificate)
	a.handle("DELETE /certificates/{certificateId}", "DeleteCertificate", a.deleteCertificate)
	a.handle("PUT /things/{thingName}/principals", "AttachThingPrincipal", a.attachThingPrincipal)
	a.handle("DELETE /things/{thingName}/principals", "DetachThingPrincipal", a.detachThingPrincipal)
	a.handle("GET /things/{thingName}/principals", "ListThingPrincipals", a.listThingPrincipals)
	a.handle("GET /endpoint", "DescribeEndpoint", a.describeEndpoint)
	// Jobs.
	a.handle("PUT /jobs/{jobId}", "CreateJob", a.createJob)
	a.handle("GET /jobs/{jobId}", "DescribeJob", a.describeJob)
	a.handle("GET /jobs", "ListJobs", a.listJobs)
	a.handle("PUT /jobs/{jobId}/cancel", "CancelJob", a.cancelJob)
	a.handle("DELETE /jobs/{jobId}", "DeleteJob", a.deleteJob)
	a.handle("GET /jobs/{jobId}/job-document", "GetJobDocument", a.getJobDocument)
	a.handle("PATCH /jobs/{jobId}", "UpdateJob", a.updateJob)
	a.handle("POST /jobs/{jobId}/targets", "AssociateTargetsWithJob", a.associateTargetsWithJob)
	a.handle("GET /things/{thingName}/jobs/{jobId}", "DescribeJobExecution", a.describeJobExecution)
	a.handle("GET /jobs/{jobId}/things", "ListJobExecutionsForJob", a.listJobExecutionsForJob)
	a.handle("GET /things/{thingName}/jobs", "ListJobExecutionsForThing", a.listJobExecutionsForThing)
	a.handle("PUT /things/{thingName}/jobs/{jobId}/cancel", "CancelJobExecution", a.cancelJobExecution)
	a.handle("DELETE /things/{thingName}/jobs/{jobId}/executionNumber/{executionNumber}", "DeleteJobExecution", a.deleteJobExecution)
	a.handle("PUT /job-templates/{jobTemplateId}", "CreateJobTemplate", a.createJobTemplate)
	a.handle("GET /job-templates/{jobTemplateId}", "DescribeJobTemplate", a.describeJobTemplate)
	a.handle("GET /job-templates", "ListJobTemplates", a.listJobTemplates)
	a.handle("DELETE /job-templates/{jobTemplateId}", "DeleteJobTemplate", a.deleteJobTemplate)
	a.handle("GET /managed-job-templates", "ListManagedJobTemplates", a.listManagedJobTemplates)
	a.handle("GET /managed-job-templates/{templateName}", "DescribeManagedJobTemplate", a.describeManagedJobTemplate)
	a.handle("GET /event-configurations", "DescribeEventConfigurations", a.describeEventConfigurations)
	a.handle("PATCH /event-configurations", "UpdateEventConfigurations", a.updateEventConfigurations)
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, "", apiErr(http.StatusNotImplemented, "NotImplementedException",
			"the awsfota local cloud does not implement %s %s of the AWS IoT API; see docs/local-cloud.md for what it serves", r.Method, r.URL.Path))
	})
}

// ServeHTTP authenticates the request and serves it.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Amzn-RequestId", requestID())
	if err := a.authenticate(r); err != nil {
		a.fail(w, r, "", err)
		return
	}
	a.mux.ServeHTTP(w, r)
}

// authenticate verifies the SigV4 signature of a control-plane request.
func (a *API) authenticate(r *http.Request) error {
	return a.authenticateAs(r, ServiceIoT, ServiceExecuteAPI)
}

// authenticateAs verifies the SigV4 signature, for one of the signing
// names, answering failures with the error types AWS's JSON services use
// (S3's codes translated).
func (a *API) authenticateAs(r *http.Request, services ...string) error {
	auth, err := a.verifier.Verify(r)
	var se *sigv4.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sigv4.CodeMissingAuthenticationToken:
			return apiErr(http.StatusForbidden, "MissingAuthenticationTokenException", "Missing Authentication Token: sign the request with SigV4 (the endpoints.json credentials)")
		case sigv4.CodeInvalidAccessKeyID:
			return apiErr(http.StatusForbidden, "UnrecognizedClientException", "The security token included in the request is invalid: use the accessKeyId of the local cloud's endpoints.json")
		case sigv4.CodeSignatureDoesNotMatch:
			return apiErr(http.StatusForbidden, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
		case sigv4.CodeRequestTimeTooSkewed:
			return apiErr(http.StatusForbidden, "InvalidSignatureException", "Signature expired: %s", se.Message)
		case sigv4.CodeAccessDenied:
			return apiErr(http.StatusForbidden, "AccessDeniedException", "%s", se.Message)
		case sigv4.CodeRequestEntityTooLarge:
			return apiErr(http.StatusRequestEntityTooLarge, "RequestEntityTooLargeException", "%s", se.Message)
		default:
			return apiErr(http.StatusBadRequest, "IncompleteSignatureException", "%s", se.Message)
		}
	}
	if err != nil {
		return apiErr(http.StatusBadRequest, "IncompleteSignatureException", "%v", err)
	}
	if !slices.Contains(services, auth.Service) {
		return apiErr(http.StatusForbidden, "InvalidSignatureException",
			"Credential should be scoped to correct service: '%s', not %q", strings.Join(services, "' or '"), auth.Service)
	}
	return nil
}

// apiError is an error answered in AWS's JSON shape.
type apiError struct {
	Status  int
	Type    string
	Message string
	// ResourceID and ResourceARN accompany ResourceAlreadyExistsException.
	ResourceID, ResourceARN string
	// ExecutionState accompanies the iot-jobs-data API's
	// InvalidStateTransitionException.
	ExecutionState any
}

func (e *apiError) Error() string { return e.Type + ": " + e.Message }

func apiErr(status int, typ, format string, args ...any) *apiError {
	return &apiError{Status: status, Type: typ, Message: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) *apiError {
	return apiErr(http.StatusBadRequest, "InvalidRequestException", format, args...)
}

func notFound(format string, args ...any) *apiError {
	return apiErr(http.StatusNotFound, "ResourceNotFoundException", format, args...)
}

// fromError maps the errors of the registry and the jobs service to AWS's
// error types; op-specific mappings are done by the handlers before.
func fromError(err error) *apiError {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, jobsvc.ErrNotFound):
		return notFound("%s", trimPrefix(err))
	case errors.Is(err, registry.ErrExists), errors.Is(err, jobsvc.ErrExists):
		return apiErr(http.StatusConflict, "ResourceAlreadyExistsException", "%s", trimPrefix(err))
	case errors.Is(err, registry.ErrInvalid), errors.Is(err, jobsvc.ErrInvalid):
		return invalid("%s", trimPrefix(err))
	case errors.Is(err, jobsvc.ErrInvalidState):
		return apiErr(http.StatusConflict, "InvalidStateTransitionException", "%s", trimPrefix(err))
	case errors.Is(err, jobsvc.ErrVersionConflict), errors.Is(err, registry.ErrVersionConflict):
		return apiErr(http.StatusConflict, "VersionConflictException", "%s", trimPrefix(err))
	case errors.Is(err, jobsvc.ErrLimitExceeded):
		return apiErr(http.StatusGone, "LimitExceededException", "%s", trimPrefix(err))
	case errors.Is(err, registry.ErrInvalidQuery):
		return apiErr(http.StatusBadRequest, "InvalidQueryException", "%s", trimPrefix(err))
	case errors.Is(err, registry.ErrCertificateState):
		return apiErr(http.StatusNotAcceptable, "CertificateStateException", "%s", trimPrefix(err))
	case errors.Is(err, registry.ErrConflict):
		return apiErr(http.StatusConflict, "DeleteConflictException", "%s", trimPrefix(err))
	}
	return apiErr(http.StatusInternalServerError, "InternalFailureException", "the local cloud failed: %v", err)
}

// trimPrefix drops the sentinel's text ("resource not found: ") that the
// error type already says.
func trimPrefix(err error) string {
	s := err.Error()
	for _, p := range []error{registry.ErrNotFound, registry.ErrExists, registry.ErrInvalid, registry.ErrCertificateState, registry.ErrConflict,
		registry.ErrVersionConflict, registry.ErrInvalidQuery, jobsvc.ErrNotFound, jobsvc.ErrExists, jobsvc.ErrInvalid, jobsvc.ErrInvalidState,
		jobsvc.ErrVersionConflict, jobsvc.ErrLimitExceeded} {
		if r, ok := strings.CutPrefix(s, p.Error()+": "); ok {
			return r
		}
	}
	return s
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	ae := fromError(err)
	if ae.Status >= 500 && ae.Status != http.StatusNotImplemented {
		a.log.Error("IoT API request failed", "op", op, "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		a.log.Debug("IoT API request refused", "op", op, "method", r.Method, "path", r.URL.Path, "type", ae.Type, "message", ae.Message)
	}
	body := map[string]any{"message": ae.Message, "__type": ae.Type}
	if ae.ExecutionState != nil {
		body["executionState"] = ae.ExecutionState
	}
	if ae.ResourceID != "" {
		body["resourceId"] = ae.ResourceID
	}
	if ae.ResourceARN != "" {
		body["resourceArn"] = ae.ResourceARN
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", ae.Type)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(ae.Status)
	w.Write(b)
}

func (a *API) reply(w http.ResponseWriter, v any) {
	b := []byte("{}")
	if v != nil {
		var err error
		if b, err = json.Marshal(v); err != nil {
			a.log.Error("encoding an IoT API response", "err", err)
			http.Error(w, `{"message":"encoding the response failed"}`, http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func requestID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// maxBody bounds request bodies: the largest is a CreateJob with a 32 KiB
// document.
const maxBody = 1 << 20

// decode reads a JSON request body into v; an empty body leaves v as it is.
func decode(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return invalid("reading the request body: %v", err)
	}
	if len(b) > maxBody {
		return invalid("the request body is larger than %d bytes", maxBody)
	}
	switch strings.TrimSpace(string(b)) {
	case "":
		return nil
	case "null":
		// json.Unmarshal would take it as {}; AWS refuses it.
		return invalid("the request body is JSON null; this operation takes a JSON object")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return invalid("the request body is not the JSON this operation takes: %v", err)
	}
	return nil
}

// epoch is a time in AWS's JSON form: seconds since the epoch, with
// milliseconds; the zero time is omitted (with omitzero).
type epoch time.Time

func (t epoch) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(time.Time(t).UnixMilli())/1000, 'f', 3, 64)), nil
}

func (t epoch) IsZero() bool { return time.Time(t).IsZero() }

// queryBool reads a boolean query parameter (absent: false).
func queryBool(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, invalid("query parameter %s=%q is not true or false", name, v)
	}
	return b, nil
}

// queryInt reads an integer query parameter; ok is false when absent.
func queryInt(r *http.Request, name string) (int64, bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false, invalid("query parameter %s=%q is not an integer", name, v)
	}
	return n, true, nil
}

// Paging. AWS's page limits are 1..250 for the lists served here; without
// maxResults a page holds the most allowed.
const maxPage = 250

// page returns the slice of n items a request asks for (maxResults and
// nextToken, or the names given) and the token of the next page ("" at the
// end). Tokens are opaque offsets.
func page(r *http.Request, n int, sizeParam, tokenParam string) (start, end int, next string, err error) {
	size := maxPage
	if v, ok, err := queryInt(r, sizeParam); err != nil {
		return 0, 0, "", err
	} else if ok {
		if v < 1 || v > maxPage {
			return 0, 0, "", invalid("%s %d: use 1..%d", sizeParam, v, maxPage)
		}
		size = int(v)
	}
	if tok := r.URL.Query().Get(tokenParam); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		off, err2 := strconv.Atoi(strings.TrimPrefix(string(b), "o:"))
		if err != nil || err2 != nil || !strings.HasPrefix(string(b), "o:") || off < 0 {
			return 0, 0, "", invalid("%s %q was not returned by this service: start again without it", tokenParam, tok)
		}
		start = min(off, n)
	}
	end = min(start+size, n)
	if end < n {
		next = base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.Itoa(end)))
	}
	return start, end, next, nil
}

// arnName returns the name in an IoT ARN of the given resource type
// (arn:aws:iot:REGION:ACCOUNT:TYPE/NAME), checking region and account.
func (a *API) arnName(arn, typ string) (string, error) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "iot" {
		return "", invalid("%q is not an AWS IoT ARN (arn:aws:iot:%s:%s:%s/NAME)", arn, a.cfg.Region, a.cfg.AccountID, typ)
	}
	if parts[3] != a.cfg.Region || parts[4] != a.cfg.AccountID {
		return "", invalid("ARN %q names region %q and account %q; this local cloud is %s and %s", arn, parts[3], parts[4], a.cfg.Region, a.cfg.AccountID)
	}
	name, ok := strings.CutPrefix(parts[5], typ+"/")
	if !ok || name == "" {
		return "", invalid("ARN %q is not a %s ARN", arn, typ)
	}
	return name, nil
}

package iotapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"

	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/cloud/registry"
	"github.com/awsfota/awsfota/iotjobs"
)

// The jobs operations of the control plane.

type createJobInput struct {
	Targets                    []string                   `json:"targets"`
	Document                   *string                    `json:"document"`
	DocumentSource             string                     `json:"documentSource"`
	Description                string                     `json:"description"`
	PresignedURLConfig         *jobsvc.PresignedURLConfig `json:"presignedUrlConfig"`
	TargetSelection            string                     `json:"targetSelection"`
	JobExecutionsRolloutConfig *jobsvc.RolloutConfig      `json:"jobExecutionsRolloutConfig"`
	AbortConfig                *jobsvc.AbortConfig        `json:"abortConfig"`
	TimeoutConfig              *jobsvc.TimeoutConfig      `json:"timeoutConfig"`
	JobExecutionsRetryConfig   *jobsvc.RetryConfig        `json:"jobExecutionsRetryConfig"`
	NamespaceID                string                     `json:"namespaceId"`
	JobTemplateArn             string                     `json:"jobTemplateArn"`
	DocumentParameters         map[string]string          `json:"documentParameters"`
	SchedulingConfig           *jobsvc.SchedulingConfig   `json:"schedulingConfig"`
	DestinationPackageVersions []string                   `json:"destinationPackageVersions"`
	// tags are accepted and not kept.
}

func (a *API) createJob(r *http.Request) (any, error) {
	id := r.PathValue("jobId")
	var in createJobInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	for _, u := range []struct {
		set  bool
		name string
	}{{in.NamespaceID != "", "namespaceId"}, {len(in.DestinationPackageVersions) > 0, "destinationPackageVersions"}} {
		if u.set {
			return nil, invalid("%s is not supported by the awsfota local cloud; create the job without it", u.name)
		}
	}
	if len(in.DocumentParameters) > 0 {
		// As on AWS: documentParameters fill the placeholders of AWS managed
		// templates only.
		return nil, invalid("documentParameters can only be used with an AWS managed job template (the local cloud has none)")
	}
	if len(in.Targets) == 0 {
		return nil, invalid("targets is required: the ARNs of the things and thing groups to run the job on")
	}
	spec := jobsvc.JobSpec{JobID: id, Description: in.Description, TargetSelection: jobsvc.TargetSelection(in.TargetSelection),
		PresignedURL: in.PresignedURLConfig, Timeout: in.TimeoutConfig, Rollout: in.JobExecutionsRolloutConfig,
		Abort: in.AbortConfig, Retry: in.JobExecutionsRetryConfig, Scheduling: in.SchedulingConfig}
	var err error
	if spec.Things, spec.Groups, err = a.targets(in.Targets); err != nil {
		return nil, err
	}
	if in.JobTemplateArn != "" {
		if spec.TemplateID, err = a.arnName(in.JobTemplateArn, "jobtemplate"); err != nil {
			return nil, err
		}
	}
	if spec.Document, spec.DocumentSource, err = a.document(in.Document, in.DocumentSource, in.JobTemplateArn != ""); err != nil {
		return nil, err
	}
	j, err := a.cfg.Jobs.CreateJob(spec)
	if errors.Is(err, jobsvc.ErrExists) {
		ae := apiErr(http.StatusConflict, "ResourceAlreadyExistsException", "job %s already exists; choose another job id", id)
		ae.ResourceID, ae.ResourceARN = id, a.cfg.Jobs.JobARN(id)
		return nil, ae
	}
	if err != nil {
		return nil, err
	}
	return jobRef(j), nil
}

// jobRef is how CreateJob, CancelJob and AssociateTargetsWithJob answer.
func jobRef(j jobsvc.Job) any {
	return struct {
		JobArn      string `json:"jobArn"`
		JobID       string `json:"jobId"`
		Description string `json:"description,omitempty"`
	}{j.ARN, j.ID, j.Description}
}

// targets reads job targets: thing and thing group ARNs of this cloud,
// which must exist.
func (a *API) targets(arns []string) (things, groups []string, err error) {
	for _, arn := range arns {
		if name, err := a.arnName(arn, "thing"); err == nil {
			if _, err := a.cfg.Registry.DescribeThing(name); err != nil {
				return nil, nil, notFound("target thing %s does not exist; create it first", name)
			}
			things = append(things, name)
			continue
		}
		name, err := a.arnName(arn, "thinggroup")
		if err != nil {
			return nil, nil, invalid("target %q is neither a thing nor a thing group ARN of this local cloud (arn:aws:iot:%s:%s:thing/NAME or thinggroup/NAME)", arn, a.cfg.Region, a.cfg.AccountID)
		}
		if _, err := a.cfg.Registry.DescribeThingGroup(name); err != nil {
			return nil, nil, notFound("target thing group %s does not exist; create it first", name)
		}
		groups = append(groups, name)
	}
	return things, groups, nil
}

// document reads a job's or a template's document: inline, or from the
// object store (documentSource); optional says that none may be given.
func (a *API) document(inline *string, source string, optional bool) ([]byte, string, error) {
	switch {
	case inline != nil && source != "":
		return nil, "", invalid("give the job document either inline (document) or as documentSource, not both")
	case inline != nil:
		return []byte(*inline), "", nil
	case source != "":
		doc, err := a.readDocumentSource(source)
		return doc, source, err
	case optional:
		return nil, "", nil
	}
	return nil, "", invalid("a job needs a document or a documentSource")
}

// readDocumentSource reads a job document from the local object store.
func (a *API) readDocumentSource(src string) ([]byte, error) {
	bucket, key, err := jobsvc.ParseS3URL(src)
	if err != nil {
		return nil, invalid("documentSource: %v", err)
	}
	if a.cfg.OpenObject == nil {
		return nil, invalid("documentSource is not supported here: give the document inline")
	}
	rc, err := a.cfg.OpenObject(bucket, key)
	if err != nil {
		return nil, invalid("documentSource %s: cannot read s3://%s/%s from the local object store: %v", src, bucket, key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, iotjobs.MaxJobDocumentSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading the documentSource: %w", err)
	}
	if len(b) > iotjobs.MaxJobDocumentSize {
		return nil, invalid("the document at %s is larger than %d bytes", src, iotjobs.MaxJobDocumentSize)
	}
	return b, nil
}

type processDetails = jobsvc.ProcessDetails

// jobOut is the job as DescribeJob shows it.
type jobOut struct {
	JobArn                     string                     `json:"jobArn"`
	JobID                      string                     `json:"jobId"`
	TargetSelection            string                     `json:"targetSelection"`
	Status                     string                     `json:"status"`
	ForceCanceled              bool                       `json:"forceCanceled"`
	ReasonCode                 string                     `json:"reasonCode,omitempty"`
	Comment                    string                     `json:"comment,omitempty"`
	Targets                    []string                   `json:"targets"`
	Description                string                     `json:"description,omitempty"`
	PresignedURLConfig         *jobsvc.PresignedURLConfig `json:"presignedUrlConfig,omitempty"`
	JobExecutionsRolloutConfig *jobsvc.RolloutConfig      `json:"jobExecutionsRolloutConfig,omitempty"`
	AbortConfig                *jobsvc.AbortConfig        `json:"abortConfig,omitempty"`
	CreatedAt                  epoch                      `json:"createdAt,omitzero"`
	LastUpdatedAt              epoch                      `json:"lastUpdatedAt,omitzero"`
	CompletedAt                epoch                      `json:"completedAt,omitzero"`
	JobProcessDetails          processDetails             `json:"jobProcessDetails"`
	TimeoutConfig              *jobsvc.TimeoutConfig      `json:"timeoutConfig,omitempty"`
	JobExecutionsRetryConfig   *jobsvc.RetryConfig        `json:"jobExecutionsRetryConfig,omitempty"`
	IsConcurrent               bool                       `json:"isConcurrent"`
	JobTemplateArn             string                     `json:"jobTemplateArn,omitempty"`
	SchedulingConfig           *jobsvc.SchedulingConfig   `json:"schedulingConfig,omitempty"`
	ScheduledJobRollouts       []scheduledRollout         `json:"scheduledJobRollouts,omitempty"`
}

type scheduledRollout struct {
	StartTime string `json:"startTime"`
}

func (a *API) describeJob(r *http.Request) (any, error) {
	info, err := a.cfg.Jobs.JobInfo(r.PathValue("jobId"))
	if err != nil {
		return nil, err
	}
	j := info.Job
	pd := info.Counts.Details()
	if j.Status == jobsvc.JobInProgress {
		pd.ProcessingTargets = j.Targets
	}
	var rollouts []scheduledRollout
	for _, t := range j.ScheduledRollouts(a.cfg.Clock.Now()) {
		rollouts = append(rollouts, scheduledRollout{jobsvc.FormatScheduleTime(t)})
	}
	return struct {
		DocumentSource string `json:"documentSource,omitempty"`
		Job            jobOut `json:"job"`
	}{j.DocumentSource, jobOut{
		JobArn: j.ARN, JobID: j.ID, TargetSelection: string(j.TargetSelection), Status: string(j.Status), ForceCanceled: j.ForceCanceled,
		ReasonCode: j.ReasonCode, Comment: j.Comment, Targets: j.Targets, Description: j.Description, PresignedURLConfig: j.PresignedURL,
		JobExecutionsRolloutConfig: j.Rollout, AbortConfig: j.Abort, CreatedAt: epoch(j.CreatedAt), LastUpdatedAt: epoch(j.LastUpdatedAt),
		CompletedAt: epoch(j.CompletedAt), JobProcessDetails: pd, TimeoutConfig: j.Timeout, JobExecutionsRetryConfig: j.Retry,
		JobTemplateArn: j.TemplateARN, SchedulingConfig: j.Scheduling, ScheduledJobRollouts: rollouts,
	}}, nil
}

func (a *API) listJobs(r *http.Request) (any, error) {
	q := r.URL.Query()
	status, sel := q.Get("status"), q.Get("targetSelection")
	switch jobsvc.JobStatus(status) {
	case "", jobsvc.JobInProgress, jobsvc.JobCanceled, jobsvc.JobCompleted, "DELETION_IN_PROGRESS", "SCHEDULED":
	default:
		return nil, invalid("status %q: use IN_PROGRESS, CANCELED, COMPLETED, DELETION_IN_PROGRESS or SCHEDULED", status)
	}
	switch jobsvc.TargetSelection(sel) {
	case "", jobsvc.Snapshot, jobsvc.Continuous:
	default:
		return nil, invalid("targetSelection %q: use SNAPSHOT or CONTINUOUS", sel)
	}
	group := q.Get("thingGroupName")
	if gid := q.Get("thingGroupId"); gid != "" {
		groups, err := a.cfg.Registry.ListThingGroups()
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(groups, func(g registry.ThingGroup) bool { return g.ID == gid })
		if i < 0 {
			return nil, notFound("thing group id %s does not exist", gid)
		}
		group = groups[i].Name
	}
	jobs, err := a.cfg.Jobs.ListJobs()
	if err != nil {
		return nil, err
	}
	// Newest first, as the console and the CLI show them.
	sort.SliceStable(jobs, func(i, k int) bool { return jobs[k].CreatedAt.Before(jobs[i].CreatedAt) })
	type summary struct {
		JobArn          string `json:"jobArn"`
		JobID           string `json:"jobId"`
		ThingGroupID    string `json:"thingGroupId,omitempty"`
		TargetSelection string `json:"targetSelection"`
		Status          string `json:"status"`
		CreatedAt       epoch  `json:"createdAt,omitzero"`
		LastUpdatedAt   epoch  `json:"lastUpdatedAt,omitzero"`
		CompletedAt     epoch  `json:"completedAt,omitzero"`
		IsConcurrent    bool   `json:"isConcurrent"`
	}
	var out []summary
	for _, j := range jobs {
		if status != "" && string(j.Status) != status || sel != "" && string(j.TargetSelection) != sel ||
			group != "" && !slices.Contains(j.TargetGroups, group) {
			continue
		}
		s := summary{JobArn: j.ARN, JobID: j.ID, TargetSelection: string(j.TargetSelection), Status: string(j.Status),
			CreatedAt: epoch(j.CreatedAt), LastUpdatedAt: epoch(j.LastUpdatedAt), CompletedAt: epoch(j.CompletedAt)}
		if len(j.TargetGroups) == 1 {
			if g, err := a.cfg.Registry.DescribeThingGroup(j.TargetGroups[0]); err == nil {
				s.ThingGroupID = g.ID
			}
		}
		out = append(out, s)
	}
	start, end, next, err := page(r, len(out), "maxResults", "nextToken")
	if err != nil {
		return nil, err
	}
	return struct {
		Jobs      []summary `json:"jobs"`
		NextToken string    `json:"nextToken,omitempty"`
	}{append([]summary{}, out[start:end]...), next}, nil
}

// validReasonCode: AWS's reasonCode pattern, [\p{Upper}\p{Digit}_]+, at
// most 128 characters.
func validReasonCode(s string) bool {
	if len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func (a *API) cancelJob(r *http.Request) (any, error) {
	force, err := queryBool(r, "force")
	if err != nil {
		return nil, err
	}
	var in struct {
		ReasonCode string `json:"reasonCode"`
		Comment    string `json:"comment"`
	}
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if !validReasonCode(in.ReasonCode) {
		return nil, invalid("reasonCode %q: use at most 128 of A-Z, 0-9 and _", in.ReasonCode)
	}
	if len(in.Comment) > 2028 {
		return nil, invalid("comment has %d characters; at most 2028 are allowed", len(in.Comment))
	}
	j, err := a.cfg.Jobs.CancelJob(r.PathValue("jobId"), force, in.Comment, in.ReasonCode)
	if errors.Is(err, jobsvc.ErrInvalidState) {
		return nil, invalid("%s", trimPrefix(err))
	}
	if err != nil {
		return nil, err
	}
	return jobRef(j), nil
}

func (a *API) deleteJob(r *http.Request) (any, error) {
	force, err := queryBool(r, "force")
	if err != nil {
		return nil, err
	}
	if r.URL.Query().Get("namespaceId") != "" {
		return nil, invalid("namespaceId is not supported by the awsfota local cloud")
	}
	return nil, a.cfg.Jobs.DeleteJob(r.PathValue("jobId"), force)
}

func (a *API) getJobDocument(r *http.Request) (any, error) {
	if _, err := queryBool(r, "beforeSubstitution"); err != nil {
		return nil, err
	}
	// The document exactly as it was given; placeholders are replaced only
	// when a device receives it, so before and after substitution are the
	// same here.
	doc, err := a.cfg.Jobs.JobDocument(r.PathValue("jobId"))
	if err != nil {
		return nil, err
	}
	return map[string]string{"document": doc}, nil
}

// updateJobInput is UpdateJob's body.
type updateJobInput struct {
	Description                *string                    `json:"description"`
	PresignedURLConfig         *jobsvc.PresignedURLConfig `json:"presignedUrlConfig"`
	JobExecutionsRolloutConfig *jobsvc.RolloutConfig      `json:"jobExecutionsRolloutConfig"`
	AbortConfig                *jobsvc.AbortConfig        `json:"abortConfig"`
	TimeoutConfig              *jobsvc.TimeoutConfig      `json:"timeoutConfig"`
	JobExecutionsRetryConfig   *jobsvc.RetryConfig        `json:"jobExecutionsRetryConfig"`
}

func (a *API) updateJob(r *http.Request) (any, error) {
	if r.URL.Query().Get("namespaceId") != "" {
		return nil, invalid("namespaceId is not supported by the awsfota local cloud")
	}
	var in updateJobInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	err := a.cfg.Jobs.UpdateJob(r.PathValue("jobId"), jobsvc.JobUpdate{Description: in.Description, Settings: jobsvc.Settings{
		PresignedURL: in.PresignedURLConfig, Timeout: in.TimeoutConfig, Rollout: in.JobExecutionsRolloutConfig,
		Abort: in.AbortConfig, Retry: in.JobExecutionsRetryConfig}})
	if errors.Is(err, jobsvc.ErrInvalidState) {
		return nil, invalid("%s", trimPrefix(err))
	}
	return nil, err
}

func (a *API) associateTargetsWithJob(r *http.Request) (any, error) {
	if r.URL.Query().Get("namespaceId") != "" {
		return nil, invalid("namespaceId is not supported by the awsfota local cloud")
	}
	var in struct {
		Targets []string `json:"targets"`
		Comment string   `json:"comment"`
	}
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if len(in.Targets) == 0 {
		return nil, invalid("targets is required: the ARNs of the things and thing groups to add")
	}
	if len(in.Comment) > 2028 {
		return nil, invalid("comment has %d characters; at most 2028 are allowed", len(in.Comment))
	}
	things, groups, err := a.targets(in.Targets)
	if err != nil {
		return nil, err
	}
	j, err := a.cfg.Jobs.AssociateTargets(r.PathValue("jobId"), things, groups, in.Comment)
	if err != nil {
		return nil, err
	}
	return jobRef(j), nil
}

func (a *API) deleteJobExecution(r *http.Request) (any, error) {
	if r.URL.Query().Get("namespaceId") != "" {
		return nil, invalid("namespaceId is not supported by the awsfota local cloud")
	}
	force, err := queryBool(r, "force")
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseInt(r.PathValue("executionNumber"), 10, 64)
	if err != nil {
		return nil, invalid("executionNumber %q is not an integer", r.PathValue("executionNumber"))
	}
	return nil, a.cfg.Jobs.DeleteExecution(r.PathValue("jobId"), r.PathValue("thingName"), n, force)
}

type executionSummary struct {
	Status          string `json:"status"`
	QueuedAt        epoch  `json:"queuedAt,omitzero"`
	StartedAt       epoch  `json:"startedAt,omitzero"`
	LastUpdatedAt   epoch  `json:"lastUpdatedAt,omitzero"`
	ExecutionNumber int64  `json:"executionNumber"`
	RetryAttempt    int64  `json:"retryAttempt"`
}

func summaryOf(e jobsvc.Execution) executionSummary {
	return executionSummary{string(e.Status), epoch(e.QueuedAt), epoch(e.StartedAt), epoch(e.LastUpdatedAt), e.ExecutionNumber, e.RetryAttempt}
}

func (a *API) describeJobExecution(r *http.Request) (any, error) {
	n, _, err := queryInt(r, "executionNumber")
	if err != nil {
		return nil, err
	}
	e, err := a.cfg.Jobs.DescribeExecutionNumber(r.PathValue("jobId"), r.PathValue("thingName"), n)
	if err != nil {
		return nil, err
	}
	details := map[string]string(e.StatusDetails)
	if details == nil {
		details = map[string]string{}
	}
	type statusDetails struct {
		DetailsMap map[string]string `json:"detailsMap"`
	}
	return struct {
		Execution any `json:"execution"`
	}{struct {
		JobID                            string        `json:"jobId"`
		Status                           string        `json:"status"`
		ForceCanceled                    bool          `json:"forceCanceled"`
		StatusDetails                    statusDetails `json:"statusDetails"`
		ThingArn                         string        `json:"thingArn"`
		QueuedAt                         epoch         `json:"queuedAt,omitzero"`
		StartedAt                        epoch         `json:"startedAt,omitzero"`
		LastUpdatedAt                    epoch         `json:"lastUpdatedAt,omitzero"`
		ExecutionNumber                  int64         `json:"executionNumber"`
		VersionNumber                    int64         `json:"versionNumber"`
		ApproximateSecondsBeforeTimedOut *int64        `json:"approximateSecondsBeforeTimedOut,omitempty"`
	}{e.JobID, string(e.Status), e.ForceCanceled, statusDetails{details}, a.cfg.Jobs.ThingARN(e.Thing), epoch(e.QueuedAt),
		epoch(e.StartedAt), epoch(e.LastUpdatedAt), e.ExecutionNumber, e.VersionNumber, e.SecondsBeforeTimedOut(a.cfg.Clock.Now())}}, nil
}

// statusFilter reads the status query parameter of the execution lists.
func statusFilter(r *http.Request) (iotjobs.Status, error) {
	s := iotjobs.Status(r.URL.Query().Get("status"))
	if s != "" && !s.Valid() {
		return "", invalid("status %q is not a job execution status: use QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, TIMED_OUT, REJECTED, REMOVED or CANCELED", s)
	}
	return s, nil
}

func (a *API) listJobExecutionsForJob(r *http.Request) (any, error) {
	status, err := statusFilter(r)
	if err != nil {
		return nil, err
	}
	execs, err := a.cfg.Jobs.ListExecutionsForJob(r.PathValue("jobId"))
	if err != nil {
		return nil, err
	}
	execs = slices.DeleteFunc(execs, func(e jobsvc.Execution) bool { return status != "" && e.Status != status })
	start, end, next, err := page(r, len(execs), "maxResults", "nextToken")
	if err != nil {
		return nil, err
	}
	type item struct {
		ThingArn string           `json:"thingArn"`
		Summary  executionSummary `json:"jobExecutionSummary"`
	}
	out := []item{}
	for _, e := range execs[start:end] {
		out = append(out, item{a.cfg.Jobs.ThingARN(e.Thing), summaryOf(e)})
	}
	return struct {
		ExecutionSummaries []item `json:"executionSummaries"`
		NextToken          string `json:"nextToken,omitempty"`
	}{out, next}, nil
}

func (a *API) listJobExecutionsForThing(r *http.Request) (any, error) {
	status, err := statusFilter(r)
	if err != nil {
		return nil, err
	}
	if r.URL.Query().Get("namespaceId") != "" {
		return nil, invalid("namespaceId is not supported by the awsfota local cloud")
	}
	execs, err := a.cfg.Jobs.ListExecutionsForThing(r.PathValue("thingName"))
	if err != nil {
		return nil, err
	}
	job := r.URL.Query().Get("jobId")
	execs = slices.DeleteFunc(execs, func(e jobsvc.Execution) bool {
		return status != "" && e.Status != status || job != "" && e.JobID != job
	})
	start, end, next, err := page(r, len(execs), "maxResults", "nextToken")
	if err != nil {
		return nil, err
	}
	type item struct {
		JobID   string           `json:"jobId"`
		Summary executionSummary `json:"jobExecutionSummary"`
	}
	out := []item{}
	for _, e := range execs[start:end] {
		out = append(out, item{e.JobID, summaryOf(e)})
	}
	return struct {
		ExecutionSummaries []item `json:"executionSummaries"`
		NextToken          string `json:"nextToken,omitempty"`
	}{out, next}, nil
}

func (a *API) cancelJobExecution(r *http.Request) (any, error) {
	force, err := queryBool(r, "force")
	if err != nil {
		return nil, err
	}
	var in struct {
		ExpectedVersion *int64                `json:"expectedVersion"`
		StatusDetails   iotjobs.StatusDetails `json:"statusDetails"`
	}
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	_, err = a.cfg.Jobs.CancelExecution(r.PathValue("jobId"), r.PathValue("thingName"),
		jobsvc.CancelRequest{Force: force, ExpectedVersion: in.ExpectedVersion, StatusDetails: in.StatusDetails})
	return nil, err
}

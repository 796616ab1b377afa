package operator

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
)

// Execution is one device's part of a job, as an operator follows it.
type Execution struct {
	Thing         string `json:"thing"`
	JobID         string `json:"jobId,omitempty"`
	Status        string `json:"status"`
	State         string `json:"state,omitempty"`   // statusDetails.state: downloading, ready_to_reboot, ...
	Percent       int    `json:"percent,omitempty"` // statusDetails.progress
	Bytes         int64  `json:"bytes,omitempty"`
	Size          int64  `json:"size,omitempty"`
	FWVersion     string `json:"fwversion,omitempty"`
	Reason        string `json:"reason,omitempty"`
	Message       string `json:"message,omitempty"`
	VersionNumber int64  `json:"versionNumber"`
	ExecutionNum  int64  `json:"executionNumber"`
	// Details is the whole statusDetails map (device-controlled text).
	Details       map[string]string `json:"statusDetails,omitempty"`
	ForceCanceled bool              `json:"forceCanceled,omitempty"`
	QueuedAt      time.Time         `json:"queuedAt,omitzero"`
	StartedAt     time.Time         `json:"startedAt,omitzero"`
	LastUpdatedAt time.Time         `json:"lastUpdatedAt,omitzero"`
}

// Terminal reports whether the execution is over.
func (e Execution) Terminal() bool {
	switch iottypes.JobExecutionStatus(e.Status) {
	case iottypes.JobExecutionStatusQueued, iottypes.JobExecutionStatusInProgress:
		return false
	}
	return true
}

// Snapshot is a job and its executions at one moment.
type Snapshot struct {
	JobID       string         `json:"jobId"`
	Status      string         `json:"status"` // IN_PROGRESS, CANCELED, COMPLETED, DELETION_IN_PROGRESS
	Description string         `json:"description,omitempty"`
	Executions  []Execution    `json:"executions"`
	Counts      map[string]int `json:"counts"` // by execution status
	// Done: the job ended (a snapshot job), or every execution is terminal
	// (a continuous job).
	Done bool `json:"done"`
	// Succeeded: done, and every execution SUCCEEDED.
	Succeeded bool      `json:"succeeded"`
	At        time.Time `json:"at"`
}

// Watcher follows one job, reading each execution's details only while it
// can still change.
type Watcher struct {
	c     *Client
	job   string
	final map[string]Execution // terminal executions, read once
}

// Watch returns a watcher of job.
func (c *Client) Watch(job string) *Watcher {
	return &Watcher{c: c, job: job, final: map[string]Execution{}}
}

// Snapshot reads the job and its executions now.
func (w *Watcher) Snapshot(ctx context.Context) (*Snapshot, error) {
	c := w.c
	jd, err := c.IoT.DescribeJob(ctx, &iot.DescribeJobInput{JobId: aws.String(w.job)})
	if err != nil {
		return nil, explain("job "+w.job, err)
	}
	s := &Snapshot{JobID: w.job, Status: string(jd.Job.Status), Description: aws.ToString(jd.Job.Description),
		Counts: map[string]int{}, At: time.Now()}
	var token *string
	for {
		out, err := c.IoT.ListJobExecutionsForJob(ctx, &iot.ListJobExecutionsForJobInput{JobId: aws.String(w.job), NextToken: token, MaxResults: aws.Int32(250)})
		if err != nil {
			return nil, explain("executions of job "+w.job, err)
		}
		for _, sum := range out.ExecutionSummaries {
			thing := thingName(aws.ToString(sum.ThingArn))
			status := string(sum.JobExecutionSummary.Status)
			if e, ok := w.final[thing]; ok && e.Status == status {
				s.Executions = append(s.Executions, e)
				continue
			}
			e := Execution{Thing: thing, Status: status, ExecutionNum: aws.ToInt64(sum.JobExecutionSummary.ExecutionNumber)}
			if status != string(iottypes.JobExecutionStatusQueued) {
				d, err := c.IoT.DescribeJobExecution(ctx, &iot.DescribeJobExecutionInput{JobId: aws.String(w.job), ThingName: aws.String(thing)})
				if err != nil {
					return nil, explain("execution of job "+w.job+" on "+thing, err)
				}
				fill(&e, d.Execution)
			}
			if e.Terminal() {
				w.final[thing] = e
			}
			s.Executions = append(s.Executions, e)
		}
		if token = out.NextToken; token == nil {
			break
		}
	}
	sort.Slice(s.Executions, func(i, j int) bool { return s.Executions[i].Thing < s.Executions[j].Thing })
	s.Done, s.Succeeded = true, true
	for _, e := range s.Executions {
		s.Counts[e.Status]++
		if !e.Terminal() {
			s.Done = false
		}
		if e.Status != string(iottypes.JobExecutionStatusSucceeded) {
			s.Succeeded = false
		}
	}
	switch iottypes.JobStatus(s.Status) {
	case iottypes.JobStatusCanceled, iottypes.JobStatusDeletionInProgress:
		// Executions already IN_PROGRESS may go on after a cancel without
		// force; the job itself is over.
		if s.Counts[string(iottypes.JobExecutionStatusInProgress)] == 0 {
			s.Done = true
		}
	}
	if len(s.Executions) == 0 {
		s.Succeeded = false
		s.Done = iottypes.JobStatus(s.Status) != iottypes.JobStatusInProgress
	}
	// A snapshot job is over when the service says so (COMPLETED, CANCELED):
	// the things a rollout rate has not reached yet have no execution to
	// list, and an abort rule cancels the job only after the failure that
	// sets it off is recorded. A continuous job stays IN_PROGRESS for the
	// things that join its groups later: its executions tell.
	if jd.Job.TargetSelection != iottypes.TargetSelectionContinuous {
		switch iottypes.JobStatus(s.Status) {
		case iottypes.JobStatusInProgress, iottypes.JobStatusScheduled:
			s.Done = false
		}
	}
	s.Succeeded = s.Succeeded && s.Done
	return s, nil
}

// ExecutionOf returns an execution as the AWS SDK describes it
// (DescribeJobExecution's), with what its device reported in statusDetails.
func ExecutionOf(x *iottypes.JobExecution) Execution {
	e := Execution{Thing: thingName(aws.ToString(x.ThingArn))}
	fill(&e, x)
	return e
}

func fill(e *Execution, x *iottypes.JobExecution) {
	if x == nil {
		return
	}
	e.Status = string(x.Status)
	e.VersionNumber = x.VersionNumber
	e.ExecutionNum = aws.ToInt64(x.ExecutionNumber)
	e.ForceCanceled = aws.ToBool(x.ForceCanceled)
	e.QueuedAt, e.StartedAt, e.LastUpdatedAt = aws.ToTime(x.QueuedAt), aws.ToTime(x.StartedAt), aws.ToTime(x.LastUpdatedAt)
	if x.StatusDetails == nil {
		return
	}
	d := x.StatusDetails.DetailsMap
	e.Details = d
	e.State, e.Reason, e.Message, e.FWVersion = d["state"], d["reason"], d["message"], d["fwversion"]
	e.Percent, _ = strconv.Atoi(d["progress"])
	e.Bytes, _ = strconv.ParseInt(d["bytes"], 10, 64)
	e.Size, _ = strconv.ParseInt(d["size"], 10, 64)
	if e.Status == string(iottypes.JobExecutionStatusSucceeded) {
		e.Percent = 100
	}
}

func thingName(arn string) string {
	if i := strings.LastIndex(arn, "thing/"); i >= 0 {
		return arn[i+len("thing/"):]
	}
	return arn
}

// JobSummary is a line of ListJobs.
type JobSummary struct {
	JobID           string    `json:"jobId"`
	Status          string    `json:"status"`
	TargetSelection string    `json:"targetSelection"`
	CreatedAt       time.Time `json:"createdAt"`
	CompletedAt     time.Time `json:"completedAt,omitzero"`
}

// ListJobs lists the jobs, newest first.
func (c *Client) ListJobs(ctx context.Context) ([]JobSummary, error) {
	var out []JobSummary
	var token *string
	for {
		page, err := c.IoT.ListJobs(ctx, &iot.ListJobsInput{NextToken: token, MaxResults: aws.Int32(250)})
		if err != nil {
			return nil, explain("listing jobs", err)
		}
		for _, j := range page.Jobs {
			out = append(out, JobSummary{JobID: aws.ToString(j.JobId), Status: string(j.Status), TargetSelection: string(j.TargetSelection),
				CreatedAt: aws.ToTime(j.CreatedAt), CompletedAt: aws.ToTime(j.CompletedAt)})
		}
		if token = page.NextToken; token == nil {
			break
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

// CancelJob cancels a job: QUEUED executions are canceled, and with force
// the IN_PROGRESS ones too (their devices stop and erase what they fetched).
func (c *Client) CancelJob(ctx context.Context, job string, force bool, comment string) error {
	in := &iot.CancelJobInput{JobId: aws.String(job), Force: force}
	if comment != "" {
		in.Comment = aws.String(comment)
	}
	if _, err := c.IoT.CancelJob(ctx, in); err != nil {
		return explain("canceling job "+job, err)
	}
	return nil
}

// JobDocument returns a job's document.
func (c *Client) JobDocument(ctx context.Context, job string) (string, error) {
	out, err := c.IoT.GetJobDocument(ctx, &iot.GetJobDocumentInput{JobId: aws.String(job)})
	if err != nil {
		return "", explain("document of job "+job, err)
	}
	return aws.ToString(out.Document), nil
}

package operator

import (
	"context"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
)

// JobDetail is a job as DescribeJob shows it: its status, its execution
// counts (aggregated by the service, whatever the number of executions) and
// its settings.
type JobDetail struct {
	JobID           string         `json:"jobId"`
	Status          string         `json:"status"`
	TargetSelection string         `json:"targetSelection"`
	Description     string         `json:"description,omitempty"`
	Comment         string         `json:"comment,omitempty"`
	ReasonCode      string         `json:"reasonCode,omitempty"`
	ForceCanceled   bool           `json:"forceCanceled,omitempty"`
	Targets         []string       `json:"targets"`
	CreatedAt       time.Time      `json:"createdAt,omitzero"`
	LastUpdatedAt   time.Time      `json:"lastUpdatedAt,omitzero"`
	CompletedAt     time.Time      `json:"completedAt,omitzero"`
	Counts          map[string]int `json:"counts"` // by execution status

	RolloutPerMinute int          `json:"rolloutPerMinute,omitempty"`
	Exponential      *Exponential `json:"exponentialRate,omitempty"`
	Abort            []AbortRule  `json:"abort,omitempty"`
	TimeoutMinutes   int          `json:"timeoutMinutes,omitempty"`
	Retry            []RetryRule  `json:"retry,omitempty"`
	PresignRole      string       `json:"presignRole,omitempty"`
	PresignExpires   int          `json:"presignExpiresSec,omitempty"`
}

// Exponential is an exponential rollout rate.
type Exponential struct {
	BasePerMinute   int     `json:"basePerMinute"`
	Factor          float64 `json:"factor"`
	NotifiedThings  int     `json:"notifiedThings,omitempty"`  // the rate grows after this many notified...
	SucceededThings int     `json:"succeededThings,omitempty"` // ...or this many succeeded
}

// AbortRule cancels a job once Percent of at least MinExecuted executed
// things failed with FailureType.
type AbortRule struct {
	FailureType string  `json:"failureType"`
	Percent     float64 `json:"percent"`
	MinExecuted int     `json:"minExecuted"`
}

// RetryRule re-runs an execution that failed with FailureType, up to
// Retries times.
type RetryRule struct {
	FailureType string `json:"failureType"`
	Retries     int    `json:"retries"`
}

// Total is the number of executions the counts hold.
func (j *JobDetail) Total() int {
	n := 0
	for _, c := range j.Counts {
		n += c
	}
	return n
}

// DescribeJob reads a job with its counts and settings.
func (c *Client) DescribeJob(ctx context.Context, id string) (*JobDetail, error) {
	out, err := c.IoT.DescribeJob(ctx, &iot.DescribeJobInput{JobId: aws.String(id)})
	if err != nil {
		return nil, explain("job "+id, err)
	}
	j := out.Job
	d := &JobDetail{JobID: aws.ToString(j.JobId), Status: string(j.Status), TargetSelection: string(j.TargetSelection),
		Description: aws.ToString(j.Description), Comment: aws.ToString(j.Comment), ReasonCode: aws.ToString(j.ReasonCode),
		ForceCanceled: aws.ToBool(j.ForceCanceled), Targets: j.Targets, CreatedAt: aws.ToTime(j.CreatedAt),
		LastUpdatedAt: aws.ToTime(j.LastUpdatedAt), CompletedAt: aws.ToTime(j.CompletedAt), Counts: map[string]int{}}
	if p := j.JobProcessDetails; p != nil {
		for status, n := range map[iottypes.JobExecutionStatus]*int32{
			iottypes.JobExecutionStatusQueued: p.NumberOfQueuedThings, iottypes.JobExecutionStatusInProgress: p.NumberOfInProgressThings,
			iottypes.JobExecutionStatusSucceeded: p.NumberOfSucceededThings, iottypes.JobExecutionStatusFailed: p.NumberOfFailedThings,
			iottypes.JobExecutionStatusRejected: p.NumberOfRejectedThings, iottypes.JobExecutionStatusTimedOut: p.NumberOfTimedOutThings,
			iottypes.JobExecutionStatusCanceled: p.NumberOfCanceledThings, iottypes.JobExecutionStatusRemoved: p.NumberOfRemovedThings,
		} {
			if v := int(aws.ToInt32(n)); v > 0 {
				d.Counts[string(status)] = v
			}
		}
	}
	if r := j.JobExecutionsRolloutConfig; r != nil {
		d.RolloutPerMinute = int(aws.ToInt32(r.MaximumPerMinute))
		if e := r.ExponentialRate; e != nil {
			d.Exponential = &Exponential{BasePerMinute: int(aws.ToInt32(e.BaseRatePerMinute)), Factor: aws.ToFloat64(e.IncrementFactor)}
			if c := e.RateIncreaseCriteria; c != nil {
				d.Exponential.NotifiedThings, d.Exponential.SucceededThings = int(aws.ToInt32(c.NumberOfNotifiedThings)), int(aws.ToInt32(c.NumberOfSucceededThings))
			}
		}
	}
	if a := j.AbortConfig; a != nil {
		for _, c := range a.CriteriaList {
			d.Abort = append(d.Abort, AbortRule{FailureType: string(c.FailureType), Percent: aws.ToFloat64(c.ThresholdPercentage), MinExecuted: int(aws.ToInt32(c.MinNumberOfExecutedThings))})
		}
	}
	if t := j.TimeoutConfig; t != nil {
		d.TimeoutMinutes = int(aws.ToInt64(t.InProgressTimeoutInMinutes))
	}
	if r := j.JobExecutionsRetryConfig; r != nil {
		for _, c := range r.CriteriaList {
			d.Retry = append(d.Retry, RetryRule{FailureType: string(c.FailureType), Retries: int(aws.ToInt32(c.NumberOfRetries))})
		}
	}
	if p := j.PresignedUrlConfig; p != nil {
		d.PresignRole, d.PresignExpires = aws.ToString(p.RoleArn), int(aws.ToInt64(p.ExpiresInSec))
	}
	return d, nil
}

// ExecutionPage is one page of a job's executions.
type ExecutionPage struct {
	// Executions hold what a list shows — thing, status, timestamps,
	// execution number — but not statusDetails: DescribeExecution reads
	// those.
	Executions []Execution
	// NextToken reads the next page; empty on the last one.
	NextToken string
}

// ListExecutions reads one page of at most max (1 to 250) executions of a
// job, of every status or of one, from token ("" for the first page).
func (c *Client) ListExecutions(ctx context.Context, job, status, token string, max int) (*ExecutionPage, error) {
	in := &iot.ListJobExecutionsForJobInput{JobId: aws.String(job), MaxResults: aws.Int32(int32(max))}
	if status != "" {
		in.Status = iottypes.JobExecutionStatus(status)
	}
	if token != "" {
		in.NextToken = aws.String(token)
	}
	out, err := c.IoT.ListJobExecutionsForJob(ctx, in)
	if err != nil {
		return nil, explain("executions of job "+job, err)
	}
	p := &ExecutionPage{NextToken: aws.ToString(out.NextToken)}
	for _, s := range out.ExecutionSummaries {
		e := Execution{Thing: thingName(aws.ToString(s.ThingArn))}
		summarize(&e, s.JobExecutionSummary)
		p.Executions = append(p.Executions, e)
	}
	return p, nil
}

func summarize(e *Execution, s *iottypes.JobExecutionSummary) {
	if s == nil {
		return
	}
	e.Status = string(s.Status)
	e.ExecutionNum = aws.ToInt64(s.ExecutionNumber)
	e.QueuedAt, e.StartedAt, e.LastUpdatedAt = aws.ToTime(s.QueuedAt), aws.ToTime(s.StartedAt), aws.ToTime(s.LastUpdatedAt)
	if e.Status == string(iottypes.JobExecutionStatusSucceeded) {
		e.Percent = 100
	}
}

// DescribeExecution reads a job's execution on a thing, statusDetails
// included.
func (c *Client) DescribeExecution(ctx context.Context, job, thing string) (Execution, error) {
	d, err := c.IoT.DescribeJobExecution(ctx, &iot.DescribeJobExecutionInput{JobId: aws.String(job), ThingName: aws.String(thing)})
	if err != nil {
		return Execution{}, explain("execution of job "+job+" on "+thing, err)
	}
	e := Execution{Thing: thing}
	fill(&e, d.Execution)
	e.JobID = job
	return e, nil
}

// ThingExecutions lists a thing's executions — the latest of each job —
// newest first, as summaries (no statusDetails).
func (c *Client) ThingExecutions(ctx context.Context, thing string) ([]Execution, error) {
	var out []Execution
	var token *string
	for {
		page, err := c.IoT.ListJobExecutionsForThing(ctx, &iot.ListJobExecutionsForThingInput{ThingName: aws.String(thing), NextToken: token, MaxResults: aws.Int32(100)})
		if err != nil {
			return nil, explain("executions on thing "+thing, err)
		}
		for _, s := range page.ExecutionSummaries {
			e := Execution{Thing: thing, JobID: aws.ToString(s.JobId)}
			summarize(&e, s.JobExecutionSummary)
			out = append(out, e)
		}
		if token = page.NextToken; token == nil {
			break
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].QueuedAt.After(out[j].QueuedAt) })
	return out, nil
}

// DeleteJob deletes a job and its executions; without force the job must
// be over (canceled or completed, nothing in progress).
func (c *Client) DeleteJob(ctx context.Context, job string, force bool) error {
	if _, err := c.IoT.DeleteJob(ctx, &iot.DeleteJobInput{JobId: aws.String(job), Force: force}); err != nil {
		return explain("deleting job "+job, err)
	}
	return nil
}

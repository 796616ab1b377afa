package iotapi

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/cloud/jobsvc"
)

// The operations and behaviours of "AWS IoT Jobs fidelity v2", through the
// official aws-sdk-go-v2 IoT client, on the service's fake clock.

const arnPrefix = "arn:aws:iot:eu-west-1:123456789012:"

// tick moves the fake clock and fires the service's timers.
func (e *env) tick(d time.Duration) {
	e.t.Helper()
	e.clk.Advance(d)
	if err := e.jobs.Tick(); err != nil {
		e.t.Fatal(err)
	}
}

// device sends a Jobs request as a thing's device would.
func (e *env) device(thing, topic, payload string) {
	e.jobs.HandleDevice(thing, thing, "$aws/things/"+thing+"/jobs/"+topic, []byte(payload))
}

func TestSDKDeleteJobIsAsynchronous(t *testing.T) {
	e := newEnv(t)
	c, cx := e.client(creds), ctx(t)
	c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String("a")})
	target := []string{arnPrefix + "thing/a"}
	if _, err := c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("j"), Targets: target, Document: aws.String(`{}`)}); err != nil {
		t.Fatal(err)
	}
	e.device("a", "start-next", `{}`)
	// A CANCELED job whose execution is still IN_PROGRESS is deletable
	// without force.
	c.CancelJob(cx, &iot.CancelJobInput{JobId: aws.String("j")})
	if _, err := c.DeleteJob(cx, &iot.DeleteJobInput{JobId: aws.String("j")}); err != nil {
		t.Fatal("deleting a CANCELED job with an IN_PROGRESS execution:", err)
	}
	dj, err := c.DescribeJob(cx, &iot.DescribeJobInput{JobId: aws.String("j")})
	if err != nil || dj.Job.Status != types.JobStatusDeletionInProgress {
		t.Fatalf("%+v %v", dj, err)
	}
	// The id is not reusable until the deletion ends; a second deletion is
	// a state error.
	_, err = c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("j"), Targets: target, Document: aws.String(`{}`)})
	wantError(t, err, "ResourceAlreadyExistsException", 409)
	_, err = c.DeleteJob(cx, &iot.DeleteJobInput{JobId: aws.String("j"), Force: true})
	wantError(t, err, "InvalidStateTransitionException", 409)
	// At most ten deletions at once.
	for i := range 10 {
		id := fmt.Sprint("d", i)
		c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String(id), Targets: target, Document: aws.String(`{}`)})
		_, err := c.DeleteJob(cx, &iot.DeleteJobInput{JobId: aws.String(id), Force: true})
		if i < 9 && err != nil {
			t.Fatal(i, err)
		}
		if i == 9 {
			wantError(t, err, "LimitExceededException", 410)
		}
	}
	e.tick(jobsvc.DefaultDeletionDelay)
	_, err = c.DescribeJob(cx, &iot.DescribeJobInput{JobId: aws.String("j")})
	wantError(t, err, "ResourceNotFoundException", 404)
	if _, err := c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("j"), Targets: target, Document: aws.String(`{}`)}); err != nil {
		t.Fatal("the id is not reusable after the deletion:", err)
	}
}

func TestSDKEventConfigurations(t *testing.T) {
	e := newEnv(t)
	c, cx := e.client(creds), ctx(t)
	d, err := c.DescribeEventConfigurations(cx, &iot.DescribeEventConfigurationsInput{})
	if err != nil || len(d.EventConfigurations) != len(jobsvc.EventTypes) || d.EventConfigurations["JOB"].Enabled {
		t.Fatalf("%+v %v", d, err)
	}
	if _, err := c.UpdateEventConfigurations(cx, &iot.UpdateEventConfigurationsInput{EventConfigurations: map[string]types.Configuration{
		"JOB": {Enabled: true}, "JOB_EXECUTION": {Enabled: true}}}); err != nil {
		t.Fatal(err)
	}
	d, err = c.DescribeEventConfigurations(cx, &iot.DescribeEventConfigurationsInput{})
	if err != nil || !d.EventConfigurations["JOB"].Enabled || !d.EventConfigurations["JOB_EXECUTION"].Enabled || d.EventConfigurations["THING"].Enabled ||
		d.CreationDate == nil || d.LastModifiedDate == nil {
		t.Fatalf("%+v %v", d, err)
	}
	_, err = c.UpdateEventConfigurations(cx, &iot.UpdateEventConfigurationsInput{EventConfigurations: map[string]types.Configuration{"NOPE": {Enabled: true}}})
	wantError(t, err, "InvalidRequestException", 400)
}

func TestSDKAbortSetsReasonCode(t *testing.T) {
	e := newEnv(t)
	c, cx := e.client(creds), ctx(t)
	var targets []string
	for _, n := range []string{"a", "b", "c"} {
		c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String(n)})
		targets = append(targets, arnPrefix+"thing/"+n)
	}
	if _, err := c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("j"), Targets: targets, Document: aws.String(`{}`),
		AbortConfig: &types.AbortConfig{CriteriaList: []types.AbortCriteria{{FailureType: types.JobExecutionFailureTypeFailed,
			Action: types.AbortActionCancel, ThresholdPercentage: aws.Float64(50), MinNumberOfExecutedThings: aws.Int32(2)}}}}); err != nil {
		t.Fatal(err)
	}
	e.device("a", "j/update", `{"status":"FAILED"}`)
	e.device("b", "j/update", `{"status":"FAILED"}`)
	dj, err := c.DescribeJob(cx, &iot.DescribeJobInput{JobId: aws.String("j")})
	if err != nil || dj.Job.Status != types.JobStatusCanceled || aws.ToString(dj.Job.ReasonCode) != jobsvc.AbortReasonCode ||
		!strings.Contains(aws.ToString(dj.Job.Comment), "2 of 2 executed things ended FAILED") {
		t.Fatalf("%+v %v", dj.Job, err)
	}
}

func TestSDKJobDocumentExactly(t *testing.T) {
	e := newEnv(t)
	c, cx := e.client(creds), ctx(t)
	c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String("a")})
	doc := "{\n  \"operation\": \"app_fw_update\",\n  \"b\": 1.50,\n  \"a\": \"\\u00e9\"\n}\n"
	if _, err := c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("j"), Targets: []string{arnPrefix + "thing/a"}, Document: aws.String(doc)}); err != nil {
		t.Fatal(err)
	}
	g, err := c.GetJobDocument(cx, &iot.GetJobDocumentInput{JobId: aws.String("j")})
	if err != nil || aws.ToString(g.Document) != doc {
		t.Fatalf("%q %v", aws.ToString(g.Document), err)
	}
	g, err = c.GetJobDocument(cx, &iot.GetJobDocumentInput{JobId: aws.String("j"), BeforeSubstitution: true})
	if err != nil || aws.ToString(g.Document) != doc {
		t.Fatalf("%q %v", aws.ToString(g.Document), err)
	}
}

func TestSDKJobTemplates(t *testing.T) {
	e := newEnv(t)
	c, cx := e.client(creds), ctx(t)
	c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String("a")})
	doc := `{"operation":"app_fw_update", "fwversion":"1.0.1"}`
	ct, err := c.CreateJobTemplate(cx, &iot.CreateJobTemplateInput{JobTemplateId: aws.String("fw-template"), Description: aws.String("fw 1.0.1"),
		Document: aws.String(doc), TimeoutConfig: &types.TimeoutConfig{InProgressTimeoutInMinutes: aws.Int64(30)},
		JobExecutionsRetryConfig: &types.JobExecutionsRetryConfig{CriteriaList: []types.RetryCriteria{{FailureType: types.RetryableFailureTypeFailed, NumberOfRetries: aws.Int32(2)}}},
		MaintenanceWindows:       []types.MaintenanceWindow{{StartTime: aws.String("cron(0 2 ? * SUN *)"), DurationInMinutes: aws.Int32(60)}}})
	if err != nil || aws.ToString(ct.JobTemplateArn) != arnPrefix+"jobtemplate/fw-template" {
		t.Fatalf("%+v %v", ct, err)
	}
	_, err = c.CreateJobTemplate(cx, &iot.CreateJobTemplateInput{JobTemplateId: aws.String("fw-template"), Description: aws.String("x"), Document: aws.String(`{}`)})
	wantError(t, err, "ResourceAlreadyExistsException", 409)
	_, err = c.CreateJobTemplate(cx, &iot.CreateJobTemplateInput{JobTemplateId: aws.String("bad"), Description: aws.String("x"), Document: aws.String(`{}`),
		MaintenanceWindows: []types.MaintenanceWindow{{StartTime: aws.String("cron(0 2 L * ? *)"), DurationInMinutes: aws.Int32(60)}}})
	wantError(t, err, "InvalidRequestException", 400)
	dt, err := c.DescribeJobTemplate(cx, &iot.DescribeJobTemplateInput{JobTemplateId: aws.String("fw-template")})
	if err != nil || aws.ToString(dt.Document) != doc || *dt.TimeoutConfig.InProgressTimeoutInMinutes != 30 || len(dt.MaintenanceWindows) != 1 ||
		dt.CreatedAt == nil || aws.ToString(dt.Description) != "fw 1.0.1" {
		t.Fatalf("%+v %v", dt, err)
	}
	// A job from the template takes its document and settings.
	if _, err := c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("j"), Targets: []string{arnPrefix + "thing/a"},
		JobTemplateArn: ct.JobTemplateArn}); err != nil {
		t.Fatal(err)
	}
	dj, err := c.DescribeJob(cx, &iot.DescribeJobInput{JobId: aws.String("j")})
	if err != nil || aws.ToString(dj.Job.JobTemplateArn) != *ct.JobTemplateArn || *dj.Job.TimeoutConfig.InProgressTimeoutInMinutes != 30 ||
		*dj.Job.JobExecutionsRetryConfig.CriteriaList[0].NumberOfRetries != 2 || len(dj.Job.SchedulingConfig.MaintenanceWindows) != 1 {
		t.Fatalf("%+v %v", dj.Job, err)
	}
	if g, _ := c.GetJobDocument(cx, &iot.GetJobDocumentInput{JobId: aws.String("j")}); aws.ToString(g.Document) != doc {
		t.Fatal(aws.ToString(g.Document))
	}
	// A template from a job.
	if _, err := c.CreateJobTemplate(cx, &iot.CreateJobTemplateInput{JobTemplateId: aws.String("from-job"), Description: aws.String("copy"),
		JobArn: aws.String(arnPrefix + "job/j")}); err != nil {
		t.Fatal(err)
	}
	lt, err := c.ListJobTemplates(cx, &iot.ListJobTemplatesInput{})
	if err != nil || len(lt.JobTemplates) != 2 {
		t.Fatalf("%+v %v", lt, err)
	}
	if _, err := c.DeleteJobTemplate(cx, &iot.DeleteJobTemplateInput{JobTemplateId: aws.String("from-job")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DescribeJobTemplate(cx, &iot.DescribeJobTemplateInput{JobTemplateId: aws.String("from-job")})
	wantError(t, err, "ResourceNotFoundException", 404)
	// No AWS managed templates here.
	if lm, err := c.ListManagedJobTemplates(cx, &iot.ListManagedJobTemplatesInput{}); err != nil || len(lm.ManagedJobTemplates) != 0 {
		t.Fatalf("%+v %v", lm, err)
	}
	_, err = c.DescribeManagedJobTemplate(cx, &iot.DescribeManagedJobTemplateInput{TemplateName: aws.String("AWS-Reboot")})
	wantError(t, err, "ResourceNotFoundException", 404)
}

// realSignatures lets the SDK's signatures (made with the wall clock) be
// checked while the Jobs service's fake clock runs ahead.
func realSignatures(c *Config) { c.Clock = clock.Real() }

func TestSDKScheduledJob(t *testing.T) {
	e := newEnv(t, realSignatures)
	c, cx := e.client(creds), ctx(t)
	c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String("a")})
	c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String("b")})
	now := e.clk.Now().UTC()
	start := now.Add(time.Hour).Truncate(time.Minute)
	end := start.Add(48 * time.Hour)
	// Windows open every day at the start's time plus 30 minutes, for
	// 60 minutes.
	w := start.Add(30 * time.Minute)
	cron := fmt.Sprintf("cron(%d %d * * ? *)", w.Minute(), w.Hour())
	_, err := c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("early"), Targets: []string{arnPrefix + "thing/a"}, Document: aws.String(`{}`),
		SchedulingConfig: &types.SchedulingConfig{StartTime: aws.String(jobsvc.FormatScheduleTime(now.Add(10 * time.Minute)))}})
	wantError(t, err, "InvalidRequestException", 400) // less than 30 minutes ahead
	if _, err := c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("j"), Targets: []string{arnPrefix + "thing/a", arnPrefix + "thing/b"},
		Document: aws.String(`{}`), JobExecutionsRolloutConfig: &types.JobExecutionsRolloutConfig{MaximumPerMinute: aws.Int32(1)},
		SchedulingConfig: &types.SchedulingConfig{StartTime: aws.String(jobsvc.FormatScheduleTime(start)), EndTime: aws.String(jobsvc.FormatScheduleTime(end)),
			EndBehavior: types.JobEndBehaviorCancel, MaintenanceWindows: []types.MaintenanceWindow{{StartTime: aws.String(cron), DurationInMinutes: aws.Int32(60)}}},
	}); err != nil {
		t.Fatal(err)
	}
	dj, _ := c.DescribeJob(cx, &iot.DescribeJobInput{JobId: aws.String("j")})
	if dj.Job.Status != types.JobStatusScheduled || len(dj.Job.ScheduledJobRollouts) != jobsvc.ScheduledRolloutsShown ||
		aws.ToString(dj.Job.ScheduledJobRollouts[0].StartTime) != jobsvc.FormatScheduleTime(w) || dj.Job.SchedulingConfig.EndBehavior != types.JobEndBehaviorCancel {
		t.Fatalf("%+v", dj.Job)
	}
	if lj, _ := c.ListJobs(cx, &iot.ListJobsInput{Status: types.JobStatusScheduled}); len(lj.Jobs) != 1 {
		t.Fatal(lj.Jobs)
	}
	executions := func() int {
		le, err := c.ListJobExecutionsForJob(cx, &iot.ListJobExecutionsForJobInput{JobId: aws.String("j")})
		if err != nil {
			t.Fatal(err)
		}
		return len(le.ExecutionSummaries)
	}
	// At the start time the job is IN_PROGRESS, but no window is open yet.
	e.tick(start.Sub(e.clk.Now()))
	if dj, _ := c.DescribeJob(cx, &iot.DescribeJobInput{JobId: aws.String("j")}); dj.Job.Status != types.JobStatusInProgress || executions() != 0 {
		t.Fatalf("%+v, %d executions", dj.Job.Status, executions())
	}
	// The window opens: one execution a minute (the rollout's rate).
	e.tick(30 * time.Minute)
	if n := executions(); n != 1 {
		t.Fatalf("%d executions at the window's start", n)
	}
	e.tick(time.Minute)
	if n := executions(); n != 2 {
		t.Fatalf("%d executions a minute later", n)
	}
	// The end time cancels it (endBehavior CANCEL).
	e.tick(end.Sub(e.clk.Now()))
	if dj, _ := c.DescribeJob(cx, &iot.DescribeJobInput{JobId: aws.String("j")}); dj.Job.Status != types.JobStatusCanceled {
		t.Fatalf("%+v", dj.Job.Status)
	}
}

func TestSDKMaintenanceWindowHoldsTheRollout(t *testing.T) {
	e := newEnv(t, realSignatures)
	c, cx := e.client(creds), ctx(t)
	var targets []string
	for _, n := range []string{"a", "b", "c"} {
		c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String(n)})
		targets = append(targets, arnPrefix+"thing/"+n)
	}
	now := e.clk.Now().UTC()
	// A two-minute window that opens in ten minutes, every hour.
	w := now.Add(10 * time.Minute).Truncate(time.Minute)
	if _, err := c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("j"), Targets: targets, Document: aws.String(`{}`),
		JobExecutionsRolloutConfig: &types.JobExecutionsRolloutConfig{MaximumPerMinute: aws.Int32(1)},
		SchedulingConfig: &types.SchedulingConfig{MaintenanceWindows: []types.MaintenanceWindow{
			{StartTime: aws.String(fmt.Sprintf("cron(%d * * * ? *)", w.Minute())), DurationInMinutes: aws.Int32(2)}}},
	}); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		le, _ := c.ListJobExecutionsForJob(cx, &iot.ListJobExecutionsForJobInput{JobId: aws.String("j")})
		return len(le.ExecutionSummaries)
	}
	if n := count(); n != 0 {
		t.Fatalf("%d released outside the window", n)
	}
	e.tick(w.Sub(e.clk.Now()))
	e.tick(time.Minute)
	if n := count(); n != 2 {
		t.Fatalf("%d released in the window's two minutes", n)
	}
	e.tick(time.Minute) // the window has closed
	if n := count(); n != 2 {
		t.Fatalf("%d released after the window closed", n)
	}
	e.tick(time.Hour - 2*time.Minute) // the next window
	if n := count(); n != 3 {
		t.Fatalf("%d released in the next window", n)
	}
}

func TestSDKUpdateJob(t *testing.T) {
	e := newEnv(t)
	c, cx := e.client(creds), ctx(t)
	var targets []string
	for _, n := range []string{"a", "b", "c", "d"} {
		c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String(n)})
		targets = append(targets, arnPrefix+"thing/"+n)
	}
	c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("j"), Targets: targets, Document: aws.String(`{}`), Description: aws.String("v1"),
		JobExecutionsRolloutConfig: &types.JobExecutionsRolloutConfig{MaximumPerMinute: aws.Int32(1)}})
	if _, err := c.UpdateJob(cx, &iot.UpdateJobInput{JobId: aws.String("j"), Description: aws.String("v2"),
		JobExecutionsRolloutConfig: &types.JobExecutionsRolloutConfig{MaximumPerMinute: aws.Int32(3)},
		AbortConfig: &types.AbortConfig{CriteriaList: []types.AbortCriteria{{FailureType: types.JobExecutionFailureTypeFailed,
			Action: types.AbortActionCancel, ThresholdPercentage: aws.Float64(100), MinNumberOfExecutedThings: aws.Int32(1)}}},
	}); err != nil {
		t.Fatal(err)
	}
	dj, _ := c.DescribeJob(cx, &iot.DescribeJobInput{JobId: aws.String("j")})
	if aws.ToString(dj.Job.Description) != "v2" || *dj.Job.JobExecutionsRolloutConfig.MaximumPerMinute != 3 || dj.Job.AbortConfig == nil {
		t.Fatalf("%+v", dj.Job)
	}
	// The new rate applies from the next minute.
	e.tick(time.Minute)
	if le, _ := c.ListJobExecutionsForJob(cx, &iot.ListJobExecutionsForJobInput{JobId: aws.String("j")}); len(le.ExecutionSummaries) != 4 {
		t.Fatalf("%d executions", len(le.ExecutionSummaries))
	}
	// The new abort criteria apply.
	e.device("a", "j/update", `{"status":"FAILED"}`)
	if dj, _ := c.DescribeJob(cx, &iot.DescribeJobInput{JobId: aws.String("j")}); dj.Job.Status != types.JobStatusCanceled {
		t.Fatal(dj.Job.Status)
	}
	_, err := c.UpdateJob(cx, &iot.UpdateJobInput{JobId: aws.String("j"), TimeoutConfig: &types.TimeoutConfig{InProgressTimeoutInMinutes: aws.Int64(0)}})
	wantError(t, err, "InvalidRequestException", 400)
	_, err = c.UpdateJob(cx, &iot.UpdateJobInput{JobId: aws.String("nope"), Description: aws.String("x")})
	wantError(t, err, "ResourceNotFoundException", 404)
}

func TestSDKDeleteJobExecution(t *testing.T) {
	e := newEnv(t)
	c, cx := e.client(creds), ctx(t)
	c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String("a")})
	c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("j"), Targets: []string{arnPrefix + "thing/a"}, Document: aws.String(`{}`),
		JobExecutionsRetryConfig: &types.JobExecutionsRetryConfig{CriteriaList: []types.RetryCriteria{{FailureType: types.RetryableFailureTypeFailed, NumberOfRetries: aws.Int32(1)}}}})
	del := func(n int64, force bool) error {
		_, err := c.DeleteJobExecution(cx, &iot.DeleteJobExecutionInput{JobId: aws.String("j"), ThingName: aws.String("a"), ExecutionNumber: aws.Int64(n), Force: force})
		return err
	}
	wantError(t, del(1, false), "InvalidStateTransitionException", 409) // QUEUED
	e.device("a", "j/update", `{"status":"FAILED"}`)                    // execution 2 is the retry
	e.device("a", "start-next", `{}`)
	wantError(t, del(2, false), "InvalidStateTransitionException", 409) // IN_PROGRESS needs force
	if err := del(1, false); err != nil {                               // the failed one
		t.Fatal(err)
	}
	_, err := c.DescribeJobExecution(cx, &iot.DescribeJobExecutionInput{JobId: aws.String("j"), ThingName: aws.String("a"), ExecutionNumber: aws.Int64(1)})
	wantError(t, err, "ResourceNotFoundException", 404)
	if err := del(2, true); err != nil {
		t.Fatal(err)
	}
	_, err = c.DescribeJobExecution(cx, &iot.DescribeJobExecutionInput{JobId: aws.String("j"), ThingName: aws.String("a")})
	wantError(t, err, "ResourceNotFoundException", 404)
	// Its last pending execution gone, the snapshot job is complete.
	if dj, _ := c.DescribeJob(cx, &iot.DescribeJobInput{JobId: aws.String("j")}); dj.Job.Status != types.JobStatusCompleted {
		t.Fatal(dj.Job.Status)
	}
	wantError(t, del(7, true), "ResourceNotFoundException", 404)
}

func TestSDKAssociateTargetsWithJob(t *testing.T) {
	e := newEnv(t)
	c, cx := e.client(creds), ctx(t)
	for _, n := range []string{"a", "b", "c"} {
		c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String(n)})
	}
	c.CreateThingGroup(cx, &iot.CreateThingGroupInput{ThingGroupName: aws.String("g")})
	c.AddThingToThingGroup(cx, &iot.AddThingToThingGroupInput{ThingName: aws.String("c"), ThingGroupName: aws.String("g")})
	c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("cont"), Targets: []string{arnPrefix + "thing/a"}, Document: aws.String(`{}`),
		TargetSelection: types.TargetSelectionContinuous})
	c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("snap"), Targets: []string{arnPrefix + "thing/a"}, Document: aws.String(`{}`)})
	out, err := c.AssociateTargetsWithJob(cx, &iot.AssociateTargetsWithJobInput{JobId: aws.String("cont"),
		Targets: []string{arnPrefix + "thing/b", arnPrefix + "thinggroup/g"}, Comment: aws.String("more")})
	if err != nil || aws.ToString(out.JobId) != "cont" {
		t.Fatalf("%+v %v", out, err)
	}
	dj, _ := c.DescribeJob(cx, &iot.DescribeJobInput{JobId: aws.String("cont")})
	if len(dj.Job.Targets) != 3 || aws.ToString(dj.Job.Comment) != "more" || *dj.Job.JobProcessDetails.NumberOfQueuedThings != 3 {
		t.Fatalf("%+v", dj.Job)
	}
	_, err = c.AssociateTargetsWithJob(cx, &iot.AssociateTargetsWithJobInput{JobId: aws.String("snap"), Targets: []string{arnPrefix + "thing/b"}})
	wantError(t, err, "InvalidRequestException", 400)
	_, err = c.AssociateTargetsWithJob(cx, &iot.AssociateTargetsWithJobInput{JobId: aws.String("cont"), Targets: []string{arnPrefix + "thing/zz"}})
	wantError(t, err, "ResourceNotFoundException", 404)
}

func TestSDKDynamicThingGroups(t *testing.T) {
	e := newEnv(t)
	c, cx := e.client(creds), ctx(t)
	attrs := map[string]map[string]string{"a": {"model": "nrf9160", "rev": "3"}, "b": {"model": "nrf9160", "rev": "1"}, "c": {"model": "nrf5340"}}
	for _, n := range []string{"a", "b", "c"} {
		c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String(n), AttributePayload: &types.AttributePayload{Attributes: attrs[n]}})
	}
	g, err := c.CreateDynamicThingGroup(cx, &iot.CreateDynamicThingGroupInput{ThingGroupName: aws.String("new-91"),
		QueryString: aws.String("attributes.model:nrf9160 AND attributes.rev>=2")})
	if err != nil || aws.ToString(g.IndexName) != "AWS_Things" || aws.ToString(g.QueryVersion) != "2017-09-30" {
		t.Fatalf("%+v %v", g, err)
	}
	_, err = c.CreateDynamicThingGroup(cx, &iot.CreateDynamicThingGroupInput{ThingGroupName: aws.String("bad"), QueryString: aws.String("shadow.reported.x:1")})
	wantError(t, err, "InvalidQueryException", 400)
	members := func() []string {
		l, err := c.ListThingsInThingGroup(cx, &iot.ListThingsInThingGroupInput{ThingGroupName: aws.String("new-91")})
		if err != nil {
			t.Fatal(err)
		}
		return l.Things
	}
	if m := members(); !slices.Equal(m, []string{"a"}) {
		t.Fatal(m)
	}
	dg, err := c.DescribeThingGroup(cx, &iot.DescribeThingGroupInput{ThingGroupName: aws.String("new-91")})
	if err != nil || aws.ToString(dg.QueryString) != "attributes.model:nrf9160 AND attributes.rev>=2" || dg.Status != types.DynamicGroupStatusActive {
		t.Fatalf("%+v %v", dg, err)
	}
	_, err = c.AddThingToThingGroup(cx, &iot.AddThingToThingGroupInput{ThingName: aws.String("c"), ThingGroupName: aws.String("new-91")})
	wantError(t, err, "InvalidRequestException", 400)
	// A continuous job on the group follows its members as attributes change.
	c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("j"), Targets: []string{arnPrefix + "thinggroup/new-91"}, Document: aws.String(`{}`),
		TargetSelection: types.TargetSelectionContinuous})
	status := func(thing string) types.JobExecutionStatus {
		d, err := c.DescribeJobExecution(cx, &iot.DescribeJobExecutionInput{JobId: aws.String("j"), ThingName: aws.String(thing)})
		if err != nil {
			return ""
		}
		return d.Execution.Status
	}
	if status("a") != types.JobExecutionStatusQueued || status("b") != "" {
		t.Fatal(status("a"), status("b"))
	}
	if _, err := c.UpdateThing(cx, &iot.UpdateThingInput{ThingName: aws.String("b"),
		AttributePayload: &types.AttributePayload{Attributes: map[string]string{"rev": "2"}, Merge: true}}); err != nil {
		t.Fatal(err)
	}
	if status("b") != types.JobExecutionStatusQueued {
		t.Fatal("b joined the group by its attributes but got no execution:", status("b"))
	}
	c.UpdateThing(cx, &iot.UpdateThingInput{ThingName: aws.String("a"), AttributePayload: &types.AttributePayload{Attributes: map[string]string{"model": "nrf5340"}, Merge: true}})
	if status("a") != types.JobExecutionStatusRemoved {
		t.Fatal("a left the group but its execution is", status("a"))
	}
	// Changing the query changes the members.
	if u, err := c.UpdateDynamicThingGroup(cx, &iot.UpdateDynamicThingGroupInput{ThingGroupName: aws.String("new-91"),
		ThingGroupProperties: &types.ThingGroupProperties{ThingGroupDescription: aws.String("9160 rev 2+")},
		QueryString:          aws.String("thingName:c OR (attributes.model:nrf9160 AND NOT attributes.rev:[0 TO 1])")}); err != nil || u.Version != 2 {
		t.Fatalf("%+v %v", u, err)
	}
	if m := members(); !slices.Equal(m, []string{"b", "c"}) {
		t.Fatal(m)
	}
	if status("c") != types.JobExecutionStatusQueued {
		t.Fatal(status("c"))
	}
	if fg, _ := c.ListThingGroupsForThing(cx, &iot.ListThingGroupsForThingInput{ThingName: aws.String("c")}); len(fg.ThingGroups) != 1 {
		t.Fatal(fg.ThingGroups)
	}
	if _, err := c.DeleteDynamicThingGroup(cx, &iot.DeleteDynamicThingGroupInput{ThingGroupName: aws.String("new-91")}); err != nil {
		t.Fatal(err)
	}
	if status("c") != types.JobExecutionStatusRemoved {
		t.Fatal(status("c"))
	}
}

func TestSDKThingAttributesUpdate(t *testing.T) {
	e := newEnv(t)
	c, cx := e.client(creds), ctx(t)
	c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String("a"), AttributePayload: &types.AttributePayload{Attributes: map[string]string{"x": "1", "y": "2"}}})
	if _, err := c.UpdateThing(cx, &iot.UpdateThingInput{ThingName: aws.String("a"), ExpectedVersion: aws.Int64(1),
		AttributePayload: &types.AttributePayload{Attributes: map[string]string{"y": "", "z": "3"}, Merge: true}}); err != nil {
		t.Fatal(err)
	}
	d, _ := c.DescribeThing(cx, &iot.DescribeThingInput{ThingName: aws.String("a")})
	if d.Version != 2 || d.Attributes["x"] != "1" || d.Attributes["z"] != "3" || len(d.Attributes) != 2 {
		t.Fatalf("%+v", d)
	}
	_, err := c.UpdateThing(cx, &iot.UpdateThingInput{ThingName: aws.String("a"), ExpectedVersion: aws.Int64(1),
		AttributePayload: &types.AttributePayload{Attributes: map[string]string{"q": "1"}}})
	wantError(t, err, "VersionConflictException", 409)
}

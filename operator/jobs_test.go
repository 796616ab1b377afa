package operator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/mcuboot"
)

// TestReads covers what the console reads: things and groups, a job with
// its counts and settings, a page of executions, one execution with its
// statusDetails and timestamps, a thing's executions, and deleting a job.
func TestReads(t *testing.T) {
	cl, err := emu.Start(emu.Config{DataDir: t.TempDir(), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true, JobDeletionDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ep := cl.Endpoints()
	c := NewLocal(Endpoint{URL: ep.HTTP, Region: ep.Region, AccessKeyID: ep.AccessKeyID, SecretAccessKey: ep.SecretAccessKey})
	ctx := context.Background()
	for _, th := range []string{"b-2", "a-1", "c-3"} {
		if _, err := cl.Registry.CreateThing(th, map[string]string{"site": "x"}); err != nil {
			t.Fatal(err)
		}
	}
	cl.Registry.CreateThingGroup("g", "", "", nil)
	cl.Registry.CreateThingGroup("g-child", "g", "", nil)
	cl.Registry.AddThingToThingGroup("a-1", "g")
	cl.Registry.AddThingToThingGroup("c-3", "g-child")
	things, err := c.ListThings(ctx)
	if err != nil || len(things) != 3 || things[0].Name != "a-1" || things[0].Attributes["site"] != "x" {
		t.Fatalf("things %+v %v", things, err)
	}
	if groups, err := c.ListThingGroups(ctx); err != nil || strings.Join(groups, ",") != "g,g-child" {
		t.Fatalf("groups %v %v", groups, err)
	}
	if in, err := c.ThingsInGroup(ctx, "g", true); err != nil || strings.Join(in, ",") != "a-1,c-3" {
		t.Fatalf("things in g %v %v", in, err)
	}
	if in, err := c.ThingsInGroup(ctx, "g", false); err != nil || strings.Join(in, ",") != "a-1" {
		t.Fatalf("things directly in g %v %v", in, err)
	}

	_, err = cl.Jobs.CreateJob(jobsvc.JobSpec{JobID: "j", Things: []string{"a-1", "b-2", "c-3"}, Document: []byte(`{"a":1}`), Description: "d",
		Rollout: &jobsvc.RolloutConfig{MaximumPerMinute: 100}, Timeout: &jobsvc.TimeoutConfig{InProgressTimeoutInMinutes: 9},
		Abort: &jobsvc.AbortConfig{CriteriaList: []jobsvc.AbortCriteria{{FailureType: "ALL", Action: "CANCEL", ThresholdPercentage: 30, MinNumberOfExecutedThings: 2}}},
		Retry: &jobsvc.RetryConfig{CriteriaList: []jobsvc.RetryCriteria{{FailureType: "FAILED", NumberOfRetries: 3}}}})
	if err != nil {
		t.Fatal(err)
	}
	cl.Jobs.HandleDevice("b-2", "b-2", iotjobs.UpdateTopic("b-2", "j").String(),
		[]byte(`{"status":"IN_PROGRESS","statusDetails":{"state":"downloading","progress":"60","bytes":"600","size":"1000","note":"x"}}`))
	d, err := c.DescribeJob(ctx, "j")
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != "IN_PROGRESS" || d.Description != "d" || d.Total() != 3 || d.Counts["QUEUED"] != 2 || d.Counts["IN_PROGRESS"] != 1 ||
		d.RolloutPerMinute != 100 || d.TimeoutMinutes != 9 || len(d.Abort) != 1 || d.Abort[0].Percent != 30 || d.Abort[0].MinExecuted != 2 ||
		len(d.Retry) != 1 || d.Retry[0].Retries != 3 || d.CreatedAt.IsZero() || len(d.Targets) != 3 {
		t.Fatalf("job %+v", d)
	}
	p, err := c.ListExecutions(ctx, "j", "", "", 2)
	if err != nil || len(p.Executions) != 2 || p.NextToken == "" || p.Executions[0].Thing != "a-1" || p.Executions[1].Status != "IN_PROGRESS" {
		t.Fatalf("page 1 %+v %v", p, err)
	}
	p, err = c.ListExecutions(ctx, "j", "", p.NextToken, 2)
	if err != nil || len(p.Executions) != 1 || p.NextToken != "" || p.Executions[0].Thing != "c-3" {
		t.Fatalf("page 2 %+v %v", p, err)
	}
	if p, err := c.ListExecutions(ctx, "j", "IN_PROGRESS", "", 50); err != nil || len(p.Executions) != 1 || p.Executions[0].Thing != "b-2" {
		t.Fatalf("IN_PROGRESS %+v %v", p, err)
	}
	x, err := c.DescribeExecution(ctx, "j", "b-2")
	if err != nil || x.JobID != "j" || x.Percent != 60 || x.Bytes != 600 || x.Size != 1000 || x.State != "downloading" || x.Details["note"] != "x" ||
		x.VersionNumber != 2 || x.StartedAt.IsZero() || x.QueuedAt.IsZero() {
		t.Fatalf("execution %+v %v", x, err)
	}
	if xs, err := c.ThingExecutions(ctx, "b-2"); err != nil || len(xs) != 1 || xs[0].JobID != "j" || xs[0].Status != "IN_PROGRESS" {
		t.Fatalf("b-2's executions %+v %v", xs, err)
	}
	if err := c.DeleteJob(ctx, "j", false); err == nil {
		t.Fatal("deleted a job in progress without force")
	}
	if err := c.DeleteJob(ctx, "j", true); err != nil {
		t.Fatal(err)
	}
	// The deletion is asynchronous, as on AWS: DELETION_IN_PROGRESS, then
	// gone.
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		d, err := c.DescribeJob(ctx, "j")
		if IsNotFound(err) {
			break
		}
		if err != nil || d.Status != "DELETION_IN_PROGRESS" || time.Now().After(deadline) {
			t.Fatalf("after delete: %+v %v", d, err)
		}
		<-tick.C
	}
	if IsNotFound(context.Canceled) {
		t.Fatal("IsNotFound(context.Canceled)")
	}
}

// TestInspectImage: what the Publish page shows of an image, and the
// errors for bad ones.
func TestInspectImage(t *testing.T) {
	key, err := mcuboot.GenerateKey(mcuboot.KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := mcuboot.ParseVersion("3.1.4")
	var b bytes.Buffer
	if _, err := mcuboot.Create(&b, bytes.NewReader(make([]byte, 3000)), 3000, mcuboot.CreateOptions{Version: v, Key: key, PadHeader: true}); err != nil {
		t.Fatal(err)
	}
	in, err := InspectImage(file(t, b.Bytes()))
	sum := sha256.Sum256(b.Bytes())
	if err != nil || in.Version != "3.1.4" || in.Kind != "mcuboot" || in.Component != "app" || in.Size != int64(b.Len()) ||
		!bytes.Equal(in.SHA256, sum[:]) || !bytes.Equal(in.KeyHash, key.Public().Hash()) || in.Signature != "ECDSASIG" || in.Base != nil {
		t.Fatalf("signed image: %+v %v", in, err)
	}
	unsigned := appImage(t, "1.0.0", make([]byte, 100))
	if in, err := InspectImage(file(t, unsigned)); err != nil || in.KeyHash != nil || in.Signature != "" {
		t.Fatalf("unsigned image: %+v %v", in, err)
	}
	damaged := bytes.Clone(b.Bytes())
	damaged[700] ^= 0xff
	if _, err := InspectImage(file(t, damaged)); err == nil || !strings.Contains(err.Error(), "starts like an MCUboot image but is not a valid one") {
		t.Fatalf("damaged image: %v", err)
	}
	if _, err := InspectImage(file(t, nil)); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("an empty file: %v", err)
	}
	// A file of no kind awsfota knows: only an exec target installs it.
	if in, err := InspectImage(file(t, []byte("plain text, not firmware"))); err != nil || in.Kind != "file" || string(in.First) != "plain te" || in.Version != "" {
		t.Fatalf("a plain file: %+v %v", in, err)
	}
}

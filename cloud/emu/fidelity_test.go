package emu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/eclipse/paho.golang/paho"

	"github.com/awsfota/awsfota/cloud/broker"
	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/iotjobs"
)

// The device side of "AWS IoT Jobs fidelity v2": paho devices over mutual
// TLS and the SDK's IoT client against a running local cloud.

// monitorPolicy lets things use their own topics and watch the job events.
const monitorPolicy = `{"Version":"2012-10-17","Statement":[
	{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
	{"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"arn:aws:iot:*:*:topic/$aws/things/${iot:Connection.Thing.ThingName}/*"},
	{"Effect":"Allow","Action":"iot:Subscribe","Resource":["arn:aws:iot:*:*:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/*","arn:aws:iot:*:*:topicfilter/$aws/events/*"]},
	{"Effect":"Allow","Action":"iot:Receive","Resource":"arn:aws:iot:*:*:topic/$aws/events/*"}]}`

// fidelityCloud starts a local cloud with cfg's options.
func fidelityCloud(t *testing.T, opt func(*Config)) (*Cloud, Endpoints, *iot.Client) {
	t.Helper()
	cfg := Config{DataDir: t.TempDir(), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true}
	if opt != nil {
		opt(&cfg)
	}
	c, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ep := c.Endpoints()
	return c, ep, iotClient(ep)
}

// thingDevice provisions a thing and connects it, subscribed to filters.
func thingDevice(t *testing.T, c *Cloud, name string, filters ...string) *device {
	t.Helper()
	cr, err := c.ProvisionThing(name)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dialDevice(t, c.Endpoints(), cr.CAPEM, string(cr.CertPEM), string(cr.KeyPEM), name)
	if err != nil {
		t.Fatal(err)
	}
	if len(filters) > 0 {
		var subs []paho.SubscribeOptions
		for _, f := range filters {
			subs = append(subs, paho.SubscribeOptions{Topic: f, QoS: 1})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sa, err := d.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
		if err != nil {
			t.Fatal(err)
		}
		for i, rc := range sa.Reasons {
			if rc >= 0x80 {
				t.Fatalf("subscription to %s refused: %#x", filters[i], rc)
			}
		}
	}
	return d
}

// until reads messages until one on topic arrives, and returns the
// topics of those before it (the broker delivers in order, so what was
// published before the one awaited is among them).
func (d *device) until(t *testing.T, topic string) []string {
	t.Helper()
	var before []string
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case p := <-d.msgs:
			if p.Topic == topic {
				return before
			}
			before = append(before, p.Topic)
		case <-timeout.C:
			t.Fatalf("nothing on %s", topic)
		}
	}
}

func sdkCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func thingARN(ep Endpoints, n string) string {
	return "arn:aws:iot:" + ep.Region + ":" + ep.AccountID + ":thing/" + n
}

// TestJobEventsOnlyWhenEnabled: events are off until
// UpdateEventConfigurations enables them; then they come on the documented
// topics, with the documented payloads and time units.
func TestJobEventsOnlyWhenEnabled(t *testing.T) {
	p, err := broker.ParsePolicy([]byte(monitorPolicy))
	if err != nil {
		t.Fatal(err)
	}
	c, ep, ic := fidelityCloud(t, func(cfg *Config) { cfg.Policy = p; cfg.JobDeletionDelay = time.Millisecond })
	ctx := sdkCtx(t)
	dev := thingDevice(t, c, "dev-1")
	mon := thingDevice(t, c, "monitor", "$aws/events/#", "$aws/things/monitor/jobs/notify")
	run := func(id string) {
		t.Helper()
		if _, err := ic.CreateJob(ctx, &iot.CreateJobInput{JobId: aws.String(id), Targets: []string{thingARN(ep, "dev-1")}, Document: aws.String(`{"op":"x"}`)}); err != nil {
			t.Fatal(err)
		}
		dev.request(t, "$aws/things/dev-1/jobs/"+id+"/update", `{"status":"SUCCEEDED","statusDetails":{"k":"v"}}`, "$aws/things/dev-1/jobs/"+id+"/update/accepted")
	}
	// A marker: a job for the monitor itself, whose notify it receives.
	marker := func(id string) []string {
		t.Helper()
		if _, err := ic.CreateJob(ctx, &iot.CreateJobInput{JobId: aws.String(id), Targets: []string{thingARN(ep, "monitor")}, Document: aws.String(`{}`)}); err != nil {
			t.Fatal(err)
		}
		return mon.until(t, "$aws/things/monitor/jobs/notify")
	}
	run("off")
	if got := marker("m1"); len(got) != 0 {
		t.Fatalf("events were published before UpdateEventConfigurations: %v", got)
	}
	if _, err := ic.UpdateEventConfigurations(ctx, &iot.UpdateEventConfigurationsInput{EventConfigurations: map[string]iottypes.Configuration{
		"JOB": {Enabled: true}, "JOB_EXECUTION": {Enabled: true}}}); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	run("on")
	var je jobsvc.JobEvent
	if err := json.Unmarshal(mon.expect(t, "$aws/events/jobExecution/on/succeeded"), &je); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	json.Unmarshal(mon.expect(t, "$aws/events/job/on/completed"), &raw)
	// timestamp in seconds; createdAt, lastUpdatedAt, completedAt in
	// milliseconds; the documented counters.
	ts, created, completed := int64(raw["timestamp"].(float64)), int64(raw["createdAt"].(float64)), int64(raw["completedAt"].(float64))
	pd, _ := raw["jobProcessDetails"].(map[string]any)
	if raw["eventType"] != "JOB" || raw["operation"] != "completed" || raw["status"] != "COMPLETED" || raw["jobId"] != "on" ||
		ts < before.Unix()-1 || ts > time.Now().Unix()+1 || created < before.UnixMilli()-1000 || completed < created || pd["numberOfSucceededThings"] != 1.0 {
		t.Fatalf("completed event %v", raw)
	}
	// Cancel: cancellation_in_progress, then canceled.
	ic.CreateJob(ctx, &iot.CreateJobInput{JobId: aws.String("cx"), Targets: []string{thingARN(ep, "dev-1")}, Document: aws.String(`{}`)})
	ic.CancelJob(ctx, &iot.CancelJobInput{JobId: aws.String("cx"), Comment: aws.String("stop")})
	json.Unmarshal(mon.expect(t, "$aws/events/job/cx/cancellation_in_progress"), &raw)
	if raw["status"] != "CANCELLATION_IN_PROGRESS" || raw["comment"] != "stop" {
		t.Fatalf("%v", raw)
	}
	mon.expect(t, "$aws/events/jobExecution/cx/canceled")
	json.Unmarshal(mon.expect(t, "$aws/events/job/cx/canceled"), &raw)
	if raw["status"] != "CANCELED" {
		t.Fatalf("%v", raw)
	}
	// Delete: deletion_in_progress, then (after the deletion) the
	// executions' and the job's deleted.
	ic.DeleteJob(ctx, &iot.DeleteJobInput{JobId: aws.String("cx")})
	json.Unmarshal(mon.expect(t, "$aws/events/job/cx/deletion_in_progress"), &raw)
	if raw["status"] != "DELETION_IN_PROGRESS" {
		t.Fatalf("%v", raw)
	}
	mon.expect(t, "$aws/events/jobExecution/cx/deleted")
	json.Unmarshal(mon.expect(t, "$aws/events/job/cx/deleted"), &raw)
	if raw["status"] != "DELETED" || raw["operation"] != "deleted" {
		t.Fatalf("%v", raw)
	}
}

// TestTerminalStateReachedOverMQTT: a device's describe of an execution in
// a terminal state is answered TerminalStateReached, as AWS documents it.
func TestTerminalStateReachedOverMQTT(t *testing.T) {
	c, ep, ic := fidelityCloud(t, nil)
	ctx := sdkCtx(t)
	dev := thingDevice(t, c, "dev-1")
	ic.CreateJob(ctx, &iot.CreateJobInput{JobId: aws.String("j"), Targets: []string{thingARN(ep, "dev-1")}, Document: aws.String(`{}`)})
	dev.request(t, "$aws/things/dev-1/jobs/start-next", `{}`, "$aws/things/dev-1/jobs/start-next/accepted")
	ic.CancelJob(ctx, &iot.CancelJobInput{JobId: aws.String("j"), Force: true})
	var r iotjobs.ErrorResponse
	iotjobs.Decode(dev.request(t, "$aws/things/dev-1/jobs/j/get", `{"clientToken":"t1"}`, "$aws/things/dev-1/jobs/j/get/rejected"), &r)
	if r.Code != iotjobs.CodeTerminalStateReached || r.ClientToken != "t1" || r.ExecutionState != nil {
		t.Fatalf("%+v", r)
	}
	iotjobs.Decode(dev.request(t, "$aws/things/dev-1/jobs/j/update", `{"status":"SUCCEEDED","clientToken":"t2"}`, "$aws/things/dev-1/jobs/j/update/rejected"), &r)
	if r.Code != iotjobs.CodeInvalidStateTransition || r.ExecutionState == nil || r.ExecutionState.Status != iotjobs.StatusCanceled {
		t.Fatalf("%+v", r)
	}
}

// TestNotifyListsFifteen: notify (JobExecutionsChanged) lists at most 15
// pending executions, as AWS's current documentation says.
func TestNotifyListsFifteen(t *testing.T) {
	c, ep, ic := fidelityCloud(t, nil)
	ctx := sdkCtx(t)
	dev := thingDevice(t, c, "dev-1", "$aws/things/dev-1/jobs/notify")
	for i := range 16 {
		if _, err := ic.CreateJob(ctx, &iot.CreateJobInput{JobId: aws.String(fmt.Sprint("j", i)), Targets: []string{thingARN(ep, "dev-1")}, Document: aws.String(`{}`)}); err != nil {
			t.Fatal(err)
		}
		var n iotjobs.NotifyMessage
		iotjobs.Decode(dev.expect(t, "$aws/things/dev-1/jobs/notify"), &n)
		if want := min(i+1, 15); len(n.Jobs[iotjobs.StatusQueued]) != want {
			t.Fatalf("after %d jobs notify lists %d", i+1, len(n.Jobs[iotjobs.StatusQueued]))
		}
	}
	// get lists them all.
	var g iotjobs.GetPendingResponse
	iotjobs.Decode(dev.request(t, "$aws/things/dev-1/jobs/get", `{}`, "$aws/things/dev-1/jobs/get/accepted"), &g)
	if len(g.QueuedJobs) != 16 {
		t.Fatal(len(g.QueuedJobs))
	}
}

// TestRequestThrottledOverMQTT: above the configured per-thing rate, a
// device's requests are rejected with RequestThrottled.
func TestRequestThrottledOverMQTT(t *testing.T) {
	c, _, _ := fidelityCloud(t, func(cfg *Config) { cfg.DeviceRequestRate, cfg.DeviceRequestBurst = 0.01, 3 })
	dev := thingDevice(t, c, "dev-1")
	other := thingDevice(t, c, "dev-2")
	for i := range 3 {
		dev.request(t, "$aws/things/dev-1/jobs/get", fmt.Sprintf(`{"clientToken":"%d"}`, i), "$aws/things/dev-1/jobs/get/accepted")
	}
	var r iotjobs.ErrorResponse
	iotjobs.Decode(dev.request(t, "$aws/things/dev-1/jobs/get", `{"clientToken":"x"}`, "$aws/things/dev-1/jobs/get/rejected"), &r)
	if r.Code != iotjobs.CodeRequestThrottled || r.ClientToken != "x" {
		t.Fatalf("%+v", r)
	}
	// The limit is per thing.
	other.request(t, "$aws/things/dev-2/jobs/get", `{}`, "$aws/things/dev-2/jobs/get/accepted")
}

// TestUnresolvablePlaceholderFailsCreateJob: a presigned-URL placeholder
// that names an invalid bucket fails CreateJob, instead of reaching
// devices as a literal ${aws:iot:...}.
func TestUnresolvablePlaceholderFailsCreateJob(t *testing.T) {
	c, ep, ic := fidelityCloud(t, nil)
	ctx := sdkCtx(t)
	c.ProvisionThing("dev-1")
	for _, url := range []string{"https://s3.us-east-1.amazonaws.com/Bad_Bucket/app.bin", "https://s3.amazonaws.com/ab/app.bin"} {
		_, err := ic.CreateJob(ctx, &iot.CreateJobInput{JobId: aws.String("j"), Targets: []string{thingARN(ep, "dev-1")},
			Document: aws.String(`{"url":"${aws:iot:s3-presigned-url:` + url + `}"}`)})
		var ire *iottypes.InvalidRequestException
		if err == nil || !errors.As(err, &ire) || !strings.Contains(aws.ToString(ire.Message), "cannot be resolved") || !strings.Contains(aws.ToString(ire.Message), "bucket") {
			t.Fatalf("%s: %v", url, err)
		}
	}
	if _, err := ic.DescribeJob(ctx, &iot.DescribeJobInput{JobId: aws.String("j")}); err == nil {
		t.Fatal("the refused job exists")
	}
}

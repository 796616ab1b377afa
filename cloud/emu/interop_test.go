//go:build interop

package emu

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"

	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awsfota/awsfota/iotjobs"
)

// The interop suite: the local cloud driven by AWS's own CLI and by
// Mosquitto's clients, and its Jobs service running on a real Mosquitto
// broker. `go test -tags interop -run Interop ./...`; .ci/run installs the
// Debian packages awscli, mosquitto and mosquitto-clients. A missing tool
// fails the test (it never skips), saying which package to install.

// tool returns the path of a program the suite needs, or fails.
func tool(t *testing.T, path, pkg string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the interop suite needs %s: apt-get install -y %s (%v)", path, pkg, err)
	}
	return path
}

// awsCLI runs the AWS CLI v2 (Debian's awscli puts it at /usr/bin/aws; an
// older v1 may come first on PATH) against the local cloud, with a private
// configuration so that nothing of the machine's leaks in.
type awsCLI struct {
	t   *testing.T
	bin string
	ep  Endpoints
	env []string
}

func newAWSCLI(t *testing.T, ep Endpoints) *awsCLI {
	bin := tool(t, "/usr/bin/aws", "awscli")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config"), []byte("[default]\nregion = "+ep.Region+"\ncli_pager =\n"), 0o600)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	env = append(env, "AWS_ACCESS_KEY_ID="+ep.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+ep.SecretAccessKey,
		"AWS_CONFIG_FILE="+filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "none"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER=")
	return &awsCLI{t: t, bin: bin, ep: ep, env: env}
}

// try runs the CLI and returns its combined output and exit code.
func (a *awsCLI) try(args ...string) (string, int) {
	a.t.Helper()
	cmd := exec.Command(a.bin, append([]string{"--endpoint-url", a.ep.HTTP, "--output", "json"}, args...)...)
	cmd.Env = a.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode()
	}
	if err != nil {
		a.t.Fatalf("aws %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), 0
}

// run runs the CLI, fails on an error, and decodes its JSON output into v
// (when not nil).
func (a *awsCLI) run(v any, args ...string) {
	a.t.Helper()
	out, code := a.try(args...)
	if code != 0 {
		a.t.Fatalf("aws %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			a.t.Fatalf("aws %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// fails runs the CLI and expects it to fail with an AWS error code.
func (a *awsCLI) fails(code string, args ...string) {
	a.t.Helper()
	out, rc := a.try(args...)
	if rc == 0 || !strings.Contains(out, "("+code+")") {
		a.t.Fatalf("aws %s: exit %d, want an error %s:\n%s", strings.Join(args, " "), rc, code, out)
	}
}

// mqttID is what a Mosquitto client connects with.
type mqttID struct {
	addr, ca, cert, key, clientID string
}

func (m mqttID) args() []string {
	host, port, _ := net.SplitHostPort(m.addr)
	return []string{"-h", host, "-p", port, "--cafile", m.ca, "--cert", m.cert, "--key", m.key, "-i", m.clientID}
}

// mosq runs a Mosquitto client and returns its combined output and exit code.
func mosq(t *testing.T, prog string, id mqttID, args ...string) (string, int) {
	t.Helper()
	bin := tool(t, "/usr/bin/"+prog, "mosquitto-clients")
	cmd := exec.Command(bin, append(id.args(), args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), 0
}

// request publishes a Jobs request with mosquitto_rr and returns the reply
// that arrives on replyTopic.
func request(t *testing.T, id mqttID, topic, replyTopic, payload string) string {
	t.Helper()
	out, code := mosq(t, "mosquitto_rr", id, "-t", topic, "-e", replyTopic, "-m", payload, "-W", "10")
	if code != 0 {
		t.Fatalf("mosquitto_rr %s: exit %d\n%s", topic, code, out)
	}
	return strings.TrimSpace(out)
}

// subscriber is a mosquitto_sub running in the background.
type subscriber struct {
	cmd  *exec.Cmd
	out  chan string   // lines of output
	done chan struct{} // closed when it has exited
}

// subscribe starts mosquitto_sub (with -d, so that the SUBACK shows) and
// returns once the broker has answered the subscription.
func subscribe(t *testing.T, id mqttID, args ...string) *subscriber {
	t.Helper()
	bin := tool(t, "/usr/bin/mosquitto_sub", "mosquitto-clients")
	s := &subscriber{out: make(chan string, 1024), done: make(chan struct{})}
	// stdbuf: mosquitto_sub's debug lines would sit in a pipe's buffer.
	stdbuf := tool(t, "/usr/bin/stdbuf", "coreutils")
	s.cmd = exec.Command(stdbuf, append(append([]string{"-oL", "-eL", bin}, id.args()...), append([]string{"-d"}, args...)...)...)
	pr, pw := io.Pipe()
	s.cmd.Stdout, s.cmd.Stderr = pw, pw
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case s.out <- sc.Text():
			default: // nobody is looking: drop it rather than block the process
			}
		}
		io.Copy(io.Discard, pr)
		close(s.out)
	}()
	go func() {
		s.cmd.Wait()
		pw.Close()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	s.until(t, "received SUBACK")
	return s
}

// until waits for a line of output containing want and returns it.
func (s *subscriber) until(t *testing.T, want string) string {
	t.Helper()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case l, ok := <-s.out:
			if !ok {
				t.Fatalf("mosquitto_sub ended before printing %q", want)
			}
			if strings.Contains(l, want) {
				return l
			}
		case <-timeout.C:
			t.Fatalf("mosquitto_sub printed no %q", want)
		}
	}
}

// TestAWSCLIInterop drives things, thing groups, certificates, jobs and S3
// with the AWS CLI v2, unmodified, through --endpoint-url.
func TestAWSCLIInterop(t *testing.T) {
	c := start(t, t.TempDir())
	defer c.Close()
	ep := c.Endpoints()
	aws := newAWSCLI(t, ep)
	dir := t.TempDir()

	var thing struct{ ThingName, ThingArn string }
	aws.run(&thing, "iot", "create-thing", "--thing-name", "dev-1", "--attribute-payload", `{"attributes":{"model":"nrf9160"}}`)
	if thing.ThingArn != "arn:aws:iot:"+ep.Region+":"+ep.AccountID+":thing/dev-1" {
		t.Fatalf("%+v", thing)
	}
	aws.fails("ResourceNotFoundException", "iot", "describe-thing", "--thing-name", "ghost")
	aws.fails("InvalidRequestException", "iot", "create-thing", "--thing-name", "bad:name/")
	var kc struct{ CertificateArn, CertificateId string }
	aws.run(&kc, "iot", "create-keys-and-certificate", "--set-as-active",
		"--certificate-pem-outfile", filepath.Join(dir, "cert.pem"), "--private-key-outfile", filepath.Join(dir, "key.pem"))
	aws.run(nil, "iot", "attach-thing-principal", "--thing-name", "dev-1", "--principal", kc.CertificateArn)
	var principals struct{ Principals []string }
	aws.run(&principals, "iot", "list-thing-principals", "--thing-name", "dev-1")
	if len(principals.Principals) != 1 || principals.Principals[0] != kc.CertificateArn {
		t.Fatalf("%+v", principals)
	}
	var group struct{ ThingGroupArn string }
	aws.run(&group, "iot", "create-thing-group", "--thing-group-name", "fleet")
	aws.run(nil, "iot", "add-thing-to-thing-group", "--thing-name", "dev-1", "--thing-group-name", "fleet")
	// A host name, as AWS answers; the port is in endpoints.json.
	var endpoint struct{ EndpointAddress string }
	aws.run(&endpoint, "iot", "describe-endpoint", "--endpoint-type", "iot:Data-ATS")
	if host, _, _ := net.SplitHostPort(ep.MQTT); endpoint.EndpointAddress != host {
		t.Fatal(endpoint)
	}

	// The image goes to S3 with the CLI; the job document names it with a
	// presigned-URL placeholder.
	img := bytes.Repeat([]byte("image-1.0.1 "), 50_000)
	os.WriteFile(filepath.Join(dir, "app.bin"), img, 0o600)
	aws.run(nil, "s3", "mb", "s3://firmware")
	if out, code := aws.try("s3", "cp", "--no-progress", filepath.Join(dir, "app.bin"), "s3://firmware/app-1.0.1.bin"); code != 0 {
		t.Fatalf("aws s3 cp: %s", out)
	}
	doc := `{"operation":"app_fw_update","fwversion":"1.0.1","url":"${aws:iot:s3-presigned-url:https://s3.` + ep.Region + `.amazonaws.com/firmware/app-1.0.1.bin}"}`
	os.WriteFile(filepath.Join(dir, "job.json"), []byte(doc), 0o600)
	var job struct{ JobArn, JobId string }
	aws.run(&job, "iot", "create-job", "--job-id", "fw-1", "--targets", group.ThingGroupArn, "--document", "file://"+filepath.Join(dir, "job.json"),
		"--target-selection", "CONTINUOUS", "--presigned-url-config", "expiresInSec=300",
		"--timeout-config", "inProgressTimeoutInMinutes=60", "--job-executions-rollout-config", "maximumPerMinute=100",
		"--abort-config", `{"criteriaList":[{"failureType":"FAILED","action":"CANCEL","thresholdPercentage":50,"minNumberOfExecutedThings":10}]}`,
		"--job-executions-retry-config", `{"criteriaList":[{"failureType":"TIMED_OUT","numberOfRetries":2}]}`)
	if job.JobId != "fw-1" {
		t.Fatal(job)
	}
	aws.fails("ResourceAlreadyExistsException", "iot", "create-job", "--job-id", "fw-1", "--targets", group.ThingGroupArn, "--document", "{}")
	var described struct {
		Job struct {
			Status, TargetSelection string
			Targets                 []string
			PresignedUrlConfig      struct{ ExpiresInSec int }
			JobProcessDetails       struct{ NumberOfQueuedThings int }
			AbortConfig             struct {
				CriteriaList []struct{ ThresholdPercentage float64 }
			}
		}
	}
	aws.run(&described, "iot", "describe-job", "--job-id", "fw-1")
	if described.Job.Status != "IN_PROGRESS" || described.Job.TargetSelection != "CONTINUOUS" || described.Job.PresignedUrlConfig.ExpiresInSec != 300 ||
		described.Job.JobProcessDetails.NumberOfQueuedThings != 1 || described.Job.AbortConfig.CriteriaList[0].ThresholdPercentage != 50 {
		t.Fatalf("%+v", described)
	}
	var jobs struct {
		Jobs []struct{ JobId, Status string }
	}
	aws.run(&jobs, "iot", "list-jobs", "--status", "IN_PROGRESS")
	if len(jobs.Jobs) != 1 {
		t.Fatal(jobs)
	}
	var execs struct {
		ExecutionSummaries []struct {
			ThingArn            string
			JobExecutionSummary struct{ Status string }
		}
	}
	aws.run(&execs, "iot", "list-job-executions-for-job", "--job-id", "fw-1")
	if len(execs.ExecutionSummaries) != 1 || execs.ExecutionSummaries[0].JobExecutionSummary.Status != "QUEUED" {
		t.Fatal(execs)
	}

	// The device (Mosquitto's client, with the CLI's certificate) gets the
	// document with a fresh presigned URL and downloads the image with it.
	id := mqttID{ep.MQTT, ep.CAFile, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), "dev-1"}
	var sn iotjobs.ExecutionResponse
	json.Unmarshal([]byte(request(t, id, "$aws/things/dev-1/jobs/start-next", "$aws/things/dev-1/jobs/start-next/accepted", `{"clientToken":"cli"}`)), &sn)
	var d struct{ URL string }
	if sn.Execution == nil || json.Unmarshal(sn.Execution.JobDocument, &d) != nil || !strings.Contains(d.URL, "X-Amz-Signature=") {
		t.Fatalf("%+v", sn)
	}
	resp, err := http.Get(d.URL)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if sha256.Sum256(got) != sha256.Sum256(img) {
		t.Fatalf("the presigned URL gave %s, %d bytes", resp.Status, len(got))
	}
	var ex struct {
		Execution struct {
			Status        string
			StatusDetails struct{ DetailsMap map[string]string }
			VersionNumber int
		}
	}
	request(t, id, "$aws/things/dev-1/jobs/fw-1/update", "$aws/things/dev-1/jobs/fw-1/update/accepted", `{"status":"IN_PROGRESS","statusDetails":{"progress":"100"},"expectedVersion":"2"}`)
	aws.run(&ex, "iot", "describe-job-execution", "--job-id", "fw-1", "--thing-name", "dev-1")
	if ex.Execution.Status != "IN_PROGRESS" || ex.Execution.StatusDetails.DetailsMap["progress"] != "100" || ex.Execution.VersionNumber != 3 {
		t.Fatalf("%+v", ex)
	}
	aws.fails("InvalidStateTransitionException", "iot", "cancel-job-execution", "--job-id", "fw-1", "--thing-name", "dev-1")
	aws.fails("VersionConflictException", "iot", "cancel-job-execution", "--job-id", "fw-1", "--thing-name", "dev-1", "--force", "--expected-version", "1")
	aws.fails("InvalidStateTransitionException", "iot", "delete-job", "--job-id", "fw-1")
	aws.run(nil, "iot", "cancel-job", "--job-id", "fw-1", "--force", "--reason-code", "OPERATOR", "--comment", "stop")
	aws.run(&ex, "iot", "describe-job-execution", "--job-id", "fw-1", "--thing-name", "dev-1")
	if ex.Execution.Status != "CANCELED" {
		t.Fatal(ex)
	}
	aws.run(nil, "iot", "delete-job", "--job-id", "fw-1", "--force")
	waitDeleted(t, aws, "fw-1")

	// Certificates: deactivate, detach, delete.
	aws.run(nil, "iot", "update-certificate", "--certificate-id", kc.CertificateId, "--new-status", "INACTIVE")
	var cd struct{ CertificateDescription struct{ Status string } }
	aws.run(&cd, "iot", "describe-certificate", "--certificate-id", kc.CertificateId)
	if cd.CertificateDescription.Status != "INACTIVE" {
		t.Fatal(cd)
	}
	aws.fails("DeleteConflictException", "iot", "delete-certificate", "--certificate-id", kc.CertificateId)
	aws.run(nil, "iot", "detach-thing-principal", "--thing-name", "dev-1", "--principal", kc.CertificateArn)
	aws.run(nil, "iot", "delete-certificate", "--certificate-id", kc.CertificateId)
	aws.run(nil, "iot", "remove-thing-from-thing-group", "--thing-name", "dev-1", "--thing-group-name", "fleet")
	aws.run(nil, "iot", "delete-thing-group", "--thing-group-name", "fleet")
	aws.run(nil, "iot", "delete-thing", "--thing-name", "dev-1")
	var things struct{ Things []any }
	aws.run(&things, "iot", "list-things")
	if len(things.Things) != 0 {
		t.Fatal(things)
	}
	// S3 listing and cleanup.
	if out, _ := aws.try("s3", "ls", "s3://firmware/"); !strings.Contains(out, "app-1.0.1.bin") {
		t.Fatalf("aws s3 ls:\n%s", out)
	}
	aws.run(nil, "s3", "rm", "s3://firmware/app-1.0.1.bin")
	aws.run(nil, "s3", "rb", "s3://firmware")
}

// waitDeleted polls describe-job until the job's deletion has ended.
func waitDeleted(t *testing.T, aws *awsCLI, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code := aws.try("iot", "describe-job", "--job-id", id)
		if code != 0 && strings.Contains(out, "(ResourceNotFoundException)") {
			return
		}
		if code != 0 || !strings.Contains(out, `"DELETION_IN_PROGRESS"`) {
			t.Fatalf("describe-job of a job being deleted: exit %d\n%s", code, out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is still being deleted", id)
		}
	}
}

// TestAWSCLIFidelityInterop drives the operations "AWS IoT Jobs fidelity
// v2" added with the AWS CLI v2: asynchronous deletion, event
// configurations, exact job documents, templates, schedules, UpdateJob,
// AssociateTargetsWithJob, DeleteJobExecution, dynamic thing groups.
//
// Deletion takes 20 s here: between delete-job and the create-job that must
// fail, the AWS CLI starts twice, which takes seconds on a loaded machine.
func TestAWSCLIFidelityInterop(t *testing.T) {
	c, err := Start(Config{DataDir: t.TempDir(), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true, JobDeletionDelay: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ep := c.Endpoints()
	aws := newAWSCLI(t, ep)
	dir := t.TempDir()
	arn := func(kind, name string) string {
		return "arn:aws:iot:" + ep.Region + ":" + ep.AccountID + ":" + kind + "/" + name
	}
	for _, th := range []string{"dev-1", "dev-2"} {
		aws.run(nil, "iot", "create-thing", "--thing-name", th, "--attribute-payload", `{"attributes":{"model":"nrf9160"}}`)
	}

	// Events: off until enabled.
	var ec struct {
		EventConfigurations map[string]struct{ Enabled bool }
	}
	aws.run(&ec, "iot", "describe-event-configurations")
	if len(ec.EventConfigurations) == 0 || ec.EventConfigurations["JOB"].Enabled {
		t.Fatalf("%+v", ec)
	}
	aws.run(nil, "iot", "update-event-configurations", "--event-configurations", `{"JOB":{"Enabled":true},"JOB_EXECUTION":{"Enabled":true}}`)
	aws.run(&ec, "iot", "describe-event-configurations")
	if !ec.EventConfigurations["JOB"].Enabled || !ec.EventConfigurations["JOB_EXECUTION"].Enabled {
		t.Fatalf("%+v", ec)
	}

	// The document comes back byte for byte.
	doc := "{\n  \"operation\": \"app_fw_update\",\n  \"fwversion\": \"1.0.1\"\n}\n"
	os.WriteFile(filepath.Join(dir, "job.json"), []byte(doc), 0o600)
	aws.run(nil, "iot", "create-job", "--job-id", "exact", "--targets", arn("thing", "dev-1"), "--document", "file://"+filepath.Join(dir, "job.json"))
	var gd struct{ Document string }
	aws.run(&gd, "iot", "get-job-document", "--job-id", "exact")
	if gd.Document != doc {
		t.Fatalf("get-job-document %q, created with %q", gd.Document, doc)
	}

	// Deletion takes a while; a CANCELED job needs no force.
	aws.run(nil, "iot", "cancel-job", "--job-id", "exact")
	aws.run(nil, "iot", "delete-job", "--job-id", "exact")
	aws.fails("ResourceAlreadyExistsException", "iot", "create-job", "--job-id", "exact", "--targets", arn("thing", "dev-1"), "--document", "{}")
	waitDeleted(t, aws, "exact")
	aws.run(nil, "iot", "create-job", "--job-id", "exact", "--targets", arn("thing", "dev-1"), "--document", "{}")

	// Templates.
	var tpl struct{ JobTemplateArn, JobTemplateId string }
	aws.run(&tpl, "iot", "create-job-template", "--job-template-id", "fw-tpl", "--description", "fw", "--document", "file://"+filepath.Join(dir, "job.json"),
		"--timeout-config", "inProgressTimeoutInMinutes=15")
	if tpl.JobTemplateArn != arn("jobtemplate", "fw-tpl") {
		t.Fatal(tpl)
	}
	aws.run(nil, "iot", "create-job", "--job-id", "from-tpl", "--targets", arn("thing", "dev-2"), "--job-template-arn", tpl.JobTemplateArn)
	var dj struct {
		Job struct {
			JobTemplateArn, Status string
			TimeoutConfig          struct{ InProgressTimeoutInMinutes int }
			Targets                []string
			Description            string
		}
	}
	aws.run(&dj, "iot", "describe-job", "--job-id", "from-tpl")
	if dj.Job.JobTemplateArn != tpl.JobTemplateArn || dj.Job.TimeoutConfig.InProgressTimeoutInMinutes != 15 {
		t.Fatalf("%+v", dj)
	}
	var lt struct {
		JobTemplates []struct{ JobTemplateId string }
	}
	aws.run(&lt, "iot", "list-job-templates")
	if len(lt.JobTemplates) != 1 {
		t.Fatal(lt)
	}
	aws.run(nil, "iot", "describe-job-template", "--job-template-id", "fw-tpl")
	aws.run(nil, "iot", "delete-job-template", "--job-template-id", "fw-tpl")
	aws.fails("ResourceNotFoundException", "iot", "describe-job-template", "--job-template-id", "fw-tpl")

	// UpdateJob.
	aws.run(nil, "iot", "update-job", "--job-id", "from-tpl", "--description", "updated")
	aws.run(&dj, "iot", "describe-job", "--job-id", "from-tpl")
	if dj.Job.Description != "updated" {
		t.Fatalf("%+v", dj)
	}

	// A scheduled job waits for its start time.
	start := time.Now().UTC().Add(2 * time.Hour).Format("2006-01-02T15:04")
	aws.run(nil, "iot", "create-job", "--job-id", "later", "--targets", arn("thing", "dev-1"), "--document", "{}",
		"--scheduling-config", "startTime="+start+",endBehavior=STOP_ROLLOUT")
	aws.run(&dj, "iot", "describe-job", "--job-id", "later")
	if dj.Job.Status != "SCHEDULED" {
		t.Fatalf("%+v", dj)
	}
	aws.fails("InvalidRequestException", "iot", "create-job", "--job-id", "too-soon", "--targets", arn("thing", "dev-1"), "--document", "{}",
		"--scheduling-config", "startTime="+time.Now().UTC().Add(5*time.Minute).Format("2006-01-02T15:04"))

	// A dynamic thing group, and a continuous job on it that gets more
	// targets with AssociateTargetsWithJob.
	aws.run(nil, "iot", "create-dynamic-thing-group", "--thing-group-name", "nrf91", "--query-string", "attributes.model:nrf9160 AND thingName:dev-*")
	var things struct{ Things []string }
	aws.run(&things, "iot", "list-things-in-thing-group", "--thing-group-name", "nrf91")
	if strings.Join(things.Things, ",") != "dev-1,dev-2" {
		t.Fatal(things)
	}
	aws.fails("InvalidQueryException", "iot", "create-dynamic-thing-group", "--thing-group-name", "bad", "--query-string", "connectivity.connected:true")
	aws.run(nil, "iot", "create-thing", "--thing-name", "other")
	aws.run(nil, "iot", "create-job", "--job-id", "cont", "--targets", arn("thinggroup", "nrf91"), "--document", "{}", "--target-selection", "CONTINUOUS")
	aws.run(nil, "iot", "associate-targets-with-job", "--job-id", "cont", "--targets", arn("thing", "other"), "--comment", "one more")
	aws.run(&dj, "iot", "describe-job", "--job-id", "cont")
	if len(dj.Job.Targets) != 2 {
		t.Fatalf("%+v", dj)
	}
	// DeleteJobExecution: a terminal execution, or IN_PROGRESS with force.
	aws.fails("InvalidStateTransitionException", "iot", "delete-job-execution", "--job-id", "cont", "--thing-name", "other", "--execution-number", "1")
	aws.run(nil, "iot", "cancel-job-execution", "--job-id", "cont", "--thing-name", "other")
	aws.run(nil, "iot", "delete-job-execution", "--job-id", "cont", "--thing-name", "other", "--execution-number", "1")
	aws.fails("ResourceNotFoundException", "iot", "describe-job-execution", "--job-id", "cont", "--thing-name", "other")
	aws.run(nil, "iot", "delete-dynamic-thing-group", "--thing-group-name", "nrf91")

	// The device side over HTTPS: the iot-jobs-data API.
	var pending struct{ QueuedJobs []struct{ JobId string } }
	aws.run(&pending, "iot-jobs-data", "get-pending-job-executions", "--thing-name", "dev-2")
	if len(pending.QueuedJobs) != 1 || pending.QueuedJobs[0].JobId != "from-tpl" {
		t.Fatalf("%+v", pending)
	}
	var next struct {
		Execution struct {
			JobId, Status, JobDocument string
			VersionNumber              int
		}
	}
	aws.run(&next, "iot-jobs-data", "start-next-pending-job-execution", "--thing-name", "dev-2", "--status-details", "step=download")
	if next.Execution.JobId != "from-tpl" || next.Execution.Status != "IN_PROGRESS" || next.Execution.JobDocument != doc {
		t.Fatalf("%+v", next)
	}
	var upd struct{ ExecutionState struct{ Status string } }
	aws.run(&upd, "iot-jobs-data", "update-job-execution", "--thing-name", "dev-2", "--job-id", "from-tpl", "--status", "SUCCEEDED",
		"--expected-version", "2", "--include-job-execution-state")
	if upd.ExecutionState.Status != "SUCCEEDED" {
		t.Fatalf("%+v", upd)
	}
	aws.fails("TerminalStateException", "iot-jobs-data", "describe-job-execution", "--thing-name", "dev-2", "--job-id", "from-tpl")
	aws.fails("InvalidStateTransitionException", "iot-jobs-data", "update-job-execution", "--thing-name", "dev-2", "--job-id", "from-tpl", "--status", "IN_PROGRESS")
}

// TestAWSCLIOverHTTPSInterop: against a cloud serving HTTPS, the AWS CLI
// works once it trusts the local CA (AWS_CA_BUNDLE), and refuses otherwise.
func TestAWSCLIOverHTTPSInterop(t *testing.T) {
	c, err := Start(Config{DataDir: t.TempDir(), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true, HTTPS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ep := c.Endpoints()
	if !strings.HasPrefix(ep.HTTP, "https://") {
		t.Fatal(ep.HTTP)
	}
	aws := newAWSCLI(t, ep)
	if out, code := aws.try("iot", "list-things"); code == 0 || !strings.Contains(out, "SSL") {
		t.Fatalf("the CLI trusted the local CA without being told: exit %d\n%s", code, out)
	}
	aws.env = append(aws.env, "AWS_CA_BUNDLE="+ep.CAFile)
	aws.run(nil, "iot", "create-thing", "--thing-name", "dev-1")
	aws.run(nil, "s3", "mb", "s3://firmware")
	f := filepath.Join(t.TempDir(), "app.bin")
	os.WriteFile(f, []byte("image"), 0o600)
	if out, code := aws.try("s3", "cp", "--no-progress", f, "s3://firmware/app.bin"); code != 0 {
		t.Fatalf("aws s3 cp: %s", out)
	}
	if out, code := aws.try("s3", "presign", "s3://firmware/app.bin"); code != 0 || !strings.HasPrefix(strings.TrimSpace(out), "https://") {
		t.Fatalf("aws s3 presign: %d %s", code, out)
	}
}

// TestMosquittoClientsInterop uses the Jobs device API over mutual TLS with
// mosquitto_pub, mosquitto_sub and mosquitto_rr, and checks the broker's
// policy refusals as those clients see them.
func TestMosquittoClientsInterop(t *testing.T) {
	c := start(t, t.TempDir())
	defer c.Close()
	ep := c.Endpoints()
	dir := t.TempDir()
	ids := map[string]mqttID{}
	for _, th := range []string{"dev-1", "dev-2"} {
		cr, err := c.ProvisionThing(th)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile := filepath.Join(dir, th+".pem"), filepath.Join(dir, th+".key")
		os.WriteFile(certFile, cr.CertPEM, 0o600)
		os.WriteFile(keyFile, cr.KeyPEM, 0o600)
		ids[th] = mqttID{ep.MQTT, ep.CAFile, certFile, keyFile, th}
	}
	aws := newAWSCLI(t, ep)
	d1 := ids["dev-1"]

	// notify-next reaches a subscriber when a job is created.
	sub := subscribe(t, d1, "-t", "$aws/things/dev-1/jobs/notify-next", "-C", "1", "-W", "30")
	aws.run(nil, "iot", "create-job", "--job-id", "fw-1", "--targets", "arn:aws:iot:"+ep.Region+":"+ep.AccountID+":thing/dev-1",
		"--document", `{"operation":"app_fw_update","fwversion":"1.0.1"}`)
	line := sub.until(t, `"jobId":"fw-1"`)
	var nn iotjobs.NotifyNextMessage
	if err := json.Unmarshal([]byte(line), &nn); err != nil || nn.Execution.Status != iotjobs.StatusQueued || nn.Execution.VersionNumber != 1 {
		t.Fatalf("notify-next %q: %v", line, err)
	}

	// get, start-next, describe, update: replies to the requester, token echoed.
	var g iotjobs.GetPendingResponse
	json.Unmarshal([]byte(request(t, d1, "$aws/things/dev-1/jobs/get", "$aws/things/dev-1/jobs/get/accepted", `{"clientToken":"g1"}`)), &g)
	if g.ClientToken != "g1" || len(g.QueuedJobs) != 1 {
		t.Fatalf("%+v", g)
	}
	var sn iotjobs.ExecutionResponse
	json.Unmarshal([]byte(request(t, d1, "$aws/things/dev-1/jobs/start-next", "$aws/things/dev-1/jobs/start-next/accepted", `{"clientToken":"s1","stepTimeoutInMinutes":10}`)), &sn)
	if sn.ClientToken != "s1" || sn.Execution.Status != iotjobs.StatusInProgress || sn.Execution.VersionNumber != 2 || *sn.Execution.ApproximateSecondsBeforeTimedOut != 600 {
		t.Fatalf("%+v", sn)
	}
	var ur iotjobs.UpdateResponse
	json.Unmarshal([]byte(request(t, d1, "$aws/things/dev-1/jobs/fw-1/update", "$aws/things/dev-1/jobs/fw-1/update/accepted",
		`{"status":"SUCCEEDED","expectedVersion":"2","includeJobExecutionState":true,"clientToken":"u1"}`)), &ur)
	if ur.ExecutionState == nil || ur.ExecutionState.Status != iotjobs.StatusSucceeded || ur.ExecutionState.VersionNumber != 3 {
		t.Fatalf("%+v", ur)
	}
	var rej iotjobs.ErrorResponse
	json.Unmarshal([]byte(request(t, d1, "$aws/things/dev-1/jobs/fw-1/update", "$aws/things/dev-1/jobs/fw-1/update/rejected", `{"status":"IN_PROGRESS","clientToken":"u2"}`)), &rej)
	if rej.Code != iotjobs.CodeInvalidStateTransition || rej.ClientToken != "u2" || rej.ExecutionState == nil {
		t.Fatalf("%+v", rej)
	}
	// A describe of the finished execution: TerminalStateReached, as AWS
	// documents it.
	json.Unmarshal([]byte(request(t, d1, "$aws/things/dev-1/jobs/fw-1/get", "$aws/things/dev-1/jobs/fw-1/get/rejected", `{"clientToken":"g2"}`)), &rej)
	if rej.Code != iotjobs.CodeTerminalStateReached || rej.ClientToken != "g2" {
		t.Fatalf("%+v", rej)
	}
	json.Unmarshal([]byte(request(t, d1, "$aws/things/dev-1/jobs/fw-1/delete", "$aws/things/dev-1/jobs/fw-1/delete/rejected", `{"clientToken":"x"}`)), &rej)
	if rej.Code != iotjobs.CodeInvalidTopic {
		t.Fatalf("%+v", rej)
	}
	json.Unmarshal([]byte(request(t, d1, "$aws/things/dev-1/jobs/get", "$aws/things/dev-1/jobs/get/rejected", `{"clientToken":`)), &rej)
	if rej.Code != iotjobs.CodeInvalidJSON {
		t.Fatalf("%+v", rej)
	}

	// Policy refusals. A wildcard in another thing's place, or above the
	// thing's own prefix, is refused (SUBACK 0x87).
	for _, f := range []string{"$aws/things/+/jobs/#", "$aws/things/dev-2/jobs/#", "#"} {
		out, _ := mosq(t, "mosquitto_sub", d1, "-t", f, "-V", "5", "-C", "1", "-W", "5")
		if !strings.Contains(out, "All subscription requests were denied") {
			t.Errorf("subscription to %s:\n%s", f, out)
		}
	}
	out, _ := mosq(t, "mosquitto_sub", d1, "-t", "$aws/things/dev-1/jobs/notify", "-t", "$aws/things/+/jobs/notify", "-V", "5", "-d", "-C", "1", "-W", "2")
	if !strings.Contains(out, "Subscribed (mid: 1): 0, 135") {
		t.Errorf("a mixed SUBSCRIBE should be granted, then refused (135 = 0x87):\n%s", out)
	}
	// Publishing into another thing's namespace: MQTT 5 gets a PUBACK with
	// Not authorized, MQTT 3.1.1 is disconnected (as on AWS).
	if out, _ := mosq(t, "mosquitto_pub", d1, "-t", "$aws/things/dev-2/jobs/get", "-m", "{}", "-q", "1", "-V", "5"); !strings.Contains(out, "Not authorized") {
		t.Errorf("publish into dev-2's topics (MQTT 5):\n%s", out)
	}
	if out, code := mosq(t, "mosquitto_pub", d1, "-t", "$aws/things/dev-2/jobs/get", "-m", "{}", "-q", "1", "-V", "311"); code == 0 {
		t.Errorf("publish into dev-2's topics (MQTT 3.1.1) succeeded:\n%s", out)
	}
	// dev-1's certificate cannot connect as dev-2.
	as2 := d1
	as2.clientID = "dev-2"
	if out, code := mosq(t, "mosquitto_pub", as2, "-t", "$aws/things/dev-2/jobs/get", "-m", "{}", "-V", "311"); code == 0 || !strings.Contains(out, "not authorised") {
		t.Errorf("dev-1's certificate as dev-2: exit %d\n%s", code, out)
	}
	// A certificate made INACTIVE loses its live connection and cannot
	// connect again.
	live := subscribe(t, ids["dev-2"], "-t", "$aws/things/dev-2/jobs/notify", "-W", "60")
	certID := ""
	for _, cr := range mustList(t, c) {
		if len(cr.Things) == 1 && cr.Things[0] == "dev-2" {
			certID = cr.ID
		}
	}
	aws.run(nil, "iot", "update-certificate", "--certificate-id", certID, "--new-status", "INACTIVE")
	select {
	case <-live.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the INACTIVE certificate's connection was not dropped")
	}
	if out, code := mosq(t, "mosquitto_pub", ids["dev-2"], "-t", "$aws/things/dev-2/jobs/get", "-m", "{}", "-V", "311"); code == 0 {
		t.Errorf("an INACTIVE certificate connected:\n%s", out)
	}
}

type certInfo struct {
	ID     string
	Things []string
}

func mustList(t *testing.T, c *Cloud) []certInfo {
	t.Helper()
	certs, err := c.Registry.ListCertificates()
	if err != nil {
		t.Fatal(err)
	}
	var out []certInfo
	for _, cr := range certs {
		out = append(out, certInfo{cr.ID, cr.Things})
	}
	return out
}

// TestMosquittoBrokerInterop runs the local cloud's Jobs service on a real
// Mosquitto broker, configured by WriteMosquittoConfig: the service attaches
// as a privileged client, devices (Mosquitto's clients) are confined by
// Mosquitto's ACL to their own topics and get their replies through their
// subscriptions.
func TestMosquittoBrokerInterop(t *testing.T) {
	dir := t.TempDir()
	addr, files, log := startMosquitto(t, dir)
	c, err := Start(Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", ExternalMQTT: addr, NoSync: true})
	if err != nil {
		t.Fatalf("%v\nmosquitto:\n%s", err, log.String())
	}
	defer c.Close()
	ep := c.Endpoints()
	if ep.MQTT != addr {
		t.Fatal(ep)
	}
	ids := map[string]mqttID{}
	for _, th := range []string{"dev-1", "dev-2"} {
		cr, err := c.ProvisionThing(th)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile := filepath.Join(dir, th+".pem"), filepath.Join(dir, th+".key")
		os.WriteFile(certFile, cr.CertPEM, 0o600)
		os.WriteFile(keyFile, cr.KeyPEM, 0o600)
		ids[th] = mqttID{addr, files.CAFile, certFile, keyFile, th}
	}
	d1 := ids["dev-1"]
	sub := subscribe(t, d1, "-t", "$aws/things/dev-1/jobs/notify-next", "-C", "1", "-W", "30")
	aws := newAWSCLI(t, ep)
	aws.run(nil, "iot", "create-job", "--job-id", "fw-1", "--targets", "arn:aws:iot:"+ep.Region+":"+ep.AccountID+":thing/dev-1",
		"--document", `{"operation":"app_fw_update"}`)
	sub.until(t, `"jobId":"fw-1"`)

	var sn iotjobs.ExecutionResponse
	json.Unmarshal([]byte(request(t, d1, "$aws/things/dev-1/jobs/start-next", "$aws/things/dev-1/jobs/start-next/accepted", `{"clientToken":"m1"}`)), &sn)
	if sn.ClientToken != "m1" || sn.Execution == nil || sn.Execution.Status != iotjobs.StatusInProgress {
		t.Fatalf("%+v", sn)
	}
	request(t, d1, "$aws/things/dev-1/jobs/fw-1/update", "$aws/things/dev-1/jobs/fw-1/update/accepted", `{"status":"SUCCEEDED","expectedVersion":2}`)
	if e, err := c.Jobs.DescribeExecution("fw-1", "dev-1"); err != nil || e.Status != iotjobs.StatusSucceeded {
		t.Fatalf("%+v %v", e, err)
	}
	// Mosquitto's ACL: a request published into another thing's namespace
	// never reaches the service, and a wildcard subscription (which
	// Mosquitto grants) delivers only the thing's own messages.
	mosq(t, "mosquitto_pub", d1, "-t", "$aws/things/dev-2/jobs/start-next", "-m", "{}", "-q", "1", "-V", "5")
	wide := subscribe(t, d1, "-t", "$aws/things/+/jobs/notify-next", "-W", "60")
	aws.run(nil, "iot", "create-job", "--job-id", "fw-2", "--targets", "arn:aws:iot:"+ep.Region+":"+ep.AccountID+":thing/dev-2", "--document", `{"op":"x"}`)
	aws.run(nil, "iot", "create-job", "--job-id", "fw-3", "--targets", "arn:aws:iot:"+ep.Region+":"+ep.AccountID+":thing/dev-1", "--document", `{"op":"y"}`)
	// The service publishes in order: had dev-2's notification been
	// delivered to dev-1, it would come before dev-1's own.
	for {
		l := wide.until(t, `"jobId":"fw-`)
		if strings.Contains(l, `"fw-2"`) {
			t.Fatalf("Mosquitto delivered dev-2's notification to dev-1: %s", l)
		}
		if strings.Contains(l, `"fw-3"`) {
			break
		}
	}
	if e, _ := c.Jobs.DescribeExecution("fw-2", "dev-2"); e.Status != iotjobs.StatusQueued {
		t.Fatalf("dev-1 started dev-2's job: %+v", e)
	}
	// dev-2 runs its job through Mosquitto too.
	d2 := ids["dev-2"]
	json.Unmarshal([]byte(request(t, d2, "$aws/things/dev-2/jobs/start-next", "$aws/things/dev-2/jobs/start-next/accepted", `{"clientToken":"m2"}`)), &sn)
	if sn.Execution == nil || sn.Execution.JobID != "fw-2" {
		t.Fatalf("%+v", sn)
	}
}

// startMosquitto configures a Mosquitto for the local cloud in dir
// (WriteMosquittoConfig) and runs it until the test ends.
func startMosquitto(t *testing.T, dir string) (string, MosquittoFiles, *syncBuffer) {
	t.Helper()
	bin := tool(t, "/usr/sbin/mosquitto", "mosquitto")
	addr := freeAddr(t)
	files, err := WriteMosquittoConfig(dir, addr)
	if err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	broker := exec.Command(bin, "-c", files.Conf)
	broker.Stdout, broker.Stderr = log, log
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	brokerDone := make(chan error, 1)
	go func() { brokerDone <- broker.Wait() }()
	t.Cleanup(func() {
		broker.Process.Signal(os.Interrupt)
		select {
		case <-brokerDone:
		case <-time.After(10 * time.Second):
			broker.Process.Kill()
			<-brokerDone
		}
	})
	waitListening(t, addr, brokerDone, log)
	return addr, files, log
}

// syncBuffer is a bytes.Buffer a process writes while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestMosquittoRevocationInterop: on Mosquitto, a certificate made INACTIVE
// or REVOKED (UpdateCertificate, through the AWS CLI) can no longer
// connect: the cloud rewrites Mosquitto's revocation list and makes it
// reload it; an ACTIVE one again connects; a deleted one stays refused,
// across a restart of the cloud too.
func TestMosquittoRevocationInterop(t *testing.T) {
	dir := t.TempDir()
	addr, files, log := startMosquitto(t, dir)
	c, err := Start(Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", ExternalMQTT: addr, NoSync: true})
	if err != nil {
		t.Fatalf("%v\nmosquitto:\n%s", err, log.String())
	}
	defer func() { c.Close() }()
	ids := map[string]mqttID{}
	certIDs := map[string]string{}
	for _, th := range []string{"dev-1", "dev-2"} {
		cr, err := c.ProvisionThing(th)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile := filepath.Join(dir, th+".pem"), filepath.Join(dir, th+".key")
		os.WriteFile(certFile, cr.CertPEM, 0o600)
		os.WriteFile(keyFile, cr.KeyPEM, 0o600)
		ids[th] = mqttID{addr, files.CAFile, certFile, keyFile, th}
		certIDs[th] = cr.CertificateID
	}
	connects := func(th string) bool {
		_, code := mosq(t, "mosquitto_pub", ids[th], "-t", "$aws/things/"+th+"/hello", "-m", "x", "-q", "1", "-V", "311")
		return code == 0
	}
	// until polls (Mosquitto reloads on its own time after the signal).
	until := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s\nmosquitto:\n%s", what, log.String())
			}
			time.Sleep(50 * time.Millisecond) // polling with a deadline: a client process per try
		}
	}
	if !connects("dev-1") || !connects("dev-2") {
		t.Fatalf("ACTIVE certificates refused\nmosquitto:\n%s", log.String())
	}
	aws := newAWSCLI(t, c.Endpoints())
	for _, st := range []struct {
		status string
		want   bool
	}{{"INACTIVE", false}, {"ACTIVE", true}, {"REVOKED", false}} {
		aws.run(nil, "iot", "update-certificate", "--certificate-id", certIDs["dev-1"], "--new-status", st.status)
		until(fmt.Sprintf("dev-1's certificate %s: connects %v", st.status, !st.want), func() bool { return connects("dev-1") == st.want })
	}
	if !connects("dev-2") {
		t.Fatal("revoking dev-1's certificate refused dev-2's")
	}
	// Deleted from the registry: still refused, also after a restart of
	// the cloud, which rewrites the list.
	ep := c.Endpoints()
	aws.run(nil, "iot", "update-certificate", "--certificate-id", certIDs["dev-2"], "--new-status", "INACTIVE")
	aws.run(nil, "iot", "detach-thing-principal", "--thing-name", "dev-2", "--principal", "arn:aws:iot:"+ep.Region+":"+ep.AccountID+":cert/"+certIDs["dev-2"])
	aws.run(nil, "iot", "delete-certificate", "--certificate-id", certIDs["dev-2"])
	until("dev-2's deleted certificate still connects", func() bool { return !connects("dev-2") })
	c.Close()
	if c, err = Start(Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", ExternalMQTT: addr, NoSync: true}); err != nil {
		t.Fatal(err)
	}
	for _, th := range []string{"dev-1", "dev-2"} {
		if connects(th) {
			t.Fatalf("%s's certificate connects after the cloud restarted", th)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// waitListening polls until something accepts connections at addr.
func waitListening(t *testing.T, addr string, exited <-chan error, log fmt.Stringer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("mosquitto exited: %v\n%s", err, log.String())
		case <-ctx.Done():
			t.Fatalf("mosquitto does not listen on %s:\n%s", addr, log.String())
		case <-tick.C:
		}
	}
}

// TestMosquittoCreatedThingInterop: a device made the AWS way — a thing,
// CreateKeysAndCertificate (common name "AWS IoT Certificate", as on AWS),
// AttachThingPrincipal, all through the AWS CLI — may use its own thing's
// topics on Mosquitto and no other's, and no longer its own once the
// certificate is detached: the cloud rewrites Mosquitto's access list from
// the registry. (With the common name as the user name, every such
// certificate was one user, confined to the topics of a thing named "AWS
// IoT Certificate": none of them could use the Jobs API.)
func TestMosquittoCreatedThingInterop(t *testing.T) {
	dir := t.TempDir()
	addr, files, log := startMosquitto(t, dir)
	c, err := Start(Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", ExternalMQTT: addr, NoSync: true})
	if err != nil {
		t.Fatalf("%v\nmosquitto:\n%s", err, log.String())
	}
	defer c.Close()
	ep := c.Endpoints()
	aws := newAWSCLI(t, ep)
	ids := map[string]mqttID{}
	arns := map[string]string{}
	for _, th := range []string{"dev-a", "dev-b"} {
		aws.run(nil, "iot", "create-thing", "--thing-name", th)
		var kc struct {
			CertificateArn string `json:"certificateArn"`
			CertificatePem string `json:"certificatePem"`
			KeyPair        struct {
				PrivateKey string `json:"PrivateKey"`
			} `json:"keyPair"`
		}
		aws.run(&kc, "iot", "create-keys-and-certificate", "--set-as-active")
		aws.run(nil, "iot", "attach-thing-principal", "--thing-name", th, "--principal", kc.CertificateArn)
		certFile, keyFile := filepath.Join(dir, th+".pem"), filepath.Join(dir, th+".key")
		os.WriteFile(certFile, []byte(kc.CertificatePem), 0o600)
		os.WriteFile(keyFile, []byte(kc.KeyPair.PrivateKey), 0o600)
		ids[th] = mqttID{addr, files.CAFile, certFile, keyFile, th}
		arns[th] = kc.CertificateArn
	}
	aws.run(nil, "iot", "create-job", "--job-id", "j-a", "--targets", "arn:aws:iot:"+ep.Region+":"+ep.AccountID+":thing/dev-a", "--document", `{"op":"a"}`)
	aws.run(nil, "iot", "create-job", "--job-id", "j-b", "--targets", "arn:aws:iot:"+ep.Region+":"+ep.AccountID+":thing/dev-b", "--document", `{"op":"b"}`)
	// asks dev's pending jobs as who; "" when no reply came.
	ask := func(who, dev string) string {
		out, code := mosq(t, "mosquitto_rr", ids[who], "-t", "$aws/things/"+dev+"/jobs/get", "-e", "$aws/things/"+dev+"/jobs/get/accepted", "-m", `{}`, "-W", "3")
		if code != 0 {
			return ""
		}
		return out
	}
	until := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s\nmosquitto:\n%s", what, log.String())
			}
			time.Sleep(50 * time.Millisecond) // polling with a deadline: a client process per try
		}
	}
	// The access list follows the attachments within a moment.
	until("dev-a cannot use its jobs topics on Mosquitto", func() bool { return strings.Contains(ask("dev-a", "dev-a"), `"j-a"`) })
	if !strings.Contains(ask("dev-b", "dev-b"), `"j-b"`) {
		t.Fatalf("dev-b cannot use its jobs topics\nmosquitto:\n%s", log.String())
	}
	if out := ask("dev-a", "dev-b"); out != "" {
		t.Fatalf("dev-a's certificate read dev-b's jobs: %s", out)
	}
	b, _ := os.ReadFile(files.ACL)
	if !strings.Contains(string(b), "user CN=AWS IoT Certificate,OU=") || !strings.Contains(string(b), "topic readwrite $aws/things/dev-a/#") {
		t.Fatalf("the access list names no device certificate:\n%s", b)
	}
	aws.run(nil, "iot", "detach-thing-principal", "--thing-name", "dev-a", "--principal", arns["dev-a"])
	until("dev-a's detached certificate still uses dev-a's topics", func() bool { return ask("dev-a", "dev-a") == "" })
	if !strings.Contains(ask("dev-b", "dev-b"), `"j-b"`) {
		t.Fatal("detaching dev-a's certificate shut dev-b out")
	}
}

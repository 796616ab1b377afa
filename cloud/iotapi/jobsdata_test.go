package iotapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/iot"
)

// The iot-jobs-data API, with requests signed by the AWS SDK's SigV4
// signer for "iot-jobs-data" as the SDKs' IoTJobsDataPlane clients sign
// them (the AWS CLI drives it in the interop suite).

// dataCall signs and sends one iot-jobs-data request; it returns the status
// and the decoded JSON body.
func (e *env) dataCall(service, method, path, body string) (int, map[string]any) {
	e.t.Helper()
	srv := httptest.NewServer(e.api.JobsData())
	defer srv.Close()
	req, err := http.NewRequest(method, srv.URL+path, bytes.NewReader([]byte(body)))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256([]byte(body))
	err = v4.NewSigner().SignHTTP(ctx(e.t), aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey},
		req, hex.EncodeToString(sum[:]), service, region, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		e.t.Fatalf("%s %s: %d %q", method, path, resp.StatusCode, b)
	}
	if resp.StatusCode != 200 && resp.Header.Get("X-Amzn-ErrorType") != out["__type"] {
		e.t.Fatalf("error type header %q, body %v", resp.Header.Get("X-Amzn-ErrorType"), out)
	}
	return resp.StatusCode, out
}

func TestJobsDataPlane(t *testing.T) {
	e := newEnv(t)
	c, cx := e.client(creds), ctx(t)
	c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String("a")})
	doc := `{"operation": "app_fw_update"}`
	c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("j"), Targets: []string{arnPrefix + "thing/a"}, Document: aws.String(doc)})

	code, out := e.dataCall("iot-jobs-data", "GET", "/things/a/jobs", "")
	if q, _ := out["queuedJobs"].([]any); code != 200 || len(q) != 1 || q[0].(map[string]any)["jobId"] != "j" {
		t.Fatalf("%d %v", code, out)
	}
	code, out = e.dataCall("iot-jobs-data", "PUT", "/things/a/jobs/$next", `{"statusDetails":{"step":"1"},"stepTimeoutInMinutes":10}`)
	x, _ := out["execution"].(map[string]any)
	if code != 200 || x["status"] != "IN_PROGRESS" || x["versionNumber"] != 2.0 || x["jobDocument"] != doc ||
		x["approximateSecondsBeforeTimedOut"] != 600.0 {
		t.Fatalf("%d %v", code, out)
	}
	code, out = e.dataCall("iot-jobs-data", "POST", "/things/a/jobs/j", `{"status":"SUCCEEDED","expectedVersion":1,"includeJobExecutionState":true}`)
	if es, _ := out["executionState"].(map[string]any); code != 409 || out["__type"] != "InvalidStateTransitionException" || es["versionNumber"] != 2.0 {
		t.Fatalf("%d %v", code, out)
	}
	code, out = e.dataCall("iot-jobs-data", "POST", "/things/a/jobs/j", `{"status":"SUCCEEDED","expectedVersion":2,"includeJobExecutionState":true,"includeJobDocument":true}`)
	if es, _ := out["executionState"].(map[string]any); code != 200 || es["status"] != "SUCCEEDED" || out["jobDocument"] == nil {
		t.Fatalf("%d %v", code, out)
	}
	code, out = e.dataCall("iot-jobs-data", "GET", "/things/a/jobs/j?includeJobDocument=false", "")
	if code != 410 || out["__type"] != "TerminalStateException" {
		t.Fatalf("%d %v", code, out)
	}
	code, out = e.dataCall("iot-jobs-data", "GET", "/things/a/jobs/nope", "")
	if code != 404 || out["__type"] != "ResourceNotFoundException" {
		t.Fatalf("%d %v", code, out)
	}
	code, out = e.dataCall("iot-jobs-data", "POST", "/things/a/jobs/j", `{"status":"DONE"}`)
	if code != 400 || out["__type"] != "InvalidRequestException" {
		t.Fatalf("%d %v", code, out)
	}
	// Signed for another service: refused.
	if code, out = e.dataCall("iot", "GET", "/things/a/jobs", ""); code != 403 || out["__type"] != "InvalidSignatureException" {
		t.Fatalf("%d %v", code, out)
	}
}

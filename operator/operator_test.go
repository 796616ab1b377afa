package operator

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iot"

	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/delta"
	"github.com/awsfota/awsfota/device/dfu/modem"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/mcuboot"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func file(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "img.bin")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func appImage(t *testing.T, ver string, body []byte) []byte {
	t.Helper()
	v, _ := mcuboot.ParseVersion(ver)
	var b bytes.Buffer
	if _, err := mcuboot.Create(&b, bytes.NewReader(body), int64(len(body)), mcuboot.CreateOptions{Version: v, PadHeader: true}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func doc(t *testing.T, p *Plan) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(p.Document, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPrepare(t *testing.T) {
	c := &Client{Region: "eu-west-1"}
	old := appImage(t, "1.0.0", bytes.Repeat([]byte("old"), 1000))
	p, err := c.Prepare(JobOptions{Image: file(t, old), Things: []string{"d1"}, Bucket: "b", StepTimeoutMinutes: 5, RolloutPerMinute: 10})
	if err != nil {
		t.Fatal(err)
	}
	d := doc(t, p)
	if p.Version != "1.0.0" || p.Kind != "mcuboot" || d["fwversion"] != "1.0.0" || d["size"] != float64(len(old)) ||
		!strings.HasPrefix(d["location"].(map[string]any)["url"].(string), "${aws:iot:s3-presigned-url:https://s3.eu-west-1.amazonaws.com/b/firmware/") ||
		d["stepTimeoutInMinutes"] != float64(5) || !strings.HasPrefix(p.JobID, "fota-1_0_0-") {
		t.Fatalf("plan %+v doc %v", p, d)
	}
	if !strings.Contains(strings.Join(p.Calls, "\n"), "rollout 10/min") {
		t.Fatalf("calls %v", p.Calls)
	}

	// A delta carries its base into the document.
	next := appImage(t, "1.0.1", bytes.Repeat([]byte("olD"), 1000))
	var patch bytes.Buffer
	delta.Create(&patch, bytes.NewReader(old), int64(len(old)), bytes.NewReader(next))
	p, err = c.Prepare(JobOptions{Image: file(t, patch.Bytes()), Things: []string{"d1"}, Bucket: "b", Version: "1.0.1", Public: true})
	if err != nil {
		t.Fatal(err)
	}
	d = doc(t, p)
	base := d["base"].(map[string]any)
	if p.Kind != "delta" || base["size"] != float64(len(old)) || len(base["sha256"].(string)) != 64 || d["fwversion"] != "1.0.1" ||
		d["location"].(map[string]any)["url"] != "https://b.s3.eu-west-1.amazonaws.com/"+p.Key {
		t.Fatalf("delta doc %v", d)
	}

	// A full modem image is for the modem.
	p, err = c.Prepare(JobOptions{Image: file(t, modem.FullImage("mfw_1.3.2", []byte("fw"))), Groups: []string{"g"}, Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if d = doc(t, p); p.Component != "modem" || d["component"] != "modem" || d["fwversion"] != "mfw_1.3.2" || d["operation"] != "modem_fw_update" {
		t.Fatalf("modem doc %v", d)
	}

	// An image cut short says so once, plainly.
	if _, err := c.Prepare(JobOptions{Image: file(t, old[:len(old)-100]), Things: []string{"d1"}, Bucket: "b"}); err == nil ||
		!strings.Contains(err.Error(), "starts like an MCUboot image but is not a valid one: truncated MCUboot image") {
		t.Errorf("truncated image: %v", err)
	}

	// Any other file, for an exec target, with the version it installs.
	p, err = c.Prepare(JobOptions{Image: file(t, []byte("a .swu or a tarball")), Things: []string{"x"}, Bucket: "b", Version: "2.0"})
	if err != nil {
		t.Fatal(err)
	}
	if d = doc(t, p); p.Kind != "file" || p.Component != "app" || d["fwversion"] != "2.0" || d["component"] != nil {
		t.Fatalf("file doc %v", d)
	}

	for name, o := range map[string]JobOptions{
		"no targets": {Image: file(t, old), Bucket: "b"},
		"no bucket":  {Image: file(t, old), Things: []string{"x"}},
		"junk":       {Image: file(t, []byte("plain text file")), Things: []string{"x"}, Bucket: "b"},
		"missing":    {Image: "/nonexistent", Things: []string{"x"}, Bucket: "b"},
	} {
		if _, err := c.Prepare(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := (&Client{Local: true}).Prepare(JobOptions{Image: file(t, old), Things: []string{"x"}, Bucket: "b", Public: true}); err == nil {
		t.Error("--public on the local cloud accepted")
	}
}

// localCloud starts an in-process local cloud for the test and returns it
// with a client of its APIs.
func localCloud(t *testing.T) (*emu.Cloud, *Client) {
	t.Helper()
	cl, err := emu.Start(emu.Config{DataDir: t.TempDir(), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ep := cl.Endpoints()
	return cl, NewLocal(Endpoint{URL: ep.HTTP, Region: ep.Region, AccessKeyID: ep.AccessKeyID, SecretAccessKey: ep.SecretAccessKey, MQTT: ep.MQTT})
}

func TestCreateAndWatchOnLocalCloud(t *testing.T) {
	cl, c := localCloud(t)
	ep := cl.Endpoints()
	ctx := context.Background()
	th, err := c.CreateThing(ctx, "op-thing", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if th.Endpoint != ep.MQTT || !strings.Contains(th.CertificatePEM, "CERTIFICATE") || th.PrivateKeyPEM == "" {
		t.Fatalf("thing %+v (endpoint %s)", th, ep.MQTT)
	}
	img := appImage(t, "2.0.0", bytes.Repeat([]byte{1}, 5000))
	p, err := c.Prepare(JobOptions{Image: file(t, img), Things: []string{"op-thing"}, Bucket: "fw-bucket", CreateBucket: true, Retries: 2, TimeoutMinutes: 30})
	if err != nil {
		t.Fatal(err)
	}
	var sent int64
	res, err := c.Create(ctx, p, func(n, total int64) { sent = n })
	if err != nil {
		t.Fatal(err)
	}
	if res.JobID != p.JobID || sent != int64(len(img)) {
		t.Fatalf("result %+v, sent %d", res, sent)
	}
	obj, info, err := cl.Objects.Open("fw-bucket", p.Key)
	if err != nil || info.Size != int64(len(img)) {
		t.Fatalf("uploaded object %+v %v", info, err)
	}
	obj.Close()
	s, err := c.Watch(p.JobID).Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != "IN_PROGRESS" || len(s.Executions) != 1 || s.Executions[0].Status != "QUEUED" || s.Done || s.Succeeded {
		t.Fatalf("snapshot %+v", s)
	}
	if err := c.CancelJob(ctx, p.JobID, true, "test"); err != nil {
		t.Fatal(err)
	}
	s, _ = c.Watch(p.JobID).Snapshot(ctx)
	if !s.Done || s.Succeeded || s.Counts["CANCELED"] != 1 {
		t.Fatalf("after cancel %+v", s)
	}
	jobs, err := c.ListJobs(ctx)
	if err != nil || len(jobs) != 1 || jobs[0].JobID != p.JobID {
		t.Fatalf("jobs %+v %v", jobs, err)
	}
	if err := c.DeleteThing(ctx, "op-thing"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Watch("nope").Snapshot(ctx); err == nil || !strings.Contains(err.Error(), "ResourceNotFound") {
		t.Fatalf("unknown job: %v", err)
	}
}

// failing answers 500 to the requests fail matches and passes the others on.
type failing struct {
	fail func(*http.Request) bool
}

func (f failing) RoundTrip(r *http.Request) (*http.Response, error) {
	if f.fail(r) {
		return &http.Response{StatusCode: 500, Status: "500 Internal Server Error", Header: http.Header{"X-Amzn-Errortype": {"InternalFailureException"}},
			Body: io.NopCloser(strings.NewReader(`{"message":"injected failure"}`)), Request: r}, nil
	}
	return http.DefaultTransport.RoundTrip(r)
}

// When the job cannot be created, Create removes the image it uploaded and
// the bucket it made; an object that was there before is left alone.
func TestCreateUndoesTheUploadWhenTheJobFails(t *testing.T) {
	cl, err := emu.Start(emu.Config{DataDir: t.TempDir(), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Registry.CreateThing("t1", nil); err != nil {
		t.Fatal(err)
	}
	ep := cl.Endpoints()
	c := NewLocal(Endpoint{URL: ep.HTTP, Region: ep.Region, AccessKeyID: ep.AccessKeyID, SecretAccessKey: ep.SecretAccessKey})
	c.IoT = iot.NewFromConfig(aws.Config{Region: ep.Region, Credentials: credentials.NewStaticCredentialsProvider(ep.AccessKeyID, ep.SecretAccessKey, ""),
		Retryer: func() aws.Retryer { return aws.NopRetryer{} },
		HTTPClient: &http.Client{Transport: failing{func(r *http.Request) bool {
			return r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/jobs/")
		}}},
	}, func(o *iot.Options) { o.BaseEndpoint = aws.String(ep.HTTP) })
	img := file(t, appImage(t, "2.0.0", bytes.Repeat([]byte{1}, 5000)))
	ctx := context.Background()

	p, err := c.Prepare(JobOptions{Image: img, Things: []string{"t1"}, Bucket: "fresh", CreateBucket: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, p, nil); err == nil || !strings.Contains(err.Error(), "creating job") {
		t.Fatalf("Create = %v, want the injected CreateJob failure", err)
	}
	if b, err := cl.Objects.Buckets(); err != nil || len(b) != 0 {
		t.Fatalf("after a failed Create: buckets %+v %v", b, err)
	}

	// The same image already published: the object stays for its job.
	if err := cl.Objects.CreateBucket("kept"); err != nil {
		t.Fatal(err)
	}
	p, _ = c.Prepare(JobOptions{Image: img, Things: []string{"t1"}, Bucket: "kept"})
	b, _ := os.ReadFile(img)
	if _, err := cl.Objects.Put(ctx, "kept", p.Key, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, p, nil); err == nil {
		t.Fatal("Create succeeded")
	}
	if _, err := cl.Objects.Stat("kept", p.Key); err != nil {
		t.Fatalf("the object that was there before was removed: %v", err)
	}
}

// When a step after the certificate fails, CreateThing deletes the
// certificate and the thing it made.
func TestCreateThingUndoes(t *testing.T) {
	cl, err := emu.Start(emu.Config{DataDir: t.TempDir(), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ep := cl.Endpoints()
	c := NewLocal(Endpoint{URL: ep.HTTP, Region: ep.Region, AccessKeyID: ep.AccessKeyID, SecretAccessKey: ep.SecretAccessKey})
	c.IoT = iot.NewFromConfig(aws.Config{Region: ep.Region, Credentials: credentials.NewStaticCredentialsProvider(ep.AccessKeyID, ep.SecretAccessKey, ""),
		Retryer: func() aws.Retryer { return aws.NopRetryer{} },
		HTTPClient: &http.Client{Transport: failing{func(r *http.Request) bool {
			return strings.HasSuffix(r.URL.Path, "/principals") && r.Method == http.MethodPut
		}}},
	}, func(o *iot.Options) { o.BaseEndpoint = aws.String(ep.HTTP) })
	saved := false
	if _, err := c.CreateThing(context.Background(), "half", "", func(*Thing) error { saved = true; return nil }); err == nil || saved {
		t.Fatalf("CreateThing = %v, saved %v; want the injected AttachThingPrincipal failure before save", err, saved)
	}
	if _, err := cl.Registry.DescribeThing("half"); err == nil {
		t.Fatal("the thing is still there")
	}
	if cs, _ := cl.Registry.ListCertificates(); len(cs) != 0 {
		t.Fatalf("certificates left: %+v", cs)
	}
}

func TestPrepareRAUCBundle(t *testing.T) {
	c := &Client{Region: "eu-west-1"}
	bundle := filepath.Join("..", "raucb", "testdata", "plain-rsa.raucb")
	p, err := c.Prepare(JobOptions{Image: bundle, Things: []string{"gw-1"}, Bucket: "b", Keyring: filepath.Join("..", "raucb", "testdata", "ca-rsa.pem")})
	if err != nil {
		t.Fatal(err)
	}
	d := doc(t, p)
	if p.Kind != "rauc" || p.Component != "rauc" || p.Compatible != "awsfota-test" || p.Version != "1.2.3" || !strings.Contains(p.Signer, "awsfota test signer") {
		t.Fatalf("plan %+v", p)
	}
	if d["component"] != "rauc" || d["compatible"] != "awsfota-test" || d["fwversion"] != "1.2.3" || d["operation"] != "app_fw_update" || len(d["sha256"].(string)) != 64 {
		t.Fatalf("document %v", d)
	}
	if !strings.HasPrefix(p.JobID, "fota-1_2_3-") || !strings.Contains(p.Calls[0], "verified the bundle's signature") {
		t.Fatalf("job %s calls %q", p.JobID, p.Calls)
	}
	// Without a keyring the bundle is read, not verified.
	if p, err = c.Prepare(JobOptions{Image: bundle, Things: []string{"gw-1"}, Bucket: "b"}); err != nil || p.Signer != "" || p.Compatible != "awsfota-test" {
		t.Fatalf("%+v %v", p, err)
	}

	b, _ := os.ReadFile(bundle)
	tampered := bytes.Clone(b)
	tampered[300] ^= 1
	old := appImage(t, "1.0.0", []byte("app"))
	for name, c2 := range map[string]struct {
		o    JobOptions
		want string
	}{
		"foreign keyring": {JobOptions{Image: bundle, Keyring: filepath.Join("..", "raucb", "testdata", "ec.pem")}, "not trusted by the keyring"},
		"tampered":        {JobOptions{Image: file(t, tampered), Keyring: filepath.Join("..", "raucb", "testdata", "ca-rsa.pem")}, "changed after signing"},
		"no keyring file": {JobOptions{Image: bundle, Keyring: "/nonexistent.pem"}, "--keyring"},
		"keyring on app":  {JobOptions{Image: file(t, old), Keyring: filepath.Join("..", "raucb", "testdata", "ec.pem")}, "verifies RAUC bundles"},
		"wrong component": {JobOptions{Image: bundle, Component: "modem"}, "its component is \"rauc\""},
	} {
		c2.o.Things, c2.o.Bucket = []string{"gw-1"}, "b"
		if _, err := c.Prepare(c2.o); err == nil || !strings.Contains(err.Error(), c2.want) {
			t.Errorf("%s: %v, want %q", name, err, c2.want)
		}
	}
}

// A snapshot job rolled out one thing a minute is not done when its first
// execution is: the other things have no execution yet. Done comes when the
// service ends the job.
func TestWatchRolloutNotDoneEarly(t *testing.T) {
	cl, c := localCloud(t)
	ctx := context.Background()
	for _, n := range []string{"ro-1", "ro-2"} {
		if _, err := c.CreateThing(ctx, n, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	img := appImage(t, "2.0.0", bytes.Repeat([]byte{1}, 5000))
	p, err := c.Prepare(JobOptions{Image: file(t, img), Things: []string{"ro-1", "ro-2"}, Bucket: "fw-bucket", CreateBucket: true, RolloutPerMinute: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	w := c.Watch(p.JobID)
	s, err := w.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Executions) != 1 {
		t.Fatalf("executions %+v: want the one thing the rollout reached", s.Executions)
	}
	first := s.Executions[0].Thing
	if _, rej, err := cl.Jobs.DeviceRequest(first, p.JobID, &iotjobs.UpdateRequest{Status: "SUCCEEDED"}); err != nil || rej != nil {
		t.Fatalf("update: %v %+v", err, rej)
	}
	s, err = w.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != "IN_PROGRESS" || len(s.Executions) != 1 || s.Executions[0].Status != "SUCCEEDED" || s.Done || s.Succeeded {
		t.Fatalf("after the first thing SUCCEEDED: %+v, want not done", s)
	}
	if err := c.CancelJob(ctx, p.JobID, false, "test"); err != nil {
		t.Fatal(err)
	}
	if s, _ = w.Snapshot(ctx); !s.Done || s.Status != "CANCELED" {
		t.Fatalf("after the cancel: %+v, want done", s)
	}
}

package operator

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/delta"
	"github.com/awsfota/awsfota/device/dfu/modem"
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

func TestCreateAndWatchOnLocalCloud(t *testing.T) {
	dir := t.TempDir()
	cl, err := emu.Start(emu.Config{DataDir: dir, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ep := cl.Endpoints()
	c := NewLocal(Endpoint{URL: ep.HTTP, Region: ep.Region, AccessKeyID: ep.AccessKeyID, SecretAccessKey: ep.SecretAccessKey, MQTT: ep.MQTT})
	ctx := context.Background()
	th, err := c.CreateThing(ctx, "op-thing", "")
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

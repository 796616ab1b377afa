package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/sim"
)

// operatorEnv is a local cloud (as `cloud serve` runs it) and simulated
// devices created by `thing create` and run by `device run --sim`.
type operatorEnv struct {
	t     *testing.T
	data  string
	cloud *emu.Cloud
	stop  []func()
	outs  map[string]*syncBuffer
	wg    sync.WaitGroup
}

func newOperatorEnv(t *testing.T) *operatorEnv {
	t.Helper()
	data := filepath.Join(t.TempDir(), "cloud")
	c, err := emu.Start(emu.Config{DataDir: data, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	o := &operatorEnv{t: t, data: data, cloud: c, outs: map[string]*syncBuffer{}}
	t.Cleanup(func() {
		for _, s := range o.stop {
			s()
		}
		o.wg.Wait()
		o.stopCloud()
	})
	return o
}

// stopCloud stops the local cloud (as a Ctrl-C of `cloud serve` does).
func (o *operatorEnv) stopCloud() {
	if o.cloud != nil {
		o.cloud.Close()
		o.cloud = nil
	}
}

// newServedOperatorEnv is newOperatorEnv with the cloud run by `awsfota
// cloud serve` and extra flags.
func newServedOperatorEnv(t *testing.T, extra ...string) *operatorEnv {
	t.Helper()
	data := filepath.Join(t.TempDir(), "cloud")
	_, stop := serving(t, data, extra...)
	o := &operatorEnv{t: t, data: data, outs: map[string]*syncBuffer{}}
	t.Cleanup(func() {
		for _, s := range o.stop {
			s()
		}
		o.wg.Wait()
		if code, out := stop(); code != 0 {
			t.Errorf("cloud serve exited %d:\n%s", code, out)
		}
	})
	return o
}

// device provisions a thing with `thing create` and runs it with
// `device run --sim` until the test ends.
func (o *operatorEnv) device(name string, extra ...string) {
	o.t.Helper()
	dir := filepath.Join(o.t.TempDir(), name)
	if code, out, errOut := run(o.t, "thing", "create", name, "--out", dir, "--local", o.data); code != 0 || !strings.Contains(out, "thing "+name+" created") {
		o.t.Fatalf("thing create: %d %s %s", code, out, errOut)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	o.outs[name] = out
	args := append([]string{"device", "run", "--config", filepath.Join(dir, "device.json"), "--state", filepath.Join(dir, "state"), "--sim"}, extra...)
	done := make(chan struct{})
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		defer close(done)
		Run(ctx, args, out, out)
	}()
	o.stop = append(o.stop, func() { cancel(); <-done })
	waitOutput(o.t, out, "booted 1.0.0")
}

func (o *operatorEnv) image(version string, size int) string {
	img, err := sim.AppImage(version, size)
	if err != nil {
		o.t.Fatal(err)
	}
	p := filepath.Join(o.t.TempDir(), "app-"+version+".bin")
	os.WriteFile(p, img, 0o644)
	return p
}

func (o *operatorEnv) createJob(args ...string) string {
	o.t.Helper()
	code, out, errOut := run(o.t, append([]string{"job", "create", "--local", o.data}, args...)...)
	if code != 0 {
		o.t.Fatalf("job create: exit %d: %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	if id == "" || strings.Contains(id, "\n") {
		o.t.Fatalf("job create printed %q", out)
	}
	return id
}

func TestOperatorUpdateOnLocalCloud(t *testing.T) {
	o := newOperatorEnv(t)
	o.device("op-a")
	o.device("op-b")
	img := o.image("1.0.1", 150_000)

	code, out, _ := run(t, "job", "create", "--local", o.data, "--image", img, "--thing", "op-a", "--thing", "op-b", "--dry-run")
	if code != 0 || !strings.Contains(out, "${aws:iot:s3-presigned-url:https://s3.us-east-1.amazonaws.com/awsfota-firmware/") ||
		!strings.Contains(out, `"fwversion": "1.0.1"`) || !strings.Contains(out, "iot CreateJob") {
		t.Fatalf("dry run: %d\n%s", code, out)
	}
	id := o.createJob("--image", img, "--thing", "op-a", "--thing", "op-b", "--step-timeout-minutes", "30")
	if !strings.HasPrefix(id, "fota-1_0_1-") {
		t.Fatalf("job id %q", id)
	}
	code, out, errOut := run(t, "job", "watch", id, "--local", o.data, "--interval", "50ms")
	if code != 0 {
		t.Fatalf("watch: exit %d\n%s\n%s\ndevice a:\n%s", code, out, errOut, o.outs["op-a"].String())
	}
	if !strings.Contains(out, "op-a") || !strings.Contains(out, "runs 1.0.1") || !strings.Contains(out, "2 succeeded") {
		t.Fatalf("watch output:\n%s", out)
	}
	code, out, _ = run(t, "job", "watch", id, "--local", o.data, "--json")
	var snap struct {
		Succeeded  bool
		Executions []struct{ Thing, Status, FWVersion string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &snap) != nil || !snap.Succeeded || len(snap.Executions) != 2 || snap.Executions[0].FWVersion != "1.0.1" {
		t.Fatalf("watch --json: %d %s", code, out)
	}
	if code, out, _ := run(t, "job", "list", "--local", o.data); code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "COMPLETED") {
		t.Fatalf("list: %d %s", code, out)
	}
	if code, out, _ := run(t, "job", "describe", id, "--local", o.data, "--json"); code != 0 || !strings.Contains(out, `"stepTimeoutInMinutes": 30`) && !strings.Contains(out, `"stepTimeoutInMinutes":30`) {
		t.Fatalf("describe: %d %s", code, out)
	}
}

// TestOperatorUpdateOverHTTPS runs the whole update against `cloud serve
// --https`: the operator uploads and creates the job over TLS trusting the
// local CA, the presigned URL in the document is https://, and the device
// downloads the image over HTTPS trusting the CA from `thing create`.
func TestOperatorUpdateOverHTTPS(t *testing.T) {
	o := newServedOperatorEnv(t, "--https")
	ep, err := emu.ReadEndpoints(o.data)
	if err != nil || !strings.HasPrefix(ep.HTTP, "https://127.0.0.1:") {
		t.Fatalf("endpoints %+v %v", ep, err)
	}
	o.device("tls-a")
	img := o.image("1.0.1", 120_000)
	id := o.createJob("--image", img, "--thing", "tls-a")
	code, out, errOut := run(t, "job", "watch", id, "--local", o.data, "--interval", "50ms")
	if code != 0 || !strings.Contains(out, "1 succeeded") {
		t.Fatalf("watch: exit %d\n%s\n%s\ndevice:\n%s", code, out, errOut, o.outs["tls-a"].String())
	}
	// The HTTP port speaks TLS only: the upload, the job and the device's
	// download (through the presigned URL of the document's placeholder)
	// all went over HTTPS, or they would have failed.
	code, out, _ = run(t, "job", "describe", id, "--local", o.data, "--json")
	if code != 0 || !strings.Contains(out, "${aws:iot:s3-presigned-url:") {
		t.Fatalf("describe: %d %s", code, out)
	}
	if !strings.Contains(o.outs["tls-a"].String(), "booted 1.0.1") {
		t.Fatalf("device output:\n%s", o.outs["tls-a"].String())
	}
}

func TestOperatorRolloutAborts(t *testing.T) {
	o := newOperatorEnv(t)
	for _, n := range []string{"ab-1", "ab-2", "ab-3", "ab-4"} {
		o.device(n)
	}
	// The document claims 2.0.0 but the image is 1.0.1: every device that
	// gets it fails with version_mismatch. One device a minute is notified,
	// and the job aborts after the first failure.
	img := o.image("1.0.1", 30_000)
	id := o.createJob("--image", img, "--version", "2.0.0", "--thing", "ab-1", "--thing", "ab-2", "--thing", "ab-3", "--thing", "ab-4",
		"--rollout-per-minute", "1", "--abort-failure-percent", "50", "--abort-min-executed", "1")
	code, out, _ := run(t, "job", "watch", id, "--local", o.data, "--interval", "50ms", "--timeout", "50s")
	if code != exitFailure {
		t.Fatalf("watch of an aborted job exited %d:\n%s", code, out)
	}
	if !strings.Contains(out, "version_mismatch") || !strings.Contains(out, "CANCELED: 1 failed") {
		t.Fatalf("watch output:\n%s", out)
	}
	// The three devices the rollout had not reached never got the job.
	started := 0
	for _, n := range []string{"ab-1", "ab-2", "ab-3", "ab-4"} {
		if strings.Contains(o.outs[n].String(), ": started") {
			started++
		}
	}
	if started != 1 {
		t.Fatalf("%d devices started the aborted job", started)
	}
}

func TestOperatorCancelStopsDevices(t *testing.T) {
	o := newOperatorEnv(t)
	o.device("cx-1", "--sim-link-rate", "100000")
	img := o.image("1.0.1", 600_000) // six seconds at the device's link rate
	id := o.createJob("--image", img, "--thing", "cx-1")
	waitOutput(t, o.outs["cx-1"], "cx-1: job "+id+": started")
	if code, out, errOut := run(t, "job", "cancel", id, "--force", "--local", o.data); code != 0 || !strings.Contains(out, "canceled") {
		t.Fatalf("cancel: %d %s %s", code, out, errOut)
	}
	waitOutput(t, o.outs["cx-1"], "canceled by the cloud")
	code, out, _ := run(t, "job", "watch", id, "--local", o.data, "--interval", "50ms", "--timeout", "20s")
	if code != exitFailure || !strings.Contains(out, "1 canceled") {
		t.Fatalf("watch: %d\n%s", code, out)
	}
	if strings.Contains(o.outs["cx-1"].String(), "verified") {
		t.Fatalf("the device went on after the cancel:\n%s", o.outs["cx-1"].String())
	}
	_ = time.Second
}

func TestOperatorErrors(t *testing.T) {
	if code, _, errOut := run(t, "job", "create", "--local", t.TempDir(), "--image", "x", "--thing", "a"); code != exitFailure || !strings.Contains(errOut, "cloud serve") {
		t.Fatalf("no local cloud: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, "job", "create", "--thing", "a"); code != exitUsage || !strings.Contains(errOut, "--image") {
		t.Fatalf("no image: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, "job", "watch"); code != exitUsage || !strings.Contains(errOut, "JOB-ID") {
		t.Fatalf("no id: %d %s", code, errOut)
	}
	o := newOperatorEnv(t)
	junk := filepath.Join(t.TempDir(), "junk.bin")
	os.WriteFile(junk, []byte("not firmware at all"), 0o644)
	if code, _, errOut := run(t, "job", "create", "--local", o.data, "--image", junk, "--thing", "a"); code != exitFailure || !strings.Contains(errOut, "not an image") {
		t.Fatalf("junk image: %d %s", code, errOut)
	}
	img := o.image("1.0.1", 1000)
	if code, _, errOut := run(t, "job", "create", "--local", o.data, "--image", img, "--thing", "nobody"); code != exitFailure || !strings.Contains(errOut, "nobody") {
		t.Fatalf("unknown thing: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, "job", "watch", "no-such-job", "--local", o.data); code != exitFailure || !strings.Contains(errOut, "ResourceNotFound") {
		t.Fatalf("unknown job: %d %s", code, errOut)
	}
}

// TestOperatorDeltaJob publishes a delta made with `awsfota delta create`
// from the image the device runs: `job create` writes the base into the
// document, and the device applies it.
func TestOperatorDeltaJob(t *testing.T) {
	o := newOperatorEnv(t)
	o.device("dj-1")
	running, _ := sim.AppImage("1.0.0", 64<<10) // what `device run --sim` installs
	body := append([]byte(nil), running[0x200:len(running)-40]...)
	copy(body[1000:], "a small change")
	next, err := sim.AppImageFromBody("1.0.1", body, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	oldPath, newPath, patchPath := filepath.Join(dir, "old.bin"), filepath.Join(dir, "new.bin"), filepath.Join(dir, "p.patch")
	os.WriteFile(oldPath, running, 0o644)
	os.WriteFile(newPath, next, 0o644)
	if code, _, errOut := run(t, "delta", "create", oldPath, newPath, "-o", patchPath); code != 0 {
		t.Fatalf("delta create: %s", errOut)
	}
	code, out, _ := run(t, "job", "create", "--local", o.data, "--image", patchPath, "--version", "1.0.1", "--thing", "dj-1", "--dry-run")
	if code != 0 || !strings.Contains(out, `"base"`) {
		t.Fatalf("dry run of a delta: %s", out)
	}
	id := o.createJob("--image", patchPath, "--version", "1.0.1", "--thing", "dj-1")
	if code, out, _ := run(t, "job", "watch", id, "--local", o.data, "--interval", "50ms", "--timeout", "40s"); code != 0 {
		t.Fatalf("watch: %s\n%s", out, o.outs["dj-1"].String())
	}
	waitOutput(t, o.outs["dj-1"], "booted 1.0.1")
}

// job create checks its targets and settings before it uploads anything.
func TestJobCreateChecksBeforeUploading(t *testing.T) {
	o := newOperatorEnv(t)
	img := o.image("1.0.1", 1000)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--thing", "nobody"}, exitFailure, "thing nobody: ResourceNotFoundException"},
		{[]string{"--group", "no-group"}, exitFailure, "thing group no-group: ResourceNotFoundException"},
		{[]string{"--thing", "x", "--rollout-per-minute", "5000"}, exitUsage, "--rollout-per-minute 5000: use 1 to 1000"},
		{[]string{"--thing", "x", "--retries", "11"}, exitUsage, "--retries 11: use 1 to 10"},
		{[]string{"--thing", "x", "--presign-expires", "2h"}, exitUsage, "--presign-expires 2h0m0s: use 1m to 1h"},
	} {
		code, _, errOut := run(t, append([]string{"job", "create", "--local", o.data, "--image", img}, c.args...)...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, %q; want %d and %q", c.args, code, errOut, c.code, c.want)
		}
	}
	if b, err := o.cloud.Objects.Buckets(); err != nil || len(b) != 0 {
		t.Fatalf("refused job creations left buckets %v (%v)", b, err)
	}
	// A job id in use is refused before the upload too.
	if _, err := o.cloud.Registry.CreateThing("t1", nil); err != nil {
		t.Fatal(err)
	}
	o.createJob("--image", img, "--thing", "t1", "--job-id", "taken")
	other := o.image("1.0.2", 1000)
	if code, _, errOut := run(t, "job", "create", "--local", o.data, "--image", other, "--thing", "t1", "--job-id", "taken"); code != exitFailure ||
		!strings.Contains(errOut, "job taken exists already: choose another --job-id") {
		t.Fatalf("job id in use: %d %q", code, errOut)
	}
	if keys := o.objects(localBucket); len(keys) != 1 {
		t.Fatalf("objects %v: the refused job's image was uploaded", keys)
	}
}

// objects lists the keys in bucket.
func (o *operatorEnv) objects(bucket string) []string {
	o.t.Helper()
	_, sc := clients(o.cloud.Endpoints())
	l, err := sc.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		o.t.Fatal(err)
	}
	var keys []string
	for _, obj := range l.Contents {
		keys = append(keys, aws.ToString(obj.Key))
	}
	return keys
}

// With the local cloud down, every operator command says so and what to
// do, instead of the SDK's chain of errors.
func TestOperatorCommandsWithTheCloudDown(t *testing.T) {
	o := newOperatorEnv(t)
	img := o.image("1.0.1", 1000)
	http := o.cloud.Endpoints().HTTP
	o.stopCloud()
	want := "no local cloud answers at " + http + " — is `awsfota cloud serve --data " + o.data + "` running?"
	for _, args := range [][]string{
		{"job", "list"}, {"job", "describe", "j1"}, {"job", "watch", "j1"}, {"job", "cancel", "j1"},
		{"job", "create", "--image", img, "--thing", "t1"},
		{"thing", "create", "t1", "--out", filepath.Join(t.TempDir(), "t1")},
	} {
		code, _, errOut := run(t, append(args, "--local", o.data)...)
		if code != exitFailure || errOut != "awsfota: "+want+"\n" {
			t.Errorf("%v: exit %d, stderr %q; want %q", args, code, errOut, want)
		}
	}
	empty := t.TempDir()
	if code, _, errOut := run(t, "job", "list", "--local", empty); code != exitFailure ||
		!strings.Contains(errOut, "no local cloud answers at "+empty+" (no endpoints.json yet) — is `awsfota cloud serve --data "+empty+"` running?") {
		t.Errorf("empty data directory: exit %d, %q", code, errOut)
	}
}

// job watch rides out a restart of the cloud, and says so.
func TestJobWatchRidesOutACloudRestart(t *testing.T) {
	o := newOperatorEnv(t)
	if _, err := o.cloud.Registry.CreateThing("rw-1", nil); err != nil {
		t.Fatal(err)
	}
	id := o.createJob("--image", o.image("1.0.1", 1000), "--thing", "rw-1")
	ep := o.cloud.Endpoints()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- execute(testEnv(context.Background(), &out, &errOut), []string{"job", "watch", id, "--local", o.data, "--interval", "20ms"})
	}()
	waitOutput(t, &out, "rw-1")
	o.stopCloud()
	waitOutput(t, &errOut, "the cloud does not answer (connection refused); still watching")
	c, err := emu.Start(emu.Config{DataDir: o.data, MQTTAddr: ep.MQTT, HTTPAddr: strings.TrimPrefix(ep.HTTP, "http://"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	o.cloud = c // closed by the cleanup
	if _, err := c.Jobs.CancelJob(id, true, "", ""); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != exitFailure || !strings.Contains(out.String(), "1 canceled") || !strings.Contains(errOut.String(), "the cloud answers again") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	if n := strings.Count(errOut.String(), "does not answer"); n != 1 {
		t.Fatalf("the outage was reported %d times:\n%s", n, errOut.String())
	}
}

// Ctrl-C ends job watch with status 130 and nothing alarming.
func TestJobWatchInterrupted(t *testing.T) {
	o := newOperatorEnv(t)
	if _, err := o.cloud.Registry.CreateThing("ci-1", nil); err != nil {
		t.Fatal(err)
	}
	id := o.createJob("--image", o.image("1.0.1", 1000), "--thing", "ci-1")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- execute(testEnv(ctx, &out, &errOut), []string{"job", "watch", id, "--local", o.data, "--interval", "20ms"})
	}()
	waitOutput(t, &out, "ci-1")
	cancel() // as the SIGINT of Ctrl-C does
	if code := <-done; code != exitInterrupted || errOut.String() != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

// job describe labels what it prints; job list names the target selection.
func TestJobDescribeAndListWording(t *testing.T) {
	o := newOperatorEnv(t)
	if _, err := o.cloud.Registry.CreateThing("w-1", nil); err != nil {
		t.Fatal(err)
	}
	id := o.createJob("--image", o.image("1.0.1", 1000), "--thing", "w-1")
	code, out, _ := run(t, "job", "describe", id, "--local", o.data)
	if code != 0 || !strings.Contains(out, "description  app 1.0.1 from app-1.0.1.bin (awsfota job create)") || strings.Contains(out, "awsfota:") {
		t.Fatalf("describe: %d\n%s", code, out)
	}
	code, out, _ = run(t, "job", "list", "--local", o.data)
	if code != 0 || !strings.Contains(out, "SELECTION") || strings.Contains(out, "TARGETS") {
		t.Fatalf("list: %d\n%s", code, out)
	}
}

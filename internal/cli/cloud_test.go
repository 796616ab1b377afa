package cli

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/awsfota/awsfota/cloud/emu"
)

// serving runs `awsfota cloud serve` in-process until stop is called; it
// returns once endpoints.json is written.
func serving(t *testing.T, dir string, extra ...string) (emu.Endpoints, func() (int, string)) {
	t.Helper()
	os.Remove(filepath.Join(dir, emu.EndpointsFile))
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	args := append([]string{"cloud", "serve", "--data", dir, "--mqtt-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, extra...)
	go func() { done <- Run(ctx, args, &out, &errOut) }()
	stop := func() (int, string) {
		cancel()
		select {
		case code := <-done:
			return code, out.String() + errOut.String()
		case <-time.After(30 * time.Second):
			t.Fatal("serve did not stop after its context ended")
			return 0, ""
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ep, err := emu.ReadEndpoints(dir)
		if err == nil {
			return ep, stop
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d before serving:\n%s%s", code, out.String(), errOut.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatal("serve wrote no endpoints.json")
		}
	}
}

func clients(ep emu.Endpoints) (*iot.Client, *s3.Client) {
	cfg := aws.Config{Region: ep.Region, Credentials: credentials.NewStaticCredentialsProvider(ep.AccessKeyID, ep.SecretAccessKey, ""),
		Retryer: func() aws.Retryer { return aws.NopRetryer{} }}
	return iot.NewFromConfig(cfg, func(o *iot.Options) { o.BaseEndpoint = aws.String(ep.HTTP) }),
		s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint = aws.String(ep.HTTP); o.UsePathStyle = true })
}

// TestCloudServe starts `awsfota cloud serve`, uses it with the AWS SDK,
// stops it as a SIGINT would (its context ends), starts it again on the
// same data directory and finds everything still there.
func TestCloudServe(t *testing.T) {
	dir := t.TempDir()
	ep, stop := serving(t, dir)
	if ep.MQTT == "" || strings.HasSuffix(ep.MQTT, ":0") || !strings.HasPrefix(ep.HTTP, "http://127.0.0.1:") || ep.Region == "" ||
		ep.AccountID == "" || ep.AccessKeyID == "" || ep.SecretAccessKey == "" {
		t.Fatalf("endpoints %+v", ep)
	}
	if _, err := os.Stat(ep.CAFile); err != nil {
		t.Fatal(err)
	}
	ic, sc := clients(ep)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := ic.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String("dev-1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.CreateJob(ctx, &iot.CreateJobInput{JobId: aws.String("j1"), Document: aws.String(`{"op":"x"}`),
		Targets: []string{"arn:aws:iot:" + ep.Region + ":" + ep.AccountID + ":thing/dev-1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("images")}); err != nil {
		t.Fatal(err)
	}
	code, out := stop()
	if code != 0 || !strings.Contains(out, "local cloud serving") || !strings.Contains(out, "shutting down") {
		t.Fatalf("serve exited %d:\n%s", code, out)
	}

	// A record the store cannot load is reported without -v: its object is
	// not served.
	garbled := filepath.Join(dir, "objects", "images", "o-0123.json")
	if err := os.WriteFile(garbled, []byte(`{"key":`), 0o644); err != nil {
		t.Fatal(err)
	}

	ep2, stop := serving(t, dir)
	defer func() {
		if code, out := stop(); code != 0 || !strings.Contains(out, "warning: object store: a record could not be loaded") || !strings.Contains(out, garbled) {
			t.Errorf("serve with a garbled record exited %d:\n%s", code, out)
		}
	}()
	if ep2.AccessKeyID != ep.AccessKeyID || ep2.CAFile != ep.CAFile {
		t.Fatalf("credentials or CA changed across a restart: %+v %+v", ep, ep2)
	}
	ic, sc = clients(ep2)
	if _, err := ic.DescribeThing(ctx, &iot.DescribeThingInput{ThingName: aws.String("dev-1")}); err != nil {
		t.Fatal(err)
	}
	if dj, err := ic.DescribeJob(ctx, &iot.DescribeJobInput{JobId: aws.String("j1")}); err != nil || *dj.Job.JobProcessDetails.NumberOfQueuedThings != 1 {
		t.Fatalf("%+v %v", dj, err)
	}
	if _, err := sc.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("images")}); err != nil {
		t.Fatal(err)
	}
}

func TestCloudServeErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"Statement":[]}`), 0o600)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"cloud", "serve", "--data", dir, "--policy", filepath.Join(dir, "bad.json")}, exitUsage, "no Statement"},
		{[]string{"cloud", "serve", "--data", dir, "--policy", filepath.Join(dir, "missing.json")}, exitUsage, "--policy"},
		{[]string{"cloud", "serve", "extra"}, exitUsage, "no arguments"},
		{[]string{"cloud", "mosquitto-config", "--data", dir, "--listen", "nonsense"}, exitFailure, "host:port"},
	} {
		code, _, errOut := run(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q", c.args, code, errOut)
		}
	}
	code, out, _ := run(t, "cloud", "mosquitto-config", "--data", dir, "--listen", "127.0.0.1:18883")
	if code != 0 || !strings.Contains(out, "mosquitto -c") {
		t.Fatalf("%d %s", code, out)
	}
	conf, err := os.ReadFile(filepath.Join(dir, "mosquitto", "mosquitto.conf"))
	if err != nil || !strings.Contains(string(conf), "listener 18883 127.0.0.1") || !strings.Contains(string(conf), "require_certificate true") {
		t.Fatalf("%s %v", conf, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pki", "ca.pem")); errors.Is(err, os.ErrNotExist) {
		t.Fatal("no CA written")
	}
}

// An address in use names the flag that changes it.
func TestCloudServeAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	for _, c := range []struct{ flag, other string }{{"--http-addr", "--mqtt-addr"}, {"--mqtt-addr", "--http-addr"}} {
		code, _, errOut := run(t, "cloud", "serve", "--data", t.TempDir(), c.flag, busy, c.other, "127.0.0.1:0")
		if code != exitFailure || !strings.Contains(errOut, busy+" is already in use") || !strings.Contains(errOut, "another address with "+c.flag) {
			t.Errorf("%s %s in use: exit %d, %q", c.flag, busy, code, errOut)
		}
	}
}

// endpoints.json names the CA by an absolute path, so that it means the
// same to commands run from another directory than serve's.
func TestEndpointsHoldAbsolutePaths(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, t.TempDir())
	if err != nil || filepath.IsAbs(rel) {
		t.Skipf("no relative path from %s to the temporary directory", wd) // a different volume
	}
	ep, stop := serving(t, rel)
	defer stop()
	if !filepath.IsAbs(ep.CAFile) {
		t.Fatalf("caFile %q is relative to where serve started", ep.CAFile)
	}
	if _, err := os.Stat(ep.CAFile); err != nil {
		t.Fatal(err)
	}
	// A file written by an older cloud, relative to where it started,
	// still leads to the CA.
	old := t.TempDir()
	os.WriteFile(filepath.Join(old, emu.EndpointsFile), []byte(`{"http":"http://127.0.0.1:1","caFile":"somewhere/pki/ca.pem"}`), 0o600)
	if ep, err := emu.ReadEndpoints(old); err != nil || ep.CAFile != filepath.Join(old, "pki", "ca.pem") {
		t.Fatalf("old endpoints.json: caFile %q, %v", ep.CAFile, err)
	}
}

// TestCloudServeReadyMeansReady: endpoints.json, what scripts and the other
// commands wait for, appears only once every part of the cloud answers:
// not yet while the console is being mounted, and the console answers the
// moment it is there (it once appeared first, and a request in the gap got
// the S3 API's AccessDenied for /console/).
func TestCloudServeReadyMeansReady(t *testing.T) {
	dir := t.TempDir()
	seen := make(chan error, 1)
	beforeConsole = func(dataDir string) {
		_, err := os.Stat(filepath.Join(dataDir, emu.EndpointsFile))
		seen <- err
	}
	defer func() { beforeConsole = nil }()
	ep, stop := serving(t, dir)
	defer stop()
	if err := <-seen; !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("endpoints.json before the console was mounted: stat says %v", err)
	}
	if code, body := fetch(t, ep.HTTP+"/console/jobs"); code != 200 {
		t.Fatalf("GET /console/jobs as endpoints.json appeared: %d\n%s", code, body)
	}
}

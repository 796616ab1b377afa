package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/cloud/objstore"
	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/jobdoc"
	"github.com/awsfota/awsfota/mcuboot"
	"github.com/awsfota/awsfota/sim"
)

// syncBuffer is a bytes.Buffer safe for a command writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// localThing starts a local cloud, provisions thing and writes its device
// file into dir, as `awsfota thing create` does.
func localThing(t *testing.T, dir, thing string, slots bool) (*emu.Cloud, string) {
	t.Helper()
	c, err := emu.Start(emu.Config{DataDir: filepath.Join(dir, "cloud"), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	creds, err := c.ProvisionThing(thing)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "cert.pem"), creds.CertPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "key.pem"), creds.KeyPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "ca.pem"), creds.CAPEM, 0o644)
	f := map[string]any{"thing": thing, "endpoint": c.Endpoints().MQTT, "serverName": "localhost",
		"certFile": "cert.pem", "keyFile": "key.pem", "caFile": "ca.pem"}
	if slots {
		f["slots"] = map[string]any{"primary": "primary.bin", "secondary": "secondary.bin", "size": sim.DefaultGeometry.Size,
			"sectorSize": sim.DefaultGeometry.SectorSize, "writeAlign": sim.DefaultGeometry.WriteAlign}
	}
	b, _ := json.MarshalIndent(f, "", "  ")
	path := filepath.Join(dir, "device.json")
	os.WriteFile(path, b, 0o644)
	return c, path
}

func createJob(t *testing.T, c *emu.Cloud, job, thing string, img []byte) {
	t.Helper()
	if err := c.Objects.CreateBucket("fw-bucket"); err != nil && !errors.Is(err, objstore.ErrBucketExists) {
		t.Fatal(err)
	}
	c.Objects.SetPublicRead("fw-bucket", true)
	if _, err := c.Objects.Put(context.Background(), "fw-bucket", job+".bin", bytes.NewReader(img)); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(img)
	doc, _ := jobdoc.Marshal(jobdoc.Spec{URL: c.Endpoints().HTTP + "/fw-bucket/" + job + ".bin", Size: int64(len(img)), SHA256: sum[:]})
	if _, err := c.Jobs.CreateJob(jobsvc.JobSpec{JobID: job, Things: []string{thing}, Document: doc}); err != nil {
		t.Fatal(err)
	}
}

func waitStatus(t *testing.T, c *emu.Cloud, job, thing string, done <-chan int) jobsvc.Execution {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	for {
		e, err := c.Jobs.DescribeExecution(job, thing)
		if err != nil {
			t.Fatal(err)
		}
		if e.Status.Terminal() {
			return e
		}
		select {
		case code := <-done:
			t.Fatalf("device run exited %d before the job ended", code)
		case <-deadline:
			t.Fatalf("job %s still %s", job, e.Status)
		case <-tick.C:
		}
	}
}

func TestDeviceRunSim(t *testing.T) {
	dir := t.TempDir()
	c, cfg := localThing(t, dir, "cli-dev", false)
	img, _ := sim.AppImage("1.2.0", 100_000)
	createJob(t, c, "cli-job", "cli-dev", img)

	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"device", "run", "--config", cfg, "--state", filepath.Join(dir, "state"), "--sim", "--sim-version", "1.1.0"}, &out, &errb)
	}()
	x := waitStatus(t, c, "cli-job", "cli-dev", done)
	// The device prints its last line once the cloud's reply arrives.
	waitOutput(t, &out, "reported SUCCEEDED")
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	if x.Status != iotjobs.StatusSucceeded || x.StatusDetails["from"] != "1.1.0" || x.StatusDetails["fwversion"] != "1.2.0" {
		t.Fatalf("execution %s %v", x.Status, x.StatusDetails)
	}
	for _, want := range []string{"new simulated device", "running 1.1.0", "started", "100%", "booted 1.2.0 (on trial", "reported SUCCEEDED"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestDeviceRunRealSlotsExitsForReboot(t *testing.T) {
	dir := t.TempDir()
	c, cfg := localThing(t, dir, "real-dev", true)
	g := sim.DefaultGeometry
	primary, err := flash.OpenFile(filepath.Join(dir, "primary.bin"), g)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := sim.AppImage("2.0.0", 30_000)
	primary.WriteAt(old, 0)
	primary.Close()
	img, _ := sim.AppImage("2.0.1", 80_000)
	createJob(t, c, "real-job", "real-dev", img)

	args := []string{"device", "run", "--config", cfg, "--state", filepath.Join(dir, "state")}
	var out, errb syncBuffer
	if code := Run(context.Background(), args, &out, &errb); code != exitReboot {
		t.Fatalf("exit %d, want %d (reboot)\n%s\n%s", code, exitReboot, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "reboot the device now") {
		t.Fatalf("output %s", out.String())
	}
	// The device's real bootloader would swap now; the simulated one does.
	p, _ := flash.OpenFile(filepath.Join(dir, "primary.bin"), g)
	s, _ := flash.OpenFile(filepath.Join(dir, "secondary.bin"), g)
	if _, err := (&sim.Bootloader{Primary: p, Secondary: s}).Boot(); err != nil {
		t.Fatal(err)
	}
	p.Close()
	s.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- Run(ctx, args, &out, &errb) }()
	x := waitStatus(t, c, "real-job", "real-dev", done)
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("second run exit %d\n%s", code, errb.String())
	}
	if x.Status != iotjobs.StatusSucceeded || x.StatusDetails["fwversion"] != "2.0.1" {
		t.Fatalf("execution %s %v", x.Status, x.StatusDetails)
	}
}

func TestDeviceRunErrors(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := run(t, "device", "run"); code != exitUsage || !strings.Contains(errOut, "--config") {
		t.Fatalf("%d %s", code, errOut)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"thing":"x"}`), 0o644)
	if code, _, errOut := run(t, "device", "run", "--config", bad, "--state", dir); code != exitFailure || !strings.Contains(errOut, "endpoint") {
		t.Fatalf("%d %s", code, errOut)
	}
	os.WriteFile(bad, []byte(`{"thing":"x","endpoint":"127.0.0.1:1","certFile":"c.pem","keyFile":"k.pem"}`), 0o644)
	if code, _, errOut := run(t, "device", "run", "--config", bad, "--state", dir, "--sim"); code != exitFailure || !strings.Contains(errOut, "certFile") {
		t.Fatalf("%d %s", code, errOut)
	}
	if code, _, errOut := run(t, "device", "run", "--config", bad, "--state", dir); code != exitFailure || !strings.Contains(errOut, "slots") {
		t.Fatalf("%d %s", code, errOut)
	}
}

func TestDeviceRunRefusesUnsignedWithTrustedKeys(t *testing.T) {
	dir := t.TempDir()
	c, cfg := localThing(t, dir, "keyed-dev", false)
	key, err := mcuboot.GenerateKey(mcuboot.KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := key.Public().MarshalPEM()
	os.WriteFile(filepath.Join(dir, "trusted.pub.pem"), pub, 0o644)
	priv, _ := key.MarshalPEM()
	os.WriteFile(filepath.Join(dir, "signing.pem"), priv, 0o600)
	var f map[string]any
	b, _ := os.ReadFile(cfg)
	json.Unmarshal(b, &f)
	f["trustedKeys"] = []string{"trusted.pub.pem"}
	b, _ = json.Marshal(f)
	os.WriteFile(cfg, b, 0o644)

	img, _ := sim.AppImage("1.2.0", 50_000) // unsigned
	createJob(t, c, "unsigned-job", "keyed-dev", img)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"device", "run", "--config", cfg, "--state", filepath.Join(dir, "state"), "--sim", "--sim-key", filepath.Join(dir, "signing.pem")}, &out, &errb)
	}()
	x := waitStatus(t, c, "unsigned-job", "keyed-dev", done)
	cancel()
	<-done
	if x.Status != iotjobs.StatusFailed || x.StatusDetails["reason"] != "unsigned" {
		t.Fatalf("execution %s %v\n%s", x.Status, x.StatusDetails, out.String())
	}
	// Without --sim-key a new device could not boot: a clear usage error,
	// before anything is made in the state directory...
	state2 := filepath.Join(dir, "state2")
	code := Run(context.Background(), []string{"device", "run", "--config", cfg, "--state", state2, "--sim"}, &out, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), "--sim-key") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if _, err := os.Stat(state2); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused run left %s behind (%v): the next run would take it for a device", state2, err)
	}
	// ... so that the same command with --sim-key makes the device.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	var out2 syncBuffer
	go func() {
		done <- Run(ctx, []string{"device", "run", "--config", cfg, "--state", state2, "--sim", "--sim-key", filepath.Join(dir, "signing.pem")}, &out2, &out2)
	}()
	waitOutput(t, &out2, "keyed-dev: booted 1.0.0 (confirmed")
	cancel()
	if code := <-done; code != 0 || !strings.Contains(out2.String(), "new simulated device") {
		t.Fatalf("rerun with --sim-key: exit %d\n%s", code, out2.String())
	}
}

// A device that cannot connect says why on stderr, without -v: once, with
// the delay before the next attempt, and again only when the cause changes.
func TestDeviceRunSaysWhyItCannotConnect(t *testing.T) {
	dir := t.TempDir()
	_, cfg := localThing(t, dir, "lonely", false)
	// Something that accepts connections and closes them at once: the
	// device's attempts can be counted.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"device", "run", "--config", cfg, "--state", filepath.Join(dir, "state"), "--sim", "--endpoint", ln.Addr().String()}, &out, &errb)
	}()
	waitFor(t, "four connection attempts", func() bool { return accepted.Load() >= 4 })
	closed := "lonely: cannot connect: the broker at " + ln.Addr().String() + " closed the connection during setup"
	if n := strings.Count(errb.String(), "cannot connect:"); n != 1 || !strings.Contains(errb.String(), closed) ||
		!strings.Contains(errb.String(), "lonely: trying again in ") {
		t.Fatalf("after %d attempts stderr says (want %q once, with the delay):\n%s", accepted.Load(), closed, errb.String())
	}
	// The cause changes: nothing listens any more.
	ln.Close()
	waitOutput(t, &errb, "lonely: cannot connect: nothing accepts connections at "+ln.Addr().String()+": check the endpoint and port")
	if n := strings.Count(errb.String(), "cannot connect:"); n != 2 {
		t.Fatalf("stderr says it %d times:\n%s", n, errb.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// An unknown host and a certificate of another thing are told as such,
// once however many attempts fail (counted by -v's log of each).
func TestDeviceRunConnectCauses(t *testing.T) {
	dir := t.TempDir()
	c, cfg := localThing(t, dir, "mine", false)
	other, err := c.ProvisionThing("theirs")
	if err != nil {
		t.Fatal(err)
	}
	theirs := filepath.Join(dir, "theirs")
	os.Mkdir(theirs, 0o755)
	os.WriteFile(filepath.Join(theirs, "cert.pem"), other.CertPEM, 0o600)
	os.WriteFile(filepath.Join(theirs, "key.pem"), other.KeyPEM, 0o600)
	var f map[string]any
	b, _ := os.ReadFile(cfg)
	json.Unmarshal(b, &f)
	f["certFile"], f["keyFile"] = filepath.Join(theirs, "cert.pem"), filepath.Join(theirs, "key.pem")
	wrongCert := filepath.Join(dir, "wrong-cert.json")
	b, _ = json.Marshal(f)
	os.WriteFile(wrongCert, b, 0o644)

	for _, c := range []struct {
		name, config, want string
		extra              []string
		attempts           int
	}{
		{"certificate of another thing", wrongCert, `refused the connection: check that the client id "mine" is the thing the certificate is attached to`, nil, 3},
		{"unknown host", cfg, "the endpoint host of no-such-host.invalid:8883 does not resolve: check the endpoint", []string{"--endpoint", "no-such-host.invalid:8883"}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out, errb syncBuffer
			done := make(chan int, 1)
			args := append([]string{"device", "run", "-v", "--config", c.config, "--state", filepath.Join(t.TempDir(), "state"), "--sim"}, c.extra...)
			go func() { done <- Run(ctx, args, &out, &errb) }()
			waitFor(t, fmt.Sprintf("%d failed attempts", c.attempts), func() bool {
				return strings.Count(errb.String(), "mqtt connection failed") >= c.attempts
			})
			if n := strings.Count(errb.String(), "cannot connect:"); n != 1 || !strings.Contains(errb.String(), c.want) {
				t.Fatalf("stderr says it %d times (want %q once):\n%s", n, c.want, errb.String())
			}
			cancel()
			<-done
		})
	}
}

// waitFor polls (with a deadline) until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("waited in vain for %s", what)
		}
	}
}

// waitOutput polls (with a deadline) until out holds want.
func waitOutput(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for !strings.Contains(out.String(), want) {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("output never showed %q:\n%s", want, out.String())
		}
	}
}

func TestDeviceFileTrialSettings(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "device.json")
	base := `{"thing":"x","endpoint":"127.0.0.1:1","certFile":"c.pem","keyFile":"k.pem","agent":`
	for agentJSON, want := range map[string]string{
		`{"installAttempts":-1}`:           "agent.installAttempts is -1; give 1 or more",
		`{"cancelDuringTrial":"rollback"}`: `agent.cancelDuringTrial: agent: a cancel during a trial can "finish" or "revert", not "rollback"`,
	} {
		os.WriteFile(p, []byte(base+agentJSON+"}"), 0o644)
		if code, _, errOut := run(t, "device", "run", "--config", p, "--state", dir, "--sim"); code != exitFailure || !strings.Contains(errOut, want) {
			t.Errorf("%s: %d %s", agentJSON, code, errOut)
		}
	}
	os.WriteFile(p, []byte(base+`{"installAttempts":5,"cancelDuringTrial":"revert"}}`), 0o644)
	f, err := readDeviceFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if c := f.agentConfig(); c.InstallAttempts != 5 || c.CancelDuringTrial != agent.TrialRevert {
		t.Fatalf("agent config %+v", c)
	}
}

// DEVICE.json's download rate floor: on by default, tunable, and off when
// negative.
func TestDeviceDownloadMinRate(t *testing.T) {
	for _, c := range []struct {
		set    downloadSettings
		rate   int64
		window time.Duration
	}{
		{downloadSettings{}, deviceMinRate, deviceMinRateWindow},
		{downloadSettings{MinBytesPerSecond: 2048, MinRateWindowSeconds: 30}, 2048, 30 * time.Second},
		{downloadSettings{MinBytesPerSecond: -1}, 0, deviceMinRateWindow},
	} {
		f := &deviceFile{Download: c.set}
		if got := f.downloadConfig(nil); got.MinRate != c.rate || got.RateWindow != c.window {
			t.Errorf("%+v: MinRate %d over %v, want %d over %v", c.set, got.MinRate, got.RateWindow, c.rate, c.window)
		}
	}
}

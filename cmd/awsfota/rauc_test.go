//go:build rauc

package main

// End-to-end tests of awsfota as the AWS IoT Jobs front end of a real RAUC
// (build tag rauc; .ci/run installs rauc, rauc-service, dbus and
// squashfs-tools and runs them): the local cloud in-process, RAUC on a
// private D-Bus with raw slots in files and a U-Boot-like bootloader
// (internal/rauctest), and `awsfota device run` and `awsfota job create` as
// real child processes of this test binary, so that the agent can be killed
// with SIGKILL and started again as after a crash.
//
// Each case ends by checking that the job's status is the truth about the
// device: SUCCEEDED only when the new slot booted, runs the bundle's version
// and was marked good; FAILED only when the device is back on its old slot.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/cloud/objstore"
	"github.com/awsfota/awsfota/internal/faultproxy"
	"github.com/awsfota/awsfota/internal/rauctest"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/jobdoc"
)

// TestMain lets the test binary be awsfota itself: the tests start it as a
// child with AWSFOTA_TEST_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("AWSFOTA_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

const compatible = "awsfota-gw"

// rig is one Linux device with RAUC, its agent, and the local cloud.
type rig struct {
	t      *testing.T
	dir    string
	thing  string
	cloud  *emu.Cloud
	sys    *rauctest.System
	config string
	state  string
	agent  *exec.Cmd
	exited chan error
	log    string // the agent's output, every run appended
}

func newRig(t *testing.T, thing string) *rig {
	t.Helper()
	dir := t.TempDir()
	r := &rig{t: t, dir: dir, thing: thing, log: filepath.Join(dir, "agent.log")}
	c, err := emu.Start(emu.Config{DataDir: filepath.Join(dir, "cloud"), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r.cloud = c
	t.Cleanup(func() { c.Close() })
	r.sys = rauctest.Start(t, filepath.Join(dir, "rauc"), compatible, "1.0.0")
	t.Cleanup(r.stopAgent) // before the system and the cloud go

	creds, err := c.ProvisionThing(thing)
	if err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(dir, "device")
	os.MkdirAll(dev, 0o755)
	os.WriteFile(filepath.Join(dev, "cert.pem"), creds.CertPEM, 0o600)
	os.WriteFile(filepath.Join(dev, "key.pem"), creds.KeyPEM, 0o600)
	os.WriteFile(filepath.Join(dev, "ca.pem"), creds.CAPEM, 0o644)
	script := func(name, body string) string {
		p := filepath.Join(dev, name)
		os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755)
		return p
	}
	health := script("health.sh", `if [ -e `+filepath.Join(dev, "unhealthy")+` ]; then echo "acme-web.service: bind 0.0.0.0:443: address already in use" >&2; exit 1; fi; echo healthy`)
	reboot := script("reboot.sh", `touch `+r.marker())
	f := map[string]any{
		"thing": thing, "endpoint": c.Endpoints().MQTT, "serverName": "localhost",
		"certFile": "cert.pem", "keyFile": "key.pem", "caFile": "ca.pem",
		"agent": map[string]any{"replyTimeoutSeconds": 5},
		"target": map[string]any{
			"type": "rauc", "dbus": r.sys.Bus,
			"healthCheck":       map[string]any{"command": []string{health}, "timeoutSeconds": 30},
			"reboot":            map[string]any{"command": []string{reboot}},
			"rebootWaitSeconds": 600,
		},
	}
	b, _ := json.MarshalIndent(f, "", "  ")
	r.config = filepath.Join(dev, "device.json")
	os.WriteFile(r.config, b, 0o644)
	r.state = filepath.Join(dev, "state")
	return r
}

func (r *rig) marker() string { return filepath.Join(r.dir, "device", "reboot-requested") }

// awsfota runs the CLI as a child and returns its stdout.
func (r *rig) awsfota(args ...string) (string, error) {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "AWSFOTA_TEST_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("awsfota %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// startAgent starts `awsfota device run` as a child process.
func (r *rig) startAgent() {
	r.t.Helper()
	logf, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	fmt.Fprintf(logf, "==== agent start at %s (booted %s)\n", time.Now().Format(time.TimeOnly), r.sys.Booted)
	cmd := exec.Command(os.Args[0], "device", "run", "--config", r.config, "--state", r.state, "-v")
	cmd.Env = append(os.Environ(), "AWSFOTA_TEST_MAIN=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.agent, r.exited = cmd, make(chan error, 1)
	go func() { r.exited <- cmd.Wait(); logf.Close() }()
}

func (r *rig) output() string {
	b, _ := os.ReadFile(r.log)
	return string(b)
}

func (r *rig) fatalf(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("%s\n---- agent output:\n%s\n---- RAUC:\n%s", fmt.Sprintf(format, args...), r.output(), tail(r.sys.Log(), 3000))
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// kill9 kills the agent as a crash or a power cut would.
func (r *rig) kill9() {
	r.t.Helper()
	r.agent.Process.Signal(syscall.SIGKILL)
	<-r.exited
	r.agent = nil
}

func (r *rig) stopAgent() {
	if r.agent == nil {
		return
	}
	r.agent.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(20 * time.Second):
		r.agent.Process.Kill()
		<-r.exited
	}
	r.agent = nil
}

// poll calls ok until it is true, failing after a deadline or when the agent
// exits by itself.
func (r *rig) poll(what string, ok func() bool) {
	r.t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(90 * time.Second)
	for !ok() {
		select {
		case err := <-r.exited:
			r.exited <- err
			r.fatalf("the agent exited (%v) while waiting for %s", err, what)
		case <-deadline:
			r.fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// rebootWhenAsked waits for the agent to run the reboot command, stops the
// service as a shutdown does (it must exit 0), reboots the system and starts
// the agent again. It returns the slot booted.
func (r *rig) rebootWhenAsked() string {
	r.t.Helper()
	r.poll("the reboot command", func() bool { _, err := os.Stat(r.marker()); return err == nil })
	r.agent.Process.Signal(syscall.SIGTERM)
	if err := <-r.exited; err != nil {
		r.fatalf("at the shutdown the agent exited with %v", err)
	}
	r.agent = nil
	os.Remove(r.marker())
	booted := r.sys.Reboot()
	r.startAgent()
	return booted
}

func (r *rig) execution(job string) jobsvc.Execution {
	x, err := r.cloud.Jobs.DescribeExecution(job, r.thing)
	if err != nil {
		r.t.Fatal(err)
	}
	return x
}

func (r *rig) waitDone(job string) jobsvc.Execution {
	r.t.Helper()
	var x jobsvc.Execution
	r.poll("job "+job+" to end", func() bool { x = r.execution(job); return x.Status.Terminal() })
	return x
}

// bundle writes a bundle of a random rootfs image of n bytes.
func (r *rig) bundle(name, compat, version string, n int) (string, []byte) {
	img := make([]byte, n)
	rand.Read(img)
	return r.sys.Bundle(name, compat, version, img), img
}

// createJob publishes a bundle with `awsfota job create`, as an operator.
func (r *rig) createJob(bundle string, extra ...string) string {
	r.t.Helper()
	out, err := r.awsfota(append([]string{"job", "create", "--local", filepath.Join(r.dir, "cloud"), "--image", bundle, "--thing", r.thing}, extra...)...)
	if err != nil {
		r.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// truth checks that the device is where the job's status says.
func (r *rig) truth(x jobsvc.Execution, version string, img []byte) {
	r.t.Helper()
	order, left := r.sys.BootState()
	next := "" // what the bootloader boots next
	for _, s := range order {
		if left[s] > 0 {
			next = s
			break
		}
	}
	switch x.Status {
	case iotjobs.StatusSucceeded:
		if r.sys.Booted != "B" || next != "B" || left["B"] != rauctest.Attempts {
			r.fatalf("SUCCEEDED, but the device booted %s, boot order %v, attempts %v: the new slot is not marked good", r.sys.Booted, order, left)
		}
		if !bytes.Equal(r.sys.SlotImage("B", len(img)), img) {
			r.fatalf("SUCCEEDED, but slot B does not hold the bundle's image")
		}
		if x.StatusDetails["fwversion"] != version || x.StatusDetails["from"] != "1.0.0" {
			r.fatalf("SUCCEEDED with details %v", x.StatusDetails)
		}
	case iotjobs.StatusFailed:
		if r.sys.Booted != "A" || next != "A" {
			r.fatalf("FAILED, but the device booted %s, boot order %v, attempts %v: it is not back on its old slot for good", r.sys.Booted, order, left)
		}
	default:
		r.fatalf("job ended %s", x.Status)
	}
}

// succeeds reboots when the agent asks, into the new slot, and checks the
// job SUCCEEDED with the device running version.
func (r *rig) succeeds(job, version string, img []byte) jobsvc.Execution {
	r.t.Helper()
	if booted := r.rebootWhenAsked(); booted != "B" {
		r.fatalf("rebooted into %s", booted)
	}
	x := r.waitDone(job)
	if x.Status != iotjobs.StatusSucceeded {
		r.fatalf("job %s %v", x.Status, x.StatusDetails)
	}
	r.truth(x, version, img)
	return x
}

func TestRAUCUpdateSucceeds(t *testing.T) {
	r := newRig(t, "gw-ok")
	r.startAgent()
	b, img := r.bundle("v110", compatible, "1.1.0", 600_000)
	job := r.createJob(b, "--keyring", r.sys.Keyring)
	x := r.succeeds(job, "1.1.0", img)
	for _, want := range []string{"installing", "Copying image to rootfs.1", "rebooting (", "reported SUCCEEDED"} {
		if !strings.Contains(r.output(), want) {
			r.fatalf("the agent's output lacks %q", want)
		}
	}
	if x.StatusDetails["state"] != "succeeded" {
		r.fatalf("details %v", x.StatusDetails)
	}
}

func TestRAUCHealthCheckFails(t *testing.T) {
	r := newRig(t, "gw-sick")
	r.startAgent()
	b, img := r.bundle("v110", compatible, "1.1.0", 300_000)
	job := r.createJob(b)
	os.WriteFile(filepath.Join(r.dir, "device", "unhealthy"), nil, 0o644) // the new system's web server will not start
	if booted := r.rebootWhenAsked(); booted != "B" {
		r.fatalf("rebooted into %s", booted)
	}
	x := r.waitDone(job)
	if x.Status != iotjobs.StatusFailed || x.StatusDetails["reason"] != "self_test_failed" ||
		!strings.Contains(x.StatusDetails["message"], "address already in use") {
		r.fatalf("job %s %v", x.Status, x.StatusDetails)
	}
	// The slot was marked bad; after the report the agent reboots back.
	if booted := r.rebootWhenAsked(); booted != "A" {
		r.fatalf("after the failed health check the device booted %s", booted)
	}
	r.truth(x, "1.1.0", img)
}

func TestRAUCNewSlotNeverBoots(t *testing.T) {
	r := newRig(t, "gw-dead")
	r.startAgent()
	b, img := r.bundle("v110", compatible, "1.1.0", 300_000)
	job := r.createJob(b)
	r.sys.Broken["B"] = true // its kernel panics: the bootloader uses up B's attempts, then boots A
	if booted := r.rebootWhenAsked(); booted != "A" {
		r.fatalf("booted %s", booted)
	}
	x := r.waitDone(job)
	if x.Status != iotjobs.StatusFailed || x.StatusDetails["reason"] != "rollback" ||
		!strings.Contains(x.StatusDetails["message"], "runs 1.0.0, not 1.1.0") {
		r.fatalf("job %s %v", x.Status, x.StatusDetails)
	}
	_, left := r.sys.BootState()
	if left["B"] != 0 {
		r.fatalf("slot B has %d attempts left after it never booted", left["B"])
	}
	r.truth(x, "1.1.0", img)
}

// A kill -9 in the middle of the download: the next run resumes it where
// the last checkpoint left it, and the update succeeds.
func TestRAUCKillDuringDownload(t *testing.T) {
	r := newRig(t, "gw-kill-dl")
	b, img := r.bundle("v120", compatible, "1.2.0", 1_500_000)
	data, _ := os.ReadFile(b)
	// The bundle is served through a proxy that stalls the first
	// connection after 900 kB, from a bucket the devices may read.
	if err := r.cloud.Objects.CreateBucket("firmware"); err != nil && !errors.Is(err, objstore.ErrBucketExists) {
		t.Fatal(err)
	}
	r.cloud.Objects.SetPublicRead("firmware", true)
	if _, err := r.cloud.Objects.Put(context.Background(), "firmware", "v120.raucb", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.New(strings.TrimPrefix(r.cloud.Endpoints().HTTP, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetFault(faultproxy.Fault{CutAfter: 900_000, Stall: true, Once: true})
	sum := sha256.Sum256(data)
	doc, _ := jobdoc.Marshal(jobdoc.Spec{URL: "http://" + p.Addr() + "/firmware/v120.raucb", Size: int64(len(data)), SHA256: sum[:],
		FWVersion: "1.2.0", Component: "rauc", Compatible: compatible})
	if _, err := r.cloud.Jobs.CreateJob(jobsvc.JobSpec{JobID: "kill-dl", Things: []string{r.thing}, Document: doc}); err != nil {
		t.Fatal(err)
	}
	r.startAgent()
	r.poll("the download to stall with progress reported", func() bool {
		x := r.execution("kill-dl")
		n, _ := strconv.Atoi(x.StatusDetails["bytes"])
		return p.Stats().Cuts == 1 && x.StatusDetails["state"] == "downloading" && n >= 256<<10
	})
	r.kill9()
	r.startAgent()
	r.succeeds("kill-dl", "1.2.0", img)
	// Resumed, not started over: well under two bundles crossed the proxy.
	if down := p.Stats().BytesDown; down > int64(len(data))+400_000 {
		r.fatalf("%d bytes downloaded for a bundle of %d: the download started over", down, len(data))
	}
}

// A kill -9 while RAUC installs: RAUC finishes on its own; the next run
// waits for it, installs again and the update succeeds.
func TestRAUCKillDuringInstall(t *testing.T) {
	r := newRig(t, "gw-kill-in")
	gate := filepath.Join(r.dir, "gate")
	img := make([]byte, 400_000)
	rand.Read(img)
	b := r.sys.GatedBundle("v130", compatible, "1.3.0", img, gate)
	job := r.createJob(b)
	r.startAgent()
	r.poll("RAUC to be installing", func() bool { _, err := os.Stat(gate + ".waiting"); return err == nil })
	r.kill9()
	r.startAgent()
	os.WriteFile(gate, nil, 0o644) // RAUC's install goes on
	r.succeeds(job, "1.3.0", img)
	if n := strings.Count(r.sys.Log(), "succeeded"); n < 2 {
		r.fatalf("RAUC installed %d times, want the interrupted install and the new one", n)
	}
}

// A bundle for another system: refused before it is downloaded when the
// document names its compatible (job create writes it), and before it is
// installed when it does not.
func TestRAUCBundleForAnotherCompatible(t *testing.T) {
	r := newRig(t, "gw-foreign")
	r.startAgent()
	b, _ := r.bundle("camera", "acme-camera", "7.0", 300_000)
	job := r.createJob(b)
	x := r.waitDone(job)
	if x.Status != iotjobs.StatusFailed || x.StatusDetails["reason"] != "incompatible" ||
		!strings.Contains(x.StatusDetails["message"], `"acme-camera" systems and this device is "`+compatible+`": nothing was downloaded`) {
		r.fatalf("job %s %v", x.Status, x.StatusDetails)
	}
	// Without compatible in the document: the device reads the bundle.
	data, _ := os.ReadFile(b)
	r.cloud.Objects.CreateBucket("firmware")
	r.cloud.Objects.SetPublicRead("firmware", true)
	r.cloud.Objects.Put(context.Background(), "firmware", "camera.raucb", bytes.NewReader(data))
	doc, _ := jobdoc.Marshal(jobdoc.Spec{URL: r.cloud.Endpoints().HTTP + "/firmware/camera.raucb", Size: int64(len(data)), Component: "rauc"})
	if _, err := r.cloud.Jobs.CreateJob(jobsvc.JobSpec{JobID: "no-compat", Things: []string{r.thing}, Document: doc}); err != nil {
		t.Fatal(err)
	}
	x = r.waitDone("no-compat")
	if x.Status != iotjobs.StatusFailed || x.StatusDetails["reason"] != "incompatible" || !strings.Contains(x.StatusDetails["message"], "it was not installed") {
		r.fatalf("job %s %v", x.Status, x.StatusDetails)
	}
	if strings.Contains(r.sys.Log(), "installing") {
		r.fatalf("RAUC was asked to install a bundle for another system")
	}
	r.truth(x, "", nil)
}

// A bundle changed after signing: RAUC refuses it, and the job says what
// RAUC said.
func TestRAUCTamperedBundle(t *testing.T) {
	r := newRig(t, "gw-tamper")
	r.startAgent()
	b, _ := r.bundle("v140", compatible, "1.4.0", 300_000)
	data, _ := os.ReadFile(b)
	data[5000] ^= 0xff // inside the rootfs image, under the signature
	tampered := filepath.Join(r.dir, "tampered.raucb")
	os.WriteFile(tampered, data, 0o644)
	// The operator would have caught it with --keyring:
	if _, err := r.awsfota("job", "create", "--local", filepath.Join(r.dir, "cloud"), "--image", tampered, "--thing", r.thing, "--keyring", r.sys.Keyring); err == nil ||
		!strings.Contains(err.Error(), "changed after signing") {
		r.fatalf("job create --keyring accepted a tampered bundle: %v", err)
	}
	job := r.createJob(tampered)
	x := r.waitDone(job)
	if x.Status != iotjobs.StatusFailed || x.StatusDetails["reason"] != "install_failed" ||
		!strings.Contains(x.StatusDetails["message"], "RAUC failed to install the bundle") || !strings.Contains(strings.ToLower(x.StatusDetails["message"]), "signature") {
		r.fatalf("job %s %v", x.Status, x.StatusDetails)
	}
	r.truth(x, "", nil)
}

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/iotjobs"
)

// vendorTool is a device updated by shell scripts, as a vendor's installer
// would: "current" holds the version that runs, install stages the file as
// "next", reboot switches to it (or, when the running version was never
// confirmed, back to the previous one, as a bootloader reverts a trial).
type vendorTool struct {
	dir string
}

func newVendorTool(t *testing.T, version string) *vendorTool {
	t.Helper()
	v := &vendorTool{dir: t.TempDir()}
	os.WriteFile(filepath.Join(v.dir, "current"), []byte(version+"\n"), 0o644)
	os.WriteFile(filepath.Join(v.dir, "health"), []byte("ok"), 0o644)
	scripts := map[string]string{
		"install.sh": `cp "$AWSFOTA_FILE" "$D/installed.bin" && echo "$AWSFOTA_FWVERSION" > "$D/next" && printf '%s' "$AWSFOTA_JOB_ID" > "$D/job" && echo "staged $AWSFOTA_FWVERSION"`,
		"version.sh": `cat "$D/current"`,
		"confirm.sh": `rm -f "$D/previous"; touch "$D/confirmed"`,
		"reboot.sh": `if [ -f "$D/next" ]; then cp "$D/current" "$D/previous"; mv "$D/next" "$D/current"; rm -f "$D/confirmed"
elif [ -f "$D/previous" ]; then mv "$D/previous" "$D/current"; fi
touch "$D/reboot-requested"`,
		"health.sh": `if [ "$(cat "$D/health")" = ok ]; then echo healthy; else echo "web UI: connection refused on :443" >&2; exit 3; fi`,
	}
	for name, body := range scripts {
		os.WriteFile(filepath.Join(v.dir, name), []byte("#!/bin/sh\nD="+v.dir+"\n"+body+"\n"), 0o755)
	}
	return v
}

func (v *vendorTool) read(name string) string {
	b, _ := os.ReadFile(filepath.Join(v.dir, name))
	return strings.TrimSpace(string(b))
}

func (v *vendorTool) cmd(name string) map[string]any {
	return map[string]any{"command": []string{filepath.Join(v.dir, name)}, "timeoutSeconds": 20}
}

// linuxDevice provisions a thing and writes its device file with target.
func (o *operatorEnv) linuxDevice(name string, target map[string]any) (config, state string) {
	o.t.Helper()
	dir := filepath.Join(o.t.TempDir(), name)
	if code, _, errOut := run(o.t, "thing", "create", name, "--out", dir, "--local", o.data); code != 0 {
		o.t.Fatalf("thing create: %d %s", code, errOut)
	}
	config = filepath.Join(dir, "device.json")
	var f map[string]any
	b, _ := os.ReadFile(config)
	json.Unmarshal(b, &f)
	f["target"] = target
	b, _ = json.MarshalIndent(f, "", "  ")
	os.WriteFile(config, b, 0o644)
	return config, filepath.Join(dir, "state")
}

// start runs `device run` until stop is called; stop returns its exit code.
func startDevice(t *testing.T, out *syncBuffer, args ...string) (stop func() int, exited <-chan int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- Run(ctx, append([]string{"device", "run"}, args...), out, out) }()
	stopped := false
	code := 0
	stop = func() int {
		if !stopped {
			stopped = true
			cancel()
			code = <-done
		}
		return code
	}
	t.Cleanup(func() { stop() })
	return stop, done
}

func waitFile(t *testing.T, path string, out *syncBuffer) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s never appeared; device output:\n%s", path, out.String())
		}
	}
}

func waitExecution(t *testing.T, o *operatorEnv, job, thing string, out *syncBuffer) jobsvc.Execution {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	for {
		x, err := o.cloud.Jobs.DescribeExecution(job, thing)
		if err == nil && x.Status.Terminal() {
			return x
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("job %s on %s still %s; device output:\n%s", job, thing, x.Status, out.String())
		}
	}
}

func (o *operatorEnv) fileJob(version string, content []byte) string {
	o.t.Helper()
	p := filepath.Join(o.t.TempDir(), "update.swu")
	os.WriteFile(p, content, 0o644)
	return p
}

// The exec target across a real reboot: the reboot command runs, the
// service is stopped by the shutdown, the next run finds the new version,
// runs the health check, confirms and reports SUCCEEDED.
func TestExecTargetAcrossReboot(t *testing.T) {
	o := newOperatorEnv(t)
	v := newVendorTool(t, "1.0.0")
	config, state := o.linuxDevice("gw-exec", map[string]any{"type": "exec",
		"install": v.cmd("install.sh"), "version": v.cmd("version.sh"), "confirm": v.cmd("confirm.sh"),
		"healthCheck": v.cmd("health.sh"), "reboot": v.cmd("reboot.sh"), "rebootWaitSeconds": 600})
	out := &syncBuffer{}
	stop, _ := startDevice(t, out, "--config", config, "--state", state)

	payload := []byte(strings.Repeat("vendor update payload ", 5000))
	id := o.createJob("--image", o.fileJob("1.1.0", payload), "--version", "1.1.0", "--thing", "gw-exec")
	waitFile(t, filepath.Join(v.dir, "reboot-requested"), out)
	// The shutdown stops the service.
	if code := stop(); code != 0 {
		t.Fatalf("device run exited %d at the shutdown:\n%s", code, out.String())
	}
	if got, _ := os.ReadFile(filepath.Join(v.dir, "installed.bin")); string(got) != string(payload) || v.read("job") != id {
		t.Fatalf("the install command got %d bytes for job %q", len(got), v.read("job"))
	}
	x, _ := o.cloud.Jobs.DescribeExecution(id, "gw-exec")
	if x.Status != iotjobs.StatusInProgress || x.StatusDetails["state"] != "ready_to_reboot" {
		t.Fatalf("before the reboot the cloud sees %s %v", x.Status, x.StatusDetails)
	}

	out2 := &syncBuffer{}
	startDevice(t, out2, "--config", config, "--state", state)
	x = waitExecution(t, o, id, "gw-exec", out2)
	if x.Status != iotjobs.StatusSucceeded || x.StatusDetails["fwversion"] != "1.1.0" || x.StatusDetails["from"] != "1.0.0" {
		t.Fatalf("cloud sees %s %v\n%s", x.Status, x.StatusDetails, out2.String())
	}
	if _, err := os.Stat(filepath.Join(v.dir, "confirmed")); err != nil {
		t.Fatal("the new version was not confirmed")
	}
	for _, want := range []string{"installing", "rebooting ("} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("first run's output lacks %q:\n%s", want, out.String())
		}
	}
}

// A failing health check: FAILED with the check's output, and the reboot
// after the report returns to the old version (rebootWaitSeconds 0: the
// "reboot" restarts an application, the agent goes on in-process).
func TestExecTargetFailedHealthCheck(t *testing.T) {
	o := newOperatorEnv(t)
	v := newVendorTool(t, "1.0.0")
	os.WriteFile(filepath.Join(v.dir, "health"), []byte("broken"), 0o644)
	config, state := o.linuxDevice("gw-bad", map[string]any{"type": "exec",
		"install": v.cmd("install.sh"), "version": v.cmd("version.sh"), "confirm": v.cmd("confirm.sh"),
		"healthCheck": v.cmd("health.sh"), "reboot": v.cmd("reboot.sh"), "rebootWaitSeconds": 0})
	out := &syncBuffer{}
	startDevice(t, out, "--config", config, "--state", state)
	id := o.createJob("--image", o.fileJob("1.1.0", []byte("update")), "--version", "1.1.0", "--thing", "gw-bad")
	x := waitExecution(t, o, id, "gw-bad", out)
	if x.Status != iotjobs.StatusFailed || x.StatusDetails["reason"] != "self_test_failed" || !strings.Contains(x.StatusDetails["message"], "connection refused on :443") {
		t.Fatalf("cloud sees %s %v\n%s", x.Status, x.StatusDetails, out.String())
	}
	waitOutput(t, out, "still running")
	// The agent asked for the reboot that reverts the unconfirmed version.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for v.read("current") != "1.0.0" {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("the device runs %s after the failed update\n%s", v.read("current"), out.String())
		}
	}
}

// An install command that refuses the file: FAILED install_failed with its
// output, nothing rebooted.
func TestExecTargetInstallRefused(t *testing.T) {
	o := newOperatorEnv(t)
	v := newVendorTool(t, "1.0.0")
	os.WriteFile(filepath.Join(v.dir, "install.sh"), []byte("#!/bin/sh\necho 'swupdate: [ERROR] : SWUpdate *failed* !' >&2\nexit 1\n"), 0o755)
	config, state := o.linuxDevice("gw-ref", map[string]any{"type": "exec",
		"install": v.cmd("install.sh"), "version": v.cmd("version.sh"), "reboot": v.cmd("reboot.sh")})
	out := &syncBuffer{}
	startDevice(t, out, "--config", config, "--state", state)
	id := o.createJob("--image", o.fileJob("1.1.0", []byte("update")), "--version", "1.1.0", "--thing", "gw-ref")
	x := waitExecution(t, o, id, "gw-ref", out)
	if x.Status != iotjobs.StatusFailed || x.StatusDetails["reason"] != "install_failed" || !strings.Contains(x.StatusDetails["message"], "SWUpdate *failed*") {
		t.Fatalf("cloud sees %s %v", x.Status, x.StatusDetails)
	}
	if _, err := os.Stat(filepath.Join(v.dir, "reboot-requested")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("rebooted after a refused install")
	}
}

func TestDeviceFileTargetErrors(t *testing.T) {
	o := newOperatorEnv(t)
	for name, c := range map[string]struct {
		target map[string]any
		want   string
	}{
		"type":          {map[string]any{"type": "swupdate"}, `type "swupdate"`},
		"exec commands": {map[string]any{"type": "exec"}, `needs "install" and "version"`},
		"rauc commands": {map[string]any{"type": "rauc", "install": map[string]any{"command": "x"}}, "RAUC installs"},
		"bad command":   {map[string]any{"type": "exec", "install": map[string]any{"command": []string{}}}, "empty list"},
	} {
		config, state := o.linuxDevice("gw-"+strings.ReplaceAll(name, " ", "-"), c.target)
		code, _, errOut := run(t, "device", "run", "--config", config, "--state", state)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d, %q; want %q", name, code, errOut, c.want)
		}
	}
	config, state := o.linuxDevice("gw-sim", map[string]any{"type": "rauc"})
	if code, _, errOut := run(t, "device", "run", "--config", config, "--state", state, "--sim"); code != exitUsage || !strings.Contains(errOut, "--sim simulates an MCUboot device") {
		t.Errorf("--sim with rauc: %d %s", code, errOut)
	}
}

// Under systemd (Type=notify, WatchdogSec) the service says READY=1, keeps
// the watchdog fed while the agent's loop answers, reports its status and
// says STOPPING=1 — on a fake NOTIFY_SOCKET.
func TestServiceNotifiesSystemd(t *testing.T) {
	msgs := notifySocket(t, "100000") // a watchdog of 100 ms: a ping every 50 ms
	o := newOperatorEnv(t)
	v := newVendorTool(t, "1.0.0")
	config, state := o.linuxDevice("gw-sd", map[string]any{"type": "exec", "install": v.cmd("install.sh"), "version": v.cmd("version.sh")})
	out := &syncBuffer{}
	stop, _ := startDevice(t, out, "--config", config, "--state", state)
	seen := map[string]int{}
	deadline := time.After(20 * time.Second)
	for seen["READY=1"] == 0 || seen["WATCHDOG=1"] < 3 {
		select {
		case m := <-msgs:
			seen[m]++
		case <-deadline:
			t.Fatalf("notifications %v", seen)
		}
	}
	id := o.createJob("--image", o.fileJob("1.1.0", []byte("u")), "--version", "1.1.0", "--thing", "gw-sd")
	for seen["STATUS=job "+id+": installed, rebooting"] == 0 {
		select {
		case m := <-msgs:
			seen[m]++
		case <-deadline:
			t.Fatalf("notifications %v", seen)
		}
	}
	stop()
	for seen["STOPPING=1"] == 0 {
		select {
		case m := <-msgs:
			seen[m]++
		case <-deadline:
			t.Fatalf("notifications %v", seen)
		}
	}
	if seen["READY=1"] != 1 {
		t.Fatalf("READY=1 sent %d times", seen["READY=1"])
	}
}

func TestJobCreateRAUCBundle(t *testing.T) {
	o := newOperatorEnv(t)
	o.device("gw-r")
	bundle := filepath.Join("..", "..", "raucb", "testdata", "plain-rsa.raucb")
	keyring := filepath.Join("..", "..", "raucb", "testdata", "ca-rsa.pem")
	code, out, errOut := run(t, "job", "create", "--local", o.data, "--image", bundle, "--keyring", keyring, "--thing", "gw-r", "--dry-run")
	if code != 0 || !strings.Contains(out, `"component": "rauc"`) || !strings.Contains(out, `"compatible": "awsfota-test"`) ||
		!strings.Contains(out, `"fwversion": "1.2.3"`) || !strings.Contains(out, "verified the bundle's signature") {
		t.Fatalf("dry run: %d\n%s\n%s", code, out, errOut)
	}
	code, _, errOut = run(t, "job", "create", "--local", o.data, "--image", bundle, "--keyring", filepath.Join("..", "..", "raucb", "testdata", "ec.pem"), "--thing", "gw-r")
	if code != exitFailure || !strings.Contains(errOut, "not trusted by the keyring") || !strings.Contains(errOut, "rauc resign") {
		t.Fatalf("foreign keyring: %d %s", code, errOut)
	}
	// Published: the MCUboot device declines the job for a RAUC system.
	id := o.createJob("--image", bundle, "--keyring", keyring, "--thing", "gw-r")
	x := waitExecution(t, o, id, "gw-r", o.outs["gw-r"])
	if x.Status != iotjobs.StatusRejected || x.StatusDetails["reason"] != "unsupported_operation" {
		t.Fatalf("MCUboot device: %s %v", x.Status, x.StatusDetails)
	}
}

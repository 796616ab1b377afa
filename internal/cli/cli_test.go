package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/mcuboot"
	"github.com/awsfota/awsfota/sim"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(cloudProcessEnv); dir != "" {
		os.Exit(cloudProcess(dir))
	}
	goleak.VerifyTestMain(m)
}

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := execute(testEnv(context.Background(), &out, &errb), args)
	return code, out.String(), errb.String()
}

// testEnv is the env of the commands tests run: the local cloud is started
// before the commands that use it, so one that does not answer is reported
// after a short wait, not Run's five seconds.
func testEnv(ctx context.Context, out, errOut io.Writer) *env {
	return &env{ctx: ctx, out: out, errOut: errOut, localWait: 300 * time.Millisecond}
}

// TestDemo runs `awsfota demo` in-process, then opens what it left behind —
// the cloud's database and the devices' flash — and checks the outcome
// independently of the demo's own verdict.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := run(t, "demo", "--devices", "2", "--data", dir, "--link-rate", "0")
	if code != 0 {
		t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"local cloud:", "provisioned 2 simulated devices running 1.0.0", "DEVICE", "demo-device-2", "all 2 devices updated"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The app update's delta is printed beside the full image: 1 KiB of
	// new code in the middle and 128 KiB at the end (the image grows from
	// 128 to 256 KiB) make a patch about half the image.
	var patch, full int
	var pct string
	if i := strings.Index(out, "as a delta from 1.0.0"); i < 0 {
		t.Errorf("output lacks the app delta's size:\n%s", out)
	} else if _, err := fmt.Sscanf(out[i:], "as a delta from 1.0.0 (awsfota delta create) the app update would be %d bytes, %s of the full image's %d", &patch, &pct, &full); err != nil || patch <= 0 || patch > full*6/10 {
		t.Errorf("app delta %d bytes of %d (%v):\n%s", patch, full, err, out)
	}

	cloud, err := emu.Start(emu.Config{DataDir: filepath.Join(dir, "cloud"), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	jobs, err := cloud.Jobs.ListJobs()
	if err != nil || len(jobs) != 2 {
		t.Fatalf("jobs %+v %v", jobs, err)
	}
	// The first job updates the application of every device; the second,
	// demo-device-1's modem, by a delta.
	mx, err := cloud.Jobs.DescribeExecution(jobs[1].ID, "demo-device-1")
	if err != nil || mx.Status != iotjobs.StatusSucceeded || mx.StatusDetails["fwversion"] != modemTo || mx.StatusDetails["component"] != "modem" {
		t.Fatalf("modem execution %+v %v", mx, err)
	}
	m, err := sim.OpenModem(filepath.Join(dir, "devices", "demo-device-1", "modem"), "")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := m.Version(); err != nil || v != modemTo {
		t.Fatalf("modem runs %q %v", v, err)
	}
	execs, err := cloud.Jobs.ListExecutionsForJob(jobs[0].ID)
	if err != nil || len(execs) != 2 {
		t.Fatalf("executions %+v %v", execs, err)
	}
	obj, info, err := cloud.Objects.Open("awsfota-demo", "app-1.0.1.bin")
	if err != nil {
		t.Fatal(err)
	}
	obj.Close()
	// The images are signed with the demo's key, which the devices trust.
	pub, err := os.ReadFile(filepath.Join(dir, demoKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	demoKey, err := mcuboot.ParsePublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range execs {
		if x.Status != iotjobs.StatusSucceeded || x.StatusDetails["fwversion"] != "1.0.1" || x.VersionNumber < 4 {
			t.Errorf("%s: %s %v version %d", x.Thing, x.Status, x.StatusDetails, x.VersionNumber)
		}
		d, err := sim.OpenDevice(sim.DeviceConfig{Dir: filepath.Join(dir, "devices", x.Thing), Thing: x.Thing,
			Keys: []*mcuboot.PublicKey{demoKey}})
		if err != nil {
			t.Fatal(err)
		}
		slot, err := d.SlotImage(info.Size)
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(slot) != info.SHA256 {
			t.Errorf("%s: primary slot differs from the uploaded image", x.Thing)
		}
		if v, err := mcuboot.Verify(bytes.NewReader(slot), int64(len(slot)), []*mcuboot.PublicKey{demoKey}); err != nil || !v.Key.Equal(demoKey) {
			t.Errorf("%s: the primary slot's image does not verify with the demo key: %v", x.Thing, err)
		}
		if _, err := d.Boot(); err != nil {
			t.Fatal(err)
		}
		if run, err := d.Running(); err != nil || run.Version != "1.0.1" || !run.Confirmed {
			t.Errorf("%s: runs %+v %v after a further reboot", x.Thing, run, err)
		}
		d.Close()
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "--devices", "0"},
		{"demo", "--image-size", "99999999"},
		{"demo", "--link-rate", "-1"},
		{"demo", "--bogus"},
		{"demo", "extra"},
	} {
		code, _, errOut := run(t, args...)
		if code != exitUsage || !strings.Contains(errOut, "awsfota:") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	if code, out, _ := run(t, "version"); code != 0 || !strings.HasPrefix(out, "awsfota ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, out, _ := run(t, "--help"); code != 0 || !strings.Contains(out, "demo") {
		t.Errorf("help: %d %q", code, out)
	}
}

// A mistyped or missing subcommand is a usage error that says what was
// meant, never the help with exit 0; messages do not repeat "awsfota".
func TestUnknownSubcommands(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"job", "creat"}, `unknown command "creat" for job: did you mean create?`},
		{[]string{"job"}, "job needs a command: cancel, create, describe, list, watch"},
		{[]string{"image", "verfy", "x.bin"}, `unknown command "verfy" for image: did you mean verify?`},
		{[]string{"cloud", "srve"}, `did you mean serve?`},
		{[]string{"demoo"}, `unknown command "demoo" for awsfota: did you mean demo?`},
		{[]string{"thing", "nonsense"}, `unknown command "nonsense" for thing: use create`},
		{[]string{"image", "verify", "a.bin", "b.bin"}, "awsfota: image verify takes one FILE, got 2 arguments\n"},
		{[]string{"job", "watch"}, "awsfota: job watch takes one JOB-ID, got 0 arguments\n"},
		{[]string{"fetch", "u1", "u2", "-o", "x"}, "fetch takes one URL, got 2 arguments"},
	} {
		code, out, errOut := run(t, c.args...)
		if code != exitUsage || !strings.Contains(errOut, c.want) || strings.Contains(errOut, "awsfota: awsfota") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", c.args, code, out, errOut, c.want)
		}
	}
}

// Counts read as English: "1 record", "2 records".
func TestPlural(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "a.bin")
	os.WriteFile(img, bytes.Repeat([]byte("firmware image "), 1000), 0o644)
	code, out, errOut := run(t, "delta", "create", img, img, "-o", filepath.Join(dir, "p"))
	if code != 0 || !strings.Contains(out, "; 1 record: ") {
		t.Fatalf("delta create of an image against itself: exit %d %q %q", code, out, errOut)
	}
	if plural(0, "argument") != "arguments" || plural(1, "argument") != "argument" || plural(2, "argument") != "arguments" {
		t.Fatal("plural")
	}
}

package cli

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/awsfota/awsfota/cloud/emu"
)

// cloudProcessEnv makes the test binary, run again, serve a local cloud
// (`awsfota cloud serve`) in the data directory it names until its stdin
// closes: the cloud in a process of its own, as `sim fleet` expects it.
const cloudProcessEnv = "AWSFOTA_TEST_CLOUD_PROCESS"

func cloudProcess(dir string) int {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		bufio.NewReader(os.Stdin).ReadByte()
		cancel()
	}()
	return Run(ctx, []string{"cloud", "serve", "--data", dir, "--mqtt-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, os.Stdout, os.Stderr)
}

// startCloudProcess runs the cloud in another process and returns its
// endpoints once it serves; it stops with the test.
func startCloudProcess(t *testing.T, dir string) emu.Endpoints {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run", "^$")
	cmd.Env = append(os.Environ(), cloudProcessEnv+"="+dir)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("the cloud process: %v\n%s", err, logs.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Error("the cloud process did not stop when its stdin closed")
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if ep, err := emu.ReadEndpoints(dir); err == nil {
			return ep
		}
		select {
		case err := <-done:
			t.Fatalf("the cloud process exited: %v\n%s", err, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cloud process wrote no endpoints.json\n%s", logs.String())
		}
	}
}

// field returns the value of a row of sim fleet's table.
func field(t *testing.T, table, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\s+(.*)$`).FindStringSubmatch(table)
	if m == nil {
		t.Fatalf("no %q row in the table:\n%s", name, table)
	}
	return m[1]
}

// TestSimFleet runs `awsfota sim fleet` against a cloud in another process
// over loopback: it provisions the fleet through the IoT API, connects every
// device, creates the job, and every device updates — but the share told to
// fail its self-test, which rolls back and reports FAILED — and the table
// says so, with the cloud's memory read from its process. A second run
// reuses the things and leaves the offline share out.
func TestSimFleet(t *testing.T) {
	n := 200
	if raceEnabled || testing.Short() {
		n = 40
	}
	dir := t.TempDir()
	ep := startCloudProcess(t, dir)
	if ep.PID == 0 || ep.PID == os.Getpid() {
		t.Fatalf("endpoints.json gives pid %d; want the cloud process's", ep.PID)
	}
	code, out, errOut := run(t, "sim", "fleet", "--local", dir, "--devices", strconv.Itoa(n), "--job", "--fail-percent", "10", "--image-size", "65536")
	if code != 0 {
		t.Fatalf("sim fleet exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{fmt.Sprintf("provisioned %d things", n), fmt.Sprintf("%d devices connected", n), "created job sim-fleet-"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	failing := n / 10
	if got := field(t, out, "succeeded"); got != strconv.Itoa(n-failing) {
		t.Errorf("succeeded %s, want %d\n%s", got, n-failing, out)
	}
	if got := field(t, out, "failed"); !strings.HasPrefix(got, strconv.Itoa(failing)+" (") || !strings.Contains(got, "rolled_back") && !strings.Contains(got, "self_test") {
		t.Errorf("failed %q, want %d with their reason\n%s", got, failing, out)
	}
	if got := field(t, out, "job"); !strings.HasSuffix(got, "completed") {
		t.Errorf("job %q, want completed", got)
	}
	if upm, err := strconv.Atoi(field(t, out, "updates per minute")); err != nil || upm <= 0 {
		t.Errorf("updates per minute %q", field(t, out, "updates per minute"))
	}
	if got := field(t, out, "time to SUCCEEDED"); !regexp.MustCompile(`^p50 [0-9.]+ s  p90 [0-9.]+ s  p99 [0-9.]+ s$`).MatchString(got) {
		t.Errorf("time to SUCCEEDED %q", got)
	}
	// Every device that got the job downloaded the whole image, the
	// failing ones too (they fail after booting it).
	if served, _ := strconv.ParseInt(field(t, out, "bytes served"), 10, 64); served < int64(n)*65536 {
		t.Errorf("bytes served %d, want at least %d", served, n*65536)
	}
	if got := field(t, out, "cloud peak RSS"); !strings.Contains(got, fmt.Sprintf("(pid %d, VmHWM)", ep.PID)) {
		t.Errorf("cloud peak RSS %q: not the cloud process's", got)
	}

	// Again: the things are reused; a tenth stays offline.
	code, out, errOut = run(t, "sim", "fleet", "--local", dir, "--devices", strconv.Itoa(n), "--job", "--offline-percent", "10", "--image-size", "65536", "--timeout", "20s", "--settle", "200ms")
	if strings.Contains(errOut, "provisioned") {
		t.Errorf("the second run provisioned things again:\n%s", errOut)
	}
	if got := field(t, out, "devices"); got != fmt.Sprintf("%d (%d offline)", n, n/10) {
		t.Errorf("devices %q, want %d (%d offline)", got, n, n/10)
	}
	// --settle measures the cloud's memory again once the fleet has been
	// idle that long.
	if got := field(t, out, "cloud RSS settled"); !regexp.MustCompile(`^[0-9]+ MiB, -?[0-9.]+ KiB per device after 200ms connected and idle$`).MatchString(got) {
		t.Errorf("cloud RSS settled %q", got)
	}
	if got := field(t, out, "succeeded"); got != strconv.Itoa(n-n/10) {
		t.Errorf("second run: succeeded %s, want %d (exit %d)\n%s\n%s", got, n-n/10, code, out, errOut)
	}
}

// TestFileLimitWarnings: a fleet larger than the processes' file limits is
// told so before it starts, naming the process and the limit to set.
func TestFileLimitWarnings(t *testing.T) {
	lim := openFiles(0)
	if lim < 0 {
		t.Fatal("cannot read this process's open-file limit from /proc/self/limits")
	}
	if w := fileLimitWarnings(1, 0, os.Getpid()); len(w) != 0 {
		t.Fatalf("one device warned: %q", w)
	}
	n := int(lim) // needs 2n+512 files
	if w := fileLimitWarnings(n/2, 100, os.Getpid()); len(w) != 0 {
		t.Fatalf("%d devices, 100 downloading at once, limit %d: warned %q", n/2, lim, w)
	}
	w := fileLimitWarnings(n, 0, os.Getpid())
	if len(w) != 2 {
		t.Fatalf("%d devices, limit %d: want a warning for each process, got %q", n, lim, w)
	}
	for _, s := range w {
		if !strings.Contains(s, fmt.Sprintf("at most %d files", lim)) || !strings.Contains(s, "ulimit -n") {
			t.Errorf("warning %q does not say the limit and how to raise it", s)
		}
	}
}

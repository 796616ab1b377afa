//go:build linux

package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// openPTY returns the two ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminal: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatal(e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatal(e)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

// Long commands draw their progress on a terminal, and nothing in a pipe.
func TestProgressOnATerminalOnly(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "app.bin")
	if err := os.WriteFile(in, bytes.Repeat([]byte("firmware"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "app-1.0.1.bin")

	master, slave := openPTY(t)
	drawn := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(master) // until the slave is closed (EIO)
		drawn <- string(b)
	}()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, in) }))
	defer srv.Close()
	o := newOperatorEnv(t)
	if _, err := o.cloud.Registry.CreateThing("p-1", nil); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	e := &env{ctx: context.Background(), out: &out, errOut: slave, localWait: time.Second}
	for _, args := range [][]string{
		{"image", "create", "--version", "1.0.1", "--pad-header", in, img},
		{"image", "verify", img},
		{"image", "info", img},
		{"fetch", srv.URL + "/app.bin", "-o", filepath.Join(dir, "fetched.bin")},
	} {
		if code := execute(e, args); code != 0 {
			t.Fatalf("%v: exit %d", args, code)
		}
	}
	// job create: its progress on the terminal, and nothing but the job id
	// on stdout, which scripts capture with $(...).
	var id bytes.Buffer
	if code := execute(&env{ctx: context.Background(), out: &id, errOut: slave, localWait: time.Second},
		[]string{"job", "create", "--local", o.data, "--image", img, "--thing", "p-1", "--job-id", "progress-job"}); code != 0 || id.String() != "progress-job\n" {
		t.Fatalf("job create: exit %d, stdout %q", code, id.String())
	}
	slave.Close()
	got := <-drawn
	master.Close()
	for _, want := range []string{"making app-1.0.1.bin", "verifying app-1.0.1.bin", "hashing app-1.0.1.bin", "8.4/8.4 MB", "fetched.bin",
		"reading app-1.0.1.bin", "uploading app-1.0.1.bin"} {
		if !strings.Contains(got, want) {
			t.Errorf("the terminal shows no %q:\n%q", want, got)
		}
	}
	if strings.Contains(out.String(), "making") {
		t.Errorf("progress went to stdout: %q", out.String())
	}

	// In a pipe: the results, and not a byte of progress.
	var errOut bytes.Buffer
	e = &env{ctx: context.Background(), out: &out, errOut: &errOut}
	for _, args := range [][]string{{"image", "verify", img}, {"image", "info", img}} {
		if code := execute(e, args); code != 0 || errOut.Len() != 0 {
			t.Fatalf("%v in a pipe: exit %d, stderr %q", args, code, errOut.String())
		}
	}
}

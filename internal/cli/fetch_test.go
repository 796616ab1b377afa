package cli

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestFetch(t *testing.T) {
	body := make([]byte, 300_000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range body {
		body[i] = byte(r.Uint32())
	}
	var ranged atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			ranged.Add(1)
		}
		w.Header().Set("ETag", `"e1"`)
		http.ServeContent(w, r, "f.bin", time.Time{}, bytes.NewReader(body))
	}))
	defer srv.Close()
	defer srv.CloseClientConnections()
	dir := t.TempDir()
	out := filepath.Join(dir, "f.bin")

	code, stdout, errOut := run(t, "fetch", srv.URL+"/f.bin", "-o", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, body) || !strings.Contains(stdout, "300000 bytes") {
		t.Fatalf("fetched %d bytes; output %q", len(got), stdout)
	}
	if _, err := os.Stat(out + ".part"); !os.IsNotExist(err) {
		t.Fatal("FILE.part left behind")
	}

	// An interrupted download resumes with Range from FILE.part.
	os.Remove(out)
	os.WriteFile(out+".part", body[:100_000], 0o644)
	os.WriteFile(out+".part.json", []byte(`{"url":"`+srv.URL+`/f.bin","etag":"\"e1\""}`), 0o644)
	code, stdout, errOut = run(t, "fetch", srv.URL+"/f.bin", "-o", out)
	if code != 0 || !strings.Contains(errOut, "resuming at 100000 bytes") || ranged.Load() != 1 {
		t.Fatalf("exit %d, ranged %d, stderr %q", code, ranged.Load(), errOut)
	}
	got, _ = os.ReadFile(out)
	if !bytes.Equal(got, body) || !strings.Contains(stdout, "200000 bytes over the network") {
		t.Fatalf("resumed result %d bytes; %q", len(got), stdout)
	}

	// A missing object: a clear error, exit 1.
	nf := httptest.NewServer(http.NotFoundHandler())
	defer nf.Close()
	code, _, errOut = run(t, "fetch", nf.URL+"/fw.bin", "-o", filepath.Join(dir, "x"))
	if code != exitFailure || !strings.Contains(errOut, "404") {
		t.Fatalf("404: exit %d %q", code, errOut)
	}
	if code, _, _ := run(t, "fetch", srv.URL); code != exitUsage {
		t.Fatalf("no -o: exit %d", code)
	}
}

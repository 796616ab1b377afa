package emu

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestMount: a mounted handler gets the unsigned requests under its prefix;
// signed requests (a presigned URL of a bucket of the same name) still reach
// the object store, and other paths are untouched.
func TestMount(t *testing.T) {
	c := start(t, t.TempDir())
	defer c.Close()
	c.Mount("/console/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "console at "+r.URL.Path)
	}))
	if err := c.Objects.CreateBucket("console"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Objects.Put(context.Background(), "console", "obj", bytes.NewReader([]byte("object bytes"))); err != nil {
		t.Fatal(err)
	}
	ep := c.Endpoints()
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(ep.HTTP + "/console/jobs"); code != 200 || body != "console at /console/jobs" {
		t.Fatalf("GET /console/jobs: %d %q", code, body)
	}
	presigned, err := c.Objects.Presign(ep.HTTP, "console", "obj", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := get(presigned); code != 200 || body != "object bytes" {
		t.Fatalf("presigned GET of console/obj: %d %q", code, body)
	}
	if code, _ := get(ep.HTTP + "/other/obj"); code != http.StatusNotFound && code != http.StatusForbidden {
		t.Fatalf("GET /other/obj went elsewhere than the object store: %d", code)
	}
	if c.Connected("nobody") {
		t.Fatal("an unknown thing is connected")
	}
}

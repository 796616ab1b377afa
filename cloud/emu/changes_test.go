package emu

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/iotjobs"
)

// TestWatchChanges follows the Jobs service from "another process" (over
// the HTTP port), and sees the stream end when the cloud closes.
func TestWatchChanges(t *testing.T) {
	c := start(t, t.TempDir())
	closed := false
	defer func() {
		if !closed {
			c.Close()
		}
	}()
	ep := c.Endpoints()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := WatchChanges(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Jobs.CreateJob(jobsvc.JobSpec{JobID: "j1", Things: []string{"dev-1"}, Document: []byte(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	c.Jobs.HandleDevice("dev-1", "dev-1", iotjobs.UpdateTopic("dev-1", "j1").String(), []byte(`{"status":"IN_PROGRESS","statusDetails":{"progress":"7"}}`))
	var got []jobsvc.Change
	for len(got) < 4 {
		select {
		case x, ok := <-ch:
			if !ok {
				t.Fatalf("the stream ended after %+v", got)
			}
			got = append(got, x)
		case <-ctx.Done():
			t.Fatalf("only %+v", got)
		}
	}
	if got[0].Thing != "dev-1" || got[0].Execution.Status != iotjobs.StatusQueued || got[1].JobID != "j1" || got[1].Thing != "" ||
		got[2].Execution == nil || got[2].Execution.StatusDetails["progress"] != "7" || got[2].Execution.VersionNumber != 2 {
		t.Fatalf("changes %+v", got)
	}
	if things, err := ConnectedThings(ctx, ep); err != nil || len(things) != 0 {
		t.Fatalf("connected things: %v %v", things, err)
	}
	// Unsigned, or signed with another key: refused.
	resp, err := http.Get(ep.HTTP + ChangesPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unsigned: %d", resp.StatusCode)
	}
	bad := ep
	bad.SecretAccessKey = "wrong"
	if _, err := WatchChanges(ctx, bad); err == nil {
		t.Fatal("a wrong key was accepted")
	}
	// Close ends the stream at once rather than waiting for it.
	begin := time.Now()
	closed = true
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for range ch {
	}
	if d := time.Since(begin); d > 4*time.Second {
		t.Fatalf("Close took %v with a stream open", d)
	}
}

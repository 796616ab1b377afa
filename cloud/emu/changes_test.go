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
	for len(got) < 3 {
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
	var execs []*jobsvc.Execution
	for i, x := range got {
		if x.Seq == 0 || i > 0 && x.Seq != got[i-1].Seq+1 {
			t.Fatalf("change %d is numbered %d after %d", i, x.Seq, got[max(i-1, 0)].Seq)
		}
		if x.Kind == jobsvc.ChangeJob && (x.Job == nil || x.Job.ID != "j1") {
			t.Fatalf("job change %+v", x)
		}
		if x.Kind == jobsvc.ChangeExecution {
			execs = append(execs, x.Execution)
		}
	}
	if len(execs) < 2 || execs[0].Thing != "dev-1" || execs[0].Status != iotjobs.StatusQueued ||
		execs[1].StatusDetails["progress"] != "7" || execs[1].VersionNumber != 2 {
		t.Fatalf("execution changes %+v", execs)
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

// TestWatchChangesHTTPS: the same over the HTTPS port, trusting the local CA.
func TestWatchChangesHTTPS(t *testing.T) {
	c, err := Start(Config{DataDir: t.TempDir(), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true, HTTPS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := WatchChanges(ctx, c.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Jobs.CreateJob(jobsvc.JobSpec{JobID: "j1", Things: []string{"dev-1"}, Document: []byte(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	if x := <-ch; x.Kind != jobsvc.ChangeJob || x.Job.ID != "j1" {
		t.Fatalf("%+v", x)
	}
	if things, err := ConnectedThings(ctx, c.Endpoints()); err != nil || len(things) != 0 {
		t.Fatalf("%v %v", things, err)
	}
}

package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/jobdoc"
)

// TestEndToEnd runs the whole product on loopback: the local cloud (broker on
// mutual TLS, Jobs service, object store) and simulated devices running the
// device library, and checks what a user would check afterwards.
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	cloud, err := emu.Start(emu.Config{DataDir: filepath.Join(dir, "cloud"), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	ep := cloud.Endpoints()

	oldImg, err := AppImage("1.0.0", 150_000)
	if err != nil {
		t.Fatal(err)
	}
	newImg, err := AppImage("1.0.1", 200_001)
	if err != nil {
		t.Fatal(err)
	}
	if err := cloud.Objects.CreateBucket("firmware"); err != nil {
		t.Fatal(err)
	}
	if err := cloud.Objects.SetPublicRead("firmware", true); err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.Objects.Put(context.Background(), "firmware", "app-1.0.1.bin", bytes.NewReader(newImg)); err != nil {
		t.Fatal(err)
	}

	things := []string{"dev-1", "dev-2"}
	devices := map[string]*Device{}
	for _, th := range things {
		creds, err := cloud.ProvisionThing(th)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(creds.CertPEM, creds.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		d, err := OpenDevice(DeviceConfig{
			Dir: filepath.Join(dir, th), Thing: th, Endpoint: ep.MQTT, Certificate: cert, RootCAs: cloud.CA.Pool(),
			ServerName: "localhost", CheckpointBytes: 16 << 10,
			// No progress reports, so that the number of updates (and so the
			// final versionNumber) is fixed: start, ready, succeeded.
			Agent: agent.Config{ProgressPercent: 1000, ProgressInterval: time.Hour},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if err := d.Install(oldImg); err != nil {
			t.Fatal(err)
		}
		devices[th] = d
	}

	sum := sha256.Sum256(newImg)
	doc, err := jobdoc.Marshal(jobdoc.Spec{FWVersion: "1.0.1", Size: int64(len(newImg)), SHA256: sum[:],
		URL: ep.HTTP + "/firmware/app-1.0.1.bin", SeedLocation: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.Jobs.CreateJob(jobsvc.JobSpec{JobID: "fw-101", Things: things, Document: doc}); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, len(devices))
	for _, d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Run(ctx); !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: %w", d.Thing(), err)
			}
		}()
	}
	// Poll the cloud until every execution is terminal.
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		execs, err := cloud.Jobs.ListExecutionsForJob("fw-101")
		if err != nil {
			t.Fatal(err)
		}
		done := 0
		for _, e := range execs {
			if e.Status.Terminal() {
				done++
			}
		}
		if done == len(things) {
			break
		}
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("executions not terminal in time: %+v", execs)
		}
		<-tick.C
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	for _, th := range things {
		d := devices[th]
		e, err := cloud.Jobs.DescribeExecution("fw-101", th)
		if err != nil {
			t.Fatal(err)
		}
		if e.Status != iotjobs.StatusSucceeded || e.StatusDetails["fwversion"] != "1.0.1" || e.StatusDetails["from"] != "1.0.0" {
			t.Errorf("%s: execution %s %v", th, e.Status, e.StatusDetails)
		}
		if e.VersionNumber != 4 {
			t.Errorf("%s: versionNumber %d, want 4 (queued, started, ready to reboot, succeeded)", th, e.VersionNumber)
		}
		if d.Reboots() != 1 {
			t.Errorf("%s: %d reboots, want 1", th, d.Reboots())
		}
		slot, err := d.SlotImage(int64(len(newImg)))
		if err != nil {
			t.Fatal(err)
		}
		if got := sha256.Sum256(slot); got != sum {
			t.Errorf("%s: primary slot holds %x, want %x", th, got[:8], sum[:8])
		}
		// Power-cycle once more: a confirmed image stays.
		if _, err := d.Boot(); err != nil {
			t.Fatal(err)
		}
		run, err := d.Running()
		if err != nil {
			t.Fatal(err)
		}
		if run.Version != "1.0.1" || !run.Confirmed {
			t.Errorf("%s: runs %s (confirmed %v) after a further reboot", th, run.Version, run.Confirmed)
		}
	}
	if j, _ := cloud.Jobs.DescribeJob("fw-101"); j.Status != "COMPLETED" {
		t.Errorf("job %s", j.Status)
	}
}

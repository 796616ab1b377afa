package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"path/filepath"
	"testing"
	"time"

	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/jobdoc"
)

const testBucket = "firmware"

// testCloud starts a local cloud on free loopback ports with a public bucket.
func testCloud(t *testing.T) *emu.Cloud {
	t.Helper()
	c, err := emu.Start(emu.Config{DataDir: filepath.Join(t.TempDir(), "cloud"), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Objects.CreateBucket(testBucket); err != nil {
		t.Fatal(err)
	}
	if err := c.Objects.SetPublicRead(testBucket, true); err != nil {
		t.Fatal(err)
	}
	return c
}

// deviceFor provisions thing on c and opens a factory-fresh device in dir.
func deviceFor(t *testing.T, c *emu.Cloud, dir, thing string, factory []byte, tune func(*DeviceConfig)) *Device {
	t.Helper()
	return openDevice(t, deviceConfig(t, c, dir, thing, tune), factory)
}

// deviceConfig provisions thing on c and returns its device's configuration.
func deviceConfig(t *testing.T, c *emu.Cloud, dir, thing string, tune func(*DeviceConfig)) DeviceConfig {
	t.Helper()
	creds, err := c.ProvisionThing(thing)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(creds.CertPEM, creds.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DeviceConfig{Dir: dir, Thing: thing, Endpoint: c.Endpoints().MQTT, Certificate: cert, RootCAs: c.CA.Pool(),
		ServerName: "localhost", CheckpointBytes: 16 << 10}
	if tune != nil {
		tune(&cfg)
	}
	return cfg
}

// openDevice opens the device cfg describes; a factory image, when given, is
// installed.
func openDevice(t *testing.T, cfg DeviceConfig, factory []byte) *Device {
	t.Helper()
	d, err := OpenDevice(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if factory != nil {
		if err := d.Install(factory); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// publish uploads img and creates a job for things whose document points at
// baseURL (the object store, or a proxy in front of it).
func publish(t *testing.T, c *emu.Cloud, jobID, key, baseURL string, img []byte, version string, things ...string) {
	t.Helper()
	if _, err := c.Objects.Put(context.Background(), testBucket, key, bytes.NewReader(img)); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(img)
	doc, err := jobdoc.Marshal(jobdoc.Spec{FWVersion: version, Size: int64(len(img)), SHA256: sum[:],
		URL: baseURL + "/" + testBucket + "/" + key, SeedLocation: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Jobs.CreateJob(jobsvc.JobSpec{JobID: jobID, Things: things, Document: doc}); err != nil {
		t.Fatal(err)
	}
}

// untilTerminal polls the cloud (with a deadline) until the execution of
// job on every thing is terminal, or a device stops with an error.
func untilTerminal(t *testing.T, c *emu.Cloud, job string, deviceErr <-chan error, things ...string) []jobsvc.Execution {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var out []jobsvc.Execution
		for _, th := range things {
			e, err := c.Jobs.DescribeExecution(job, th)
			if err != nil {
				t.Fatal(err)
			}
			if e.Status.Terminal() {
				out = append(out, e)
			}
		}
		if len(out) == len(things) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not terminal on %v in time", job, things)
		}
		select {
		case err := <-deviceErr:
			t.Fatalf("a device stopped: %v", err)
		case <-tick.C:
		}
	}
}

// runDevice runs d in the background until the returned stop is called; stop
// returns what Run returned.
func runDevice(d *Device) (stop func() error, errs <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	early := make(chan error, 1)
	go func() {
		err := d.Run(ctx)
		if ctx.Err() == nil {
			early <- err
		}
		done <- err
	}()
	return func() error { cancel(); return <-done }, early
}

package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/delta"
	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/internal/faultproxy"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/jobdoc"
)

func makePatch(t *testing.T, old, next []byte) []byte {
	t.Helper()
	var p bytes.Buffer
	if _, err := delta.Create(&p, bytes.NewReader(old), int64(len(old)), bytes.NewReader(next)); err != nil {
		t.Fatal(err)
	}
	return p.Bytes()
}

// publishDoc uploads body and creates a job with the document spec
// describes (its size and SHA-256 filled in).
func publishDoc(t *testing.T, c *emu.Cloud, job, key string, body []byte, spec jobdoc.Spec, things ...string) {
	t.Helper()
	if _, err := c.Objects.Put(context.Background(), testBucket, key, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	spec.SHA256, spec.Size = sum[:], int64(len(body))
	if spec.URL == "" {
		spec.URL = c.Endpoints().HTTP + "/" + testBucket + "/" + key
	}
	doc, err := jobdoc.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Jobs.CreateJob(jobsvc.JobSpec{JobID: job, Things: things, Document: doc}); err != nil {
		t.Fatal(err)
	}
}

func TestApplicationDelta(t *testing.T) {
	c := testCloud(t)
	old, _ := AppImage("1.0.0", 120_000)
	// 1.0.1 is 1.0.0 with a few bytes changed: a small patch.
	body := bytes.Clone(old[0x200 : len(old)-40])
	copy(body[5000:], []byte("a patch changes a few bytes here"))
	next, err := AppImageFromBody("1.0.1", body, nil)
	if err != nil {
		t.Fatal(err)
	}
	patch := makePatch(t, old, next)
	if len(patch) > len(next)/10 {
		t.Fatalf("patch of %d bytes for a %d-byte image", len(patch), len(next))
	}
	baseSum := sha256.Sum256(old)

	for _, withBase := range []bool{true, false} {
		name := map[bool]string{true: "document names the base", false: "seed document, type from the first bytes"}[withBase]
		t.Run(name, func(t *testing.T) {
			th := "delta-" + map[bool]string{true: "a", false: "b"}[withBase]
			d := deviceFor(t, c, filepath.Join(t.TempDir(), th), th, old, nil)
			spec := jobdoc.Spec{FWVersion: "1.0.1", SeedLocation: !withBase}
			if withBase {
				spec.Base = &jobdoc.Base{SHA256: baseSum[:], Size: int64(len(old)), FWVersion: "1.0.0"}
			}
			publishDoc(t, c, th+"-job", th+".patch", patch, spec, th)
			stop, errs := runDevice(d)
			x := untilTerminal(t, c, th+"-job", errs, th)[0]
			stop()
			if x.Status != iotjobs.StatusSucceeded || x.StatusDetails["fwversion"] != "1.0.1" {
				t.Fatalf("execution %s %v", x.Status, x.StatusDetails)
			}
			slot, _ := d.SlotImage(int64(len(next)))
			if !bytes.Equal(slot, next) {
				t.Fatal("the primary slot does not hold the patched image")
			}
		})
	}
}

func TestDeltaForAnotherBaseFetchesNothing(t *testing.T) {
	c := testCloud(t)
	ep := c.Endpoints()
	proxy, err := faultproxy.New(strings.TrimPrefix(ep.HTTP, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	running, _ := AppImage("1.0.0", 50_000)
	other, _ := AppImage("0.9.0", 50_000)
	next, _ := AppImage("1.0.1", 50_000)
	patch := makePatch(t, other, next)
	sum := sha256.Sum256(other)
	d := deviceFor(t, c, filepath.Join(t.TempDir(), "dm"), "dm", running, nil)
	publishDoc(t, c, "dm-job", "dm.patch", patch, jobdoc.Spec{URL: "http://" + proxy.Addr() + "/" + testBucket + "/dm.patch",
		Base: &jobdoc.Base{SHA256: sum[:], Size: int64(len(other))}}, "dm")
	stop, errs := runDevice(d)
	x := untilTerminal(t, c, "dm-job", errs, "dm")[0]
	stop()
	if x.Status != iotjobs.StatusFailed || x.StatusDetails["reason"] != agent.ReasonBaseMismatch {
		t.Fatalf("execution %s %v", x.Status, x.StatusDetails)
	}
	if st := proxy.Stats(); st.Accepted != 0 {
		t.Fatalf("the device connected %d times to fetch a patch it cannot apply", st.Accepted)
	}
	if run, _ := d.Running(); run.Version != "1.0.0" {
		t.Fatal(run.Version)
	}
}

func TestModemUpdates(t *testing.T) {
	c := testCloud(t)
	oldFw := ModemImage("mfw_nrf9160_1.3.1", 200_000)
	newFw := ModemImage("mfw_nrf9160_1.3.2", 200_000)
	fwPatch := makePatch(t, oldFw, newFw)
	app, _ := AppImage("1.0.0", 20_000)
	var mu sync.Mutex
	var kinds []agent.AppEventKind
	d := deviceFor(t, c, filepath.Join(t.TempDir(), "mod"), "mod", app, func(cfg *DeviceConfig) {
		cfg.ModemVersion = "mfw_nrf9160_1.3.1"
		cfg.OnEvent = func(e agent.AppEvent) { mu.Lock(); kinds = append(kinds, e.Kind); mu.Unlock() }
	})
	sum := sha256.Sum256(oldFw)
	publishDoc(t, c, "modem-delta", "mfw.patch", fwPatch, jobdoc.Spec{Component: jobdoc.ComponentModem, FWVersion: "mfw_nrf9160_1.3.2",
		Base: &jobdoc.Base{SHA256: sum[:], Size: int64(len(oldFw))}}, "mod")
	stop, errs := runDevice(d)
	x := untilTerminal(t, c, "modem-delta", errs, "mod")[0]
	if x.Status != iotjobs.StatusSucceeded || x.StatusDetails["fwversion"] != "mfw_nrf9160_1.3.2" || x.StatusDetails["from"] != "mfw_nrf9160_1.3.1" {
		t.Fatalf("modem delta: %s %v", x.Status, x.StatusDetails)
	}
	if v, _ := d.ModemVersion(); v != "mfw_nrf9160_1.3.2" {
		t.Fatalf("modem runs %s", v)
	}
	if run, _ := d.Running(); run.Version != "1.0.0" {
		t.Fatalf("the application changed: %s", run.Version)
	}
	mu.Lock()
	seen := map[agent.AppEventKind]bool{}
	for _, k := range kinds {
		seen[k] = true
	}
	mu.Unlock()
	if !seen[agent.EventErasePending] || !seen[agent.EventEraseDone] {
		t.Fatalf("no erase events: %v", kinds)
	}

	// A full modem image next; then one that does not claim the version it
	// installs fails truthfully.
	full := ModemImage("mfw_nrf9160_1.3.3", 150_000)
	publishDoc(t, c, "modem-full", "mfw-full.bin", full, jobdoc.Spec{Component: jobdoc.ComponentModem, FWVersion: "mfw_nrf9160_1.3.3"}, "mod")
	x = untilTerminal(t, c, "modem-full", errs, "mod")[0]
	if x.Status != iotjobs.StatusSucceeded {
		t.Fatalf("modem full: %s %v", x.Status, x.StatusDetails)
	}
	publishDoc(t, c, "modem-liar", "mfw-liar.bin", ModemImage("mfw_nrf9160_1.3.4", 1000),
		jobdoc.Spec{Component: jobdoc.ComponentModem, FWVersion: "mfw_nrf9160_9.9.9"}, "mod")
	x = untilTerminal(t, c, "modem-liar", errs, "mod")[0]
	stop()
	if x.Status != iotjobs.StatusFailed {
		t.Fatalf("modem with a wrong fwversion: %s %v", x.Status, x.StatusDetails)
	}
}

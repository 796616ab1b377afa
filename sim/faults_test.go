package sim

import (
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/internal/faultproxy"
	"github.com/awsfota/awsfota/iotjobs"
)

// TestUpdateThroughCuttingNetwork puts fault-injecting proxies in front of
// both the broker (MQTT over TLS) and the object store (HTTP): every HTTP
// connection is cut after 64 KiB and the MQTT connection every 200 ms. The
// update must still complete, and the bytes fetched stay under 1.1 × the
// image size plus what one cut can waste.
func TestUpdateThroughCuttingNetwork(t *testing.T) {
	c := testCloud(t)
	ep := c.Endpoints()
	httpProxy, err := faultproxy.New(strings.TrimPrefix(ep.HTTP, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer httpProxy.Close()
	mqttProxy, err := faultproxy.New(ep.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	defer mqttProxy.Close()
	const cut = 64 << 10
	httpProxy.SetFault(faultproxy.Fault{CutAfter: cut})

	oldImg, _ := AppImage("1.0.0", 50_000)
	newImg, _ := AppImage("1.0.1", 600_000)
	const checkpoint = 16 << 10
	d := deviceFor(t, c, filepath.Join(t.TempDir(), "dev"), "dev-cut", oldImg, func(cfg *DeviceConfig) {
		cfg.Endpoint = mqttProxy.Addr()
		cfg.CheckpointBytes = checkpoint
		cfg.Agent = agent.Config{ReplyTimeout: 2 * time.Second, RetryMin: 50 * time.Millisecond}
	})
	publish(t, c, "cut-1", "cut.bin", "http://"+httpProxy.Addr(), newImg, "1.0.1", "dev-cut")
	stop, errs := runDevice(d)
	// Drop the MQTT connection every 200 ms while the update runs.
	done := make(chan struct{})
	cutterDone := make(chan struct{})
	go func() {
		defer close(cutterDone)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				mqttProxy.CloseConns()
			}
		}
	}()
	execs := untilTerminal(t, c, "cut-1", errs, "dev-cut")
	close(done)
	<-cutterDone
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if execs[0].Status != iotjobs.StatusSucceeded {
		t.Fatalf("execution %s %v", execs[0].Status, execs[0].StatusDetails)
	}
	run, _ := d.Running()
	slot, _ := d.SlotImage(int64(len(newImg)))
	if run.Version != "1.0.1" || sha256.Sum256(slot) != sha256.Sum256(newImg) {
		t.Fatalf("runs %s", run.Version)
	}
	hs, ms := httpProxy.Stats(), mqttProxy.Stats()
	cuts := hs.Cuts
	limit := int64(1.1*float64(len(newImg))) + cuts*(checkpoint+2048)
	t.Logf("HTTP: %d connections, %d cuts, %d bytes down for a %d-byte image (limit %d); MQTT: %d connections, %d cuts",
		hs.Accepted, hs.Cuts, hs.BytesDown, len(newImg), limit, ms.Accepted, ms.Cuts)
	if cuts < 5 || ms.Accepted < 3 {
		t.Fatalf("the proxies cut too little to prove anything: HTTP %d cuts, MQTT %d connections", cuts, ms.Accepted)
	}
	if hs.BytesDown > limit {
		t.Fatalf("fetched %d bytes for a %d-byte image with %d cuts (limit %d)", hs.BytesDown, len(newImg), cuts, limit)
	}
}

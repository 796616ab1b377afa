//go:build fleetfaults

// The fleet-under-network-faults suite: go test -tags fleetfaults -run
// FleetFaults ./sim [-fleet-seed N]. It runs apart from the default tests
// (100 devices and a local cloud restarted by kill -9 take a minute).

package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/device/download"
	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/internal/faultproxy"
	"github.com/awsfota/awsfota/iotjobs"
)

var fleetSeed = flag.Uint64("fleet-seed", 1, "seed of TestFleetFaults' network faults and cloud kill")

// childCloudEnv, when set in the environment (to a childCloudSpec in JSON),
// makes this test binary the local cloud instead of running tests: the
// fleet test re-executes itself so that it can kill -9 its cloud.
const childCloudEnv = "AWSFOTA_SIM_CHILD_CLOUD"

type childCloudSpec struct{ Data, MQTT, HTTP string }

func init() {
	if spec := os.Getenv(childCloudEnv); spec != "" {
		os.Exit(childCloud(spec))
	}
}

// childCloud serves the local cloud on the spec's data directory and
// addresses, says "ready" on stdout, and runs until its stdin closes (the
// test's end) or it is killed.
func childCloud(spec string) int {
	var s childCloudSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, "child cloud:", err)
		return 2
	}
	c, err := emu.Start(emu.Config{DataDir: s.Data, MQTTAddr: s.MQTT, HTTPAddr: s.HTTP, NoSync: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child cloud:", err)
		return 1
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	c.Close()
	return 0
}

// cloudProcess is the local cloud running as a separate process.
type cloudProcess struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *strings.Builder
}

// startCloudProcess starts the cloud on spec and waits until it serves.
func startCloudProcess(t *testing.T, spec childCloudSpec) *cloudProcess {
	t.Helper()
	b, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childCloudEnv+"="+string(b))
	p := &cloudProcess{cmd: cmd, stderr: &strings.Builder{}}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("the cloud process said %q", line)
		}
		ready <- err
		io.Copy(io.Discard, out)
	}()
	select {
	case err := <-ready:
		if err != nil {
			p.kill()
			t.Fatalf("the cloud process did not start: %v; stderr: %s", err, p.stderr)
		}
	case <-time.After(60 * time.Second):
		p.kill()
		t.Fatalf("the cloud process did not start in time; stderr: %s", p.stderr)
	}
	return p
}

// kill ends the process with SIGKILL, as a crash would, and reaps it.
func (p *cloudProcess) kill() {
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// stop closes its stdin (it shuts down cleanly) and waits for it.
func (p *cloudProcess) stop() error {
	p.stdin.Close()
	return p.cmd.Wait()
}

// TestFleetFaults updates 100 simulated devices through fault-injecting
// proxies in front of the broker and the object store — per connection, a
// seeded choice of clean, cut with RST, cut with FIN, or stalled at a
// random byte — while the local cloud, running as a separate process, is
// killed with SIGKILL once a seeded number of devices are done (the others
// downloading, verifying, on trial or reporting) and
// restarted on the same data directory and ports. Every device must end
// SUCCEEDED, on the new image, and the cloud's state after the crash must
// say so. The faults are seeded (-fleet-seed); which device meets which
// connection's fault depends on the order the proxies accept them.
func TestFleetFaults(t *testing.T) {
	const devices = 100
	seed := *fleetSeed
	t.Logf("seed %d (go test -tags fleetfaults -run FleetFaults ./sim -fleet-seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	base := t.TempDir()
	data := filepath.Join(base, "cloud")

	// Set up with the cloud in this process: things, image, job.
	c, err := emu.Start(emu.Config{DataDir: data, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ep := c.Endpoints()
	spec := childCloudSpec{Data: data, MQTT: ep.MQTT, HTTP: strings.TrimPrefix(ep.HTTP, "http://")}
	httpProxy, err := faultproxy.New(spec.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	defer httpProxy.Close()
	mqttProxy, err := faultproxy.New(spec.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	defer mqttProxy.Close()
	if err := c.Objects.CreateBucket(testBucket); err != nil {
		t.Fatal(err)
	}
	if err := c.Objects.SetPublicRead(testBucket, true); err != nil {
		t.Fatal(err)
	}
	oldImg, _ := AppImage("1.0.0", 10_000)
	newImg, _ := AppImage("1.0.1", 80_001)

	var (
		mu        sync.Mutex
		progress  = map[string]bool{} // devices that have downloaded something
		last      = map[string]agent.AppEvent{}
		completed = map[string]agent.AppEvent{}
		signal    = make(chan struct{}, 1)
	)
	poke := func() {
		select {
		case signal <- struct{}{}:
		default:
		}
	}
	logs := make([]*syncBuf, devices)
	things := make([]string, devices)
	fleet := make([]*Device, devices)
	for i := range things {
		th := fmt.Sprintf("fleet-%03d", i)
		things[i] = th
		cfg := deviceConfig(t, c, filepath.Join(base, th), th, func(cfg *DeviceConfig) {
			cfg.Endpoint = mqttProxy.Addr()
			cfg.Geometry = flash.Geometry{Size: 128 << 10, SectorSize: 4096, WriteAlign: 4}
			cfg.KeepAlive, cfg.ConnectTimeout = 2*time.Second, 2*time.Second // stalled MQTT links are noticed
			cfg.CheckpointBytes = 8 << 10
			cfg.Agent = agent.Config{ReplyTimeout: 2 * time.Second, RetryMin: 100 * time.Millisecond, RetryMax: 2 * time.Second, ProgressPercent: 25}
			cfg.Download = download.Config{ReadTimeout: time.Second, BackoffMin: 20 * time.Millisecond, BackoffMax: 500 * time.Millisecond, Retries: 40}
			cfg.OnConnError = func(error) {} // expected, and many
			logs[i] = &syncBuf{}
			cfg.Logger = slog.New(slog.NewTextHandler(logs[i], &slog.HandlerOptions{Level: slog.LevelDebug}))
			cfg.OnEvent = func(e agent.AppEvent) {
				mu.Lock()
				last[th] = e
				switch e.Kind {
				case agent.EventProgress:
					progress[th] = true
				case agent.EventCompleted:
					completed[th] = e
				}
				mu.Unlock()
				poke()
			}
		})
		fleet[i] = openDevice(t, cfg, oldImg)
	}
	publish(t, c, "fleet-1", "fleet.bin", "http://"+httpProxy.Addr(), newImg, "1.0.1", things...)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	// Faults, drawn per connection in accept order from seeded sources.
	httpRng, mqttRng := rand.New(rand.NewPCG(seed, 1)), rand.New(rand.NewPCG(seed, 2))
	httpProxy.SetChooser(func(int64) faultproxy.Fault {
		at := 1 + httpRng.Int64N(int64(len(newImg)))
		switch x := httpRng.IntN(100); {
		case x < 50:
			return faultproxy.Fault{}
		case x < 70:
			return faultproxy.Fault{CutAfter: at, Reset: true}
		case x < 85:
			return faultproxy.Fault{CutAfter: at}
		default:
			return faultproxy.Fault{CutAfter: at, Stall: true}
		}
	})
	mqttProxy.SetChooser(func(int64) faultproxy.Fault {
		at := 1 + mqttRng.Int64N(8_000) // the TLS handshake is 3 to 4 kB of it
		switch x := mqttRng.IntN(100); {
		case x < 60:
			return faultproxy.Fault{}
		case x < 80:
			return faultproxy.Fault{CutAfter: at, Reset: true}
		default:
			return faultproxy.Fault{CutAfter: at, Stall: true}
		}
	})
	killAt := 10 + rng.IntN(50) // devices done when the cloud crashes: the others are mid-update

	cloud := startCloudProcess(t, spec)
	defer func() {
		if cloud != nil {
			cloud.kill()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	for _, d := range fleet {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Run(ctx); ctx.Err() == nil {
				errs <- fmt.Errorf("%s stopped: %v", d.Thing(), err)
			}
		}()
	}
	stopFleet := func() {
		cancel()
		wg.Wait()
	}
	defer stopFleet()

	start := time.Now()
	deadline := time.After(110 * time.Second)
	killed := false
	for {
		mu.Lock()
		nProgress, nDone := len(progress), len(completed)
		var bad []string
		for th, e := range completed {
			if e.Status != iotjobs.StatusSucceeded {
				bad = append(bad, fmt.Sprintf("%s: %s %s", th, e.Status, e.Reason))
			}
		}
		mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("devices ended otherwise than SUCCEEDED: %v", bad)
		}
		if !killed && nDone >= killAt {
			cloud.kill()
			t.Logf("%v: cloud killed (SIGKILL) with %d devices downloading and %d done", time.Since(start).Round(time.Millisecond), nProgress, nDone)
			cloud = startCloudProcess(t, spec)
			t.Logf("%v: cloud restarted on the same data and ports", time.Since(start).Round(time.Millisecond))
			killed = true
		}
		if nDone == devices {
			break
		}
		select {
		case <-signal:
		case err := <-errs:
			t.Fatal(err)
		case <-deadline:
			mu.Lock()
			for i, th := range things {
				if _, ok := completed[th]; !ok {
					rec, _ := fleet[i].store.Load()
					t.Logf("%s: last event %+v; state %.200s\n%s", th, last[th], rec, logs[i].tail(4000))
				}
			}
			mu.Unlock()
			t.Fatalf("after %v only %d of %d devices completed (%d downloading); cloud stderr: %s", time.Since(start), nDone, devices, nProgress, cloud.stderr)
		}
	}
	if !killed {
		t.Fatalf("the cloud was never killed (at %d devices done)", killAt)
	}
	elapsed := time.Since(start)
	stopFleet()
	hs, ms := httpProxy.Stats(), mqttProxy.Stats()
	t.Logf("%d devices SUCCEEDED in %v; HTTP: %d connections, %d cut or stalled, %d refused while the cloud was down, %d bytes for %d images of %d; MQTT: %d connections, %d cut or stalled, %d refused",
		devices, elapsed.Round(time.Millisecond), hs.Accepted, hs.Cuts, hs.DialErrors, hs.BytesDown, devices, len(newImg), ms.Accepted, ms.Cuts, ms.DialErrors)
	if hs.Cuts < devices/2 || ms.Cuts < devices/2 || ms.DialErrors == 0 {
		t.Fatalf("too few faults to prove anything: HTTP %+v, MQTT %+v", hs, ms)
	}
	if err := cloud.stop(); err != nil {
		t.Fatalf("the cloud process: %v; stderr: %s", err, cloud.stderr)
	}
	cloud = nil

	// What the cloud kept through the crash, and what the devices run.
	c, err = emu.Start(emu.Config{DataDir: data, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, th := range things {
		e, err := c.Jobs.DescribeExecution("fleet-1", th)
		if err != nil || e.Status != iotjobs.StatusSucceeded {
			t.Fatalf("%s: the cloud holds %s %v (%v)", th, e.Status, e.StatusDetails, err)
		}
		run, err := fleet[i].Running()
		if err != nil || run.Version != "1.0.1" || !run.Confirmed {
			t.Fatalf("%s runs %+v (%v)", th, run, err)
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuf) tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b[max(0, len(s.b)-n):])
}

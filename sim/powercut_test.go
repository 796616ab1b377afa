package sim

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/mcuboot"
)

// TestPowerCuts cuts the power of a device at more than 50 points spread
// over a whole update — download, verification, swap request, reboot,
// self-test and confirmation, and the reports — then powers it up again and
// lets it finish. Every run must end with a terminal job that tells the truth
// about the image the device runs, and the device only ever boots the old or
// the new image, intact.
func TestPowerCuts(t *testing.T) {
	c := testCloud(t)
	base := t.TempDir()
	oldImg, _ := AppImage("1.0.0", 20_000)
	newImg, _ := AppImage("1.0.1", 100_001)
	tune := func(p *Power) func(*DeviceConfig) {
		return func(cfg *DeviceConfig) {
			cfg.Power = p
			cfg.CheckpointBytes = 8 << 10
			cfg.Agent = agent.Config{ReplyTimeout: time.Second, RetryMin: 20 * time.Millisecond, ProgressPercent: 20}
		}
	}
	if _, err := c.Objects.Put(t.Context(), testBucket, "pc.bin", bytes.NewReader(newImg)); err != nil {
		t.Fatal(err)
	}

	// A clean run counts the operations an update takes.
	meter := NewPower(-1)
	d := deviceFor(t, c, filepath.Join(base, "meter"), "pc-meter", oldImg, tune(meter))
	publish(t, c, "pc-meter", "pc.bin", c.Endpoints().HTTP, newImg, "1.0.1", "pc-meter")
	stop, errs := runDevice(d)
	if x := untilTerminal(t, c, "pc-meter", errs, "pc-meter"); x[0].Status != iotjobs.StatusSucceeded {
		t.Fatalf("clean run: %s %v", x[0].Status, x[0].StatusDetails)
	}
	stop()
	total := meter.Used()
	if total < 60 {
		t.Fatalf("a whole update took only %d operations", total)
	}

	const points = 56
	outcomes := map[iotjobs.Status]int{}
	for i := 0; i < points; i++ {
		cutAt := 1 + i*(total-1)/(points-1)
		name := fmt.Sprintf("pc-%02d", i)
		t.Run(fmt.Sprintf("cut-at-%d-of-%d", cutAt, total), func(t *testing.T) {
			dir := filepath.Join(base, name)
			power := NewPower(cutAt)
			cfg := deviceConfig(t, c, dir, name, tune(power))
			d := openDevice(t, cfg, oldImg)
			publish(t, c, name, "pc.bin", c.Endpoints().HTTP, newImg, "1.0.1", name)
			stop, errs := runDevice(d)
			// Until the power fails (or, if this run needed fewer operations
			// than the clean one, until the job ends without a cut).
			deadline := time.After(60 * time.Second)
			tick := time.NewTicker(10 * time.Millisecond)
		wait:
			for {
				select {
				case err := <-errs:
					if !errors.Is(err, ErrPowerCut) {
						t.Fatalf("device stopped with %v", err)
					}
					break wait
				case <-tick.C:
					if e, _ := c.Jobs.DescribeExecution(name, name); e.Status.Terminal() {
						break wait
					}
				case <-deadline:
					t.Fatalf("neither a power cut at operation %d nor the end of the job", cutAt)
				}
			}
			tick.Stop()
			stop()
			d.Close()

			// Power up again, on the same flash and state.
			cfg.Power = nil
			d2 := openDevice(t, cfg, nil)
			stop2, errs2 := runDevice(d2)
			x := untilTerminal(t, c, name, errs2, name)[0]
			stop2()
			outcomes[x.Status]++
			if x.Status != iotjobs.StatusSucceeded {
				t.Logf("cut at %d: %s %v", cutAt, x.Status, x.StatusDetails)
			}

			// One more power cycle: a confirmed image stays, a trial one reverts.
			if _, err := d2.Boot(); err != nil {
				t.Fatalf("bricked: %v", err)
			}
			run, err := d2.Running()
			if err != nil {
				t.Fatal(err)
			}
			img := oldImg
			if run.Version == "1.0.1" {
				img = newImg
			}
			slot, _ := d2.SlotImage(int64(len(img)))
			if !bytes.Equal(slot, img) {
				t.Fatalf("the primary slot holds %s but not its exact image", run.Version)
			}
			if _, _, err := mcuboot.VerifyHash(bytes.NewReader(slot), int64(len(slot))); err != nil {
				t.Fatalf("an unverified image boots: %v", err)
			}
			switch x.Status {
			case iotjobs.StatusSucceeded:
				if run.Version != "1.0.1" || !run.Confirmed {
					t.Fatalf("SUCCEEDED but the device runs %s (confirmed %v)", run.Version, run.Confirmed)
				}
			case iotjobs.StatusFailed:
				if run.Version != "1.0.0" {
					t.Fatalf("FAILED (%v) but the device runs %s", x.StatusDetails, run.Version)
				}
			default:
				t.Fatalf("execution ended %s", x.Status)
			}
		})
	}
	t.Logf("%d cut points over %d operations: %v", points, total, outcomes)
	if outcomes[iotjobs.StatusSucceeded] < points*3/4 {
		t.Fatalf("power cuts should rarely cost the update: %v", outcomes)
	}
}

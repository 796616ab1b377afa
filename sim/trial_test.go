package sim

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/internal/faultproxy"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/mcuboot"
)

// events collects a device's application events and boots.
type events struct {
	mu     sync.Mutex
	list   []agent.AppEvent
	boots  []mcuboot.SwapType
	signal chan struct{} // a token after each event (never blocks)
}

func newEvents() *events { return &events{signal: make(chan struct{}, 1)} }

func (e *events) add(ev agent.AppEvent) {
	e.mu.Lock()
	e.list = append(e.list, ev)
	e.mu.Unlock()
	select {
	case e.signal <- struct{}{}:
	default:
	}
}

func (e *events) boot(res BootResult, _ dfu.Running) {
	e.mu.Lock()
	e.boots = append(e.boots, res.Swap)
	e.mu.Unlock()
	select {
	case e.signal <- struct{}{}:
	default:
	}
}

// find returns the first event of kind whose message holds text.
func (e *events) find(kind agent.AppEventKind, text string) (agent.AppEvent, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.list {
		if ev.Kind == kind && strings.Contains(ev.Message, text) {
			return ev, true
		}
	}
	return agent.AppEvent{}, false
}

// wait returns the first event of kind whose message holds text, waiting
// for it (with a deadline).
func (e *events) wait(t *testing.T, kind agent.AppEventKind, text string) agent.AppEvent {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		if ev, ok := e.find(kind, text); ok {
			return ev
		}
		select {
		case <-e.signal:
		case <-deadline:
			e.mu.Lock()
			defer e.mu.Unlock()
			t.Fatalf("no %s event saying %q in %+v", kind, text, e.list)
		}
	}
}

// TestTrialCutShortConverges cuts the power of a device during the trial
// of its new image — right after the trial boot, before the agent ran; or
// as its self-test starts, what a watchdog reset does — then powers it up.
// MCUboot reverts the unconfirmed image; the agent tells a reset from a
// failed self-test, checks the image is still in the slot, installs it
// again without downloading it, and the job SUCCEEDED on the second
// attempt. A clean run first counts the operations (flash, state saves,
// publishes) the device library performs up to the mark; with no progress
// reports that count is the same in every run.
func TestTrialCutShortConverges(t *testing.T) {
	c := testCloud(t)
	proxy, err := faultproxy.New(strings.TrimPrefix(c.Endpoints().HTTP, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	oldImg, _ := AppImage("1.0.0", 20_000)
	newImg, _ := AppImage("1.0.1", 150_001)

	for _, tc := range []struct {
		name     string
		selfTest bool // mark the self-test's start, not the trial boot
	}{
		{"after-trial-boot", false},
		{"as-self-test-starts", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			mark := -1
			setup := func(p *Power, ev *events, metering bool) func(*DeviceConfig) {
				return func(cfg *DeviceConfig) {
					cfg.Power = p
					cfg.Agent = agent.Config{ProgressPercent: 1000, ProgressInterval: time.Hour}
					cfg.OnEvent, cfg.OnBoot = ev.add, func(res BootResult, run dfu.Running) {
						ev.boot(res, run)
						if !tc.selfTest && res.Swap == mcuboot.SwapTest && metering {
							mu.Lock()
							mark = p.Used()
							mu.Unlock()
						}
					}
					cfg.SelfTest = func(ctx context.Context) error {
						if !metering && tc.selfTest && !p.Cut() {
							// Cut during the self-test: it never ends.
							<-ctx.Done()
							return ctx.Err()
						}
						if tc.selfTest && metering {
							mu.Lock()
							mark = p.Used()
							mu.Unlock()
						}
						return nil
					}
				}
			}
			meter := NewPower(-1)
			name := "trial-" + tc.name
			d := deviceFor(t, c, filepath.Join(t.TempDir(), "meter"), name+"-m", oldImg, setup(meter, newEvents(), true))
			publish(t, c, name+"-m", name+".bin", "http://"+proxy.Addr(), newImg, "1.0.1", name+"-m")
			stop, errs := runDevice(d)
			if x := untilTerminal(t, c, name+"-m", errs, name+"-m")[0]; x.Status != iotjobs.StatusSucceeded || x.StatusDetails["attempts"] != "1" {
				t.Fatalf("clean run: %s %v", x.Status, x.StatusDetails)
			}
			stop()
			mu.Lock()
			// After the trial boot: the next operation. As the self-test
			// starts: the operation the self-test began after — the save of
			// the trial marker or the publish that follows it, which of the
			// two depends on how the self-test and the MQTT connection race
			// (the retry then says "refused or reverted" or "during its
			// self-test").
			cutAt := mark + 1
			if tc.selfTest {
				cutAt = mark
			}
			mu.Unlock()
			if cutAt <= 0 {
				t.Fatal("the clean run never reached the mark")
			}

			// The same update, with the power failing at the next operation.
			ev := newEvents()
			power := NewPower(cutAt)
			cfg := deviceConfig(t, c, filepath.Join(t.TempDir(), "dev"), name, setup(power, ev, false))
			d = openDevice(t, cfg, oldImg)
			publish(t, c, name, name+".bin", "http://"+proxy.Addr(), newImg, "1.0.1", name)
			stop, errs = runDevice(d)
			select {
			case err := <-errs:
				if !errors.Is(err, ErrPowerCut) {
					t.Fatalf("device stopped with %v", err)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("no power cut at operation %d", cutAt)
			}
			stop()
			d.Close()
			if e, _ := c.Jobs.DescribeExecution(name, name); e.Status != iotjobs.StatusInProgress {
				t.Fatalf("after the cut the execution is %s %v", e.Status, e.StatusDetails)
			}

			// Power up again on the same flash and state.
			fetched := proxy.Stats().BytesDown
			cfg.Power = nil
			d = openDevice(t, cfg, nil)
			stop, errs = runDevice(d)
			x := untilTerminal(t, c, name, errs, name)[0]
			stop()
			if x.Status != iotjobs.StatusSucceeded || x.StatusDetails["attempts"] != "2" {
				t.Fatalf("after the cut: %s %v", x.Status, x.StatusDetails)
			}
			retry := ev.wait(t, agent.EventRetry, "installing it again (attempt 2 of 3)")
			if !tc.selfTest && !strings.Contains(retry.Message, "the bootloader refused or reverted the new image") {
				t.Fatalf("retry event %+v", retry)
			}
			if again := proxy.Stats().BytesDown - fetched; again != 0 {
				t.Fatalf("the image was in the slot, yet %d bytes were downloaded again", again)
			}
			run, err := d.Running()
			if err != nil || run.Version != "1.0.1" || !run.Confirmed {
				t.Fatalf("runs %+v (%v)", run, err)
			}
			ev.mu.Lock()
			boots := ev.boots
			ev.mu.Unlock()
			// factory, trial (cut), revert, trial again.
			want := []mcuboot.SwapType{mcuboot.SwapNone, mcuboot.SwapTest, mcuboot.SwapRevert, mcuboot.SwapTest}
			if len(boots) != len(want) {
				t.Fatalf("boots %v, want %v", boots, want)
			}
			for i := range want {
				if boots[i] != want[i] {
					t.Fatalf("boots %v, want %v", boots, want)
				}
			}
		})
	}
}

// TestCancelDuringTrial cancels a job with force while its new image is on
// trial (its self-test holds), over MQTT on the local cloud, for both
// outcomes a device can be told to choose.
func TestCancelDuringTrial(t *testing.T) {
	c := testCloud(t)
	oldImg, _ := AppImage("1.0.0", 20_000)
	newImg, _ := AppImage("1.0.1", 60_001)
	for _, tc := range []struct {
		mode    agent.TrialCancel
		runs    string
		endText string
	}{
		{agent.TrialFinish, "1.0.1", "1.0.1 passed its self-test and is kept"},
		{agent.TrialRevert, "1.0.0", "rebooting to revert 1.0.1"},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			name := "cancel-" + string(tc.mode)
			ev := newEvents()
			onTrial := make(chan struct{}, 1)
			release := make(chan struct{})
			var tests sync.WaitGroup
			d := deviceFor(t, c, filepath.Join(t.TempDir(), "dev"), name, oldImg, func(cfg *DeviceConfig) {
				cfg.Agent = agent.Config{CancelDuringTrial: tc.mode}
				cfg.OnEvent, cfg.OnBoot = ev.add, ev.boot
				cfg.SelfTest = func(ctx context.Context) error {
					tests.Add(1)
					defer tests.Done()
					select {
					case onTrial <- struct{}{}:
					default:
					}
					select {
					case <-release:
						return nil
					case <-ctx.Done(): // the revert's reboot
						return ctx.Err()
					}
				}
			})
			publish(t, c, name, name+".bin", c.Endpoints().HTTP, newImg, "1.0.1", name)
			stop, errs := runDevice(d)
			select {
			case <-onTrial:
			case err := <-errs:
				t.Fatalf("device stopped: %v", err)
			case <-time.After(60 * time.Second):
				t.Fatal("the new image never went on trial")
			}
			before, err := c.Jobs.DescribeExecution(name, name)
			if err != nil || before.Status != iotjobs.StatusInProgress || before.StatusDetails["state"] != "ready_to_reboot" {
				t.Fatalf("on trial the execution is %+v (%v)", before, err)
			}
			if _, err := c.Jobs.CancelJob(name, true, "changed our mind", ""); err != nil {
				t.Fatal(err)
			}
			if tc.mode == agent.TrialFinish {
				// The trial goes on: now let the self-test pass.
				ev.wait(t, agent.EventCanceled, "the trial of 1.0.1 goes on")
				close(release)
			}
			ev.wait(t, agent.EventCanceled, tc.endText)
			if tc.mode == agent.TrialRevert {
				// Wait for the boot into the old image: the reboot reverts.
				deadline := time.After(60 * time.Second)
				for {
					ev.mu.Lock()
					n := len(ev.boots)
					last := ev.boots[n-1]
					ev.mu.Unlock()
					if n == 3 && last == mcuboot.SwapRevert {
						break
					}
					select {
					case <-ev.signal:
					case <-deadline:
						t.Fatalf("no revert after the cancel: boots %d", n)
					}
				}
			}
			// The device asks for its next job: it is idle, its trial over.
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
			tests.Wait()
			run, err := d.Running()
			if err != nil || run.Version != tc.runs || !run.Confirmed {
				t.Fatalf("runs %+v (%v), want %s confirmed", run, err, tc.runs)
			}
			// One more power cycle: what runs stays.
			if _, err := d.Boot(); err != nil {
				t.Fatal(err)
			}
			if run, _ := d.Running(); run.Version != tc.runs {
				t.Fatalf("after a power cycle runs %s", run.Version)
			}
			after, _ := c.Jobs.DescribeExecution(name, name)
			if after.Status != iotjobs.StatusCanceled || after.StatusDetails["state"] != "ready_to_reboot" {
				t.Fatalf("the device reported on the canceled execution: %s %v", after.Status, after.StatusDetails)
			}
		})
	}
}

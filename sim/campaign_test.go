package sim

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/mcuboot"
)

// The campaign's flags: go test ./sim -run PowerCutCampaign -cuts N -seed S.
var (
	campaignCuts  = flag.Int("cuts", 200, "power cuts TestPowerCutCampaign makes")
	campaignSeed  = flag.Uint64("seed", 1, "seed of TestPowerCutCampaign's cut points and of the damage each cut does")
	campaignTable = flag.String("campaign-table", "", "file to write TestPowerCutCampaign's table to (markdown)")
)

// flagGiven reports whether the named flag was set on the command line.
func flagGiven(name string) bool {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// campaignImages are the factory and the new firmware of every update.
const (
	campaignOld = "1.0.0"
	campaignNew = "1.0.1"
)

// updateOutcome is how one update under power cuts ended.
type updateOutcome struct {
	cuts       int
	status     iotjobs.Status
	reason     string // statusDetails.reason of a failure
	brick      string // why the device cannot boot, if it cannot
	stuck      string // why the execution never ended, if it did not
	untruthful string // how the report and the device disagree, if they do
	downloaded int64  // bytes of image received
	resumed    int    // boots that resumed a swap a cut interrupted
	reverts    int    // boots that reverted an image
	trials     int    // boots of 1.0.1 on trial (not yet confirmed)
	swapped    bool   // a power-up ended with the test swap complete and 1.0.1 not confirmed
	log        string // the device's log, kept for a bad outcome or a failure no revert explains
	name       string // the thing and its job
}

// TestPowerCutCampaign updates fresh devices from 1.0.0 to 1.0.1, cutting
// each update's power one to three times at operations drawn uniformly from
// a whole update — downloads, verification, the swap request, the
// bootloader's swap and revert, the self-test, the confirmation and the
// reports all count — on NOR flash that tears what a cut interrupts; after
// the last cut the device powers up and runs to the end of the job. It
// counts bricks (no bootable image), stuck executions (not terminal in
// time), untruthful reports (SUCCEEDED without 1.0.1 confirmed, FAILED
// without 1.0.0 running, or a slot that does not hold its image exactly),
// and the outcomes, and fails on any brick, stuck execution or untruthful
// report. The cuts and their damage follow -seed; -cuts sets how many.
func TestPowerCutCampaign(t *testing.T) {
	c := testCloud(t)
	base := t.TempDir()
	oldImg, _ := AppImage(campaignOld, 20_000)
	newImg, _ := AppImage(campaignNew, 100_001)

	// A clean update counts the operations one takes.
	meter := NewPower(-1)
	clean := campaignUpdate(t, c, base, "pcc-meter", oldImg, newImg, []*Power{meter})
	if clean.status != iotjobs.StatusSucceeded || clean.cuts != 0 {
		t.Fatalf("clean update: %+v", clean)
	}
	total := meter.Used()
	if total < 100 {
		t.Fatalf("a whole update took only %d operations", total)
	}

	want := *campaignCuts
	if raceEnabled && !flagGiven("cuts") {
		// The race detector slows the simulation several times over: its
		// run looks for data races, which 50 cuts exercise as well as 200.
		want = 50
	}
	rng := rand.New(rand.NewPCG(*campaignSeed, 0xc075))
	var (
		outs  []updateOutcome
		cuts  int
		start = time.Now()
	)
	for u := 0; cuts < want; u++ {
		n := 1 + rng.IntN(3)
		powers := make([]*Power, n)
		for i := range powers {
			powers[i] = NewPowerSeed(1+rng.IntN(total), rng.Uint64())
		}
		o := campaignUpdate(t, c, base, fmt.Sprintf("pcc-%04d", u), oldImg, newImg, powers)
		outs = append(outs, o)
		cuts += o.cuts
	}
	table := campaignReport(outs, total, int64(len(newImg)))
	t.Logf("seed %d, %d cuts over %d updates in %v:\n%s", *campaignSeed, cuts, len(outs), time.Since(start).Round(time.Second), table)
	if *campaignTable != "" {
		head := fmt.Sprintf("seed %d: %d cuts over %d updates of a %d-byte image, each over %d operations\n\n", *campaignSeed, cuts, len(outs), len(newImg), total)
		if err := os.WriteFile(*campaignTable, []byte(head+table), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range outs {
		for _, bad := range []string{o.brick, o.stuck, o.untruthful} {
			if bad != "" {
				t.Errorf("after %d cuts: %s\nthe device's log:\n%s", o.cuts, bad, o.log)
			}
		}
		if o.status == iotjobs.StatusFailed && o.reason == "" {
			t.Errorf("%s: FAILED without a reason after %d cuts", o.name, o.cuts)
		}
		if o.brick == "" && o.stuck == "" && o.untruthful == "" && o.log != "" {
			// Not a defect the campaign fails on, but a failure that no
			// cut in the trial window explains: its log says why.
			t.Logf("%s ended %s (%s) after %d cuts; the device's log:\n%s", o.name, o.status, o.reason, o.cuts, o.log)
		}
	}
}

// campaignUpdate runs one update of a fresh device: one power-up on each
// supply in powers (until it is cut or the job ends), then one on steady
// power until the job ends, and a last power cycle to check what runs.
func campaignUpdate(t *testing.T, c *emu.Cloud, base, name string, oldImg, newImg []byte, powers []*Power) (o updateOutcome) {
	t.Helper()
	o.name = name
	// The device logs to a file beside its flash, read back for the report.
	logPath := filepath.Join(base, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		logFile.Close()
		if o.brick != "" || o.stuck != "" || o.untruthful != "" || o.status != iotjobs.StatusSucceeded && o.trials == 0 && !o.swapped {
			b, _ := os.ReadFile(logPath)
			o.log = string(b)
		}
	}()
	var (
		downloaded       atomic.Int64
		resumed, reverts atomic.Int64
		trials           atomic.Int64
	)
	cfg := deviceConfig(t, c, filepath.Join(base, name), name, func(cfg *DeviceConfig) {
		cfg.CheckpointBytes = 8 << 10
		cfg.Agent = agent.Config{ReplyTimeout: time.Second, RetryMin: 20 * time.Millisecond, ProgressPercent: 20}
		cfg.Download.Client = countingClient(&downloaded, c.CA.Pool())
		// A stalled transfer is given up and retried sooner than on a real
		// link, so that a loaded test machine is not mistaken for a stuck
		// device.
		cfg.Download.ReadTimeout = 5 * time.Second
		cfg.Download.BackoffMin, cfg.Download.BackoffMax = 20*time.Millisecond, time.Second
		cfg.Logger = slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug}))
		cfg.OnBoot = func(r BootResult, run dfu.Running) {
			if r.Resumed {
				resumed.Add(1)
			}
			// A revert, or the permanent swap back to the old image that a
			// revert cut short becomes (fixup_revert).
			if r.Swap == mcuboot.SwapRevert || r.Swap == mcuboot.SwapPerm {
				reverts.Add(1)
			}
			if run.Version == campaignNew && !run.Confirmed {
				trials.Add(1)
			}
		}
	})
	factory := oldImg
	publish(t, c, name, name+".bin", c.Endpoints().HTTP, newImg, campaignNew, name)
	defer func() {
		o.downloaded, o.resumed, o.reverts, o.trials = downloaded.Load(), int(resumed.Load()), int(reverts.Load()), int(trials.Load())
	}()
	for _, p := range append(powers, nil) {
		cfg.Power = p
		d := openDevice(t, cfg, factory)
		factory = nil
		end := runUntil(c, name, d)
		o.swapped = o.swapped || testSwapDone(d.Primary(), DefaultGeometry.Size)
		d.Close()
		switch {
		case errors.Is(end, ErrNoBootableImage):
			o.brick = fmt.Sprintf("%s: %v", name, end)
			return o
		case errors.Is(end, ErrPowerCut):
			o.cuts++
			continue
		case end != nil:
			o.stuck = fmt.Sprintf("%s: %v", name, end)
			return o
		}
		break // the job ended
	}

	x, err := c.Jobs.DescribeExecution(name, name)
	if err != nil {
		t.Fatal(err)
	}
	o.status, o.reason = x.Status, x.StatusDetails["reason"]
	// One more power cycle: a confirmed image stays, a trial one reverts.
	cfg.Power = nil
	d := openDevice(t, cfg, nil)
	defer d.Close()
	if _, err := d.Boot(); err != nil {
		o.brick = fmt.Sprintf("%s: %v", name, err)
		return o
	}
	run, err := d.Running()
	if err != nil {
		o.brick = fmt.Sprintf("%s: %v", name, err)
		return o
	}
	img := oldImg
	if run.Version == campaignNew {
		img = newImg
	}
	slot, err := d.SlotImage(int64(len(img)))
	switch {
	case err != nil || !bytes.Equal(slot, img):
		o.untruthful = fmt.Sprintf("%s: the primary slot runs %s but does not hold its exact image (%v)", name, run.Version, err)
	case x.Status == iotjobs.StatusSucceeded && (run.Version != campaignNew || !run.Confirmed):
		o.untruthful = fmt.Sprintf("%s: SUCCEEDED but the device runs %s (confirmed %v)", name, run.Version, run.Confirmed)
	case x.Status != iotjobs.StatusSucceeded && run.Version != campaignOld:
		o.untruthful = fmt.Sprintf("%s: %s (%s) but the device runs %s", name, x.Status, o.reason, run.Version)
	}
	return o
}

// runUntil runs d until its power is cut (ErrPowerCut), it stops on an
// error, or the execution of job on it is terminal (nil); after two minutes
// without either (an update takes a fraction of a second), the execution is
// stuck.
func runUntil(c *emu.Cloud, job string, d *Device) error {
	stop, errs := runDevice(d)
	defer stop()
	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-errs:
			return err
		case <-tick.C:
			if e, err := c.Jobs.DescribeExecution(job, d.Thing()); err == nil && e.Status.Terminal() {
				return nil
			}
		case <-deadline.C:
			e, _ := c.Jobs.DescribeExecution(job, d.Thing())
			return fmt.Errorf("stuck: the execution is still %s %v after two minutes", e.Status, e.StatusDetails)
		}
	}
}

// countingClient is an HTTPS client trusting roots that adds the bytes of
// every response body it reads to n.
func countingClient(n *atomic.Int64, roots *x509.CertPool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.TLSClientConfig = &tls.Config{RootCAs: roots}
	return &http.Client{Transport: &countingTransport{Transport: tr, n: n}}
}

type countingTransport struct {
	*http.Transport
	n *atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.Transport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, n: c.n}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// campaignReport renders the campaign's table.
func campaignReport(outs []updateOutcome, ops int, imageSize int64) string {
	var (
		cuts, bricks, stuck, untruthful, succeeded, resumed, reverts int
		downloaded                                                   int64
		byCuts                                                       [4]int
		failed                                                       = map[string]int{}
	)
	for _, o := range outs {
		cuts += o.cuts
		byCuts[min(o.cuts, 3)]++
		downloaded += o.downloaded
		resumed += o.resumed
		reverts += o.reverts
		switch {
		case o.brick != "":
			bricks++
		case o.stuck != "":
			stuck++
		case o.untruthful != "":
			untruthful++
		}
		switch {
		case o.brick != "" || o.stuck != "":
		case o.status == iotjobs.StatusSucceeded:
			succeeded++
		case (o.trials > 0 || o.swapped) && o.reason == "rollback":
			// The test swap completed (the new image had its one boot, in
			// MCUboot's eyes) and a cut came before the confirmation:
			// MCUboot reverted it.
			failed[fmt.Sprintf("%s (%s) after a cut between the completed swap and the confirmation", o.status, o.reason)]++
		default:
			failed[fmt.Sprintf("%s (%s)", o.status, o.reason)]++
		}
	}
	var b strings.Builder
	row := func(k string, v any) { fmt.Fprintf(&b, "| %s | %v |\n", k, v) }
	b.WriteString("| | |\n|---|---:|\n")
	row("cuts", cuts)
	row("updates (with 0 / 1 / 2 / 3 cuts)", fmt.Sprintf("%d (%d / %d / %d / %d)", len(outs), byCuts[0], byCuts[1], byCuts[2], byCuts[3]))
	row("operations in a clean update", ops)
	row("boots that resumed a cut swap or revert", resumed)
	row("boots that reverted an image", reverts)
	row("bricks", bricks)
	row("stuck executions", stuck)
	row("untruthful reports", untruthful)
	row("SUCCEEDED", fmt.Sprintf("%d (%.1f %%)", succeeded, 100*float64(succeeded)/float64(max(1, len(outs)))))
	reasons := make([]string, 0, len(failed))
	for r := range failed {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		row(r, failed[r])
	}
	row("bytes downloaded / image size", fmt.Sprintf("%.2f", float64(downloaded)/float64(max(1, int64(len(outs)))*imageSize)))
	return b.String()
}

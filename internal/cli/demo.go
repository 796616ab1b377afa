package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/cloud/objstore"
	"github.com/awsfota/awsfota/delta"
	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/jobdoc"
	"github.com/awsfota/awsfota/mcuboot"
	"github.com/awsfota/awsfota/sim"
	"github.com/spf13/cobra"
)

type demoFlags struct {
	devices   int
	data      string
	imageSize int
	linkRate  int
	timeout   time.Duration
	console   bool
}

func demoCmd(e *env) *cobra.Command {
	var f demoFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a whole FOTA update on a local cloud with simulated devices",
		Long: `demo starts the local cloud in this process (MQTT broker on mutual TLS, AWS IoT
Jobs service, S3-compatible object store) on free loopback ports, provisions
simulated devices running firmware 1.0.0, builds a 1.0.1 MCUboot image
signed with a key it makes (the only key the devices and their bootloader
trust; with --data its public half is kept in DIR/image-key.pub.pem), uploads
it, creates a job and follows the update: download, verification,
test swap on reboot, self-test and confirmation, and the final report.

It exits 0 only when every job execution SUCCEEDED and every device runs
1.0.1 confirmed.

With --console it also serves the web console on the cloud's HTTP port and
prints its URL, to watch the rollout in a browser (the link is slowed to
16 KiB/s unless --link-rate is given); the console stays open after the
demo until Ctrl-C.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.console && !cmd.Flags().Changed("link-rate") {
				f.linkRate = 16 << 10
			}
			return runDemo(e, f)
		},
	}
	cmd.Flags().IntVar(&f.devices, "devices", 3, "number of simulated devices (1-200)")
	cmd.Flags().StringVar(&f.data, "data", "", "keep the cloud's and the devices' state in `DIR` (default: a temporary directory, removed afterwards)")
	cmd.Flags().IntVar(&f.imageSize, "image-size", 256<<10, "size in bytes of the new firmware's body")
	cmd.Flags().IntVar(&f.linkRate, "link-rate", 256<<10, "simulated link speed of each device in `bytes/s` (0: unlimited)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 2*time.Minute, "give up after this long")
	cmd.Flags().BoolVar(&f.console, "console", false, "serve the web console to watch the rollout in a browser; keep it open after the demo until Ctrl-C")
	return cmd
}

const (
	demoKeyFile = "image-key.pub.pem" // in --data: the public key the demo's images are signed with
	demoBucket  = "awsfota-demo"
	demoFrom    = "1.0.0"
	demoTo      = "1.0.1"
	// demoFactorySize is the body size of the firmware the devices run.
	demoFactorySize = 128 << 10
	modemFrom       = "mfw_nrf9160_1.3.1"
	modemTo         = "mfw_nrf9160_1.3.2"
	modemSize       = 200_000
	demoMaxSize     = 900 << 10
)

func runDemo(e *env, f demoFlags) error {
	if f.devices < 1 || f.devices > 200 {
		return usagef("--devices %d: use 1 to 200", f.devices)
	}
	if f.linkRate < 0 {
		return usagef("--link-rate %d: use 0 (unlimited) or a positive number of bytes per second", f.linkRate)
	}
	if f.imageSize < 1 || f.imageSize > demoMaxSize {
		return usagef("--image-size %d: use 1 to %d (the simulated slots hold 1 MiB)", f.imageSize, demoMaxSize)
	}
	start := time.Now()
	dir, temp := f.data, f.data == ""
	if temp {
		var err error
		if dir, err = os.MkdirTemp("", "awsfota-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	log := e.logger()
	cloud, err := emu.Start(emu.Config{DataDir: filepath.Join(dir, "cloud"), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		NoSync: temp, Logger: log})
	if err != nil {
		return err
	}
	defer cloud.Close()
	ep := cloud.Endpoints()
	fmt.Fprintf(e.out, "local cloud: MQTT (mutual TLS) on %s, S3 and HTTP on %s\n", ep.MQTT, ep.HTTP)
	if f.console {
		url, stop, err := mountConsole(e, cloud, true)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Fprintf(e.out, "web console: %s (open it to watch the rollout)\n", url)
		defer func() {
			fmt.Fprintf(e.out, "\nthe web console stays open at %s: press Ctrl-C to end\n", url)
			<-e.ctx.Done()
		}()
	}

	// Images are signed, and the devices (agent and bootloader) trust that
	// key alone, so that the demo shows what production does.
	signer, err := mcuboot.GenerateKey(mcuboot.KeyECDSAP256)
	if err != nil {
		return err
	}
	if !temp {
		pub, err := signer.Public().MarshalPEM()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, demoKeyFile), pub, 0o644); err != nil {
			return err
		}
	}
	factory, err := sim.SignedAppImage(demoFrom, demoFactorySize, signer)
	if err != nil {
		return err
	}
	things := make([]string, f.devices)
	for i := range things {
		things[i] = fmt.Sprintf("demo-device-%d", i+1)
	}
	view := newFleetView(e.out, e.tty(e.out), things)
	fleet, err := sim.NewFleet(sim.FleetConfig{
		Cloud: cloud, Dir: filepath.Join(dir, "devices"), Things: things, Factory: factory,
		Keys:            []*mcuboot.PublicKey{signer.Public()},
		CheckpointBytes: 16 << 10, LinkRate: int64(f.linkRate), Logger: log,
		Agent:         agent.Config{ProgressPercent: 25},
		ModemVersions: map[string]string{things[0]: modemFrom},
		OnEvent:       view.event,
		OnBoot:        view.boot,
	})
	if err != nil {
		return err
	}
	defer fleet.Close()
	fmt.Fprintf(e.out, "provisioned %d simulated devices running %s (thing, certificate, policy)\n", len(things), demoFrom)

	img, appPatch, err := demoAppImage(f.imageSize, factory, signer)
	if err != nil {
		return err
	}
	if err := cloud.Objects.CreateBucket(demoBucket); err != nil && !errors.Is(err, objstore.ErrBucketExists) {
		return err
	}
	// The seed's procedure: a bucket readable by anyone, and the host/path
	// form of the job document.
	if err := cloud.Objects.SetPublicRead(demoBucket, true); err != nil {
		return err
	}
	key := "app-" + demoTo + ".bin"
	if _, err := cloud.Objects.Put(e.ctx, demoBucket, key, bytes.NewReader(img)); err != nil {
		return err
	}
	sum := sha256.Sum256(img)
	doc, err := jobdoc.Marshal(jobdoc.Spec{FWVersion: demoTo, Size: int64(len(img)), SHA256: sum[:],
		URL: ep.HTTP + "/" + demoBucket + "/" + key, SeedLocation: true})
	if err != nil {
		return err
	}
	jobID := fmt.Sprintf("demo-%s-%d", "1_0_1", time.Now().Unix())
	if _, err := cloud.Jobs.CreateJob(jobsvc.JobSpec{JobID: jobID, Things: things, Document: doc,
		Description: "awsfota demo: " + demoFrom + " to " + demoTo}); err != nil {
		return err
	}
	fmt.Fprintf(e.out, "uploaded %s (%d bytes, MCUboot image %s signed with ECDSA P-256 key %x, the only key the devices trust) and created job %s\n",
		key, len(img), demoTo, signer.Public().Hash()[:8], jobID)
	fmt.Fprintf(e.out, "as a delta from %s (awsfota delta create) the app update would be %d bytes, %s of the full image's %d\n",
		demoFrom, appPatch, deltaPercent(int64(appPatch), int64(len(img))), len(img))

	// demo-device-1 also has a modem, updated by a delta against the
	// firmware it runs: a fraction of the bytes on the air.
	modemJob, patchSize, err := createModemJob(e, cloud, things[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(e.out, "created job %s for %s's modem: %s to %s by a %d-byte delta (the full image has %d bytes)\n\n",
		modemJob, things[0], modemFrom, modemTo, patchSize, modemSize)

	ctx, cancel := context.WithTimeout(e.ctx, f.timeout)
	defer cancel()
	fleetCtx, stopFleet := context.WithCancel(context.Background())
	fleetDone := make(chan error, 1)
	go func() { fleetDone <- fleet.Run(fleetCtx) }()
	view.start()

	var fleetErr error
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	execs, waitErr := []jobsvc.Execution(nil), error(nil)
	var modemExec jobsvc.Execution
wait:
	for {
		if execs, err = cloud.Jobs.ListExecutionsForJob(jobID); err != nil {
			waitErr = err
			break
		}
		if modemExec, err = cloud.Jobs.DescribeExecution(modemJob, things[0]); err != nil {
			waitErr = err
			break
		}
		// demo-device-1's line follows its modem job once its application job
		// is done (the modem job is then its next one).
		shown := execs[:0:0]
		for _, x := range execs {
			if x.Thing == things[0] && x.Status.Terminal() {
				view.cloudLabeled([]jobsvc.Execution{modemExec}, "modem ")
				continue
			}
			shown = append(shown, x)
		}
		view.cloud(shown)
		if allTerminal(execs) && modemExec.Status.Terminal() {
			break
		}
		select {
		case <-ctx.Done():
			waitErr = fmt.Errorf("the update did not finish within %v (--timeout)", f.timeout)
			break wait
		case fleetErr = <-fleetDone:
			waitErr = fmt.Errorf("the simulated devices stopped: %w", fleetErr)
			break wait
		case <-tick.C:
		}
	}
	stopFleet()
	if waitErr == nil || fleetErr == nil {
		fleetErr = <-fleetDone
	}
	view.stop()
	if e.ctx.Err() != nil {
		return e.ctx.Err()
	}

	ok := printSummary(e, fleet, execs, waitErr)
	if !printModemSummary(e, fleet.Devices()[0], modemExec) {
		ok = false
	}
	if fleetErr != nil && waitErr == nil {
		fmt.Fprintf(e.errOut, "awsfota: %v\n", fleetErr)
		ok = false
	}
	if !ok {
		return errSilent
	}
	fmt.Fprintf(e.out, "\nall %d devices updated from %s to %s, and %s's modem from %s to %s, all reported SUCCEEDED in %.1fs\n",
		len(things), demoFrom, demoTo, things[0], modemFrom, modemTo, time.Since(start).Seconds())
	return nil
}

// signedAppImage is sim.AppImage's image signed with key.
// demoAppImage makes the new app image: the factory firmware's code with a
// change in the middle, grown (or cut) to size bytes with new code, signed;
// and the size of the delta patch from factory to it.
func demoAppImage(size int, factory []byte, signer *mcuboot.PrivateKey) (img []byte, patchSize int, err error) {
	old, err := sim.AppBody(demoFrom, demoFactorySize)
	if err != nil {
		return nil, 0, err
	}
	fresh, err := sim.AppBody(demoTo, size)
	if err != nil {
		return nil, 0, err
	}
	body := make([]byte, 0, size)
	mid := min(len(old)/2, size)
	body = append(body, old[:mid]...)
	body = append(body, fresh[:min(1024, size-len(body))]...) // new code in the middle
	body = append(body, old[mid:min(len(old), mid+size-len(body))]...)
	body = append(body, fresh[len(body):]...) // and at the end when the image grew
	if img, err = sim.AppImageFromBody(demoTo, body, signer); err != nil {
		return nil, 0, err
	}
	var patch countingWriter
	if _, err := delta.Create(&patch, bytes.NewReader(factory), int64(len(factory)), bytes.NewReader(img)); err != nil {
		return nil, 0, err
	}
	return img, int(patch.n), nil
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// createModemJob uploads a delta from the simulated modem's firmware to the
// next and creates a job for thing's modem.
func createModemJob(e *env, cloud *emu.Cloud, thing string) (string, int, error) {
	oldFw, newFw := sim.ModemImage(modemFrom, modemSize), sim.ModemImage(modemTo, modemSize)
	var patch bytes.Buffer
	if _, err := delta.Create(&patch, bytes.NewReader(oldFw), int64(len(oldFw)), bytes.NewReader(newFw)); err != nil {
		return "", 0, err
	}
	key := "modem-1.3.1-to-1.3.2.patch"
	if _, err := cloud.Objects.Put(e.ctx, demoBucket, key, bytes.NewReader(patch.Bytes())); err != nil {
		return "", 0, err
	}
	base, sum := sha256.Sum256(oldFw), sha256.Sum256(patch.Bytes())
	doc, err := jobdoc.Marshal(jobdoc.Spec{Component: jobdoc.ComponentModem, FWVersion: modemTo, Size: int64(patch.Len()), SHA256: sum[:],
		Base: &jobdoc.Base{SHA256: base[:], Size: int64(len(oldFw)), FWVersion: modemFrom},
		URL:  cloud.Endpoints().HTTP + "/" + demoBucket + "/" + key})
	if err != nil {
		return "", 0, err
	}
	id := fmt.Sprintf("demo-modem-%d", time.Now().Unix())
	if _, err := cloud.Jobs.CreateJob(jobsvc.JobSpec{JobID: id, Things: []string{thing}, Document: doc,
		Description: "awsfota demo: modem " + modemFrom + " to " + modemTo + " by delta"}); err != nil {
		return "", 0, err
	}
	return id, patch.Len(), nil
}

// printModemSummary prints the modem job's outcome and reports whether it
// SUCCEEDED with the modem running the new firmware.
func printModemSummary(e *env, d *sim.Device, x jobsvc.Execution) bool {
	v, err := d.ModemVersion()
	if err != nil {
		v = "unreadable: " + err.Error()
	}
	detail := x.StatusDetails["reason"]
	if m := x.StatusDetails["message"]; m != "" {
		detail += ": " + m
	}
	fmt.Fprintf(e.out, "%s modem: %s, runs %s %s\n", d.Thing(), orDash(string(x.Status)), v, detail)
	return x.Status == iotjobs.StatusSucceeded && v == modemTo
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func allTerminal(execs []jobsvc.Execution) bool {
	if len(execs) == 0 {
		return false
	}
	for _, x := range execs {
		if !x.Status.Terminal() {
			return false
		}
	}
	return true
}

// printSummary prints one row per device and reports whether every
// execution SUCCEEDED and every device runs the new version, confirmed.
func printSummary(e *env, fleet *sim.Fleet, execs []jobsvc.Execution, waitErr error) bool {
	byThing := map[string]jobsvc.Execution{}
	for _, x := range execs {
		byThing[x.Thing] = x
	}
	ok := waitErr == nil
	rows := [][]string{{"DEVICE", "JOB STATUS", "VERSION", "VERSION#", "REBOOTS", "DETAILS"}}
	devs := fleet.Devices()
	sort.Slice(devs, func(i, j int) bool { return devs[i].Thing() < devs[j].Thing() })
	for _, d := range devs {
		x := byThing[d.Thing()]
		run, err := d.Running()
		ver := run.Version
		switch {
		case err != nil:
			ver = "unbootable"
		case !run.Confirmed:
			ver += " (on trial)"
		}
		detail := x.StatusDetails["reason"]
		if m := x.StatusDetails["message"]; m != "" {
			detail += ": " + m
		}
		if detail == "" && x.Status == iotjobs.StatusSucceeded {
			detail = "from " + x.StatusDetails["from"] + " to " + x.StatusDetails["fwversion"]
		}
		status := string(x.Status)
		if status == "" {
			status = "-"
		}
		rows = append(rows, []string{d.Thing(), status, ver, fmt.Sprint(x.VersionNumber), fmt.Sprint(d.Reboots()), detail})
		if x.Status != iotjobs.StatusSucceeded || err != nil || run.Version != demoTo || !run.Confirmed {
			ok = false
		}
	}
	fmt.Fprintln(e.out)
	printTable(e.out, rows)
	if waitErr != nil {
		fmt.Fprintf(e.errOut, "awsfota: %v\n", waitErr)
	}
	return ok
}

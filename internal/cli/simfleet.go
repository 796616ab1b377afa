package cli

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/spf13/cobra"

	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/mcuboot"
	"github.com/awsfota/awsfota/operator"
	"github.com/awsfota/awsfota/sim"
	"github.com/awsfota/awsfota/sim/fleetsim"
)

func simCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulated devices against a running cloud",
	}
	cmd.AddCommand(simFleetCmd(e))
	return cmd
}

type simFleetFlags struct {
	devices        int
	imageSize      int
	linkRate       int64
	failPercent    float64
	offlinePercent float64
	group, prefix  string
	dir            string
	job            bool
	rollout        int
	abortPercent   float64
	abortMin       int
	connecting     int
	downloading    int
	settle         time.Duration
	timeout        time.Duration
	cpuProfile     string
	hugePages      bool
	pprofAddr      string
}

const (
	fleetFrom    = "1.0.0"
	fleetTo      = "1.0.1"
	fleetKeyFile = "image-key.pem"
	fleetDevices = "devices.jsonl"
)

func simFleetCmd(e *env) *cobra.Command {
	var (
		t target
		f simFleetFlags
	)
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Run a fleet of simulated devices against a running local cloud",
		Long: `fleet runs --devices simulated devices in this process against the local
cloud that 'awsfota cloud serve --data DIR' runs in another (--local DIR).
Each is the real device library — its own certificate and MQTT connection,
the agent, the resumable downloader, the MCUboot target — over a simulated
bootloader and flash kept in memory (sectors that hold the same bytes are
kept once), running firmware 1.0.0 at first.

The things are provisioned through the AWS IoT API (thing, certificate,
attachment, thing group --group) the first time, and their credentials kept
in --dir (default DIR/sim-fleet) for the next runs. The devices trust the
image key kept there (image-key.pem): sign your own images with it
('awsfota image create --key DIR/sim-fleet/image-key.pem') and target the
group with 'awsfota job create --local DIR --group sim-fleet', or give --job
and the fleet creates the job itself once every device is connected: a
1.0.1 image of --image-size bytes, with the rollout and abort settings given.

A live summary goes to stderr (connected, downloading, on trial, done,
failed); at the end a table goes to stdout: time to connect, time to
SUCCEEDED (p50, p90, p99) from the job's creation, updates per minute,
bytes served, and the cloud process's memory (read from /proc: the cloud
must run on this machine). --fail-percent makes that share of the devices
fail their self-test (they roll back and report FAILED), to try abort
settings; --offline-percent never connect.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if t.local == "" {
				return usagef("sim fleet needs --local DIR: the data directory of a running 'awsfota cloud serve'")
			}
			if f.devices < 1 || f.devices > 100_000 {
				return usagef("--devices %d: use 1 to 100000", f.devices)
			}
			if f.imageSize < 1 || f.imageSize > 16<<20 {
				return usagef("--image-size %d: use 1 to %d", f.imageSize, 16<<20)
			}
			for _, p := range []struct {
				flag string
				v    float64
			}{{"--fail-percent", f.failPercent}, {"--offline-percent", f.offlinePercent}, {"--abort-failure-percent", f.abortPercent}} {
				if p.v < 0 || p.v > 100 {
					return usagef("%s %g: use 0 to 100", p.flag, p.v)
				}
			}
			if f.connecting < 1 {
				return usagef("--connecting %d: use 1 or more", f.connecting)
			}
			if f.downloading < 0 {
				return usagef("--downloading %d: use 0 (no bound) or more", f.downloading)
			}
			if f.linkRate < 0 {
				return usagef("--link-rate %d: use 0 (unlimited) or a positive number of bytes per second", f.linkRate)
			}
			if f.rollout != 0 && (f.rollout < 1 || f.rollout > 1000) {
				return usagef("--rollout-per-minute %d: use 1 to 1000, or 0 for none", f.rollout)
			}
			if f.dir == "" {
				f.dir = filepath.Join(t.local, "sim-fleet")
			}
			return runSimFleet(e, &t, f)
		},
	}
	t.flags(cmd)
	fl := cmd.Flags()
	fl.IntVar(&f.devices, "devices", 100, "number of simulated devices")
	fl.IntVar(&f.imageSize, "image-size", 256<<10, "size in `bytes` of the firmware images (factory and --job)")
	fl.Int64Var(&f.linkRate, "link-rate", 0, "simulated link speed of each device in `bytes/s` (0: unlimited)")
	fl.Float64Var(&f.failPercent, "fail-percent", 0, "share of the devices, in `percent`, whose new image fails its self-test")
	fl.Float64Var(&f.offlinePercent, "offline-percent", 0, "share of the devices, in `percent`, that never connect")
	fl.StringVar(&f.group, "group", "sim-fleet", "thing `group` holding the fleet")
	fl.StringVar(&f.prefix, "prefix", "sim-", "thing name `prefix` (things are PREFIX00001, ...)")
	fl.StringVar(&f.dir, "dir", "", "keep the fleet's credentials and image key in `DIR` (default: the --local DIR's sim-fleet)")
	fl.BoolVar(&f.job, "job", false, "create a job for the group (image 1.0.1 of --image-size bytes) once the fleet is connected")
	fl.IntVar(&f.rollout, "rollout-per-minute", 0, "with --job: the job's maximum rollout rate (`N` things a minute; 0: none)")
	fl.Float64Var(&f.abortPercent, "abort-failure-percent", 0, "with --job: cancel the job when this `percent` of executions fail (0: never)")
	fl.IntVar(&f.abortMin, "abort-min-executed", 0, "with --job: executions that must finish before the abort rule applies (default 1)")
	fl.IntVar(&f.connecting, "connecting", 200, "devices connecting at once (a bound on the connection storm)")
	fl.DurationVar(&f.settle, "settle", 0, "once every device is connected, wait this long before the job and measure the cloud's memory again (a settled, idle fleet)")
	fl.IntVar(&f.downloading, "downloading", 1000, "devices downloading at once (the network they share; 0: no bound)")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Minute, "give up after this long (provisioning included)")
	fl.BoolVar(&f.hugePages, "huge-pages", true, hugePagesUsage)
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write the fleet process's CPU profile to `FILE` (go tool pprof)")
	fl.MarkHidden("cpuprofile")
	fl.StringVar(&f.pprofAddr, "pprof", "", "serve the fleet process's profiles (net/http/pprof) on `ADDR`")
	fl.MarkHidden("pprof")
	return cmd
}

func runSimFleet(e *env, t *target, f simFleetFlags) error {
	defer startHugePages(e, f.hugePages)()
	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return usagef("--cpuprofile: %v", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if f.pprofAddr != "" {
		stop, err := servePprof(f.pprofAddr)
		if err != nil {
			return usagef("--pprof: %v", err)
		}
		defer stop()
	}
	oc, ep, err := t.client(e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(e.ctx, f.timeout)
	defer cancel()
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return err
	}
	signer, err := fleetKey(f.dir)
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(ep.CAFile)
	if err != nil {
		return fmt.Errorf("reading the local cloud's CA (caFile of %s/endpoints.json): %w", t.local, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%s holds no PEM certificate: restart the local cloud to rewrite it", ep.CAFile)
	}
	cloud := procOf(ep.PID)
	base := cloud.rss()
	if ep.PID > 0 {
		for _, w := range fileLimitWarnings(f.devices, f.downloading, ep.PID) {
			fmt.Fprintf(e.errOut, "warning: %s\n", w)
		}
	}

	began := time.Now()
	creds, made, err := provisionFleet(ctx, e, oc, f)
	if err != nil {
		return err
	}
	if made > 0 {
		fmt.Fprintf(e.errOut, "provisioned %d %s in %.1fs (thing, certificate, attachment, group %s); kept in %s\n",
			made, plural(made, "thing"), time.Since(began).Seconds(), f.group, filepath.Join(f.dir, fleetDevices))
	}

	factory, err := sim.SignedAppImage(fleetFrom, f.imageSize, signer)
	if err != nil {
		return err
	}
	fl, err := fleetsim.New(fleetsim.Config{
		Devices: creds, Endpoint: ep.MQTT, RootCAs: roots, ServerName: "localhost",
		Factory: factory, Keys: []*mcuboot.PublicKey{signer.Public()}, MaxImage: int64(f.imageSize) + 4096,
		LinkRate: f.linkRate, FailPercent: f.failPercent, OfflinePercent: f.offlinePercent,
		Connecting: f.connecting, Downloading: f.downloading, Agent: agent.Config{ProgressPercent: 50}, Logger: e.logger(),
	})
	if err != nil {
		return err
	}
	defer fl.Close()

	live := newFleetLive(e, fl)
	defer live.stop()
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runDone := make(chan error, 1)
	connStart := time.Now()
	go func() { runDone <- fl.Run(runCtx) }()
	running := true
	defer func() {
		// Whatever ends the command, the devices stop before it returns.
		if running {
			stopRun()
			<-runDone
		}
	}()

	var connTook time.Duration
	select {
	case <-fl.Connected():
		connTook = time.Since(connStart)
		live.printf("%d %s connected in %.1fs\n", fl.Online(), plural(fl.Online(), "device"), connTook.Seconds())
	case err := <-runDone:
		running = false
		return fmt.Errorf("the fleet stopped before every device connected: %w", err)
	case <-ctx.Done():
		return fmt.Errorf("only %d of %d devices connected within --timeout %v: is the cloud's MQTT port %s reachable?", fl.Counts()[fleetsim.Connected], fl.Online(), f.timeout, ep.MQTT)
	}
	idle := cloud.rss()
	settled := int64(-1)
	if f.settle > 0 {
		live.printf("every device connected: waiting %v (--settle) before measuring the cloud's memory again\n", f.settle)
		t := time.NewTimer(f.settle)
		select {
		case <-t.C:
		case err := <-runDone:
			t.Stop()
			running = false
			return fmt.Errorf("the fleet stopped while it settled: %w", err)
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		settled = cloud.rss()
	}

	var jobID string
	var created time.Time
	if f.job {
		if jobID, created, err = createFleetJob(ctx, oc, f, signer); err != nil {
			return err
		}
		live.printf("created job %s for group %s\n", jobID, f.group)
	} else {
		live.printf("waiting for a job for group %s (awsfota job create --local %s --group %s --image FILE signed with %s)\n",
			f.group, t.local, f.group, filepath.Join(f.dir, fleetKeyFile))
	}

	// Until the job is over on the cloud's side and no device is between
	// accepting it and reporting.
	var runErr error
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	jobStatus := ""
wait:
	for {
		select {
		case runErr = <-runDone:
			running = false
			break wait
		case <-ctx.Done():
			if e.ctx.Err() != nil {
				return e.ctx.Err()
			}
			runErr = fmt.Errorf("the update did not finish within --timeout %v", f.timeout)
			break wait
		case <-poll.C:
		}
		if jobID == "" {
			jobID, created = firstJob(fl.Results())
			if jobID == "" {
				continue
			}
			if d, err := oc.DescribeJob(ctx, jobID); err == nil && !d.CreatedAt.IsZero() {
				created = d.CreatedAt
			}
		}
		d, err := oc.DescribeJob(ctx, jobID)
		if err != nil {
			continue
		}
		jobStatus = d.Status
		c := fl.Counts()
		busy := c[fleetsim.Downloading] + c[fleetsim.OnTrial] + c[fleetsim.Connecting]
		if busy == 0 && (d.Status == string(iottypes.JobStatusCompleted) || d.Status == string(iottypes.JobStatusCanceled) ||
			c[fleetsim.Done]+c[fleetsim.Failed]+c[fleetsim.Canceled] == fl.Online()) {
			break
		}
	}
	stopRun()
	if running {
		running = false
		if err := <-runDone; err != nil && runErr == nil {
			runErr = err
		}
	}
	live.stop()

	fleetSummary(e.out, fl, f, fleetReport{connTook: connTook, jobID: jobID, jobStatus: jobStatus, created: created,
		baseRSS: base, idleRSS: idle, settledRSS: settled, settle: f.settle, peakRSS: cloud.hwm(), cloudPID: ep.PID})
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	return nil
}

// fleetKey reads (or makes, the first time) the key the fleet's devices
// trust.
func fleetKey(dir string) (*mcuboot.PrivateKey, error) {
	path := filepath.Join(dir, fleetKeyFile)
	if b, err := os.ReadFile(path); err == nil {
		k, err := mcuboot.ParsePrivateKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w (delete it and the fleet makes a new key)", path, err)
		}
		return k, nil
	}
	k, err := mcuboot.GenerateKey(mcuboot.KeyECDSAP256)
	if err != nil {
		return nil, err
	}
	b, err := k.MarshalPEM()
	if err != nil {
		return nil, err
	}
	return k, os.WriteFile(path, b, 0o600)
}

// provisionFleet returns the credentials of things PREFIX00001..N, making
// the ones the fleet's file does not hold yet (and all of them when the
// cloud does not know the file's: a new data directory), and puts them all
// in the thing group (a new group gets the things made before too).
func provisionFleet(ctx context.Context, e *env, oc *operator.Client, f simFleetFlags) ([]fleetsim.Credentials, int, error) {
	path := filepath.Join(f.dir, fleetDevices)
	have := map[string]fleetsim.Credentials{}
	if b, err := os.ReadFile(path); err == nil {
		for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l == "" {
				continue
			}
			var c fleetsim.Credentials
			if err := json.Unmarshal([]byte(l), &c); err != nil || c.Thing == "" {
				return nil, 0, fmt.Errorf("%s line %d is not a device's credentials: delete the file to provision the fleet again", path, i+1)
			}
			have[c.Thing] = c
		}
	}
	names := make([]string, f.devices)
	for i := range names {
		names[i] = fmt.Sprintf("%s%05d", f.prefix, i+1)
	}
	if c, ok := have[names[0]]; ok {
		if _, err := oc.DescribeThing(ctx, c.Thing); operator.IsNotFound(err) {
			have = map[string]fleetsim.Credentials{} // another cloud's
			if err := os.Remove(path); err != nil {
				return nil, 0, err
			}
		} else if err != nil {
			return nil, 0, err
		}
	}
	// The things already in the group (CreateThingGroup succeeds again
	// for a group that exists, as on AWS: ask for its members).
	members := map[string]bool{}
	var nf *iottypes.ResourceNotFoundException
	if _, err := oc.IoT.DescribeThingGroup(ctx, &iot.DescribeThingGroupInput{ThingGroupName: aws.String(f.group)}); errors.As(err, &nf) {
		if _, err := oc.IoT.CreateThingGroup(ctx, &iot.CreateThingGroupInput{ThingGroupName: aws.String(f.group)}); err != nil {
			return nil, 0, fmt.Errorf("creating thing group %s: %w", f.group, err)
		}
	} else if err != nil {
		return nil, 0, fmt.Errorf("looking up thing group %s: %w", f.group, err)
	} else {
		p := iot.NewListThingsInThingGroupPaginator(oc.IoT, &iot.ListThingsInThingGroupInput{ThingGroupName: aws.String(f.group), MaxResults: aws.Int32(250)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, 0, fmt.Errorf("listing the things in group %s: %w", f.group, err)
			}
			for _, t := range page.Things {
				members[t] = true
			}
		}
	}
	var work []string // things to make, or to put in the group
	made := 0
	for _, n := range names {
		if _, ok := have[n]; !ok {
			made++
			work = append(work, n)
		} else if !members[n] {
			work = append(work, n)
		}
	}
	if len(work) == 0 {
		return credsOf(have, names), 0, nil
	}
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, 0, err
	}
	w := bufio.NewWriter(out)
	var mu sync.Mutex
	bar := e.progress("provisioning things", int64(len(work)))
	done := 0
	err = inParallel(ctx, len(work), 16, func(k int) error {
		name := work[k]
		mu.Lock()
		_, known := have[name]
		mu.Unlock()
		var th *operator.Thing
		if !known {
			var err error
			if th, err = oc.CreateThing(ctx, name, "", nil); err != nil {
				return fmt.Errorf("provisioning %s: %w", name, err)
			}
		}
		if _, err := oc.IoT.AddThingToThingGroup(ctx, &iot.AddThingToThingGroupInput{ThingName: aws.String(name), ThingGroupName: aws.String(f.group)}); err != nil {
			return fmt.Errorf("adding %s to thing group %s: %w", name, f.group, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if th != nil {
			c := fleetsim.Credentials{Thing: name, CertPEM: th.CertificatePEM, KeyPEM: th.PrivateKeyPEM}
			have[name] = c
			b, _ := json.Marshal(c)
			w.Write(append(b, '\n'))
		}
		done++
		bar.Set(int64(done))
		return nil
	})
	bar.Done()
	if ferr := errors.Join(w.Flush(), out.Sync(), out.Close()); err == nil {
		err = ferr
	}
	if err != nil {
		return nil, 0, err
	}
	return credsOf(have, names), made, nil
}

func credsOf(have map[string]fleetsim.Credentials, names []string) []fleetsim.Credentials {
	creds := make([]fleetsim.Credentials, len(names))
	for i, n := range names {
		creds[i] = have[n]
	}
	return creds
}

// inParallel runs f(0..n-1) on workers goroutines until the first error
// (or ctx's end), which it returns.
func inParallel(ctx context.Context, n, workers int, f func(i int) error) error {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					next.Store(int64(n)) // the others stop
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) == 0 && ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.Join(errs...)
}

// createFleetJob publishes a 1.0.1 image for the group, as `job create
// --local DIR --group GROUP` does, and returns the job and when it was made.
func createFleetJob(ctx context.Context, oc *operator.Client, f simFleetFlags, signer *mcuboot.PrivateKey) (string, time.Time, error) {
	img, err := sim.SignedAppImage(fleetTo, f.imageSize, signer)
	if err != nil {
		return "", time.Time{}, err
	}
	path := filepath.Join(f.dir, fmt.Sprintf("app-%s-%d.bin", fleetTo, f.imageSize))
	if err := os.WriteFile(path, img, 0o644); err != nil {
		return "", time.Time{}, err
	}
	p, err := oc.Prepare(operator.JobOptions{Image: path, Groups: []string{f.group}, Bucket: localBucket, CreateBucket: true,
		JobID:            fmt.Sprintf("sim-fleet-%s-%d", strings.ReplaceAll(fleetTo, ".", "_"), time.Now().UnixMilli()),
		RolloutPerMinute: f.rollout, AbortFailurePercent: f.abortPercent, AbortMinExecuted: f.abortMin,
		Description: fmt.Sprintf("awsfota sim fleet: %d devices, %s to %s", f.devices, fleetFrom, fleetTo)})
	if err != nil {
		return "", time.Time{}, err
	}
	res, err := oc.Create(ctx, p, nil)
	if err != nil {
		return "", time.Time{}, err
	}
	created := time.Now()
	if d, err := oc.DescribeJob(ctx, res.JobID); err == nil && !d.CreatedAt.IsZero() {
		created = d.CreatedAt
	}
	return res.JobID, created, nil
}

// firstJob is the job the first device to accept one accepted, and when.
func firstJob(rs []fleetsim.Result) (string, time.Time) {
	var (
		id    string
		first time.Time
	)
	for _, r := range rs {
		if r.JobID != "" && !r.Started.IsZero() && (first.IsZero() || r.Started.Before(first)) {
			id, first = r.JobID, r.Started
		}
	}
	return id, first
}

type fleetReport struct {
	connTook                  time.Duration
	jobID, jobStatus          string
	created                   time.Time
	baseRSS, idleRSS, peakRSS int64 // KiB; -1 unknown
	settledRSS                int64 // KiB after settle; -1 not measured
	settle                    time.Duration
	cloudPID                  int
}

// fleetSummary prints the table at the end of a run.
func fleetSummary(w io.Writer, fl *fleetsim.Fleet, f simFleetFlags, r fleetReport) {
	rs := fl.Results()
	c := fl.Counts()
	var took []time.Duration
	var last time.Time
	reasons := map[string]int{}
	for _, x := range rs {
		if x.Phase == fleetsim.Done && x.JobID == r.jobID && !r.created.IsZero() {
			took = append(took, x.End.Sub(r.created))
			if x.End.After(last) {
				last = x.End
			}
		}
		if x.Phase == fleetsim.Failed {
			reasons[orDash(x.Reason)]++
		}
	}
	slices.Sort(took)
	var rows [][]string
	row := func(k, v string) { rows = append(rows, []string{k, v}) }
	row("devices", fmt.Sprintf("%d (%d offline)", len(rs), c[fleetsim.Offline]))
	row("connected in", fmt.Sprintf("%.1f s", r.connTook.Seconds()))
	row("job", orDash(r.jobID)+" "+strings.ToLower(r.jobStatus))
	row("succeeded", strconv.Itoa(c[fleetsim.Done]))
	failed := fmt.Sprint(c[fleetsim.Failed])
	if len(reasons) > 0 {
		var parts []string
		for k, n := range reasons {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
		slices.Sort(parts)
		failed += " (" + strings.Join(parts, ", ") + ")"
	}
	row("failed", failed)
	row("canceled", strconv.Itoa(c[fleetsim.Canceled]))
	row("not updated", strconv.Itoa(c[fleetsim.Connected]+c[fleetsim.Connecting]+c[fleetsim.Downloading]+c[fleetsim.OnTrial]))
	if len(took) > 0 {
		span := last.Sub(r.created)
		row("all SUCCEEDED after", fmt.Sprintf("%.1f s (from the job's creation)", span.Seconds()))
		row("time to SUCCEEDED", fmt.Sprintf("p50 %.1f s  p90 %.1f s  p99 %.1f s", pct(took, 50).Seconds(), pct(took, 90).Seconds(), pct(took, 99).Seconds()))
		row("updates per minute", strconv.Itoa(int(float64(len(took))/span.Minutes())))
	} else {
		row("updates per minute", "0")
	}
	row("bytes served", strconv.FormatInt(fl.BytesServed(), 10))
	row("connection errors", strconv.FormatInt(fl.ConnErrors(), 10))
	switch {
	case r.peakRSS < 0:
		row("cloud peak RSS", "unknown (the cloud's pid is not in endpoints.json, or it runs elsewhere)")
	default:
		row("cloud peak RSS", fmt.Sprintf("%d MiB (pid %d, VmHWM)", r.peakRSS>>10, r.cloudPID))
		if r.idleRSS >= 0 && r.baseRSS >= 0 && fl.Online() > 0 {
			row("cloud RSS connected", fmt.Sprintf("%d MiB, %.1f KiB per device over the %d MiB before they connected",
				r.idleRSS>>10, float64(r.idleRSS-r.baseRSS)/float64(fl.Online()), r.baseRSS>>10))
		}
		if r.settledRSS >= 0 && r.baseRSS >= 0 && fl.Online() > 0 {
			row("cloud RSS settled", fmt.Sprintf("%d MiB, %.1f KiB per device after %v connected and idle",
				r.settledRSS>>10, float64(r.settledRSS-r.baseRSS)/float64(fl.Online()), r.settle))
		}
	}
	printTable(w, rows)
	// The devices left behind, so that one can look at them.
	shown := 0
	for _, x := range rs {
		if x.Phase == fleetsim.Offline || x.Phase == fleetsim.Done || x.Phase == fleetsim.Failed || x.Phase == fleetsim.Canceled {
			continue
		}
		if shown == 0 {
			fmt.Fprintln(w, "devices not done:")
		}
		if shown++; shown > 10 {
			fmt.Fprintln(w, "  ...")
			break
		}
		last := ""
		if x.ConnErr != nil {
			last = fmt.Sprintf(" (%d failed connection attempts; last: %v)", x.ConnErrors, x.ConnErr)
		}
		fmt.Fprintf(w, "  %s %s%s\n", x.Thing, x.Phase, last)
	}
}

// pct is the p-th percentile of sorted durations (nearest rank).
func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}

// cloudProc reads another process's memory from /proc.
type cloudProc int

func procOf(pid int) cloudProc { return cloudProc(pid) }

func (p cloudProc) field(name string) int64 {
	if p <= 0 {
		return -1
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(int(p)), "status"))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

func (p cloudProc) rss() int64 { return p.field("VmRSS") }

// openFiles is the process's limit on open files (its soft RLIMIT_NOFILE,
// from /proc/PID/limits; pid 0 is this process), or -1 when unknown or
// unlimited.
func openFiles(pid int) int64 {
	who := "self"
	if pid > 0 {
		who = strconv.Itoa(pid)
	}
	b, err := os.ReadFile(filepath.Join("/proc", who, "limits"))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Max open files"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return n
				}
			}
		}
	}
	return -1
}

// fileLimitWarnings says which of the two processes may run out of file
// descriptors with n devices of which at most downloading (0: all) download
// at once: each device holds an MQTT connection and, while it downloads, an
// HTTP one, in the fleet and in the cloud alike (and a reconnecting device
// briefly two MQTT connections). A process out of them refuses
// connections, and the devices spend minutes backing off.
func fileLimitWarnings(n, downloading int, cloudPID int) []string {
	if downloading <= 0 || downloading > n {
		downloading = n
	}
	need := int64(n + downloading + 512)
	var out []string
	for _, p := range []struct {
		who string
		pid int
	}{{"this process (the fleet)", 0}, {"the cloud (pid " + strconv.Itoa(cloudPID) + ")", cloudPID}} {
		if lim := openFiles(p.pid); lim >= 0 && lim < need {
			out = append(out, fmt.Sprintf("%s may open at most %d files; %d devices need about %d (an MQTT connection each and an HTTP one for each download at once): raise the limit (ulimit -n %d) before starting it, or bound the downloads (--downloading)", p.who, lim, n, need, need))
		}
	}
	return out
}
func (p cloudProc) hwm() int64 { return p.field("VmHWM") }

// fleetLive prints the fleet's counts to stderr while it runs: redrawn in
// place on a terminal, a line every few seconds otherwise.
type fleetLive struct {
	e     *env
	fl    *fleetsim.Fleet
	tty   bool
	mu    sync.Mutex
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	start time.Time
}

func newFleetLive(e *env, fl *fleetsim.Fleet) *fleetLive {
	l := &fleetLive{e: e, fl: fl, tty: e.tty(e.errOut), done: make(chan struct{}), start: time.Now()}
	every := 5 * time.Second
	if l.tty {
		every = 250 * time.Millisecond
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-l.done:
				return
			case <-t.C:
				l.draw()
			}
		}
	}()
	return l
}

func (l *fleetLive) line() string {
	c := l.fl.Counts()
	return fmt.Sprintf("%6.1fs  connected %d  downloading %d  on trial %d  done %d  failed %d",
		time.Since(l.start).Seconds(), c[fleetsim.Connected]+c[fleetsim.Downloading]+c[fleetsim.OnTrial]+c[fleetsim.Done]+c[fleetsim.Failed]+c[fleetsim.Canceled],
		c[fleetsim.Downloading], c[fleetsim.OnTrial], c[fleetsim.Done], c[fleetsim.Failed])
}

func (l *fleetLive) draw() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tty {
		fmt.Fprintf(l.e.errOut, "\r\x1b[K%s", l.line())
		return
	}
	fmt.Fprintln(l.e.errOut, l.line())
}

// printf says something between the live lines.
func (l *fleetLive) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tty {
		fmt.Fprint(l.e.errOut, "\r\x1b[K")
	}
	fmt.Fprintf(l.e.errOut, format, args...)
}

func (l *fleetLive) stop() {
	l.once.Do(func() {
		close(l.done)
		l.wg.Wait()
		l.mu.Lock()
		if l.tty {
			fmt.Fprint(l.e.errOut, "\r\x1b[K")
		}
		l.mu.Unlock()
		fmt.Fprintln(l.e.errOut, l.line())
	})
}

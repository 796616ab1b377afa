package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/console"
	"github.com/awsfota/awsfota/operator"
	"github.com/spf13/cobra"
)

// DefaultConsoleAddr is where `awsfota console` listens by default.
const DefaultConsoleAddr = "127.0.0.1:8080"

func consoleCmd(e *env) *cobra.Command {
	var (
		t                       target
		addr, tokenFile, bucket string
		presignRole, keyring    string
	)
	cmd := &cobra.Command{
		Use:   "console [--local DIR] [--addr 127.0.0.1:8080]",
		Short: "Serve the web console: the fleet, live rollouts, publishing, on the local cloud or AWS",
		Long: `console serves a web console for the operator: the fleet and the firmware each
device runs, the jobs with their counts, a job's executions with live download
bars (cancel, delete), publishing an image by drag and drop, and each device's
history. It works over the same AWS SDK calls as the job commands: with
--local DIR against a running local cloud, else against AWS (profile, region,
credentials as for 'awsfota job'). Pages update live: on the local cloud from
its Jobs service's own change stream (no device is read again to see it
move), on AWS by polling with back-off. 'awsfota cloud serve' also serves the
console itself, at /console/ on its HTTP port.

It listens on loopback (127.0.0.1:8080) by default. On any other address it
requires a token: a new one is printed once in the console's URL, or
--token-file FILE keeps it (read from FILE, or written there when FILE does
not exist).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ep, err := t.client(e)
			if err != nil {
				return err
			}
			cfg := console.Config{Client: c, Logger: e.logger()}
			if ep != nil {
				// The local cloud's own change stream, and its broker's
				// connections when it can tell them (not on an external
				// broker).
				cfg.Feed = remote(*ep)
				pctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
				if _, err := emu.ConnectedThings(pctx, *ep); err == nil {
					cfg.Presence = &remotePresence{ep: *ep}
				}
				cancel()
			}
			create := false
			if bucket == "" && t.local != "" {
				bucket, create = localBucket, true
			}
			token, printToken, err := consoleToken(addr, tokenFile)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("console: %w (choose another --addr)", err)
			}
			cfg.Token, cfg.Bucket, cfg.CreateBucket, cfg.PresignRole, cfg.Keyring = token, bucket, create, presignRole, keyring
			srv, err := console.New(cfg)
			if err != nil {
				ln.Close()
				return err
			}
			defer srv.Close()
			url := "http://" + ln.Addr().String() + "/"
			if printToken {
				url = console.WithToken(url, token)
			}
			fmt.Fprintf(e.out, "console serving %s at %s\n", consoleTarget(c), url)
			if bucket == "" {
				fmt.Fprintln(e.errOut, "awsfota: no --bucket: the console shows the fleet and the jobs, and cannot publish images")
			}
			return serveUntilDone(e.ctx, ln, srv)
		},
	}
	t.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&addr, "addr", DefaultConsoleAddr, "listen `address`; anything but loopback requires a token")
	f.StringVar(&tokenFile, "token-file", "", "read the access token from `FILE` (written there, mode 0600, when FILE does not exist)")
	f.StringVar(&bucket, "bucket", "", "S3 `bucket` for published images (local cloud default: "+localBucket+")")
	f.StringVar(&presignRole, "presign-role", "", "IAM role `ARN` AWS IoT assumes to presign image URLs (AWS)")
	f.StringVar(&keyring, "keyring", "", "verify RAUC bundles against the CA certificates of this PEM `FILE` (the devices' RAUC keyring) before publishing them")
	return cmd
}

func consoleTarget(c *operator.Client) string {
	if c.Local {
		return "the local cloud"
	}
	return "AWS " + c.Region
}

// consoleToken returns the console's token: from tokenFile (made there when
// missing), or a new one when addr is not loopback (print says so: a new
// token is printed once).
func consoleToken(addr, tokenFile string) (token string, print bool, err error) {
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		switch {
		case err == nil:
			if token = strings.TrimSpace(string(b)); len(token) < 16 {
				return "", false, usagef("--token-file %s: the token must have at least 16 characters", tokenFile)
			}
			return token, false, nil
		case !errors.Is(err, os.ErrNotExist):
			return "", false, usagef("--token-file: %v", err)
		}
		if token, err = console.NewToken(); err != nil {
			return "", false, err
		}
		if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
			return "", false, fmt.Errorf("--token-file: %w", err)
		}
		return token, true, nil
	}
	if console.IsLoopback(addr) {
		return "", false, nil
	}
	token, err = console.NewToken()
	return token, true, err
}

// serveUntilDone serves h on ln until ctx ends.
func serveUntilDone(ctx context.Context, ln net.Listener, h http.Handler) error {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	<-done
	return nil
}

// mountConsole serves the console on the local cloud's HTTP port at
// /console/, fed by the Jobs service's change stream and, with presence
// (an embedded broker), the broker's connections; it returns the console's
// URL (with the token to print when the port is not loopback) and the
// function that stops it, to call before the cloud closes.
func mountConsole(e *env, cloud *emu.Cloud, presence bool) (string, func(), error) {
	ep := cloud.Endpoints()
	token := ""
	if _, hostPort, _ := strings.Cut(ep.HTTP, "://"); !console.IsLoopback(hostPort) {
		var err error
		if token, err = console.NewToken(); err != nil {
			return "", nil, err
		}
	}
	var roots *x509.CertPool
	if strings.HasPrefix(ep.HTTP, "https://") {
		roots = cloud.CA.Pool() // the port serves TLS with a certificate of the local CA
	}
	c := operator.NewLocal(operator.Endpoint{URL: ep.HTTP, Region: ep.Region, AccessKeyID: ep.AccessKeyID, SecretAccessKey: ep.SecretAccessKey,
		MQTT: ep.MQTT, RootCAs: roots})
	cfg := console.Config{Client: c, Target: "local cloud", Feed: inProcess(cloud.Jobs),
		Prefix: "/console/", Token: token, Bucket: localBucket, CreateBucket: true, Logger: e.logger()}
	if presence {
		cfg.Presence = cloud
	}
	srv, err := console.New(cfg)
	if err != nil {
		return "", nil, err
	}
	cloud.Mount("/console/", srv)
	return console.WithToken(ep.HTTP+"/console/", token), func() { srv.Close() }, nil
}

// jobsFeed is the local cloud's change stream as the console takes it:
// from the Jobs service in this process, or over the HTTP port of a cloud
// in another one (emu.WatchChanges).
type jobsFeed struct {
	// subscribe returns the service's changes until ctx ends (or the
	// subscriber fell behind), then closes the channel.
	subscribe func(ctx context.Context) (<-chan jobsvc.Change, error)
}

// changeBuffer is how many changes may wait for the console before the
// Jobs service drops its subscription (the console then re-reads and
// subscribes again).
const changeBuffer = 4096

// inProcess is the change stream of a Jobs service in this process.
func inProcess(jobs *jobsvc.Service) jobsFeed {
	return jobsFeed{func(ctx context.Context) (<-chan jobsvc.Change, error) {
		w := jobs.Watch(changeBuffer)
		context.AfterFunc(ctx, w.Close)
		return w.C, nil
	}}
}

// remote is the change stream of the local cloud at ep, in another process.
func remote(ep emu.Endpoints) jobsFeed {
	return jobsFeed{func(ctx context.Context) (<-chan jobsvc.Change, error) { return emu.WatchChanges(ctx, ep) }}
}

func (f jobsFeed) Subscribe(ctx context.Context) (<-chan console.Change, error) {
	in, err := f.subscribe(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan console.Change, 64)
	go func() {
		defer close(out)
		for c := range in {
			var cc console.Change
			switch {
			case c.Kind == jobsvc.ChangeExecution && c.Execution != nil:
				x := c.Execution
				cc = console.Change{JobID: x.JobID, Thing: x.Thing}
				if !c.Deleted {
					e := operator.ExecutionOf(sdkExecution(x))
					cc.Execution = &e
				}
			case c.Kind == jobsvc.ChangeJob && c.Job != nil:
				cc = console.Change{JobID: c.Job.ID}
			default:
				continue
			}
			select {
			case out <- cc:
			case <-ctx.Done():
				for range in { // until the subscription closes it
				}
				return
			}
		}
	}()
	return out, nil
}

// remotePresence asks the local cloud in another process which things are
// connected, at most every presenceTTL.
type remotePresence struct {
	ep     emu.Endpoints
	mu     sync.Mutex
	at     time.Time
	things map[string]bool
}

const presenceTTL = 2 * time.Second

func (p *remotePresence) Connected(thing string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.at) > presenceTTL {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		things, err := emu.ConnectedThings(ctx, p.ep)
		cancel()
		p.things, p.at = map[string]bool{}, time.Now()
		if err == nil {
			for _, t := range things {
				p.things[t] = true
			}
		}
	}
	return p.things[thing]
}

// sdkExecution is a local execution as the AWS SDK describes one.
func sdkExecution(x *jobsvc.Execution) *iottypes.JobExecution {
	t := func(v time.Time) *time.Time {
		if v.IsZero() {
			return nil
		}
		return &v
	}
	n, force := x.ExecutionNumber, x.ForceCanceled
	return &iottypes.JobExecution{JobId: &x.JobID, ThingArn: &x.Thing, Status: iottypes.JobExecutionStatus(x.Status),
		StatusDetails: &iottypes.JobExecutionStatusDetails{DetailsMap: x.StatusDetails}, VersionNumber: x.VersionNumber,
		ExecutionNumber: &n, ForceCanceled: &force, QueuedAt: t(x.QueuedAt), StartedAt: t(x.StartedAt), LastUpdatedAt: t(x.LastUpdatedAt)}
}

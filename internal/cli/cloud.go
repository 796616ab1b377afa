package cli

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/awsfota/awsfota/cloud/broker"
	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/spf13/cobra"
)

// defaultDataDir is where `cloud serve` keeps its state unless told: in the
// current directory, hidden, and in .gitignore, so that a cloud started in a
// source tree leaves its database, credentials and CA key out of it.
const defaultDataDir = ".awsfota/cloud"

func cloudCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cloud",
		Short: "Run the local cloud",
	}
	cmd.AddCommand(cloudServeCmd(e), cloudMosquittoCmd(e))
	return cmd
}

// beforeConsole, when set (by tests), runs in `cloud serve` after the cloud
// started and before the console is mounted on its HTTP port.
var beforeConsole func(dataDir string)

func cloudServeCmd(e *env) *cobra.Command {
	var cfg emu.Config
	var policyFile, cpuProfile, pprofAddr string
	var hugePages bool
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Serve the local cloud (MQTT broker, AWS IoT Jobs and control plane, S3) until interrupted",
		Long: `serve runs the local cloud until interrupted (Ctrl-C or SIGTERM): an MQTT broker
on mutual TLS with AWS IoT's device rules, the AWS IoT Jobs service, and one
HTTP port serving both the AWS IoT control-plane API and an S3-compatible object
store (the AWS SDKs and the AWS CLI work against it with --endpoint-url).
State lives in --data DIR (default .awsfota/cloud, in the current directory)
and survives a restart. The addresses, credentials and CA file are written
to DIR/endpoints.json; port 0 picks a free port and the file holds the real
one. Other commands reach this cloud with --local DIR.

With --external-mqtt the cloud runs no broker of its own: its Jobs service
attaches to that broker (e.g. Mosquitto, configured by
'awsfota cloud mosquitto-config') as a privileged client.

With --https the HTTP port serves TLS with a certificate of the local CA,
as AWS serves only HTTPS: presigned URLs in job documents are https://, and
clients trust the CA (endpoints.json caFile; the AWS CLI: AWS_CA_BUNDLE).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			defer startHugePages(e, hugePages)()
			cfg.Logger = e.logger()
			if cpuProfile != "" {
				pf, err := os.Create(cpuProfile)
				if err != nil {
					return usagef("--cpuprofile: %v", err)
				}
				defer pf.Close()
				if err := pprof.StartCPUProfile(pf); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			if pprofAddr != "" {
				stop, err := servePprof(pprofAddr)
				if err != nil {
					return usagef("--pprof: %v", err)
				}
				defer stop()
			}
			if policyFile != "" {
				b, err := os.ReadFile(policyFile)
				if err != nil {
					return usagef("--policy: %v", err)
				}
				if cfg.Policy, err = broker.ParsePolicy(b); err != nil {
					return usagef("--policy %s: %v", policyFile, err)
				}
			}
			cfg.DeferEndpoints = true // written once the console answers too
			c, err := emu.Start(cfg)
			var le *emu.ListenError
			if errors.As(err, &le) && errors.Is(err, syscall.EADDRINUSE) {
				flag := map[string]string{"MQTT": "--mqtt-addr", "HTTP": "--http-addr"}[le.API]
				return fmt.Errorf("the %s address %s is already in use (another local cloud?): stop what listens there, or choose another address with %s (port 0 picks a free one; endpoints.json then holds it)", le.API, le.Addr, flag)
			}
			if err != nil {
				return err
			}
			// Not only under -v: these objects are not served.
			for _, p := range c.Objects.LoadProblems() {
				fmt.Fprintf(e.errOut, "warning: object store: a record could not be loaded and its object is not served: %s\n", p)
			}
			if beforeConsole != nil {
				beforeConsole(cfg.DataDir)
			}
			consoleURL, stopConsole, err := mountConsole(e, c, cfg.ExternalMQTT == "")
			if err != nil {
				c.Close()
				return err
			}
			if err := c.WriteEndpoints(); err != nil {
				stopConsole()
				c.Close()
				return err
			}
			ep := c.Endpoints()
			broker := "MQTT (mutual TLS)   "
			if cfg.ExternalMQTT != "" {
				broker = "MQTT (external)     "
			}
			fmt.Fprintf(e.out, "local cloud serving\n  %s%s\n  AWS IoT and S3 API  %s (region %s)\n  CA certificate      %s\n  endpoints file      %s/%s\n  web console         %s\n",
				broker, ep.MQTT, ep.HTTP, ep.Region, ep.CAFile, cfg.DataDir, emu.EndpointsFile, consoleURL)
			<-e.ctx.Done()
			fmt.Fprintln(e.out, "shutting down")
			stopConsole()
			return c.Close()
		},
	}
	serve.Flags().StringVar(&cfg.DataDir, "data", defaultDataDir, "keep the cloud's state in `DIR`")
	serve.Flags().StringVar(&cfg.MQTTAddr, "mqtt-addr", emu.DefaultMQTTAddr, "MQTT listen `address`")
	serve.Flags().StringVar(&cfg.HTTPAddr, "http-addr", emu.DefaultHTTPAddr, "HTTP (AWS IoT and S3 APIs) listen `address`")
	serve.Flags().StringSliceVar(&cfg.ServerNames, "server-name", nil, "extra host `name` or IP the broker's certificate is valid for")
	serve.Flags().StringVar(&policyFile, "policy", "", "AWS IoT policy document (JSON) the broker applies to every device, instead of the default (each thing under its own $aws/things/<thing>/)")
	serve.Flags().StringVar(&cfg.ExternalMQTT, "external-mqtt", "", "attach the Jobs service to the MQTT broker at `host:port` (TLS, trusting the local CA) instead of running one")
	serve.Flags().BoolVar(&cfg.HTTPS, "https", false, "serve the HTTP port (S3 and IoT APIs, presigned URLs) over TLS with a certificate of the local CA")
	serve.Flags().Float64Var(&cfg.DeviceRequestRate, "device-request-rate", 0, "answer RequestThrottled when a thing makes more than `N` Jobs requests a second (0: no limit)")
	serve.Flags().IntVar(&cfg.DeviceRequestBurst, "device-request-burst", 0, "Jobs requests a thing may make at once under --device-request-rate (default: the rate)")
	serve.Flags().DurationVar(&cfg.JobDeletionDelay, "job-deletion-delay", jobsvc.DefaultDeletionDelay, "how long DeleteJob takes (the job shows DELETION_IN_PROGRESS meanwhile)")
	serve.Flags().BoolVar(&hugePages, "huge-pages", true, hugePagesUsage)
	serve.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write the cloud's CPU profile to `FILE` when it stops (go tool pprof)")
	serve.Flags().MarkHidden("cpuprofile")
	serve.Flags().StringVar(&pprofAddr, "pprof", "", "serve Go's profiles (net/http/pprof) on `address`, for measuring the cloud")
	serve.Flags().MarkHidden("pprof")
	return serve
}

func cloudMosquittoCmd(e *env) *cobra.Command {
	var dataDir, listen string
	var names []string
	cmd := &cobra.Command{
		Use:   "mosquitto-config",
		Short: "Write a Mosquitto configuration that makes Mosquitto the local cloud's broker",
		Long: `mosquitto-config writes DIR/mosquitto/ (mosquitto.conf, an ACL, a server
certificate from the local CA) so that Mosquitto serves MQTT over mutual TLS for
the local cloud: each device certificate confined to $aws/things/<thing>/ of
the things it is attached to, the Jobs service allowed everywhere, certificates
that are not ACTIVE refused through a revocation list. The cloud rewrites the
ACL and the list from its registry when it starts and when a certificate is
attached, detached or changes state, and makes Mosquitto reload them (SIGHUP).
Then:

  mosquitto -c DIR/mosquitto/mosquitto.conf
  awsfota cloud serve --data DIR --external-mqtt ADDRESS`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := emu.WriteMosquittoConfig(dataDir, listen, names...)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.out, "wrote %s (ACL %s)\nrun:\n  mosquitto -c %s\n  awsfota cloud serve --data %s --external-mqtt %s\n", f.Conf, f.ACL, f.Conf, dataDir, listen)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", defaultDataDir, "the local cloud's data `DIR`")
	cmd.Flags().StringVar(&listen, "listen", emu.DefaultMQTTAddr, "the `address` Mosquitto listens on")
	cmd.Flags().StringSliceVar(&names, "server-name", nil, "extra host `name` or IP Mosquitto's certificate is valid for")
	return cmd
}

// servePprof serves the runtime's profiles on addr until stop.
func servePprof(addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", httppprof.Index)
	mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	return func() { srv.Close(); <-done }, nil
}

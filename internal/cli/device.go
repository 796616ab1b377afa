package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/device/dfu/mcubootslot"
	"github.com/awsfota/awsfota/device/download"
	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/device/mqttconn"
	"github.com/awsfota/awsfota/device/runner"
	"github.com/awsfota/awsfota/device/state"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/mcuboot"
	"github.com/awsfota/awsfota/sim"
	"github.com/spf13/cobra"
)

// exitReboot is the exit code of `device run` when the device must reboot
// into the image it has just scheduled.
const exitReboot = 3

func deviceCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "device", Short: "Run the device agent"}
	var (
		config, stateDir, endpoint, simVersion, simKey string
		simulate                                       bool
		simLinkRate                                    int64
	)
	run := &cobra.Command{
		Use:   "run --config DEVICE.json --state DIR",
		Short: "Run the FOTA agent as a thing until interrupted",
		Long: `run connects to AWS IoT (or the local cloud) as the thing DEVICE.json names and
runs the FOTA agent: it takes the thing's jobs, downloads images into the
secondary slot, verifies them, requests the swap, and after the reboot confirms
the image and reports the outcome.

With --sim the device is simulated in --state DIR: flash slots in files, an
MCUboot-like bootloader that performs the swap, and reboots done in-process; a
new device starts with firmware --sim-version.

Without --sim the slots are the files DEVICE.json names ("slots"), and when the
agent asks for a reboot the command exits with status 3: reboot the device (its
bootloader then swaps), and run the command again to confirm and report.

A Linux device names its installer in DEVICE.json's "target": "rauc" (RAUC
over D-Bus) or "exec" (the device's own install, version and confirm
commands). The command then runs as a long-lived service (deploy/awsfota.service,
Type=notify with a watchdog): it runs the reboot command when an update needs
one, and after the reboot checks what runs, runs the health check and reports.
See docs/linux.md.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if config == "" || stateDir == "" {
				return usagef("device run needs --config DEVICE.json and --state DIR")
			}
			f, err := readDeviceFile(config)
			if err != nil {
				return err
			}
			if endpoint != "" {
				f.Endpoint = endpoint
			}
			if simulate {
				if k := f.Target.kind(); k != targetMCUboot {
					return usagef("--sim simulates an MCUboot device, and %s names target %q: drop --sim to run it", config, k)
				}
				return runSimDevice(e, f, stateDir, simVersion, simKey, simLinkRate)
			}
			return runRealDevice(e, f, stateDir)
		},
	}
	run.Flags().StringVar(&config, "config", "", "the device file (`DEVICE.json`, as `awsfota thing create` writes it)")
	run.Flags().StringVar(&stateDir, "state", "", "keep the agent's state (and with --sim the flash) in `DIR`")
	run.Flags().StringVar(&endpoint, "endpoint", "", "MQTT `host:port`, overriding the device file")
	run.Flags().BoolVar(&simulate, "sim", false, "simulate the device's flash and bootloader in --state")
	run.Flags().StringVar(&simVersion, "sim-version", "1.0.0", "firmware `version` a new simulated device runs")
	run.Flags().Int64Var(&simLinkRate, "sim-link-rate", 0, "limit the simulated device's downloads to `BYTES` per second (0: unlimited)")
	run.Flags().StringVar(&simKey, "sim-key", "", "sign a new simulated device's firmware with this private `KEY.pem` (needed when DEVICE.json has trustedKeys)")
	cmd.AddCommand(run)
	return cmd
}

// eventPrinter prints the agent's events as log lines.
func eventPrinter(e *env, thing string) func(agent.AppEvent) {
	last, lastInstall := -1, -1
	return func(ev agent.AppEvent) {
		switch ev.Kind {
		case agent.EventInstalling:
			if ev.Percent/10 == lastInstall/10 && ev.Percent != 100 {
				return
			}
			lastInstall = ev.Percent
			fmt.Fprintf(e.out, "%s: job %s: installing %d%% (%s)\n", thing, ev.JobID, ev.Percent, ev.Message)
		case agent.EventProgress:
			if ev.Percent/10 == last/10 && ev.Percent != 100 {
				return
			}
			last = ev.Percent
			fmt.Fprintf(e.out, "%s: job %s: %d%% (%d of %d bytes)\n", thing, ev.JobID, ev.Percent, ev.Bytes, ev.Total)
		case agent.EventStart:
			last, lastInstall = -1, -1
			fmt.Fprintf(e.out, "%s: job %s: started\n", thing, ev.JobID)
		case agent.EventDone:
			fmt.Fprintf(e.out, "%s: job %s: %s image %s verified, rebooting into it\n", thing, ev.JobID, ev.ImageType, ev.Version)
		case agent.EventError:
			fmt.Fprintf(e.out, "%s: job %s: failed: %s: %s\n", thing, ev.JobID, ev.Reason, ev.Message)
		case agent.EventRetry:
			fmt.Fprintf(e.out, "%s: job %s: %s\n", thing, ev.JobID, ev.Message)
		case agent.EventCanceled:
			fmt.Fprintf(e.out, "%s: job %s: canceled by the cloud (%s)\n", thing, ev.JobID, ev.Message)
		case agent.EventCompleted:
			fmt.Fprintf(e.out, "%s: job %s: reported %s\n", thing, ev.JobID, ev.Status)
		}
	}
}

func runSimDevice(e *env, f *deviceFile, dir, version, keyFile string, linkRate int64) error {
	cert, keys, roots, err := f.credentials()
	if err != nil {
		return err
	}
	// Everything a new device needs is checked, and its firmware made,
	// before a file is created in dir: a refusal leaves nothing that a
	// corrected command would take for a device that exists.
	var factory []byte
	if _, err := os.Stat(filepath.Join(dir, "primary.bin")); errors.Is(err, os.ErrNotExist) {
		var signer *mcuboot.PrivateKey
		switch {
		case keyFile != "":
			b, err := os.ReadFile(keyFile)
			if err != nil {
				return fmt.Errorf("--sim-key: %w", err)
			}
			if signer, err = mcuboot.ParsePrivateKeyPEM(b); err != nil {
				return fmt.Errorf("--sim-key %s: %w", keyFile, err)
			}
		case len(keys) > 0:
			return usagef("the device's bootloader trusts keys (trustedKeys), so a new simulated device needs firmware signed by one of them: pass --sim-key PRIVATE.pem")
		}
		if factory, err = sim.SignedAppImage(version, 64<<10, signer); err != nil {
			return usagef("--sim-version: %v", err)
		}
	}
	geo, _ := f.slotGeometry() // the simulated slots: DEVICE.json's "slots" size, if given
	conn := &connReporter{e: e, thing: f.Thing}
	d, err := sim.OpenDevice(sim.DeviceConfig{
		Geometry: geo,
		Dir:      dir, Thing: f.Thing, Endpoint: f.Endpoint, Certificate: cert, RootCAs: roots, ServerName: f.ServerName, Keys: keys, LinkRate: linkRate,
		Agent: f.agentConfig(), Download: f.downloadConfig(roots), OnEvent: eventPrinter(e, f.Thing), Logger: e.logger(),
		OnConnError: conn.failed, OnConnUp: conn.up,
		OnBoot: func(res sim.BootResult, run dfu.Running) {
			state := "confirmed"
			if !run.Confirmed {
				state = "on trial"
			}
			fmt.Fprintf(e.out, "%s: booted %s (%s, swap %s)\n", f.Thing, run.Version, state, res.Swap)
		},
	})
	if err != nil {
		return err
	}
	defer d.Close()
	if factory != nil {
		if err := d.Install(factory); err != nil {
			return err
		}
		fmt.Fprintf(e.out, "%s: new simulated device in %s running %s\n", f.Thing, dir, version)
	}
	err = d.Run(e.ctx)
	if errors.Is(err, context.Canceled) && e.ctx.Err() != nil {
		return nil
	}
	return err
}

// connReporter tells the user on stderr, without -v, why a device cannot
// connect: the first failed attempt with the delay before the next one, and
// again only when the cause changes, not at every attempt of a device that
// retries for ever; then that it connected.
type connReporter struct {
	e     *env
	thing string

	mu   sync.Mutex
	last string // the cause last reported; "" while connected
	told bool   // that it keeps trying, and when it speaks again
}

func (r *connReporter) failed(err error) {
	var ce *mqttconn.ConnectError
	key := err.Error()
	if errors.As(err, &ce) {
		key = string(ce.Cause)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if key == r.last {
		return
	}
	r.last = key
	if ce == nil {
		fmt.Fprintf(r.e.errOut, "%s: %v\n", r.thing, err)
		return
	}
	fmt.Fprintf(r.e.errOut, "%s: cannot connect: %v\n%s: trying again in %v", r.thing, ce.Err, r.thing, ce.Retry.Round(time.Millisecond))
	if !r.told {
		r.told = true
		fmt.Fprint(r.e.errOut, ", then less and less often; this is said again only if the cause changes (-v logs every attempt)")
	}
	fmt.Fprintln(r.e.errOut)
}

func (r *connReporter) up() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last != "" {
		fmt.Fprintf(r.e.errOut, "%s: connected\n", r.thing)
	}
	r.last = ""
}

func runRealDevice(e *env, f *deviceFile, dir string) error {
	if f.Target.kind() != targetMCUboot {
		return runLinuxDevice(e, f, dir)
	}
	g, err := f.geometry()
	if err != nil {
		return err
	}
	cert, keys, roots, err := f.credentials()
	if err != nil {
		return err
	}
	primary, err := flash.OpenFile(f.path(f.Slots.Primary), g)
	if err != nil {
		return err
	}
	defer primary.Close()
	secondary, err := flash.OpenFile(f.path(f.Slots.Secondary), g)
	if err != nil {
		return err
	}
	defer secondary.Close()
	store, err := state.OpenDir(dir)
	if err != nil {
		return err
	}
	fetcher := download.New(f.downloadConfig(roots))
	defer fetcher.CloseIdleConnections()
	r, err := runner.New(runner.Config{
		Agent: f.agentConfig(), Store: store, Fetcher: fetcher, Logger: e.logger(),
		Target:  mcubootslot.NewTarget(secondary, mcubootslot.Options{Keys: keys}),
		Boot:    mcubootslot.NewPrimary(primary, mcubootslot.Options{Keys: keys}),
		OnEvent: eventPrinter(e, f.Thing),
	})
	if err != nil {
		return err
	}
	conn, err := dialThing(e, f, cert, roots, r)
	if err != nil {
		return err
	}
	svc := startService(e.ctx)
	svc.running(r)
	err = r.Run(e.ctx, conn)
	svc.stop()
	conn.Close()
	switch {
	case errors.Is(err, runner.ErrReboot):
		fmt.Fprintf(e.out, "%s: reboot the device now: the bootloader installs the new image, and the next run confirms and reports it\n", f.Thing)
		return exitCode(exitReboot)
	case errors.Is(err, context.Canceled) && e.ctx.Err() != nil:
		return nil
	}
	return err
}

// exitCode ends a command with a specific exit status, silently.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// dialThing connects to the broker as the thing, for runner r.
func dialThing(e *env, f *deviceFile, cert tls.Certificate, roots *x509.CertPool, r *runner.Runner) (*mqttconn.Conn, error) {
	conn := &connReporter{e: e, thing: f.Thing}
	return mqttconn.Dial(e.ctx, mqttconn.Config{
		Endpoint: f.Endpoint, ClientID: f.Thing, Certificate: cert, RootCAs: roots, ServerName: f.ServerName, ALPN: f.ALPN,
		SessionExpiry: time.Hour, // persistent: notifications sent while away arrive on reconnect
		Filters:       iotjobs.DeviceFilters(f.Thing), OnMessage: r.Deliver, OnDown: r.Disconnected,
		OnUp:    func() { conn.up(); r.Connected() },
		OnError: conn.failed,
		Logger:  e.logger(),
	})
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/device/dfu/exectarget"
	"github.com/awsfota/awsfota/device/dfu/rauc"
	"github.com/awsfota/awsfota/device/download"
	"github.com/awsfota/awsfota/device/runner"
	"github.com/awsfota/awsfota/device/state"
)

// rebootCommandTimeout bounds the reboot command (it should return at once).
const rebootCommandTimeout = 2 * time.Minute

// linuxTarget is what `device run` needs of a Linux device's installer.
type linuxTarget struct {
	target   dfu.Target
	boot     runner.Boot
	selfTest func(context.Context) error
	close    func()
}

// openLinuxTarget builds the rauc or exec target the device file names.
func openLinuxTarget(e *env, f *deviceFile, stateDir string) (*linuxTarget, error) {
	ts := f.Target
	staging := f.path(ts.Staging)
	if staging == "" {
		staging = filepath.Join(stateDir, "staging", "image")
	}
	var check func(context.Context) error
	if !ts.HealthCheck.IsZero() {
		check = func(ctx context.Context) error {
			// The agent's self-test deadline bounds it (ctx).
			_, err := ts.HealthCheck.Run(ctx, "the health check", 0, nil)
			return err
		}
	}
	switch ts.kind() {
	case targetRAUC:
		svc, err := rauc.Dial(ts.DBus)
		if err != nil {
			return nil, err
		}
		tg, err := rauc.New(rauc.Config{Service: svc, Staging: staging, MaxSize: ts.MaxSize, Logger: e.logger()})
		if err != nil {
			svc.Close()
			return nil, err
		}
		return &linuxTarget{target: tg, boot: tg, selfTest: tg.CheckHealth(check), close: func() { svc.Close() }}, nil
	case targetExec:
		tg, err := exectarget.New(exectarget.Config{Staging: staging, MaxSize: ts.MaxSize, Install: ts.Install, Version: ts.Version,
			Confirm: ts.Confirm, Compatible: ts.Compatible})
		if err != nil {
			return nil, err
		}
		return &linuxTarget{target: tg, boot: tg, selfTest: check, close: func() {}}, nil
	}
	return nil, fmt.Errorf("no Linux target %q", ts.kind())
}

// runLinuxDevice runs the agent on a Linux device as a long-lived service:
// when the agent asks for a reboot it runs the reboot command and waits to
// be stopped by the shutdown; if no shutdown comes (a reboot command that
// restarts only an application, or a reboot that did not happen) the agent
// starts again in this process and reports what runs.
func runLinuxDevice(e *env, f *deviceFile, dir string) error {
	cert, _, roots, err := f.credentials()
	if err != nil {
		return err
	}
	store, err := state.OpenDir(dir)
	if err != nil {
		return err
	}
	lt, err := openLinuxTarget(e, f, dir)
	if err != nil {
		return err
	}
	defer lt.close()
	fetcher := download.New(f.downloadConfig(roots))
	defer fetcher.CloseIdleConnections()
	svc := startService(e.ctx)
	defer svc.stop()
	cfg := f.agentConfig()
	if cfg.SelfTestTimeout == 0 {
		cfg.SelfTestTimeout = f.Target.HealthCheck.Timeout
	}
	printer := eventPrinter(e, f.Thing)
	for {
		r, err := runner.New(runner.Config{
			Agent: cfg, Store: store, Fetcher: fetcher, Logger: e.logger(),
			Target: lt.target, Boot: lt.boot, SelfTest: lt.selfTest,
			OnEvent: func(ev agent.AppEvent) {
				printer(ev)
				svc.status(statusLine(ev))
			},
		})
		if err != nil {
			return err
		}
		conn, err := dialThing(e, f, cert, roots, r)
		if err != nil {
			return err
		}
		svc.running(r)
		err = r.Run(e.ctx, conn)
		svc.running(nil)
		conn.Close()
		switch {
		case errors.Is(err, context.Canceled) && e.ctx.Err() != nil:
			return nil
		case !errors.Is(err, runner.ErrReboot):
			return err
		}
		reboot := f.Target.reboot()
		fmt.Fprintf(e.out, "%s: rebooting (%s)\n", f.Thing, reboot)
		svc.status("rebooting")
		if _, err := reboot.Run(e.ctx, "the reboot command", rebootCommandTimeout, nil); err != nil {
			if e.ctx.Err() != nil {
				return nil // the shutdown stopped us: the reboot is under way
			}
			return fmt.Errorf("%w; when the agent starts again it reports what the device runs", err)
		}
		wait := time.NewTimer(f.Target.rebootWait())
		select {
		case <-e.ctx.Done():
			wait.Stop()
			return nil
		case <-wait.C:
		}
		fmt.Fprintf(e.out, "%s: still running %v after the reboot command: checking what the device runs\n", f.Thing, f.Target.rebootWait())
	}
}

// statusLine is an event as systemd's status line.
func statusLine(ev agent.AppEvent) string {
	switch ev.Kind {
	case agent.EventStart:
		return "job " + ev.JobID + ": downloading"
	case agent.EventProgress:
		return fmt.Sprintf("job %s: downloading %d%%", ev.JobID, ev.Percent)
	case agent.EventInstalling:
		return fmt.Sprintf("job %s: installing %d%% (%s)", ev.JobID, ev.Percent, ev.Message)
	case agent.EventDone:
		return "job " + ev.JobID + ": installed, rebooting"
	case agent.EventError:
		return "job " + ev.JobID + ": failed: " + ev.Reason
	case agent.EventCompleted:
		return fmt.Sprintf("idle; job %s reported %s", ev.JobID, ev.Status)
	case agent.EventCanceled:
		return "idle; job " + ev.JobID + " canceled"
	}
	return ""
}

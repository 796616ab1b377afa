package cli

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// notifySocket plays systemd: it sets NOTIFY_SOCKET (and WATCHDOG_USEC) for
// the test and returns the notifications the process sends.
func notifySocket(t *testing.T, watchdogUsec string) <-chan string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", watchdogUsec)
	msgs := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := l.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return msgs
}

type stuckAgent struct{}

func (stuckAgent) Ping(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

// onceAgent answers until stuck is set.
type onceAgent struct {
	stuck atomic.Bool
	pings atomic.Int32
}

func (a *onceAgent) Ping(ctx context.Context) error {
	if a.stuck.Load() {
		a.pings.Add(1)
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

type liveAgent struct{}

func (liveAgent) Ping(context.Context) error { return nil }

// The watchdog is fed only while the agent's loop answers: a stuck loop
// starves it, so that systemd restarts the service.
func TestWatchdogStarvesWhenTheAgentIsStuck(t *testing.T) {
	msgs := notifySocket(t, "40000")
	next := func() string {
		select {
		case m := <-msgs:
			return m
		case <-time.After(10 * time.Second):
			t.Fatal("no notification")
		}
		return ""
	}

	// An agent that answered once, then got stuck.
	flaky := &onceAgent{}
	s := startService(context.Background())
	s.running(flaky)
	if m := next(); m != "READY=1" {
		t.Fatalf("first notification %q", m)
	}
	for next() != "WATCHDOG=1" {
	}
	flaky.stuck.Store(true)
	// Drain what was sent before it got stuck.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for flaky.pings.Load() < 2 {
		select {
		case <-msgs:
		case <-tick.C:
		case <-deadline:
			t.Fatal("no pings")
		}
	}
	for len(msgs) > 0 {
		<-msgs
	}
	// Ten watchdog periods with a stuck agent: silence (but for one
	// notification sent before it got stuck and still on its way).
	quiet := time.After(10 * 40 * time.Millisecond)
	for n := 0; ; {
		select {
		case m := <-msgs:
			if n++; n > 1 {
				t.Fatalf("notified %q while the agent is stuck", m)
			}
			continue
		case <-quiet:
		}
		break
	}
	s.running(liveAgent{})
	for next() != "WATCHDOG=1" {
	}
	// An agent still starting (it never answered) keeps the watchdog fed.
	s.running(stuckAgent{})
	for range 3 {
		if m := next(); m != "WATCHDOG=1" {
			t.Fatalf("starting agent: %q", m)
		}
	}
	s.stop()
	for next() != "STOPPING=1" {
	}
}

// The unit in deploy/ runs the command this package has, the way service
// expects: Type=notify with a watchdog, restarted on failure, its state under
// /var/lib/awsfota.
func TestDeployedUnit(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "awsfota.service"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	for k, want := range map[string]string{"Type": "notify", "NotifyAccess": "main", "Restart": "on-failure", "StateDirectory": "awsfota"} {
		if keys[k] != want {
			t.Errorf("%s=%q, want %q", k, keys[k], want)
		}
	}
	if d, err := time.ParseDuration(strings.Replace(keys["WatchdogSec"], "min", "m", 1)); keys["WatchdogSec"] == "" || err != nil || d < time.Minute {
		t.Errorf("WatchdogSec=%q: want a watchdog of minutes (an install may keep the agent's loop busy)", keys["WatchdogSec"])
	}
	args := strings.Fields(keys["ExecStart"])
	if len(args) < 3 || args[0] != "/usr/bin/awsfota" {
		t.Fatalf("ExecStart=%q", keys["ExecStart"])
	}
	root := deviceCmd(&env{})
	cmd, rest, err := root.Find(args[2:])
	if err != nil || cmd.Name() != "run" {
		t.Fatalf("ExecStart runs %v: %v", args[1:], err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("ExecStart's flags: %v", err)
	}
	if st, _ := cmd.Flags().GetString("state"); st != "/var/lib/awsfota" {
		t.Errorf("--state %q, want the StateDirectory", st)
	}
}

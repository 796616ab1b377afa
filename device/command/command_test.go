package command

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunArgvAndShell(t *testing.T) {
	out, err := Command{Argv: []string{"/bin/sh", "-c", "echo \"$GREETING\"; echo to-stderr >&2"}}.Run(context.Background(), "the test", time.Minute, []string{"GREETING=hello"})
	if err != nil {
		t.Fatal(err)
	}
	if out != "hello\nto-stderr\n" {
		t.Fatalf("output %q", out)
	}
	out, err = Command{Shell: "printf '%s' \"$A$B\""}.Run(context.Background(), "the test", 0, []string{"A=x", "B=y"})
	if err != nil || out != "xy" {
		t.Fatalf("%q %v", out, err)
	}
}

func TestRunFailureCarriesExitStatusAndOutput(t *testing.T) {
	_, err := Command{Shell: "echo working; echo 'disk full' >&2; exit 7"}.Run(context.Background(), "the install command", time.Minute, nil)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %T %v", err, err)
	}
	if ce.ExitCode != 7 || !strings.Contains(ce.Output, "disk full") {
		t.Fatalf("%+v", ce)
	}
	if want := "the install command (echo working; echo 'disk full' >&2; exit 7) failed with exit status 7: working\ndisk full"; err.Error() != want {
		t.Fatalf("message %q\nwant     %q", err, want)
	}
}

func TestRunTimeoutKillsTheProcessGroup(t *testing.T) {
	start := time.Now()
	// The child sleep inherits the pipes: unless the group is killed, Run
	// would wait for it.
	_, err := Command{Shell: "sleep 30 & sleep 30; echo never", Timeout: 200 * time.Millisecond}.Run(context.Background(), "the health check", 0, nil)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("error %v, want a timeout", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("took %v: the group was not killed", d)
	}
	if !strings.Contains(err.Error(), "did not finish in time") {
		t.Fatalf("message %q", err)
	}
}

func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Command{Argv: []string{"sleep", "30"}}.Run(ctx, "x", time.Minute, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
}

func TestRunMissingProgram(t *testing.T) {
	_, err := Command{Argv: []string{"/nonexistent/tool"}}.Run(context.Background(), "the version command", time.Minute, nil)
	var ce *Error
	if !errors.As(err, &ce) || ce.ExitCode != -1 || !strings.Contains(err.Error(), "/nonexistent/tool") {
		t.Fatalf("%v", err)
	}
	if _, err := (Command{}).Run(context.Background(), "the confirm command", 0, nil); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("%v", err)
	}
}

func TestOutputKeepsTheTail(t *testing.T) {
	out, err := Command{Shell: "head -c 10000 /dev/zero | tr '\\0' a; echo; echo THE-END"}.Run(context.Background(), "x", time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "…") || !strings.HasSuffix(out, "THE-END\n") || len(out) > OutputLimit+len("…") {
		t.Fatalf("output of %d bytes: %q…%q", len(out), out[:10], out[len(out)-10:])
	}
}

func TestJSON(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Command
		err  string
	}{
		{in: `{"command":["/bin/tool","-x"],"timeoutSeconds":90}`, want: Command{Argv: []string{"/bin/tool", "-x"}, Timeout: 90 * time.Second}},
		{in: `{"command":"systemctl reboot"}`, want: Command{Shell: "systemctl reboot"}},
		{in: `{"command":[]}`, err: "empty list"},
		{in: `{"command":""}`, err: "empty string"},
		{in: `{}`, err: "missing"},
		{in: `{"command":42}`, err: "list of strings"},
		{in: `{"command":"x","timeoutSeconds":-1}`, err: "positive"},
		{in: `[1]`, err: "a command is"},
	} {
		var got Command
		err := json.Unmarshal([]byte(c.in), &got)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got.String() != c.want.String() || got.Timeout != c.want.Timeout || (len(got.Argv) > 0) != (len(c.want.Argv) > 0) {
			t.Errorf("%s: %+v %v, want %+v", c.in, got, err, c.want)
			continue
		}
		b, _ := json.Marshal(got)
		var back Command
		if err := json.Unmarshal(b, &back); err != nil || back.String() != got.String() || back.Timeout != got.Timeout {
			t.Errorf("%s: round trip %s → %+v %v", c.in, b, back, err)
		}
	}
}

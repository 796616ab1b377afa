// Package command runs the commands a Linux device's file names — install an
// image, reboot, print the running version, confirm, check health — with a
// timeout, an environment, and their output captured for the job's report.
//
// A Command is an argv (run directly) or a shell line (run by /bin/sh -c).
// Its output (stdout and stderr together) is kept up to OutputLimit bytes,
// the last ones: a failing tool prints its error at the end. An error from
// Run is an *Error carrying the exit status and that output, so that a FAILED
// job says what the tool said.
//
// It imports only the standard library; it must never import cloud/* or
// sim/.
package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// OutputLimit is how many bytes of a command's output are kept (the last
// ones).
const OutputLimit = 4096

// Command is a configured command. In a device file it is written
//
//	{"command": ["/usr/bin/tool", "arg"], "timeoutSeconds": 60}
//
// or with "command" as one string, which /bin/sh -c runs.
type Command struct {
	// Argv is the program and its arguments.
	Argv []string
	// Shell, when Argv is empty, is a line for /bin/sh -c.
	Shell string
	// Timeout bounds a run; 0 takes the default the caller gives.
	Timeout time.Duration
}

// IsZero reports whether no command is configured.
func (c Command) IsZero() bool { return len(c.Argv) == 0 && c.Shell == "" }

// String is the command as a person would type it.
func (c Command) String() string {
	if len(c.Argv) == 0 {
		return c.Shell
	}
	return strings.Join(c.Argv, " ")
}

type wire struct {
	Command        json.RawMessage `json:"command"`
	TimeoutSeconds float64         `json:"timeoutSeconds,omitempty"`
}

// UnmarshalJSON reads {"command": [...] or "...", "timeoutSeconds": N}.
func (c *Command) UnmarshalJSON(b []byte) error {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("a command is {\"command\": [\"program\", \"arg\"...] or \"shell line\", \"timeoutSeconds\": N}: %w", err)
	}
	*c = Command{}
	if w.TimeoutSeconds < 0 {
		return fmt.Errorf("timeoutSeconds %v: give a positive number of seconds (or leave it out for the default)", w.TimeoutSeconds)
	}
	c.Timeout = time.Duration(w.TimeoutSeconds * float64(time.Second))
	raw := bytes.TrimSpace(w.Command)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return errors.New("\"command\" is missing: give the program and its arguments as a list, or a shell line as a string")
	case raw[0] == '"':
		if err := json.Unmarshal(raw, &c.Shell); err != nil {
			return err
		}
		if strings.TrimSpace(c.Shell) == "" {
			return errors.New("\"command\" is an empty string")
		}
	default:
		if err := json.Unmarshal(raw, &c.Argv); err != nil {
			return fmt.Errorf("\"command\" must be a list of strings or one string: %w", err)
		}
		if len(c.Argv) == 0 || c.Argv[0] == "" {
			return errors.New("\"command\" is an empty list: give the program first")
		}
	}
	return nil
}

// MarshalJSON writes the form UnmarshalJSON reads.
func (c Command) MarshalJSON() ([]byte, error) {
	var cmd any = c.Argv
	if len(c.Argv) == 0 {
		cmd = c.Shell
	}
	w := struct {
		Command        any     `json:"command"`
		TimeoutSeconds float64 `json:"timeoutSeconds,omitempty"`
	}{cmd, c.Timeout.Seconds()}
	return json.Marshal(w)
}

// ErrTimeout is wrapped by the *Error of a command killed at its timeout.
var ErrTimeout = errors.New("command: timed out")

// Error is a command that failed: it could not start, exited non-zero, was
// killed, or timed out.
type Error struct {
	What    string // what the command was for ("the install command")
	Command string
	// ExitCode is the exit status, -1 when the command did not exit by itself.
	ExitCode int
	Output   string // the last OutputLimit bytes of stdout and stderr
	Err      error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s) ", e.What, e.Command)
	switch {
	case errors.Is(e.Err, ErrTimeout):
		b.WriteString("did not finish in time and was killed")
	case e.ExitCode > 0:
		fmt.Fprintf(&b, "failed with exit status %d", e.ExitCode)
	default:
		fmt.Fprintf(&b, "failed: %v", e.Err)
	}
	if out := strings.TrimSpace(e.Output); out != "" {
		b.WriteString(": ")
		b.WriteString(out)
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// tail keeps the last max bytes written to it.
type tail struct {
	mu    sync.Mutex
	max   int
	buf   []byte
	total int64
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total += int64(len(p))
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(t.buf)
	if t.total > int64(len(t.buf)) {
		s = "…" + s
	}
	return s
}

// Run runs c with the extra environment env ("NAME=value", added to the
// device's own), within c.Timeout (or def when c has none), and returns its
// output. what names the command in errors ("the health check"). When ctx
// ends or the time is up, the command and the processes it started are
// killed.
func (c Command) Run(ctx context.Context, what string, def time.Duration, env []string) (string, error) {
	if c.IsZero() {
		return "", fmt.Errorf("%s is not configured", what)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = def
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, ErrTimeout)
		defer cancel()
	}
	var cmd *exec.Cmd
	if len(c.Argv) > 0 {
		cmd = exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	} else {
		cmd = exec.CommandContext(ctx, "/bin/sh", "-c", c.Shell)
	}
	out := &tail{max: OutputLimit}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	killGroup(cmd)
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err == nil {
		return out.String(), nil
	}
	e := &Error{What: what, Command: c.String(), ExitCode: -1, Output: out.String(), Err: err}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		e.ExitCode = ee.ExitCode()
	}
	if ctx.Err() != nil {
		e.Err = context.Cause(ctx)
	}
	return e.Output, e
}

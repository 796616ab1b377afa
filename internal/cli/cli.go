// Package cli is the awsfota command line: one file per subcommand, each
// wiring flags to the packages that do the work. cmd/awsfota/main.go calls
// Run and nothing else; output goes to the writers Run is given, so tests run
// commands in-process.
//
// Only cmd/awsfota may import it.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and what it checked failed
	exitUsage   = 2 // bad flags or arguments
)

// usageError marks errors in how the command was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// noArgs refuses positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// env is what every command gets: output writers and the context.
type env struct {
	ctx     context.Context
	out     io.Writer
	errOut  io.Writer
	verbose bool
}

// tty reports whether w is a terminal (progress is drawn only then).
func tty(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// logger logs to stderr with -v, and nowhere otherwise.
func (e *env) logger() *slog.Logger {
	if !e.verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(e.errOut, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Run runs the command line args and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, out: stdout, errOut: stderr}
	root := &cobra.Command{
		Use:   "awsfota",
		Short: "Firmware over the air through AWS IoT Jobs, on AWS or on a local cloud",
		Long: `awsfota updates device firmware over the air through AWS IoT Jobs (MQTT over
mutual TLS) and HTTP(S) downloads, and carries a local cloud that behaves like
the parts of AWS a FOTA user touches.

Start with:  awsfota demo`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version(),
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(args)
	root.PersistentFlags().BoolVarP(&e.verbose, "verbose", "v", false, "log what happens to stderr")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(demoCmd(e), cloudCmd(e), versionCmd(e), deviceCmd(e), fetchCmd(e), deltaCmd(e), imageCmd(e), jobCmd(e), thingCmd(e), consoleCmd(e))

	err := root.ExecuteContext(ctx)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "awsfota: %v\nRun 'awsfota --help' for usage.\n", err)
		return exitUsage
	case errors.Is(err, errSilent):
		return exitFailure
	case errors.As(err, new(exitCode)):
		var c exitCode
		errors.As(err, &c)
		return int(c)
	default:
		fmt.Fprintf(stderr, "awsfota: %v\n", err)
		return exitFailure
	}
}

// errSilent ends a command that already explained its failure.
var errSilent = errors.New("failed")

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

func versionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(e.out, "awsfota", version())
			return nil
		},
	}
}

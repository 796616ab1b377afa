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
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailure     = 1   // the command ran and what it checked failed
	exitUsage       = 2   // bad flags or arguments
	exitInterrupted = 130 // interrupted (Ctrl-C or SIGTERM), as shells report 128+SIGINT
)

// usageError marks errors in how the command was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// name is a command as a user types it after "awsfota" ("image verify"):
// messages are printed after "awsfota: ", which must not repeat.
func name(cmd *cobra.Command) string {
	if !cmd.HasParent() {
		return cmd.Name()
	}
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

// noArgs refuses positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", name(cmd), args)
	}
	return nil
}

// exactArgs refuses any other number of positional arguments than n with a
// usage error that says what they are.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s, got %d %s", name(cmd), what, len(args), plural(len(args), "argument"))
		}
		return nil
	}
}

// plural returns word as a count of n needs it: "1 record", "2 records".
func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// subcommandArgs is the Args of a command that only groups others: it has
// no work of its own, so a missing or unknown subcommand is a usage error
// that names the subcommands (and the one meant, if a name is mistyped).
func subcommandArgs(cmd *cobra.Command, args []string) error {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	if len(args) == 0 {
		return usagef("%s needs a command: %s (see %s --help)", name(cmd), strings.Join(names, ", "), cmd.CommandPath())
	}
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's own default for its root
	}
	msg := fmt.Sprintf("unknown command %q for %s", args[0], name(cmd))
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(": did you mean %s?", strings.Join(s, " or "))
	} else {
		msg += ": use " + strings.Join(names, ", ")
	}
	return usageError{errors.New(msg)}
}

// groupCommands makes every command under root that has subcommands and no
// work of its own refuse a missing or unknown subcommand (cobra would print
// the help and exit 0, so that `awsfota job creat` looked like success).
func groupCommands(root *cobra.Command) {
	if root.HasSubCommands() && root.Run == nil && root.RunE == nil {
		root.Args = subcommandArgs
		root.RunE = func(*cobra.Command, []string) error { return nil } // never reached: Args refuses every call
	}
	for _, c := range root.Commands() {
		groupCommands(c)
	}
}

// env is what every command gets: output writers and the context.
type env struct {
	ctx     context.Context
	out     io.Writer
	errOut  io.Writer
	verbose bool

	// localWait is how long a command given --local DIR waits for a local
	// cloud that does not answer yet (one started a moment ago).
	localWait time.Duration
	// progressAfter is how long work runs before its progress is drawn: a
	// bar that flashes for a few milliseconds is noise.
	progressAfter time.Duration
	// terminal reports whether w is a terminal; nil: isTerminal.
	terminal func(w io.Writer) bool
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// tty reports whether w is a terminal (progress is drawn only then).
func (e *env) tty(w io.Writer) bool {
	if e.terminal != nil {
		return e.terminal(w)
	}
	return isTerminal(w)
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
	return execute(&env{ctx: ctx, out: stdout, errOut: stderr, localWait: 5 * time.Second, progressAfter: 500 * time.Millisecond}, args)
}

// newRoot builds the command tree.
func newRoot(e *env) *cobra.Command {
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
	root.PersistentFlags().BoolVarP(&e.verbose, "verbose", "v", false, "log what happens to stderr")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(demoCmd(e), cloudCmd(e), versionCmd(e), deviceCmd(e), fetchCmd(e), deltaCmd(e), imageCmd(e), jobCmd(e), thingCmd(e), consoleCmd(e), simCmd(e))
	groupCommands(root)
	return root
}

// execute runs args with e and returns the process exit code.
func execute(e *env, args []string) int {
	root := newRoot(e)
	root.SetOut(e.out)
	root.SetErr(e.errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(e.ctx)
	switch {
	case err == nil:
		return exitOK
	case e.ctx.Err() != nil && !errors.As(err, new(exitCode)):
		// Interrupted (the failure follows from it, whatever the error
		// chain says): the user knows, and nothing went wrong.
		return exitInterrupted
	case errors.As(err, new(usageError)):
		fmt.Fprintf(e.errOut, "awsfota: %v\nRun 'awsfota --help' for usage.\n", err)
		return exitUsage
	case errors.Is(err, errSilent):
		return exitFailure
	case errors.As(err, new(exitCode)):
		var c exitCode
		errors.As(err, &c)
		return int(c)
	default:
		fmt.Fprintf(e.errOut, "awsfota: %v\n", err)
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

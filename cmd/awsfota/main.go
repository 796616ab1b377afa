// Command awsfota updates device firmware over the air through AWS IoT Jobs,
// on AWS or on the local cloud it carries. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/awsfota/awsfota/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

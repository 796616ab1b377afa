package cli

import (
	"fmt"

	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/spf13/cobra"
)

func cloudCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cloud",
		Short: "Run the local cloud",
	}
	var cfg emu.Config
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Serve the local cloud (MQTT broker, Jobs, S3) until interrupted",
		Long: `serve runs the local cloud until interrupted (Ctrl-C or SIGTERM): an MQTT broker
on mutual TLS with AWS IoT's device rules, the AWS IoT Jobs service and an
S3-compatible object store. State lives in --data and survives a restart.
The addresses, credentials and CA file are written to DIR/endpoints.json;
port 0 picks a free port and the file holds the real one.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Logger = e.logger()
			c, err := emu.Start(cfg)
			if err != nil {
				return err
			}
			ep := c.Endpoints()
			fmt.Fprintf(e.out, "local cloud serving\n  MQTT (mutual TLS)  %s\n  S3 / HTTP          %s\n  CA certificate     %s\n  endpoints file     %s/%s\n",
				ep.MQTT, ep.HTTP, ep.CAFile, cfg.DataDir, emu.EndpointsFile)
			<-e.ctx.Done()
			fmt.Fprintln(e.out, "shutting down")
			return c.Close()
		},
	}
	serve.Flags().StringVar(&cfg.DataDir, "data", "awsfota-cloud", "keep the cloud's state in `DIR`")
	serve.Flags().StringVar(&cfg.MQTTAddr, "mqtt-addr", emu.DefaultMQTTAddr, "MQTT listen `address`")
	serve.Flags().StringVar(&cfg.HTTPAddr, "http-addr", emu.DefaultHTTPAddr, "HTTP (S3) listen `address`")
	serve.Flags().StringSliceVar(&cfg.ServerNames, "server-name", nil, "extra host `name` or IP the broker's certificate is valid for")
	cmd.AddCommand(serve)
	return cmd
}

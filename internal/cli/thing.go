package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

func thingCmd(e *env) *cobra.Command {
	var t target
	cmd := &cobra.Command{Use: "thing", Short: "Provision things (devices)"}
	t.flags(cmd)
	var out, policy string
	create := &cobra.Command{
		Use:   "create NAME --out DIR",
		Short: "Create a thing with a certificate and write its device files",
		Long: `create registers a thing, creates an ACTIVE certificate and key for it, attaches
them (and --policy, needed on AWS), and writes into DIR what a device needs:
cert.pem, key.pem, ca.pem (the local cloud's CA) and device.json, the file
'awsfota device run --config DIR/device.json' reads.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("thing create takes one NAME, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("thing create needs --out DIR")
			}
			c, ep, err := t.client(e)
			if err != nil {
				return err
			}
			th, err := c.CreateThing(e.ctx, args[0], policy)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			dev := map[string]any{"thing": th.Name, "endpoint": th.Endpoint, "certFile": "cert.pem", "keyFile": "key.pem"}
			files := map[string][]byte{"cert.pem": []byte(th.CertificatePEM), "key.pem": []byte(th.PrivateKeyPEM)}
			if ep != nil {
				ca, err := os.ReadFile(ep.CAFile)
				if err != nil {
					return err
				}
				files["ca.pem"] = ca
				dev["caFile"] = "ca.pem"
			}
			b, _ := json.MarshalIndent(dev, "", "  ")
			files["device.json"] = append(b, '\n')
			for name, data := range files {
				mode := os.FileMode(0o644)
				if name == "key.pem" {
					mode = 0o600
				}
				if err := os.WriteFile(filepath.Join(out, name), data, mode); err != nil {
					return err
				}
			}
			fmt.Fprintf(e.out, "thing %s created (certificate %.12s…), files in %s\nrun it: awsfota device run --config %s --state %s --sim\n",
				th.Name, th.CertificateID, out, filepath.Join(out, "device.json"), filepath.Join(out, "state"))
			return nil
		},
	}
	create.Flags().StringVar(&out, "out", "", "write the device's files to `DIR`")
	create.Flags().StringVar(&policy, "policy", "", "attach this IoT `policy` to the certificate (needed on AWS: see docs/aws.md)")
	cmd.AddCommand(create)
	return cmd
}

package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/awsfota/awsfota/operator"
	"github.com/spf13/cobra"
)

// deviceFiles are the files `thing create` writes, in the order written:
// device.json, which names the others, comes last.
var deviceFiles = []string{"key.pem", "cert.pem", "ca.pem", "device.json"}

func thingCmd(e *env) *cobra.Command {
	var t target
	cmd := &cobra.Command{Use: "thing", Short: "Provision things (devices)"}
	t.flags(cmd)
	var (
		out, policy string
		force       bool
	)
	create := &cobra.Command{
		Use:   "create NAME --out DIR",
		Short: "Create a thing with a certificate and write its device files",
		Long: `create registers a thing, creates an ACTIVE certificate and key for it, attaches
them (and --policy, needed on AWS), and writes into DIR what a device needs:
cert.pem, key.pem, ca.pem (the local cloud's CA) and device.json, the file
'awsfota device run --config DIR/device.json' reads.

It checks what it can before it creates anything (DIR can be written and holds
no device files, unless --force; the cloud answers; the policy exists), and
when a later step fails it deletes the certificate and the thing it made.`,
		Args: exactArgs(1, "one NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("thing create needs --out DIR")
			}
			made, err := prepareOutDir(out, force)
			if err != nil {
				return err
			}
			c, ep, err := t.client(e)
			if err != nil {
				made.remove()
				return err
			}
			files := map[string][]byte{}
			dev := map[string]any{"thing": args[0], "certFile": "cert.pem", "keyFile": "key.pem"}
			if ep != nil {
				ca, err := os.ReadFile(ep.CAFile)
				if err != nil {
					made.remove()
					return fmt.Errorf("reading the local cloud's CA: %w (is %s the data directory of a local cloud?)", err, t.local)
				}
				files["ca.pem"] = ca
				dev["caFile"] = "ca.pem"
			}
			th, err := c.CreateThing(e.ctx, args[0], policy, func(th *operator.Thing) error {
				dev["endpoint"] = th.Endpoint
				b, _ := json.MarshalIndent(dev, "", "  ")
				files["device.json"] = append(b, '\n')
				files["cert.pem"], files["key.pem"] = []byte(th.CertificatePEM), []byte(th.PrivateKeyPEM)
				return made.write(files)
			})
			if err != nil {
				made.remove()
				return err
			}
			fmt.Fprintf(e.out, "thing %s created (certificate %.12s…), files in %s\nrun it: awsfota device run --config %s --state %s --sim\n",
				th.Name, th.CertificateID, out, filepath.Join(out, "device.json"), filepath.Join(out, "state"))
			return nil
		},
	}
	create.Flags().StringVar(&out, "out", "", "write the device's files to `DIR`")
	create.Flags().StringVar(&policy, "policy", "", "attach this IoT `policy` to the certificate (needed on AWS: see docs/aws.md)")
	create.Flags().BoolVar(&force, "force", false, "replace device files already in --out")
	cmd.AddCommand(create)
	t.explainErrors(e, cmd)
	return cmd
}

// outDir is the directory `thing create` writes to, and what it made there.
type outDir struct {
	dir     string
	created bool     // the directory itself
	written []string // files written that did not exist before
}

// prepareOutDir checks that dir can take the device files before anything
// is created in the cloud: it makes dir if needed, checks it can be
// written, and refuses to replace device files without force.
func prepareOutDir(dir string, force bool) (*outDir, error) {
	o := &outDir{dir: dir}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("--out %s: %w", dir, err)
		}
		o.created = true
	case err != nil:
		return nil, fmt.Errorf("--out %s: %w", dir, err)
	case !st.IsDir():
		return nil, usagef("--out %s is a file: give a directory", dir)
	case !force:
		for _, f := range deviceFiles {
			if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
				return nil, usagef("--out %s already holds %s (a device's files): choose another --out, or add --force to replace them", dir, f)
			}
		}
	}
	probe, err := os.CreateTemp(dir, ".awsfota-probe-*")
	if err != nil {
		o.remove()
		return nil, fmt.Errorf("--out %s cannot be written: %w", dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	return o, nil
}

// write writes the files, the key readable by its owner only.
func (o *outDir) write(files map[string][]byte) error {
	for _, name := range deviceFiles {
		data, ok := files[name]
		if !ok {
			continue
		}
		p := filepath.Join(o.dir, name)
		_, err := os.Lstat(p)
		existed := err == nil
		mode := os.FileMode(0o644)
		if name == "key.pem" {
			mode = 0o600
		}
		if err := writeFileAtomic(p, mode, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
			return fmt.Errorf("writing the device files: %w", err)
		}
		if !existed {
			o.written = append(o.written, p)
		}
	}
	return nil
}

// remove removes what o made: the files it wrote that were not there
// before, and the directory if it made it.
func (o *outDir) remove() {
	if o == nil {
		return
	}
	for _, p := range o.written {
		os.Remove(p)
	}
	if o.created {
		os.Remove(o.dir) // only if empty: never what someone else put there
	}
}

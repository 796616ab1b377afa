package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/operator"
	"github.com/spf13/cobra"
)

// target is where the operator commands go: the local cloud (--local DIR)
// or AWS through the standard configuration (profile, region, credentials).
type target struct {
	local   string
	region  string
	profile string
}

func (t *target) flags(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&t.local, "local", "", "use the local cloud whose data `DIR` holds endpoints.json (`awsfota cloud serve --data DIR`)")
	cmd.PersistentFlags().StringVar(&t.region, "region", "", "AWS region (default: from the AWS configuration)")
	cmd.PersistentFlags().StringVar(&t.profile, "profile", "", "AWS profile (default: from the AWS configuration)")
}

// client returns the operator client and, for the local cloud, its endpoints.
func (t *target) client(e *env) (*operator.Client, *emu.Endpoints, error) {
	if t.local != "" {
		ep, err := t.localEndpoints(e)
		if err != nil {
			return nil, nil, err
		}
		var roots *x509.CertPool
		if strings.HasPrefix(ep.HTTP, "https://") {
			// The local cloud serves HTTPS with a certificate of its CA.
			pem, err := os.ReadFile(ep.CAFile)
			if err != nil {
				return nil, nil, fmt.Errorf("reading the local cloud's CA (caFile of %s/endpoints.json): %w", t.local, err)
			}
			roots = x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("%s holds no PEM certificate: restart the local cloud to rewrite it", ep.CAFile)
			}
		}
		return operator.NewLocal(operator.Endpoint{URL: ep.HTTP, Region: ep.Region, AccessKeyID: ep.AccessKeyID, SecretAccessKey: ep.SecretAccessKey,
			MQTT: ep.MQTT, RootCAs: roots}), &ep, nil
	}
	var opts []func(*config.LoadOptions) error
	if t.region != "" {
		opts = append(opts, config.WithRegion(t.region))
	}
	if t.profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(t.profile))
	}
	cfg, err := config.LoadDefaultConfig(e.ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("loading the AWS configuration: %w (or use --local DIR for the local cloud)", err)
	}
	if cfg.Region == "" {
		return nil, nil, usagef("no AWS region: pass --region, set AWS_REGION, or use --local DIR for the local cloud")
	}
	return operator.New(cfg), nil, nil
}

// noLocalCloudError says that no local cloud answers for a --local
// directory, and what to do.
type noLocalCloudError struct {
	where string // the URL, or the directory
	dir   string // --local
}

func (e *noLocalCloudError) Error() string {
	return fmt.Sprintf("no local cloud answers at %s — is `awsfota cloud serve --data %s` running?", e.where, e.dir)
}

func (t *target) noLocalCloud(where string) error {
	return &noLocalCloudError{where: where, dir: t.local}
}

// localEndpoints reads the endpoints of the local cloud kept in t.local and
// checks that it answers. A cloud started a moment ago (in the background,
// by the previous command of a script) is given e.localWait to come up.
func (t *target) localEndpoints(e *env) (emu.Endpoints, error) {
	deadline := time.Now().Add(e.localWait)
	for {
		ep, err := emu.ReadEndpoints(t.local)
		where := t.local + " (no " + emu.EndpointsFile + " yet)"
		if st, serr := os.Stat(t.local); serr != nil || !st.IsDir() {
			where = t.local + " (no such directory)"
		}
		if err == nil {
			where = ep.HTTP
			if err = answers(e.ctx, ep.HTTP); err == nil {
				return ep, nil
			}
		}
		if !time.Now().Before(deadline) {
			return ep, t.noLocalCloud(where)
		}
		select {
		case <-e.ctx.Done():
			return ep, e.ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// answers reports whether something accepts connections at the URL's host.
func answers(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	return c.Close()
}

// explainErrors makes the subcommands of cmd say, when the local cloud stops
// answering while they work, what is wrong and what to do, instead of the
// SDK's chain of errors.
func (t *target) explainErrors(e *env, cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		run := sub.RunE
		if run == nil {
			continue
		}
		sub.RunE = func(cmd *cobra.Command, args []string) error {
			err := run(cmd, args)
			if t.local != "" && e.ctx.Err() == nil && operator.Unreachable(err) && !errors.As(err, new(*noLocalCloudError)) {
				ep, rerr := emu.ReadEndpoints(t.local)
				where := t.local
				if rerr == nil {
					where = ep.HTTP
				}
				return t.noLocalCloud(where)
			}
			return err
		}
	}
}

package cli

import (
	"crypto/x509"
	"fmt"
	"os"
	"strings"

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
		ep, err := emu.ReadEndpoints(t.local)
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

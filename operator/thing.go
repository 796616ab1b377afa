package operator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
)

// Thing is a provisioned thing with its credentials.
type Thing struct {
	Name           string
	ARN            string
	CertificateID  string
	CertificateARN string
	CertificatePEM string
	PrivateKeyPEM  string
	// Endpoint is the MQTT host:port devices connect to: DescribeEndpoint's
	// host name with the client's MQTTPort.
	Endpoint string
}

var thingNameRE = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)

// CreateThing provisions a thing as a device needs it: CreateThing (unless
// the thing exists), CreateKeysAndCertificate (ACTIVE),
// AttachThingPrincipal, and AttachPolicy when a policy is named (real AWS
// needs one: see docs/aws.md), then save (if not nil), which keeps what the
// device needs — the private key exists nowhere else.
//
// It checks all it can before it creates anything: the name, the policy,
// the MQTT endpoint (DescribeEndpoint). When a later step fails, save
// included, it undoes what it did — detaches and deletes the certificate,
// deletes the thing if it made it — so that a failed call leaves nothing
// behind: no thing without a device, no ACTIVE certificate whose key is lost.
func (c *Client) CreateThing(ctx context.Context, name, policy string, save func(*Thing) error) (_ *Thing, err error) {
	if !thingNameRE.MatchString(name) {
		return nil, fmt.Errorf("thing name %q: use 1 to 128 letters, digits, '-', '_' or ':'", name)
	}
	if policy != "" && c.Local {
		return nil, errors.New("the local cloud applies its own policy to every device (awsfota cloud serve --policy FILE): drop --policy, which is for AWS")
	}
	existed := true
	if _, err := c.IoT.DescribeThing(ctx, &iot.DescribeThingInput{ThingName: aws.String(name)}); err != nil {
		var nf *iottypes.ResourceNotFoundException
		if !errors.As(err, &nf) {
			return nil, explain("thing "+name, err)
		}
		existed = false
	}
	if policy != "" {
		if _, err := c.IoT.GetPolicy(ctx, &iot.GetPolicyInput{PolicyName: aws.String(policy)}); err != nil {
			return nil, explain("policy "+policy+" (create it first: see docs/aws.md)", err)
		}
	}
	ep, err := c.IoT.DescribeEndpoint(ctx, &iot.DescribeEndpointInput{EndpointType: aws.String("iot:Data-ATS")})
	if err != nil {
		return nil, explain("reading the MQTT endpoint", err)
	}
	th := &Thing{Name: name, Endpoint: EndpointAddress(aws.ToString(ep.EndpointAddress), c.MQTTPort)}

	// From here on every step is undone if a later one fails.
	var made undo
	defer func() {
		if err == nil {
			return
		}
		if uerr := made.run(ctx); uerr != nil {
			err = fmt.Errorf("%w; undoing what was created failed too: %w (delete certificate %s and, if it has no other certificate, thing %s by hand)",
				err, uerr, orNone(th.CertificateID), name)
		}
	}()
	if !existed {
		t, err := c.IoT.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String(name)})
		if err != nil {
			return nil, explain("creating thing "+name, err)
		}
		th.ARN = aws.ToString(t.ThingArn)
		made.add(func(ctx context.Context) error {
			_, err := c.IoT.DeleteThing(ctx, &iot.DeleteThingInput{ThingName: aws.String(name)})
			return explain("deleting thing "+name, err)
		})
	}
	kc, err := c.IoT.CreateKeysAndCertificate(ctx, &iot.CreateKeysAndCertificateInput{SetAsActive: true})
	if err != nil {
		return nil, explain("creating a certificate", err)
	}
	th.CertificateID, th.CertificateARN = aws.ToString(kc.CertificateId), aws.ToString(kc.CertificateArn)
	th.CertificatePEM = aws.ToString(kc.CertificatePem)
	made.add(func(ctx context.Context) error {
		c.IoT.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: kc.CertificateId, NewStatus: iottypes.CertificateStatusInactive})
		_, err := c.IoT.DeleteCertificate(ctx, &iot.DeleteCertificateInput{CertificateId: kc.CertificateId})
		return explain("deleting certificate "+th.CertificateID, err)
	})
	if kc.KeyPair != nil {
		th.PrivateKeyPEM = aws.ToString(kc.KeyPair.PrivateKey)
	}
	if th.PrivateKeyPEM == "" {
		return nil, errors.New("CreateKeysAndCertificate returned no private key")
	}
	if _, err := c.IoT.AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{ThingName: aws.String(name), Principal: kc.CertificateArn}); err != nil {
		return nil, explain("attaching the certificate to "+name, err)
	}
	made.add(func(ctx context.Context) error {
		_, err := c.IoT.DetachThingPrincipal(ctx, &iot.DetachThingPrincipalInput{ThingName: aws.String(name), Principal: kc.CertificateArn})
		return explain("detaching the certificate from "+name, err)
	})
	if policy != "" {
		if _, err := c.IoT.AttachPolicy(ctx, &iot.AttachPolicyInput{PolicyName: aws.String(policy), Target: kc.CertificateArn}); err != nil {
			return nil, explain("attaching policy "+policy, err)
		}
		made.add(func(ctx context.Context) error {
			_, err := c.IoT.DetachPolicy(ctx, &iot.DetachPolicyInput{PolicyName: aws.String(policy), Target: kc.CertificateArn})
			return explain("detaching policy "+policy, err)
		})
	}
	if save != nil {
		if err := save(th); err != nil {
			return nil, err
		}
	}
	return th, nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// EndpointAddress makes the host:port a device connects to from what
// DescribeEndpoint answered: a host name (AWS; the port is port, or
// DefaultMQTTPort when empty), or a host:port (kept as it is).
func EndpointAddress(answer, port string) string {
	if _, _, err := net.SplitHostPort(answer); err == nil {
		return answer
	}
	if port == "" {
		port = DefaultMQTTPort
	}
	return net.JoinHostPort(strings.Trim(answer, "[]"), port)
}

// DeleteThing undoes CreateThing: detaches and deletes the thing's
// certificates, then the thing.
func (c *Client) DeleteThing(ctx context.Context, name string) error {
	ps, err := c.IoT.ListThingPrincipals(ctx, &iot.ListThingPrincipalsInput{ThingName: aws.String(name)})
	if err != nil {
		return explain("thing "+name, err)
	}
	for _, p := range ps.Principals {
		if _, err := c.IoT.DetachThingPrincipal(ctx, &iot.DetachThingPrincipalInput{ThingName: aws.String(name), Principal: aws.String(p)}); err != nil {
			return explain("detaching "+p, err)
		}
		if i := strings.LastIndex(p, "cert/"); i >= 0 {
			id := p[i+5:]
			c.IoT.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: aws.String(id), NewStatus: iottypes.CertificateStatusInactive})
			if _, err := c.IoT.DeleteCertificate(ctx, &iot.DeleteCertificateInput{CertificateId: aws.String(id)}); err != nil {
				return explain(fmt.Sprintf("deleting certificate %s", id), err)
			}
		}
	}
	if _, err := c.IoT.DeleteThing(ctx, &iot.DeleteThingInput{ThingName: aws.String(name)}); err != nil {
		return explain("deleting thing "+name, err)
	}
	return nil
}

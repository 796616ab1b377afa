package operator

import (
	"context"
	"errors"
	"fmt"
	"net"
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

// CreateThing provisions a thing as a device needs it: CreateThing,
// CreateKeysAndCertificate (ACTIVE), AttachThingPrincipal, and AttachPolicy
// when a policy is named (real AWS needs one: see docs/aws.md), then
// DescribeEndpoint for the MQTT endpoint.
func (c *Client) CreateThing(ctx context.Context, name, policy string) (*Thing, error) {
	t, err := c.IoT.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String(name)})
	if err != nil {
		return nil, explain("creating thing "+name, err)
	}
	kc, err := c.IoT.CreateKeysAndCertificate(ctx, &iot.CreateKeysAndCertificateInput{SetAsActive: true})
	if err != nil {
		return nil, explain("creating a certificate", err)
	}
	th := &Thing{Name: name, ARN: aws.ToString(t.ThingArn), CertificateID: aws.ToString(kc.CertificateId),
		CertificateARN: aws.ToString(kc.CertificateArn), CertificatePEM: aws.ToString(kc.CertificatePem)}
	if kc.KeyPair != nil {
		th.PrivateKeyPEM = aws.ToString(kc.KeyPair.PrivateKey)
	}
	if th.PrivateKeyPEM == "" {
		return nil, errors.New("CreateKeysAndCertificate returned no private key")
	}
	if _, err := c.IoT.AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{ThingName: aws.String(name), Principal: kc.CertificateArn}); err != nil {
		return nil, explain("attaching the certificate to "+name, err)
	}
	if policy != "" {
		if _, err := c.IoT.AttachPolicy(ctx, &iot.AttachPolicyInput{PolicyName: aws.String(policy), Target: kc.CertificateArn}); err != nil {
			return nil, explain("attaching policy "+policy, err)
		}
	}
	ep, err := c.IoT.DescribeEndpoint(ctx, &iot.DescribeEndpointInput{EndpointType: aws.String("iot:Data-ATS")})
	if err != nil {
		return nil, explain("reading the MQTT endpoint", err)
	}
	th.Endpoint = EndpointAddress(aws.ToString(ep.EndpointAddress), c.MQTTPort)
	return th, nil
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

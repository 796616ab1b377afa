// Package operator is the operator's side of awsfota: it publishes a
// firmware image as an AWS IoT job in one call — upload to S3, a job document
// in the seed's format plus awsfota's fields, CreateJob with rollout, abort,
// timeout and retry settings — follows a job's rollout execution by
// execution, cancels it, and provisions things. It speaks to real AWS, or to
// the local cloud, through the official AWS SDK for Go v2 only.
//
// It imports the standard library, the AWS SDK, jobdoc, mcuboot, delta and
// device/dfu (to recognise images); it must never import cloud/* or sim/.
package operator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Client talks to AWS IoT and S3.
type Client struct {
	IoT    *iot.Client
	S3     *s3.Client
	Region string
	// Local is set for the local cloud: presigned URLs need no IAM role
	// there, and things get the local CA.
	Local bool
	// MQTTPort is the port of the MQTT endpoint when DescribeEndpoint
	// answers a host name alone, as AWS does: 8883 there, the local
	// cloud's from its endpoints.json.
	MQTTPort string
}

// DefaultMQTTPort is AWS IoT Core's MQTT port for X.509 clients.
const DefaultMQTTPort = "8883"

// New returns a client for real AWS from an SDK configuration (profile,
// region and credentials chain as config.LoadDefaultConfig resolves them).
func New(cfg aws.Config) *Client {
	return &Client{IoT: iot.NewFromConfig(cfg), S3: s3.NewFromConfig(cfg), Region: cfg.Region, MQTTPort: DefaultMQTTPort}
}

// Endpoint describes the local cloud (its endpoints.json).
type Endpoint struct {
	URL             string // http://127.0.0.1:4566 (or https://): S3 and IoT on one port
	Region          string
	AccessKeyID     string
	SecretAccessKey string
	// MQTT is the broker's host:port: its port completes the host name
	// DescribeEndpoint answers.
	MQTT string
	// RootCAs verify the local cloud's HTTPS certificate (the local CA),
	// when it serves HTTPS. nil: the system's roots.
	RootCAs *x509.CertPool
}

// NewLocal returns a client for the local cloud.
func NewLocal(ep Endpoint) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if ep.RootCAs != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: ep.RootCAs, MinVersion: tls.VersionTLS12}
	}
	port := DefaultMQTTPort
	if _, p, err := net.SplitHostPort(ep.MQTT); err == nil {
		port = p
	}
	cfg := aws.Config{
		Region:      ep.Region,
		Credentials: credentials.NewStaticCredentialsProvider(ep.AccessKeyID, ep.SecretAccessKey, ""),
		HTTPClient:  &http.Client{Transport: tr},
		// Checksums as the SDK computes them by default against AWS.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported,
	}
	return &Client{
		IoT:      iot.NewFromConfig(cfg, func(o *iot.Options) { o.BaseEndpoint = aws.String(ep.URL) }),
		S3:       s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint = aws.String(ep.URL); o.UsePathStyle = true }),
		Region:   ep.Region,
		Local:    true,
		MQTTPort: port,
	}
}

// explain makes an SDK error say what to do; nil stays nil.
func explain(what string, err error) error {
	if err == nil {
		return nil
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code := ae.ErrorCode()
		hint := ""
		switch {
		case code == "ResourceNotFoundException" || code == "NoSuchBucket":
			hint = " (check the name, and the region)"
		case strings.Contains(code, "AccessDenied") || code == "UnauthorizedException" || code == "ForbiddenException":
			hint = " (the credentials lack a permission: see docs/aws.md for the operator's IAM policy)"
		case code == "InvalidSignatureException" || code == "SignatureDoesNotMatch" || code == "UnrecognizedClientException" || code == "InvalidAccessKeyId":
			hint = " (check the credentials: profile, AWS_ACCESS_KEY_ID, or the local cloud's endpoints.json)"
		}
		return &apiError{msg: fmt.Sprintf("%s: %s: %s%s", what, code, ae.ErrorMessage(), hint), err: err}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Unreachable reports whether err means that the service did not answer at
// all — nothing listens at the endpoint, the connection was refused, reset or
// timed out — rather than that it refused the request: the service is down,
// restarting or out of reach, and trying again later may work. An ended
// context is not Unreachable.
func Unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var send *smithyhttp.RequestSendError
	var op *net.OpError
	return errors.As(err, &send) || errors.As(err, &op)
}

// undo holds the steps that reverse what a call has done so far, for when
// a later step fails: a call leaves everything as it found it, or done.
type undo []func(context.Context) error

func (u *undo) add(step func(context.Context) error) { *u = append(*u, step) }

// run runs the steps, the last first, on a context that outlives ctx's
// cancellation (an interrupted call is undone too, within 30 s), and
// returns what failed.
func (u undo) run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var errs []error
	for i := len(u) - 1; i >= 0; i-- {
		if err := u[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// apiError is an AWS error explained; errors.As finds the SDK's error in it.
type apiError struct {
	msg string
	err error
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.err }

// IsNotFound reports whether err says that the job, execution, thing or
// group asked for does not exist.
func IsNotFound(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "ResourceNotFoundException"
}

// thingARN returns a thing's ARN (and checks the thing exists).
func (c *Client) thingARN(ctx context.Context, name string) (string, error) {
	out, err := c.IoT.DescribeThing(ctx, &iot.DescribeThingInput{ThingName: aws.String(name)})
	if err != nil {
		return "", explain("thing "+name, err)
	}
	return aws.ToString(out.ThingArn), nil
}

// groupARN returns a thing group's ARN (and checks it exists).
func (c *Client) groupARN(ctx context.Context, name string) (string, error) {
	out, err := c.IoT.DescribeThingGroup(ctx, &iot.DescribeThingGroupInput{ThingGroupName: aws.String(name)})
	if err != nil {
		return "", explain("thing group "+name, err)
	}
	return aws.ToString(out.ThingGroupArn), nil
}

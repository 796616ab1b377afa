package operator

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/jobdoc"
	"github.com/awsfota/awsfota/raucb"
)

// JobOptions describe a firmware job to publish.
type JobOptions struct {
	Image  string   // the file to install: an MCUboot image, an awsfota delta, a modem image, a RAUC bundle, or (with Version) any file for an exec target
	Things []string // target things
	Groups []string // target thing groups
	JobID  string   // default: fota-<version>-<time>
	Bucket string   // required
	Key    string   // default: firmware/<sha256 prefix>/<file name>
	// CreateBucket creates Bucket when it does not exist.
	CreateBucket bool
	// Version is the version the device runs afterwards; default: the
	// MCUboot header's (or a full modem image's).
	Version string
	// Component: "app" (default) or "modem"; modem images imply "modem",
	// RAUC bundles "rauc".
	Component string
	// Keyring, for a RAUC bundle, is a PEM file of the CA certificates the
	// devices' RAUC trusts: the bundle's signature must verify against it.
	Keyring string
	// Public writes the object's plain URL (the seed's public-bucket
	// procedure) instead of a presigned-URL placeholder.
	Public bool
	// PresignRole is the IAM role AWS IoT assumes to presign the URL (real
	// AWS); PresignExpires how long each URL lives (default 1 h, 60 s–1 h).
	PresignRole    string
	PresignExpires time.Duration
	// Rollout, abort, timeouts and retries.
	RolloutPerMinute    int
	AbortFailurePercent float64
	AbortMinExecuted    int
	TimeoutMinutes      int
	StepTimeoutMinutes  int
	Retries             int
	Continuous          bool
	Description         string
	// Progress, if set, is told how far Prepare has read the image (it
	// hashes it whole).
	Progress func(read, total int64)
}

// Plan is what publishing a job does: the object, the document and the
// calls. DryRun returns it without calling anything.
type Plan struct {
	JobID     string
	Bucket    string
	Key       string
	Size      int64
	SHA256    []byte
	Kind      string // the image type
	Version   string
	Component string
	Base      *jobdoc.Base
	KeyHash   []byte // of the key the image is signed with, if it is
	// Compatible is the system a RAUC bundle is for.
	Compatible string
	// Signer is who signed a RAUC bundle, when Keyring verified it.
	Signer   string
	Document []byte
	Calls    []string

	opts JobOptions
}

var jobIDChars = regexp.MustCompile(`[^a-zA-Z0-9_-]+`)

// Prepare reads the image and builds the plan: size, SHA-256, version, the
// document. It makes no call.
func (c *Client) Prepare(o JobOptions) (*Plan, error) {
	if len(o.Things) == 0 && len(o.Groups) == 0 {
		return nil, errors.New("a job needs targets: things or thing groups")
	}
	if o.Bucket == "" {
		return nil, errors.New("a bucket is needed for the image (--bucket)")
	}
	in, err := inspectImage(o.Image, o.Progress)
	if err != nil {
		return nil, err
	}
	p := &Plan{Size: in.Size, SHA256: in.SHA256, Kind: in.Kind, Base: in.Base, KeyHash: in.KeyHash, Compatible: in.Compatible,
		Bucket: o.Bucket, Key: o.Key, Version: o.Version, Component: o.Component, opts: o}
	if o.Keyring != "" && in.Kind != dfu.TypeRAUC.String() {
		return nil, fmt.Errorf("--keyring verifies RAUC bundles, and %s is a %s image", o.Image, in.Kind)
	}
	switch in.Kind {
	case dfu.TypeRAUC.String():
		if err := p.readBundle(o); err != nil {
			return nil, err
		}
	case dfu.TypeFile.String():
		if o.Version == "" {
			return nil, fmt.Errorf("%s is not an image awsfota devices install (MCUboot image, awsfota delta, modem image or delta, RAUC bundle): its first bytes are % x; for devices whose own install command takes it (the exec target), give the version it installs with --version", o.Image, in.First)
		}
		// A file for the device's own installer (the exec target): the
		// version the operator gives is how the device knows it runs it.
	}
	if p.Version == "" {
		p.Version = in.Version
	}
	if in.Component == jobdoc.ComponentModem {
		p.Component = jobdoc.ComponentModem // a modem image is for the modem, whatever was asked
	}
	if p.Component == "" {
		p.Component = jobdoc.ComponentApp
	}
	if p.Key == "" {
		p.Key = "firmware/" + hex.EncodeToString(p.SHA256[:6]) + "/" + filepath.Base(o.Image)
	}
	p.JobID = o.JobID
	if p.JobID == "" {
		v := p.Version
		if v == "" {
			v = p.Kind
		}
		v = strings.ReplaceAll(v, ".", "_")
		p.JobID = strings.Trim(jobIDChars.ReplaceAllString("fota-"+v+"-"+time.Now().UTC().Format("20060102-150405"), "-"), "-")
	}
	url := "${aws:iot:s3-presigned-url:" + fmt.Sprintf("https://s3.%s.amazonaws.com/%s/%s", c.Region, p.Bucket, p.Key) + "}"
	if o.Public {
		if c.Local {
			return nil, errors.New("--public is the seed's procedure on AWS (a bucket anyone may read); the local cloud serves images through presigned URLs: drop --public")
		}
		url = fmt.Sprintf("https://%s.s3.%s.amazonaws.com/%s", p.Bucket, c.Region, p.Key)
	}
	spec := jobdoc.Spec{FWVersion: p.Version, Size: p.Size, SHA256: p.SHA256, URL: url, Base: p.Base,
		StepTimeoutMinutes: int64(o.StepTimeoutMinutes), Compatible: p.Compatible}
	switch p.Component {
	case jobdoc.ComponentApp:
	case jobdoc.ComponentModem:
		spec.Component, spec.Operation = p.Component, "modem_fw_update"
	default:
		spec.Component = p.Component
	}
	if p.Document, err = jobdoc.Marshal(spec); err != nil {
		return nil, err
	}
	for _, t := range o.Things {
		p.Calls = append(p.Calls, "iot DescribeThing "+t)
	}
	for _, g := range o.Groups {
		p.Calls = append(p.Calls, "iot DescribeThingGroup "+g)
	}
	p.Calls = append(p.Calls, "iot DescribeJob "+p.JobID+" (must not exist)")
	if o.CreateBucket {
		p.Calls = append(p.Calls, fmt.Sprintf("s3 CreateBucket %s (if missing)", p.Bucket))
	}
	p.Calls = append(p.Calls, fmt.Sprintf("s3 upload (transfer manager) s3://%s/%s (%d bytes, SHA-256 %x)", p.Bucket, p.Key, p.Size, p.SHA256))
	p.Calls = append(p.Calls, "iot CreateJob "+p.JobID+" "+describeSettings(o)+" (on failure: the upload is deleted)")
	return p, nil
}

// readBundle checks a RAUC bundle's component and, when a keyring is
// given, verifies its signature (InspectImage read its compatible and
// version).
func (p *Plan) readBundle(o JobOptions) error {
	if o.Component != "" && o.Component != jobdoc.ComponentRAUC {
		return fmt.Errorf("%s is a RAUC bundle: its component is %q, not %q", o.Image, jobdoc.ComponentRAUC, o.Component)
	}
	p.Component = jobdoc.ComponentRAUC
	if o.Keyring == "" {
		return nil
	}
	pem, err := os.ReadFile(o.Keyring)
	if err != nil {
		return fmt.Errorf("--keyring: %w", err)
	}
	ring, err := raucb.ParseKeyring(pem)
	if err != nil {
		return fmt.Errorf("--keyring %s: %w", o.Keyring, err)
	}
	f, err := os.Open(o.Image)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := raucb.Open(f, p.Size)
	if err != nil {
		return fmt.Errorf("%s starts like a RAUC bundle but is not a valid one: %w", o.Image, err)
	}
	cert, err := b.Verify(ring, time.Now())
	if err != nil {
		return fmt.Errorf("%s: %w: devices whose RAUC trusts %s would refuse it; sign it with a key that keyring trusts (rauc resign)", o.Image, err, o.Keyring)
	}
	p.Signer = cert.Subject.String()
	p.Calls = append(p.Calls, fmt.Sprintf("verified the bundle's signature (%s) against %s", p.Signer, o.Keyring))
	return nil
}

func describeSettings(o JobOptions) string {
	var s []string
	if o.Continuous {
		s = append(s, "CONTINUOUS")
	} else {
		s = append(s, "SNAPSHOT")
	}
	if o.RolloutPerMinute > 0 {
		s = append(s, fmt.Sprintf("rollout %d/min", o.RolloutPerMinute))
	}
	if o.AbortFailurePercent > 0 {
		s = append(s, fmt.Sprintf("abort at %.0f%% failed after %d", o.AbortFailurePercent, max(o.AbortMinExecuted, 1)))
	}
	if o.TimeoutMinutes > 0 {
		s = append(s, fmt.Sprintf("in-progress timeout %d min", o.TimeoutMinutes))
	}
	if o.Retries > 0 {
		s = append(s, fmt.Sprintf("%d retries", o.Retries))
	}
	if !o.Public {
		s = append(s, "presigned URL")
	}
	return "(" + strings.Join(s, ", ") + ")"
}

// Result says what Create did.
type Result struct {
	JobID  string
	JobARN string
}

// Create carries out a plan: bucket, upload, job. It checks what it can
// before it changes anything — the targets exist, the job id is free, a
// presigned URL has its role — and when creating the job fails it deletes
// what it uploaded (and the bucket, if it made it), so that a failed call
// leaves no orphaned image behind.
func (c *Client) Create(ctx context.Context, p *Plan, progress func(sent, total int64)) (_ *Result, err error) {
	o := p.opts
	var targets []string
	for _, t := range o.Things {
		arn, err := c.thingARN(ctx, t)
		if err != nil {
			return nil, err
		}
		targets = append(targets, arn)
	}
	for _, g := range o.Groups {
		arn, err := c.groupARN(ctx, g)
		if err != nil {
			return nil, err
		}
		targets = append(targets, arn)
	}
	_, err = c.IoT.DescribeJob(ctx, &iot.DescribeJobInput{JobId: aws.String(p.JobID)})
	var nf *iottypes.ResourceNotFoundException
	switch {
	case err == nil:
		return nil, fmt.Errorf("job %s exists already: choose another --job-id", p.JobID)
	case !errors.As(err, &nf):
		return nil, explain("job "+p.JobID, err)
	}
	in := &iot.CreateJobInput{JobId: aws.String(p.JobID), Targets: targets, Document: aws.String(string(p.Document)),
		TargetSelection: iottypes.TargetSelectionSnapshot}
	if o.Description != "" {
		in.Description = aws.String(o.Description)
	} else {
		in.Description = aws.String(fmt.Sprintf("%s %s from %s (awsfota job create)", p.Component, orKind(p.Version, p.Kind), filepath.Base(o.Image)))
	}
	if o.Continuous {
		in.TargetSelection = iottypes.TargetSelectionContinuous
	}
	if !o.Public {
		exp := int64(o.PresignExpires / time.Second)
		if exp == 0 {
			exp = 3600
		}
		role := o.PresignRole
		if role == "" && c.Local {
			role = "arn:aws:iam::000000000000:role/awsfota-local-presign" // the local cloud presigns itself
		}
		if role == "" {
			return nil, errors.New("a presigned URL needs --presign-role: the ARN of an IAM role AWS IoT may assume to read the bucket (see docs/aws.md), or use --public")
		}
		in.PresignedUrlConfig = &iottypes.PresignedUrlConfig{RoleArn: aws.String(role), ExpiresInSec: aws.Int64(exp)}
	}
	if o.RolloutPerMinute > 0 {
		in.JobExecutionsRolloutConfig = &iottypes.JobExecutionsRolloutConfig{MaximumPerMinute: aws.Int32(int32(o.RolloutPerMinute))}
	}
	if o.AbortFailurePercent > 0 {
		in.AbortConfig = &iottypes.AbortConfig{CriteriaList: []iottypes.AbortCriteria{{
			Action: iottypes.AbortActionCancel, FailureType: iottypes.JobExecutionFailureTypeAll,
			ThresholdPercentage: aws.Float64(o.AbortFailurePercent), MinNumberOfExecutedThings: aws.Int32(int32(max(o.AbortMinExecuted, 1))),
		}}}
	}
	if o.TimeoutMinutes > 0 {
		in.TimeoutConfig = &iottypes.TimeoutConfig{InProgressTimeoutInMinutes: aws.Int64(int64(o.TimeoutMinutes))}
	}
	if o.Retries > 0 {
		in.JobExecutionsRetryConfig = &iottypes.JobExecutionsRetryConfig{CriteriaList: []iottypes.RetryCriteria{{
			FailureType: iottypes.RetryableFailureTypeAll, NumberOfRetries: aws.Int32(int32(o.Retries))}}}
	}

	// From here on what is made is removed again if the job is not created.
	var made undo
	defer func() {
		if err == nil {
			return
		}
		if uerr := made.run(ctx); uerr != nil {
			err = fmt.Errorf("%w; removing what was uploaded failed too: %w", err, uerr)
		}
	}()
	if o.CreateBucket {
		in := &s3.CreateBucketInput{Bucket: aws.String(p.Bucket)}
		if c.Region != "" && c.Region != "us-east-1" {
			in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(c.Region)}
		}
		if _, err := c.S3.CreateBucket(ctx, in); err != nil {
			var owned *s3types.BucketAlreadyOwnedByYou
			if !errors.As(err, &owned) {
				return nil, explain("creating bucket "+p.Bucket, err)
			}
		} else {
			made.add(func(ctx context.Context) error {
				_, err := c.S3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(p.Bucket)})
				return explain("deleting bucket "+p.Bucket, err)
			})
		}
	}
	// An object already at the key (the same image, published before) may
	// serve another job: it is replaced, but never removed.
	_, herr := c.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(p.Bucket), Key: aws.String(p.Key)})
	existed := herr == nil
	f, err := os.Open(o.Image)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var body io.Reader = f
	if progress != nil {
		body = &countingReader{r: f, total: p.Size, progress: progress}
	}
	tm := transfermanager.New(c.S3)
	if _, err := tm.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: aws.String(p.Bucket), Key: aws.String(p.Key), Body: body}); err != nil {
		return nil, explain(fmt.Sprintf("uploading s3://%s/%s", p.Bucket, p.Key), err)
	}
	if !existed {
		made.add(func(ctx context.Context) error {
			_, err := c.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(p.Bucket), Key: aws.String(p.Key)})
			return explain(fmt.Sprintf("deleting s3://%s/%s", p.Bucket, p.Key), err)
		})
	}
	out, err := c.IoT.CreateJob(ctx, in)
	if err != nil {
		return nil, explain("creating job "+p.JobID, err)
	}
	return &Result{JobID: aws.ToString(out.JobId), JobARN: aws.ToString(out.JobArn)}, nil
}

func orKind(v, kind string) string {
	if v == "" {
		return kind
	}
	return v
}

type countingReader struct {
	r        io.Reader
	n, total int64
	progress func(sent, total int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.progress(c.n, c.total)
	return n, err
}

package iotapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/cloud/pki"
	"github.com/awsfota/awsfota/cloud/registry"
	"github.com/awsfota/awsfota/cloud/sigv4"
	"github.com/awsfota/awsfota/iotjobs"
)

// These tests drive the API with the official aws-sdk-go-v2 IoT client
// only: no request here is written by hand.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	region  = "eu-west-1"
	account = "123456789012"
)

var creds = sigv4.Credentials{AccessKeyID: "AKIAIOTLOCALTEST", SecretAccessKey: "iot/local+secret=="}

type env struct {
	t       *testing.T
	clk     *clock.Fake
	reg     *registry.Registry
	jobs    *jobsvc.Service
	api     *API
	srv     *httptest.Server
	mu      sync.Mutex
	dropped []string // certificates whose connections were dropped
	docs    map[string]string
}

// newEnv starts the API on a fake clock; opts adjust the API's Config (a
// test that moves the fake clock far gives the API the real one, with which
// the SDK signs).
func newEnv(t *testing.T, opts ...func(*Config)) *env {
	t.Helper()
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "c.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// The SDK signs with the wall clock: the fake starts there.
	e := &env{t: t, clk: clock.NewFake(time.Now()), docs: map[string]string{}}
	e.reg, _ = registry.Open(db, registry.Config{Region: region, AccountID: account, Clock: e.clk})
	e.jobs, err = jobsvc.Open(db, jobsvc.Config{Region: region, AccountID: account, Clock: e.clk, Groups: e.reg,
		Presign: func(b, k string, exp time.Duration) (string, error) { return "http://local/" + b + "/" + k, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreate(filepath.Join(dir, "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Region: region, AccountID: account, Credentials: []sigv4.Credentials{creds}, Clock: e.clk,
		Registry: e.reg, Jobs: e.jobs, CA: ca,
		Disconnect: func(id string) { e.mu.Lock(); e.dropped = append(e.dropped, id); e.mu.Unlock() },
		OpenObject: func(b, k string) (io.ReadCloser, error) {
			d, ok := e.docs[b+"/"+k]
			if !ok {
				return nil, errors.New("no such object")
			}
			return io.NopCloser(strings.NewReader(d)), nil
		},
		Endpoint: func(typ string) string {
			if typ == "iot:Jobs" {
				return "jobs.localhost"
			}
			return "mqtt.localhost"
		}}
	for _, o := range opts {
		o(&cfg)
	}
	e.api, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(e.api)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) client(c sigv4.Credentials, opts ...func(*iot.Options)) *iot.Client {
	return iot.NewFromConfig(aws.Config{
		Region:      region,
		Credentials: credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, ""),
		HTTPClient:  e.srv.Client(),
		Retryer:     func() aws.Retryer { return aws.NopRetryer{} },
	}, append([]func(*iot.Options){func(o *iot.Options) { o.BaseEndpoint = aws.String(e.srv.URL) }}, opts...)...)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// wantError checks the error type the SDK decoded, and AWS's error shape.
func wantError(t *testing.T, err error, code string, status int) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code || ae.ErrorMessage() == "" {
		t.Fatalf("error %v, want %s with a message", err, code)
	}
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != status || re.Response.Header.Get("X-Amzn-ErrorType") != code {
		t.Fatalf("error %v: HTTP %d, x-amzn-ErrorType %q; want %d %s", err, re.HTTPStatusCode(), re.Response.Header.Get("X-Amzn-ErrorType"), status, code)
	}
}

func TestSDKThings(t *testing.T) {
	e := newEnv(t)
	c, cx := e.client(creds), ctx(t)
	out, err := c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String("dev-1"),
		AttributePayload: &types.AttributePayload{Attributes: map[string]string{"model": "nrf9160"}}})
	if err != nil {
		t.Fatal(err)
	}
	if *out.ThingArn != "arn:aws:iot:eu-west-1:123456789012:thing/dev-1" || *out.ThingName != "dev-1" || *out.ThingId == "" {
		t.Fatalf("%+v", out)
	}
	// The same again is fine; other attributes are a conflict.
	if _, err := c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String("dev-1"),
		AttributePayload: &types.AttributePayload{Attributes: map[string]string{"model": "nrf9160"}}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String("dev-1")})
	var exists *types.ResourceAlreadyExistsException
	if !errors.As(err, &exists) || aws.ToString(exists.ResourceId) != "dev-1" || !strings.HasSuffix(aws.ToString(exists.ResourceArn), ":thing/dev-1") {
		t.Fatalf("%v", err)
	}
	_, err = c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String("bad/name")})
	wantError(t, err, "InvalidRequestException", 400)
	_, err = c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String("typed"), ThingTypeName: aws.String("sensor")})
	wantError(t, err, "ResourceNotFoundException", 404)

	d, err := c.DescribeThing(cx, &iot.DescribeThingInput{ThingName: aws.String("dev-1")})
	if err != nil || *d.DefaultClientId != "dev-1" || d.Attributes["model"] != "nrf9160" || d.Version != 1 || *d.ThingId != *out.ThingId {
		t.Fatalf("%+v %v", d, err)
	}
	_, err = c.DescribeThing(cx, &iot.DescribeThingInput{ThingName: aws.String("nope")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatal(err)
	}

	for _, n := range []string{"dev-2", "dev-3", "dev-4", "dev-5"} {
		if _, err := c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String(n)}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	pages := 0
	p := iot.NewListThingsPaginator(c, &iot.ListThingsInput{MaxResults: aws.Int32(2)})
	for p.HasMorePages() {
		pg, err := p.NextPage(cx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, th := range pg.Things {
			names = append(names, *th.ThingName)
		}
	}
	if pages != 3 || !slices.Equal(names, []string{"dev-1", "dev-2", "dev-3", "dev-4", "dev-5"}) {
		t.Fatalf("%d pages: %v", pages, names)
	}
	f, err := c.ListThings(cx, &iot.ListThingsInput{AttributeName: aws.String("model"), AttributeValue: aws.String("nrf91"), UsePrefixAttributeValue: true})
	if err != nil || len(f.Things) != 1 || *f.Things[0].ThingName != "dev-1" {
		t.Fatalf("%+v %v", f, err)
	}
	_, err = c.ListThings(cx, &iot.ListThingsInput{MaxResults: aws.Int32(251)})
	wantError(t, err, "InvalidRequestException", 400)
	_, err = c.ListThings(cx, &iot.ListThingsInput{NextToken: aws.String("forged")})
	wantError(t, err, "InvalidRequestException", 400)

	_, err = c.DeleteThing(cx, &iot.DeleteThingInput{ThingName: aws.String("dev-5"), ExpectedVersion: aws.Int64(7)})
	wantError(t, err, "VersionConflictException", 409)
	if _, err := c.DeleteThing(cx, &iot.DeleteThingInput{ThingName: aws.String("dev-5"), ExpectedVersion: aws.Int64(1)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DeleteThing(cx, &iot.DeleteThingInput{ThingName: aws.String("dev-5")})
	wantError(t, err, "ResourceNotFoundException", 404)
}

func TestSDKCertificates(t *testing.T) {
	e := newEnv(t)
	c, cx := e.client(creds), ctx(t)
	c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String("dev-1")})
	kc, err := c.CreateKeysAndCertificate(cx, &iot.CreateKeysAndCertificateInput{SetAsActive: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair([]byte(*kc.CertificatePem), []byte(*kc.KeyPair.PrivateKey)); err != nil {
		t.Fatalf("certificate and key do not match: %v", err)
	}
	if !strings.Contains(*kc.KeyPair.PublicKey, "PUBLIC KEY") || *kc.CertificateArn != "arn:aws:iot:eu-west-1:123456789012:cert/"+*kc.CertificateId {
		t.Fatalf("%+v", kc)
	}
	if _, err := c.AttachThingPrincipal(cx, &iot.AttachThingPrincipalInput{ThingName: aws.String("dev-1"), Principal: kc.CertificateArn}); err != nil {
		t.Fatal(err)
	}
	// Registered, ACTIVE and attached: the broker would let it in as dev-1.
	cert, _ := pki.ParseCertificatePEM([]byte(*kc.CertificatePem))
	if err := e.reg.Authorize(cert, *kc.CertificateId, "dev-1"); err != nil {
		t.Fatal(err)
	}
	ps, err := c.ListThingPrincipals(cx, &iot.ListThingPrincipalsInput{ThingName: aws.String("dev-1")})
	if err != nil || len(ps.Principals) != 1 || ps.Principals[0] != *kc.CertificateArn {
		t.Fatalf("%+v %v", ps, err)
	}
	dc, err := c.DescribeCertificate(cx, &iot.DescribeCertificateInput{CertificateId: kc.CertificateId})
	if err != nil || dc.CertificateDescription.Status != types.CertificateStatusActive || *dc.CertificateDescription.OwnedBy != account ||
		dc.CertificateDescription.Validity.NotAfter.Before(time.Now().AddDate(5, 0, 0)) || dc.CertificateDescription.CreationDate == nil {
		t.Fatalf("%+v %v", dc, err)
	}
	// An inactive one is created INACTIVE.
	kc2, _ := c.CreateKeysAndCertificate(cx, &iot.CreateKeysAndCertificateInput{})
	if d2, _ := c.DescribeCertificate(cx, &iot.DescribeCertificateInput{CertificateId: kc2.CertificateId}); d2.CertificateDescription.Status != types.CertificateStatusInactive {
		t.Fatal(d2.CertificateDescription.Status)
	}
	lc, err := c.ListCertificates(cx, &iot.ListCertificatesInput{})
	if err != nil || len(lc.Certificates) != 2 {
		t.Fatalf("%+v %v", lc, err)
	}
	// Deactivating drops the live connections at once.
	if _, err := c.UpdateCertificate(cx, &iot.UpdateCertificateInput{CertificateId: kc.CertificateId, NewStatus: types.CertificateStatusInactive}); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	if !slices.Equal(e.dropped, []string{*kc.CertificateId}) {
		t.Fatalf("dropped %v", e.dropped)
	}
	e.mu.Unlock()
	if err := e.reg.Authorize(cert, *kc.CertificateId, "dev-1"); err == nil {
		t.Fatal("an INACTIVE certificate is authorized")
	}
	_, err = c.UpdateCertificate(cx, &iot.UpdateCertificateInput{CertificateId: kc.CertificateId, NewStatus: types.CertificateStatusPendingTransfer})
	wantError(t, err, "InvalidRequestException", 400)
	_, err = c.DeleteCertificate(cx, &iot.DeleteCertificateInput{CertificateId: kc.CertificateId})
	wantError(t, err, "DeleteConflictException", 409)
	if _, err := c.DetachThingPrincipal(cx, &iot.DetachThingPrincipalInput{ThingName: aws.String("dev-1"), Principal: kc.CertificateArn}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteCertificate(cx, &iot.DeleteCertificateInput{CertificateId: kc.CertificateId}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DescribeCertificate(cx, &iot.DescribeCertificateInput{CertificateId: kc.CertificateId})
	wantError(t, err, "ResourceNotFoundException", 404)
	// ACTIVE cannot be deleted; REVOKED cannot come back.
	c.UpdateCertificate(cx, &iot.UpdateCertificateInput{CertificateId: kc2.CertificateId, NewStatus: types.CertificateStatusActive})
	_, err = c.DeleteCertificate(cx, &iot.DeleteCertificateInput{CertificateId: kc2.CertificateId})
	wantError(t, err, "CertificateStateException", 406)
	c.UpdateCertificate(cx, &iot.UpdateCertificateInput{CertificateId: kc2.CertificateId, NewStatus: types.CertificateStatusRevoked})
	_, err = c.UpdateCertificate(cx, &iot.UpdateCertificateInput{CertificateId: kc2.CertificateId, NewStatus: types.CertificateStatusActive})
	wantError(t, err, "CertificateStateException", 406)
	_, err = c.AttachThingPrincipal(cx, &iot.AttachThingPrincipalInput{ThingName: aws.String("dev-1"), Principal: aws.String("arn:aws:cognito-identity:x")})
	wantError(t, err, "InvalidRequestException", 400)
	_, err = c.AttachThingPrincipal(cx, &iot.AttachThingPrincipalInput{ThingName: aws.String("nope"), Principal: kc2.CertificateArn})
	wantError(t, err, "ResourceNotFoundException", 404)

	for typ, want := range map[string]string{"iot:Data-ATS": "mqtt.localhost", "": "mqtt.localhost", "iot:Jobs": "jobs.localhost"} {
		in := &iot.DescribeEndpointInput{}
		if typ != "" {
			in.EndpointType = aws.String(typ)
		}
		ep, err := c.DescribeEndpoint(cx, in)
		if err != nil || *ep.EndpointAddress != want {
			t.Fatalf("%s: %+v %v", typ, ep, err)
		}
	}
	_, err = c.DescribeEndpoint(cx, &iot.DescribeEndpointInput{EndpointType: aws.String("iot:CredentialProvider")})
	wantError(t, err, "InvalidRequestException", 400)
}

func TestSDKThingGroups(t *testing.T) {
	e := newEnv(t)
	c, cx := e.client(creds), ctx(t)
	for _, n := range []string{"a", "b"} {
		c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String(n)})
	}
	g, err := c.CreateThingGroup(cx, &iot.CreateThingGroupInput{ThingGroupName: aws.String("fleet"),
		ThingGroupProperties: &types.ThingGroupProperties{ThingGroupDescription: aws.String("all"),
			AttributePayload: &types.AttributePayload{Attributes: map[string]string{"site": "lab"}}}})
	if err != nil || *g.ThingGroupArn != "arn:aws:iot:eu-west-1:123456789012:thinggroup/fleet" {
		t.Fatalf("%+v %v", g, err)
	}
	if _, err := c.CreateThingGroup(cx, &iot.CreateThingGroupInput{ThingGroupName: aws.String("eu"), ParentGroupName: aws.String("fleet")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateThingGroup(cx, &iot.CreateThingGroupInput{ThingGroupName: aws.String("fleet")})
	wantError(t, err, "ResourceAlreadyExistsException", 409)
	dg, err := c.DescribeThingGroup(cx, &iot.DescribeThingGroupInput{ThingGroupName: aws.String("eu")})
	if err != nil || *dg.ThingGroupMetadata.ParentGroupName != "fleet" || len(dg.ThingGroupMetadata.RootToParentThingGroups) != 1 ||
		*dg.ThingGroupMetadata.RootToParentThingGroups[0].GroupName != "fleet" || dg.Version != 1 {
		t.Fatalf("%+v %v", dg, err)
	}
	if _, err := c.AddThingToThingGroup(cx, &iot.AddThingToThingGroupInput{ThingName: aws.String("a"), ThingGroupName: aws.String("eu")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddThingToThingGroup(cx, &iot.AddThingToThingGroupInput{ThingArn: aws.String("arn:aws:iot:eu-west-1:123456789012:thing/b"),
		ThingGroupArn: aws.String("arn:aws:iot:eu-west-1:123456789012:thinggroup/fleet")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.AddThingToThingGroup(cx, &iot.AddThingToThingGroupInput{ThingName: aws.String("a"), ThingGroupName: aws.String("fleet")})
	wantError(t, err, "InvalidRequestException", 400) // one group per hierarchy
	_, err = c.AddThingToThingGroup(cx, &iot.AddThingToThingGroupInput{ThingName: aws.String("zzz"), ThingGroupName: aws.String("fleet")})
	wantError(t, err, "ResourceNotFoundException", 404)
	in, err := c.ListThingsInThingGroup(cx, &iot.ListThingsInThingGroupInput{ThingGroupName: aws.String("fleet"), Recursive: true})
	if err != nil || !slices.Equal(in.Things, []string{"a", "b"}) {
		t.Fatalf("%+v %v", in, err)
	}
	if in, _ := c.ListThingsInThingGroup(cx, &iot.ListThingsInThingGroupInput{ThingGroupName: aws.String("fleet")}); !slices.Equal(in.Things, []string{"b"}) {
		t.Fatal(in.Things)
	}
	fg, err := c.ListThingGroupsForThing(cx, &iot.ListThingGroupsForThingInput{ThingName: aws.String("a")})
	if err != nil || len(fg.ThingGroups) != 1 || *fg.ThingGroups[0].GroupName != "eu" {
		t.Fatalf("%+v %v", fg, err)
	}
	lg, err := c.ListThingGroups(cx, &iot.ListThingGroupsInput{ParentGroup: aws.String("fleet")})
	if err != nil || len(lg.ThingGroups) != 1 || *lg.ThingGroups[0].GroupName != "eu" {
		t.Fatalf("%+v %v", lg, err)
	}
	if lg, _ := c.ListThingGroups(cx, &iot.ListThingGroupsInput{}); len(lg.ThingGroups) != 2 {
		t.Fatal(lg.ThingGroups)
	}
	if lg, _ := c.ListThingGroups(cx, &iot.ListThingGroupsInput{Recursive: aws.Bool(false)}); len(lg.ThingGroups) != 1 || *lg.ThingGroups[0].GroupName != "fleet" {
		t.Fatal(lg.ThingGroups)
	}
	_, err = c.DeleteThingGroup(cx, &iot.DeleteThingGroupInput{ThingGroupName: aws.String("fleet")})
	wantError(t, err, "InvalidRequestException", 400) // it has a child
	if _, err := c.RemoveThingFromThingGroup(cx, &iot.RemoveThingFromThingGroupInput{ThingName: aws.String("a"), ThingGroupName: aws.String("eu")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteThingGroup(cx, &iot.DeleteThingGroupInput{ThingGroupName: aws.String("eu")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteThingGroup(cx, &iot.DeleteThingGroupInput{ThingGroupName: aws.String("eu")}); err != nil {
		t.Fatal("deleting a missing group:", err)
	}
}

func TestSDKJobs(t *testing.T) {
	e := newEnv(t)
	c, cx := e.client(creds), ctx(t)
	for _, n := range []string{"a", "b", "c"} {
		c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String(n)})
	}
	c.CreateThingGroup(cx, &iot.CreateThingGroupInput{ThingGroupName: aws.String("fleet")})
	c.AddThingToThingGroup(cx, &iot.AddThingToThingGroupInput{ThingName: aws.String("a"), ThingGroupName: aws.String("fleet")})
	groupARN := "arn:aws:iot:eu-west-1:123456789012:thinggroup/fleet"
	doc := `{"operation":"app_fw_update","url":"${aws:iot:s3-presigned-url:https://s3.eu-west-1.amazonaws.com/fw/app.bin}"}`
	cj, err := c.CreateJob(cx, &iot.CreateJobInput{
		JobId: aws.String("fw-1"), Targets: []string{groupARN}, Document: aws.String(doc), Description: aws.String("1.0.1"),
		TargetSelection:    types.TargetSelectionContinuous,
		PresignedUrlConfig: &types.PresignedUrlConfig{ExpiresInSec: aws.Int64(600), RoleArn: aws.String("arn:aws:iam::123456789012:role/x")},
		TimeoutConfig:      &types.TimeoutConfig{InProgressTimeoutInMinutes: aws.Int64(30)},
		JobExecutionsRolloutConfig: &types.JobExecutionsRolloutConfig{ExponentialRate: &types.ExponentialRolloutRate{BaseRatePerMinute: aws.Int32(10),
			IncrementFactor: aws.Float64(2), RateIncreaseCriteria: &types.RateIncreaseCriteria{NumberOfSucceededThings: aws.Int32(5)}}},
		AbortConfig: &types.AbortConfig{CriteriaList: []types.AbortCriteria{{FailureType: types.JobExecutionFailureTypeFailed,
			Action: types.AbortActionCancel, ThresholdPercentage: aws.Float64(50), MinNumberOfExecutedThings: aws.Int32(10)}}},
		JobExecutionsRetryConfig: &types.JobExecutionsRetryConfig{CriteriaList: []types.RetryCriteria{{FailureType: types.RetryableFailureTypeFailed, NumberOfRetries: aws.Int32(2)}}},
		Tags:                     []types.Tag{{Key: aws.String("team"), Value: aws.String("fw")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if *cj.JobArn != "arn:aws:iot:eu-west-1:123456789012:job/fw-1" || *cj.Description != "1.0.1" {
		t.Fatalf("%+v", cj)
	}
	dj, err := c.DescribeJob(cx, &iot.DescribeJobInput{JobId: aws.String("fw-1")})
	if err != nil {
		t.Fatal(err)
	}
	j := dj.Job
	if j.Status != types.JobStatusInProgress || j.TargetSelection != types.TargetSelectionContinuous || !slices.Equal(j.Targets, []string{groupARN}) ||
		*j.PresignedUrlConfig.ExpiresInSec != 600 || *j.TimeoutConfig.InProgressTimeoutInMinutes != 30 ||
		*j.JobExecutionsRolloutConfig.ExponentialRate.IncrementFactor != 2 || *j.JobExecutionsRolloutConfig.ExponentialRate.RateIncreaseCriteria.NumberOfSucceededThings != 5 ||
		*j.AbortConfig.CriteriaList[0].ThresholdPercentage != 50 || *j.JobExecutionsRetryConfig.CriteriaList[0].NumberOfRetries != 2 ||
		*j.JobProcessDetails.NumberOfQueuedThings != 1 || j.CreatedAt == nil || j.CreatedAt.IsZero() || j.CompletedAt != nil {
		t.Fatalf("%+v", j)
	}
	gd, err := c.GetJobDocument(cx, &iot.GetJobDocumentInput{JobId: aws.String("fw-1")})
	if err != nil || *gd.Document != doc {
		t.Fatalf("%+v %v", gd, err)
	}
	// A thing added to the group later gets the continuous job.
	c.AddThingToThingGroup(cx, &iot.AddThingToThingGroupInput{ThingName: aws.String("b"), ThingGroupName: aws.String("fleet")})
	le, err := c.ListJobExecutionsForJob(cx, &iot.ListJobExecutionsForJobInput{JobId: aws.String("fw-1")})
	if err != nil || len(le.ExecutionSummaries) != 2 || le.ExecutionSummaries[1].JobExecutionSummary.Status != types.JobExecutionStatusQueued ||
		*le.ExecutionSummaries[1].ThingArn != "arn:aws:iot:eu-west-1:123456789012:thing/b" {
		t.Fatalf("%+v %v", le, err)
	}
	// ... and loses it when it leaves.
	c.RemoveThingFromThingGroup(cx, &iot.RemoveThingFromThingGroupInput{ThingName: aws.String("b"), ThingGroupName: aws.String("fleet")})
	de, err := c.DescribeJobExecution(cx, &iot.DescribeJobExecutionInput{JobId: aws.String("fw-1"), ThingName: aws.String("b")})
	if err != nil || de.Execution.Status != types.JobExecutionStatusRemoved || de.Execution.VersionNumber != 2 || *de.Execution.ThingArn != "arn:aws:iot:eu-west-1:123456789012:thing/b" {
		t.Fatalf("%+v %v", de, err)
	}
	// The device's progress shows in statusDetails.detailsMap.
	e.jobs.HandleDevice("a", "a", "$aws/things/a/jobs/fw-1/update", []byte(`{"status":"IN_PROGRESS","statusDetails":{"progress":"40"}}`))
	de, _ = c.DescribeJobExecution(cx, &iot.DescribeJobExecutionInput{JobId: aws.String("fw-1"), ThingName: aws.String("a")})
	if de.Execution.Status != types.JobExecutionStatusInProgress || de.Execution.StatusDetails.DetailsMap["progress"] != "40" ||
		de.Execution.StartedAt == nil || aws.ToInt64(de.Execution.ApproximateSecondsBeforeTimedOut) != 1800 {
		t.Fatalf("%+v", de.Execution)
	}
	lt, err := c.ListJobExecutionsForThing(cx, &iot.ListJobExecutionsForThingInput{ThingName: aws.String("a"), Status: types.JobExecutionStatusInProgress})
	if err != nil || len(lt.ExecutionSummaries) != 1 || *lt.ExecutionSummaries[0].JobId != "fw-1" {
		t.Fatalf("%+v %v", lt, err)
	}
	if lt, _ := c.ListJobExecutionsForThing(cx, &iot.ListJobExecutionsForThingInput{ThingName: aws.String("a"), Status: types.JobExecutionStatusQueued}); len(lt.ExecutionSummaries) != 0 {
		t.Fatal(lt.ExecutionSummaries)
	}

	// A snapshot job on things, and the list filters.
	e.clk.Advance(time.Second)
	if _, err := c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("fw-2"), Targets: []string{"arn:aws:iot:eu-west-1:123456789012:thing/c"},
		Document: aws.String(`{"v":2}`)}); err != nil {
		t.Fatal(err)
	}
	lj, err := c.ListJobs(cx, &iot.ListJobsInput{})
	if err != nil || len(lj.Jobs) != 2 || *lj.Jobs[0].JobId != "fw-2" {
		t.Fatalf("%+v %v", lj, err)
	}
	if lj, _ := c.ListJobs(cx, &iot.ListJobsInput{TargetSelection: types.TargetSelectionSnapshot}); len(lj.Jobs) != 1 || *lj.Jobs[0].JobId != "fw-2" {
		t.Fatal(lj.Jobs)
	}
	if lj, _ := c.ListJobs(cx, &iot.ListJobsInput{ThingGroupName: aws.String("fleet")}); len(lj.Jobs) != 1 || *lj.Jobs[0].JobId != "fw-1" || lj.Jobs[0].ThingGroupId == nil {
		t.Fatal(lj.Jobs)
	}

	// Refusals.
	_, err = c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("fw-2"), Targets: []string{"arn:aws:iot:eu-west-1:123456789012:thing/c"}, Document: aws.String(`{}`)})
	var exists *types.ResourceAlreadyExistsException
	if !errors.As(err, &exists) || aws.ToString(exists.ResourceId) != "fw-2" {
		t.Fatal(err)
	}
	for _, in := range []*iot.CreateJobInput{
		{JobId: aws.String("x"), Targets: []string{"arn:aws:iot:eu-west-1:123456789012:thing/c"}, Document: aws.String(`{"a":"` + strings.Repeat("x", 32*1024) + `"}`)},
		{JobId: aws.String("x"), Targets: []string{"arn:aws:iot:eu-west-1:123456789012:thing/c"}, Document: aws.String(`not json`)},
		{JobId: aws.String("x"), Targets: []string{"arn:aws:iot:us-east-1:123456789012:thing/c"}, Document: aws.String(`{}`)},
		{JobId: aws.String("x"), Targets: []string{"arn:aws:iot:eu-west-1:123456789012:policy/p"}, Document: aws.String(`{}`)},
		{JobId: aws.String("x"), Targets: []string{"arn:aws:iot:eu-west-1:123456789012:thing/c"}, Document: aws.String(`{}`), TimeoutConfig: &types.TimeoutConfig{InProgressTimeoutInMinutes: aws.Int64(0)}},
		{JobId: aws.String("x"), Targets: []string{"arn:aws:iot:eu-west-1:123456789012:thing/c"}},
	} {
		_, err := c.CreateJob(cx, in)
		wantError(t, err, "InvalidRequestException", 400)
	}
	_, err = c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("x"), Targets: []string{"arn:aws:iot:eu-west-1:123456789012:thing/zz"}, Document: aws.String(`{}`)})
	wantError(t, err, "ResourceNotFoundException", 404)
	_, err = c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("x"), Targets: []string{"arn:aws:iot:eu-west-1:123456789012:thing/c"},
		JobTemplateArn: aws.String("arn:aws:iot:eu-west-1:123456789012:jobtemplate/t")})
	wantError(t, err, "ResourceNotFoundException", 404)
	_, err = c.DescribeJob(cx, &iot.DescribeJobInput{JobId: aws.String("nope")})
	wantError(t, err, "ResourceNotFoundException", 404)

	// CancelJobExecution: version, force.
	_, err = c.CancelJobExecution(cx, &iot.CancelJobExecutionInput{JobId: aws.String("fw-1"), ThingName: aws.String("a")})
	wantError(t, err, "InvalidStateTransitionException", 409)
	_, err = c.CancelJobExecution(cx, &iot.CancelJobExecutionInput{JobId: aws.String("fw-1"), ThingName: aws.String("a"), Force: true, ExpectedVersion: aws.Int64(1)})
	wantError(t, err, "VersionConflictException", 409)
	if _, err := c.CancelJobExecution(cx, &iot.CancelJobExecutionInput{JobId: aws.String("fw-1"), ThingName: aws.String("a"), Force: true,
		ExpectedVersion: aws.Int64(2), StatusDetails: map[string]string{"why": "ops"}}); err != nil {
		t.Fatal(err)
	}
	de, _ = c.DescribeJobExecution(cx, &iot.DescribeJobExecutionInput{JobId: aws.String("fw-1"), ThingName: aws.String("a")})
	if de.Execution.Status != types.JobExecutionStatusCanceled || !aws.ToBool(de.Execution.ForceCanceled) || de.Execution.StatusDetails.DetailsMap["why"] != "ops" {
		t.Fatalf("%+v", de.Execution)
	}

	// DeleteJob needs a terminal job or force; CancelJob with a reason.
	_, err = c.DeleteJob(cx, &iot.DeleteJobInput{JobId: aws.String("fw-2")})
	wantError(t, err, "InvalidStateTransitionException", 409)
	_, err = c.CancelJob(cx, &iot.CancelJobInput{JobId: aws.String("fw-2"), ReasonCode: aws.String("not upper")})
	wantError(t, err, "InvalidRequestException", 400)
	cc, err := c.CancelJob(cx, &iot.CancelJobInput{JobId: aws.String("fw-2"), ReasonCode: aws.String("BAD_BUILD"), Comment: aws.String("wrong image")})
	if err != nil || *cc.JobId != "fw-2" {
		t.Fatal(err)
	}
	dj, _ = c.DescribeJob(cx, &iot.DescribeJobInput{JobId: aws.String("fw-2")})
	if dj.Job.Status != types.JobStatusCanceled || *dj.Job.ReasonCode != "BAD_BUILD" || *dj.Job.Comment != "wrong image" || *dj.Job.JobProcessDetails.NumberOfCanceledThings != 1 {
		t.Fatalf("%+v", dj.Job)
	}
	if _, err := c.DeleteJob(cx, &iot.DeleteJobInput{JobId: aws.String("fw-2")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteJob(cx, &iot.DeleteJobInput{JobId: aws.String("fw-1"), Force: true}); err != nil {
		t.Fatal(err)
	}
	// Deletion takes a while, as on AWS.
	if lj, _ := c.ListJobs(cx, &iot.ListJobsInput{Status: types.JobStatusDeletionInProgress}); len(lj.Jobs) != 2 {
		t.Fatal(lj.Jobs)
	}
	e.clk.Advance(jobsvc.DefaultDeletionDelay)
	if err := e.jobs.Tick(); err != nil {
		t.Fatal(err)
	}
	if lj, _ := c.ListJobs(cx, &iot.ListJobsInput{}); len(lj.Jobs) != 0 {
		t.Fatal(lj.Jobs)
	}
	// A job completed: cannot be canceled.
	c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("fw-3"), Targets: []string{"arn:aws:iot:eu-west-1:123456789012:thing/c"}, Document: aws.String(`{}`)})
	e.jobs.HandleDevice("c", "c", "$aws/things/c/jobs/fw-3/update", []byte(`{"status":"SUCCEEDED"}`))
	_, err = c.CancelJob(cx, &iot.CancelJobInput{JobId: aws.String("fw-3")})
	wantError(t, err, "InvalidRequestException", 400)
	dj, _ = c.DescribeJob(cx, &iot.DescribeJobInput{JobId: aws.String("fw-3")})
	if dj.Job.Status != types.JobStatusCompleted || dj.Job.CompletedAt == nil {
		t.Fatalf("%+v", dj.Job)
	}
}

func TestSDKDocumentSource(t *testing.T) {
	e := newEnv(t)
	c, cx := e.client(creds), ctx(t)
	c.CreateThing(cx, &iot.CreateThingInput{ThingName: aws.String("a")})
	e.docs["jobs/fw.json"] = `{"operation":"app_fw_update","fwversion":"1.0.1"}`
	if _, err := c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("j"), Targets: []string{"arn:aws:iot:eu-west-1:123456789012:thing/a"},
		DocumentSource: aws.String("https://s3.amazonaws.com/jobs/fw.json")}); err != nil {
		t.Fatal(err)
	}
	dj, err := c.DescribeJob(cx, &iot.DescribeJobInput{JobId: aws.String("j")})
	if err != nil || aws.ToString(dj.DocumentSource) != "https://s3.amazonaws.com/jobs/fw.json" {
		t.Fatalf("%+v %v", dj, err)
	}
	gd, _ := c.GetJobDocument(cx, &iot.GetJobDocumentInput{JobId: aws.String("j")})
	if *gd.Document != e.docs["jobs/fw.json"] {
		t.Fatal(*gd.Document)
	}
	_, err = c.CreateJob(cx, &iot.CreateJobInput{JobId: aws.String("k"), Targets: []string{"arn:aws:iot:eu-west-1:123456789012:thing/a"},
		DocumentSource: aws.String("https://s3.amazonaws.com/jobs/missing.json")})
	wantError(t, err, "InvalidRequestException", 400)
}

func TestSDKAuthentication(t *testing.T) {
	e := newEnv(t)
	cx := ctx(t)
	// The SDK signs as "iot"; the AWS CLI as "execute-api": both are served.
	if _, err := e.client(creds).ListThings(cx, &iot.ListThingsInput{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client(creds, iot.WithSigV4SigningName("execute-api")).ListThings(cx, &iot.ListThingsInput{}); err != nil {
		t.Fatal(err)
	}
	_, err := e.client(creds, iot.WithSigV4SigningName("s3")).ListThings(cx, &iot.ListThingsInput{})
	wantError(t, err, "InvalidSignatureException", 403)
	_, err = e.client(sigv4.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: "wrong"}).ListThings(cx, &iot.ListThingsInput{})
	wantError(t, err, "InvalidSignatureException", 403)
	_, err = e.client(sigv4.Credentials{AccessKeyID: "AKIANOBODY", SecretAccessKey: "x"}).ListThings(cx, &iot.ListThingsInput{})
	wantError(t, err, "UnrecognizedClientException", 403)
	_, err = e.client(creds, iot.WithSigV4SigningRegion("us-east-1")).ListThings(cx, &iot.ListThingsInput{})
	wantError(t, err, "IncompleteSignatureException", 400)
	// A request signed 20 minutes ago.
	e.clk.Advance(20 * time.Minute)
	_, err = e.client(creds).ListThings(cx, &iot.ListThingsInput{})
	wantError(t, err, "InvalidSignatureException", 403)
}

func TestSDKUnimplemented(t *testing.T) {
	e := newEnv(t)
	_, err := e.client(creds).ListPolicies(ctx(t), &iot.ListPoliciesInput{})
	wantError(t, err, "NotImplementedException", 501)
}

// TestErrorBodyShape checks the JSON body AWS's SDKs and CLI read the error
// from (message and __type), through the SDK's raw response.
func TestErrorBodyShape(t *testing.T) {
	e := newEnv(t)
	var body []byte
	c := e.client(creds, func(o *iot.Options) {
		o.HTTPClient = recordingClient{e.srv.Client(), &body}
	})
	_, err := c.DescribeThing(ctx(t), &iot.DescribeThingInput{ThingName: aws.String("ghost")})
	wantError(t, err, "ResourceNotFoundException", 404)
	var shape map[string]string
	if err := json.Unmarshal(body, &shape); err != nil || shape["__type"] != "ResourceNotFoundException" || !strings.Contains(shape["message"], "ghost") {
		t.Fatalf("body %s: %v", body, err)
	}
}

// TestNullBodyRefused: a JSON null body is not an empty object, for the
// control plane and the iot-jobs-data API alike.
func TestNullBodyRefused(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ method, path, service string }{
		{http.MethodPost, "/things/t1", ServiceIoT},
		{http.MethodPut, "/jobs/j1", ServiceIoT},
	} {
		for _, body := range []string{"null", " null\n"} {
			req, err := http.NewRequest(tc.method, e.srv.URL+tc.path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if err := sigv4.Sign(req, creds, region, tc.service, e.clk.Now(), ""); err != nil {
				t.Fatal(err)
			}
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Amzn-ErrorType") != "InvalidRequestException" || !strings.Contains(string(b), "null") {
				t.Errorf("%s %s with body %q: %s %s", tc.method, tc.path, body, resp.Status, b)
			}
		}
	}
	if _, err := e.reg.DescribeThing("t1"); err == nil {
		t.Error("a null body created a thing")
	}
	e.client(creds).CreateThing(ctx(t), &iot.CreateThingInput{ThingName: aws.String("t1")})
	if status, out := e.dataCall(ServiceJobsData, http.MethodPut, "/things/t1/jobs/$next", "null"); status != http.StatusBadRequest || out["__type"] != "InvalidRequestException" {
		t.Errorf("iot-jobs-data StartNextPendingJobExecution with a null body: %d %v", status, out)
	}
}

// recordingClient keeps the last response body the SDK received.
type recordingClient struct {
	c    *http.Client
	body *[]byte
}

func (r recordingClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := r.c.Do(req)
	if err != nil {
		return nil, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	*r.body = b
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

// TestPage checks the paging helper's tokens.
func TestPage(t *testing.T) {
	var seen []int
	tok := ""
	for range 10 {
		r := httptest.NewRequest("GET", "/things?maxResults=3&nextToken="+tok, nil)
		s, en, next, err := page(r, 7, "maxResults", "nextToken")
		if err != nil {
			t.Fatal(err)
		}
		for i := s; i < en; i++ {
			seen = append(seen, i)
		}
		if next == "" {
			break
		}
		tok = next
	}
	sort.Ints(seen)
	if !slices.Equal(seen, []int{0, 1, 2, 3, 4, 5, 6}) {
		t.Fatal(seen)
	}
	_ = iotjobs.StatusQueued
}

package emu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/awsfota/awsfota/iotjobs"
)

// The local cloud driven the way an operator drives AWS: with the official
// aws-sdk-go-v2 clients (IoT, S3 and the S3 transfer manager) pointed at
// endpoints.json, and a device speaking MQTT over mutual TLS with the
// certificate CreateKeysAndCertificate returned.

func sdkConfig(ep Endpoints) aws.Config {
	return aws.Config{
		Region:      ep.Region,
		Credentials: credentials.NewStaticCredentialsProvider(ep.AccessKeyID, ep.SecretAccessKey, ""),
		Retryer:     func() aws.Retryer { return aws.NopRetryer{} },
		// As config.LoadDefaultConfig sets them.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported,
	}
}

func iotClient(ep Endpoints) *iot.Client {
	return iot.NewFromConfig(sdkConfig(ep), func(o *iot.Options) { o.BaseEndpoint = aws.String(ep.HTTP) })
}

func s3Client(ep Endpoints) *s3.Client {
	return s3.NewFromConfig(sdkConfig(ep), func(o *s3.Options) { o.BaseEndpoint = aws.String(ep.HTTP); o.UsePathStyle = true })
}

// device is a minimal MQTT device: a paho client on mutual TLS.
type device struct {
	c    *paho.Client
	msgs chan *paho.Publish
}

func dialDevice(t *testing.T, ep Endpoints, caPEM []byte, certPEM, keyPEM, clientID string) (*device, error) {
	t.Helper()
	cert, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	conn, err := tls.Dial("tcp", ep.MQTT, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		return nil, err
	}
	d := &device{msgs: make(chan *paho.Publish, 64)}
	d.c = paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			d.msgs <- pr.Packet
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30}); err != nil {
		conn.Close()
		return nil, err
	}
	t.Cleanup(func() {
		d.c.Disconnect(&paho.Disconnect{})
		<-d.c.Done()
	})
	return d, nil
}

func (d *device) request(t *testing.T, topic, payload, reply string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
		t.Fatal(err)
	}
	return d.expect(t, reply)
}

func (d *device) expect(t *testing.T, topic string) []byte {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case p := <-d.msgs:
			if p.Topic == topic {
				return p.Payload
			}
		case <-timeout.C:
			t.Fatalf("nothing on %s", topic)
		}
	}
}

func TestSDKFirmwareUpdate(t *testing.T) {
	c := start(t, t.TempDir())
	defer c.Close()
	ep := c.Endpoints()
	ic, sc := iotClient(ep), s3Client(ep)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The image goes up with the transfer manager (multipart above 5 MiB).
	img := bytes.Repeat([]byte("firmware-1.0.1 "), 700_000)
	if _, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("fw-images")}); err != nil {
		t.Fatal(err)
	}
	tm := transfermanager.New(sc, func(o *transfermanager.Options) { o.PartSizeBytes = 5 << 20 })
	if _, err := tm.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: aws.String("fw-images"), Key: aws.String("app-1.0.1.bin"), Body: bytes.NewReader(img)}); err != nil {
		t.Fatal(err)
	}
	// Provisioning as AWS's console does it: thing, keys and certificate,
	// attachment, a thing group.
	if _, err := ic.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String("dev-1")}); err != nil {
		t.Fatal(err)
	}
	kc, err := ic.CreateKeysAndCertificate(ctx, &iot.CreateKeysAndCertificateInput{SetAsActive: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ic.AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{ThingName: aws.String("dev-1"), Principal: kc.CertificateArn}); err != nil {
		t.Fatal(err)
	}
	g, err := ic.CreateThingGroup(ctx, &iot.CreateThingGroupInput{ThingGroupName: aws.String("fleet")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ic.AddThingToThingGroup(ctx, &iot.AddThingToThingGroupInput{ThingName: aws.String("dev-1"), ThingGroupName: aws.String("fleet")}); err != nil {
		t.Fatal(err)
	}
	// As on AWS, the endpoint is a host name; the port is in endpoints.json.
	ed, err := ic.DescribeEndpoint(ctx, &iot.DescribeEndpointInput{EndpointType: aws.String("iot:Data-ATS")})
	if host, _, _ := net.SplitHostPort(ep.MQTT); err != nil || *ed.EndpointAddress != host || host != "127.0.0.1" {
		t.Fatalf("%+v %v", ed, err)
	}

	dev, err := dialDevice(t, ep, c.CA.CertPEM(), *kc.CertificatePem, *kc.KeyPair.PrivateKey, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel2()
	if _, err := dev.c.Subscribe(ctx2, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$aws/things/dev-1/jobs/notify-next", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	doc := `{"operation":"app_fw_update","fwversion":"1.0.1","size":` + itoa(len(img)) +
		`,"url":"${aws:iot:s3-presigned-url:https://s3.` + ep.Region + `.amazonaws.com/fw-images/app-1.0.1.bin}"}`
	if _, err := ic.CreateJob(ctx, &iot.CreateJobInput{JobId: aws.String("fw-101"), Targets: []string{*g.ThingGroupArn}, Document: aws.String(doc),
		PresignedUrlConfig: &iottypes.PresignedUrlConfig{ExpiresInSec: aws.Int64(300)}}); err != nil {
		t.Fatal(err)
	}
	var nn iotjobs.NotifyNextMessage
	iotjobs.Decode(dev.expect(t, "$aws/things/dev-1/jobs/notify-next"), &nn)
	if nn.Execution == nil || nn.Execution.JobID != "fw-101" {
		t.Fatalf("notify-next %+v", nn)
	}
	var sn iotjobs.ExecutionResponse
	iotjobs.Decode(dev.request(t, "$aws/things/dev-1/jobs/start-next", `{"clientToken":"s"}`, "$aws/things/dev-1/jobs/start-next/accepted"), &sn)
	var d struct {
		URL  string `json:"url"`
		Size int    `json:"size"`
	}
	if err := json.Unmarshal(sn.Execution.JobDocument, &d); err != nil || !strings.HasPrefix(d.URL, ep.HTTP+"/fw-images/app-1.0.1.bin?") ||
		!strings.Contains(d.URL, "X-Amz-Expires=300") {
		t.Fatalf("document %s: %v", sn.Execution.JobDocument, err)
	}
	// The device downloads what the presigned URL points at.
	resp, err := http.Get(d.URL)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != 200 || sha256.Sum256(got) != sha256.Sum256(img) {
		t.Fatalf("download: %s, %d bytes", resp.Status, len(got))
	}
	dev.request(t, "$aws/things/dev-1/jobs/fw-101/update", `{"status":"SUCCEEDED","expectedVersion":2,"statusDetails":{"fwversion":"1.0.1"}}`,
		"$aws/things/dev-1/jobs/fw-101/update/accepted")
	de, err := ic.DescribeJobExecution(ctx, &iot.DescribeJobExecutionInput{JobId: aws.String("fw-101"), ThingName: aws.String("dev-1")})
	if err != nil || de.Execution.Status != iottypes.JobExecutionStatusSucceeded || de.Execution.StatusDetails.DetailsMap["fwversion"] != "1.0.1" {
		t.Fatalf("%+v %v", de, err)
	}
	dj, err := ic.DescribeJob(ctx, &iot.DescribeJobInput{JobId: aws.String("fw-101")})
	if err != nil || dj.Job.Status != iottypes.JobStatusCompleted || *dj.Job.JobProcessDetails.NumberOfSucceededThings != 1 {
		t.Fatalf("%+v %v", dj, err)
	}

	// Deactivating the certificate drops the device at once; it cannot
	// come back.
	if _, err := ic.UpdateCertificate(ctx, &iot.UpdateCertificateInput{CertificateId: kc.CertificateId, NewStatus: iottypes.CertificateStatusInactive}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dev.c.Done():
	case <-ctx2.Done():
		t.Fatal("the connection of the INACTIVE certificate is still up")
	}
	if _, err := dialDevice(t, ep, c.CA.CertPEM(), *kc.CertificatePem, *kc.KeyPair.PrivateKey, "dev-1"); err == nil {
		t.Fatal("an INACTIVE certificate connected")
	}

	// The S3 side with the SDK: the object is there, listed, ranged.
	obj, err := sc.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("fw-images"), Key: aws.String("app-1.0.1.bin"), Range: aws.String("bytes=0-14")})
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(obj.Body)
	obj.Body.Close()
	if string(part) != "firmware-1.0.1 " {
		t.Fatalf("%q", part)
	}
	// An unknown AWS API on the same port is refused with AWS's shape.
	_, err = ic.ListPolicies(ctx, &iot.ListPoliciesInput{})
	var nie interface{ ErrorCode() string }
	if !errors.As(err, &nie) || nie.ErrorCode() != "NotImplementedException" {
		t.Fatal(err)
	}
}

// TestStateSurvivesRestart: things, groups, certificates, jobs and
// objects are all still there after a restart, and a job's timers still run.
func TestStateSurvivesRestartSDK(t *testing.T) {
	dir := t.TempDir()
	c := start(t, dir)
	ep := c.Endpoints()
	ic, sc := iotClient(ep), s3Client(ep)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ic.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String("a")})
	ic.CreateThingGroup(ctx, &iot.CreateThingGroupInput{ThingGroupName: aws.String("g")})
	ic.AddThingToThingGroup(ctx, &iot.AddThingToThingGroupInput{ThingName: aws.String("a"), ThingGroupName: aws.String("g")})
	kc, _ := ic.CreateKeysAndCertificate(ctx, &iot.CreateKeysAndCertificateInput{SetAsActive: true})
	if _, err := ic.CreateJob(ctx, &iot.CreateJobInput{JobId: aws.String("j"), Targets: []string{"arn:aws:iot:" + ep.Region + ":" + ep.AccountID + ":thinggroup/g"},
		Document: aws.String(`{"x":1}`), TargetSelection: iottypes.TargetSelectionContinuous}); err != nil {
		t.Fatal(err)
	}
	sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bkt")})
	sc.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bkt"), Key: aws.String("k"), Body: strings.NewReader("v")})
	c.Close()

	c = start(t, dir)
	defer c.Close()
	ep = c.Endpoints()
	ic, sc = iotClient(ep), s3Client(ep)
	if _, err := ic.DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: kc.CertificateId}); err != nil {
		t.Fatal(err)
	}
	if in, err := ic.ListThingsInThingGroup(ctx, &iot.ListThingsInThingGroupInput{ThingGroupName: aws.String("g")}); err != nil || len(in.Things) != 1 {
		t.Fatalf("%+v %v", in, err)
	}
	// The continuous job still follows the group.
	ic.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String("bkt")})
	ic.AddThingToThingGroup(ctx, &iot.AddThingToThingGroupInput{ThingName: aws.String("bkt"), ThingGroupName: aws.String("g")})
	le, err := ic.ListJobExecutionsForJob(ctx, &iot.ListJobExecutionsForJobInput{JobId: aws.String("j")})
	if err != nil || len(le.ExecutionSummaries) != 2 {
		t.Fatalf("%+v %v", le, err)
	}
	o, err := sc.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	o.Body.Close()
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

package broker

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/cloud/pki"
	"github.com/awsfota/awsfota/cloud/registry"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	t    testing.TB
	ca   *pki.CA
	reg  *registry.Registry
	jobs *jobsvc.Service
	b    *Broker
	cert map[string]tls.Certificate
	ids  map[string]string

	once       sync.Once
	serverCert []byte // the broker's certificate, verified (deviceTLS)
}

func newEnv(t testing.TB, opts ...func(*Config)) *env {
	t.Helper()
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "c.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ca, _ := pki.LoadOrCreate(filepath.Join(dir, "pki"), nil)
	reg, _ := registry.Open(db, registry.Config{Region: "us-east-1", AccountID: "000000000000"})
	js, _ := jobsvc.Open(db, jobsvc.Config{Region: "us-east-1", AccountID: "000000000000"})
	srvCert, _ := ca.ServerCertificate()
	cfg := Config{Addr: "127.0.0.1:0", Certificate: srvCert, ClientCAs: ca.Pool(), Authorizer: reg, Jobs: js, Region: "us-east-1", AccountID: "000000000000"}
	for _, o := range opts {
		o(&cfg)
	}
	b, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	js.SetPublisher(b)
	e := &env{t: t, ca: ca, reg: reg, jobs: js, b: b, cert: map[string]tls.Certificate{}, ids: map[string]string{}}
	for _, th := range []string{"dev-1", "dev-2"} {
		iss, _ := ca.IssueClient(th)
		reg.CreateThing(th, nil)
		reg.AddCertificate(iss.ID, string(iss.CertPEM), registry.StatusActive)
		reg.AttachThingPrincipal(th, iss.ID)
		e.cert[th], _ = tls.X509KeyPair(iss.CertPEM, iss.KeyPEM)
		e.ids[th] = iss.ID
	}
	return e
}

type client struct {
	c    *paho.Client
	msgs chan *paho.Publish
}

// dial connects with certificate certOf as clientID.
func (e *env) dial(certOf, clientID string) (*client, error) {
	e.t.Helper()
	conn, err := tls.Dial("tcp", e.b.Addr(), &tls.Config{Certificates: []tls.Certificate{e.cert[certOf]}, RootCAs: e.ca.Pool(), ServerName: "localhost"})
	if err != nil {
		return nil, err
	}
	cl := &client{msgs: make(chan *paho.Publish, 32)}
	cl.c = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			cl.msgs <- pr.Packet
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30}); err != nil {
		conn.Close()
		return nil, err
	}
	e.t.Cleanup(func() {
		cl.c.Disconnect(&paho.Disconnect{})
		<-cl.c.Done()
	})
	return cl, nil
}

func (c *client) expect(t *testing.T, topic string) *paho.Publish {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case p := <-c.msgs:
			if p.Topic == topic {
				return p
			}
		case <-timeout:
			t.Fatalf("nothing on %s", topic)
			return nil
		}
	}
}

func (c *client) none(t *testing.T) {
	t.Helper()
	select {
	case p := <-c.msgs:
		t.Fatalf("unexpected message on %s", p.Topic)
	default:
	}
}

func (c *client) publish(t *testing.T, topic, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
		t.Fatal(err)
	}
}

func (c *client) subscribe(t *testing.T, filter string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if ack == nil {
		t.Fatal(err)
	}
	return ack.Reasons[0]
}

func TestJobsOverMQTT(t *testing.T) {
	e := newEnv(t)
	d1, err := e.dial("dev-1", "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	d2, err := e.dial("dev-2", "dev-2")
	if err != nil {
		t.Fatal(err)
	}
	if rc := d1.subscribe(t, "$aws/things/dev-1/jobs/notify-next"); rc >= 0x80 {
		t.Fatalf("own subscription refused: %#x", rc)
	}
	if rc := d2.subscribe(t, "$aws/things/dev-2/jobs/#"); rc >= 0x80 {
		t.Fatalf("own subscription refused: %#x", rc)
	}
	// A notification reaches the subscriber.
	if _, err := e.jobs.CreateJob(jobsvc.JobSpec{JobID: "fw-1", Things: []string{"dev-1"}, Document: []byte(`{"operation":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	var nn iotjobs.NotifyNextMessage
	iotjobs.Decode(d1.expect(t, "$aws/things/dev-1/jobs/notify-next").Payload, &nn)
	if nn.Execution == nil || nn.Execution.JobID != "fw-1" {
		t.Fatalf("notify-next %+v", nn)
	}
	// A reply reaches the requester although it did not subscribe to it.
	d1.publish(t, "$aws/things/dev-1/jobs/$next/get", `{"clientToken":"x1"}`)
	var r iotjobs.ExecutionResponse
	iotjobs.Decode(d1.expect(t, "$aws/things/dev-1/jobs/$next/get/accepted").Payload, &r)
	if r.ClientToken != "x1" || r.Execution == nil || r.Execution.JobID != "fw-1" {
		t.Fatalf("reply %+v", r)
	}
	d1.publish(t, "$aws/things/dev-1/jobs/fw-1/update", `{"status":"SUCCEEDED","expectedVersion":1,"clientToken":"x2"}`)
	d1.expect(t, "$aws/things/dev-1/jobs/fw-1/update/accepted")
	if ex, _ := e.jobs.DescribeExecution("fw-1", "dev-1"); ex.Status != iotjobs.StatusSucceeded {
		t.Fatalf("execution %+v", ex)
	}
	d2.none(t)
}

func TestPolicy(t *testing.T) {
	e := newEnv(t)
	d1, err := e.dial("dev-1", "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"$aws/things/dev-2/jobs/#", "$aws/things/+/jobs/#", "#", "$aws/things/dev-1"} {
		if rc := d1.subscribe(t, f); rc < 0x80 {
			t.Errorf("subscription to %s allowed (%#x)", f, rc)
		}
	}
	// Publishing into another thing's namespace is refused (v5: PUBACK with an error code).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := d1.c.Publish(ctx, &paho.Publish{Topic: "$aws/things/dev-2/jobs/$next/get", QoS: 1, Payload: []byte(`{}`)})
	if err == nil && (resp == nil || resp.ReasonCode < 0x80) {
		t.Fatal("publish to another thing's topic accepted")
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	if _, err := e.dial("dev-1", "dev-2"); err == nil {
		t.Fatal("dev-1's certificate connected as dev-2")
	}
	if _, err := e.dial("dev-1", ""); err == nil {
		t.Fatal("empty client id accepted")
	}
	if err := e.reg.UpdateCertificateStatus(e.ids["dev-1"], registry.StatusInactive); err != nil {
		t.Fatal(err)
	}
	if _, err := e.dial("dev-1", "dev-1"); err == nil {
		t.Fatal("inactive certificate accepted")
	}
	// A certificate from another CA fails the TLS handshake itself.
	other, _ := pki.LoadOrCreate(t.TempDir(), nil)
	iss, _ := other.IssueClient("dev-2")
	e.cert["rogue"], _ = tls.X509KeyPair(iss.CertPEM, iss.KeyPEM)
	if _, err := e.dial("rogue", "dev-2"); err == nil {
		t.Fatal("foreign certificate accepted")
	}
	if _, err := e.dial("dev-2", "dev-2"); err != nil {
		t.Fatalf("good client refused: %v", err)
	}
}

// TestWidenedPolicy: a policy may let things watch the job events; a
// delivery is checked with iot:Receive, a subscription with iot:Subscribe.
func TestWidenedPolicy(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
		{"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"arn:aws:iot:*:*:topic/$aws/things/${iot:Connection.Thing.ThingName}/*"},
		{"Effect":"Allow","Action":"iot:Subscribe","Resource":["arn:aws:iot:*:*:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/*","arn:aws:iot:*:*:topicfilter/$aws/events/*"]},
		{"Effect":"Allow","Action":"iot:Receive","Resource":"arn:aws:iot:*:*:topic/$aws/events/job/*"}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) { c.Policy = p })
	if err := e.jobs.UpdateEventConfigurations(map[string]bool{jobsvc.EventTypeJob: true, jobsvc.EventTypeJobExecution: true}); err != nil {
		t.Fatal(err)
	}
	d1, err := e.dial("dev-1", "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if rc := d1.subscribe(t, "$aws/events/#"); rc >= 0x80 {
		t.Fatalf("subscription refused: %#x", rc)
	}
	if rc := d1.subscribe(t, "$aws/things/dev-2/jobs/#"); rc < 0x80 {
		t.Fatal("subscription to another thing allowed")
	}
	// A job on dev-2 runs to its end: the job event reaches dev-1, the
	// execution event (not receivable) does not.
	e.jobs.CreateJob(jobsvc.JobSpec{JobID: "j", Things: []string{"dev-2"}, Document: []byte(`{}`)})
	e.jobs.HandleDevice("dev-2", "dev-2", "$aws/things/dev-2/jobs/j/update", []byte(`{"status":"SUCCEEDED"}`))
	p1 := d1.expect(t, "$aws/events/job/j/completed")
	var ev jobsvc.JobEvent
	if err := json.Unmarshal(p1.Payload, &ev); err != nil || ev.Status != "COMPLETED" || ev.JobProcessDetails.NumberOfSucceededThings != 1 {
		t.Fatalf("%s %v", p1.Payload, err)
	}
	d1.none(t)
}

// TestDisconnectCertificate: a certificate made INACTIVE loses its live
// connection at once and cannot come back.
func TestDisconnectCertificate(t *testing.T) {
	e := newEnv(t)
	d1, err := e.dial("dev-1", "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	d2, err := e.dial("dev-2", "dev-2")
	if err != nil {
		t.Fatal(err)
	}
	e.reg.UpdateCertificateStatus(e.ids["dev-1"], registry.StatusInactive)
	if n := e.b.DisconnectCertificate(e.ids["dev-1"]); n != 1 {
		t.Fatalf("%d connections dropped", n)
	}
	select {
	case <-d1.c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the connection of the inactive certificate is still up")
	}
	if _, err := e.dial("dev-1", "dev-1"); err == nil {
		t.Fatal("the inactive certificate reconnected")
	}
	// The other thing is untouched.
	d2.publish(t, "$aws/things/dev-2/jobs/get", `{"clientToken":"still-here"}`)
	d2.expect(t, "$aws/things/dev-2/jobs/get/accepted")
}

// TestPayloadLimit: as AWS IoT Core, the broker refuses a payload over
// 128 KB by closing the connection.
func TestPayloadLimit(t *testing.T) {
	e := newEnv(t)
	d1, err := e.dial("dev-1", "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	d1.publish(t, "$aws/things/dev-1/data", strings.Repeat("x", MaxPayload)) // at the limit
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		d1.c.Publish(ctx, &paho.Publish{Topic: "$aws/things/dev-1/data", QoS: 1, Payload: []byte(strings.Repeat("x", 2*MaxPayload))})
	}()
	select {
	case <-d1.c.Done():
	case <-ctx.Done():
		t.Fatal("a 256 KB payload was accepted")
	}
	cancel()
	<-sent
}

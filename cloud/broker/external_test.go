package broker

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"testing"
	"time"

	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/cloud/pki"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	mpackets "github.com/mochi-mqtt/server/v2/packets"
	bolt "go.etcd.io/bbolt"
)

// TestExternal attaches the Jobs service to a plain broker (mochi with no
// rules, as a stand-in for Mosquitto; the interop suite uses the real one):
// requests reach the service through its subscription, replies reach the
// device through the device's subscriptions.
func TestExternal(t *testing.T) {
	dir := t.TempDir()
	ca, _ := pki.LoadOrCreate(filepath.Join(dir, "pki"), nil)
	srvCert, _ := ca.ServerCertificate()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srvCert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: true})
	srv.AddHook(new(allowAll), nil)
	srv.AddListener(listeners.NewNet("plain", ln))
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	db, err := bolt.Open(filepath.Join(dir, "c.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	js, _ := jobsvc.Open(db, jobsvc.Config{Region: "us-east-1", AccountID: "000000000000"})
	svc, _ := ca.IssueClient("awsfota-jobs")
	svcCert, _ := tls.X509KeyPair(svc.CertPEM, svc.KeyPEM)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	x, err := Attach(ctx, ExternalConfig{Addr: ln.Addr().String(), TLS: &tls.Config{Certificates: []tls.Certificate{svcCert}, RootCAs: ca.Pool()},
		Jobs: js})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	js.SetPublisher(x)

	dev, _ := ca.IssueClient("dev-1")
	devCert, _ := tls.X509KeyPair(dev.CertPEM, dev.KeyPEM)
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{Certificates: []tls.Certificate{devCert}, RootCAs: ca.Pool(), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	cl := &client{msgs: make(chan *paho.Publish, 32)}
	cl.c = paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) { cl.msgs <- pr.Packet; return true, nil }}})
	if _, err := cl.c.Connect(ctx, &paho.Connect{ClientID: "dev-1", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	defer func() { cl.c.Disconnect(&paho.Disconnect{}); <-cl.c.Done() }()
	for _, f := range iotjobs.DeviceFilters("dev-1") {
		cl.subscribe(t, f)
	}
	js.CreateJob(jobsvc.JobSpec{JobID: "fw-1", Things: []string{"dev-1"}, Document: []byte(`{"operation":"x"}`)})
	cl.expect(t, "$aws/things/dev-1/jobs/notify-next")
	cl.publish(t, "$aws/things/dev-1/jobs/start-next", `{"clientToken":"ext"}`)
	var r iotjobs.ExecutionResponse
	iotjobs.Decode(cl.expect(t, "$aws/things/dev-1/jobs/start-next/accepted").Payload, &r)
	if r.ClientToken != "ext" || r.Execution == nil || r.Execution.Status != iotjobs.StatusInProgress {
		t.Fatalf("%+v", r)
	}
	cl.publish(t, "$aws/things/dev-1/jobs/fw-1/update", `{"status":"SUCCEEDED","expectedVersion":2}`)
	cl.expect(t, "$aws/things/dev-1/jobs/fw-1/update/accepted")
	if e, _ := js.DescribeExecution("fw-1", "dev-1"); e.Status != iotjobs.StatusSucceeded {
		t.Fatalf("%+v", e)
	}
	for tp, want := range map[string]bool{"$aws/things/x/jobs/get": true, "$aws/things//jobs/get": false, "other/topic": false, "$aws/things/x/shadow/get": false} {
		if th, ok := thingOf(tp); ok != want || ok && th != "x" {
			t.Errorf("thingOf(%q) = %q %v", tp, th, ok)
		}
	}
}

// allowAll lets every client do anything, as a broker without rules.
type allowAll struct{ mqtt.HookBase }

func (allowAll) ID() string { return "allow-all" }
func (allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (allowAll) OnConnectAuthenticate(*mqtt.Client, mpackets.Packet) bool { return true }
func (allowAll) OnACLCheck(*mqtt.Client, string, bool) bool               { return true }

package mqttconn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type pki struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
	server tls.Certificate
	client tls.Certificate
}

func issue(t *testing.T, cn string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, server bool) (tls.Certificate, *x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	if ca == nil {
		tpl.IsCA, tpl.BasicConstraintsValid = true, true
		ca, caKey = tpl, key
	} else if server {
		tpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tpl.DNSNames = []string{"localhost"}
	} else {
		tpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, cert, key
}

func newPKI(t *testing.T) *pki {
	_, ca, caKey := issue(t, "test CA", nil, nil, false)
	p := &pki{ca: ca, caKey: caKey, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.server, _, _ = issue(t, "localhost", ca, caKey, true)
	p.client, _, _ = issue(t, "dev-1", ca, caKey, false)
	return p
}

// broker starts a mochi broker on TLS that requires client certificates.
func broker(t *testing.T, p *pki) (*mqtt.Server, string) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{p.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.pool,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := s.AddHook(new(allowAll), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddListener(listeners.NewNet("tls", ln)); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return s, ln.Addr().String()
}

func TestConnectSubscribePublish(t *testing.T) {
	p := newPKI(t)
	srv, addr := broker(t, p)
	up := make(chan struct{}, 4)
	down := make(chan struct{}, 4)
	msgs := make(chan string, 4)
	ctx := context.Background()
	c := dialUp(t, Config{
		Endpoint: addr, ClientID: "dev-1", Certificate: p.client, RootCAs: p.pool, ServerName: "localhost",
		Filters:    []string{"$aws/things/dev-1/jobs/#"},
		OnMessage:  func(topic string, payload []byte) { msgs <- topic + " " + string(payload) },
		OnUp:       func() { up <- struct{}{} },
		OnDown:     func() { down <- struct{}{} },
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
	}, up)

	// The broker delivers to the subscription.
	if err := srv.Publish("$aws/things/dev-1/jobs/notify-next", []byte(`{"timestamp":1}`), false, 1); err != nil {
		t.Fatal(err)
	}
	if got := waitFor(t, msgs, "message"); got != `$aws/things/dev-1/jobs/notify-next {"timestamp":1}` {
		t.Fatalf("got %q", got)
	}
	// Our publish reaches the broker.
	seen := make(chan string, 1)
	if err := srv.Subscribe("probe/#", 2, func(cl *mqtt.Client, sub packets.Subscription, pk packets.Packet) {
		seen <- string(pk.Payload)
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, "probe/x", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if got := waitFor(t, seen, "publish"); got != "hello" {
		t.Fatal(got)
	}

	// The broker drops us: we reconnect and subscribe again.
	srv.DisconnectClient(brokerClient(t, srv, "dev-1"), packets.ErrServerShuttingDown)
	waitFor(t, down, "connection down")
	waitFor(t, up, "reconnected")
	if err := srv.Publish("$aws/things/dev-1/jobs/notify", []byte(`{}`), false, 1); err != nil {
		t.Fatal(err)
	}
	if got := waitFor(t, msgs, "message after reconnect"); !strings.HasPrefix(got, "$aws/things/dev-1/jobs/notify ") {
		t.Fatal(got)
	}
}

// dialUp dials cfg, whose OnUp signals up, and waits for the connection;
// the connection is closed when the test ends.
func dialUp(t *testing.T, cfg Config, up <-chan struct{}) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	waitFor(t, up, "connection up")
	return c
}

// brokerClient returns the broker's side of client id's connection.
func brokerClient(t *testing.T, srv *mqtt.Server, id string) *mqtt.Client {
	t.Helper()
	cl, ok := srv.Clients.Get(id)
	if !ok {
		t.Fatalf("client %s not registered", id)
	}
	return cl
}

func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

func TestExplainedErrors(t *testing.T) {
	p := newPKI(t)
	_, addr := broker(t, p)
	other := newPKI(t)

	// Refused port.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()

	cases := []struct {
		name  string
		cfg   Config
		want  string
		cause []Cause // any of
	}{
		{"wrong CA", Config{Endpoint: addr, ClientID: "dev-1", Certificate: p.client, RootCAs: other.pool, ServerName: "localhost"}, "not signed by the trusted CA", []Cause{CauseUntrusted}},
		{"foreign client cert", Config{Endpoint: addr, ClientID: "dev-1", Certificate: other.client, RootCAs: p.pool, ServerName: "localhost"}, "check the device certificate and key", []Cause{CauseHandshake, CauseClosed}},
		{"wrong name", Config{Endpoint: addr, ClientID: "dev-1", Certificate: p.client, RootCAs: p.pool, ServerName: "example.com"}, "not valid for the name", []Cause{CauseServerName}},
		{"nothing listening", Config{Endpoint: closed, ClientID: "dev-1", Certificate: p.client, RootCAs: p.pool}, "check the endpoint and port", []Cause{CauseRefused}},
	}
	// The same errors with the broker's chain checked by VerifiedChains.
	for _, c := range cases[:3] {
		c.name += " (verified chains)"
		c.cfg.VerifiedChains = new(VerifiedChains)
		cases = append(cases, c)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errs := make(chan error, 16)
			c.cfg.OnError = func(err error) {
				select {
				case errs <- err:
				default:
				}
			}
			c.cfg.BackoffMin, c.cfg.BackoffMax = time.Hour, time.Hour
			conn, err := Dial(context.Background(), c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := waitFor(t, errs, "connection error")
			conn.Close()
			if !strings.Contains(got.Error(), c.want) {
				t.Fatalf("error %q lacks %q", got, c.want)
			}
			var ce *ConnectError
			if !errors.As(got, &ce) || !slices.Contains(c.cause, ce.Cause) || ce.Retry < 30*time.Minute || ce.Retry > time.Hour ||
				!strings.Contains(got.Error(), "trying again in") {
				t.Fatalf("error %q: %+v, want a *ConnectError of cause %v, retry within the backoff", got, ce, c.cause)
			}
		})
	}
}

// A link that accepts the connection and then carries nothing (a stalled
// proxy, a black-holing firewall) fails the attempt within ConnectTimeout
// — in the TLS handshake, which autopaho does not bound — and says so.
func TestConnectTimeout(t *testing.T) {
	p := newPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // never answered
		}
	}()
	errs := make(chan error, 16)
	conn, err := Dial(context.Background(), Config{Endpoint: ln.Addr().String(), ClientID: "dev-1", Certificate: p.client, RootCAs: p.pool,
		ConnectTimeout: 100 * time.Millisecond, BackoffMin: time.Hour, BackoffMax: time.Hour,
		OnError: func(err error) {
			select {
			case errs <- err:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, errs, "connection error")
	conn.Close()
	ln.Close()
	<-accepted
	for _, c := range held {
		c.Close()
	}
	var ce *ConnectError
	if !errors.As(got, &ce) || ce.Cause != CauseTimeout || !strings.Contains(got.Error(), "did not answer in time") {
		t.Fatalf("error %v (%+v), want a timeout", got, ce)
	}
}

// Each failed attempt reports the delay before the next one, which doubles
// up to BackoffMax (with jitter: between half and all of it).
func TestConnectErrorRetry(t *testing.T) {
	p := newPKI(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	errs := make(chan error, 16)
	conn, err := Dial(context.Background(), Config{Endpoint: closed, ClientID: "dev-1", Certificate: p.client, RootCAs: p.pool,
		BackoffMin: 8 * time.Millisecond, BackoffMax: 32 * time.Millisecond,
		OnError: func(err error) {
			select {
			case errs <- err:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i, max := range []time.Duration{8, 16, 32, 32} {
		max *= time.Millisecond
		var ce *ConnectError
		if err := waitFor(t, errs, "connection error"); !errors.As(err, &ce) || ce.Cause != CauseRefused || ce.Retry < max/2 || ce.Retry > max {
			t.Fatalf("attempt %d: %v (%+v), want a retry in [%v, %v]", i+1, err, ce, max/2, max)
		}
	}
}

func TestPublishWhileDown(t *testing.T) {
	p := newPKI(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	c, err := Dial(context.Background(), Config{Endpoint: addr, ClientID: "dev-1", Certificate: p.client, RootCAs: p.pool,
		BackoffMin: time.Hour, BackoffMax: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Publish(context.Background(), "a/b", nil); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Publish = %v", err)
	}
	if _, err := Dial(context.Background(), Config{}); err == nil {
		t.Fatal("no client id accepted")
	}
}

// allowAll lets every client in: TLS already checked the certificate.
type allowAll struct{ mqtt.HookBase }

func (h *allowAll) ID() string { return "allow-all" }
func (h *allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (h *allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }
func (h *allowAll) OnACLCheck(*mqtt.Client, string, bool) bool              { return true }

func TestALPNAndSNI(t *testing.T) {
	if got := alpn("443", false); len(got) != 1 || got[0] != "x-amzn-mqtt-ca" {
		t.Fatalf("port 443: %v", got)
	}
	if got := alpn("8883", false); got != nil {
		t.Fatalf("port 8883: %v", got)
	}
	p := newPKI(t)
	hellos := make(chan *tls.ClientHelloInfo, 4)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			hellos <- h
			return &tls.Config{Certificates: []tls.Certificate{p.server}, NextProtos: []string{"x-amzn-mqtt-ca"},
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	s.AddHook(new(allowAll), nil)
	s.AddListener(listeners.NewNet("alpn", ln))
	go s.Serve()
	defer s.Close()
	up := make(chan struct{}, 1)
	c, err := Dial(context.Background(), Config{Endpoint: ln.Addr().String(), ClientID: "dev-1", Certificate: p.client,
		RootCAs: p.pool, ServerName: "localhost", ALPN: true, OnUp: func() { up <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, up, "connection over ALPN")
	h := waitFor(t, hellos, "client hello")
	if h.ServerName != "localhost" || len(h.SupportedProtos) != 1 || h.SupportedProtos[0] != "x-amzn-mqtt-ca" {
		t.Fatalf("hello: SNI %q, ALPN %v", h.ServerName, h.SupportedProtos)
	}
}

// TestEndpointHostAlone: an endpoint given as a host name alone, as AWS's
// DescribeEndpoint answers it, is dialed on port 8883.
func TestEndpointHostAlone(t *testing.T) {
	p := newPKI(t)
	_, addr := broker(t, p)
	dialed := make(chan string, 4)
	up := make(chan struct{}, 4)
	c, err := Dial(context.Background(), Config{
		Endpoint: "localhost", ClientID: "dev-1", Certificate: p.client, RootCAs: p.pool,
		Dialer: func(ctx context.Context, network, a string) (net.Conn, error) {
			dialed <- a
			var d net.Dialer
			return d.DialContext(ctx, network, addr) // the test broker stands in for localhost:8883
		},
		OnUp:       func() { up <- struct{}{} },
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if a := waitFor(t, dialed, "dial"); a != "localhost:8883" {
		t.Fatalf("dialed %s", a)
	}
	waitFor(t, up, "connection up")
}

// refuseFirstReads refuses the first n subscription checks, as a broker
// does while a policy is being attached or an old session taken over.
type refuseFirstReads struct {
	allowAll
	n atomic.Int64
}

func (h *refuseFirstReads) ID() string { return "refuse-first-reads" }
func (h *refuseFirstReads) OnACLCheck(_ *mqtt.Client, _ string, write bool) bool {
	return write || h.n.Add(-1) < 0
}

// TestSubscriptionRefusedThenRetried: a refused subscription is reported and
// tried again on the same connection; the connection is up (OnUp) only once
// it is subscribed, and then receives.
func TestSubscriptionRefusedThenRetried(t *testing.T) {
	p := newPKI(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	hook := &refuseFirstReads{}
	hook.n.Store(2)
	if err := srv.AddHook(hook, nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("tls", ln)); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()

	up := make(chan struct{}, 4)
	errs := make(chan error, 8)
	msgs := make(chan string, 4)
	c, err := Dial(context.Background(), Config{
		Endpoint: ln.Addr().String(), ClientID: "dev-1", Certificate: p.client, RootCAs: p.pool, ServerName: "localhost",
		Filters:    []string{"$aws/things/dev-1/jobs/#"},
		OnMessage:  func(topic string, _ []byte) { msgs <- topic },
		OnUp:       func() { up <- struct{}{} },
		OnError:    func(err error) { errs <- err },
		BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 2; i++ {
		if err := waitFor(t, errs, "a refused subscription"); !strings.Contains(err.Error(), "refused the subscription to $aws/things/dev-1/jobs/#") {
			t.Fatalf("error %d: %v", i, err)
		}
	}
	waitFor(t, up, "connection up after the retry")
	if err := srv.Publish("$aws/things/dev-1/jobs/notify", []byte(`{}`), false, 1); err != nil {
		t.Fatal(err)
	}
	if got := waitFor(t, msgs, "message"); got != "$aws/things/dev-1/jobs/notify" {
		t.Fatal(got)
	}
}

// TestTrustSession: with TrustSession, a reconnection to a session the
// broker kept sends no SUBSCRIBE, and messages still arrive.
func TestTrustSession(t *testing.T) {
	p := newPKI(t)
	srv, addr := broker(t, p)
	var subscribes atomic.Int32
	if err := srv.AddHook(&countSubscribes{n: &subscribes}, nil); err != nil {
		t.Fatal(err)
	}
	up, msgs := make(chan struct{}, 4), make(chan string, 4)
	dialUp(t, Config{
		Endpoint: addr, ClientID: "dev-1", Certificate: p.client, RootCAs: p.pool, ServerName: "localhost",
		Filters: []string{"$aws/things/dev-1/jobs/#"}, SessionExpiry: time.Hour, TrustSession: true,
		OnMessage:  func(topic string, payload []byte) { msgs <- topic },
		OnUp:       func() { up <- struct{}{} },
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
	}, up)
	srv.DisconnectClient(brokerClient(t, srv, "dev-1"), packets.ErrServerShuttingDown)
	waitFor(t, up, "reconnected")
	if n := subscribes.Load(); n != 1 {
		t.Errorf("%d SUBSCRIBEs; want 1, none after reconnecting to the kept session", n)
	}
	if err := srv.Publish("$aws/things/dev-1/jobs/notify", []byte(`{}`), false, 1); err != nil {
		t.Fatal(err)
	}
	if got := waitFor(t, msgs, "message after the reconnection"); got != "$aws/things/dev-1/jobs/notify" {
		t.Fatal(got)
	}
}

type countSubscribes struct {
	mqtt.HookBase
	n *atomic.Int32
}

func (h *countSubscribes) ID() string           { return "count-subscribes" }
func (h *countSubscribes) Provides(b byte) bool { return b == mqtt.OnSubscribe }
func (h *countSubscribes) OnSubscribe(_ *mqtt.Client, pk packets.Packet) packets.Packet {
	h.n.Add(1)
	return pk
}

// CleanStart is asked for on the first connection only: a reconnection
// resumes the session it started.
func TestCleanStartFirstOnly(t *testing.T) {
	p := newPKI(t)
	srv, addr := broker(t, p)
	up := make(chan struct{}, 4)
	dialUp(t, Config{
		Endpoint: addr, ClientID: "dev-1", Certificate: p.client, RootCAs: p.pool, ServerName: "localhost",
		CleanStart: true, SessionExpiry: time.Hour, Filters: []string{"a/b"},
		OnUp:       func() { up <- struct{}{} },
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
	}, up)
	first := brokerClient(t, srv, "dev-1")
	if !first.Properties.Clean {
		t.Fatal("the first CONNECT did not ask for a clean start")
	}
	srv.DisconnectClient(first, packets.ErrServerShuttingDown)
	waitFor(t, up, "reconnected")
	if brokerClient(t, srv, "dev-1").Properties.Clean {
		t.Fatal("the reconnection asked for a clean start: the session would be lost")
	}
}

// Package mqttconn keeps a device connected to AWS IoT Core (or any MQTT
// broker, such as the local cloud's): MQTT 5 over mutual TLS through
// autopaho, on port 8883 or on 443 with ALPN "x-amzn-mqtt-ca" as AWS
// requires there, with reconnection and backoff, re-subscription after every
// reconnect, and connection errors translated into what to check.
//
// It knows nothing of jobs: it delivers messages and up/down transitions to
// callbacks and publishes what it is given.
//
// It imports the standard library and paho.golang; it must never import
// cloud/*, sim/ or other device/* packages.
package mqttconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/awsfota/awsfota/clock"
)

// ALPNProtocol is the protocol name AWS IoT Core expects for MQTT with a
// client certificate on port 443.
const ALPNProtocol = "x-amzn-mqtt-ca"

// Config configures a connection.
type Config struct {
	// Endpoint is host:port (port 8883 when omitted). On port 443 ALPN is
	// turned on automatically.
	Endpoint string
	// ClientID is the MQTT client id; AWS IoT policies usually require the
	// thing name.
	ClientID string
	// Certificate is the device's certificate and key.
	Certificate tls.Certificate
	// RootCAs verify the broker; nil means the system roots.
	RootCAs *x509.CertPool
	// ServerName overrides the name checked in the broker's certificate (and
	// sent as SNI); default: the endpoint's host.
	ServerName string
	// ALPN forces the x-amzn-mqtt-ca ALPN protocol on any port.
	ALPN bool
	// KeepAlive (default 60s; AWS accepts 30s–1200s).
	KeepAlive time.Duration
	// ConnectTimeout bounds each connection attempt — TCP, TLS handshake,
	// MQTT CONNECT — (default 20s): a link that accepts and then carries
	// nothing fails the attempt instead of hanging it.
	ConnectTimeout time.Duration
	// CleanStart discards the broker's session at the first connection;
	// otherwise the session (subscriptions and queued QoS 1 messages) is
	// resumed, for SessionExpiry.
	CleanStart    bool
	SessionExpiry time.Duration
	// Filters are subscribed (QoS 1) after every connection, before OnUp.
	Filters []string
	// OnMessage receives every message. It must not block for long.
	OnMessage func(topic string, payload []byte)
	// OnUp is called once the connection is up and Filters are subscribed;
	// OnDown when it is lost. Neither may block.
	OnUp   func()
	OnDown func()
	// OnError receives connection errors, already explained. A failed
	// connection attempt is a *ConnectError, which says when the next one
	// is made and classifies the cause, so that an application can tell a
	// new problem from the same one again.
	OnError func(error)
	// BackoffMin and BackoffMax bound the reconnect delay (1s, 2m).
	BackoffMin, BackoffMax time.Duration
	// ReceiveMaximum is how many QoS 1 messages the broker may send before
	// the device acknowledges them (MQTT 5 Receive Maximum; default 32).
	// The client keeps a queue of that many: paho's default, 65535, costs
	// half a MiB per connection, more than a small device has.
	ReceiveMaximum uint16
	// SessionCache, when set, keeps TLS sessions so that a reconnection
	// resumes the last one (an abbreviated handshake, no certificate
	// checks) instead of a full handshake.
	SessionCache tls.ClientSessionCache
	// VerifiedChains, when set, remembers the broker certificate chains
	// that verified (see VerifiedChains): for clients that make many
	// connections with the same RootCAs.
	VerifiedChains *VerifiedChains
	// CurvePreferences, when set, are the key exchanges the device offers,
	// in order (crypto/tls's default otherwise, which starts with the
	// post-quantum hybrid X25519MLKEM768: several times X25519's cost).
	CurvePreferences []tls.CurveID
	// TrustSession skips the subscriptions when the broker answers that it
	// kept the session (MQTT 5 Session Present, with CleanStart false): a
	// reconnection then costs no SUBSCRIBE, as AWS IoT's persistent
	// sessions allow. Set it only when every connection of this client id
	// subscribes to the same Filters.
	TrustSession bool
	// Dialer dials TCP (for tests: a fault-injecting proxy's address works
	// through Endpoint; this is for custom networks). nil: net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger *slog.Logger
}

// Cause classifies why a connection attempt failed: what to check.
type Cause string

// Causes of a failed connection attempt.
const (
	CauseRefused       Cause = "refused"        // nothing accepts connections at the endpoint
	CauseUnresolved    Cause = "unresolved"     // the endpoint's host name does not resolve
	CauseUntrusted     Cause = "untrusted"      // the broker's certificate is not signed by the trusted CA
	CauseServerName    Cause = "server-name"    // the broker's certificate is for another name
	CauseServerCert    Cause = "server-cert"    // the broker's certificate is invalid (expired, ...)
	CauseHandshake     Cause = "handshake"      // the broker refused the TLS handshake: the device's certificate
	CauseClosed        Cause = "closed"         // the broker closed the connection during setup
	CauseNotAuthorized Cause = "not-authorized" // the broker refused the MQTT connection (client id, policy)
	CauseTimeout       Cause = "timeout"        // the endpoint accepted the connection but did not answer in time
	CauseOther         Cause = "other"
)

// ConnectError is what OnError receives when a connection attempt fails:
// the explained error, its cause, and the delay before the next attempt.
type ConnectError struct {
	Cause Cause
	Err   error         // says what to check
	Retry time.Duration // until the next attempt
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("%v; trying again in %v", e.Err, e.Retry.Round(time.Millisecond))
}

func (e *ConnectError) Unwrap() error { return e.Err }

// Conn is a managed connection. Publish is safe for concurrent use.
type Conn struct {
	cm     *autopaho.ConnectionManager
	cfg    Config
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// ups counts the connections made: a subscription retry belongs to one
	// connection and stops when another has replaced it.
	ups atomic.Int64
}

// ErrNotConnected is returned by Publish while the connection is down.
var ErrNotConnected = errors.New("mqttconn: not connected")

// Dial starts connecting and returns at once; the connection is made, and
// remade after every loss, in the background until Close.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	if cfg.ClientID == "" {
		return nil, errors.New("mqttconn: a client id is required")
	}
	host, port, err := net.SplitHostPort(cfg.Endpoint)
	if err != nil {
		host, port = cfg.Endpoint, "8883"
	}
	if host == "" {
		return nil, fmt.Errorf("mqttconn: endpoint %q has no host", cfg.Endpoint)
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 60 * time.Second
	}
	if cfg.ReceiveMaximum == 0 {
		cfg.ReceiveMaximum = 32
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 20 * time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	addr := net.JoinHostPort(host, port)
	u := &url.URL{Scheme: "mqtts", Host: addr}
	serverName := cfg.ServerName
	if serverName == "" {
		serverName = host
	}
	tlsCfg := &tls.Config{
		Certificates:       []tls.Certificate{cfg.Certificate},
		RootCAs:            cfg.RootCAs,
		ServerName:         serverName,
		MinVersion:         tls.VersionTLS12,
		ClientSessionCache: cfg.SessionCache,
		CurvePreferences:   cfg.CurvePreferences,
	}
	tlsCfg.NextProtos = alpn(port, cfg.ALPN)
	if v := cfg.VerifiedChains; v != nil {
		// crypto/tls's own verification is replaced by the same one,
		// remembered: VerifyConnection runs for full and resumed handshakes.
		tlsCfg.InsecureSkipVerify = true
		tlsCfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return v.verify(cs, cfg.RootCAs, serverName, time.Now())
		}
	}
	dial := cfg.Dialer
	if dial == nil {
		// No TCP keep-alive: MQTT's keep-alive (pinger) finds a dead link
		// already, and Go's default probes every 15 s of quiet, which on a
		// cellular link wakes the radio four times a minute.
		d := net.Dialer{KeepAlive: -1}
		dial = d.DialContext
	}
	c := &Conn{cfg: cfg}
	ctx, c.cancel = context.WithCancel(ctx)
	jitter := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	// The delay before the next attempt is drawn when an attempt fails, so
	// that OnError can tell it; autopaho asks for it right after.
	var (
		bmu      sync.Mutex
		failures int
		next     time.Duration
	)
	backoff := func() time.Duration {
		d := cfg.BackoffMin
		for i := 1; i < failures && d < cfg.BackoffMax; i++ {
			d *= 2
		}
		d = min(d, cfg.BackoffMax)
		return d/2 + time.Duration(jitter.Int64N(int64(d/2)+1))
	}
	pc := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     uint16(cfg.KeepAlive / time.Second),
		CleanStartOnInitialConnection: cfg.CleanStart,
		SessionExpiryInterval:         uint32(cfg.SessionExpiry / time.Second),
		ConnectTimeout:                cfg.ConnectTimeout,
		ConnectPacketBuilder: func(pc *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			if pc.Properties == nil {
				pc.Properties = &paho.ConnectProperties{}
			}
			rm := cfg.ReceiveMaximum
			pc.Properties.ReceiveMaximum = &rm
			return pc, nil
		},
		ReconnectBackoff: func(attempt int) time.Duration {
			if attempt == 0 {
				return 0
			}
			bmu.Lock()
			defer bmu.Unlock()
			return next
		},
		AttemptConnection: func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			// autopaho bounds only the MQTT CONNECT by its ConnectTimeout:
			// bound the dial and the TLS handshake too.
			ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
			defer cancel()
			raw, err := dial(ctx, "tcp", u.Host)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(raw, tlsCfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			// One write per MQTT packet (paho's WriteTo locks it).
			return &packetConn{Conn: tc}, nil
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, ack *paho.Connack) {
			bmu.Lock()
			failures = 0
			bmu.Unlock()
			up := c.ups.Add(1)
			// The broker kept the session, subscriptions included: nothing to
			// subscribe. Either way OnUp is told off autopaho's goroutine,
			// which must return before the connection can publish.
			kept := cfg.TrustSession && ack != nil && ack.SessionPresent
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				if kept {
					if cfg.OnUp != nil {
						cfg.OnUp()
					}
					return
				}
				c.subscribe(ctx, cm, up)
			}()
		},
		OnConnectionDown: func() bool {
			c.ups.Add(1) // a subscription still being retried stops
			if cfg.OnDown != nil {
				cfg.OnDown()
			}
			return true
		},
		OnConnectError: func(err error) {
			var (
				ce    *autopaho.ConnackError
				cause Cause
			)
			if errors.As(err, &ce) {
				cause = CauseNotAuthorized
				err = fmt.Errorf("the broker at %s refused the connection: check that the client id %q is the thing the certificate is attached to, and that the certificate is ACTIVE and its policy allows iot:Connect (%s)", addr, cfg.ClientID, connackReason(ce))
			} else {
				if inner := errors.Unwrap(err); inner != nil {
					err = inner // autopaho's "failed to connect to mqtts://…": the address is said already
				}
				cause, err = explain(addr, err)
			}
			bmu.Lock()
			failures++
			next = backoff()
			retry := next
			bmu.Unlock()
			// Debug: OnError is the report; a logger at Warn would say it
			// a second time.
			cfg.Logger.Debug("mqtt connection failed", "cause", cause, "retry", retry, "err", err)
			if cfg.OnError != nil {
				cfg.OnError(&ConnectError{Cause: cause, Err: err, Retry: retry})
			}
		},
		ClientConfig: paho.ClientConfig{
			ClientID: cfg.ClientID,
			// No PINGREQ the moment the connection is up (pinger).
			PingHandler: newPinger(clock.Real()),
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){
				func(pr paho.PublishReceived) (bool, error) {
					if cfg.OnMessage != nil {
						cfg.OnMessage(pr.Packet.Topic, pr.Packet.Payload)
					}
					return true, nil
				},
			},
		},
	}
	cm, err := autopaho.NewConnection(ctx, pc)
	if err != nil {
		c.cancel()
		return nil, fmt.Errorf("mqttconn: %w", err)
	}
	c.cm = cm
	return c, nil
}

// subscribe subscribes the connection numbered up to the filters, then calls
// OnUp. A refused or failed subscription is reported and tried again after a
// backoff (BackoffMin doubling up to BackoffMax) for as long as this
// connection lasts: a connection without its subscriptions would never hear
// of a job. (A broker may refuse one for a while: mochi answers 0x91, packet
// identifier in use, when the SUBSCRIBE's id is that of a message still in
// flight in the persistent session a new connection takes over, as after a
// power cut.) When the connection is lost, the next one subscribes afresh.
func (c *Conn) subscribe(ctx context.Context, cm *autopaho.ConnectionManager, up int64) {
	for wait := c.cfg.BackoffMin; len(c.cfg.Filters) > 0; wait = min(2*wait, c.cfg.BackoffMax) {
		err := c.subscribeOnce(ctx, cm)
		if err == nil {
			break
		}
		if ctx.Err() != nil || errors.Is(err, autopaho.ConnectionDownError) || c.ups.Load() != up {
			return
		}
		if c.cfg.OnError != nil {
			c.cfg.OnError(fmt.Errorf("mqttconn: subscribing (trying again in %v): %w", wait, err))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if c.ups.Load() != up {
			return
		}
	}
	if c.cfg.OnUp != nil {
		c.cfg.OnUp()
	}
}

func (c *Conn) subscribeOnce(ctx context.Context, cm *autopaho.ConnectionManager) error {
	subs := make([]paho.SubscribeOptions, len(c.cfg.Filters))
	for i, f := range c.cfg.Filters {
		subs[i] = paho.SubscribeOptions{Topic: f, QoS: 1}
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ack, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: subs})
	if ack != nil {
		for i, rc := range ack.Reasons {
			if rc >= 0x80 && i < len(c.cfg.Filters) {
				return fmt.Errorf("the broker refused the subscription to %s (reason %#x): check the thing's policy allows iot:Subscribe and iot:Receive on it", c.cfg.Filters[i], rc)
			}
		}
	}
	return err
}

// alpn returns the ALPN protocols to offer: AWS IoT Core accepts MQTT with a
// client certificate on port 443 only with x-amzn-mqtt-ca.
func alpn(port string, force bool) []string {
	if force || port == "443" {
		return []string{ALPNProtocol}
	}
	return nil
}

// Publish sends payload to topic at QoS 1 and waits for the broker's ack.
func (c *Conn) Publish(ctx context.Context, topic string, payload []byte) error {
	resp, err := c.cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	if err != nil {
		if errors.Is(err, autopaho.ConnectionDownError) {
			return ErrNotConnected
		}
		return fmt.Errorf("mqttconn: publishing to %s: %w", topic, err)
	}
	if resp != nil && resp.ReasonCode >= 0x80 {
		return fmt.Errorf("mqttconn: the broker refused the publish to %s (reason %#x): check the thing's policy allows iot:Publish on it", topic, resp.ReasonCode)
	}
	return nil
}

// AwaitConnection waits until the connection is up or ctx ends.
func (c *Conn) AwaitConnection(ctx context.Context) error { return c.cm.AwaitConnection(ctx) }

// Close disconnects and stops reconnecting; it returns when every goroutine
// of the connection has ended.
func (c *Conn) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.cm.Disconnect(ctx)
	c.cancel()
	<-c.cm.Done()
	c.wg.Wait()
	if errors.Is(err, autopaho.ConnectionDownError) {
		err = nil
	}
	return err
}

// connackReason names the reason code of a refused CONNECT (MQTT 5, 3.2.2.2).
func connackReason(ce *autopaho.ConnackError) string {
	names := map[byte]string{0x80: "unspecified error", 0x85: "client identifier not valid", 0x86: "bad user name or password",
		0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy", 0x8a: "banned", 0x8c: "bad authentication method",
		0x97: "quota exceeded", 0x9f: "connection rate exceeded"}
	s := fmt.Sprintf("MQTT reason %#02x", ce.ReasonCode)
	if n, ok := names[ce.ReasonCode]; ok {
		s += " " + n
	}
	if ce.Reason != "" {
		s += ": " + ce.Reason
	}
	return s
}

// explain turns a dial or TLS error into one that says what to check (the
// seed's troubleshooting table, as error messages), and classifies it.
func explain(addr string, err error) (Cause, error) {
	var (
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		certInv   x509.CertificateInvalidError
		opErr     *net.OpError
		dnsErr    *net.DNSError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return CauseTimeout, fmt.Errorf("the broker at %s did not answer in time: check the network (a firewall or proxy that holds the connection) and the endpoint (%w)", addr, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return CauseRefused, fmt.Errorf("nothing accepts connections at %s: check the endpoint and port (%w)", addr, err)
	case errors.As(err, &dnsErr):
		return CauseUnresolved, fmt.Errorf("the endpoint host of %s does not resolve: check the endpoint (%w)", addr, err)
	case errors.As(err, &unknownCA):
		return CauseUntrusted, fmt.Errorf("the broker at %s presented a certificate not signed by the trusted CA: check the endpoint and the CA file (%w)", addr, err)
	case errors.As(err, &hostErr):
		return CauseServerName, fmt.Errorf("the broker's certificate is not valid for the name used to reach %s: check the endpoint or set the server name (%w)", addr, err)
	case errors.As(err, &certInv):
		return CauseServerCert, fmt.Errorf("the broker's certificate at %s is invalid (%w)", addr, err)
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		return CauseHandshake, fmt.Errorf("the broker at %s refused the TLS handshake: check the device certificate and key, that the certificate is registered and ACTIVE (%w)", addr, err)
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF):
		// With TLS 1.3 a refused client certificate shows up after the
		// handshake, often as a reset rather than the alert itself.
		return CauseClosed, fmt.Errorf("the broker at %s closed the connection during setup: it usually means it refused the device: check the device certificate and key, that the certificate is registered and ACTIVE, and the client id (%w)", addr, err)
	}
	return CauseOther, fmt.Errorf("connecting to %s: %w", addr, err)
}

package mqttconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/awsfota/awsfota/growstack"
)

// Conn is a managed connection. Publish is safe for concurrent use.
type Conn struct {
	cfg    Config
	addr   string
	tlsCfg *tls.Config
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // run has returned
	wg     sync.WaitGroup
	closed sync.Once

	mu   sync.Mutex
	cur  *session      // the connection while it is up
	upCh chan struct{} // closed while a connection is up
	// ups counts the connections made and lost: a subscription retry
	// belongs to one connection and stops when another has replaced it.
	ups atomic.Int64
	// cbMu orders OnUp and OnDown: OnUp is told only while its connection
	// is the current one, so OnDown never comes before it.
	cbMu sync.Mutex
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
	if cfg.KeepAlive > 65535*time.Second {
		return nil, fmt.Errorf("mqttconn: keep-alive %v is more than MQTT's 65535 s", cfg.KeepAlive)
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
	serverName := cfg.ServerName
	if serverName == "" {
		serverName = host
	}
	c := &Conn{cfg: cfg, addr: net.JoinHostPort(host, port), done: make(chan struct{}), upCh: make(chan struct{})}
	c.tlsCfg = &tls.Config{
		Certificates:       []tls.Certificate{cfg.Certificate},
		RootCAs:            cfg.RootCAs,
		ServerName:         serverName,
		MinVersion:         tls.VersionTLS12,
		ClientSessionCache: cfg.SessionCache,
		CurvePreferences:   cfg.CurvePreferences,
		NextProtos:         alpn(port, cfg.ALPN),
	}
	if v := cfg.VerifiedChains; v != nil {
		// crypto/tls's own verification is replaced by the same one,
		// remembered: VerifyConnection runs for full and resumed handshakes.
		c.tlsCfg.InsecureSkipVerify = true
		c.tlsCfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return v.verify(cs, cfg.RootCAs, serverName, time.Now())
		}
	}
	c.dial = cfg.Dialer
	if c.dial == nil {
		// No TCP keep-alive: MQTT's keep-alive finds a dead link already,
		// and Go's default probes every 15 s of quiet, which on a cellular
		// link wakes the radio four times a minute.
		d := net.Dialer{KeepAlive: -1}
		c.dial = d.DialContext
	}
	c.ctx, c.cancel = context.WithCancel(ctx)
	go c.run()
	return c, nil
}

// run connects, reads until the connection is lost, and connects again,
// until the Conn is closed. The first attempt after a lost connection is
// made at once; after a failed attempt the delay doubles from BackoffMin up
// to BackoffMax, with jitter (between half and all of it).
func (c *Conn) run() {
	defer close(c.done)
	jitter := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	failures := 0
	var wait time.Duration
	// CleanStart applies until a connection is made: a first attempt that
	// failed leaves the broker's session as it was.
	cleanStart := c.cfg.CleanStart
	for {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-c.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if c.ctx.Err() != nil {
			return
		}
		// The attempt runs on a goroutine of its own, which ends with it: a
		// TLS handshake grows a stack to 16–32 KiB (in one step, before it
		// is deep: growstack), which then goes back to the runtime, while
		// this goroutine, which reads the connection for hours, stays small.
		attempt := make(chan connected, 1)
		go func(cleanStart bool) {
			growstack.Grow()
			s, ca, err := c.connect(cleanStart)
			attempt <- connected{s, ca, err}
		}(cleanStart)
		a := <-attempt
		s, ca, err := a.s, a.ca, a.err
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			failures++
			d := c.cfg.BackoffMin
			for i := 1; i < failures && d < c.cfg.BackoffMax; i++ {
				d *= 2
			}
			d = min(d, c.cfg.BackoffMax)
			wait = d/2 + time.Duration(jitter.Int64N(int64(d/2)+1))
			c.report(err, wait)
			continue
		}
		failures, wait, cleanStart = 0, 0, false
		c.serve(s, ca)
	}
}

// connected is the outcome of a connection attempt.
type connected struct {
	s   *session
	ca  connack
	err error
}

// report explains a failed attempt and hands it to OnError.
func (c *Conn) report(err error, retry time.Duration) {
	var cause Cause
	var refused *connackError
	if errors.As(err, &refused) {
		cause = CauseNotAuthorized
		err = fmt.Errorf("the broker at %s refused the connection: check that the client id %q is the thing the certificate is attached to, and that the certificate is ACTIVE and its policy allows iot:Connect (%s)", c.addr, c.cfg.ClientID, refused)
	} else {
		cause, err = explain(c.addr, err)
	}
	// Debug: OnError is the report; a logger at Warn would say it a second
	// time.
	c.cfg.Logger.Debug("mqtt connection failed", "cause", cause, "retry", retry, "err", err)
	if c.cfg.OnError != nil {
		c.cfg.OnError(&ConnectError{Cause: cause, Err: err, Retry: retry})
	}
}

// connackError is a CONNACK that refused the connection.
type connackError struct {
	code   byte
	reason string
}

func (e *connackError) Error() string {
	names := map[byte]string{0x80: "unspecified error", 0x85: "client identifier not valid", 0x86: "bad user name or password",
		0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy", 0x8a: "banned", 0x8c: "bad authentication method",
		0x97: "quota exceeded", 0x9f: "connection rate exceeded"}
	s := fmt.Sprintf("MQTT reason %#02x", e.code)
	if n, ok := names[e.code]; ok {
		s += " " + n
	}
	if e.reason != "" {
		s += ": " + e.reason
	}
	return s
}

// connect makes one attempt, bounded by ConnectTimeout: TCP, the TLS
// handshake, CONNECT and its CONNACK.
func (c *Conn) connect(cleanStart bool) (*session, connack, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.ConnectTimeout)
	defer cancel()
	raw, err := c.dial(ctx, "tcp", c.addr)
	if err != nil {
		return nil, connack{}, err
	}
	tc := tls.Client(raw, c.tlsCfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, connack{}, err
	}
	// The CONNECT and CONNACK are bounded by the same deadline, and by
	// Close.
	deadline, _ := ctx.Deadline()
	tc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { tc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	ka := uint16((c.cfg.KeepAlive + time.Second - 1) / time.Second)
	pkt := connectPacket(c.cfg.ClientID, ka, cleanStart, uint32(c.cfg.SessionExpiry/time.Second), c.cfg.ReceiveMaximum)
	if _, err := tc.Write(pkt); err != nil {
		tc.Close()
		return nil, connack{}, c.connectErr(ctx, err)
	}
	buf := make([]byte, 0, 64)
	for {
		typ, flags, body, n, err := splitPacket(buf)
		if err != nil {
			tc.Close()
			return nil, connack{}, err
		}
		if n > 0 {
			if typ != pktConnack {
				tc.Close()
				return nil, connack{}, malformed("the broker answered CONNECT with packet type %d, not CONNACK", typ)
			}
			ca, err := parseConnack(flags, body)
			if err != nil {
				tc.Close()
				return nil, connack{}, err
			}
			if ca.reason >= 0x80 {
				tc.Close()
				return nil, connack{}, &connackError{ca.reason, ca.props.reasonString}
			}
			if !stop() {
				tc.Close()
				return nil, connack{}, c.connectErr(ctx, os.ErrDeadlineExceeded)
			}
			tc.SetDeadline(time.Time{})
			s := newSession(tc, c.cfg.KeepAlive, ca, buf[n:])
			return s, ca, nil
		}
		buf = slices.Grow(buf, 64)
		m, err := tc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil {
			tc.Close()
			return nil, connack{}, c.connectErr(ctx, err)
		}
	}
}

// connectErr says a deadline met while connecting is the attempt's timeout.
func (c *Conn) connectErr(ctx context.Context, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil {
		return fmt.Errorf("waiting for CONNACK: %w", ctx.Err())
	}
	return err
}

// serve runs one connection: it announces it, subscribes, and reads until
// the connection is lost or the Conn closed.
func (c *Conn) serve(s *session, ca connack) {
	c.mu.Lock()
	c.cur = s
	close(c.upCh)
	c.mu.Unlock()
	up := c.ups.Add(1)
	stop := context.AfterFunc(c.ctx, func() { s.conn.Close() })
	c.wg.Add(1)
	// The broker kept the session, subscriptions included: nothing to
	// subscribe. Either way OnUp is told off the reading goroutine, so that
	// it may publish.
	kept := c.cfg.TrustSession && ca.sessionPresent
	go func() {
		defer c.wg.Done()
		if !kept && !c.subscribe(s, up) {
			return
		}
		c.cbMu.Lock()
		defer c.cbMu.Unlock()
		if c.current() == s && c.cfg.OnUp != nil {
			c.cfg.OnUp()
		}
	}()
	err := s.read(c.cfg.OnMessage)
	stop()
	s.conn.Close()
	s.wg.Wait()
	c.mu.Lock()
	c.cur = nil
	c.upCh = make(chan struct{})
	c.mu.Unlock()
	c.ups.Add(1) // a subscription still being retried stops
	s.end()
	if c.ctx.Err() == nil {
		c.cfg.Logger.Debug("mqtt connection lost", "err", err)
	}
	c.cbMu.Lock()
	if c.cfg.OnDown != nil {
		c.cfg.OnDown()
	}
	c.cbMu.Unlock()
}

func (c *Conn) current() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// subscribe subscribes the connection numbered up to the filters and
// reports whether it did. A refused or failed subscription is reported and
// tried again after a backoff (BackoffMin doubling up to BackoffMax) for as
// long as this connection lasts: a connection without its subscriptions
// would never hear of a job. (A broker may refuse one for a while: mochi
// answers 0x91, packet identifier in use, when the SUBSCRIBE's id is that of
// a message still in flight in the persistent session a new connection
// takes over, as after a power cut.) When the connection is lost, the next
// one subscribes afresh.
func (c *Conn) subscribe(s *session, up int64) bool {
	for wait := c.cfg.BackoffMin; len(c.cfg.Filters) > 0; wait = min(2*wait, c.cfg.BackoffMax) {
		err := c.subscribeOnce(s)
		if err == nil {
			break
		}
		if c.ctx.Err() != nil || errors.Is(err, ErrNotConnected) || c.ups.Load() != up {
			return false
		}
		if c.cfg.OnError != nil {
			c.cfg.OnError(fmt.Errorf("mqttconn: subscribing (trying again in %v): %w", wait, err))
		}
		t := time.NewTimer(wait)
		select {
		case <-s.closed:
			t.Stop()
			return false
		case <-t.C:
		}
		if c.ups.Load() != up {
			return false
		}
	}
	return true
}

// subscribeTimeout bounds the wait for a SUBACK.
const subscribeTimeout = 30 * time.Second

func (c *Conn) subscribeOnce(s *session) error {
	id, reply, err := s.register()
	if err != nil {
		return err
	}
	if err := s.write(subscribePacket(id, c.cfg.Filters)); err != nil {
		s.unregister(id)
		return err
	}
	t := time.NewTimer(subscribeTimeout)
	defer t.Stop()
	select {
	case a := <-reply:
		for i, rc := range a.reasons {
			if rc >= 0x80 && i < len(c.cfg.Filters) {
				return fmt.Errorf("the broker refused the subscription to %s (reason %#x): check the thing's policy allows iot:Subscribe and iot:Receive on it", c.cfg.Filters[i], rc)
			}
		}
		if len(a.reasons) != len(c.cfg.Filters) {
			return fmt.Errorf("the broker answered %d filters with %d reason codes", len(c.cfg.Filters), len(a.reasons))
		}
		return nil
	case <-t.C:
		s.unregister(id)
		return fmt.Errorf("no SUBACK within %v", subscribeTimeout)
	case <-s.closed:
		return ErrNotConnected
	}
}

// Publish sends payload to topic at QoS 1 and waits for the broker's ack.
func (c *Conn) Publish(ctx context.Context, topic string, payload []byte) error {
	s := c.current()
	if s == nil {
		return ErrNotConnected
	}
	// One of the broker's Receive Maximum slots.
	select {
	case s.inflight <- struct{}{}:
	case <-s.closed:
		return ErrNotConnected
	case <-ctx.Done():
		return fmt.Errorf("mqttconn: publishing to %s: %w", topic, ctx.Err())
	}
	defer func() { <-s.inflight }()
	id, reply, err := s.register()
	if err != nil {
		return err
	}
	if err := s.write(publishPacket(id, topic, payload)); err != nil {
		s.unregister(id)
		if errors.Is(err, ErrNotConnected) {
			return err
		}
		return fmt.Errorf("mqttconn: publishing to %s: %w", topic, err)
	}
	select {
	case a := <-reply:
		if a.reasons[0] >= 0x80 {
			return fmt.Errorf("mqttconn: the broker refused the publish to %s (reason %#x): check the thing's policy allows iot:Publish on it", topic, a.reasons[0])
		}
		return nil
	case <-s.closed:
		return ErrNotConnected
	case <-ctx.Done():
		s.unregister(id)
		return fmt.Errorf("mqttconn: publishing to %s: %w", topic, ctx.Err())
	}
}

// AwaitConnection waits until the connection is up or ctx ends.
func (c *Conn) AwaitConnection(ctx context.Context) error {
	c.mu.Lock()
	ch := c.upCh
	c.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return ErrNotConnected
	}
}

// Close disconnects and stops reconnecting; it returns when every goroutine
// of the connection has ended.
func (c *Conn) Close() error {
	c.closed.Do(func() {
		if s := c.current(); s != nil {
			// A normal DISCONNECT: the broker keeps the session for
			// SessionExpiry. A write stuck on a dead link gives up.
			s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			s.write(disconnectPacket)
		}
		c.cancel()
	})
	<-c.done
	c.wg.Wait()
	return nil
}

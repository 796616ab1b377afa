// Package broker is the local cloud's MQTT side. Its Broker is mochi-mqtt
// (built from third_party/mochi-mqtt-server, with the changes its
// AWSFOTA.md lists) on a TLS listener that demands a client certificate
// from the local CA,
// extended by hooks that do what AWS IoT Core does for a device:
// authenticate the certificate (registered, ACTIVE, attached to the thing
// named by the client id), apply an AWS IoT policy to every publish,
// subscription and delivery (by default: each thing only under its own
// $aws/things/<thing>/, wildcard filters checked as AWS checks them), and
// hand every request to the Jobs API to the Jobs service, whose replies go
// to the requesting connection alone.
//
// Its External instead attaches the Jobs service to another broker (such as
// Mosquitto) as a privileged client: it subscribes to every thing's jobs
// requests there and publishes the service's replies and notifications,
// which that broker routes to subscribers.
//
// It imports the standard library, mochi-mqtt, paho.golang and the cloud
// packages it serves; cloud/* must never import device/* or sim/.
package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/cloud/pki"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Authorizer decides whether a certificate may connect as a client id.
// registry.Registry implements it.
//
// An Authorizer that also has a method HasCertificate(certID string) bool
// (registry.Registry has) speeds up the TLS handshake: a certificate it
// knows was checked against the CA when it was registered (as AWS IoT
// trusts registered certificates), so the handshake checks only its
// validity period and key usage, not its signature chain again. Any other
// certificate is verified against ClientCAs as before.
type Authorizer interface {
	Authorize(cert *x509.Certificate, certID, clientID string) error
}

// registeredCertificates is the optional part of an Authorizer.
type registeredCertificates interface {
	HasCertificate(certID string) bool
}

// JobsAPI serves requests devices publish in their jobs namespace.
// jobsvc.Service implements it.
type JobsAPI interface {
	HandleDevice(thing, clientID, topic string, payload []byte)
}

// Config configures the broker.
type Config struct {
	// Addr to listen on, e.g. "127.0.0.1:8883"; port 0 picks a free port.
	Addr string
	// Certificate is the server's; ClientCAs verify device certificates.
	Certificate tls.Certificate
	ClientCAs   *x509.CertPool
	Authorizer  Authorizer
	Jobs        JobsAPI
	// Policy applies to every device connection; nil means DefaultPolicy.
	Policy *Policy
	// Region and AccountID make the ARNs the policy is matched against.
	Region, AccountID string
	Logger            *slog.Logger
}

// AWS IoT Core's limits the broker applies.
const (
	// MaxPayload is the largest message payload (128 KB).
	MaxPayload = 128 * 1024
	// maxPacket leaves room for the topic and properties.
	maxPacket = MaxPayload + 8*1024
)

// Broker is a running broker.
type Broker struct {
	srv      *mqtt.Server
	ln       net.Listener
	log      *slog.Logger
	sessions *sessions

	closeOnce sync.Once
}

// Start listens on cfg.Addr and serves until Close.
func Start(cfg Config) (*Broker, error) {
	if cfg.Authorizer == nil || cfg.Jobs == nil {
		return nil, errors.New("broker: an authorizer and a jobs API are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	policy := cfg.Policy
	if policy == nil {
		policy = DefaultPolicy()
	}
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{cfg.Certificate},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    cfg.ClientCAs,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"x-amzn-mqtt-ca", "mqtt"},
	}
	if known, ok := cfg.Authorizer.(registeredCertificates); ok {
		// The same checks as crypto/tls's, but a registered certificate's
		// chain is not verified again (see Authorizer).
		tlsCfg.ClientAuth = tls.RequireAnyClientCert
		tlsCfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyDevice(cs, cfg.ClientCAs, known, time.Now())
		}
	}
	// No TCP keep-alive on the devices' sockets: MQTT's keep-alive, which
	// the broker bounds as AWS does (OnConnect), ends a silent
	// connection; Go's default would probe each device every 15 s of quiet
	// (a cellular radio woken four times a minute), and sets four socket
	// options on each connection accepted.
	lc := net.ListenConfig{KeepAlive: -1}
	tcpLn, err := lc.Listen(context.Background(), "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("broker: listening on %s: %w", cfg.Addr, err)
	}
	ln := tls.NewListener(tcpLn, tlsCfg)
	opts := &mqtt.Options{InlineClient: true, Logger: log.With("component", "mqtt")}
	opts.Capabilities = mqtt.NewDefaultServerCapabilities()
	opts.Capabilities.MaximumQos = 1 // AWS IoT Core: QoS 0 and 1 only
	opts.Capabilities.MaximumPacketSize = maxPacket
	// Each connection's outbound queue is allocated up front: mochi's
	// default (8192 slots) costs 64 KiB per device. AWS IoT Core lets 100
	// QoS 1 messages be in flight per connection, and a device's jobs
	// traffic is a few messages at a time; 128 slots are 1 KiB.
	opts.Capabilities.MaximumClientWritesPending = 128
	// The read buffer lives as long as the connection; a device's requests
	// are a few hundred bytes (larger packets are read through it).
	opts.ClientNetReadBufferSize = 1024
	// AWS IoT Core has no $SYS topics. mochi's would be retained, and every
	// subscription with a wildcard would then scan the topic tree for them.
	opts.SysTopicResendInterval = -1
	srv := mqtt.New(opts)
	b := &Broker{srv: srv, ln: ln, log: log, sessions: newSessions()}
	h := &hook{srv: srv, sessions: b.sessions, auth: cfg.Authorizer, jobs: cfg.Jobs, log: log, policy: policy, region: cfg.Region, account: cfg.AccountID,
		subscribing: map[*mqtt.Client]map[string]bool{}}
	if err := srv.AddHook(h, nil); err != nil {
		ln.Close()
		return nil, err
	}
	l := newListener("mqtts", ln)
	l.ended = b.connectionEnded
	if err := srv.AddListener(l); err != nil {
		ln.Close()
		return nil, err
	}
	if err := srv.Serve(); err != nil {
		ln.Close()
		return nil, err
	}
	return b, nil
}

// Addr returns the address the broker listens on.
func (b *Broker) Addr() string { return b.ln.Addr().String() }

// Publish delivers a Jobs service message: to one client (a reply) or to
// the topic's subscribers (a notification, an event).
func (b *Broker) Publish(m jobsvc.Message) {
	if m.ClientID == "" {
		if err := b.srv.Publish(m.Topic, m.Payload, false, 1); err != nil {
			b.log.Warn("publishing a notification failed", "topic", m.Topic, "err", err)
		}
		return
	}
	cl, ok := b.srv.Clients.Get(m.ClientID)
	if !ok || cl.Closed() {
		return // the requester is gone: nobody else may see its reply
	}
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: m.Topic, Payload: m.Payload}
	if err := cl.WritePacket(pk); err != nil {
		b.log.Debug("reply not delivered", "client", m.ClientID, "topic", m.Topic, "err", err)
	}
}

// Disconnect closes the connection of a client, if any.
func (b *Broker) Disconnect(clientID string) {
	if cl, ok := b.srv.Clients.Get(clientID); ok {
		b.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
	}
}

// DisconnectCertificate closes every connection that presented the
// certificate (it was made INACTIVE or REVOKED, say), established or still
// connecting, and returns how many there were. A connection authorised
// before the certificate's change but not yet established is among them:
// the broker records a connection before it asks the registry.
func (b *Broker) DisconnectCertificate(certID string) int {
	n := 0
	for _, cl := range b.sessions.ofCertificate(certID) {
		if cl.Closed() {
			continue
		}
		b.log.Info("dropping the connection of a certificate that is no longer ACTIVE", "client", cl.ID, "certificate", certID)
		if cur, ok := b.srv.Clients.Get(cl.ID); ok && cur == cl {
			b.srv.DisconnectClient(cl, packets.ErrNotAuthorized) // tells an MQTT 5 client why
		}
		cl.Stop(packets.ErrNotAuthorized)
		n++
	}
	return n
}

// connectionEnded forgets a connection mochi is done with. A connection
// that was taken over may, as it ends, have removed its successor from
// mochi's client list (mochi marks it taken over only after disconnecting
// it, and its cleanup deletes the client id's entry when it does not see
// the mark yet): the successor is put back, so replies and deactivations
// reach it.
func (b *Broker) connectionEnded(conn net.Conn) {
	id := b.sessions.end(conn)
	if id == "" {
		return
	}
	b.sessions.current(id, func(live *mqtt.Client) {
		if live == nil {
			return
		}
		if cur, ok := b.srv.Clients.Get(id); !ok || cur != live {
			b.log.Debug("restoring a client that a taken-over connection's cleanup removed from the client list", "client", id)
			b.srv.Clients.Add(live)
		}
	})
}

// Close stops the broker and drops every connection; when it returns no
// connection is served. Closing again does nothing.
func (b *Broker) Close() error {
	var err error
	b.closeOnce.Do(func() { err = b.srv.Close() })
	return err
}

func peerCertificate(cl *mqtt.Client) *x509.Certificate {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return nil
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil
	}
	return certs[0]
}

// hook carries AWS IoT's rules into mochi.
type hook struct {
	mqtt.HookBase
	srv             *mqtt.Server
	sessions        *sessions
	auth            Authorizer
	jobs            JobsAPI
	log             *slog.Logger
	policy          *Policy
	region, account string

	mu sync.Mutex
	// subscribing holds the policy's verdicts on the filters of a SUBSCRIBE
	// being processed: mochi asks OnACLCheck(write=false) both for a
	// subscription filter and for each delivery, and only the verdicts
	// recorded in OnSubscribe tell the two apart.
	subscribing map[*mqtt.Client]map[string]bool
}

func (h *hook) ID() string { return "aws-iot" }

func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnPacketRead, mqtt.OnWill,
		mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnDisconnect:
		return true
	}
	return false
}

func (h *hook) principal(cl *mqtt.Client) Principal {
	// A connected client's id is the thing its certificate is attached to.
	return Principal{ClientID: cl.ID, ThingName: cl.ID, Region: h.region, AccountID: h.account}
}

// Keep-alive bounds of AWS IoT Core, in seconds: a client asking for less
// gets the least, for more (or for none, 0) the most.
const (
	minKeepAlive = 30
	maxKeepAlive = 1200
)

// keepAlive is the keep-alive the broker holds a client to for the one it
// asked for.
func keepAlive(asked uint16) uint16 {
	switch {
	case asked == 0 || asked > maxKeepAlive:
		return maxKeepAlive
	case asked < minKeepAlive:
		return minKeepAlive
	}
	return asked
}

// OnConnect bounds the client's keep-alive as AWS does: the connection
// ends after 1.5 times it without a packet from the client, also for a
// client that asked for none. An MQTT 5 client that must ping sooner than
// it asked (it asked for none, or for more than 1200 s) is told so in the
// CONNACK (Server Keep Alive); one that asked for less than 30 s is not
// told to ping less often: pinging more often than the broker needs costs
// the broker nothing, and lets the device notice a dead link sooner.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	asked := pk.Connect.Keepalive
	if k := keepAlive(asked); k != asked {
		cl.State.Keepalive = k
		cl.State.ServerKeepalive = cl.Properties.ProtocolVersion >= 5 && (asked == 0 || asked > maxKeepAlive)
	}
	return nil
}

// OnConnectAuthenticate admits a client whose certificate is registered,
// ACTIVE and attached to the thing its client id names, and whose policy
// allows iot:Connect and, when it sets a Last Will, iot:Publish on the
// will's topic (as AWS checks it at CONNECT: a will is a publish the
// device makes later, and must not reach where its publishes may not).
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	cert := peerCertificate(cl)
	if cert == nil {
		return false
	}
	certID := pki.CertificateID(cert)
	// Recorded before the registry is asked: a deactivation the answer
	// misses finds the connection in the record.
	h.sessions.admit(cl, certID)
	if err := h.auth.Authorize(cert, certID, cl.ID); err != nil {
		h.log.Info("connection refused", "client", cl.ID, "remote", cl.Net.Remote, "err", err)
		return false
	}
	if !h.policy.Allowed(h.principal(cl), ActionConnect, cl.ID) {
		h.log.Info("connection refused by the policy (iot:Connect)", "client", cl.ID)
		return false
	}
	if will := cl.Properties.Will; atomic.LoadUint32(&cl.Properties.Will.Flag) == 1 &&
		!h.policy.Allowed(h.principal(cl), ActionPublish, will.TopicName) {
		h.log.Info("connection refused: the policy does not allow its Last Will (iot:Publish)", "client", cl.ID, "will_topic", will.TopicName)
		// Not authorized, as AWS answers; mochi's own refusal (bad user name
		// or password) then finds the connection closed.
		code := packets.ErrNotAuthorized
		if cl.Properties.ProtocolVersion < 5 {
			code = packets.ErrBadUsernameOrPassword // mochi's way to MQTT 3's "not authorized" (5)
		}
		h.srv.SendConnack(cl, code, false, nil)
		cl.Stop(packets.ErrNotAuthorized)
		return false
	}
	return true
}

// OnSessionEstablish takes the client id's lock before mochi looks for the
// session to take over and adds the client (see sessions).
//
// Holding the lock, it also makes sure mochi's client list holds the live
// connection this one takes over: a taken-over connection's cleanup may
// have removed its successor from the list (see connectionEnded), and a
// CONNECT that came before the successor was put back would not see it,
// leaving two connections with one client id. Any other live connection
// with the id is dropped.
func (h *hook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	h.sessions.lock(cl)
	cur, listed := h.srv.Clients.Get(cl.ID)
	for _, old := range h.sessions.others(cl) {
		switch {
		case listed && cur == old:
			// mochi takes it over.
		case !listed:
			h.srv.Clients.Add(old)
			cur, listed = old, true
		default:
			h.log.Debug("dropping a second connection with one client id", "client", cl.ID)
			h.srv.DisconnectClient(old, packets.ErrSessionTakenOver)
		}
	}
}

// OnSessionEstablished releases the client id's lock: the client is in
// mochi's list, any earlier connection with its id taken over.
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.sessions.established(cl.Net.Conn)
}

// reserved reports whether a topic is one of AWS's reserved topics, on
// which AWS keeps no retained message.
func reserved(topic string) bool { return strings.HasPrefix(topic, "$aws/") }

// OnPacketRead applies AWS IoT Core's limits to what a device sends: a
// payload over MaxPayload closes the connection, and a publish to a
// reserved topic is never retained (its retain flag is dropped).
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish {
		return pk, nil
	}
	if len(pk.Payload) > MaxPayload {
		h.log.Info("connection closed: a payload over the limit", "client", cl.ID, "topic", pk.TopicName, "bytes", len(pk.Payload), "limit", MaxPayload)
		if cl.Properties.ProtocolVersion == 5 {
			h.srv.DisconnectClient(cl, packets.ErrPacketTooLarge) // says why; MQTT 3 has no server DISCONNECT
		}
		return pk, packets.ErrRejectPacket // ends the connection
	}
	if pk.FixedHeader.Retain && reserved(pk.TopicName) {
		pk.FixedHeader.Retain = false
	}
	return pk, nil
}

// OnWill keeps a will on a reserved topic from being retained.
func (h *hook) OnWill(_ *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if reserved(will.TopicName) {
		will.Retain = false
	}
	return will, nil
}

// OnSubscribe records the policy's verdict (iot:Subscribe) on each filter.
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk
	}
	v := map[string]bool{}
	for _, f := range pk.Filters {
		v[f.Filter] = h.policy.Allowed(h.principal(cl), ActionSubscribe, f.Filter)
		if !v[f.Filter] {
			h.log.Info("subscription refused by the policy (iot:Subscribe)", "client", cl.ID, "filter", f.Filter)
		}
	}
	h.mu.Lock()
	h.subscribing[cl] = v
	h.mu.Unlock()
	return pk
}

// OnSubscribed forgets the verdicts of a processed SUBSCRIBE.
func (h *hook) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) {
	h.mu.Lock()
	delete(h.subscribing, cl)
	h.mu.Unlock()
}

func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.OnSubscribed(cl, packets.Packet{}, nil)
}

// OnACLCheck applies the policy: iot:Publish for a publish (write),
// iot:Subscribe for a subscription filter, iot:Receive for a delivery.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	if write {
		ok := h.policy.Allowed(h.principal(cl), ActionPublish, topic)
		if !ok {
			h.log.Info("publish refused by the policy (iot:Publish)", "client", cl.ID, "topic", topic)
		}
		return ok
	}
	h.mu.Lock()
	verdict, subscribing := h.subscribing[cl][topic]
	h.mu.Unlock()
	if subscribing {
		return verdict
	}
	return h.policy.Allowed(h.principal(cl), ActionReceive, topic)
}

// OnPublish serves Jobs requests. They are acknowledged but not passed to
// subscribers, as on AWS where the jobs topics are the service's.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	if strings.HasPrefix(pk.TopicName, "$aws/things/"+cl.ID+"/jobs/") {
		h.jobs.HandleDevice(cl.ID, cl.ID, pk.TopicName, pk.Payload)
		return pk, packets.CodeSuccessIgnore
	}
	return pk, nil
}

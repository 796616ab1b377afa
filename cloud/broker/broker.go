// Package broker is the local cloud's MQTT broker: mochi-mqtt on a TLS
// listener that demands a client certificate from the local CA, extended by
// hooks that do what AWS IoT Core does for a device — authenticate the
// certificate (registered, ACTIVE, attached to the thing named by the client
// id), confine each thing to its own $aws/things/<thing>/ topics, and hand
// every request to the Jobs API to the Jobs service, whose replies go to the
// requesting connection alone.
//
// It imports the standard library, mochi-mqtt and the cloud packages it
// serves; cloud/* must never import device/* or sim/.
package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/cloud/pki"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Authorizer decides whether a certificate may connect as a client id.
// registry.Registry implements it.
type Authorizer interface {
	Authorize(cert *x509.Certificate, certID, clientID string) error
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
	Logger      *slog.Logger
}

// Broker is a running broker.
type Broker struct {
	srv *mqtt.Server
	ln  net.Listener
	log *slog.Logger
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
	ln, err := tls.Listen("tcp", cfg.Addr, &tls.Config{
		Certificates: []tls.Certificate{cfg.Certificate},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    cfg.ClientCAs,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"x-amzn-mqtt-ca", "mqtt"},
	})
	if err != nil {
		return nil, fmt.Errorf("broker: listening on %s: %w", cfg.Addr, err)
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: log.With("component", "mqtt")})
	b := &Broker{srv: srv, ln: ln, log: log}
	h := &hook{auth: cfg.Authorizer, jobs: cfg.Jobs, log: log}
	if err := srv.AddHook(h, nil); err != nil {
		ln.Close()
		return nil, err
	}
	if err := srv.AddListener(listeners.NewNet("mqtts", ln)); err != nil {
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
// the topic's subscribers (a notification).
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

// Disconnect closes the connection of a client, if any (a certificate was
// made inactive, say).
func (b *Broker) Disconnect(clientID string) {
	if cl, ok := b.srv.Clients.Get(clientID); ok {
		b.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
	}
}

// Close stops the broker and drops every connection.
func (b *Broker) Close() error {
	return b.srv.Close()
}

// hook carries AWS IoT's rules into mochi.
type hook struct {
	mqtt.HookBase
	auth Authorizer
	jobs JobsAPI
	log  *slog.Logger
}

func (h *hook) ID() string { return "aws-iot" }

func (h *hook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnPublish
}

// OnConnectAuthenticate admits a client whose certificate is registered,
// ACTIVE and attached to the thing its client id names.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return false
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return false
	}
	if err := h.auth.Authorize(certs[0], pki.CertificateID(certs[0]), cl.ID); err != nil {
		h.log.Info("connection refused", "client", cl.ID, "remote", cl.Net.Remote, "err", err)
		return false
	}
	return true
}

func thingPrefix(clientID string) string { return "$aws/things/" + clientID + "/" }

// OnACLCheck confines a thing to its own topics, for publishing and for
// subscription filters alike: a filter must start with the thing's prefix,
// so wildcards cannot reach another thing.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, _ bool) bool {
	if cl.Net.Inline {
		return true
	}
	return strings.HasPrefix(topic, thingPrefix(cl.ID))
}

// OnPublish serves Jobs requests. They are acknowledged but not passed to
// subscribers, as on AWS where the jobs topics are the service's.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	if strings.HasPrefix(pk.TopicName, thingPrefix(cl.ID)+"jobs/") {
		h.jobs.HandleDevice(cl.ID, cl.ID, pk.TopicName, pk.Payload)
		return pk, packets.CodeSuccessIgnore
	}
	return pk, nil
}

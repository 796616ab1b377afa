// Package mqttconn keeps a device connected to AWS IoT Core (or any MQTT
// broker, such as the local cloud's): MQTT 5 over mutual TLS through
// its own MQTT 5 client (packets.go), on port 8883 or on 443 with ALPN
// "x-amzn-mqtt-ca" as AWS requires there, with reconnection and backoff,
// re-subscription after every reconnect, keep-alive, and connection errors
// translated into what to check. A connection is one goroutine (it connects,
// then reads; PINGREQs come from its read deadline), which is what lets one
// process simulate ten thousand devices.
//
// It knows nothing of jobs: it delivers messages and up/down transitions to
// callbacks and publishes what it is given.
//
// It imports only the standard library; it must never import cloud/*, sim/
// or other device/* packages.
package mqttconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"
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

// alpn returns the ALPN protocols to offer: AWS IoT Core accepts MQTT with a
// client certificate on port 443 only with x-amzn-mqtt-ca.
func alpn(port string, force bool) []string {
	if force || port == "443" {
		return []string{ALPNProtocol}
	}
	return nil
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

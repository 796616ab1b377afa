package mqttconn

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"sync"
	"time"
)

// VerifiedChains remembers broker certificate chains that verified, so
// that a client making many connections to the same broker (a simulated
// fleet, a gateway holding many device identities) checks a chain's
// signatures once rather than on every handshake: a chain presented again,
// for the same server name, is accepted while every certificate in it is
// within its validity period. Use one VerifiedChains per set of trusted
// roots (Config.RootCAs). Safe for concurrent use; the zero value is ready.
//
// The broker still proves it holds the certificate's key in every
// handshake (its signature of the handshake is checked as always); only
// the chain's verification up to the roots is remembered.
type VerifiedChains struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]validity
}

// validity is when every certificate of a verified chain is valid.
type validity struct{ from, until time.Time }

// maxVerifiedChains bounds what a VerifiedChains keeps (a broker rotating
// certificates, several endpoints): past it, it starts afresh.
const maxVerifiedChains = 64

// verify checks the chain the broker presented in cs against roots for
// serverName at now, as crypto/tls would, unless it verified before.
func (v *VerifiedChains) verify(cs tls.ConnectionState, roots *x509.CertPool, serverName string, now time.Time) error {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return errors.New("mqttconn: the broker presented no certificate")
	}
	key := chainKey(serverName, certs)
	v.mu.Lock()
	w, ok := v.m[key]
	v.mu.Unlock()
	if ok && !now.Before(w.from) && !now.After(w.until) {
		return nil
	}
	opts := x509.VerifyOptions{Roots: roots, DNSName: serverName, CurrentTime: now, Intermediates: x509.NewCertPool()}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	chains, err := certs[0].Verify(opts)
	if err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: certs, Err: err}
	}
	w = validity{from: certs[0].NotBefore, until: certs[0].NotAfter}
	for _, c := range chains[0] {
		if c.NotBefore.After(w.from) {
			w.from = c.NotBefore
		}
		if c.NotAfter.Before(w.until) {
			w.until = c.NotAfter
		}
	}
	v.mu.Lock()
	if v.m == nil || len(v.m) >= maxVerifiedChains {
		v.m = map[[sha256.Size]byte]validity{}
	}
	v.m[key] = w
	v.mu.Unlock()
	return nil
}

// chainKey identifies a chain presented for serverName.
func chainKey(serverName string, certs []*x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(serverName)))
	h.Write(n[:])
	h.Write([]byte(serverName))
	for _, c := range certs {
		binary.BigEndian.PutUint64(n[:], uint64(len(c.Raw)))
		h.Write(n[:])
		h.Write(c.Raw)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

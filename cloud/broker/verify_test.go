package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/awsfota/awsfota/cloud/pki"
)

// certs is a CA and a way to issue certificates under it.
type certs struct {
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCerts(t *testing.T) *certs {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &certs{ca, key, pool}
}

func (c *certs) issue(t *testing.T, from, until time.Time, usage x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "AWS IoT Certificate"},
		NotBefore: from, NotAfter: until, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, c.ca, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// knownSet is a registry of certificate IDs.
type knownSet map[string]bool

func (k knownSet) HasCertificate(id string) bool { return k[id] }

// TestVerifyDevice: a registered certificate is checked for its validity
// period and key usage, not its chain; any other against the CAs; every
// failure is the error crypto/tls returns.
func TestVerifyDevice(t *testing.T) {
	ours, foreign := newCerts(t), newCerts(t)
	now := time.Now()
	good := ours.issue(t, now.Add(-time.Hour), now.Add(time.Hour), x509.ExtKeyUsageClientAuth)
	expired := ours.issue(t, now.Add(-2*time.Hour), now.Add(-time.Hour), x509.ExtKeyUsageClientAuth)
	early := ours.issue(t, now.Add(time.Hour), now.Add(2*time.Hour), x509.ExtKeyUsageClientAuth)
	serverOnly := ours.issue(t, now.Add(-time.Hour), now.Add(time.Hour), x509.ExtKeyUsageServerAuth)
	elsewhere := foreign.issue(t, now.Add(-time.Hour), now.Add(time.Hour), x509.ExtKeyUsageClientAuth)
	state := func(c *x509.Certificate) tls.ConnectionState {
		return tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}
	}
	registered := knownSet{}
	for _, c := range []*x509.Certificate{good, expired, early, serverOnly} {
		registered[pki.CertificateID(c)] = true
	}

	for _, known := range []knownSet{registered, {}} {
		name := "registered"
		if len(known) == 0 {
			name = "not registered"
		}
		if err := verifyDevice(state(good), ours.pool, known, now); err != nil {
			t.Errorf("%s, good: %v", name, err)
		}
		for _, c := range []struct {
			what   string
			cert   *x509.Certificate
			reason x509.InvalidReason
		}{{"expired", expired, x509.Expired}, {"not yet valid", early, x509.Expired}, {"server only", serverOnly, x509.IncompatibleUsage}} {
			err := verifyDevice(state(c.cert), ours.pool, known, now)
			var inv x509.CertificateInvalidError
			var cve *tls.CertificateVerificationError
			if !errors.As(err, &inv) || inv.Reason != c.reason || !errors.As(err, &cve) {
				t.Errorf("%s, %s: %v, want a CertificateVerificationError of reason %d", name, c.what, err, c.reason)
			}
		}
	}
	// Not registered and not from the CA: refused as crypto/tls refuses it.
	var unknown x509.UnknownAuthorityError
	if err := verifyDevice(state(elsewhere), ours.pool, knownSet{}, now); !errors.As(err, &unknown) {
		t.Errorf("a foreign certificate: %v, want UnknownAuthorityError", err)
	}
	// Registered: its chain is not verified again (the registry vouches
	// for it, as AWS IoT does for a certificate registered without its CA).
	if err := verifyDevice(state(elsewhere), ours.pool, knownSet{pki.CertificateID(elsewhere): true}, now); err != nil {
		t.Errorf("a registered certificate of another CA: %v", err)
	}
	if err := verifyDevice(tls.ConnectionState{}, ours.pool, registered, now); err == nil {
		t.Error("no certificate: accepted")
	}
}

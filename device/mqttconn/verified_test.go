package mqttconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

// TestVerifiedChains: connections that share a VerifiedChains verify the
// broker's chain once; a chain is checked again for another server name,
// and not accepted outside its validity period, remembered or not.
func TestVerifiedChains(t *testing.T) {
	p := newPKI(t)
	_, addr := broker(t, p)
	v := new(VerifiedChains)
	for i := range 3 {
		up := make(chan struct{}, 1)
		conn, err := Dial(context.Background(), Config{Endpoint: addr, ClientID: "dev-1", Certificate: p.client, RootCAs: p.pool,
			ServerName: "localhost", VerifiedChains: v, OnUp: func() { up <- struct{}{} }})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, up, "connection "+string(rune('1'+i)))
		conn.Close()
	}
	if len(v.m) != 1 {
		t.Fatalf("%d chains remembered, want 1", len(v.m))
	}

	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{p.server.Leaf}}
	now := time.Now()
	// Remembered: not verified again (an empty root pool would refuse it).
	if err := v.verify(cs, x509.NewCertPool(), "localhost", now); err != nil {
		t.Fatalf("a remembered chain: %v", err)
	}
	// Another name is verified, and refused.
	var host x509.HostnameError
	if err := v.verify(cs, p.pool, "example.com", now); !errors.As(err, &host) {
		t.Fatalf("another server name: %v, want a HostnameError", err)
	}
	// Past the certificate's end, the remembered chain is checked again,
	// and refused as expired.
	var inv x509.CertificateInvalidError
	err := v.verify(cs, p.pool, "localhost", p.server.Leaf.NotAfter.Add(time.Minute))
	if !errors.As(err, &inv) || inv.Reason != x509.Expired {
		t.Fatalf("an expired chain: %v, want CertificateInvalidError Expired", err)
	}
	var cve *tls.CertificateVerificationError
	if !errors.As(err, &cve) {
		t.Fatalf("%T: want a *tls.CertificateVerificationError, as crypto/tls returns", err)
	}
	if err := v.verify(tls.ConnectionState{}, p.pool, "localhost", now); err == nil {
		t.Fatal("no certificate: accepted")
	}
	// The memory is bounded: a new chain past the bound starts afresh.
	v.mu.Lock()
	for i := len(v.m); i < maxVerifiedChains; i++ {
		v.m[[32]byte{byte(i), 1}] = validity{}
	}
	v.mu.Unlock()
	if err := v.verify(cs, p.pool, "127.0.0.1", now); err != nil {
		t.Fatal(err)
	}
	if n := len(v.m); n != 1 {
		t.Fatalf("%d chains remembered after the bound, want 1", n)
	}
}

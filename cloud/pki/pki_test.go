package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCreateReloadIssue(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreate(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreate(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cert.Equal(ca.Cert) {
		t.Fatal("reloading made a new CA")
	}
	if st, _ := os.Stat(filepath.Join(dir, "ca.key")); st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", st.Mode())
	}
	if !strings.HasPrefix(string(ca.CertPEM()), "-----BEGIN CERTIFICATE") || ca.CertFile() != filepath.Join(dir, "ca.pem") {
		t.Fatal("CertPEM/CertFile")
	}

	srv, err := again.ServerCertificate("iot.example", "10.0.0.5")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "iot.example", "10.0.0.5"} {
		if err := srv.Leaf.VerifyHostname(name); err != nil {
			t.Errorf("server certificate not valid for %s: %v", name, err)
		}
	}
	if _, err := srv.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool()}); err != nil {
		t.Fatal(err)
	}

	dev, err := ca.IssueClient("dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(dev.ID) != 64 || dev.ID != CertificateID(dev.Cert) || dev.Cert.Subject.CommonName != "dev-1" {
		t.Fatalf("issued %+v", dev)
	}
	if _, err := dev.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(dev.CertPEM, dev.KeyPEM); err != nil {
		t.Fatalf("issued pair unusable: %v", err)
	}
	if _, err := ParseKeyPEM(dev.KeyPEM); err != nil {
		t.Fatal(err)
	}
}

func TestHalfCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreate(dir, nil); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "ca.key"))
	if _, err := LoadOrCreate(dir, nil); err == nil || !strings.Contains(err.Error(), "half") {
		t.Fatalf("half CA: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "ca.key"), []byte("junk"), 0o600)
	if _, err := LoadOrCreate(dir, nil); err == nil {
		t.Fatal("junk key accepted")
	}
	if _, err := ParseCertificatePEM([]byte("nope")); err == nil {
		t.Fatal("junk certificate accepted")
	}
}

func TestCRL(t *testing.T) {
	ca, err := LoadOrCreate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := ca.IssueClient("dev-1")
	b, _ := ca.IssueClient("dev-2")
	ca1, _ := ParseCertificatePEM(a.CertPEM)
	ca2, _ := ParseCertificatePEM(b.CertPEM)
	p, err := ca.CRL([]*big.Int{ca1.SerialNumber}, big.NewInt(7))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(p)
	if blk == nil || blk.Type != "X509 CRL" {
		t.Fatalf("not a PEM CRL: %q", p)
	}
	crl, err := x509.ParseRevocationList(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatalf("the CRL is not signed by the CA: %v", err)
	}
	if crl.Number.Int64() != 7 || len(crl.RevokedCertificateEntries) != 1 ||
		crl.RevokedCertificateEntries[0].SerialNumber.Cmp(ca1.SerialNumber) != 0 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(ca2.SerialNumber) == 0 {
		t.Fatalf("CRL %+v", crl)
	}
	if !crl.NextUpdate.Equal(ca.Cert.NotAfter) {
		t.Fatalf("NextUpdate %v, want the CA's expiry %v", crl.NextUpdate, ca.Cert.NotAfter)
	}
}

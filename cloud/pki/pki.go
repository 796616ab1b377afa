// Package pki is the local cloud's certificate authority: it creates (once)
// and keeps a CA under the data directory, issues the broker's server
// certificate for the names clients use (localhost and 127.0.0.1 by default)
// and issues per-thing client certificates, as AWS IoT's
// CreateKeysAndCertificate does. Certificate ids are, as on AWS, the SHA-256
// of the certificate's DER, in hex.
//
// It imports the standard library and atomicfile (durable writes);
// cloud/* must never import device/* or sim/.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/awsfota/awsfota/atomicfile"
)

// CA is the local certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  crypto.Signer
	dir  string
	now  func() time.Time
}

const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca.key"
)

// LoadOrCreate opens the CA kept in dir, creating it on first use. now may be
// nil (time.Now).
func LoadOrCreate(dir string, now func() time.Time) (*CA, error) {
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	certPEM, err1 := os.ReadFile(certPath)
	keyPEM, err2 := os.ReadFile(keyPath)
	if err1 == nil && err2 == nil {
		cert, err := ParseCertificatePEM(certPEM)
		if err != nil {
			return nil, fmt.Errorf("pki: %s: %w", certPath, err)
		}
		key, err := ParseKeyPEM(keyPEM)
		if err != nil {
			return nil, fmt.Errorf("pki: %s: %w", keyPath, err)
		}
		return &CA{Cert: cert, key: key, dir: dir, now: now}, nil
	}
	if !errors.Is(err1, os.ErrNotExist) && err1 != nil {
		return nil, fmt.Errorf("pki: %w", err1)
	}
	if !errors.Is(err2, os.ErrNotExist) && err2 != nil {
		return nil, fmt.Errorf("pki: %w", err2)
	}
	if err1 == nil || err2 == nil {
		return nil, fmt.Errorf("pki: %s holds only half of the CA (certificate or key); remove the other file or restore it", dir)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	t := now()
	tpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "awsfota local cloud CA", Organization: []string{"awsfota"}},
		NotBefore:             t.Add(-time.Hour),
		NotAfter:              t.AddDate(20, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	kp, err := keyToPEM(key)
	if err != nil {
		return nil, err
	}
	if err := writeFile(keyPath, kp, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(certPath, certToPEM(der), 0o644); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, key: key, dir: dir, now: now}, nil
}

// CertFile is the path of the CA certificate (PEM), the file clients trust.
func (ca *CA) CertFile() string { return filepath.Join(ca.dir, caCertFile) }

// CertPEM returns the CA certificate in PEM.
func (ca *CA) CertPEM() []byte { return certToPEM(ca.Cert.Raw) }

// Pool returns a pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// ServerCertificate issues a TLS server certificate valid for names (DNS
// names or IP addresses), always including localhost, 127.0.0.1 and ::1.
func (ca *CA) ServerCertificate(names ...string) (tls.Certificate, error) {
	iss, err := ca.IssueServer(names...)
	if err != nil {
		return tls.Certificate{}, err
	}
	c, err := tls.X509KeyPair(append(iss.CertPEM, ca.CertPEM()...), iss.KeyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: %w", err)
	}
	c.Leaf = iss.Cert
	return c, nil
}

// IssueServer issues a TLS server certificate as ServerCertificate does,
// in PEM: for a broker of its own, such as Mosquitto, to present.
func (ca *CA) IssueServer(names ...string) (*Issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	t := ca.now()
	tpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "awsfota local cloud"},
		NotBefore:    t.Add(-time.Hour),
		NotAfter:     t.AddDate(2, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tpl.IPAddresses = append(tpl.IPAddresses, ip)
		} else if n != "" && n != "localhost" {
			tpl.DNSNames = append(tpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	leaf, _ := x509.ParseCertificate(der)
	kp, err := keyToPEM(key)
	if err != nil {
		return nil, err
	}
	return &Issued{ID: CertificateID(leaf), CertPEM: certToPEM(der), KeyPEM: kp, Cert: leaf}, nil
}

// Issued is a client certificate with its key, as CreateKeysAndCertificate
// returns them.
type Issued struct {
	ID      string // certificateId: SHA-256 of the DER, hex
	CertPEM []byte
	KeyPEM  []byte
	Cert    *x509.Certificate
}

// IssueClient issues a client certificate whose subject names commonName
// (organization "awsfota device").
func (ca *CA) IssueClient(commonName string) (*Issued, error) {
	return ca.IssueClientSubject(pkix.Name{CommonName: commonName, Organization: []string{"awsfota device"}})
}

// IssueClientSubject issues a client certificate with the given subject.
func (ca *CA) IssueClientSubject(subject pkix.Name) (*Issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	t := ca.now()
	tpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      subject,
		NotBefore:    t.Add(-time.Hour),
		NotAfter:     t.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	kp, err := keyToPEM(key)
	if err != nil {
		return nil, err
	}
	return &Issued{ID: CertificateID(cert), CertPEM: certToPEM(der), KeyPEM: kp, Cert: cert}, nil
}

// CertificateID is AWS's certificate id: the hex SHA-256 of the DER.
func CertificateID(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

// ParseCertificatePEM reads the first certificate of a PEM file.
func ParseCertificatePEM(b []byte) (*x509.Certificate, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New("no PEM certificate found")
		}
		if blk.Type == "CERTIFICATE" {
			return x509.ParseCertificate(blk.Bytes)
		}
	}
}

// ParseKeyPEM reads a PKCS#8, EC or PKCS#1 private key.
func ParseKeyPEM(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM key found")
	}
	if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	if k, err := x509.ParseECPrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("unsupported private key in PEM block %q", blk.Type)
}

func certToPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyToPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// writeFile writes durably through the one durable-write path.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := atomicfile.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// CRL returns a certificate revocation list (PEM, "X509 CRL") signed by the
// CA that revokes the certificates with the given serial numbers. number
// orders successive lists (RFC 5280's CRL number: give a larger one each
// time). The list is valid until the CA expires: a broker that checks it
// (Mosquitto's crlfile) must never find it stale and refuse everyone.
func (ca *CA) CRL(serials []*big.Int, number *big.Int) ([]byte, error) {
	now := ca.now()
	tpl := &x509.RevocationList{
		Number:     number,
		ThisUpdate: now.Add(-time.Minute),
		NextUpdate: ca.Cert.NotAfter,
	}
	if !tpl.NextUpdate.After(tpl.ThisUpdate) {
		return nil, fmt.Errorf("pki: the CA expired on %s: create a new one", ca.Cert.NotAfter.Format(time.DateOnly))
	}
	for _, s := range serials {
		tpl.RevokedCertificateEntries = append(tpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: s, RevocationTime: now.Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tpl, ca.Cert, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: signing the revocation list: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), nil
}

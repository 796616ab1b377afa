package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/awsfota/awsfota/cloud/pki"
)

// verifyDevice checks the certificate a device presented in cs at now: a
// registered certificate (known) for its validity period and key usage, any
// other against the CAs, as crypto/tls does for RequireAndVerifyClientCert.
// Failures are the errors crypto/tls would return.
func verifyDevice(cs tls.ConnectionState, cas *x509.CertPool, known registeredCertificates, now time.Time) error {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return errors.New("broker: the device presented no certificate")
	}
	leaf := certs[0]
	if known.HasCertificate(pki.CertificateID(leaf)) {
		var err error
		switch {
		case now.Before(leaf.NotBefore):
			err = x509.CertificateInvalidError{Cert: leaf, Reason: x509.Expired,
				Detail: fmt.Sprintf("current time %s is before %s", now.UTC().Format(time.RFC3339), leaf.NotBefore.UTC().Format(time.RFC3339))}
		case now.After(leaf.NotAfter):
			err = x509.CertificateInvalidError{Cert: leaf, Reason: x509.Expired,
				Detail: fmt.Sprintf("current time %s is after %s", now.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))}
		case len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny):
			err = x509.CertificateInvalidError{Cert: leaf, Reason: x509.IncompatibleUsage}
		}
		if err != nil {
			return &tls.CertificateVerificationError{UnverifiedCertificates: certs, Err: err}
		}
		return nil
	}
	opts := x509.VerifyOptions{Roots: cas, CurrentTime: now, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: certs, Err: err}
	}
	return nil
}

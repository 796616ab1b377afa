package raucb

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	_ "crypto/sha256" // the digests of CMS
	_ "crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"
)

// CMS (RFC 5652) SignedData: what RAUC's signatures are. Only what verifying
// a bundle needs: one or more SignerInfos with RSA (PKCS #1 v1.5), ECDSA or
// Ed25519 keys and SHA-2 digests, with or without signed attributes.

var (
	oidSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,tag:0"`
}

type encapContentInfo struct {
	EContentType asn1.ObjectIdentifier
	EContent     asn1.RawValue `asn1:"optional,explicit,tag:0"`
}

type rawSignedData struct {
	Version          int
	DigestAlgorithms []pkix.AlgorithmIdentifier `asn1:"set"`
	EncapContentInfo encapContentInfo
	Certificates     asn1.RawValue   `asn1:"optional,tag:0"`
	CRLs             asn1.RawValue   `asn1:"optional,tag:1"`
	SignerInfos      []rawSignerInfo `asn1:"set"`
}

type rawSignerInfo struct {
	Version            int
	SID                asn1.RawValue
	DigestAlgorithm    pkix.AlgorithmIdentifier
	SignedAttrs        asn1.RawValue `asn1:"optional,tag:0"`
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          []byte
	UnsignedAttrs      asn1.RawValue `asn1:"optional,tag:1"`
}

type issuerAndSerial struct {
	Issuer asn1.RawValue
	Serial *big.Int
}

type attribute struct {
	Type   asn1.ObjectIdentifier
	Values asn1.RawValue `asn1:"set"`
}

// signedData is a parsed CMS SignedData.
type signedData struct {
	contentType asn1.ObjectIdentifier
	content     []byte // nil when detached
	certs       []*x509.Certificate
	signers     []rawSignerInfo
}

func sigErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSignature, fmt.Sprintf(format, args...))
}

func parseCMS(der []byte) (*signedData, error) {
	var ci contentInfo
	rest, err := asn1.Unmarshal(der, &ci)
	if err != nil {
		return nil, fmt.Errorf("%w: the signature is not a CMS structure: %v", ErrFormat, err)
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("%w: %d bytes follow the CMS signature", ErrFormat, len(rest))
	}
	if !ci.ContentType.Equal(oidSignedData) {
		return nil, fmt.Errorf("%w: the CMS content is %v, not SignedData", ErrFormat, ci.ContentType)
	}
	var raw rawSignedData
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &raw); err != nil {
		return nil, fmt.Errorf("%w: the CMS SignedData does not parse: %v", ErrFormat, err)
	}
	sd := &signedData{contentType: raw.EncapContentInfo.EContentType, signers: raw.SignerInfos}
	if len(raw.EncapContentInfo.EContent.FullBytes) > 0 {
		var octets []byte
		if _, err := asn1.Unmarshal(raw.EncapContentInfo.EContent.Bytes, &octets); err != nil {
			return nil, fmt.Errorf("%w: the signed content is not an OCTET STRING: %v", ErrFormat, err)
		}
		sd.content = octets
		if sd.content == nil {
			sd.content = []byte{}
		}
	}
	if len(raw.Certificates.Bytes) > 0 {
		if sd.certs, err = x509.ParseCertificates(raw.Certificates.Bytes); err != nil {
			return nil, fmt.Errorf("%w: a certificate in the signature does not parse: %v", ErrFormat, err)
		}
	}
	if len(sd.signers) == 0 {
		return nil, fmt.Errorf("%w: the CMS signature has no signer", ErrFormat)
	}
	return sd, nil
}

func hashFor(oid asn1.ObjectIdentifier) (crypto.Hash, error) {
	switch {
	case oid.Equal(oidSHA256):
		return crypto.SHA256, nil
	case oid.Equal(oidSHA384):
		return crypto.SHA384, nil
	case oid.Equal(oidSHA512):
		return crypto.SHA512, nil
	}
	return 0, sigErr("digest algorithm %v is not supported (SHA-256, -384 and -512 are)", oid)
}

// signer finds the certificate of si among the signature's certificates.
func (sd *signedData) signer(si rawSignerInfo) (*x509.Certificate, error) {
	if si.SID.Class == asn1.ClassContextSpecific && si.SID.Tag == 0 {
		for _, c := range sd.certs {
			if len(c.SubjectKeyId) > 0 && bytes.Equal(c.SubjectKeyId, si.SID.Bytes) {
				return c, nil
			}
		}
		return nil, sigErr("the signature does not carry its signer's certificate (subject key id %x)", si.SID.Bytes)
	}
	var ias issuerAndSerial
	if _, err := asn1.Unmarshal(si.SID.FullBytes, &ias); err != nil {
		return nil, fmt.Errorf("%w: the signer's identifier does not parse: %v", ErrFormat, err)
	}
	for _, c := range sd.certs {
		if c.SerialNumber.Cmp(ias.Serial) == 0 && bytes.Equal(c.RawIssuer, ias.Issuer.FullBytes) {
			return c, nil
		}
	}
	return nil, sigErr("the signature does not carry its signer's certificate (serial %v)", ias.Serial)
}

// verify checks every signer over content (hashed by digest when the
// content is not at hand: digest returns its hash under an algorithm) and
// their certificates against roots; it returns the first signer.
func (sd *signedData) verify(digest func(crypto.Hash) ([]byte, error), roots *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	var first *x509.Certificate
	for _, si := range sd.signers {
		cert, err := sd.signer(si)
		if err != nil {
			return nil, err
		}
		h, err := hashFor(si.DigestAlgorithm.Algorithm)
		if err != nil {
			return nil, err
		}
		sum, err := digest(h)
		if err != nil {
			return nil, err
		}
		signed := sum // what the signature is over: the content's digest, or the attributes
		var msg []byte
		if len(si.SignedAttrs.FullBytes) > 0 {
			if err := checkAttrs(si.SignedAttrs.Bytes, sd.contentType, sum); err != nil {
				return nil, err
			}
			// Signed over the DER of the attributes as a SET OF, not as the
			// [0] IMPLICIT that carries them.
			msg = append([]byte{0x31}, si.SignedAttrs.FullBytes[1:]...)
			hh := h.New()
			hh.Write(msg)
			signed = hh.Sum(nil)
		} else if _, ok := cert.PublicKey.(ed25519.PublicKey); ok {
			return nil, sigErr("an Ed25519 signature without signed attributes is not supported")
		}
		if err := checkSignature(cert, h, signed, msg, si.Signature); err != nil {
			return nil, err
		}
		inter := x509.NewCertPool()
		for _, c := range sd.certs {
			inter.AddCert(c)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return nil, sigErr("the signer %q is not trusted by the keyring: %v", cert.Subject.String(), err)
		}
		if first == nil {
			first = cert
		}
	}
	return first, nil
}

func checkAttrs(set []byte, contentType asn1.ObjectIdentifier, sum []byte) error {
	var sawType, sawDigest bool
	for len(set) > 0 {
		var a attribute
		var err error
		if set, err = asn1.Unmarshal(set, &a); err != nil {
			return fmt.Errorf("%w: a signed attribute does not parse: %v", ErrFormat, err)
		}
		switch {
		case a.Type.Equal(oidContentType):
			var ct asn1.ObjectIdentifier
			if _, err := asn1.Unmarshal(a.Values.Bytes, &ct); err != nil || !ct.Equal(contentType) {
				return sigErr("the signed content type %v is not the content's %v", ct, contentType)
			}
			sawType = true
		case a.Type.Equal(oidMessageDigest):
			var d []byte
			if _, err := asn1.Unmarshal(a.Values.Bytes, &d); err != nil {
				return fmt.Errorf("%w: the signed message digest does not parse: %v", ErrFormat, err)
			}
			if !bytes.Equal(d, sum) {
				return sigErr("the bundle's content does not match its signed digest: it was changed after signing")
			}
			sawDigest = true
		}
	}
	if !sawType || !sawDigest {
		return sigErr("the signed attributes lack the content type or the message digest")
	}
	return nil
}

func checkSignature(cert *x509.Certificate, h crypto.Hash, digest, msg, sig []byte) error {
	var ok bool
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(pub, h, digest, sig) == nil
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(pub, digest, sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(pub, msg, sig)
	default:
		return sigErr("the signer's key is a %T, not RSA, ECDSA or Ed25519", cert.PublicKey)
	}
	if !ok {
		return sigErr("the signature of %q does not verify: the bundle was changed after signing, or signed with another key", cert.Subject.String())
	}
	return nil
}

// ParseKeyring reads a keyring: PEM certificates, as RAUC's [keyring] path.
func ParseKeyring(b []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("raucb: a keyring certificate does not parse: %w", err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("raucb: the keyring holds no PEM certificate")
	}
	return pool, nil
}

// Verify checks the bundle's signature against keyring at time now, as RAUC
// does before installing: every signer must chain to a keyring certificate
// and sign the payload (plain) or the manifest (verity); a verity bundle's
// payload must then match its signed dm-verity root hash. It returns the
// signer. Errors wrap ErrSignature (or ErrFormat for a damaged bundle). The
// payload is streamed, never held in memory.
func (b *Bundle) Verify(keyring *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	var digest func(crypto.Hash) ([]byte, error)
	if b.Detached {
		if !b.signed.contentType.Equal(oidData) {
			return nil, sigErr("a detached signature over content of type %v, not data", b.signed.contentType)
		}
		digest = func(h crypto.Hash) ([]byte, error) {
			hh := h.New()
			if _, err := io.Copy(hh, io.NewSectionReader(b.r, 0, b.PayloadSize)); err != nil {
				return nil, fmt.Errorf("raucb: reading the payload: %w", err)
			}
			return hh.Sum(nil), nil
		}
	} else {
		digest = func(h crypto.Hash) ([]byte, error) {
			hh := h.New()
			hh.Write(b.signed.content)
			return hh.Sum(nil), nil
		}
	}
	sums := map[crypto.Hash][]byte{} // several signers hash the payload once
	memo := func(h crypto.Hash) ([]byte, error) {
		if s, ok := sums[h]; ok {
			return s, nil
		}
		s, err := digest(h)
		sums[h] = s
		return s, err
	}
	cert, err := b.signed.verify(memo, keyring, now)
	if err != nil {
		return nil, err
	}
	if !b.Detached {
		if err := b.checkVerity(); err != nil {
			return nil, err
		}
	}
	return cert, nil
}

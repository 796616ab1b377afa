package mcuboot

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// KeyType is a kind of signing key MCUboot supports.
type KeyType int

// Key types. Each signs with one TLV type.
const (
	KeyECDSAP256 KeyType = iota + 1 // ECDSA over P-256 with SHA-256, TLV 0x22 (DER signature)
	KeyEd25519                      // Ed25519 over the 32-byte SHA-256, TLV 0x24
	KeyRSA2048                      // RSA-2048 PSS (MGF1-SHA256, salt 32), TLV 0x20
	KeyRSA3072                      // RSA-3072 PSS (MGF1-SHA256, salt 32), TLV 0x23
)

var keyTypeNames = map[KeyType]string{
	KeyECDSAP256: "ecdsa-p256",
	KeyEd25519:   "ed25519",
	KeyRSA2048:   "rsa-2048",
	KeyRSA3072:   "rsa-3072",
}

// KeyTypes lists the supported key types, in the order of their constants.
func KeyTypes() []KeyType { return []KeyType{KeyECDSAP256, KeyEd25519, KeyRSA2048, KeyRSA3072} }

// String returns imgtool's name for the key type ("ecdsa-p256", ...).
func (t KeyType) String() string {
	if s, ok := keyTypeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("KeyType(%d)", int(t))
}

// ParseKeyType parses imgtool's key type names: ecdsa-p256, ed25519,
// rsa-2048 and rsa-3072.
func ParseKeyType(s string) (KeyType, error) {
	for _, t := range KeyTypes() {
		if t.String() == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("%w: key type %q: use ecdsa-p256, ed25519, rsa-2048 or rsa-3072", ErrUnsupportedKey, s)
}

// SignatureTLV is the TLV type that carries this key type's signatures.
func (t KeyType) SignatureTLV() uint16 {
	switch t {
	case KeyECDSAP256:
		return TLVECDSASig
	case KeyEd25519:
		return TLVED25519
	case KeyRSA2048:
		return TLVRSA2048PSS
	case KeyRSA3072:
		return TLVRSA3072PSS
	}
	return 0
}

// Errors about keys.
var (
	// ErrUnsupportedKey: the key is not one MCUboot verifies (another curve,
	// another RSA size, another algorithm).
	ErrUnsupportedKey = errors.New("unsupported key")
	// ErrBadKey: a key file or key bytes do not decode.
	ErrBadKey = errors.New("malformed key")
	// ErrPublicOnly: signing was asked of a public key.
	ErrPublicOnly = errors.New("cannot sign with a public-only key; signing requires the private key")
)

// PublicKey is a public key an MCUboot verifier trusts. Its identity is the
// key as MCUboot embeds it: the SubjectPublicKeyInfo DER for ECDSA and
// Ed25519, the PKCS#1 RSAPublicKey DER for RSA; a KEYHASH TLV is the SHA-256
// of those bytes and a PUBKEY TLV carries them.
type PublicKey struct {
	typ      KeyType
	key      crypto.PublicKey // *ecdsa.PublicKey, ed25519.PublicKey or *rsa.PublicKey
	embedded []byte
	hash     [sha256.Size]byte
}

// NewPublicKey wraps a Go public key: *ecdsa.PublicKey on P-256,
// ed25519.PublicKey, or *rsa.PublicKey of 2048 or 3072 bits.
func NewPublicKey(k crypto.PublicKey) (*PublicKey, error) {
	var (
		typ KeyType
		der []byte
		err error
	)
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: ECDSA on %s: MCUboot images are signed with P-256 here", ErrUnsupportedKey, k.Curve.Params().Name)
		}
		typ = KeyECDSAP256
		der, err = x509.MarshalPKIXPublicKey(k)
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: Ed25519 key of %d bytes", ErrBadKey, len(k))
		}
		typ = KeyEd25519
		der, err = x509.MarshalPKIXPublicKey(k)
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			typ = KeyRSA2048
		case 3072:
			typ = KeyRSA3072
		default:
			return nil, fmt.Errorf("%w: RSA key of %d bits: MCUboot verifies RSA-2048 and RSA-3072", ErrUnsupportedKey, k.N.BitLen())
		}
		der = x509.MarshalPKCS1PublicKey(k)
	default:
		return nil, fmt.Errorf("%w: %T: use ECDSA P-256, Ed25519, RSA-2048 or RSA-3072", ErrUnsupportedKey, k)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	return &PublicKey{typ: typ, key: k, embedded: der, hash: sha256.Sum256(der)}, nil
}

// Type returns the key's type.
func (k *PublicKey) Type() KeyType { return k.typ }

// Crypto returns the Go public key.
func (k *PublicKey) Crypto() crypto.PublicKey { return k.key }

// Embedded returns the key bytes as MCUboot embeds them (and as a PUBKEY
// TLV carries them). The caller must not modify them.
func (k *PublicKey) Embedded() []byte { return k.embedded }

// Hash returns the SHA-256 of Embedded: the value of a KEYHASH TLV, and what
// `imgtool getpubhash` prints.
func (k *PublicKey) Hash() []byte { return bytes.Clone(k.hash[:]) }

// Equal reports whether k and o are the same key.
func (k *PublicKey) Equal(o *PublicKey) bool { return o != nil && k.hash == o.hash }

// MarshalPEM encodes the key as a SubjectPublicKeyInfo PEM block ("PUBLIC
// KEY"), as `imgtool getpub -e pem` writes it.
func (k *PublicKey) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k.key)
	if err != nil {
		return nil, fmt.Errorf("mcuboot: encoding the public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// verify checks sig over the image hash digest as MCUboot does for the
// key's type. It reports only whether the signature is valid.
func (k *PublicKey) verify(digest, sig []byte) bool {
	switch k.typ {
	case KeyECDSAP256:
		return ecdsa.VerifyASN1(k.key.(*ecdsa.PublicKey), digest, sig)
	case KeyEd25519:
		// MCUboot signs the digest, not the image, with Ed25519.
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(k.key.(ed25519.PublicKey), digest, sig)
	case KeyRSA2048, KeyRSA3072:
		pub := k.key.(*rsa.PublicKey)
		if len(sig) != pub.Size() {
			return false
		}
		return rsa.VerifyPSS(pub, crypto.SHA256, digest, sig, pssOptions) == nil
	}
	return false
}

// pssOptions are MCUboot's RSA-PSS parameters: MGF1 with SHA-256, 32-byte salt.
var pssOptions = &rsa.PSSOptions{SaltLength: 32, Hash: crypto.SHA256}

// PrivateKey signs images. It wraps a crypto.Signer, so a key kept in a
// hardware token works as well as one loaded from a file.
type PrivateKey struct {
	signer crypto.Signer
	pub    *PublicKey
}

// NewPrivateKey wraps a signer whose public key NewPublicKey accepts.
func NewPrivateKey(s crypto.Signer) (*PrivateKey, error) {
	pub, err := NewPublicKey(s.Public())
	if err != nil {
		return nil, err
	}
	return &PrivateKey{signer: s, pub: pub}, nil
}

// GenerateKey makes a new key of type t with the system's secure random source.
func GenerateKey(t KeyType) (*PrivateKey, error) {
	var (
		s   crypto.Signer
		err error
	)
	switch t {
	case KeyECDSAP256:
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyEd25519:
		_, s, err = ed25519.GenerateKey(rand.Reader)
	case KeyRSA2048:
		s, err = rsa.GenerateKey(rand.Reader, 2048)
	case KeyRSA3072:
		s, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedKey, t)
	}
	if err != nil {
		return nil, fmt.Errorf("mcuboot: generating a %v key: %w", t, err)
	}
	return NewPrivateKey(s)
}

// Public returns the key's public half.
func (k *PrivateKey) Public() *PublicKey { return k.pub }

// Signer returns the wrapped crypto.Signer.
func (k *PrivateKey) Signer() crypto.Signer { return k.signer }

// MarshalPEM encodes the key as an unencrypted PKCS#8 PEM block ("PRIVATE
// KEY"), the form `imgtool keygen` writes. The signer must be a Go key.
func (k *PrivateKey) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.signer)
	if err != nil {
		return nil, fmt.Errorf("mcuboot: encoding the private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// sign signs the image hash digest as imgtool does and returns the signature
// TLV's value.
func (k *PrivateKey) sign(digest []byte) ([]byte, error) {
	var opts crypto.SignerOpts
	switch k.pub.typ {
	case KeyECDSAP256:
		opts = crypto.SHA256
	case KeyEd25519:
		opts = crypto.Hash(0) // the digest is the message
	case KeyRSA2048, KeyRSA3072:
		opts = pssOptions
	}
	sig, err := k.signer.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("mcuboot: signing with the %v key: %w", k.pub.typ, err)
	}
	if !k.pub.verify(digest, sig) {
		// A signer that lies about its public key, or a hardware fault:
		// never write an image its own key would refuse.
		return nil, fmt.Errorf("mcuboot: the %v signer produced a signature its public key does not verify", k.pub.typ)
	}
	return sig, nil
}

// pemBlocks returns the PEM blocks in b, refusing input without any.
func pemBlocks(b []byte) ([]*pem.Block, error) {
	var blocks []*pem.Block
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		blocks = append(blocks, blk)
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("%w: no PEM block found", ErrBadKey)
	}
	return blocks, nil
}

// parsePrivateDER decodes a private key block: PKCS#8 ("PRIVATE KEY", what
// imgtool writes), SEC1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY").
func parsePrivateDER(blk *pem.Block) (crypto.Signer, error) {
	if len(blk.Headers) > 0 {
		return nil, fmt.Errorf("%w: encrypted PEM keys are not supported; decrypt the key first", ErrBadKey)
	}
	var (
		k   any
		err error
	)
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("%w: encrypted PEM keys are not supported; decrypt the key first", ErrBadKey)
	default:
		return nil, fmt.Errorf("%w: PEM block %q is not a private key", ErrBadKey, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadKey, blk.Type, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, k)
	}
	return s, nil
}

func isPublicBlock(t string) bool { return t == "PUBLIC KEY" || t == "RSA PUBLIC KEY" }

// ParsePrivateKeyPEM reads a private key from PEM: PKCS#8 as `imgtool
// keygen` writes it, or SEC1 / PKCS#1. A public key gives ErrPublicOnly.
func ParsePrivateKeyPEM(b []byte) (*PrivateKey, error) {
	blocks, err := pemBlocks(b)
	if err != nil {
		return nil, err
	}
	for _, blk := range blocks {
		if blk.Type == "EC PARAMETERS" {
			continue // openssl ecparam -genkey writes it before the key
		}
		if isPublicBlock(blk.Type) {
			return nil, fmt.Errorf("mcuboot: %w", ErrPublicOnly)
		}
		s, err := parsePrivateDER(blk)
		if err != nil {
			return nil, err
		}
		return NewPrivateKey(s)
	}
	return nil, fmt.Errorf("%w: no key in the PEM data", ErrBadKey)
}

// ParsePublicKeyPEM reads a public key from PEM: SubjectPublicKeyInfo
// ("PUBLIC KEY", as `imgtool getpub -e pem` writes), PKCS#1 ("RSA PUBLIC
// KEY"), or the public half of a private key file.
func ParsePublicKeyPEM(b []byte) (*PublicKey, error) {
	blocks, err := pemBlocks(b)
	if err != nil {
		return nil, err
	}
	for _, blk := range blocks {
		var (
			k   any
			err error
		)
		switch blk.Type {
		case "EC PARAMETERS":
			continue
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		default:
			var s crypto.Signer
			s, err = parsePrivateDER(blk)
			if err != nil {
				return nil, err
			}
			k = s.Public()
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBadKey, blk.Type, err)
		}
		return NewPublicKey(k)
	}
	return nil, fmt.Errorf("%w: no key in the PEM data", ErrBadKey)
}

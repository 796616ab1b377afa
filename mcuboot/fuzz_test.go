package mcuboot

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// fuzzKeys are the vectors' public keys: the verifier's trusted set.
func fuzzKeys(f *testing.F) []*PublicKey {
	var keys []*PublicKey
	for _, name := range []string{"ecdsa-p256", "ed25519", "rsa-2048"} {
		b, err := os.ReadFile(filepath.Join(vectors, "keys", name+".pub.pem"))
		if err != nil {
			f.Fatal(err)
		}
		k, err := ParsePublicKeyPEM(b)
		if err != nil {
			f.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}

// FuzzVerify feeds hostile images to the signature verifier. With fixHash
// the SHA-256 TLVs are recomputed first, as an attacker who cannot sign
// would, so that the key and signature checks see the fuzzer's bytes rather
// than stopping at a hash mismatch.
func FuzzVerify(f *testing.F) {
	keys := fuzzKeys(f)
	for _, dir := range []string{"images", "tampered"} {
		files, _ := filepath.Glob(filepath.Join(vectors, dir, "*.bin"))
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil && len(b) <= 2048 { // small seeds minimise fast
				f.Add(b, true)
				f.Add(b, false)
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, fixHash bool) {
		if fixHash {
			b = bytes.Clone(b) // the fuzzer's input must not be modified
			if im, err := Parse(bytes.NewReader(b), int64(len(b))); err == nil && im.Header.HashedLen() <= int64(len(b)) {
				sum := sha256.Sum256(b[:im.Header.HashedLen()])
				for _, tl := range im.all() {
					if tl.Type == TLVSHA256 && len(tl.Value) == sha256.Size && tl.Offset >= im.Header.HashedLen() {
						copy(b[tl.Offset+4:], sum[:])
					}
				}
			}
		}
		v, err := Verify(bytes.NewReader(b), int64(len(b)), keys)
		if err != nil {
			for _, known := range []error{ErrNotImage, ErrMalformed, ErrTruncated, ErrHashMismatch, ErrNoHash, ErrUnsigned, ErrBadSignature} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("unclassified error: %v", err)
		}
		// Accepted: a trusted key signed it, and that key alone accepts it.
		if v.Key == nil || v.Image.Size > int64(len(b)) {
			t.Fatalf("accepted without a key: %+v", v)
		}
		if _, err := Verify(bytes.NewReader(b), int64(len(b)), []*PublicKey{v.Key}); err != nil {
			t.Fatalf("accepted with all keys, refused by the signing key: %v", err)
		}
	})
}

// FuzzParseKey: key files come from users and operators; any bytes give a
// key or a classified error.
func FuzzParseKey(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(vectors, "keys", "*.pem"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("-----BEGIN RSA PUBLIC KEY-----\nMAA=\n-----END RSA PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		classified := func(err error) bool {
			return errors.Is(err, ErrBadKey) || errors.Is(err, ErrUnsupportedKey) || errors.Is(err, ErrPublicOnly)
		}
		pub, err := ParsePublicKeyPEM(b)
		if err != nil && !classified(err) {
			t.Fatalf("public: unclassified error: %v", err)
		}
		if err == nil && (len(pub.Embedded()) == 0 || pub.Type().SignatureTLV() == 0) {
			t.Fatalf("public key without identity: %+v", pub)
		}
		priv, err := ParsePrivateKeyPEM(b)
		if err != nil && !classified(err) {
			t.Fatalf("private: unclassified error: %v", err)
		}
		if err == nil && (pub == nil || !priv.Public().Equal(pub)) {
			t.Fatal("a private key whose public half ParsePublicKeyPEM does not give")
		}
	})
}

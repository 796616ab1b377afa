package mcuboot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Errors of signature verification. They are wrapped with details.
var (
	// ErrUnsigned: trusted keys were given and the image carries no
	// signature TLV at all.
	ErrUnsigned = errors.New("MCUboot image is not signed")
	// ErrBadSignature: the image is signed, but not validly by a trusted key:
	// a signature by a trusted key does not verify, or no signature is by a
	// trusted key (then the error also wraps ErrKeyNotTrusted).
	ErrBadSignature = errors.New("MCUboot image signature not valid for any trusted key")
	// ErrKeyNotTrusted: no signature in the image follows a KEYHASH or
	// PUBKEY TLV that names a trusted key, so none is checked (as MCUboot's
	// bootutil_find_key). Errors that wrap it also wrap ErrBadSignature.
	ErrKeyNotTrusted = fmt.Errorf("%w: the image names no trusted key", ErrBadSignature)
)

// Verified is what Verify established about an image.
type Verified struct {
	Image *Image
	// Hash is the SHA-256 of the hashed region; every SHA-256 TLV equals it.
	Hash []byte
	// Key is the trusted key whose signature verified, nil when Verify was
	// given no keys.
	Key *PublicKey
}

// unprotectedAllowed are the only TLVs the unprotected area may carry (as
// MCUboot's MCUBOOT_USE_TLV_ALLOW_LIST): everything else must be covered by
// the hash, or an attacker could add it unnoticed.
var unprotectedAllowed = map[uint16]bool{
	TLVKeyHash: true, TLVPubKey: true,
	TLVSHA256: true, TLVSHA384: true, TLVSHA512: true,
	TLVRSA2048PSS: true, TLVECDSA224: true, TLVECDSASig: true, TLVRSA3072PSS: true, TLVED25519: true, TLVSigPure: true,
	TLVEncRSA2048: true, TLVEncKW: true, TLVEncEC256: true, TLVEncX25519: true,
}

func isSignatureTLV(t uint16) bool {
	switch t {
	case TLVRSA2048PSS, TLVECDSA224, TLVECDSASig, TLVRSA3072PSS, TLVED25519:
		return true
	}
	return false
}

// Verify parses the image at the start of r (size bytes: an image file, or
// a whole flash slot) and validates it as MCUboot's bootutil_img_validate
// does, strictly:
//
//   - the TLV areas are well formed, the unprotected area holds only hash,
//     key, signature and encryption TLVs, and a SEC_CNT is protected and 4
//     bytes long;
//   - the image has a SHA-256 TLV and every SHA-256 TLV equals the hash of
//     the header, body and protected TLVs (ErrNoHash, ErrHashMismatch);
//   - when keys are given, a signature is checked only when the KEYHASH or
//     PUBKEY TLV before it names one of them, and the image is accepted only
//     when at least one such signature verifies and none fails (ErrUnsigned,
//     ErrKeyNotTrusted, ErrBadSignature).
//
// With no keys only the hash is checked, as an MCUboot built without
// signatures does. The body is read in small blocks; memory does not grow
// with the image's size.
func Verify(r io.ReaderAt, size int64, keys []*PublicKey) (*Verified, error) {
	im, err := Parse(r, size)
	if err != nil {
		return nil, err
	}
	if err := im.check(); err != nil {
		return nil, err
	}
	sum, err := HashRegion(r, im.Header)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: %w", ErrTruncated, err)
		}
		return nil, err
	}
	for _, t := range im.all() {
		if t.Type == TLVSHA256 && !bytes.Equal(sum, t.Value) {
			return nil, fmt.Errorf("%w: computed %x, the image says %x", ErrHashMismatch, sum, t.Value)
		}
	}
	v := &Verified{Image: im, Hash: sum}
	if len(keys) == 0 {
		return v, nil
	}
	v.Key, err = checkSignatures(im, sum, keys)
	if err != nil {
		return nil, err
	}
	return v, nil
}

// check applies the structural rules Verify enforces before hashing.
func (im *Image) check() error {
	hashes, counters := 0, 0
	for _, t := range im.Unprotected {
		if !unprotectedAllowed[t.Type] {
			return fmt.Errorf("%w: TLV %s at %d is in the unprotected area, where the hash does not cover it", ErrMalformed, tlvDesc(t.Type), t.Offset)
		}
	}
	for _, t := range im.all() {
		switch t.Type {
		case TLVSHA256:
			if len(t.Value) != sha256.Size {
				return fmt.Errorf("%w: SHA-256 TLV at %d holds %d bytes, want %d", ErrMalformed, t.Offset, len(t.Value), sha256.Size)
			}
			hashes++
		case TLVSecCounter:
			if len(t.Value) != 4 {
				return fmt.Errorf("%w: SEC_CNT TLV at %d holds %d bytes, want 4", ErrMalformed, t.Offset, len(t.Value))
			}
			if counters++; counters > 1 {
				return fmt.Errorf("%w: more than one SEC_CNT TLV", ErrMalformed)
			}
		}
	}
	if hashes == 0 {
		return ErrNoHash
	}
	return nil
}

// checkSignatures walks the TLVs in order, as MCUboot does: a KEYHASH or
// PUBKEY selects the key for the signature TLV that follows it.
func checkSignatures(im *Image, digest []byte, keys []*PublicKey) (*PublicKey, error) {
	var (
		current    *PublicKey // the trusted key the last key TLV named
		named      []string   // keys the image names that are not trusted
		good       *PublicKey
		signatures int
	)
	for _, t := range im.all() {
		switch {
		case t.Type == TLVKeyHash:
			if len(t.Value) != sha256.Size {
				return nil, fmt.Errorf("%w: KEYHASH TLV at %d holds %d bytes, want %d", ErrMalformed, t.Offset, len(t.Value), sha256.Size)
			}
			current = findKey(keys, func(k *PublicKey) bool { return bytes.Equal(k.hash[:], t.Value) })
			if current == nil {
				named = append(named, fmt.Sprintf("KEYHASH %x", t.Value))
			}
		case t.Type == TLVPubKey:
			current = findKey(keys, func(k *PublicKey) bool { return bytes.Equal(k.embedded, t.Value) })
			if current == nil {
				h := sha256.Sum256(t.Value)
				named = append(named, fmt.Sprintf("PUBKEY with hash %x", h))
			}
		case isSignatureTLV(t.Type):
			signatures++
			k := current
			current = nil
			if k == nil {
				continue // not for us, as bootutil: only a trusted key's signature is checked
			}
			if want := k.typ.SignatureTLV(); t.Type != want {
				return nil, fmt.Errorf("%w: the image names the trusted %v key %x, but the signature that follows is a %s TLV, not %s",
					ErrBadSignature, k.typ, k.hash[:8], TLVName(t.Type), TLVName(want))
			}
			if !k.verify(digest, t.Value) {
				return nil, fmt.Errorf("%w: the %s signature at %d does not verify with the trusted %v key %x",
					ErrBadSignature, TLVName(t.Type), t.Offset, k.typ, k.hash[:8])
			}
			good = k
		}
	}
	switch {
	case signatures == 0:
		return nil, fmt.Errorf("%w: it carries no signature TLV, and %d trusted key(s) are configured", ErrUnsigned, len(keys))
	case good == nil && len(named) == 0:
		return nil, fmt.Errorf("%w: no KEYHASH or PUBKEY TLV precedes its signature", ErrKeyNotTrusted)
	case good == nil:
		return nil, fmt.Errorf("%w: it names %s; trusted: %s", ErrKeyNotTrusted, strings.Join(named, ", "), keyList(keys))
	}
	return good, nil
}

func findKey(keys []*PublicKey, match func(*PublicKey) bool) *PublicKey {
	for _, k := range keys {
		if k != nil && match(k) {
			return k
		}
	}
	return nil
}

func keyList(keys []*PublicKey) string {
	var s []string
	for _, k := range keys {
		if k != nil {
			s = append(s, fmt.Sprintf("%v %x", k.typ, k.hash))
		}
	}
	return strings.Join(s, ", ")
}

// all returns the TLVs in the order MCUboot walks them: the protected area,
// then the unprotected one.
func (im *Image) all() []TLV {
	return append(append(make([]TLV, 0, len(im.Protected)+len(im.Unprotected)), im.Protected...), im.Unprotected...)
}

// SecurityCounter returns the image's anti-rollback counter: the value of
// the SEC_CNT TLV in the protected area. ok is false when there is none (a
// SEC_CNT outside the protected area, or not 4 bytes long, does not count:
// Verify refuses such an image).
func (im *Image) SecurityCounter() (n uint32, ok bool) {
	for _, t := range im.Protected {
		if t.Type == TLVSecCounter && len(t.Value) == 4 {
			return binary.LittleEndian.Uint32(t.Value), true
		}
	}
	return 0, false
}

// Dependency is a DEPENDENCY TLV: this image needs image ImageID at
// MinVersion or newer.
type Dependency struct {
	ImageID    uint8
	MinVersion Version
}

// dependencyLen is the size of a DEPENDENCY TLV: u8 image id, 3 bytes of
// padding, then the 8-byte version as in the header.
const dependencyLen = 12

// TLV encodes the dependency as imgtool does.
func (d Dependency) TLV() TLV {
	v := make([]byte, dependencyLen)
	v[0] = d.ImageID
	v[4], v[5] = d.MinVersion.Major, d.MinVersion.Minor
	binary.LittleEndian.PutUint16(v[6:], d.MinVersion.Revision)
	binary.LittleEndian.PutUint32(v[8:], d.MinVersion.Build)
	return TLV{Type: TLVDependency, Value: v}
}

// Dependencies decodes the image's DEPENDENCY TLVs.
func (im *Image) Dependencies() ([]Dependency, error) {
	var out []Dependency
	for _, t := range im.all() {
		if t.Type != TLVDependency {
			continue
		}
		if len(t.Value) != dependencyLen {
			return nil, fmt.Errorf("%w: DEPENDENCY TLV at %d holds %d bytes, want %d", ErrMalformed, t.Offset, len(t.Value), dependencyLen)
		}
		v := t.Value
		out = append(out, Dependency{ImageID: v[0], MinVersion: Version{v[4], v[5], binary.LittleEndian.Uint16(v[6:]), binary.LittleEndian.Uint32(v[8:])}})
	}
	return out, nil
}

var tlvNames = map[uint16]string{
	TLVKeyHash: "KEYHASH", TLVPubKey: "PUBKEY", TLVSHA256: "SHA256", TLVSHA384: "SHA384", TLVSHA512: "SHA512",
	TLVRSA2048PSS: "RSA2048", TLVECDSA224: "ECDSA224", TLVECDSASig: "ECDSASIG", TLVRSA3072PSS: "RSA3072",
	TLVED25519: "ED25519", TLVSigPure: "SIG_PURE", TLVEncRSA2048: "ENCRSA2048", TLVEncKW: "ENCKW",
	TLVEncEC256: "ENCEC256", TLVEncX25519: "ENCX25519", TLVDependency: "DEPENDENCY", TLVSecCounter: "SEC_CNT",
	TLVBootRecord: "BOOT_RECORD",
}

// TLVName returns imgtool's name of a TLV type ("SHA256", "KEYHASH", ...),
// or "VENDOR/UNKNOWN" for the others, as `imgtool dumpinfo` prints them.
func TLVName(typ uint16) string {
	if n, ok := tlvNames[typ]; ok {
		return n
	}
	return "VENDOR/UNKNOWN"
}

// tlvDesc names a TLV type for messages: "0x50 (SEC_CNT)".
func tlvDesc(typ uint16) string { return fmt.Sprintf("%#02x (%s)", typ, TLVName(typ)) }

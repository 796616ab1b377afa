// Package raucb reads RAUC bundles (.raucb), the update files of RAUC: what
// system a bundle is for (compatible), its version, and whether its signature
// holds against a keyring. Both the operator (job create) and the device
// (before asking RAUC to install) use it.
//
// A bundle is a SquashFS image followed by a CMS (RFC 5652) signature and
// the signature's size as an 8-byte big-endian integer:
//
//	[ squashfs payload | CMS SignedData (DER) | u64 BE size of the CMS ]
//
// In the "plain" format the CMS signature is detached: it signs the payload
// bytes, and the manifest (manifest.raucm) is a file in the SquashFS. In the
// "verity" format the CMS carries the manifest itself, with the dm-verity
// root hash of the payload (SquashFS plus its hash tree). See RAUC's
// src/bundle.c (open_local_bundle, check_bundle) and docs "Bundle Formats".
//
// Reading is bounded: the signature is at most 64 KiB (as RAUC requires), the
// manifest at most MaxManifestSize, and the payload is only streamed through
// a hash. The SquashFS reader takes gzip-compressed images (RAUC's default)
// and refuses others with ErrCompression.
//
// It imports only the standard library.
package raucb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Errors.
var (
	// ErrFormat: the file is not a well-formed RAUC bundle.
	ErrFormat = errors.New("raucb: not a valid RAUC bundle")
	// ErrSignature: the signature does not verify, or its signer is not
	// trusted by the keyring.
	ErrSignature = errors.New("raucb: bundle signature not valid")
)

// MaxSignatureSize is RAUC's limit on the CMS signature.
const MaxSignatureSize = 64 << 10

// IsBundle reports whether a file's first bytes are those of a bundle (a
// SquashFS image).
func IsBundle(head []byte) bool {
	return len(head) >= 4 && binary.LittleEndian.Uint32(head) == squashMagic
}

// Bundle is an opened bundle.
type Bundle struct {
	r    io.ReaderAt
	size int64
	// PayloadSize is the size of the signed payload: the SquashFS (and, for
	// verity, its hash tree).
	PayloadSize int64
	// Signature is the CMS SignedData (DER).
	Signature []byte
	// Detached says the CMS signs the payload (plain); otherwise it carries
	// the manifest (verity).
	Detached bool
	// Manifest is the bundle's manifest: read from the SquashFS for plain
	// bundles, from the CMS for verity ones. It is not verified until
	// Verify is called.
	Manifest Manifest
	signed   *signedData
}

// Open reads a bundle of size bytes from r: its layout, its signature and
// its manifest. It does not verify the signature (Verify does).
func Open(r io.ReaderAt, size int64) (*Bundle, error) {
	if size < superblockLen+8 {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrFormat, size)
	}
	var tail [8]byte
	if _, err := r.ReadAt(tail[:], size-8); err != nil {
		return nil, fmt.Errorf("raucb: reading the signature size: %w", err)
	}
	sigSize := binary.BigEndian.Uint64(tail[:])
	switch {
	case sigSize == 0:
		return nil, fmt.Errorf("%w: the signature size is 0 (an unsigned or truncated bundle)", ErrFormat)
	case sigSize > MaxSignatureSize:
		return nil, fmt.Errorf("%w: the signature size %d exceeds RAUC's 64 KiB (a truncated or damaged bundle?)", ErrFormat, sigSize)
	case sigSize > uint64(size-8):
		return nil, fmt.Errorf("%w: the signature size %d exceeds the bundle's %d bytes", ErrFormat, sigSize, size)
	}
	b := &Bundle{r: r, size: size, PayloadSize: size - 8 - int64(sigSize), Signature: make([]byte, sigSize)}
	if _, err := r.ReadAt(b.Signature, b.PayloadSize); err != nil {
		return nil, fmt.Errorf("raucb: reading the signature: %w", err)
	}
	sd, err := parseCMS(b.Signature)
	if err != nil {
		return nil, err
	}
	b.signed = sd
	b.Detached = sd.content == nil
	if b.Detached {
		fs, err := openSquashFS(r, b.PayloadSize)
		if err != nil {
			return nil, err
		}
		raw, err := fs.readFile("manifest.raucm", MaxManifestSize)
		if err != nil {
			return nil, err
		}
		if b.Manifest, err = ParseManifest(raw); err != nil {
			return nil, err
		}
		if b.Manifest.Format != "plain" {
			return nil, fmt.Errorf("%w: the signature is detached (a plain bundle) but the manifest says format %q", ErrFormat, b.Manifest.Format)
		}
		return b, nil
	}
	if b.Manifest, err = ParseManifest(sd.content); err != nil {
		return nil, err
	}
	if b.Manifest.Format != "verity" {
		return nil, fmt.Errorf("%w: the signature carries the manifest, which says format %q: only verity bundles do that", ErrFormat, b.Manifest.Format)
	}
	if b.Manifest.VeritySize <= 0 || b.Manifest.VeritySize >= b.PayloadSize || b.Manifest.VeritySize%verityBlock != 0 || b.PayloadSize%verityBlock != 0 {
		return nil, fmt.Errorf("%w: verity size %d does not fit a payload of %d bytes", ErrFormat, b.Manifest.VeritySize, b.PayloadSize)
	}
	return b, nil
}

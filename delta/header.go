package delta

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Magic is the first four bytes of every patch. It collides with none of the
// image kinds a device identifies by their first bytes: an MCUboot image
// (0x96f3b83d at offset 0), an nRF modem delta (0x7544656d at offset 4; a
// patch has its version and coding there) or a full modem image (0x84d2 at
// offset 0).
var Magic = [4]byte{'A', 'F', 'D', 'P'}

// IsPatch reports whether b, the first bytes of a file, start like a patch.
func IsPatch(b []byte) bool { return len(b) >= len(Magic) && bytes.Equal(b[:len(Magic)], Magic[:]) }

// Format constants.
const (
	// Version is the format version Create writes. Apply reads it and
	// every older one.
	Version = 2
	// HeaderSize is the size in bytes of a version 1 header.
	HeaderSize = 100
	// HeaderSizeV2 is the size in bytes of a version 2 header: version 1's
	// fields, then the transform and its parameters.
	HeaderSizeV2 = 112
	// MaxHeaderSize is the largest header of any version.
	MaxHeaderSize = HeaderSizeV2
	// MaxImageSize is the largest base or result a patch may describe.
	MaxImageSize = 1 << 30
	// MaxBodySize is the largest body a header may declare.
	MaxBodySize = 2 << 30
)

// Coding says how the body is coded.
type Coding uint8

const (
	// CodingRange is the adaptive binary range coder with the version 1
	// model (docs/delta.md).
	CodingRange Coding = 1
	// CodingMix is the binary arithmetic coder with context mixing of
	// version 2 (docs/delta.md).
	CodingMix Coding = 2
)

func (c Coding) String() string {
	switch c {
	case CodingRange:
		return "range-v1"
	case CodingMix:
		return "mix-v2"
	}
	return fmt.Sprintf("coding(%d)", uint8(c))
}

// Errors. Every error Apply, ReadHeader and Create return wraps one of these,
// or is an I/O error of the reader or writer the caller passed.
var (
	// ErrNotPatch: the data does not start with Magic.
	ErrNotPatch = errors.New("delta: not a patch (bad magic)")
	// ErrUnsupported: a version, coding or flag this package does not know;
	// the patch was made by a newer awsfota.
	ErrUnsupported = errors.New("delta: unsupported patch format")
	// ErrCorrupt: the header's CRC does not match, a field is out of range,
	// or the body is truncated or decodes to records that do not fit the
	// declared sizes. The patch is damaged or was not made by Create.
	ErrCorrupt = errors.New("delta: corrupt patch")
	// ErrTooLarge: an image is larger than MaxImageSize.
	ErrTooLarge = errors.New("delta: image too large")
	// ErrBaseMismatch: the base given to Apply is not the one the patch was
	// made from (size or SHA-256 differ). Nothing has been written. A device
	// reports it as the job failure reason base_mismatch.
	ErrBaseMismatch = errors.New("delta: base image mismatch")
	// ErrResultMismatch: the image Apply wrote does not have the size or
	// SHA-256 the header declares. What was written must not be used.
	ErrResultMismatch = errors.New("delta: result image mismatch")
)

// MismatchError is the error Apply returns when the base or the result is not
// the image the header names. It matches ErrBaseMismatch or
// ErrResultMismatch with errors.Is.
type MismatchError struct {
	Result  bool // false: the base; true: the result
	Size    int64
	SHA256  [32]byte // zero when the size already differs
	Want    int64
	WantSum [32]byte
}

func (e *MismatchError) Error() string {
	what, hint := "base", "the patch was made for another image: build one from the image the device runs"
	if e.Result {
		what, hint = "result", "the patch or the base is damaged: do not use the output"
	}
	if e.Size != e.Want {
		return fmt.Sprintf("delta: %s image is %d bytes, the patch wants %d: %s", what, e.Size, e.Want, hint)
	}
	return fmt.Sprintf("delta: %s image SHA-256 is %s, the patch wants %s: %s", what,
		hex.EncodeToString(e.SHA256[:]), hex.EncodeToString(e.WantSum[:]), hint)
}

// Is makes errors.Is(err, ErrBaseMismatch) or ErrResultMismatch true.
func (e *MismatchError) Is(target error) bool {
	if e.Result {
		return target == ErrResultMismatch
	}
	return target == ErrBaseMismatch
}

// Header is the fixed-size start of a patch.
type Header struct {
	Version      uint8
	Coding       Coding
	BaseSize     int64
	BaseSHA256   [32]byte
	ResultSize   int64
	ResultSHA256 [32]byte
	BodySize     int64 // bytes after the header

	// Version 2: how the base's bytes are predicted before they are
	// compared with the result's (zero in version 1).
	Transform Transform
	// TransformFlags: FlagPointers when absolute pointer words into the
	// image are predicted.
	TransformFlags uint8
	// ImageBase is the address the image is loaded at, for absolute
	// references (pointers, AArch64's ADRP pages).
	ImageBase uint64
}

// Transform flags.
const (
	// FlagPointers: words that hold an address inside the base image
	// (ImageBase to ImageBase+BaseSize) are predicted as pointers.
	FlagPointers = 1
	// FlagRelWords: aligned 32-bit words that hold a negative offset from
	// themselves back into the image (unwind tables: .eh_frame's pcrel
	// sdata4, .ARM.exidx's prel31) are predicted as such.
	FlagRelWords = 2
)

// Size is the size of the header itself.
func (h Header) Size() int64 {
	if h.Version >= 2 {
		return HeaderSizeV2
	}
	return HeaderSize
}

// PatchSize is the size of the whole patch the header describes.
func (h Header) PatchSize() int64 { return h.Size() + h.BodySize }

// Header layout (little-endian); docs/delta.md has the table.
const (
	offVersion    = 4
	offCoding     = 5
	offFlags      = 6
	offBaseSize   = 8
	offBaseSum    = 16
	offResultSize = 48
	offResultSum  = 56
	offBodySize   = 88
	offCRC        = 96 // version 1
	// version 2
	offTransform  = 96
	offTransFlags = 97
	offImageBase  = 100
	offCRC2       = 108
)

// appendHeader appends the encoded header to b.
func appendHeader(b []byte, h Header) []byte {
	var hb [MaxHeaderSize]byte
	copy(hb[:], Magic[:])
	hb[offVersion] = h.Version
	hb[offCoding] = byte(h.Coding)
	binary.LittleEndian.PutUint64(hb[offBaseSize:], uint64(h.BaseSize))
	copy(hb[offBaseSum:], h.BaseSHA256[:])
	binary.LittleEndian.PutUint64(hb[offResultSize:], uint64(h.ResultSize))
	copy(hb[offResultSum:], h.ResultSHA256[:])
	binary.LittleEndian.PutUint64(hb[offBodySize:], uint64(h.BodySize))
	if h.Version < 2 {
		binary.LittleEndian.PutUint32(hb[offCRC:], crc32.ChecksumIEEE(hb[:offCRC]))
		return append(b, hb[:HeaderSize]...)
	}
	hb[offTransform] = byte(h.Transform)
	hb[offTransFlags] = h.TransformFlags
	binary.LittleEndian.PutUint64(hb[offImageBase:], h.ImageBase)
	binary.LittleEndian.PutUint32(hb[offCRC2:], crc32.ChecksumIEEE(hb[:offCRC2]))
	return append(b, hb[:HeaderSizeV2]...)
}

// ParseHeader decodes and validates the header at the start of b (100
// bytes for version 1, 112 for version 2).
func ParseHeader(b []byte) (Header, error) {
	h, err := parseHeader(b)
	if err != nil {
		return Header{}, err
	}
	return h, nil
}

func parseHeader(b []byte) (Header, error) {
	var h Header
	if !IsPatch(b) {
		return h, ErrNotPatch
	}
	if len(b) <= offVersion {
		return h, fmt.Errorf("%w: header needs %d bytes, have %d", ErrCorrupt, HeaderSize, len(b))
	}
	h.Version = b[offVersion]
	hsize, crcAt := HeaderSize, offCRC
	switch h.Version {
	case 1:
	case 2:
		hsize, crcAt = HeaderSizeV2, offCRC2
	default:
		return h, fmt.Errorf("%w: version %d (this awsfota reads versions 1 and %d): update awsfota", ErrUnsupported, h.Version, Version)
	}
	if len(b) < hsize {
		return h, fmt.Errorf("%w: version %d header needs %d bytes, have %d", ErrCorrupt, h.Version, hsize, len(b))
	}
	b = b[:hsize]
	if got, want := crc32.ChecksumIEEE(b[:crcAt]), binary.LittleEndian.Uint32(b[crcAt:]); got != want {
		return h, fmt.Errorf("%w: header CRC is %08x, computed %08x", ErrCorrupt, want, got)
	}
	h.Coding = Coding(b[offCoding])
	if h.Coding != CodingRange && (h.Version < 2 || h.Coding != CodingMix) {
		return h, fmt.Errorf("%w: body coding %d in a version %d patch: update awsfota", ErrUnsupported, h.Coding, h.Version)
	}
	if h.Version >= 2 {
		h.Transform = Transform(b[offTransform])
		h.TransformFlags = b[offTransFlags]
		h.ImageBase = binary.LittleEndian.Uint64(b[offImageBase:])
		if !h.Transform.known() {
			return h, fmt.Errorf("%w: transform id %d (%s) is unknown to this awsfota: update awsfota", ErrUnsupported, uint8(h.Transform), h.Transform)
		}
		if h.TransformFlags&^(FlagPointers|FlagRelWords) != 0 || b[98] != 0 || b[99] != 0 {
			return h, fmt.Errorf("%w: transform flags %#02x %#02x %#02x: update awsfota", ErrUnsupported, h.TransformFlags, b[98], b[99])
		}
	}
	if flags := binary.LittleEndian.Uint16(b[offFlags:]); flags != 0 {
		return h, fmt.Errorf("%w: flags %#04x: update awsfota", ErrUnsupported, flags)
	}
	size := func(off int, name string, limit uint64) (int64, error) {
		v := binary.LittleEndian.Uint64(b[off:])
		if v > limit {
			return 0, fmt.Errorf("%w: %s of %d bytes is over the limit of %d", ErrCorrupt, name, v, limit)
		}
		return int64(v), nil
	}
	var err error
	if h.BaseSize, err = size(offBaseSize, "base size", MaxImageSize); err != nil {
		return h, err
	}
	if h.ResultSize, err = size(offResultSize, "result size", MaxImageSize); err != nil {
		return h, err
	}
	if h.BodySize, err = size(offBodySize, "body size", MaxBodySize); err != nil {
		return h, err
	}
	copy(h.BaseSHA256[:], b[offBaseSum:])
	copy(h.ResultSHA256[:], b[offResultSum:])
	return h, nil
}

// ReadHeader reads and validates a patch's header from r, leaving r at the
// start of the body.
func ReadHeader(r io.Reader) (Header, error) {
	var b [MaxHeaderSize]byte
	n, err := io.ReadFull(r, b[:HeaderSize])
	if err == nil && b[offVersion] >= 2 && IsPatch(b[:]) {
		var k int
		k, err = io.ReadFull(r, b[HeaderSize:HeaderSizeV2])
		n += k
	}
	switch {
	case err == nil:
	case err != io.EOF && err != io.ErrUnexpectedEOF:
		return Header{}, fmt.Errorf("delta: reading the header: %w", err)
	case n < len(Magic):
		return Header{}, fmt.Errorf("%w: only %d bytes", ErrNotPatch, n)
	case !IsPatch(b[:n]):
		return Header{}, ErrNotPatch
	default: // cut: ParseHeader says so, or that the version is unknown
		return ParseHeader(b[:n])
	}
	return ParseHeader(b[:n])
}

// Info describes a patch: its header and what its records do.
type Info struct {
	Header
	Records  int64 // control records
	Copied   int64 // result bytes taken from the base (with or without a difference)
	Changed  int64 // of those, bytes that differ from the base
	Inserted int64 // result bytes stored in the patch itself
	// Detected says how Create picked the transform (empty from Apply).
	Detected string
}

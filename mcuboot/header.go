package mcuboot

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Format constants.
const (
	ImageMagic        = 0x96f3b83d
	HeaderLen         = 32     // bytes of the fixed header; hdr_size pads it further
	TLVInfoMagic      = 0x6907 // unprotected TLV area
	ProtTLVInfoMagic  = 0x6908 // protected TLV area
	TLVInfoLen        = 4
	DefaultHeaderSize = 0x200
)

// Header flags.
const (
	FlagPIC             = 0x01
	FlagEncryptedAES128 = 0x04
	FlagEncryptedAES256 = 0x08
	FlagNonBootable     = 0x10
	FlagRAMLoad         = 0x20
	FlagROMFixed        = 0x100
)

var flagNames = []struct {
	bit  uint32
	name string
}{
	{FlagPIC, "PIC"}, {FlagEncryptedAES128, "ENCRYPTED_AES128"}, {FlagEncryptedAES256, "ENCRYPTED_AES256"},
	{FlagNonBootable, "NON_BOOTABLE"}, {FlagRAMLoad, "RAM_LOAD"}, {FlagROMFixed, "ROM_FIXED"},
}

// FlagNames names the header flags set in flags as imgtool does ("RAM_LOAD",
// ...); unknown bits are named by their value ("0x4000").
func FlagNames(flags uint32) []string {
	names := []string{}
	for _, f := range flagNames {
		if flags&f.bit != 0 {
			names = append(names, f.name)
			flags &^= f.bit
		}
	}
	for bit := uint32(1); bit != 0; bit <<= 1 {
		if flags&bit != 0 {
			names = append(names, fmt.Sprintf("%#x", bit))
		}
	}
	return names
}

// TLV types.
const (
	TLVKeyHash     = 0x01
	TLVPubKey      = 0x02
	TLVSHA256      = 0x10
	TLVSHA384      = 0x11
	TLVSHA512      = 0x12
	TLVRSA2048PSS  = 0x20
	TLVECDSA224    = 0x21
	TLVECDSASig    = 0x22
	TLVRSA3072PSS  = 0x23
	TLVED25519     = 0x24
	TLVSigPure     = 0x25
	TLVEncRSA2048  = 0x30
	TLVEncKW       = 0x31
	TLVEncEC256    = 0x32
	TLVEncX25519   = 0x33
	TLVDependency  = 0x40
	TLVSecCounter  = 0x50
	TLVBootRecord  = 0x60
	maxTLVAreaSize = 0xffff
)

// Header is the fixed image header.
type Header struct {
	LoadAddr       uint32
	HeaderSize     uint16 // the body starts here
	ProtectTLVSize uint16 // size of the protected TLV area including its info, 0 if none
	ImageSize      uint32 // body length
	Flags          uint32
	Version        Version
}

// Errors returned when reading images. They are wrapped with details.
var (
	// ErrNotImage: the first bytes are not an MCUboot header (wrong magic).
	ErrNotImage = errors.New("not an MCUboot image")
	// ErrMalformed: the header or a TLV area is inconsistent.
	ErrMalformed = errors.New("malformed MCUboot image")
	// ErrTruncated: the image ends before its header says it does.
	ErrTruncated = errors.New("truncated MCUboot image")
	// ErrHashMismatch: the SHA-256 TLV does not match the image.
	ErrHashMismatch = errors.New("MCUboot image hash mismatch")
	// ErrNoHash: the image carries no SHA-256 TLV.
	ErrNoHash = errors.New("MCUboot image has no SHA-256 TLV")
)

// MarshalBinary encodes the 32-byte header.
func (h Header) MarshalBinary() ([]byte, error) {
	b := make([]byte, HeaderLen)
	binary.LittleEndian.PutUint32(b[0:], ImageMagic)
	binary.LittleEndian.PutUint32(b[4:], h.LoadAddr)
	binary.LittleEndian.PutUint16(b[8:], h.HeaderSize)
	binary.LittleEndian.PutUint16(b[10:], h.ProtectTLVSize)
	binary.LittleEndian.PutUint32(b[12:], h.ImageSize)
	binary.LittleEndian.PutUint32(b[16:], h.Flags)
	b[20] = h.Version.Major
	b[21] = h.Version.Minor
	binary.LittleEndian.PutUint16(b[22:], h.Version.Revision)
	binary.LittleEndian.PutUint32(b[24:], h.Version.Build)
	return b, nil
}

// ParseHeader decodes the 32-byte header at the start of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("%w: %d bytes, the header needs %d", ErrTruncated, len(b), HeaderLen)
	}
	if m := binary.LittleEndian.Uint32(b); m != ImageMagic {
		return Header{}, fmt.Errorf("%w: magic is %#08x, want %#08x", ErrNotImage, m, ImageMagic)
	}
	h := Header{
		LoadAddr:       binary.LittleEndian.Uint32(b[4:]),
		HeaderSize:     binary.LittleEndian.Uint16(b[8:]),
		ProtectTLVSize: binary.LittleEndian.Uint16(b[10:]),
		ImageSize:      binary.LittleEndian.Uint32(b[12:]),
		Flags:          binary.LittleEndian.Uint32(b[16:]),
		Version: Version{
			Major:    b[20],
			Minor:    b[21],
			Revision: binary.LittleEndian.Uint16(b[22:]),
			Build:    binary.LittleEndian.Uint32(b[24:]),
		},
	}
	if h.HeaderSize < HeaderLen {
		return h, fmt.Errorf("%w: hdr_size %d is smaller than the %d-byte header", ErrMalformed, h.HeaderSize, HeaderLen)
	}
	if h.ProtectTLVSize != 0 && h.ProtectTLVSize < TLVInfoLen {
		return h, fmt.Errorf("%w: protect_tlv_size %d is smaller than a TLV info header", ErrMalformed, h.ProtectTLVSize)
	}
	return h, nil
}

// HashedLen is the length of the region the image hash covers: header,
// header padding, body and the protected TLV area.
func (h Header) HashedLen() int64 {
	return int64(h.HeaderSize) + int64(h.ImageSize) + int64(h.ProtectTLVSize)
}

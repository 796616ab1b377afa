package mcuboot

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// CreateOptions say how Create lays out an image. Each field is one of
// imgtool sign's options, with the same meaning and default.
type CreateOptions struct {
	Version Version // --version
	// HeaderSize is hdr_size (--header-size, which imgtool requires; default
	// 0x200 here).
	HeaderSize int
	// PadHeader adds the header in front of the payload and fills the gap up
	// to HeaderSize with 0xff, the erased value (imgtool --pad-header). Without
	// it the payload must begin with HeaderSize zero bytes, which the header
	// overwrites (ErrHeaderNotZero otherwise).
	PadHeader bool
	// LoadAddr and Flags go to the header as they are. imgtool's --load-addr A
	// is LoadAddr A with FlagRAMLoad, --rom-fixed A is LoadAddr A with
	// FlagROMFixed, --non-bootable is FlagNonBootable.
	LoadAddr uint32
	Flags    uint32

	// Key signs the image (--key); nil makes an unsigned image that carries
	// only its SHA-256.
	Key *PrivateKey
	// PublicKeyFormat says how a signed image names its key
	// (--public-key-format): KeyHash (the default) or FullKey.
	PublicKeyFormat KeyFormat

	// SecurityCounter, when not nil, becomes the SEC_CNT TLV, first in the
	// protected area (--security-counter N; for "auto" use
	// Version.SecurityCounter).
	SecurityCounter *uint32
	// Dependencies become DEPENDENCY TLVs after SEC_CNT (--dependencies).
	Dependencies []Dependency
	// ProtectedTLVs are further protected TLVs written, in order, after
	// those (--custom-tlv). Hash, key, signature and encryption TLVs are
	// refused here: Create writes the ones it needs itself.
	ProtectedTLVs []TLV

	// SlotSize is the slot the image is for (--slot-size, which imgtool
	// requires; optional here). When set, the image plus the trailer MCUboot
	// needs must fit it (ErrTooLarge).
	SlotSize int64
	// Pad fills the output up to SlotSize with 0xff and writes the trailer
	// magic, which asks MCUboot for a test swap when the file is programmed
	// into the secondary slot (--pad, and --test, which writes the same).
	Pad bool
	// Confirm pads as Pad and also sets image_ok, which asks for a permanent
	// swap (--confirm).
	Confirm bool
	// MaxAlign is BOOT_MAX_ALIGN: 8, 16 or 32 (--max-align; default the
	// larger of 8 and Align). 16 and 32 change the magic and the offsets.
	MaxAlign int
	// Align is the flash write alignment: 1, 2, 4, 8, 16 or 32 (--align;
	// default 1). It only sizes the trailer MCUboot reserves.
	Align int
	// MaxSectors is the bootloader's BOOT_MAX_IMG_SECTORS, for the trailer
	// size (--max-sectors; default 128).
	MaxSectors int
}

// KeyFormat is how a signed image names its signing key.
type KeyFormat int

// Key formats (imgtool --public-key-format).
const (
	KeyHash KeyFormat = iota // a KEYHASH TLV: SHA-256 of the key (imgtool's default, "hash")
	FullKey                  // a PUBKEY TLV: the whole key ("full")
)

// String returns imgtool's name for the format.
func (f KeyFormat) String() string {
	if f == FullKey {
		return "full"
	}
	return "hash"
}

// ParseKeyFormat parses "hash" or "full".
func ParseKeyFormat(s string) (KeyFormat, error) {
	switch s {
	case "hash", "":
		return KeyHash, nil
	case "full":
		return FullKey, nil
	}
	return 0, fmt.Errorf("%w: public key format %q: use hash or full", ErrInvalidOptions, s)
}

// Errors of Create. They are wrapped with details.
var (
	// ErrTooLarge: the image and its trailer do not fit the slot.
	ErrTooLarge = errors.New("image too large for the slot")
	// ErrHeaderNotZero: without PadHeader, the payload does not start with
	// HeaderSize zero bytes for the header to go in (set PadHeader to put
	// the header in front of it).
	ErrHeaderNotZero = errors.New("header padding was not requested and the payload does not start with zeros")
	// ErrInvalidOptions: the options contradict each other or MCUboot's
	// limits (a header size, an alignment, padding without a slot size...).
	ErrInvalidOptions = errors.New("invalid image options")
)

// SecurityCounterTLV returns a SEC_CNT TLV for the protected area.
func SecurityCounterTLV(n uint32) TLV {
	v := make([]byte, 4)
	binary.LittleEndian.PutUint32(v, n)
	return TLV{Type: TLVSecCounter, Value: v}
}

// createdByCreate are the TLV types Create writes itself; ProtectedTLVs may
// not hold them.
func createdByCreate(t uint16) bool { return unprotectedAllowed[t] }

// normalize fills in defaults and checks the options as imgtool does.
func (o CreateOptions) normalize() (CreateOptions, error) {
	if o.HeaderSize == 0 {
		o.HeaderSize = DefaultHeaderSize
	}
	if o.HeaderSize < HeaderLen || o.HeaderSize > 0xffff {
		return o, fmt.Errorf("%w: header size %#x must be between %#x and 0xffff", ErrInvalidOptions, o.HeaderSize, HeaderLen)
	}
	if o.Align == 0 {
		o.Align = 1
	}
	switch o.Align {
	case 1, 2, 4, 8, 16, 32:
	default:
		return o, fmt.Errorf("%w: alignment %d: use 1, 2, 4, 8, 16 or 32", ErrInvalidOptions, o.Align)
	}
	if o.MaxAlign == 0 {
		o.MaxAlign = max(8, o.Align)
	}
	switch o.MaxAlign {
	case 8, 16, 32:
	default:
		return o, fmt.Errorf("%w: max alignment %d: use 8, 16 or 32", ErrInvalidOptions, o.MaxAlign)
	}
	if o.MaxSectors == 0 {
		o.MaxSectors = 128
	}
	if o.MaxSectors < 0 {
		return o, fmt.Errorf("%w: max sectors %d", ErrInvalidOptions, o.MaxSectors)
	}
	if o.Confirm {
		o.Pad = true
	}
	if o.Pad && o.SlotSize <= 0 {
		return o, fmt.Errorf("%w: padding to the slot (pad or confirm) needs the slot size", ErrInvalidOptions)
	}
	if o.SlotSize < 0 {
		return o, fmt.Errorf("%w: slot size %d", ErrInvalidOptions, o.SlotSize)
	}
	if o.PublicKeyFormat != KeyHash && o.PublicKeyFormat != FullKey {
		return o, fmt.Errorf("%w: public key format %d", ErrInvalidOptions, o.PublicKeyFormat)
	}
	if o.Flags&(FlagRAMLoad|FlagROMFixed) == FlagRAMLoad|FlagROMFixed {
		return o, fmt.Errorf("%w: an image cannot be both RAM-loaded and ROM-fixed", ErrInvalidOptions)
	}
	counters := 0
	if o.SecurityCounter != nil {
		counters++
	}
	for _, t := range o.ProtectedTLVs {
		if createdByCreate(t.Type) {
			return o, fmt.Errorf("%w: a %s TLV cannot be added to the protected area; Create writes it", ErrInvalidOptions, tlvDesc(t.Type))
		}
		if t.Type == TLVSecCounter {
			if counters++; counters > 1 || len(t.Value) != 4 {
				return o, fmt.Errorf("%w: an image has at most one SEC_CNT TLV, of 4 bytes", ErrInvalidOptions)
			}
		}
	}
	return o, nil
}

func (o CreateOptions) protectedTLVs() []TLV {
	var tlvs []TLV
	if o.SecurityCounter != nil {
		tlvs = append(tlvs, SecurityCounterTLV(*o.SecurityCounter))
	}
	for _, d := range o.Dependencies {
		tlvs = append(tlvs, d.TLV())
	}
	return append(tlvs, o.ProtectedTLVs...)
}

// checkFits is imgtool's check_trailer: the image plus the trailer MCUboot
// reserves must fit the slot.
func (o CreateOptions) checkFits(size int64) error {
	if o.SlotSize <= 0 {
		return nil
	}
	tsz := Layout{SlotSize: o.SlotSize, MaxAlign: o.MaxAlign}.TrailerSize(o.Align, o.MaxSectors)
	if size+tsz > o.SlotSize {
		return fmt.Errorf("%w: image size (%#x) + trailer (%#x) exceeds the slot size %#x", ErrTooLarge, size, tsz, o.SlotSize)
	}
	return nil
}

// Create writes an MCUboot image to w as imgtool sign does: the payload
// (payloadSize bytes read from payload) behind a header, the protected TLVs,
// then the unprotected ones — SHA-256, then with a key KEYHASH or PUBKEY and
// the signature — and, when padding, erased bytes and the trailer up to the
// slot's end. It reads and writes in one pass with fixed buffers, whatever
// the payload's size. It returns the image as Parse would.
//
// On error w may hold part of an image: write to a temporary file and
// rename it on success.
func Create(w io.Writer, payload io.Reader, payloadSize int64, o CreateOptions) (*Image, error) {
	o, err := o.normalize()
	if err != nil {
		return nil, err
	}
	hs := o.HeaderSize
	bodySize := payloadSize
	if !o.PadHeader {
		bodySize -= int64(hs)
		if bodySize < 0 {
			return nil, fmt.Errorf("%w: the payload (%d bytes) is shorter than the header size %#x", ErrHeaderNotZero, payloadSize, hs)
		}
	}
	if bodySize > 0xffffffff {
		return nil, fmt.Errorf("%w: payload of %d bytes does not fit the header's 32-bit size", ErrInvalidOptions, bodySize)
	}
	protTLVs := o.protectedTLVs()
	prot, err := encodeArea(ProtTLVInfoMagic, protTLVs)
	if err != nil {
		return nil, err
	}
	h := Header{LoadAddr: o.LoadAddr, HeaderSize: uint16(hs), ProtectTLVSize: uint16(len(prot)),
		ImageSize: uint32(bodySize), Flags: o.Flags, Version: o.Version}
	// Fail before reading the payload when even the smallest unprotected
	// area (hash, and key without signature) cannot fit.
	minUnprot := int64(TLVInfoLen + 4 + sha256.Size)
	if o.Key != nil {
		minUnprot += int64(4 + len(o.keyTLV().Value))
	}
	if err := o.checkFits(h.HashedLen() + minUnprot); err != nil {
		return nil, err
	}
	hb, _ := h.MarshalBinary()

	digest := sha256.New()
	bw := bufio.NewWriterSize(w, 32*1024)
	out := io.MultiWriter(bw, digest)
	if _, err := out.Write(hb); err != nil {
		return nil, err
	}
	if o.PadHeader {
		if _, err := out.Write(bytes.Repeat([]byte{Erased}, hs-HeaderLen)); err != nil {
			return nil, err
		}
	} else {
		gap := make([]byte, hs)
		if _, err := io.ReadFull(payload, gap); err != nil {
			return nil, fmt.Errorf("mcuboot: reading the payload: %w", err)
		}
		for i, c := range gap {
			if c != 0 {
				return nil, fmt.Errorf("%w: payload byte %d is %#02x, but the first %#x bytes must be zero to hold the header", ErrHeaderNotZero, i, c, hs)
			}
		}
		if _, err := out.Write(gap[HeaderLen:]); err != nil {
			return nil, err
		}
	}
	n, err := io.CopyN(out, payload, bodySize)
	if err != nil {
		return nil, fmt.Errorf("mcuboot: reading the payload: got %d of %d body bytes: %w", n, bodySize, err)
	}
	if len(prot) > 0 {
		if _, err := out.Write(prot); err != nil {
			return nil, err
		}
	}
	sum := digest.Sum(nil)
	unprot := []TLV{{Type: TLVSHA256, Value: sum}}
	if o.Key != nil {
		sig, err := o.Key.sign(sum)
		if err != nil {
			return nil, err
		}
		unprot = append(unprot, o.keyTLV(), TLV{Type: o.Key.pub.typ.SignatureTLV(), Value: sig})
	}
	ua, err := encodeArea(TLVInfoMagic, unprot)
	if err != nil {
		return nil, err
	}
	size := h.HashedLen() + int64(len(ua))
	if err := o.checkFits(size); err != nil {
		return nil, err
	}
	if _, err := bw.Write(ua); err != nil {
		return nil, err
	}
	if o.Pad {
		if err := writePadding(bw, size, o); err != nil {
			return nil, err
		}
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	im := &Image{Header: h, Size: size}
	im.Protected = placeTLVs(protTLVs, h.HashedLen()-int64(len(prot))+TLVInfoLen)
	im.Unprotected = placeTLVs(unprot, h.HashedLen()+TLVInfoLen)
	return im, nil
}

// keyTLV is the TLV naming the signing key.
func (o CreateOptions) keyTLV() TLV {
	if o.PublicKeyFormat == FullKey {
		return TLV{Type: TLVPubKey, Value: o.Key.pub.Embedded()}
	}
	return TLV{Type: TLVKeyHash, Value: o.Key.pub.Hash()}
}

// SecurityCounter is imgtool's --security-counter auto:
// (major<<24)|(minor<<16)|revision; the build number is ignored.
func (v Version) SecurityCounter() uint32 {
	return uint32(v.Major)<<24 | uint32(v.Minor)<<16 | uint32(v.Revision)
}

func placeTLVs(tlvs []TLV, off int64) []TLV {
	out := make([]TLV, len(tlvs))
	for i, t := range tlvs {
		out[i] = TLV{Type: t.Type, Value: t.Value, Offset: off}
		off += 4 + int64(len(t.Value))
	}
	return out
}

func encodeArea(magic uint16, tlvs []TLV) ([]byte, error) {
	if len(tlvs) == 0 {
		if magic == ProtTLVInfoMagic {
			return nil, nil
		}
	}
	total := TLVInfoLen
	for _, t := range tlvs {
		if len(t.Value) > 0xffff {
			return nil, fmt.Errorf("%w: TLV %#x holds %d bytes, more than 65535", ErrInvalidOptions, t.Type, len(t.Value))
		}
		total += 4 + len(t.Value)
	}
	if total > maxTLVAreaSize {
		return nil, fmt.Errorf("%w: TLV area of %d bytes exceeds 65535", ErrInvalidOptions, total)
	}
	var b bytes.Buffer
	b.Grow(total)
	b.Write([]byte{byte(magic), byte(magic >> 8), 0, 0})
	for _, t := range tlvs {
		var th [4]byte
		binary.LittleEndian.PutUint16(th[:], t.Type)
		binary.LittleEndian.PutUint16(th[2:], uint16(len(t.Value)))
		b.Write(th[:])
		b.Write(t.Value)
	}
	out := b.Bytes()
	binary.LittleEndian.PutUint16(out[2:], uint16(len(out)))
	return out, nil
}

func writePadding(w io.Writer, size int64, o CreateOptions) error {
	l := Layout{SlotSize: o.SlotSize, MaxAlign: o.MaxAlign}
	// Everything from the image's end to the slot's end is erased, except the
	// magic and, when confirming, image_ok.
	tail := make([]byte, 0, 4096)
	fill := func(upTo int64) error {
		for size < upTo {
			n := min(upTo-size, int64(cap(tail)))
			tail = tail[:n]
			for i := range tail {
				tail[i] = Erased
			}
			if _, err := w.Write(tail); err != nil {
				return err
			}
			size += n
		}
		return nil
	}
	if o.Confirm {
		if err := fill(l.ImageOKOffset()); err != nil {
			return err
		}
		if _, err := w.Write([]byte{0x01}); err != nil {
			return err
		}
		size++
	}
	if err := fill(l.MagicOffset()); err != nil {
		return err
	}
	if _, err := w.Write(l.Magic()); err != nil {
		return err
	}
	return nil
}

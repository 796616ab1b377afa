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

// CreateOptions say how Create lays out an image, as imgtool's sign command.
type CreateOptions struct {
	Version Version
	// HeaderSize is hdr_size (default 0x200).
	HeaderSize int
	// PadHeader adds the header in front of the payload and fills the gap up
	// to HeaderSize with 0xff (imgtool --pad-header). Without it the payload
	// must begin with HeaderSize zero bytes, which the header overwrites.
	PadHeader bool
	LoadAddr  uint32
	Flags     uint32
	// ProtectedTLVs are written, in order, to the protected area (which the
	// hash and signature cover). SEC_CNT and DEPENDENCY belong here.
	ProtectedTLVs []TLV

	// SlotSize with Pad fills the output up to the slot size with 0xff and
	// writes the trailer magic (imgtool --pad); Confirm also sets image_ok
	// (imgtool --confirm, which implies Pad).
	SlotSize   int64
	Pad        bool
	Confirm    bool
	MaxAlign   int // BOOT_MAX_ALIGN, default 8
	Align      int // flash write alignment, default 1 (as imgtool)
	MaxSectors int // for the trailer size check, default 128
}

// ErrTooLarge is returned when an image and its trailer do not fit the slot.
var ErrTooLarge = errors.New("image too large for the slot")

// SecurityCounterTLV returns a SEC_CNT TLV for the protected area.
func SecurityCounterTLV(n uint32) TLV {
	v := make([]byte, 4)
	binary.LittleEndian.PutUint32(v, n)
	return TLV{Type: TLVSecCounter, Value: v}
}

// Create writes an MCUboot image to w: the payload (payloadSize bytes read
// from payload) behind a header, then the TLV areas with the image's SHA-256.
// It reads and writes in one pass with a fixed buffer. It returns the image.
func Create(w io.Writer, payload io.Reader, payloadSize int64, o CreateOptions) (*Image, error) {
	hs := o.HeaderSize
	if hs == 0 {
		hs = DefaultHeaderSize
	}
	if hs < HeaderLen || hs > 0xffff {
		return nil, fmt.Errorf("mcuboot: header size %#x must be between %#x and 0xffff", hs, HeaderLen)
	}
	bodySize := payloadSize
	if !o.PadHeader {
		bodySize -= int64(hs)
		if bodySize < 0 {
			return nil, fmt.Errorf("mcuboot: the payload (%d bytes) is shorter than the header size %#x; use PadHeader", payloadSize, hs)
		}
	}
	if bodySize > 0xffffffff {
		return nil, fmt.Errorf("mcuboot: payload of %d bytes does not fit the header's 32-bit size", bodySize)
	}
	prot, err := encodeArea(ProtTLVInfoMagic, o.ProtectedTLVs)
	if err != nil {
		return nil, err
	}
	h := Header{LoadAddr: o.LoadAddr, HeaderSize: uint16(hs), ProtectTLVSize: uint16(len(prot)),
		ImageSize: uint32(bodySize), Flags: o.Flags, Version: o.Version}
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
		for i, c := range gap[:HeaderLen] {
			if c != 0 {
				return nil, fmt.Errorf("mcuboot: payload byte %d is %#02x: without PadHeader the first %#x bytes must be zero for the header", i, c, hs)
			}
		}
		for i, c := range gap[HeaderLen:] {
			if c != 0 {
				return nil, fmt.Errorf("mcuboot: payload byte %d is %#02x: without PadHeader the first %#x bytes must be zero for the header", HeaderLen+i, c, hs)
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
	ua, err := encodeArea(TLVInfoMagic, unprot)
	if err != nil {
		return nil, err
	}
	if _, err := bw.Write(ua); err != nil {
		return nil, err
	}
	size := h.HashedLen() + int64(len(ua))
	if o.Pad || o.Confirm {
		if err := writePadding(bw, size, o); err != nil {
			return nil, err
		}
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	im := &Image{Header: h, Size: size}
	im.Protected = placeTLVs(o.ProtectedTLVs, h.HashedLen()-int64(len(prot))+TLVInfoLen)
	im.Unprotected = placeTLVs(unprot, h.HashedLen()+TLVInfoLen)
	return im, nil
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
	var b bytes.Buffer
	b.Write([]byte{byte(magic), byte(magic >> 8), 0, 0})
	for _, t := range tlvs {
		if len(t.Value) > 0xffff {
			return nil, fmt.Errorf("mcuboot: TLV %#x holds %d bytes, more than 65535", t.Type, len(t.Value))
		}
		var th [4]byte
		binary.LittleEndian.PutUint16(th[:], t.Type)
		binary.LittleEndian.PutUint16(th[2:], uint16(len(t.Value)))
		b.Write(th[:])
		b.Write(t.Value)
	}
	if b.Len() > maxTLVAreaSize {
		return nil, fmt.Errorf("mcuboot: TLV area of %d bytes exceeds 65535", b.Len())
	}
	out := b.Bytes()
	binary.LittleEndian.PutUint16(out[2:], uint16(len(out)))
	return out, nil
}

func writePadding(w io.Writer, size int64, o CreateOptions) error {
	l := Layout{SlotSize: o.SlotSize, MaxAlign: o.MaxAlign}
	if o.SlotSize <= 0 {
		return fmt.Errorf("mcuboot: padding needs the slot size")
	}
	align := o.Align
	if align <= 0 {
		align = 1
	}
	tsz := l.TrailerSize(align, o.MaxSectors)
	if size+tsz > o.SlotSize {
		return fmt.Errorf("%w: image of %d bytes plus a %d-byte trailer exceeds the %d-byte slot", ErrTooLarge, size, tsz, o.SlotSize)
	}
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

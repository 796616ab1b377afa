package mcuboot

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
)

// TLV is one type-length-value entry of a TLV area.
type TLV struct {
	Type   uint16
	Value  []byte
	Offset int64 // offset of the TLV's 4-byte type/length header in the image
}

// Image is a parsed image: its header and TLV areas. The body is not held.
type Image struct {
	Header      Header
	Protected   []TLV // empty when the image has no protected area
	Unprotected []TLV
	// Size is the image's length: header, body and both TLV areas. Bytes
	// beyond it (a padded slot, a trailer) are not part of the image.
	Size int64
}

// Find returns the first TLV of type typ, looking in the unprotected area and
// then the protected one.
func (im *Image) Find(typ uint16) (TLV, bool) {
	for _, area := range [][]TLV{im.Unprotected, im.Protected} {
		for _, t := range area {
			if t.Type == typ {
				return t, true
			}
		}
	}
	return TLV{}, false
}

// Parse reads the header and TLV areas of the image at the start of r, which
// holds size bytes (an image file, or a whole flash slot). It does not check
// the hash: see VerifyHash.
func Parse(r io.ReaderAt, size int64) (*Image, error) {
	var hb [HeaderLen]byte
	if size < HeaderLen {
		return nil, fmt.Errorf("%w: %d bytes, the header alone needs %d", ErrTruncated, size, HeaderLen)
	}
	if _, err := r.ReadAt(hb[:], 0); err != nil {
		return nil, fmt.Errorf("mcuboot: reading the header: %w", err)
	}
	h, err := ParseHeader(hb[:])
	if err != nil {
		return nil, err
	}
	im := &Image{Header: h}
	off := int64(h.HeaderSize) + int64(h.ImageSize)
	if off > size {
		return nil, fmt.Errorf("%w: the header says the body ends at %d, but only %d bytes are present", ErrTruncated, off, size)
	}
	if h.ProtectTLVSize > 0 {
		im.Protected, err = readArea(r, size, off, ProtTLVInfoMagic, int(h.ProtectTLVSize))
		if err != nil {
			return nil, err
		}
		off += int64(h.ProtectTLVSize)
	}
	im.Unprotected, err = readArea(r, size, off, TLVInfoMagic, -1)
	if err != nil {
		return nil, err
	}
	total := TLVInfoLen
	for _, t := range im.Unprotected {
		total += 4 + len(t.Value)
	}
	im.Size = off + int64(total)
	return im, nil
}

// readArea reads the TLV area whose info header is at off. want is the
// expected tlv_tot, or -1 when the info header decides.
func readArea(r io.ReaderAt, size, off int64, magic uint16, want int) ([]TLV, error) {
	name := "unprotected"
	if magic == ProtTLVInfoMagic {
		name = "protected"
	}
	if off+TLVInfoLen > size {
		return nil, fmt.Errorf("%w: the %s TLV area at %d is missing (image holds %d bytes)", ErrTruncated, name, off, size)
	}
	var info [TLVInfoLen]byte
	if _, err := r.ReadAt(info[:], off); err != nil {
		return nil, fmt.Errorf("mcuboot: reading the %s TLV info at %d: %w", name, off, err)
	}
	if m := binary.LittleEndian.Uint16(info[:]); m != magic {
		return nil, fmt.Errorf("%w: %s TLV info at %d has magic %#04x, want %#04x", ErrMalformed, name, off, m, magic)
	}
	tot := int(binary.LittleEndian.Uint16(info[2:]))
	if want >= 0 && tot != want {
		return nil, fmt.Errorf("%w: protected TLV area says %d bytes, the header says %d", ErrMalformed, tot, want)
	}
	if tot < TLVInfoLen {
		return nil, fmt.Errorf("%w: %s TLV area of %d bytes is smaller than its info header", ErrMalformed, name, tot)
	}
	if off+int64(tot) > size {
		return nil, fmt.Errorf("%w: the %s TLV area ends at %d, but only %d bytes are present", ErrTruncated, name, off+int64(tot), size)
	}
	area := make([]byte, tot-TLVInfoLen) // at most 64 KiB: tot is a u16
	if _, err := r.ReadAt(area, off+TLVInfoLen); err != nil {
		return nil, fmt.Errorf("mcuboot: reading the %s TLV area: %w", name, err)
	}
	var tlvs []TLV
	for p := 0; p < len(area); {
		if len(area)-p < 4 {
			return nil, fmt.Errorf("%w: %d stray bytes at the end of the %s TLV area", ErrMalformed, len(area)-p, name)
		}
		typ := binary.LittleEndian.Uint16(area[p:])
		n := int(binary.LittleEndian.Uint16(area[p+2:]))
		if p+4+n > len(area) {
			return nil, fmt.Errorf("%w: TLV %#x at %d claims %d bytes, past the end of the %s area", ErrMalformed, typ, off+TLVInfoLen+int64(p), n, name)
		}
		tlvs = append(tlvs, TLV{Type: typ, Value: area[p+4 : p+4+n : p+4+n], Offset: off + TLVInfoLen + int64(p)})
		p += 4 + n
	}
	return tlvs, nil
}

// HashRegion returns the SHA-256 of the region an image hash covers (header,
// body, protected TLVs), read from r in small blocks.
func HashRegion(r io.ReaderAt, h Header) ([]byte, error) {
	d := sha256.New()
	if _, err := io.Copy(d, io.NewSectionReader(r, 0, h.HashedLen())); err != nil {
		return nil, fmt.Errorf("mcuboot: hashing the image: %w", err)
	}
	return d.Sum(nil), nil
}

// VerifyHash parses the image at the start of r (size bytes) and checks its
// SHA-256 TLV against the image: Verify with no keys. It returns the image and
// the verified hash.
func VerifyHash(r io.ReaderAt, size int64) (*Image, []byte, error) {
	v, err := Verify(r, size, nil)
	if err != nil {
		return nil, nil, err
	}
	return v.Image, v.Hash, nil
}

package mcuboot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// Erased is the value of an erased flash byte on the usual targets.
const Erased = 0xff

// magic8 is the trailer magic of a bootloader built with BOOT_MAX_ALIGN 8.
var magic8 = []byte{0x77, 0xc2, 0x95, 0xf3, 0x60, 0xd2, 0xef, 0x7f, 0x35, 0x52, 0x50, 0x0f, 0x2c, 0xb6, 0x79, 0x80}

// magicTail is the fixed part of the magic for BOOT_MAX_ALIGN 16 and 32.
var magicTail = []byte{0x2d, 0xe1, 0x5d, 0x29, 0x41, 0x0b, 0x8d, 0x77, 0x67, 0x9c, 0x11, 0x0f, 0x1f, 0x8a}

// Layout locates the trailer fields at the end of a slot.
type Layout struct {
	SlotSize int64 // S: size of the flash area
	MaxAlign int   // BOOT_MAX_ALIGN: 8 (default when 0), 16 or 32
}

func (l Layout) ma() int64 {
	if l.MaxAlign <= 0 {
		return 8
	}
	return int64(l.MaxAlign)
}

func alignDown(v, a int64) int64 { return v / a * a }
func alignUp(v, a int64) int64   { return (v + a - 1) / a * a }

// Magic returns the 16 magic bytes for l's BOOT_MAX_ALIGN.
func (l Layout) Magic() []byte {
	if l.ma() == 8 {
		return append([]byte(nil), magic8...)
	}
	return append([]byte{byte(l.ma()), byte(l.ma() >> 8)}, magicTail...)
}

// MagicOffset is S-16.
func (l Layout) MagicOffset() int64 { return l.SlotSize - 16 }

// ImageOKOffset is ALIGN_DOWN(S-16-MA, MA).
func (l Layout) ImageOKOffset() int64 { return alignDown(l.SlotSize-16-l.ma(), l.ma()) }

// CopyDoneOffset is one MA below image_ok.
func (l Layout) CopyDoneOffset() int64 { return l.ImageOKOffset() - l.ma() }

// SwapInfoOffset is one MA below copy_done.
func (l Layout) SwapInfoOffset() int64 { return l.CopyDoneOffset() - l.ma() }

// SwapSizeOffset is one MA below swap_info.
func (l Layout) SwapSizeOffset() int64 { return l.SwapInfoOffset() - l.ma() }

// TrailerSize is the room imgtool reserves at the end of a slot for the
// trailer: a status area of maxSectors × 3 × writeAlign bytes plus the trailer
// info (4·MA + ALIGN_UP(16, MA)). maxSectors defaults to 128, writeAlign to 8.
func (l Layout) TrailerSize(writeAlign, maxSectors int) int64 {
	if writeAlign <= 0 {
		writeAlign = 8
	}
	if maxSectors <= 0 {
		maxSectors = 128
	}
	return int64(maxSectors)*3*int64(writeAlign) + 4*l.ma() + alignUp(16, l.ma())
}

// MagicBlock returns the offset and bytes bootutil writes for the magic: one
// ALIGN_UP(16, MA) block at ALIGN_DOWN(S-16, MA), erased fill then the magic.
func (l Layout) MagicBlock() (int64, []byte) {
	n := alignUp(16, l.ma())
	b := bytes.Repeat([]byte{Erased}, int(n))
	copy(b[n-16:], l.Magic())
	return alignDown(l.SlotSize-16, l.ma()), b
}

// FlagBlock returns the chunk written to set a one-byte trailer field: the
// value then erased fill up to the write alignment (at least 1, at most MA).
func (l Layout) FlagBlock(value byte, writeAlign int) []byte {
	n := int64(writeAlign)
	if n < 1 {
		n = 1
	}
	if n > l.ma() {
		n = l.ma()
	}
	b := bytes.Repeat([]byte{Erased}, int(n))
	b[0] = value
	return b
}

// MagicState is the decoded trailer magic.
type MagicState int

// Magic states, as bootutil decodes them.
const (
	MagicUnset MagicState = iota // all 16 bytes erased
	MagicGood                    // the magic for this MaxAlign
	MagicBad                     // anything else
)

func (m MagicState) String() string {
	return [...]string{"unset", "good", "bad"}[m]
}

// Flag is a decoded one-byte trailer flag.
type Flag int

// Flag values: 0x01 is set, an erased byte unset, anything else bad.
const (
	FlagUnset Flag = iota
	FlagSet
	FlagBad
)

func (f Flag) String() string { return [...]string{"unset", "set", "bad"}[f] }

func decodeFlag(b byte) Flag {
	switch b {
	case 0x01:
		return FlagSet
	case Erased:
		return FlagUnset
	}
	return FlagBad
}

// SwapType is what the bootloader does at the next boot.
type SwapType int

// Swap types (values as bootutil's BOOT_SWAP_TYPE_*).
const (
	SwapNone   SwapType = 1
	SwapTest   SwapType = 2
	SwapPerm   SwapType = 3
	SwapRevert SwapType = 4
	SwapFail   SwapType = 5
)

func (s SwapType) String() string {
	switch s {
	case SwapNone:
		return "none"
	case SwapTest:
		return "test"
	case SwapPerm:
		return "perm"
	case SwapRevert:
		return "revert"
	case SwapFail:
		return "fail"
	}
	return fmt.Sprintf("SwapType(%d)", int(s))
}

// TrailerState is a slot's decoded trailer.
type TrailerState struct {
	Magic    MagicState
	ImageOK  Flag
	CopyDone Flag
	SwapInfo byte   // raw: low nibble swap type, high nibble image index
	SwapSize uint32 // written by the bootloader when a swap starts; 0xffffffff when erased
}

// ReadTrailer decodes the trailer of the slot r under layout l.
func ReadTrailer(r io.ReaderAt, l Layout) (TrailerState, error) {
	var st TrailerState
	m := make([]byte, 16)
	if _, err := r.ReadAt(m, l.MagicOffset()); err != nil {
		return st, fmt.Errorf("mcuboot: reading the trailer magic: %w", err)
	}
	switch {
	case bytes.Equal(m, bytes.Repeat([]byte{Erased}, 16)):
		st.Magic = MagicUnset
	case bytes.Equal(m, l.Magic()):
		st.Magic = MagicGood
	default:
		st.Magic = MagicBad
	}
	var b [1]byte
	for _, f := range []struct {
		off int64
		set func(byte)
	}{
		{l.ImageOKOffset(), func(v byte) { st.ImageOK = decodeFlag(v) }},
		{l.CopyDoneOffset(), func(v byte) { st.CopyDone = decodeFlag(v) }},
		{l.SwapInfoOffset(), func(v byte) { st.SwapInfo = v }},
	} {
		if _, err := r.ReadAt(b[:], f.off); err != nil {
			return st, fmt.Errorf("mcuboot: reading the trailer: %w", err)
		}
		f.set(b[0])
	}
	var sz [4]byte
	if _, err := r.ReadAt(sz[:], l.SwapSizeOffset()); err != nil {
		return st, fmt.Errorf("mcuboot: reading the trailer's swap size: %w", err)
	}
	st.SwapSize = binary.LittleEndian.Uint32(sz[:])
	return st, nil
}

// DetectLayout finds the BOOT_MAX_ALIGN a slot's trailer was written for,
// from its magic: the standard magic means 8, the alternate one carries its
// own (16 or 32). ok is false when the magic is neither (erased or damaged).
func DetectLayout(r io.ReaderAt, slotSize int64) (l Layout, ok bool) {
	l = Layout{SlotSize: slotSize, MaxAlign: 8}
	if slotSize < 16 {
		return l, false
	}
	m := make([]byte, 16)
	if _, err := r.ReadAt(m, l.MagicOffset()); err != nil {
		return l, false
	}
	if bytes.Equal(m, magic8) {
		return l, true
	}
	if ma := int(binary.LittleEndian.Uint16(m)); (ma == 16 || ma == 32) && bytes.Equal(m[2:], magicTail) {
		return Layout{SlotSize: slotSize, MaxAlign: ma}, true
	}
	return l, false
}

// DecideSwap applies bootutil's swap table (boot_swap_type_multi, for swap
// modes other than swap-using-offset) to the primary and secondary trailers.
func DecideSwap(primary, secondary TrailerState) SwapType {
	switch {
	case secondary.Magic == MagicGood && secondary.ImageOK == FlagUnset:
		return SwapTest
	case secondary.Magic == MagicGood && secondary.ImageOK == FlagSet:
		return SwapPerm
	case primary.Magic == MagicGood && primary.ImageOK == FlagUnset && primary.CopyDone == FlagSet:
		return SwapRevert
	}
	return SwapNone
}

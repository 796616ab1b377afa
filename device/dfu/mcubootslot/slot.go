// Package mcubootslot is the DFU target for application images on MCUboot:
// it streams an image into the secondary slot of a flash, checks it as the
// bootloader will (hash and, given the trusted keys, signature), and
// writes the trailer that asks MCUboot for a test (or permanent) swap; and it
// reads and confirms the image running from the primary slot.
//
// It imports the standard library, mcuboot, device/flash and device/dfu; it
// must never import cloud/* or sim/.
package mcubootslot

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/mcuboot"
)

// Options describe the bootloader's build.
type Options struct {
	// MaxAlign is MCUboot's BOOT_MAX_ALIGN (default 8).
	MaxAlign int
	// Keys are the public keys the bootloader trusts. With keys, Done accepts
	// only an image signed by one of them, checked as MCUboot checks it (a
	// signature counts only after a KEYHASH or PUBKEY naming a trusted key);
	// without keys it checks the image's SHA-256 only, as an MCUboot built
	// without signatures. Give the device the keys its bootloader has: an
	// image the bootloader would refuse must never be scheduled.
	Keys []*mcuboot.PublicKey
	// SwapMove says the bootloader swaps using move (MCUBOOT_SWAP_USING_MOVE,
	// Zephyr's default) over slots of equal size: the primary image is moved
	// up by one sector before the swap, so the largest image is one sector
	// smaller than the room below the trailer.
	SwapMove bool
}

// Reserved returns the bytes at the end of a slot kept for the trailer: the
// trailer MCUboot needs, rounded up to whole sectors so that erasing the
// image never touches the trailer and the other way round.
func Reserved(g flash.Geometry, o Options) int64 {
	l := mcuboot.Layout{SlotSize: g.Size, MaxAlign: o.MaxAlign}
	t := l.TrailerSize(g.WriteAlign, int(g.Sectors()))
	return (t + g.SectorSize - 1) / g.SectorSize * g.SectorSize
}

// MaxImageSize returns the largest image a slot of geometry g takes for a
// bootloader built as o.
func MaxImageSize(g flash.Geometry, o Options) int64 {
	n := g.Size - Reserved(g, o)
	if o.SwapMove {
		n -= g.SectorSize
	}
	return n
}

// Target writes an image into a secondary slot. It implements dfu.Target.
type Target struct {
	f        flash.Flash
	geo      flash.Geometry
	layout   mcuboot.Layout
	max      int64 // largest image
	size     int64
	off      int64  // bytes programmed into flash
	tail     []byte // bytes received but not yet programmed (< WriteAlign)
	erasedTo int64  // [0, erasedTo) was erased in this session
	inited   bool
	keys     []*mcuboot.PublicKey
}

var _ dfu.Target = (*Target)(nil)

// NewTarget returns a target writing to the secondary slot f.
func NewTarget(f flash.Flash, o Options) *Target {
	g := f.Geometry()
	return &Target{
		f:      f,
		geo:    g,
		layout: mcuboot.Layout{SlotSize: g.Size, MaxAlign: o.MaxAlign},
		max:    MaxImageSize(g, o),
		keys:   o.Keys,
	}
}

// MaxImageSize returns the largest image the slot holds.
func (t *Target) MaxImageSize() int64 { return t.max }

// Init prepares the slot for an image of size bytes, resuming at offset.
func (t *Target) Init(size, offset int64) error {
	if size > t.max {
		return &dfu.TooLargeError{Size: size, Max: t.max}
	}
	complete := size > 0 && offset == size // resuming only to check the image (Done)
	if offset < 0 || offset > t.max || (offset%int64(t.geo.WriteAlign) != 0 && !complete) || (size > 0 && offset > size) {
		return fmt.Errorf("mcubootslot: cannot resume at offset %d (image size %d, slot holds %d, write alignment %d)",
			offset, size, t.max, t.geo.WriteAlign)
	}
	// Whatever happens, no stale swap request may survive a new download.
	if err := t.eraseTrailer(); err != nil {
		return err
	}
	t.size, t.off, t.tail, t.inited = size, offset, t.tail[:0], true
	// The sector holding offset was erased when its first bytes were written.
	t.erasedTo = (offset + t.geo.SectorSize - 1) / t.geo.SectorSize * t.geo.SectorSize
	return nil
}

func (t *Target) eraseTrailer() error {
	r := Reserved(t.geo, Options{MaxAlign: t.layout.MaxAlign})
	if err := t.f.Erase(t.geo.Size-r, r); err != nil {
		return fmt.Errorf("mcubootslot: erasing the trailer: %w", err)
	}
	return nil
}

// Write appends p to the image.
func (t *Target) Write(p []byte) error {
	if !t.inited {
		return dfu.ErrNotInitialised
	}
	end := t.off + int64(len(t.tail)) + int64(len(p))
	if end > t.max {
		return &dfu.TooLargeError{Size: end, Max: t.max}
	}
	if t.size > 0 && end > t.size {
		return fmt.Errorf("%w: received %d bytes, more than the %d announced", dfu.ErrInvalidImage, end, t.size)
	}
	align := t.geo.WriteAlign
	if len(t.tail) > 0 {
		n := min(align-len(t.tail), len(p))
		t.tail = append(t.tail, p[:n]...)
		p = p[n:]
		if len(t.tail) == align {
			if err := t.program(t.tail); err != nil {
				return err
			}
			t.tail = t.tail[:0]
		}
	}
	whole := len(p) / align * align
	if whole > 0 {
		if err := t.program(p[:whole]); err != nil {
			return err
		}
	}
	t.tail = append(t.tail, p[whole:]...)
	return nil
}

// program writes aligned bytes at t.off, erasing sectors ahead as needed.
func (t *Target) program(p []byte) error {
	end := t.off + int64(len(p))
	if end > t.erasedTo {
		to := (end + t.geo.SectorSize - 1) / t.geo.SectorSize * t.geo.SectorSize
		if err := t.f.Erase(t.erasedTo, to-t.erasedTo); err != nil {
			return fmt.Errorf("mcubootslot: erasing before write: %w", err)
		}
		t.erasedTo = to
	}
	if _, err := t.f.WriteAt(p, t.off); err != nil {
		return fmt.Errorf("mcubootslot: writing at %d: %w", t.off, err)
	}
	t.off = end
	return nil
}

// Offset returns the bytes received so far.
func (t *Target) Offset() int64 { return t.off + int64(len(t.tail)) }

// Checkpoint syncs the flash and returns the offset a resume may start from.
func (t *Target) Checkpoint() (int64, error) {
	if err := t.f.Sync(); err != nil {
		return 0, fmt.Errorf("mcubootslot: sync: %w", err)
	}
	return t.off, nil
}

// Done programs the last bytes and checks the image in the slot: size, then
// the MCUboot header, TLVs, SHA-256 and, when keys are configured, the
// signature. Its errors wrap dfu.ErrInvalidImage and, where it applies,
// dfu.ErrHashMismatch, dfu.ErrBadSignature or dfu.ErrUnsigned.
func (t *Target) Done() (dfu.Image, error) {
	if !t.inited {
		return dfu.Image{}, dfu.ErrNotInitialised
	}
	if len(t.tail) > 0 {
		n := len(t.tail)
		pad := make([]byte, t.geo.WriteAlign)
		for i := range pad {
			pad[i] = flash.ErasedByte
		}
		copy(pad, t.tail)
		if err := t.program(pad); err != nil {
			return dfu.Image{}, err
		}
		t.off -= int64(t.geo.WriteAlign - n)
		t.tail = t.tail[:0]
	}
	if err := t.f.Sync(); err != nil {
		return dfu.Image{}, fmt.Errorf("mcubootslot: sync: %w", err)
	}
	if t.size > 0 && t.off != t.size {
		return dfu.Image{}, fmt.Errorf("%w: the slot holds %d bytes, the image has %d", dfu.ErrInvalidImage, t.off, t.size)
	}
	section := io.NewSectionReader(t.f, 0, t.off)
	whole := sha256.New()
	if _, err := io.Copy(whole, section); err != nil {
		return dfu.Image{}, fmt.Errorf("mcubootslot: reading back the image: %w", err)
	}
	v, err := mcuboot.Verify(t.f, t.off, t.keys)
	if err != nil {
		return dfu.Image{}, classify(err)
	}
	im := dfu.Image{
		Type:     dfu.TypeMCUboot,
		Size:     t.off,
		SHA256:   whole.Sum(nil),
		Version:  v.Image.Header.Version.String(),
		BootHash: v.Hash,
	}
	if n, ok := v.Image.SecurityCounter(); ok {
		im.SecurityCounter = &n
	}
	return im, nil
}

// classify wraps a verification error with the dfu errors the runner maps
// to job failure reasons.
func classify(err error) error {
	switch {
	case errors.Is(err, mcuboot.ErrHashMismatch):
		return fmt.Errorf("%w: %w: %w", dfu.ErrInvalidImage, dfu.ErrHashMismatch, err)
	case errors.Is(err, mcuboot.ErrUnsigned):
		return fmt.Errorf("%w: %w: %w", dfu.ErrInvalidImage, dfu.ErrUnsigned, err)
	case errors.Is(err, mcuboot.ErrBadSignature):
		return fmt.Errorf("%w: %w: %w", dfu.ErrInvalidImage, dfu.ErrBadSignature, err)
	}
	return fmt.Errorf("%w: %w", dfu.ErrInvalidImage, err)
}

// Schedule writes the secondary trailer requesting a test swap (or a
// permanent one), as bootutil's boot_set_pending does: nothing when a request
// is already there, an error when the trailer is damaged.
func (t *Target) Schedule(permanent bool) error {
	st, err := mcuboot.ReadTrailer(t.f, t.layout)
	if err != nil {
		return err
	}
	switch st.Magic {
	case mcuboot.MagicGood:
		return nil
	case mcuboot.MagicBad:
		// A write of the magic was torn (a power cut): the trailer area is
		// separate from the verified image, so write the request afresh.
		if err := t.eraseTrailer(); err != nil {
			return err
		}
	}
	off, blk := t.layout.MagicBlock()
	if _, err := t.f.WriteAt(blk, off); err != nil {
		return fmt.Errorf("mcubootslot: writing the swap request: %w", err)
	}
	swapType := byte(mcuboot.SwapTest)
	if permanent {
		swapType = byte(mcuboot.SwapPerm)
		if _, err := t.f.WriteAt(t.layout.FlagBlock(0x01, t.geo.WriteAlign), t.layout.ImageOKOffset()); err != nil {
			return fmt.Errorf("mcubootslot: writing image_ok: %w", err)
		}
	}
	if _, err := t.f.WriteAt(t.layout.FlagBlock(swapType, t.geo.WriteAlign), t.layout.SwapInfoOffset()); err != nil {
		return fmt.Errorf("mcubootslot: writing swap_info: %w", err)
	}
	return t.f.Sync()
}

// Reset erases the image header and the trailer: the slot can no longer be
// booted or swapped in.
func (t *Target) Reset() error {
	if err := t.f.Erase(0, t.geo.SectorSize); err != nil {
		return fmt.Errorf("mcubootslot: erasing the header: %w", err)
	}
	if err := t.eraseTrailer(); err != nil {
		return err
	}
	t.inited, t.off, t.tail, t.erasedTo = false, 0, t.tail[:0], 0
	return t.f.Sync()
}

// Primary reads and confirms the image in the primary slot — the one running.
type Primary struct {
	f      flash.Flash
	layout mcuboot.Layout
	max    int64
}

// NewPrimary returns the primary slot f.
func NewPrimary(f flash.Flash, o Options) *Primary {
	g := f.Geometry()
	return &Primary{f: f, layout: mcuboot.Layout{SlotSize: g.Size, MaxAlign: o.MaxAlign}, max: g.Size - Reserved(g, o)}
}

// ErrNoImage is returned by Running when the primary slot holds no image.
var ErrNoImage = errors.New("mcubootslot: no MCUboot image in the primary slot")

// Running describes the image in the primary slot.
func (p *Primary) Running() (dfu.Running, error) {
	im, err := mcuboot.Parse(p.f, p.max)
	if err != nil {
		return dfu.Running{}, fmt.Errorf("%w: %w", ErrNoImage, err)
	}
	h, ok := im.Find(mcuboot.TLVSHA256)
	if !ok {
		return dfu.Running{}, fmt.Errorf("%w: %w", ErrNoImage, mcuboot.ErrNoHash)
	}
	st, err := mcuboot.ReadTrailer(p.f, p.layout)
	if err != nil {
		return dfu.Running{}, err
	}
	// An image without a trailer magic was never on trial. An image_ok that
	// is not erased — set, or a write of it cut short by a power loss — is
	// what keeps MCUboot from reverting (its swap table reverts only when
	// image_ok is unset): the image is there to stay.
	confirmed := st.Magic == mcuboot.MagicUnset || st.ImageOK != mcuboot.FlagUnset
	run := dfu.Running{Version: im.Header.Version.String(), BootHash: h.Value, Confirmed: confirmed}
	if n, ok := im.SecurityCounter(); ok {
		run.SecurityCounter = &n
	}
	return run, nil
}

// Confirm marks the running image good, as boot_set_confirmed: it sets
// image_ok when the magic is good and image_ok unset, and does nothing when
// the slot has no trailer magic or image_ok is already written (set, or torn
// by a power cut during an earlier Confirm: either way MCUboot will not
// revert).
func (p *Primary) Confirm() error {
	st, err := mcuboot.ReadTrailer(p.f, p.layout)
	if err != nil {
		return err
	}
	switch {
	case st.Magic == mcuboot.MagicBad:
		return fmt.Errorf("mcubootslot: the primary slot's trailer is damaged; cannot confirm the image")
	case st.Magic == mcuboot.MagicUnset || st.ImageOK != mcuboot.FlagUnset:
		return nil
	}
	if _, err := p.f.WriteAt(p.layout.FlagBlock(0x01, p.f.Geometry().WriteAlign), p.layout.ImageOKOffset()); err != nil {
		return fmt.Errorf("mcubootslot: confirming: %w", err)
	}
	return p.f.Sync()
}

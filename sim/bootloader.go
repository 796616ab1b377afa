// Package sim simulates devices that run the awsfota device library: flash
// slots kept in files, a bootloader that decides and performs swaps as MCUboot
// does (test, permanent, revert, refusing an image whose hash or signature
// does not verify; swap-using-move, sector by sector, resumed after a power
// cut from the status it keeps in the primary slot's trailer), and a Device
// that boots, runs the agent against a cloud and "reboots" through its
// bootloader when the agent asks. The demo, the end-to-end tests and `awsfota
// device run --sim` use it.
//
// It may import both device/* and cloud/*-free format packages; nothing in
// device/* or cloud/* may import it.
package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/awsfota/awsfota/device/dfu/mcubootslot"
	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/mcuboot"
)

// Bootloader is an MCUboot-like bootloader over two slots of equal geometry.
// It swaps images as MCUboot's swap-using-move does (docs/device.md, "The
// simulated bootloader"): the primary image is first moved up by one sector,
// then each sector of the secondary image is copied down into the primary
// slot and the moved-up primary sector into the secondary slot. Every step is
// recorded in the status area of the primary slot's trailer once it is done,
// so a power cut at any flash operation resumes at the next boot, and the
// swap ends with one whole, valid image in the primary slot.
type Bootloader struct {
	Primary, Secondary flash.Flash
	// MaxAlign is BOOT_MAX_ALIGN (8).
	MaxAlign int
	// Keys are the public keys built into the bootloader. With keys an image
	// boots only when signed by one of them; without, its SHA-256 is checked
	// alone, as an MCUboot built without signatures.
	Keys []*mcuboot.PublicKey
	// Validate, when set, replaces the check MCUboot makes before swapping an
	// image in and before booting it (mcuboot.Verify with Keys).
	Validate func(r io.ReaderAt, size int64) error

	// forgetStatus, for tests only, skips writing the swap status: a swap cut
	// short then restarts from the beginning over half-swapped slots, which
	// is what the status exists to prevent.
	forgetStatus bool
}

// BootResult says what a boot did.
type BootResult struct {
	Swap mcuboot.SwapType
	// Resumed is set when the boot finished a swap (or revert) that a reset
	// had interrupted.
	Resumed bool
	// Refused is why a requested swap was not done (the secondary image did
	// not validate, or is too large to be swapped by move); the secondary
	// slot was erased.
	Refused error
	// ModemVersion is the firmware the device's modem runs after starting
	// ("" without a modem); ModemRefused is why it refused an update.
	ModemVersion string
	ModemRefused error
}

// ErrNoBootableImage means the primary slot holds nothing that validates:
// the device is bricked.
var ErrNoBootableImage = errors.New("sim: no bootable image in the primary slot")

// ErrTooLargeToSwap is why a swap is refused when the image does not leave
// the one free sector swap-using-move needs below the trailer.
var ErrTooLargeToSwap = errors.New("sim: image too large to swap using move")

func (b *Bootloader) layout() mcuboot.Layout {
	return mcuboot.Layout{SlotSize: b.Primary.Geometry().Size, MaxAlign: b.MaxAlign}
}

func (b *Bootloader) reserved() int64 {
	return mcubootslot.Reserved(b.Primary.Geometry(), mcubootslot.Options{MaxAlign: b.MaxAlign})
}

func (b *Bootloader) validate(f flash.Flash) error {
	n := f.Geometry().Size - b.reserved()
	if b.Validate != nil {
		return b.Validate(f, n)
	}
	_, err := mcuboot.Verify(f, n, b.Keys)
	return err
}

// imageSize is the size of the image at the start of f (header, body and
// TLVs), 0 when f holds none.
func (b *Bootloader) imageSize(f flash.Flash) int64 {
	im, err := mcuboot.Parse(f, f.Geometry().Size-b.reserved())
	if err != nil {
		return 0
	}
	return im.Size
}

// Swap status, as MCUboot's swap-using-move keeps it: the moves come first
// (one entry each, in the first maxSectors entries), then the swaps (two
// entries a sector: state 0 done, state 1 done). idx counts from 1.
const (
	opMove = iota
	opSwap
)

type swapStatus struct {
	op, idx, state int
}

// Boot runs the bootloader once: it resumes an interrupted swap, or decides
// one from both trailers, validates and swaps as needed; then it checks the
// primary image can boot.
func (b *Bootloader) Boot() (BootResult, error) {
	g := b.Primary.Geometry()
	if b.Secondary.Geometry() != g {
		return BootResult{}, fmt.Errorf("sim: slots differ: %+v and %+v", g, b.Secondary.Geometry())
	}
	l := b.layout()
	ps, err := mcuboot.ReadTrailer(b.Primary, l)
	if err != nil {
		return BootResult{}, err
	}
	ss, err := mcuboot.ReadTrailer(b.Secondary, l)
	if err != nil {
		return BootResult{}, err
	}
	var res BootResult
	st := swapStatus{op: opMove, idx: 1}
	var swapSize int64
	// swap_status_source: a good magic without copy_done in the primary
	// trailer (and no request in the secondary) means a swap was under way.
	// Unlike MCUboot, a copy_done whose write was cut (neither erased nor
	// set) resumes too, and is written again: MCUboot would read it as bad
	// and never revert the image.
	fromPrimary := ps.Magic == mcuboot.MagicGood && ps.CopyDone != mcuboot.FlagSet && ss.Magic != mcuboot.MagicGood
	if fromPrimary {
		if st, err = b.readStatus(); err != nil {
			return res, err
		}
		res.Swap, res.Resumed = mcuboot.SwapType(ps.SwapInfo&0x0f), true
		swapSize = int64(ps.SwapSize)
		switch res.Swap {
		case mcuboot.SwapTest, mcuboot.SwapPerm, mcuboot.SwapRevert:
		default:
			// Not a swap this bootloader started: nothing to resume.
			res.Swap, res.Resumed = mcuboot.SwapNone, false
		}
	} else {
		res.Swap = mcuboot.DecideSwap(ps, ss)
		if res.Swap == mcuboot.SwapTest || res.Swap == mcuboot.SwapPerm {
			if err := b.validate(b.Secondary); errors.Is(err, ErrPowerCut) {
				return res, err
			} else if err != nil {
				res.Refused = err
			}
		}
		if res.Swap != mcuboot.SwapNone {
			swapSize = max(b.imageSize(b.Primary), b.imageSize(b.Secondary))
			if res.Refused == nil && b.lastIdx(swapSize) >= b.firstTrailerSector() {
				res.Refused = fmt.Errorf("%w: %d bytes need %d sectors plus one free, the slot has %d below its trailer",
					ErrTooLargeToSwap, swapSize, b.lastIdx(swapSize), b.firstTrailerSector())
			}
		}
		if res.Refused != nil {
			// As MCUboot: an image that fails validation is erased.
			res.Swap = mcuboot.SwapNone
			if err := b.Secondary.Erase(0, g.Size); err != nil {
				return res, fmt.Errorf("sim: bootloader: erasing a refused image: %w", err)
			}
		}
	}
	if res.Swap != mcuboot.SwapNone {
		if err := b.run(res.Swap, st, fromPrimary, swapSize); err != nil {
			return res, err
		}
	}
	if err := b.validate(b.Primary); errors.Is(err, ErrPowerCut) {
		return res, err // the power failed while checking: nothing is known
	} else if err != nil {
		return res, fmt.Errorf("%w: %w", ErrNoBootableImage, err)
	}
	return res, b.Primary.Sync()
}

// lastIdx is the number of sectors a swap of size bytes covers (find_last_idx).
func (b *Bootloader) lastIdx(size int64) int {
	z := b.Primary.Geometry().SectorSize
	return int(max(1, (size+z-1)/z))
}

// firstTrailerSector is the index of the first sector that holds the trailer.
func (b *Bootloader) firstTrailerSector() int {
	g := b.Primary.Geometry()
	return int((g.Size - b.reserved()) / g.SectorSize)
}

// statusOffset is where the status area starts in a slot's trailer, and
// entry the size of one entry (BOOT_WRITE_SZ).
func (b *Bootloader) statusOffset() (off int64, entry int64) {
	g := b.Primary.Geometry()
	return g.Size - b.layout().TrailerSize(g.WriteAlign, int(g.Sectors())), int64(g.WriteAlign)
}

// entryIndex is the status entry that records st done.
func (b *Bootloader) entryIndex(st swapStatus) int64 {
	if st.op == opMove {
		return int64(st.idx - 1)
	}
	return b.Primary.Geometry().Sectors() + int64(st.idx-1)*2 + int64(st.state)
}

// readStatus finds the next step from the status area of the primary slot
// (swap_read_status_bytes): the entry after the last one written.
func (b *Bootloader) readStatus() (swapStatus, error) {
	off, entry := b.statusOffset()
	n := 3 * b.Primary.Geometry().Sectors()
	area := make([]byte, n*entry)
	if _, err := b.Primary.ReadAt(area, off); err != nil {
		return swapStatus{}, fmt.Errorf("sim: bootloader: reading the swap status: %w", err)
	}
	found := int64(0) // entries up to the last one written
	for i := n; i > 0; i-- {
		if area[(i-1)*entry] != flash.ErasedByte {
			found = i
			break
		}
	}
	moves := b.Primary.Geometry().Sectors()
	switch {
	case found == 0:
		return swapStatus{op: opMove, idx: 1}, nil
	case found < moves:
		return swapStatus{op: opMove, idx: int(found) + 1}, nil
	}
	return swapStatus{op: opSwap, idx: int((found-moves)/2) + 1, state: int((found - moves) % 2)}, nil
}

// writeStatus records st done.
func (b *Bootloader) writeStatus(st swapStatus) error {
	if b.forgetStatus {
		return nil
	}
	off, entry := b.statusOffset()
	blk := b.layout().FlagBlock(byte(st.state+1), b.Primary.Geometry().WriteAlign)
	if _, err := b.Primary.WriteAt(blk, off+b.entryIndex(st)*entry); err != nil {
		return fmt.Errorf("sim: bootloader: writing the swap status: %w", err)
	}
	return nil
}

// run performs (or resumes at st) a swap of kind over swapSize bytes, then
// writes the flags that end it (swap_run, then boot_perform_update's
// image_ok and copy_done).
func (b *Bootloader) run(kind mcuboot.SwapType, st swapStatus, fromPrimary bool, swapSize int64) error {
	z := b.Primary.Geometry().SectorSize
	last := b.lastIdx(swapSize)
	if kind == mcuboot.SwapRevert && st.op == opMove && st.idx == 1 {
		if err := b.fixupRevert(swapSize); err != nil {
			return err
		}
	}
	if st.op == opMove {
		for idx := last; idx > 0; idx-- {
			if idx > last-st.idx+1 {
				continue // moved before the reset
			}
			if st.idx == 1 {
				// The first move: the status moves to the primary trailer,
				// the secondary's request is spent.
				if !fromPrimary {
					if err := b.eraseTrailer(b.Primary); err != nil {
						return err
					}
					if err := b.initStatus(kind, swapSize); err != nil {
						return err
					}
				}
				if err := b.eraseTrailer(b.Secondary); err != nil {
					return err
				}
			}
			if err := b.copySector(b.Primary, int64(idx-1)*z, b.Primary, int64(idx)*z); err != nil {
				return err
			}
			if err := b.writeStatus(st); err != nil {
				return err
			}
			st.idx++
		}
		st = swapStatus{op: opSwap, idx: 1}
	}
	for idx := st.idx; idx <= last; idx++ {
		lo, up := int64(idx-1)*z, int64(idx)*z
		if st.state == 0 {
			if err := b.copySector(b.Secondary, lo, b.Primary, lo); err != nil {
				return err
			}
			if err := b.writeStatus(st); err != nil {
				return err
			}
			st.state = 1
		}
		if err := b.copySector(b.Primary, up, b.Secondary, lo); err != nil {
			return err
		}
		if err := b.writeStatus(st); err != nil {
			return err
		}
		st = swapStatus{op: opSwap, idx: idx + 1}
	}
	return b.finish(kind)
}

// fixupRevert makes a revert look like a permanent swap to the secondary
// slot before the primary trailer is re-initialised (MCUboot's fixup_revert):
// a reset between erasing that trailer and writing its magic then finds a
// permanent request for the old image, not an image without a trailer.
func (b *Bootloader) fixupRevert(swapSize int64) error {
	ss, err := mcuboot.ReadTrailer(b.Secondary, b.layout())
	if err != nil {
		return err
	}
	if ss.Magic != mcuboot.MagicUnset {
		return nil
	}
	if err := b.eraseTrailer(b.Secondary); err != nil {
		return err
	}
	return b.writeTrailer(b.Secondary, 0, true, swapSize)
}

// initStatus starts the primary trailer of a swap (swap_status_init): the
// swap type, image_ok when the secondary asked for a permanent swap, the swap
// size, and the magic last, which makes the rest valid.
func (b *Bootloader) initStatus(kind mcuboot.SwapType, swapSize int64) error {
	ss, err := mcuboot.ReadTrailer(b.Secondary, b.layout())
	if err != nil {
		return err
	}
	return b.writeTrailer(b.Primary, kind, ss.ImageOK == mcuboot.FlagSet, swapSize)
}

// writeTrailer writes swap_info (unless kind is 0), image_ok (when ok),
// swap_size and then the magic into f's erased trailer.
func (b *Bootloader) writeTrailer(f flash.Flash, kind mcuboot.SwapType, ok bool, swapSize int64) error {
	l, wa := b.layout(), f.Geometry().WriteAlign
	if kind != 0 {
		if _, err := f.WriteAt(l.FlagBlock(byte(kind), wa), l.SwapInfoOffset()); err != nil {
			return fmt.Errorf("sim: bootloader: writing swap_info: %w", err)
		}
	}
	if ok {
		if _, err := f.WriteAt(l.FlagBlock(1, wa), l.ImageOKOffset()); err != nil {
			return fmt.Errorf("sim: bootloader: writing image_ok: %w", err)
		}
	}
	sz := make([]byte, max(4, wa))
	for i := range sz {
		sz[i] = flash.ErasedByte
	}
	binary.LittleEndian.PutUint32(sz, uint32(swapSize))
	if _, err := f.WriteAt(sz, l.SwapSizeOffset()); err != nil {
		return fmt.Errorf("sim: bootloader: writing swap_size: %w", err)
	}
	off, blk := l.MagicBlock()
	if _, err := f.WriteAt(blk, off); err != nil {
		return fmt.Errorf("sim: bootloader: writing the trailer magic: %w", err)
	}
	return nil
}

// finish writes image_ok after a permanent swap or a revert, then copy_done:
// the swap is over, and a test image will be reverted unless confirmed. A
// flag a cut left half programmed is programmed again (0x01 only clears
// bits the torn write left set).
func (b *Bootloader) finish(kind mcuboot.SwapType) error {
	l, wa := b.layout(), b.Primary.Geometry().WriteAlign
	ps, err := mcuboot.ReadTrailer(b.Primary, l)
	if err != nil {
		return err
	}
	if (kind == mcuboot.SwapPerm || kind == mcuboot.SwapRevert) && ps.ImageOK != mcuboot.FlagSet {
		if _, err := b.Primary.WriteAt(l.FlagBlock(1, wa), l.ImageOKOffset()); err != nil {
			return fmt.Errorf("sim: bootloader: writing image_ok: %w", err)
		}
	}
	if ps.CopyDone != mcuboot.FlagSet {
		if _, err := b.Primary.WriteAt(l.FlagBlock(1, wa), l.CopyDoneOffset()); err != nil {
			return fmt.Errorf("sim: bootloader: writing copy_done: %w", err)
		}
	}
	if err := b.Secondary.Sync(); err != nil {
		return err
	}
	return b.Primary.Sync()
}

// eraseTrailer erases the sectors that hold f's trailer.
func (b *Bootloader) eraseTrailer(f flash.Flash) error {
	r := b.reserved()
	if err := f.Erase(f.Geometry().Size-r, r); err != nil {
		return fmt.Errorf("sim: bootloader: erasing a trailer: %w", err)
	}
	return nil
}

// copySector erases the sector at dstOff of dst and copies the sector at
// srcOff of src into it.
func (b *Bootloader) copySector(src flash.Flash, srcOff int64, dst flash.Flash, dstOff int64) error {
	if s, ok := src.(*SharedFlash); ok {
		if d, ok := dst.(*SharedFlash); ok {
			// The same erase and write, without the copy (a fleet's
			// devices share their sectors).
			if err := d.CopySectorFrom(s, srcOff, dstOff); err != nil {
				return fmt.Errorf("sim: bootloader: copying a sector from %d to %d: %w", srcOff, dstOff, err)
			}
			return nil
		}
	}
	buf := make([]byte, src.Geometry().SectorSize)
	if _, err := src.ReadAt(buf, srcOff); err != nil {
		return fmt.Errorf("sim: bootloader: reading a sector at %d: %w", srcOff, err)
	}
	if err := dst.Erase(dstOff, int64(len(buf))); err != nil {
		return fmt.Errorf("sim: bootloader: erasing a sector at %d: %w", dstOff, err)
	}
	if _, err := dst.WriteAt(buf, dstOff); err != nil {
		return fmt.Errorf("sim: bootloader: writing a sector at %d: %w", dstOff, err)
	}
	return nil
}

// Package sim simulates devices that run the awsfota device library: flash
// slots kept in files, a bootloader that decides and performs swaps as MCUboot
// does (test, permanent, revert, refusing an image whose hash or signature
// does not verify), and a Device that boots, runs the agent against a cloud
// and "reboots" through its bootloader when the agent asks. The demo, the
// end-to-end tests and `awsfota device run --sim` use it.
//
// It may import both device/* and cloud/*-free format packages; nothing in
// device/* or cloud/* may import it.
package sim

import (
	"errors"
	"fmt"
	"io"

	"github.com/awsfota/awsfota/device/dfu/mcubootslot"
	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/mcuboot"
)

// Bootloader is an MCUboot-like bootloader over two slots of equal geometry.
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
}

// BootResult says what a boot did.
type BootResult struct {
	Swap mcuboot.SwapType
	// Refused is why a requested swap was not done (the secondary image did
	// not validate); the secondary slot was erased.
	Refused error
	// ModemVersion is the firmware the device's modem runs after starting
	// ("" without a modem); ModemRefused is why it refused an update.
	ModemVersion string
	ModemRefused error
}

// ErrNoBootableImage means the primary slot holds nothing that validates:
// the device is bricked.
var ErrNoBootableImage = errors.New("sim: no bootable image in the primary slot")

func (b *Bootloader) layout() mcuboot.Layout {
	return mcuboot.Layout{SlotSize: b.Primary.Geometry().Size, MaxAlign: b.MaxAlign}
}

func (b *Bootloader) validate(f flash.Flash) error {
	g := f.Geometry()
	n := g.Size - mcubootslot.Reserved(g, mcubootslot.Options{MaxAlign: b.MaxAlign})
	if b.Validate != nil {
		return b.Validate(f, n)
	}
	_, err := mcuboot.Verify(f, n, b.Keys)
	return err
}

// Boot runs the bootloader once: it decides the swap from both trailers,
// validates and swaps as needed, then checks the primary image can boot.
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
	res := BootResult{Swap: mcuboot.DecideSwap(ps, ss)}
	switch res.Swap {
	case mcuboot.SwapTest, mcuboot.SwapPerm:
		if err := b.validate(b.Secondary); err != nil {
			// As MCUboot: an image that fails validation is erased.
			res.Refused, res.Swap = err, mcuboot.SwapNone
			if err := b.Secondary.Erase(0, g.Size); err != nil {
				return res, err
			}
			break
		}
		if err := b.swap(res.Swap); err != nil {
			return res, err
		}
	case mcuboot.SwapRevert:
		if err := b.swap(mcuboot.SwapRevert); err != nil {
			return res, err
		}
	}
	if err := b.validate(b.Primary); err != nil {
		return res, fmt.Errorf("%w: %w", ErrNoBootableImage, err)
	}
	return res, b.Primary.Sync()
}

// swap exchanges the slots' image areas sector by sector and writes the
// primary trailer the way MCUboot leaves it after the swap.
func (b *Bootloader) swap(kind mcuboot.SwapType) error {
	g := b.Primary.Geometry()
	reserved := mcubootslot.Reserved(g, mcubootslot.Options{MaxAlign: b.MaxAlign})
	pa, sa := make([]byte, g.SectorSize), make([]byte, g.SectorSize)
	for off := int64(0); off < g.Size-reserved; off += g.SectorSize {
		if _, err := b.Primary.ReadAt(pa, off); err != nil {
			return err
		}
		if _, err := b.Secondary.ReadAt(sa, off); err != nil {
			return err
		}
		if err := b.Primary.Erase(off, g.SectorSize); err != nil {
			return err
		}
		if err := b.Secondary.Erase(off, g.SectorSize); err != nil {
			return err
		}
		if _, err := b.Primary.WriteAt(sa, off); err != nil {
			return err
		}
		if _, err := b.Secondary.WriteAt(pa, off); err != nil {
			return err
		}
	}
	for _, f := range []flash.Flash{b.Primary, b.Secondary} {
		if err := f.Erase(g.Size-reserved, reserved); err != nil {
			return err
		}
	}
	l := b.layout()
	off, blk := l.MagicBlock()
	if _, err := b.Primary.WriteAt(blk, off); err != nil {
		return err
	}
	if _, err := b.Primary.WriteAt(l.FlagBlock(byte(kind), g.WriteAlign), l.SwapInfoOffset()); err != nil {
		return err
	}
	if _, err := b.Primary.WriteAt(l.FlagBlock(1, g.WriteAlign), l.CopyDoneOffset()); err != nil {
		return err
	}
	if kind == mcuboot.SwapPerm || kind == mcuboot.SwapRevert {
		if _, err := b.Primary.WriteAt(l.FlagBlock(1, g.WriteAlign), l.ImageOKOffset()); err != nil {
			return err
		}
	}
	if err := b.Secondary.Sync(); err != nil {
		return err
	}
	return b.Primary.Sync()
}

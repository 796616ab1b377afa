// Package dfu is the device side of "write an image and make the device run
// it": a Target receives an image in order, can resume from an offset, checks
// what it holds, asks the bootloader (or the modem) to install it, and can be
// reset so that a partial image is never booted. Identify tells image kinds
// apart from their first bytes, as the seed's dfu_target does.
//
// Targets live in subpackages (mcubootslot: an application image in an
// MCUboot secondary slot). The lifecycle follows nRF's dfu_target: init,
// offset, write, done, schedule, reset.
//
// It imports only the standard library and the delta format; it must never
// import cloud/* or sim/.
package dfu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/awsfota/awsfota/delta"
)

// ImageType is the kind of image a file holds.
type ImageType int

// Image types.
const (
	TypeUnknown    ImageType = iota
	TypeMCUboot              // application image for MCUboot: u32 0x96f3b83d at 0
	TypeModemDelta           // nRF modem delta: u32 0x7544656d at 4
	TypeModemFull            // nRF full modem image: u16 0x84d2 at 0
	TypeDelta                // awsfota delta patch: "AFDP" at 0 (see package delta)
	TypeRAUC                 // a RAUC bundle, installed by RAUC (package raucb reads it)
	TypeFile                 // a file the device's own install command installs (exectarget)
)

func (t ImageType) String() string {
	switch t {
	case TypeMCUboot:
		return "mcuboot"
	case TypeModemDelta:
		return "modem-delta"
	case TypeModemFull:
		return "modem-full"
	case TypeDelta:
		return "delta"
	case TypeRAUC:
		return "rauc"
	case TypeFile:
		return "file"
	}
	return "unknown"
}

// IdentifyLen is how many leading bytes Identify needs.
const IdentifyLen = 8

// Identify tells the image type from the first bytes of a file.
func Identify(head []byte) ImageType {
	if len(head) >= 4 && binary.LittleEndian.Uint32(head) == 0x96f3b83d {
		return TypeMCUboot
	}
	if len(head) >= 8 && binary.LittleEndian.Uint32(head[4:]) == 0x7544656d {
		return TypeModemDelta
	}
	if len(head) >= 2 && binary.LittleEndian.Uint16(head) == 0x84d2 {
		return TypeModemFull
	}
	if delta.IsPatch(head) {
		return TypeDelta
	}
	return TypeUnknown
}

// Image describes a complete image a Target holds, as checked by Done.
type Image struct {
	Type    ImageType
	Size    int64
	SHA256  []byte // digest of the whole file as downloaded
	Version string // the version the image declares, "" if none
	// BootHash identifies the image once it runs (for MCUboot the SHA-256 TLV),
	// so that after a reboot the device can tell which image it runs.
	BootHash []byte
	// SecurityCounter is the image's anti-rollback counter (MCUboot SEC_CNT),
	// nil when it has none.
	SecurityCounter *uint32
}

// Target receives one image. Methods are called from one goroutine.
type Target interface {
	// Init prepares for an image of size bytes (0 when unknown) and resumes
	// at offset: the bytes [0, offset) are already in place from an earlier
	// session (offset is a value Checkpoint returned). Offset 0 starts over.
	// A size the target cannot hold fails with ErrTooLarge before anything
	// is written.
	Init(size, offset int64) error
	// Write appends p at the current offset.
	Write(p []byte) error
	// Offset returns how many bytes were written so far.
	Offset() int64
	// Checkpoint makes what was written durable and returns the offset that
	// a later Init may resume from.
	Checkpoint() (int64, error)
	// Done checks the complete image and describes it. It fails with
	// ErrInvalidImage (wrapped with the reason) when the image is damaged.
	Done() (Image, error)
	// Schedule asks for the image to be installed at the next reboot; a
	// permanent request skips the bootloader's test phase.
	Schedule(permanent bool) error
	// Reset discards the image so that it can never be booted.
	Reset() error
}

// Errors of targets.
var (
	// ErrTooLarge: the image does not fit the target.
	ErrTooLarge = errors.New("dfu: image too large for the target")
	// ErrInvalidImage: the image is damaged or of the wrong kind.
	ErrInvalidImage = errors.New("dfu: invalid image")
	// ErrHashMismatch: the image's content does not match its own hash.
	// Errors that wrap it also wrap ErrInvalidImage.
	ErrHashMismatch = errors.New("dfu: image hash mismatch")
	// ErrBadSignature: the image is signed, but not by a trusted key, or its
	// signature does not verify. Errors that wrap it also wrap ErrInvalidImage.
	ErrBadSignature = errors.New("dfu: image signature not valid for any trusted key")
	// ErrUnsigned: trusted keys are configured and the image carries no
	// signature. Errors that wrap it also wrap ErrInvalidImage.
	ErrUnsigned = errors.New("dfu: image is not signed")
	// ErrBaseMismatch: a delta does not apply to the image the device runs.
	ErrBaseMismatch = errors.New("dfu: the delta does not apply to the running image")
	// ErrUnsupportedType: the target cannot install images of this type.
	ErrUnsupportedType = errors.New("dfu: image type not supported here")
	// ErrNotInitialised: Write, Done or Schedule before Init.
	ErrNotInitialised = errors.New("dfu: target not initialised")
	// ErrIncompatible: the image is built for another system than this
	// device (a RAUC bundle's compatible string differs from the device's).
	ErrIncompatible = errors.New("dfu: the image is for another system")
	// ErrInstallFailed: the device's installer (RAUC, an install command)
	// refused or failed the image; the error carries what it said.
	ErrInstallFailed = errors.New("dfu: installing the image failed")
)

// InstallRequest is what an Installer is given with a complete image.
type InstallRequest struct {
	JobID string
	// Document is the job document as the cloud sent it.
	Document []byte
	// FWVersion is the version the job says the device runs afterwards, ""
	// when it does not say.
	FWVersion string
	// Progress, when set, is told how far the installer is (0 to 100) and
	// what it does. It is called from Install's goroutine.
	Progress func(percent int, message string)
}

// Installer is a Target whose complete image is installed by a tool of the
// device's own — RAUC writing a bundle into the other slot, a vendor's
// install command — rather than laid into a slot by Write. The runner calls
// Install instead of Done: it checks and installs the image, which may take
// minutes, and describes it as Done does (BootHash then names what runs once
// the device reboots into it). Schedule is left with nothing or little to
// do. Install stops waiting when ctx ends (the installer may go on; Reset
// undoes its work). Its errors wrap ErrIncompatible for an image built for
// another system and ErrInstallFailed when the installer refused or failed
// it.
type Installer interface {
	Target
	Install(ctx context.Context, req InstallRequest) (Image, error)
}

// TooLargeError gives the sizes behind ErrTooLarge.
type TooLargeError struct{ Size, Max int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("dfu: image of %d bytes does not fit: the target holds at most %d", e.Size, e.Max)
}

// Unwrap returns ErrTooLarge.
func (e *TooLargeError) Unwrap() error { return ErrTooLarge }

// Running describes the image a device runs now.
type Running struct {
	Version string
	// BootHash is the image's identity, comparable with Image.BootHash.
	BootHash []byte
	// Confirmed is false while the image runs on trial: the bootloader will
	// revert it at the next boot unless it is confirmed.
	Confirmed bool
	// SecurityCounter of the running image, nil when it has none.
	SecurityCounter *uint32
	// AppComponent is the job component this device's system updater takes
	// as the application ("rauc"), "" for plain "app" jobs only.
	AppComponent string
	// Compatible is the system the device is (RAUC's compatible string), ""
	// when not known.
	Compatible string
}

// BaseMismatchError says how the running image differs from a delta's base.
type BaseMismatchError struct {
	WantSize, GotSize int64
	Want, Got         []byte // SHA-256
}

func (e *BaseMismatchError) Error() string {
	return fmt.Sprintf("dfu: the delta applies to an image of %d bytes with SHA-256 %x, but the device runs one with SHA-256 %x (first %d bytes): it needs a delta made from the image it runs, or a full image",
		e.WantSize, e.Want, e.Got, e.GotSize)
}

// Unwrap returns ErrBaseMismatch.
func (e *BaseMismatchError) Unwrap() error { return ErrBaseMismatch }

// CheckBase checks that the first size bytes of base have the SHA-256 want:
// that a delta made from that image applies to it. It reads in small blocks.
func CheckBase(base io.ReaderAt, size int64, want []byte) error {
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(base, 0, size))
	if err != nil {
		return fmt.Errorf("dfu: reading the running image: %w", err)
	}
	got := h.Sum(nil)
	if n != size || !bytes.Equal(got, want) {
		return &BaseMismatchError{WantSize: size, GotSize: n, Want: want, Got: got}
	}
	return nil
}

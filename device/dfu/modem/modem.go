// Package modem is the DFU target for a cellular modem's firmware, the part
// of the seed's job the nRF modem library does: the image (a full modem
// image, an nRF modem delta, or an awsfota delta against the running modem
// firmware) is written to the modem's scratch area — erasing it first takes
// seconds, announced by ErasePending/EraseDone — then committed, and the
// modem installs it when it next starts. The agent reports SUCCEEDED only if
// the modem then runs the expected firmware.
//
// Modem is the interface a modem driver (or sim.Modem) implements; Target
// adapts it to dfu.Target. The full modem image format here is awsfota's
// own (the magic the seed detects, then the version): see FullImage.
//
// It imports the standard library, delta and device/dfu; it must never
// import cloud/* or sim/.
package modem

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/awsfota/awsfota/delta"
	"github.com/awsfota/awsfota/device/dfu"
)

// Modem is a modem whose firmware can be updated. Methods are called from
// one goroutine at a time.
type Modem interface {
	// Version returns the version of the firmware the modem runs.
	Version() (string, error)
	// PrepareScratch erases the scratch area for an update of size bytes
	// (0: unknown). It may take seconds.
	PrepareScratch(size int64) error
	// WriteScratch stores update bytes at off in the scratch area.
	WriteScratch(p []byte, off int64) error
	// ReadScratch reads back the scratch area.
	ReadScratch(p []byte, off int64) (int, error)
	// Commit makes the modem install the scratch area's update when it next
	// starts.
	Commit() error
	// Discard forgets the scratch area's content and any commit.
	Discard() error
}

// Magic values of modem images (as the seed's dfu_target identifies them).
const (
	FullMagic  = 0x84d2     // u16 at offset 0 of a full modem image
	DeltaMagic = 0x7544656d // u32 at offset 4 of an nRF modem delta
)

// FullImage builds a full modem image: the u16 magic, a u16 version length,
// the version, then the firmware body.
func FullImage(version string, body []byte) []byte {
	b := make([]byte, 4+len(version)+len(body))
	binary.LittleEndian.PutUint16(b, FullMagic)
	binary.LittleEndian.PutUint16(b[2:], uint16(len(version)))
	copy(b[4:], version)
	copy(b[4+len(version):], body)
	return b
}

// ErrNotModemImage is returned by ParseFullImage for bytes that are not a
// full modem image.
var ErrNotModemImage = errors.New("modem: not a full modem image")

// ParseFullImage reads the version of a full modem image from its first
// bytes (at least 4 + the version's length).
func ParseFullImage(head []byte) (version string, err error) {
	if len(head) < 4 || binary.LittleEndian.Uint16(head) != FullMagic {
		return "", fmt.Errorf("%w: no %#04x magic", ErrNotModemImage, FullMagic)
	}
	n := int(binary.LittleEndian.Uint16(head[2:]))
	if n == 0 || len(head) < 4+n {
		return "", fmt.Errorf("%w: version of %d bytes does not fit", ErrNotModemImage, n)
	}
	v := string(head[4 : 4+n])
	for _, c := range v {
		if c < 0x20 || c > 0x7e {
			return "", fmt.Errorf("%w: the version is not printable", ErrNotModemImage)
		}
	}
	return v, nil
}

// Target writes modem updates through a Modem. It implements dfu.Target.
type Target struct {
	m Modem
	// Erasing, when set, is told when the scratch area's erase starts (true)
	// and ends (false): the application should keep the link quiet meanwhile.
	Erasing func(bool)
	off     int64
	size    int64
	inited  bool
}

var _ dfu.Target = (*Target)(nil)

// NewTarget returns a target for m.
func NewTarget(m Modem) *Target { return &Target{m: m} }

// Init erases the scratch area for an update of size bytes. Offset must be
// 0: a modem update is written again from the start after an interruption.
func (t *Target) Init(size, offset int64) error {
	if offset != 0 && !(size > 0 && offset == size) {
		return fmt.Errorf("modem: an update cannot resume at offset %d: start it again", offset)
	}
	t.size, t.inited = size, true
	if offset == size && size > 0 {
		t.off = size // re-checking a complete update
		return nil
	}
	if t.Erasing != nil {
		t.Erasing(true)
	}
	err := t.m.PrepareScratch(size)
	if t.Erasing != nil {
		t.Erasing(false)
	}
	if err != nil {
		return fmt.Errorf("modem: preparing the scratch area: %w", err)
	}
	t.off = 0
	return nil
}

// Write appends p to the scratch area.
func (t *Target) Write(p []byte) error {
	if !t.inited {
		return dfu.ErrNotInitialised
	}
	if t.size > 0 && t.off+int64(len(p)) > t.size {
		return fmt.Errorf("%w: received %d bytes, more than the %d announced", dfu.ErrInvalidImage, t.off+int64(len(p)), t.size)
	}
	if err := t.m.WriteScratch(p, t.off); err != nil {
		return fmt.Errorf("modem: writing the scratch area: %w", err)
	}
	t.off += int64(len(p))
	return nil
}

// Offset returns the bytes written.
func (t *Target) Offset() int64 { return t.off }

// Checkpoint is 0: modem updates restart from the beginning.
func (t *Target) Checkpoint() (int64, error) { return 0, nil }

type scratchReader struct{ m Modem }

func (r scratchReader) ReadAt(p []byte, off int64) (int, error) { return r.m.ReadScratch(p, off) }

// Done reads the update back: its type, its SHA-256 and, for a full image,
// the version it installs.
func (t *Target) Done() (dfu.Image, error) {
	if !t.inited {
		return dfu.Image{}, dfu.ErrNotInitialised
	}
	if t.size > 0 && t.off != t.size {
		return dfu.Image{}, fmt.Errorf("%w: the scratch area holds %d bytes, the update has %d", dfu.ErrInvalidImage, t.off, t.size)
	}
	r := io.NewSectionReader(scratchReader{t.m}, 0, t.off)
	head := make([]byte, min(t.off, 4+0xffff))
	if _, err := io.ReadFull(r, head); err != nil {
		return dfu.Image{}, fmt.Errorf("modem: reading the scratch area: %w", err)
	}
	im := dfu.Image{Type: dfu.Identify(head), Size: t.off}
	switch im.Type {
	case dfu.TypeModemFull:
		v, err := ParseFullImage(head)
		if err != nil {
			return dfu.Image{}, fmt.Errorf("%w: %w", dfu.ErrInvalidImage, err)
		}
		im.Version = v
	case dfu.TypeDelta:
		if _, err := delta.ParseHeader(head); err != nil {
			return dfu.Image{}, fmt.Errorf("%w: %w", dfu.ErrInvalidImage, err)
		}
	case dfu.TypeModemDelta:
	default:
		return dfu.Image{}, fmt.Errorf("%w: the update is %s, not a modem image or delta", dfu.ErrInvalidImage, im.Type)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(scratchReader{t.m}, 0, t.off)); err != nil {
		return dfu.Image{}, fmt.Errorf("modem: reading the scratch area: %w", err)
	}
	im.SHA256 = h.Sum(nil)
	return im, nil
}

// Schedule commits the update: the modem installs it when it next starts.
func (t *Target) Schedule(bool) error { return t.m.Commit() }

// Reset discards the scratch area.
func (t *Target) Reset() error {
	t.inited, t.off = false, 0
	return t.m.Discard()
}

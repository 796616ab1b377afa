// Package flash models the non-volatile memory a device writes firmware to:
// a Flash has a geometry (size, erase sector, write alignment), reads at any
// offset, erases whole sectors to 0xff and programs bytes with NOR semantics
// (a write may only clear bits, so writing over data that is not erased is an
// error, as it would silently corrupt real flash).
//
// Two implementations are here: File, backed by a regular file (a simulated
// part, or a real partition exposed as a file), and Mem, in memory for tests.
// The sim package wraps them to inject power cuts.
//
// It imports only the standard library; it must never import cloud/*, sim/ or
// other device/* packages.
package flash

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Flash is one flash area (a slot). Implementations are safe for concurrent
// use. Offsets are relative to the area's start.
type Flash interface {
	// Geometry returns the area's size, erase sector size and write alignment.
	Geometry() Geometry
	// ReadAt reads len(p) bytes at off; reading past the end is io.EOF.
	ReadAt(p []byte, off int64) (int, error)
	// WriteAt programs p at off. Each written byte may only clear bits of
	// the byte already there: writing 0x01 over 0xff works, 0xff over 0x01
	// fails with ErrNotErased and writes nothing.
	WriteAt(p []byte, off int64) (int, error)
	// Erase sets n bytes at off to 0xff. off and n must be multiples of the
	// sector size.
	Erase(off, n int64) error
	// Sync makes every completed write and erase durable.
	Sync() error
}

// Geometry describes a flash area.
type Geometry struct {
	Size       int64 // bytes
	SectorSize int64 // erase unit, divides Size
	WriteAlign int   // program unit (informational; writes of any length are accepted)
}

// Sectors returns the number of sectors in the area.
func (g Geometry) Sectors() int64 { return g.Size / g.SectorSize }

func (g Geometry) validate() error {
	if g.SectorSize <= 0 || g.Size <= 0 || g.Size%g.SectorSize != 0 {
		return fmt.Errorf("flash: size %d must be a positive multiple of the sector size %d", g.Size, g.SectorSize)
	}
	if g.WriteAlign <= 0 {
		return fmt.Errorf("flash: write alignment %d must be positive", g.WriteAlign)
	}
	return nil
}

// Errors.
var (
	// ErrNotErased: a write would set bits that are clear; erase the sector first.
	ErrNotErased = errors.New("flash: write over data that is not erased")
	// ErrOutOfRange: an access falls outside the area.
	ErrOutOfRange = errors.New("flash: access outside the area")
	// ErrUnaligned: an erase is not sector aligned.
	ErrUnaligned = errors.New("flash: erase not aligned to sectors")
)

// ErasedByte is the value of erased flash.
const ErasedByte = 0xff

// backing is the storage under a flash area.
type backing interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Close() error
}

// area implements Flash's rules over a backing store.
type area struct {
	mu   sync.Mutex
	geo  Geometry
	back backing
	buf  []byte
}

func (a *area) Geometry() Geometry { return a.geo }

func (a *area) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: read at %d", ErrOutOfRange, off)
	}
	if off >= a.geo.Size {
		return 0, io.EOF
	}
	n := len(p)
	if rem := a.geo.Size - off; int64(n) > rem {
		n = int(rem)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	m, err := a.back.ReadAt(p[:n], off)
	if err != nil && !(errors.Is(err, io.EOF) && m == n) {
		return m, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (a *area) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > a.geo.Size {
		return 0, fmt.Errorf("%w: write of %d bytes at %d in a %d-byte area", ErrOutOfRange, len(p), off, a.geo.Size)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if cap(a.buf) < len(p) {
		a.buf = make([]byte, len(p))
	}
	old := a.buf[:len(p)]
	if _, err := a.back.ReadAt(old, off); err != nil {
		return 0, fmt.Errorf("flash: reading before write at %d: %w", off, err)
	}
	for i := range p {
		if old[i]&p[i] != p[i] {
			return 0, fmt.Errorf("%w: byte at %d is %#02x, cannot program %#02x", ErrNotErased, off+int64(i), old[i], p[i])
		}
	}
	return a.back.WriteAt(p, off)
}

func (a *area) Erase(off, n int64) error {
	if off%a.geo.SectorSize != 0 || n%a.geo.SectorSize != 0 {
		return fmt.Errorf("%w: %d bytes at %d with %d-byte sectors", ErrUnaligned, n, off, a.geo.SectorSize)
	}
	if off < 0 || n < 0 || off+n > a.geo.Size {
		return fmt.Errorf("%w: erase of %d bytes at %d in a %d-byte area", ErrOutOfRange, n, off, a.geo.Size)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	blk := make([]byte, min(n, 64*1024))
	for i := range blk {
		blk[i] = ErasedByte
	}
	for done := int64(0); done < n; {
		k := min(int64(len(blk)), n-done)
		if _, err := a.back.WriteAt(blk[:k], off+done); err != nil {
			return fmt.Errorf("flash: erasing at %d: %w", off+done, err)
		}
		done += k
	}
	return nil
}

func (a *area) Sync() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.back.Sync()
}

// File is a Flash backed by a file of exactly the area's size.
type File struct {
	area
	f *os.File
}

// OpenFile opens the flash image at path, creating it fully erased when it
// does not exist. An existing file must have the geometry's size.
func OpenFile(path string, g Geometry) (*File, error) {
	if err := g.validate(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("flash: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("flash: %w", err)
	}
	fl := &File{area: area{geo: g, back: f}, f: f}
	switch st.Size() {
	case 0:
		if err := fl.Erase(0, g.Size); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("flash: %w", err)
		}
	case g.Size:
	default:
		f.Close()
		return nil, fmt.Errorf("flash: %s holds %d bytes, but the area is %d bytes; delete it or fix the geometry", path, st.Size(), g.Size)
	}
	return fl, nil
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// Mem is a Flash in memory, for tests.
type Mem struct {
	area
	m *memBacking
}

// NewMem returns an erased in-memory flash area.
func NewMem(g Geometry) (*Mem, error) {
	if err := g.validate(); err != nil {
		return nil, err
	}
	b := &memBacking{b: make([]byte, g.Size)}
	for i := range b.b {
		b.b[i] = ErasedByte
	}
	return &Mem{area: area{geo: g, back: b}, m: b}, nil
}

// Bytes returns a copy of the area's contents.
func (m *Mem) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.m.b...)
}

type memBacking struct{ b []byte }

func (m *memBacking) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memBacking) WriteAt(p []byte, off int64) (int, error) {
	return copy(m.b[off:], p), nil
}

func (m *memBacking) Sync() error  { return nil }
func (m *memBacking) Close() error { return nil }

package sim

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"unique"

	"github.com/awsfota/awsfota/device/flash"
)

// SharedFlash is an in-memory flash area whose sectors are shared between
// all the SharedFlash areas of the process that hold the same bytes: ten
// thousand simulated devices that run the same firmware keep one copy of
// each of its sectors, not ten thousand. A sector being written is private
// to its area until it is full or synced; it is then interned (unique.Make),
// and a later write to it copies it back first. Sectors no area holds any
// more are freed by the garbage collector.
//
// It follows flash.Flash's rules exactly as flash.Mem does (NOR writes,
// sector erases, the same errors); Sync only interns. Safe for concurrent
// use.
type SharedFlash struct {
	geo     flash.Geometry
	mu      sync.Mutex
	sectors []sharedSector
}

type sectorKind uint8

const (
	sectorErased sectorKind = iota
	sectorShared
	sectorPrivate
)

type sharedSector struct {
	kind   sectorKind
	shared unique.Handle[string] // when kind is sectorShared
	priv   []byte                // when kind is sectorPrivate
}

// NewSharedFlash returns an erased area.
func NewSharedFlash(g flash.Geometry) (*SharedFlash, error) {
	if g.SectorSize <= 0 || g.Size <= 0 || g.Size%g.SectorSize != 0 || g.WriteAlign <= 0 {
		// flash.NewMem says what is wrong with the geometry.
		if _, err := flash.NewMem(g); err != nil {
			return nil, err
		}
	}
	return &SharedFlash{geo: g, sectors: make([]sharedSector, g.Sectors())}, nil
}

// Geometry returns the area's geometry.
func (f *SharedFlash) Geometry() flash.Geometry { return f.geo }

// ReadAt reads len(p) bytes at off; reading past the end is io.EOF.
func (f *SharedFlash) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: read at %d", flash.ErrOutOfRange, off)
	}
	if off >= f.geo.Size {
		return 0, io.EOF
	}
	n := len(p)
	if rem := f.geo.Size - off; int64(n) > rem {
		n = int(rem)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for done := 0; done < n; {
		i, in := f.locate(off + int64(done))
		m := min(n-done, int(f.geo.SectorSize)-in)
		dst := p[done : done+m]
		switch s := &f.sectors[i]; s.kind {
		case sectorErased:
			fill(dst, flash.ErasedByte)
		case sectorShared:
			copy(dst, s.shared.Value()[in:])
		default:
			copy(dst, s.priv[in:])
		}
		done += m
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt programs p at off with NOR semantics: nothing is written if a
// byte would set a bit that is clear (flash.ErrNotErased).
func (f *SharedFlash) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > f.geo.Size {
		return 0, fmt.Errorf("%w: write of %d bytes at %d in a %d-byte area", flash.ErrOutOfRange, len(p), off, f.geo.Size)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// Check every sector first: a refused write writes nothing.
	for done := 0; done < len(p); {
		i, in := f.locate(off + int64(done))
		m := min(len(p)-done, int(f.geo.SectorSize)-in)
		var old []byte
		switch s := &f.sectors[i]; s.kind {
		case sectorShared:
			old = []byte(s.shared.Value()[in : in+m])
		case sectorPrivate:
			old = s.priv[in : in+m]
		}
		if old != nil {
			if j := notProgrammable(old, p[done:done+m]); j >= 0 {
				return 0, fmt.Errorf("%w: byte at %d is %#02x, cannot program %#02x", flash.ErrNotErased, off+int64(done+j), old[j], p[done+j])
			}
		}
		done += m
	}
	for done := 0; done < len(p); {
		i, in := f.locate(off + int64(done))
		m := min(len(p)-done, int(f.geo.SectorSize)-in)
		s := &f.sectors[i]
		switch s.kind {
		case sectorErased:
			s.priv = sectorBuffer(int(f.geo.SectorSize))
			fill(s.priv, flash.ErasedByte)
		case sectorShared:
			s.priv = sectorBuffer(int(f.geo.SectorSize))
			copy(s.priv, s.shared.Value())
			s.shared = unique.Handle[string]{}
		}
		s.kind = sectorPrivate
		copy(s.priv[in:], p[done:done+m])
		if in+m == int(f.geo.SectorSize) {
			s.intern()
		}
		done += m
	}
	return len(p), nil
}

// Erase sets n bytes at off to 0xff; off and n must be multiples of the
// sector size.
func (f *SharedFlash) Erase(off, n int64) error {
	ss := f.geo.SectorSize
	if off%ss != 0 || n%ss != 0 || n < 0 {
		return fmt.Errorf("%w: %d bytes at %d with %d-byte sectors", flash.ErrUnaligned, n, off, ss)
	}
	if off < 0 || off+n > f.geo.Size {
		return fmt.Errorf("%w: erase of %d bytes at %d in a %d-byte area", flash.ErrOutOfRange, n, off, f.geo.Size)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := off / ss; i < (off+n)/ss; i++ {
		f.sectors[i] = sharedSector{}
	}
	return nil
}

// Sync interns the sectors being written.
func (f *SharedFlash) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.sectors {
		if f.sectors[i].kind == sectorPrivate {
			f.sectors[i].intern()
		}
	}
	return nil
}

// CopySectorFrom makes the sector at dstOff hold what src's sector at
// srcOff holds, as erasing it and writing the whole sector would: a sector
// src shares is shared by this area too, not copied. Both offsets must
// start a sector and the areas have the same sector size; src may be f.
func (f *SharedFlash) CopySectorFrom(src *SharedFlash, srcOff, dstOff int64) error {
	ss := f.geo.SectorSize
	if src.geo.SectorSize != ss || srcOff%ss != 0 || dstOff%ss != 0 {
		return fmt.Errorf("%w: copying the %d-byte sector at %d to the %d-byte sector at %d", flash.ErrUnaligned, src.geo.SectorSize, srcOff, ss, dstOff)
	}
	if srcOff < 0 || srcOff+ss > src.geo.Size {
		return fmt.Errorf("%w: read of a sector at %d in a %d-byte area", flash.ErrOutOfRange, srcOff, src.geo.Size)
	}
	if dstOff < 0 || dstOff+ss > f.geo.Size {
		return fmt.Errorf("%w: erase of %d bytes at %d in a %d-byte area", flash.ErrOutOfRange, ss, dstOff, f.geo.Size)
	}
	src.mu.Lock()
	from := src.sectors[srcOff/ss]
	var s sharedSector
	switch from.kind {
	case sectorShared:
		s = sharedSector{kind: sectorShared, shared: from.shared}
	case sectorPrivate:
		s = sharedSector{kind: sectorShared, shared: unique.Make(string(from.priv))}
	}
	src.mu.Unlock()
	f.mu.Lock()
	f.sectors[dstOff/ss] = s
	f.mu.Unlock()
	return nil
}

// sectorsOf returns the content of the sectors that hold the first n bytes
// (the zero handle for an erased sector), or false when one of them is
// being written (private).
func (f *SharedFlash) sectorsOf(n int64) ([]unique.Handle[string], bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := min((n+f.geo.SectorSize-1)/f.geo.SectorSize, int64(len(f.sectors)))
	out := make([]unique.Handle[string], k)
	for i := range out {
		switch s := f.sectors[i]; s.kind {
		case sectorPrivate:
			return nil, false
		case sectorShared:
			out[i] = s.shared
		}
	}
	return out, true
}

// PrivateBytes is how many bytes of the area are its own (sectors being
// written), not shared.
func (f *SharedFlash) PrivateBytes() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, s := range f.sectors {
		if s.kind == sectorPrivate {
			n += int64(len(s.priv))
		}
	}
	return n
}

func (s *sharedSector) intern() {
	s.shared = unique.Make(string(s.priv))
	b := s.priv
	buffers.Put(&b)
	s.priv = nil
	s.kind = sectorShared
}

// buffers holds the buffers of sectors no longer private, for the next
// sectors written: a fleet writes gigabytes through a few of them.
var buffers sync.Pool

func sectorBuffer(n int) []byte {
	if b, ok := buffers.Get().(*[]byte); ok && len(*b) == n {
		return *b
	}
	return make([]byte, n)
}

func (f *SharedFlash) locate(off int64) (sector int64, in int) {
	return off / f.geo.SectorSize, int(off % f.geo.SectorSize)
}

// notProgrammable returns the index of the first byte of p that sets a bit
// clear in old, or -1: eight bytes at a time, as this runs over every byte
// a fleet writes.
func notProgrammable(old, p []byte) int {
	i := 0
	for ; i+8 <= len(p); i += 8 {
		o, w := binary.LittleEndian.Uint64(old[i:]), binary.LittleEndian.Uint64(p[i:])
		if w&^o != 0 {
			break
		}
	}
	for ; i < len(p); i++ {
		if p[i]&^old[i] != 0 {
			return i
		}
	}
	return -1
}

// erased is a run of erased bytes to copy from.
var erased = bytes.Repeat([]byte{flash.ErasedByte}, 4096)

// fill sets b to v, by copies when v is the erased byte.
func fill(b []byte, v byte) {
	if v != flash.ErasedByte {
		for i := range b {
			b[i] = v
		}
		return
	}
	for len(b) > 0 {
		b = b[copy(b, erased):]
	}
}

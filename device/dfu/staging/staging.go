// Package staging is the receiving half of a DFU target for a device whose
// images are installed by a tool of its own (RAUC, a vendor's install
// command): the image is written into a file, resumable across restarts —
// Checkpoint makes what was written durable, Init at an offset keeps exactly
// that much and drops what came after — then checked against its size and
// hashed, and removed by Reset.
//
// It imports the standard library and device/dfu; it must never import
// cloud/* or sim/.
package staging

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/awsfota/awsfota/device/dfu"
)

// File receives one image into a file. Methods are called from one goroutine.
type File struct {
	path   string
	max    int64
	f      *os.File
	off    int64
	size   int64
	inited bool
}

// New returns a staging file at path (its directory is created when needed)
// that holds images of at most max bytes (0: no limit but the filesystem's).
func New(path string, max int64) *File { return &File{path: path, max: max} }

// Path is the file's name.
func (s *File) Path() string { return s.path }

// Init prepares for an image of size bytes (0: unknown), keeping the first
// offset bytes already in the file — a value Checkpoint returned before a
// restart. Offset 0 starts an empty file.
func (s *File) Init(size, offset int64) error {
	if s.max > 0 && size > s.max {
		return &dfu.TooLargeError{Size: size, Max: s.max}
	}
	if offset < 0 || (size > 0 && offset > size) {
		return fmt.Errorf("staging: cannot resume at offset %d of an image of %d bytes", offset, size)
	}
	s.close()
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return fmt.Errorf("staging: %w", err)
	}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("staging: %w", err)
	}
	if offset > 0 {
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("staging: %w", err)
		}
		if st.Size() < offset {
			f.Close()
			return fmt.Errorf("staging: %s holds %d bytes, fewer than the %d to resume from: the download starts over", s.path, st.Size(), offset)
		}
	}
	if err := f.Truncate(offset); err != nil {
		f.Close()
		return fmt.Errorf("staging: %w", err)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("staging: %w", err)
	}
	s.f, s.off, s.size, s.inited = f, offset, size, true
	return nil
}

// Write appends p.
func (s *File) Write(p []byte) error {
	if s.f == nil {
		return dfu.ErrNotInitialised
	}
	end := s.off + int64(len(p))
	if s.size > 0 && end > s.size {
		return fmt.Errorf("%w: received %d bytes, more than the %d announced", dfu.ErrInvalidImage, end, s.size)
	}
	if s.max > 0 && end > s.max {
		return &dfu.TooLargeError{Size: end, Max: s.max}
	}
	n, err := s.f.Write(p)
	s.off += int64(n)
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w: the filesystem of %s is full after %d bytes: %w", dfu.ErrTooLarge, filepath.Dir(s.path), s.off, err)
	}
	if err != nil {
		return fmt.Errorf("staging: writing %s: %w", s.path, err)
	}
	return nil
}

// Offset returns the bytes written.
func (s *File) Offset() int64 { return s.off }

// Checkpoint makes the bytes written durable and returns their count.
func (s *File) Checkpoint() (int64, error) {
	if s.f == nil {
		return 0, nil
	}
	if err := s.f.Sync(); err != nil {
		return 0, fmt.Errorf("staging: sync %s: %w", s.path, err)
	}
	return s.off, nil
}

// Finish makes the complete file durable, checks its size against the one
// announced, and returns its size and SHA-256. The file is closed and stays
// for the installer to read (RAUC refuses a plain bundle another process
// holds open); Finish may be called again on it.
func (s *File) Finish() (size int64, sum []byte, err error) {
	if !s.inited {
		return 0, nil, dfu.ErrNotInitialised
	}
	if s.f != nil {
		err := s.f.Sync()
		s.close()
		if err != nil {
			return 0, nil, fmt.Errorf("staging: sync %s: %w", s.path, err)
		}
	}
	if s.size > 0 && s.off != s.size {
		return 0, nil, fmt.Errorf("%w: the staged file holds %d bytes, the image has %d", dfu.ErrInvalidImage, s.off, s.size)
	}
	f, err := os.Open(s.path)
	if err != nil {
		return 0, nil, fmt.Errorf("staging: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(f, 0, s.off))
	if err != nil {
		return 0, nil, fmt.Errorf("staging: reading back %s: %w", s.path, err)
	}
	if n != s.off {
		return 0, nil, fmt.Errorf("%w: %s holds %d bytes, %d were written", dfu.ErrInvalidImage, s.path, n, s.off)
	}
	return n, h.Sum(nil), nil
}

func (s *File) close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// Reset closes and removes the file.
func (s *File) Reset() error {
	s.close()
	s.off, s.size, s.inited = 0, 0, false
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("staging: %w", err)
	}
	return nil
}

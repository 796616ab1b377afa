// Package atomicfile is the one durable-write path of the project: a file is
// replaced by writing a temporary file in the same directory, fsyncing it,
// closing it, renaming it over the target and fsyncing the directory — the
// sequence litestream and bbolt use. A crash at any point leaves the old file
// or the new one, whole, never a mix or an empty file; once Write returns nil
// the new content survives a power cut.
//
// The steps go through an FS so that tests can fail or "crash" between any two
// of them (see the package's tests). Every package that persists state
// (device/state, cloud/pki, cloud/emu, cloud/objstore, sim, internal/cli)
// writes through here.
//
// It imports only the standard library; it must never import another package
// of the module.
package atomicfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// File is a temporary file being written.
type File interface {
	io.Writer
	// Name is the file's path, as given to FS.Rename and FS.Remove.
	Name() string
	Chmod(mode fs.FileMode) error
	Sync() error
	Close() error
}

// FS performs the steps of a durable write. OS is the real one; tests inject
// others to fail or crash between steps.
type FS interface {
	// CreateTemp creates a new file in dir, as os.CreateTemp.
	CreateTemp(dir, pattern string) (File, error)
	// Rename replaces newpath by oldpath, atomically, as os.Rename.
	Rename(oldpath, newpath string) error
	// Remove deletes a file, as os.Remove.
	Remove(name string) error
	// SyncDir makes dir's entries (creations, renames, removals) durable.
	SyncDir(dir string) error
}

// OS is the operating system's file system.
var OS FS = osFS{}

type osFS struct{}

func (osFS) CreateTemp(dir, pattern string) (File, error) { return os.CreateTemp(dir, pattern) }
func (osFS) Rename(oldpath, newpath string) error         { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error                     { return os.Remove(name) }
func (osFS) SyncDir(dir string) error                     { return SyncDir(dir) }

// SyncDir makes the entries of dir (creations, renames, removals) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("fsync of the directory %s: %w", dir, err)
	}
	return d.Close()
}

// tempMark is in the name of every temporary file, and in no other.
const tempMark = ".tmp-"

// IsTemp reports whether name (a base name) is a temporary file of this
// package: one a crash left behind, safe to delete when nothing is writing.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempMark)
}

// WriteFile durably replaces path with data, with permissions perm.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return WriteFS(OS, path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write durably replaces path with what write writes (streamed: nothing is
// held in memory), with permissions perm. When write fails, path is
// untouched.
func Write(path string, perm fs.FileMode, write func(io.Writer) error) error {
	return WriteFS(OS, path, perm, write)
}

// WriteFS is Write through fsys. The temporary file is named after path with
// a random suffix, so that concurrent writers of different files in one
// directory do not collide, and it is removed when a step fails.
func WriteFS(fsys FS, path string, perm fs.FileMode, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := fsys.CreateTemp(dir, "."+filepath.Base(path)+tempMark+"*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	err = write(f)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err != nil {
		fsys.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// memFS is a file system that knows what a crash keeps: file contents only
// once fsynced, directory entries only once the directory is fsynced. It
// counts the steps of a write and, from step failAt on, fails every one
// (crash: the process stops there, nothing more reaches the disk and the
// temporary file stays) or only that one (fail: later steps, such as the
// cleanup, still work).
type memFS struct {
	volatile, durable map[string]*inode // directory entries
	next              int
	steps             []string
	failAt            int  // 1-based step that fails; 0: none
	crash             bool // every step from failAt on fails
}

type inode struct {
	data, synced []byte
	mode         fs.FileMode
}

var errInjected = errors.New("injected failure")

func newMemFS() *memFS {
	return &memFS{volatile: map[string]*inode{}, durable: map[string]*inode{}}
}

// step records a step and says whether it must fail.
func (m *memFS) step(name string) error {
	m.steps = append(m.steps, name)
	n := len(m.steps)
	if m.failAt > 0 && (n == m.failAt || m.crash && n > m.failAt) {
		return fmt.Errorf("%s: %w", name, errInjected)
	}
	return nil
}

// put installs a file that is already durable.
func (m *memFS) put(name string, data []byte) {
	ino := &inode{data: bytes.Clone(data), synced: bytes.Clone(data), mode: 0o644}
	m.volatile[name], m.durable[name] = ino, ino
}

// afterCrash returns what a reboot finds at name in the two ways a file
// system may come back: with only the durable directory entries, or with the
// latest entries but only fsynced contents (the rename made it to disk, the
// data did not: the classic zero-length file). ok is false when name is
// absent.
func (m *memFS) afterCrash(name string) (views [2][]byte, ok [2]bool) {
	for i, entries := range []map[string]*inode{m.durable, m.volatile} {
		if ino, found := entries[name]; found {
			views[i], ok[i] = ino.synced, true
		}
	}
	return views, ok
}

func (m *memFS) CreateTemp(dir, pattern string) (File, error) {
	if err := m.step("create"); err != nil {
		return nil, err
	}
	m.next++
	name := filepath.Join(dir, strings.Replace(pattern, "*", fmt.Sprint(m.next), 1))
	ino := &inode{mode: 0o600}
	m.volatile[name] = ino
	return &memFile{fs: m, name: name, ino: ino}, nil
}

func (m *memFS) Rename(oldpath, newpath string) error {
	if err := m.step("rename"); err != nil {
		return err
	}
	ino, ok := m.volatile[oldpath]
	if !ok {
		return fs.ErrNotExist
	}
	delete(m.volatile, oldpath)
	m.volatile[newpath] = ino
	return nil
}

func (m *memFS) Remove(name string) error {
	if err := m.step("remove"); err != nil {
		return err
	}
	delete(m.volatile, name)
	return nil
}

func (m *memFS) SyncDir(string) error {
	if err := m.step("syncdir"); err != nil {
		return err
	}
	m.durable = map[string]*inode{}
	for k, v := range m.volatile {
		m.durable[k] = v
	}
	return nil
}

type memFile struct {
	fs   *memFS
	name string
	ino  *inode
}

func (f *memFile) Name() string { return f.name }

func (f *memFile) Write(p []byte) (int, error) {
	// Half the bytes land before a failure, as a torn write would leave.
	if err := f.fs.step("write"); err != nil {
		f.ino.data = append(f.ino.data, p[:len(p)/2]...)
		return len(p) / 2, err
	}
	f.ino.data = append(f.ino.data, p...)
	return len(p), nil
}

func (f *memFile) Chmod(mode fs.FileMode) error {
	if err := f.fs.step("chmod"); err != nil {
		return err
	}
	f.ino.mode = mode
	return nil
}

func (f *memFile) Sync() error {
	if err := f.fs.step("sync"); err != nil {
		return err
	}
	f.ino.synced = bytes.Clone(f.ino.data)
	return nil
}

func (f *memFile) Close() error { return f.fs.step("close") }

// TestCrashBetweenEverySteps fails, then crashes, a write at each of its
// steps and checks what survives: the old file or the new one, whole, in the
// live file system and in both ways a crash may leave the disk; and once a
// write returned nil, the new file survives a crash.
func TestCrashBetweenEverySteps(t *testing.T) {
	const path = "/d/state.json"
	oldData, newData := []byte(`{"v":1}`), []byte(`{"v":2, "more":"bytes"}`)
	clean := newMemFS()
	clean.put(path, oldData)
	if err := WriteFS(clean, path, 0o640, func(w io.Writer) error { _, err := w.Write(newData); return err }); err != nil {
		t.Fatal(err)
	}
	want := []string{"create", "write", "chmod", "sync", "close", "rename", "syncdir"}
	if fmt.Sprint(clean.steps) != fmt.Sprint(want) {
		t.Fatalf("steps %v, want %v", clean.steps, want)
	}
	if views, ok := clean.afterCrash(path); !ok[0] || !bytes.Equal(views[0], newData) || !bytes.Equal(views[1], newData) {
		t.Fatalf("a completed write does not survive a crash: %q", views)
	}
	if clean.volatile[path].mode != 0o640 {
		t.Fatalf("mode %v", clean.volatile[path].mode)
	}

	for _, crash := range []bool{false, true} {
		for at := 1; at <= len(want); at++ {
			name := fmt.Sprintf("fail-at-%s", want[at-1])
			if crash {
				name = fmt.Sprintf("crash-at-%s", want[at-1])
			}
			t.Run(name, func(t *testing.T) {
				m := newMemFS()
				m.put(path, oldData)
				m.failAt, m.crash = at, crash
				err := WriteFS(m, path, 0o640, func(w io.Writer) error { _, err := w.Write(newData); return err })
				if !errors.Is(err, errInjected) || !strings.Contains(err.Error(), path) {
					t.Fatalf("err = %v, want the injected failure naming %s", err, path)
				}
				live := m.volatile[path].data
				if !bytes.Equal(live, oldData) && !bytes.Equal(live, newData) {
					t.Fatalf("live file holds %q", live)
				}
				views, ok := m.afterCrash(path)
				for i, v := range views {
					if !ok[i] || !bytes.Equal(v, oldData) && !bytes.Equal(v, newData) {
						t.Fatalf("after a crash (view %d) the file holds %q (present %v)", i, v, ok[i])
					}
				}
				renamed := at > 6 // the rename went through
				if renamed != bytes.Equal(live, newData) {
					t.Fatalf("failing at step %d left %q", at, live)
				}
				if !crash {
					// A plain failure cleans up its temporary file.
					for n := range m.volatile {
						if n != path {
							t.Fatalf("left %s behind", n)
						}
					}
				}
			})
		}
	}
}

// TestWriteFailureKeepsOld: a write callback that fails leaves the old file
// and no temporary file.
func TestWriteFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("encoder failed")
	if err := Write(path, 0o600, func(w io.Writer) error { w.Write([]byte("partial")); return boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("file holds %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries", len(entries))
	}
}

// TestOSWrite writes through the real file system: content, permissions, a
// temporary name IsTemp recognises, and an error that names the file.
func TestOSWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cert.pem")
	for _, data := range []string{"first", "second, longer"} {
		if err := WriteFile(path, []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(path); string(b) != data {
			t.Fatalf("file holds %q, want %q", b, data)
		}
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", st.Mode())
	}
	var seen string
	err := Write(path, 0o600, func(w io.Writer) error {
		seen = filepath.Base(w.(File).Name())
		return nil
	})
	if err != nil || !IsTemp(seen) || IsTemp("cert.pem") || IsTemp(".hidden") {
		t.Fatalf("err %v; temp name %q (IsTemp %v)", err, seen, IsTemp(seen))
	}
	err = WriteFile(filepath.Join(dir, "missing", "f"), nil, 0o600)
	if err == nil || !strings.Contains(err.Error(), filepath.Join("missing", "f")) {
		t.Fatalf("err = %v, want one naming the file", err)
	}
}

package flash

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var geo = Geometry{Size: 4 * 4096, SectorSize: 4096, WriteAlign: 4}

// conformance runs the rules every Flash must follow.
func conformance(t *testing.T, f Flash) {
	t.Helper()
	g := f.Geometry()
	if g != geo || g.Sectors() != 4 {
		t.Fatalf("geometry %+v", g)
	}
	buf := make([]byte, 16)
	if _, err := f.ReadAt(buf, 100); err != nil || !bytes.Equal(buf, bytes.Repeat([]byte{0xff}, 16)) {
		t.Fatalf("fresh flash not erased: % x %v", buf, err)
	}
	if _, err := f.WriteAt([]byte{1, 2, 3, 4}, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{1, 2, 3, 4}, 100); err != nil {
		t.Fatalf("rewriting identical bytes: %v", err)
	}
	if _, err := f.WriteAt([]byte{0, 0, 3, 0}, 100); err != nil {
		t.Fatalf("clearing bits: %v", err)
	}
	if _, err := f.WriteAt([]byte{0xff}, 100); !errors.Is(err, ErrNotErased) {
		t.Fatalf("setting bits: %v", err)
	}
	if _, err := f.WriteAt([]byte{0, 0}, g.Size-1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("write past end: %v", err)
	}
	if err := f.Erase(1, 4096); !errors.Is(err, ErrUnaligned) {
		t.Fatalf("unaligned erase: %v", err)
	}
	if err := f.Erase(4096, g.Size); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("erase past end: %v", err)
	}
	if err := f.Erase(0, 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(buf[:4], 100); err != nil || !bytes.Equal(buf[:4], []byte{0xff, 0xff, 0xff, 0xff}) {
		t.Fatalf("after erase % x", buf[:4])
	}
	n, err := f.ReadAt(buf, g.Size-8)
	if n != 8 || err != io.EOF {
		t.Fatalf("read across end: %d %v", n, err)
	}
	if _, err := f.ReadAt(buf, g.Size); err != io.EOF {
		t.Fatalf("read at end: %v", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestMem(t *testing.T) {
	m, err := NewMem(geo)
	if err != nil {
		t.Fatal(err)
	}
	conformance(t, m)
	if len(m.Bytes()) != int(geo.Size) {
		t.Fatal("Bytes")
	}
}

func TestFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "slot.bin")
	f, err := OpenFile(p, geo)
	if err != nil {
		t.Fatal(err)
	}
	conformance(t, f)
	if _, err := f.WriteAt([]byte{0x42}, 5000); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Contents survive reopening.
	f, err = OpenFile(p, geo)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, 5000); err != nil || b[0] != 0x42 {
		t.Fatalf("after reopen: % x %v", b, err)
	}
}

func TestFileWrongSize(t *testing.T) {
	p := filepath.Join(t.TempDir(), "slot.bin")
	if err := os.WriteFile(p, make([]byte, 10), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFile(p, geo); err == nil {
		t.Fatal("wrong-size file accepted")
	}
}

func TestBadGeometry(t *testing.T) {
	for _, g := range []Geometry{{Size: 100, SectorSize: 64, WriteAlign: 1}, {Size: 0, SectorSize: 4096, WriteAlign: 1}, {Size: 4096, SectorSize: 4096}} {
		if _, err := NewMem(g); err == nil {
			t.Errorf("geometry %+v accepted", g)
		}
	}
}

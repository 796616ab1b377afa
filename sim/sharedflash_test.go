package sim

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/awsfota/awsfota/device/flash"
)

// TestSharedFlashMatchesMem runs the same random reads, writes (half of
// them over data already written), erases and syncs on a SharedFlash and a
// flash.Mem and wants the same results, errors and contents throughout.
func TestSharedFlashMatchesMem(t *testing.T) {
	g := flash.Geometry{Size: 16 * 256, SectorSize: 256, WriteAlign: 4}
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		sf, err := NewSharedFlash(g)
		if err != nil {
			t.Fatal(err)
		}
		mem, _ := flash.NewMem(g)
		for op := 0; op < 400; op++ {
			switch rng.IntN(4) {
			case 0, 1:
				off := rng.Int64N(g.Size+8) - 4
				p := make([]byte, rng.IntN(700))
				for i := range p {
					p[i] = byte(rng.Uint32())
					if rng.IntN(2) == 0 {
						p[i] = 0 // programmable over anything but may clash less
					}
				}
				n1, e1 := sf.WriteAt(p, off)
				n2, e2 := mem.WriteAt(p, off)
				if n1 != n2 || !sameErr(e1, e2) {
					t.Fatalf("seed %d op %d: WriteAt(%d bytes, %d) = %d, %v; Mem: %d, %v", seed, op, len(p), off, n1, e1, n2, e2)
				}
			case 2:
				off := rng.Int64N(g.Sectors()+1)*g.SectorSize - g.SectorSize*int64(rng.IntN(2))
				n := rng.Int64N(4) * g.SectorSize
				if rng.IntN(8) == 0 {
					n++
				}
				e1, e2 := sf.Erase(off, n), mem.Erase(off, n)
				if !sameErr(e1, e2) {
					t.Fatalf("seed %d op %d: Erase(%d, %d) = %v; Mem: %v", seed, op, off, n, e1, e2)
				}
			case 3:
				if err := sf.Sync(); err != nil {
					t.Fatal(err)
				}
			}
			off := rng.Int64N(g.Size+16) - 8
			b1, b2 := make([]byte, rng.IntN(600)), make([]byte, 0)
			b2 = append(b2, b1...)
			n1, e1 := sf.ReadAt(b1, off)
			n2, e2 := mem.ReadAt(b2, off)
			if n1 != n2 || !sameErr(e1, e2) || !bytes.Equal(b1[:n1], b2[:n2]) {
				t.Fatalf("seed %d op %d: ReadAt(%d, %d) = %d, %v; Mem: %d, %v (or different bytes)", seed, op, len(b1), off, n1, e1, n2, e2)
			}
		}
		all := make([]byte, g.Size)
		if _, err := sf.ReadAt(all, 0); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		if !bytes.Equal(all, mem.Bytes()) {
			t.Fatalf("seed %d: contents differ from flash.Mem's", seed)
		}
	}
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	for _, e := range []error{flash.ErrNotErased, flash.ErrOutOfRange, flash.ErrUnaligned, io.EOF} {
		if errors.Is(a, e) != errors.Is(b, e) {
			return false
		}
	}
	return a.Error() == b.Error()
}

// TestSharedFlashShares: two areas that hold the same image keep one copy
// of its sectors; a sector being written is private until full or synced.
func TestSharedFlashShares(t *testing.T) {
	g := flash.Geometry{Size: 8 * 4096, SectorSize: 4096, WriteAlign: 4}
	img := bytes.Repeat([]byte("firmware"), 3*4096/8+100)
	a, _ := NewSharedFlash(g)
	b, _ := NewSharedFlash(g)
	for _, f := range []*SharedFlash{a, b} {
		if _, err := f.WriteAt(img, 0); err != nil {
			t.Fatal(err)
		}
		if got := f.PrivateBytes(); got != 4096 {
			t.Fatalf("after writing %d bytes, %d bytes are private; want the one partly written sector (4096)", len(img), got)
		}
		f.Sync()
		if got := f.PrivateBytes(); got != 0 {
			t.Fatalf("after Sync, %d bytes are private", got)
		}
	}
	for i := range 4 {
		if a.sectors[i].shared != b.sectors[i].shared {
			t.Errorf("sector %d: the two areas hold the same bytes in two copies", i)
		}
	}
	// Writing over a shared sector leaves the other area's copy alone.
	if _, err := a.WriteAt([]byte{0, 0, 0, 0}, 0); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8)
	b.ReadAt(got, 0)
	if string(got) != "firmware" {
		t.Fatalf("b reads %q after a was written", got)
	}
	a.ReadAt(got, 0)
	if !bytes.Equal(got, []byte("\x00\x00\x00\x00ware")) {
		t.Fatalf("a reads %q after its write", got)
	}
}

package sim

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/mcuboot"
)

// TestCopySectorFromMatchesEraseAndWrite: CopySectorFrom leaves the area as
// an erase and a whole-sector write of the source's bytes would, whatever
// the source sector holds (erased, shared, being written), and refuses what
// those would refuse.
func TestCopySectorFromMatchesEraseAndWrite(t *testing.T) {
	g := flash.Geometry{Size: 8 * 256, SectorSize: 256, WriteAlign: 4}
	rng := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 50; round++ {
		src, _ := NewSharedFlash(g)
		dst, _ := NewSharedFlash(g)
		mem, _ := flash.NewMem(g)
		// Random contents: some sectors whole (shared), one partly written
		// (private), the rest erased.
		for i := int64(0); i < g.Sectors(); i++ {
			n := []int{0, 256, 100}[rng.IntN(3)]
			p := make([]byte, n)
			for j := range p {
				p[j] = byte(rng.Uint32())
			}
			src.WriteAt(p, i*256)
			q := bytes.Repeat([]byte{byte(i)}, 256)
			dst.WriteAt(q, i*256)
			mem.WriteAt(q, i*256)
		}
		from, to := rng.Int64N(g.Sectors())*256, rng.Int64N(g.Sectors())*256
		buf := make([]byte, 256)
		src.ReadAt(buf, from)
		if err := mem.Erase(to, 256); err != nil {
			t.Fatal(err)
		}
		if _, err := mem.WriteAt(buf, to); err != nil {
			t.Fatal(err)
		}
		if err := dst.CopySectorFrom(src, from, to); err != nil {
			t.Fatal(err)
		}
		all := make([]byte, g.Size)
		dst.ReadAt(all, 0)
		if !bytes.Equal(all, mem.Bytes()) {
			t.Fatalf("round %d: copying sector %d to %d: contents differ from an erase and a write", round, from/256, to/256)
		}
	}
	src, _ := NewSharedFlash(g)
	dst, _ := NewSharedFlash(g)
	for _, c := range []struct{ from, to int64 }{{1, 0}, {0, 1}, {g.Size, 0}, {0, g.Size}, {-256, 0}} {
		if err := dst.CopySectorFrom(src, c.from, c.to); err == nil {
			t.Errorf("CopySectorFrom(%d, %d) succeeded", c.from, c.to)
		} else if !errors.Is(err, flash.ErrUnaligned) && !errors.Is(err, flash.ErrOutOfRange) {
			t.Errorf("CopySectorFrom(%d, %d): %v, not an unaligned or out-of-range error", c.from, c.to, err)
		}
	}
}

// TestValidateCache: the cache answers as mcuboot.Verify does (a signed
// image passes, one with a flipped byte or an unknown key fails), answers a
// second slot holding the same bytes without checking again, and checks
// anew a slot with a sector being written.
func TestValidateCache(t *testing.T) {
	key, err := mcuboot.GenerateKey(mcuboot.KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := mcuboot.GenerateKey(mcuboot.KeyECDSAP256)
	img, err := SignedAppImage("1.2.3", 3000, key)
	if err != nil {
		t.Fatal(err)
	}
	g := flash.Geometry{Size: 32 * 256, SectorSize: 256, WriteAlign: 4}
	slot := func(b []byte, sync bool) *SharedFlash {
		f, _ := NewSharedFlash(g)
		if _, err := f.WriteAt(b, 0); err != nil {
			t.Fatal(err)
		}
		if sync {
			f.Sync()
		}
		return f
	}
	size := g.Size - 512
	c := &ValidateCache{Keys: []*mcuboot.PublicKey{key.Public()}}
	bad := bytes.Clone(img)
	bad[len(bad)/2] ^= 1
	for i, tc := range []struct {
		f       *SharedFlash
		keys    *ValidateCache
		hits    int64
		wantErr bool
	}{
		{slot(img, true), c, 0, false},
		{slot(img, true), c, 1, false}, // the same bytes in another slot
		{slot(bad, true), c, 1, true},
		{slot(bad, true), c, 2, true},
		{slot(img, false), c, 2, false}, // a sector being written: checked again
	} {
		err := tc.keys.Validate(tc.f, size)
		_, want := mcuboot.Verify(tc.f, size, c.Keys)
		if (err != nil) != tc.wantErr || (err == nil) != (want == nil) {
			t.Fatalf("case %d: Validate = %v; mcuboot.Verify = %v", i, err, want)
		}
		if got := c.Hits(); got != tc.hits {
			t.Fatalf("case %d: %d hits, want %d", i, got, tc.hits)
		}
	}
	// Another key set is another cache: an image signed by an unknown key fails.
	c2 := &ValidateCache{Keys: []*mcuboot.PublicKey{other.Public()}}
	if err := c2.Validate(slot(img, true), size); err == nil {
		t.Fatal("an image signed with another key validated")
	}
	// A reader that is not a SharedFlash is checked directly.
	mem, _ := flash.NewMem(g)
	mem.WriteAt(img, 0)
	if err := c.Validate(mem, size); err != nil {
		t.Fatal(err)
	}
	// The cache stays within its size.
	small := &ValidateCache{Keys: c.Keys, Size: 2}
	for i := 0; i < 5; i++ {
		b := bytes.Clone(img)
		b[len(b)-1] ^= byte(i + 1)
		small.Validate(slot(b, true), size)
	}
	if n := len(small.order); n != 2 {
		t.Fatalf("a cache of 2 holds %d answers", n)
	}
}

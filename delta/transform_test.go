package delta

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
)

// program is a synthetic linked program for one instruction set: functions
// made of filler instructions and calls to other functions, and a table of
// pointers to the functions at the end, laid out at a load address.
type program struct {
	t     Transform
	load  uint64
	funcs [][]byte // filler, with call sites zero
	calls [][]call
	table []int // functions the pointer table names
}

type call struct{ at, to int }

func newProgram(rng *rand.Rand, t Transform, nfuncs int) *program {
	p := &program{t: t, load: 0x08000000}
	if t == TransformAArch64 || t == TransformX86_64 || t == TransformRV64 {
		p.load = 0x400000
	}
	for range nfuncs {
		n := 16 + 4*rng.IntN(64)
		body := make([]byte, n)
		for i := range body {
			body[i] = byte(rng.Uint32())
		}
		if t == TransformThumb2 {
			for i := 0; i+1 < n; i += 2 {
				body[i+1] &= 0x7f // 16-bit Thumb instructions
			}
		}
		if t == TransformRV32 || t == TransformRV64 {
			for i := 0; i+1 < n; i += 2 {
				body[i] &^= 3 // compressed instructions
			}
		}
		var cs []call
		for at := 0; at+8 <= n; at += 4 + 4*rng.IntN(6) {
			cs = append(cs, call{at, rng.IntN(nfuncs)})
		}
		p.funcs = append(p.funcs, body)
		p.calls = append(p.calls, cs)
	}
	for range nfuncs / 2 {
		p.table = append(p.table, rng.IntN(nfuncs))
	}
	return p
}

// image links the program.
func (p *program) image() []byte {
	addr := make([]int, len(p.funcs))
	off := 0
	for i, f := range p.funcs {
		addr[i] = off
		off += len(f)
	}
	var img []byte
	for i, f := range p.funcs {
		img = append(img, f...)
		for _, c := range p.calls[i] {
			from := addr[i] + c.at
			encodeCall(p.t, img[from:], int64(addr[c.to]-from))
		}
	}
	for len(img)%8 != 0 {
		img = append(img, 0)
	}
	for _, f := range p.table {
		a := p.load + uint64(addr[f])
		if p.t == TransformThumb2 {
			a |= 1
		}
		if p.t == TransformAArch64 || p.t == TransformX86_64 || p.t == TransformRV64 {
			img = binary.LittleEndian.AppendUint64(img, a)
		} else {
			img = binary.LittleEndian.AppendUint32(img, uint32(a))
		}
	}
	return img
}

// encodeCall writes a call to the function d bytes from b's position.
func encodeCall(t Transform, b []byte, d int64) {
	u := uint32(d)
	switch t {
	case TransformThumb2:
		u = uint32(d - 4)
		s := u >> 24 & 1
		j1, j2 := ^(u>>23&1^s)&1, ^(u>>22&1^s)&1
		binary.LittleEndian.PutUint16(b, uint16(0xf000|s<<10|u>>12&0x3ff))
		binary.LittleEndian.PutUint16(b[2:], uint16(0xd000|j1<<13|j2<<11|u>>1&0x7ff))
	case TransformARM:
		binary.LittleEndian.PutUint32(b, 0xeb000000|uint32(d-8)>>2&0xffffff)
	case TransformAArch64:
		binary.LittleEndian.PutUint32(b, 0x94000000|u>>2&0x3ffffff)
	case TransformRV32, TransformRV64:
		binary.LittleEndian.PutUint32(b, 0xef|u>>20&1<<31|u>>1&0x3ff<<21|u>>11&1<<20|u>>12&0xff<<12)
	case TransformX86_64:
		b[0] = 0xe8
		binary.LittleEndian.PutUint32(b[1:], uint32(d-5))
	}
}

// grown returns the next version: code inserted in a few functions near the
// start, so that most calls and pointers change.
func (p *program) grown(rng *rand.Rand) *program {
	q := *p
	q.funcs = append([][]byte(nil), p.funcs...)
	q.calls = append([][]call(nil), p.calls...)
	for range 3 {
		i := rng.IntN(len(q.funcs) / 4)
		extra := make([]byte, 4*(2+rng.IntN(8)))
		for k := range extra {
			extra[k] = byte(rng.Uint32()) &^ 3
		}
		q.funcs[i] = append(extra, q.funcs[i]...)
		cs := make([]call, len(q.calls[i]))
		for k, c := range q.calls[i] {
			cs[k] = call{c.at + len(extra), c.to}
		}
		q.calls[i] = cs
	}
	return &q
}

var allTransforms = []Transform{TransformNone, TransformThumb2, TransformARM, TransformAArch64, TransformRV32, TransformRV64, TransformX86_64}

func createArch(tb testing.TB, old, next []byte, arch string) ([]byte, Info) {
	tb.Helper()
	var b bytes.Buffer
	info, err := CreateWith(&b, bytes.NewReader(old), int64(len(old)), bytes.NewReader(next), Options{Arch: arch})
	if err != nil {
		tb.Fatal(err)
	}
	return b.Bytes(), info
}

func applyCheck(tb testing.TB, old, patch, next []byte) {
	tb.Helper()
	var out bytes.Buffer
	if _, err := Apply(bytes.NewReader(old), bytes.NewReader(patch), &out); err != nil {
		tb.Fatalf("Apply: %v", err)
	}
	if !bytes.Equal(out.Bytes(), next) {
		tb.Fatalf("Apply wrote %d bytes that differ from the %d-byte target", out.Len(), len(next))
	}
}

// TestTransformsShrinkMovedCode: for every instruction set, a program whose
// code moved is patched round trip, exactly, by a patch much smaller than
// one without the transform, and auto detection picks the set.
func TestTransformsShrinkMovedCode(t *testing.T) {
	for _, tr := range allTransforms[1:] {
		t.Run(tr.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(tr), 1))
			p := newProgram(rng, tr, 400)
			old, next := p.image(), p.grown(rng).image()
			with, info := createArch(t, old, next, tr.String())
			applyCheck(t, old, with, next)
			without, _ := createArch(t, old, next, "none")
			applyCheck(t, old, without, next)
			t.Logf("%s: %d bytes with the transform, %d without (%d-byte image, pointers %v, base %#x)",
				tr, len(with), len(without), len(next), info.TransformFlags != 0, info.ImageBase)
			// Under 0.6 of the patch without the transform (coding 2
			// learns which bytes of a copy change, so shifted references
			// cost less without the transform than they used to).
			if 10*len(with) > 6*len(without) {
				t.Errorf("%s: patch %d bytes, not under 0.6 of the %d without the transform", tr, len(with), len(without))
			}
			if tr != TransformRV64 { // raw RV64 code reads as RV32: the same encodings
				if d := DetectTransform(old); d.Transform != tr && !(tr == TransformARM && d.Transform == TransformThumb2) {
					t.Errorf("auto detected %s (%s)", d.Transform, d.Reason)
				}
			}
		})
	}
}

// TestTransformsRoundTripAnyBytes: whatever the bytes (random, or
// instructions cut in the middle by copies), every transform rebuilds the
// target exactly.
func TestTransformsRoundTripAnyBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	for _, tr := range allTransforms {
		for k := range 6 {
			old := randomBytes(uint64(k), 3000+rng.IntN(3000))
			if k >= 3 { // code of another instruction set
				p := newProgram(rng, allTransforms[1+(k+int(tr))%6], 60)
				old = p.image()
			}
			next := bytes.Clone(old)
			for range 1 + rng.IntN(8) {
				switch at := rng.IntN(len(next)); rng.IntN(3) {
				case 0:
					next = append(next[:at:at], append(randomBytes(uint64(at), rng.IntN(40)), next[at:]...)...)
				case 1:
					next = append(next[:at:at], next[min(len(next), at+rng.IntN(40)):]...)
				default:
					next[at] ^= byte(1 + rng.IntN(255))
				}
			}
			t.Run(fmt.Sprintf("%s/%d", tr, k), func(t *testing.T) {
				patch, _ := createArch(t, old, next, tr.String())
				applyCheck(t, old, patch, next)
			})
		}
	}
}

// TestAddrMapBounded: a map with more runs than maxMapEntries is merged
// down to the limit.
func TestAddrMapBounded(t *testing.T) {
	var recs []record
	size := 0
	for i := range 3 * maxMapEntries {
		n := 100
		if i == 1 {
			n = 1000 // the longest: kept
		}
		recs = append(recs, record{copy: int64(n), insert: int64(1 + i%2)})
		size += n
	}
	m := buildMap(size, recs, 1)
	if len(m.start) == 0 || len(m.start) > maxMapEntries {
		t.Fatalf("%d entries, want 1 to %d", len(m.start), maxMapEntries)
	}
	for k := 1; k < len(m.start); k++ {
		if m.start[k] <= m.start[k-1] {
			t.Fatalf("entry %d starts at %d, after %d", k, m.start[k], m.start[k-1])
		}
	}
	if d := m.delta(150); d != 1 {
		t.Errorf("delta at 150 is %d, want 1 (the second copy, the longest, lands one byte further)", d)
	}
}

// TestRealCodePerArch patches littlefs v2.9.2 → v2.9.3 built for each
// instruction set (testdata/littlefs): detected as that set, rebuilt
// exactly, and at most 0.85 of bsdiff's patch (recorded in the README).
func TestRealCodePerArch(t *testing.T) {
	bsdiff := map[string]int{"thumb2": 839, "rv32": 776, "aarch64": 950, "x86_64": 885}
	want := map[string]Transform{"thumb2": TransformThumb2, "rv32": TransformRV32, "aarch64": TransformAArch64, "x86_64": TransformX86_64}
	for arch, bs := range bsdiff {
		t.Run(arch, func(t *testing.T) {
			old, err := os.ReadFile("../testdata/littlefs/" + arch + "-v2.9.2.bin")
			if err != nil {
				t.Fatal(err)
			}
			next, err := os.ReadFile("../testdata/littlefs/" + arch + "-v2.9.3.bin")
			if err != nil {
				t.Fatal(err)
			}
			patch, info := createArch(t, old, next, "auto")
			applyCheck(t, old, patch, next)
			none, _ := createArch(t, old, next, "none")
			t.Logf("%s: %d bytes (%.2f of bsdiff's %d; %d without the transform)", arch, len(patch), float64(len(patch))/float64(bs), bs, len(none))
			if info.Transform != want[arch] {
				t.Errorf("detected %s (%s)", info.Transform, info.Detected)
			}
			if float64(len(patch)) > 0.85*float64(bs) {
				t.Errorf("patch %d bytes, over 0.85 of bsdiff's %d", len(patch), bs)
			}
		})
	}
}

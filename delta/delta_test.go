package delta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// firmware builds a firmware-like image: Thumb-like code, literal pools of
// absolute addresses into the image, a string table and erased-flash padding.
// Its layout is a list of functions so that a new version can insert code
// and shift everything after it.
type firmware struct {
	load   uint32   // address of byte 0
	funcs  [][]byte // code of each function, literal pool included
	pools  [][]int  // per function, offsets of its literal-pool words
	refs   [][]int  // per pool word, the function it points to
	consts []byte   // a table of constants and strings
}

func newFirmware(rng *rand.Rand, nfuncs int) *firmware {
	f := &firmware{load: 0x08000000}
	vocab := make([]uint16, 64) // instructions used often
	for i := range vocab {
		vocab[i] = uint16(rng.Uint32())
	}
	for range nfuncs {
		n := 16 + rng.IntN(400)
		code := make([]byte, 0, n*2+64)
		for range n {
			ins := vocab[rng.IntN(len(vocab))]
			if rng.IntN(4) == 0 {
				ins = uint16(rng.Uint32())
			}
			code = binary.LittleEndian.AppendUint16(code, ins)
		}
		for len(code)%4 != 0 {
			code = append(code, 0)
		}
		var pool, refs []int
		for range rng.IntN(8) {
			pool = append(pool, len(code))
			refs = append(refs, rng.IntN(nfuncs))
			code = append(code, 0, 0, 0, 0)
		}
		f.funcs = append(f.funcs, code)
		f.pools = append(f.pools, pool)
		f.refs = append(f.refs, refs)
	}
	for i := range 200 {
		f.consts = append(f.consts, []byte("error: sensor "+strings.Repeat("x", i%13)+" failed\x00")...)
		f.consts = binary.LittleEndian.AppendUint32(f.consts, uint32(rng.IntN(1<<20)))
	}
	return f
}

// image lays the functions out and resolves the literal pools.
func (f *firmware) image() []byte {
	addr := make([]uint32, len(f.funcs))
	off := 0
	for i, c := range f.funcs {
		addr[i] = f.load + uint32(off)
		off += len(c)
	}
	var img []byte
	for i, c := range f.funcs {
		start := len(img)
		img = append(img, c...)
		for j, p := range f.pools[i] {
			binary.LittleEndian.PutUint32(img[start+p:], addr[f.refs[i][j]]|1)
		}
	}
	img = append(img, f.consts...)
	for len(img)%1024 != 0 {
		img = append(img, 0xFF)
	}
	return img
}

// next returns a new version: a few functions grow (shifting everything
// after them), one is added, constants and the version string change.
func (f *firmware) next(rng *rand.Rand) *firmware {
	g := &firmware{load: f.load, consts: bytes.Clone(f.consts)}
	for i := range f.funcs {
		g.funcs = append(g.funcs, bytes.Clone(f.funcs[i]))
		g.pools = append(g.pools, f.pools[i])
		g.refs = append(g.refs, f.refs[i])
	}
	for range 3 {
		i := rng.IntN(len(g.funcs))
		extra := make([]byte, 4*(1+rng.IntN(20)))
		for k := range extra {
			extra[k] = byte(rng.Uint32())
		}
		// Insert before the literal pool so that pool offsets move too.
		c := g.funcs[i]
		at := 0
		if len(g.pools[i]) > 0 {
			at = g.pools[i][0]
		}
		g.funcs[i] = append(append(bytes.Clone(c[:at]), extra...), c[at:]...)
		pool := make([]int, len(g.pools[i]))
		for j, p := range g.pools[i] {
			pool[j] = p + len(extra)
		}
		g.pools[i] = pool
	}
	for range 5 {
		binary.LittleEndian.PutUint32(g.consts[rng.IntN(len(g.consts)-4):], rng.Uint32())
	}
	copy(g.consts, "version 2")
	return g
}

func syntheticPair(seed uint64, nfuncs int) (old, next []byte) {
	rng := rand.New(rand.NewPCG(seed, seed))
	f := newFirmware(rng, nfuncs)
	return f.image(), f.next(rng).image()
}

func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 0))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	fwOld, fwNew := syntheticPair(1, 300)
	rnd := randomBytes(2, 100<<10)
	oneByte := bytes.Clone(rnd)
	oneByte[50000]++
	cases := []struct {
		name      string
		old, next []byte
		maxPatch  int // 0: no limit
	}{
		{"both empty", nil, nil, 0},
		{"from empty", nil, []byte("hello, firmware"), 0},
		{"to empty", rnd[:1000], nil, 0},
		{"identical", rnd, rnd, HeaderSize + 64},
		{"one byte changed", rnd, oneByte, HeaderSize + 64},
		{"appended", rnd[:50000], rnd, 0},
		{"truncated", rnd, rnd[:70000], HeaderSize + 64},
		{"unrelated", rnd[:30000], randomBytes(3, 30000), 0},
		{"moved halves", rnd, append(bytes.Clone(rnd[60000:]), rnd[:60000]...), HeaderSize + 64},
		{"erased flash", bytes.Repeat([]byte{0xFF}, 64<<10), append(bytes.Repeat([]byte{0xFF}, 32<<10), rnd[:1024]...), 0},
		{"firmware: code inserted, addresses shifted", fwOld, fwNew, len(fwNew) / 10},
		{"firmware: downgrade", fwNew, fwOld, len(fwOld) / 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			patch := roundTrip(t, c.old, c.next)
			if c.maxPatch > 0 && len(patch) > c.maxPatch {
				t.Errorf("patch is %d bytes, want at most %d", len(patch), c.maxPatch)
			}
			t.Logf("%d -> %d bytes: patch %d bytes", len(c.old), len(c.next), len(patch))
		})
	}
}

// TestRealFirmware round-trips the pairs kept in testdata/firmware and
// checks that each patch is no larger than bsdiff's (sizes in its README).
func TestRealFirmware(t *testing.T) {
	dir := "../testdata/firmware/baseflight-stm32f103"
	bsdiff := map[string]int{ // from ../shared/corpus/firmware/pairs.json
		"2015-03-27.bin 2015-05-13.bin": 4754,
		"2015-05-13.bin 2015-06-27.bin": 4260,
		"2015-06-27.bin 2015-07-11.bin": 4489,
		"2015-07-11.bin 2015-08-27.bin": 7177,
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.bin"))
	if err != nil || len(names) < 2 {
		t.Fatalf("want the images in %s: %v %v", dir, names, err)
	}
	sort.Strings(names)
	for i := 1; i < len(names); i++ {
		key := filepath.Base(names[i-1]) + " " + filepath.Base(names[i])
		t.Run(key, func(t *testing.T) {
			old, err := os.ReadFile(names[i-1])
			if err != nil {
				t.Fatal(err)
			}
			next, err := os.ReadFile(names[i])
			if err != nil {
				t.Fatal(err)
			}
			patch := roundTrip(t, old, next)
			if want, ok := bsdiff[key]; !ok {
				t.Errorf("no bsdiff size recorded for %s", key)
			} else if len(patch) > want {
				t.Errorf("patch is %d bytes, bsdiff's %d", len(patch), want)
			}
		})
	}
}

func mustCreate(tb testing.TB, old, next []byte) []byte {
	tb.Helper()
	var b bytes.Buffer
	if _, err := Create(&b, bytes.NewReader(old), int64(len(old)), bytes.NewReader(next)); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// countingWriter counts what it is given and keeps nothing.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

func TestApplyWrongBase(t *testing.T) {
	old, next := syntheticPair(4, 100)
	patch := mustCreate(t, old, next)
	other := bytes.Clone(old)
	other[len(other)/2] ^= 1
	cases := []struct {
		name string
		base []byte
	}{
		{"other content", other},
		{"shorter", old[:len(old)-1]},
		{"empty", nil},
		{"the target", next},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var w countingWriter
			_, err := Apply(bytes.NewReader(c.base), bytes.NewReader(patch), &w)
			var me *MismatchError
			if !errors.Is(err, ErrBaseMismatch) || !errors.As(err, &me) || me.Result {
				t.Fatalf("err = %v, want a base MismatchError", err)
			}
			if errors.Is(err, ErrResultMismatch) {
				t.Error("a base mismatch also matches ErrResultMismatch")
			}
			if w.n != 0 {
				t.Errorf("wrote %d bytes before refusing the base", w.n)
			}
			if !strings.Contains(err.Error(), "base image") {
				t.Errorf("error %q does not say it is the base", err)
			}
		})
	}
	t.Run("longer, like a flash slot", func(t *testing.T) {
		slot := append(bytes.Clone(old), bytes.Repeat([]byte{0xFF}, 4096)...)
		var out bytes.Buffer
		if _, err := Apply(bytes.NewReader(slot), bytes.NewReader(patch), &out); err != nil || !bytes.Equal(out.Bytes(), next) {
			t.Fatalf("err %v, result equal %v", err, bytes.Equal(out.Bytes(), next))
		}
	})
}

// rewriteHeader changes a patch's header and fixes its CRC (where the
// patch's version, before the change, has it).
func rewriteHeader(patch []byte, change func(h []byte)) []byte {
	p := bytes.Clone(patch)
	crcAt := offCRC
	if p[offVersion] >= 2 {
		crcAt = offCRC2
	}
	change(p[:crcAt])
	binary.LittleEndian.PutUint32(p[crcAt:], crc32.ChecksumIEEE(p[:crcAt]))
	return p
}

// v1Patch makes a version 1 patch, as awsfota before version 2 did.
func v1Patch(old, next []byte) []byte {
	p, _ := encode(old, next, diff(old, next, nil))
	return p
}

// TestVersion1StillApplies applies version 1 patches: the one in testdata,
// made by the awsfota that wrote version 1, and fresh ones.
func TestVersion1StillApplies(t *testing.T) {
	old, err := os.ReadFile("../testdata/firmware/baseflight-stm32f103/2015-03-27.bin")
	if err != nil {
		t.Fatal(err)
	}
	next, err := os.ReadFile("../testdata/firmware/baseflight-stm32f103/2015-05-13.bin")
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile("testdata/v1-2015-03-27-2015-05-13.afdp")
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string][]byte{"testdata": golden, "fresh": v1Patch(old, next)} {
		var out bytes.Buffer
		info, err := Apply(bytes.NewReader(old), bytes.NewReader(p), &out)
		if err != nil || !bytes.Equal(out.Bytes(), next) {
			t.Fatalf("%s: %v (result equal: %v)", name, err, bytes.Equal(out.Bytes(), next))
		}
		if info.Version != 1 || info.PatchSize() != int64(len(p)) {
			t.Errorf("%s: version %d, size %d of %d", name, info.Version, info.PatchSize(), len(p))
		}
	}
}

func TestApplyResultMismatch(t *testing.T) {
	old, next := syntheticPair(5, 100)
	patch := rewriteHeader(mustCreate(t, old, next), func(h []byte) { h[offResultSum] ^= 0x80 })
	var w countingWriter
	_, err := Apply(bytes.NewReader(old), bytes.NewReader(patch), &w)
	var me *MismatchError
	if !errors.Is(err, ErrResultMismatch) || !errors.As(err, &me) || !me.Result {
		t.Fatalf("err = %v, want a result MismatchError", err)
	}
	if w.n != int64(len(next)) {
		t.Errorf("wrote %d bytes, want %d", w.n, len(next))
	}
}

// TestApplyDamaged applies every truncation of a patch and patches with one
// flipped byte: each must fail (or, for a flip the coder absorbs, produce
// the right result) without writing past the declared size.
func TestApplyDamaged(t *testing.T) {
	old, next := syntheticPair(6, 40)
	patch := mustCreate(t, old, next)
	check := func(t *testing.T, p []byte) error {
		t.Helper()
		var w countingWriter
		_, err := Apply(bytes.NewReader(old), bytes.NewReader(p), &w)
		if w.n > int64(len(next)) {
			t.Fatalf("wrote %d bytes, more than the result's %d", w.n, len(next))
		}
		return err
	}
	for n := range len(patch) {
		err := check(t, patch[:n])
		if err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(patch))
		}
		if n >= HeaderSize && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d: %v, want ErrCorrupt", n, err)
		}
	}
	if err := check(t, append(bytes.Clone(patch), 0)); err != nil {
		t.Errorf("a byte after the patch: %v (Apply reads no further than the body)", err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	flips := 2000
	if raceEnabled {
		flips = 200 // the race detector makes each Apply many times slower
	}
	for range flips {
		p := bytes.Clone(patch)
		p[HeaderSize+rng.IntN(len(p)-HeaderSize)] ^= byte(1 + rng.IntN(255))
		if err := check(t, p); err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrResultMismatch) {
			t.Fatalf("flipped byte: %v", err)
		}
	}
}

func TestParseHeader(t *testing.T) {
	good1 := v1Patch([]byte("old image"), []byte("new image"))[:HeaderSize]
	good := mustCreate(t, []byte("old image"), []byte("new image"))[:HeaderSizeV2]
	set := func(off int, v uint64) func([]byte) {
		return func(h []byte) { binary.LittleEndian.PutUint64(h[off:], v) }
	}
	cases := []struct {
		name string
		b    []byte
		want error
		msg  string
	}{
		{"empty", nil, ErrNotPatch, ""},
		{"one byte", []byte("A"), ErrNotPatch, ""},
		{"MCUboot image", []byte{0x3d, 0xb8, 0xf3, 0x96, 0, 0, 0, 0}, ErrNotPatch, ""},
		{"text", []byte("<html>not a patch at all, but long enough to be a header if it had the magic...........</html>"), ErrNotPatch, ""},
		{"magic only", Magic[:], ErrCorrupt, ""},
		{"v1 short", good1[:HeaderSize-1], ErrCorrupt, ""},
		{"v2 short", good[:HeaderSizeV2-1], ErrCorrupt, ""},
		{"v2 cut to v1's size", good[:HeaderSize], ErrCorrupt, ""},
		{"bad CRC", append(bytes.Clone(good1[:offCRC]), 0, 0, 0, 0), ErrCorrupt, ""},
		{"v2 bad CRC", append(bytes.Clone(good[:offCRC2]), 0, 0, 0, 0), ErrCorrupt, ""},
		{"version 3", rewriteHeader(good, func(h []byte) { h[offVersion] = 3 }), ErrUnsupported, "version 3"},
		{"version 0", rewriteHeader(good1, func(h []byte) { h[offVersion] = 0 }), ErrUnsupported, ""},
		{"coding 0", rewriteHeader(good1, func(h []byte) { h[offCoding] = 0 }), ErrUnsupported, ""},
		{"coding 2 in version 1", rewriteHeader(good1, func(h []byte) { h[offCoding] = 2 }), ErrUnsupported, ""},
		{"v2 coding 3", rewriteHeader(good, func(h []byte) { h[offCoding] = 3 }), ErrUnsupported, "coding 3"},
		{"flags", rewriteHeader(good1, func(h []byte) { h[offFlags] = 1 }), ErrUnsupported, ""},
		{"unknown transform", rewriteHeader(good, func(h []byte) { h[offTransform] = 200 }), ErrUnsupported, "transform id 200"},
		{"transform flags", rewriteHeader(good, func(h []byte) { h[offTransFlags] = 0x80 }), ErrUnsupported, ""},
		{"pointer and relative words", rewriteHeader(good, func(h []byte) { h[offTransFlags] = FlagPointers | FlagRelWords }), nil, ""},
		{"reserved", rewriteHeader(good, func(h []byte) { h[99] = 1 }), ErrUnsupported, ""},
		{"base too large", rewriteHeader(good1, set(offBaseSize, MaxImageSize+1)), ErrCorrupt, ""},
		{"base size negative", rewriteHeader(good, set(offBaseSize, 1<<63)), ErrCorrupt, ""},
		{"result too large", rewriteHeader(good, set(offResultSize, MaxImageSize+1)), ErrCorrupt, ""},
		{"body too large", rewriteHeader(good1, set(offBodySize, MaxBodySize+1)), ErrCorrupt, ""},
		{"largest sizes", rewriteHeader(good1, func(h []byte) {
			set(offBaseSize, MaxImageSize)(h)
			set(offResultSize, MaxImageSize)(h)
			set(offBodySize, MaxBodySize)(h)
		}), nil, ""},
		{"good v1", good1, nil, ""},
		{"good", good, nil, ""},
		{"x86-64 at 0x400000", rewriteHeader(good, func(h []byte) {
			h[offTransform] = byte(TransformX86_64)
			h[offTransFlags] = FlagPointers
			set(offImageBase, 0x400000)(h)
		}), nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := ReadHeader(bytes.NewReader(c.b))
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if err != nil && !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %v, want it to say %q", err, c.msg)
			}
			if err == nil && !bytes.Equal(appendHeader(nil, h), c.b[:h.Size()]) {
				t.Errorf("header does not re-encode to the same bytes")
			}
			h2, err2 := ParseHeader(c.b)
			if (err == nil) != (err2 == nil) || h != h2 {
				t.Errorf("ParseHeader: %+v %v; ReadHeader %+v %v", h2, err2, h, err)
			}
		})
	}
	if _, err := ReadHeader(iotest{}); err == nil || errors.Is(err, ErrCorrupt) {
		t.Errorf("read error: %v, want the reader's error", err)
	}
}

type iotest struct{}

func (iotest) Read([]byte) (int, error) { return 0, io.ErrClosedPipe }

// TestMagicIsDistinct checks the magic against the image kinds a device
// identifies by their first bytes.
func TestMagicIsDistinct(t *testing.T) {
	patch := mustCreate(t, []byte("a"), []byte("b"))
	if !IsPatch(patch) || IsPatch(patch[:3]) {
		t.Fatal("IsPatch")
	}
	if binary.LittleEndian.Uint32(patch) == 0x96f3b83d {
		t.Error("looks like MCUboot")
	}
	if binary.LittleEndian.Uint32(patch[4:]) == 0x7544656d {
		t.Error("looks like an nRF modem delta")
	}
	if binary.LittleEndian.Uint16(patch) == 0x84d2 {
		t.Error("looks like a full modem image")
	}
}

func TestCreateErrors(t *testing.T) {
	if _, err := Create(io.Discard, bytes.NewReader(nil), MaxImageSize+1, bytes.NewReader(nil)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("huge base: %v", err)
	}
	if _, err := Create(io.Discard, bytes.NewReader([]byte("abc")), 10, bytes.NewReader(nil)); err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("base shorter than its size: %v", err)
	}
	if _, err := Create(io.Discard, bytes.NewReader(nil), 0, iotest{}); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("target read error: %v", err)
	}
}

package delta

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"testing"
)

// fuzzBases are the bases FuzzApply's patches apply to: a synthetic image
// and a real one from testdata.
func fuzzBases(f *testing.F) [][]byte {
	old, _ := syntheticPair(10, 20)
	real, err := os.ReadFile("../testdata/firmware/baseflight-stm32f103/2015-03-27.bin")
	if err != nil {
		f.Fatal(err)
	}
	return [][]byte{old, real}
}

// boundedWriter fails the test when more than limit bytes are written.
type boundedWriter struct {
	t     *testing.T
	limit int64
	buf   bytes.Buffer
}

func (w *boundedWriter) Write(p []byte) (int, error) {
	if int64(w.buf.Len()+len(p)) > w.limit {
		w.t.Fatalf("Apply writes %d bytes, past the declared result size %d", w.buf.Len()+len(p), w.limit)
	}
	return w.buf.Write(p)
}

// FuzzApply applies hostile patches: Apply must return an error of the
// package's kinds, never panic, never write past the header's result size,
// and succeed only with the result the header names.
func FuzzApply(f *testing.F) {
	bases := fuzzBases(f)
	_, next := syntheticPair(10, 20)
	real2, err := os.ReadFile("../testdata/firmware/baseflight-stm32f103/2015-05-13.bin")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(byte(0), mustCreate(f, bases[0], next))
	f.Add(byte(0), mustCreate(f, bases[0], nil))
	f.Add(byte(0), mustCreate(f, bases[0], randomBytes(11, 300)))
	f.Add(byte(0), mustCreate(f, bases[0], append(bytes.Clone(bases[0][100:]), bases[0][:100]...)))
	f.Add(byte(1), mustCreate(f, bases[1], real2))
	f.Add(byte(1), mustCreate(f, bases[1], next))
	f.Add(byte(1), []byte("AFDP"))
	f.Add(byte(1), v1Patch(bases[1], real2))
	// Version 2 patches of every transform, with pointers and an address
	// map, applied to a program of their instruction set.
	for _, tr := range allTransforms {
		rng := rand.New(rand.NewPCG(uint64(tr), 3))
		p := newProgram(rng, tr, 12)
		old, next := p.image(), p.grown(rng).image()
		bases = append(bases, old)
		patch, _ := createArch(f, old, next, tr.String())
		f.Add(byte(len(bases)-1), patch)
	}
	f.Fuzz(func(t *testing.T, which byte, patch []byte) {
		base := bases[int(which)%len(bases)]
		h, herr := ParseHeader(patch)
		w := &boundedWriter{t: t, limit: MaxImageSize}
		if herr == nil {
			w.limit = h.ResultSize
		}
		_, err := Apply(bytes.NewReader(base), bytes.NewReader(patch), w)
		if herr != nil && (kind(err) == nil || kind(err) != kind(herr)) {
			t.Fatalf("ParseHeader says %v, Apply %v", herr, err)
		}
		if err == nil {
			if sha256.Sum256(w.buf.Bytes()) != h.ResultSHA256 {
				t.Fatal("Apply succeeded with a result that is not the header's")
			}
			return
		}
		if kind(err) == nil {
			t.Fatalf("error of no known kind: %v", err)
		}
	})
}

// kind returns the package's sentinel that err matches, or nil.
func kind(err error) error {
	for _, k := range []error{ErrNotPatch, ErrUnsupported, ErrCorrupt, ErrBaseMismatch, ErrResultMismatch} {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}

// FuzzReadHeader parses arbitrary bytes: no panic, and a header that parses
// encodes back to the same bytes.
func FuzzReadHeader(f *testing.F) {
	f.Add(mustCreate(f, []byte("old"), []byte("new")))
	f.Add(mustCreate(f, nil, nil))
	f.Add([]byte{0x3d, 0xb8, 0xf3, 0x96})
	f.Add(Magic[:])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ReadHeader(bytes.NewReader(b))
		h2, err2 := ParseHeader(b)
		if (err == nil) != (err2 == nil) || h != h2 {
			t.Fatalf("ReadHeader %+v %v, ParseHeader %+v %v", h, err, h2, err2)
		}
		if err != nil {
			return
		}
		if !bytes.Equal(appendHeader(nil, h), b[:h.Size()]) {
			t.Fatal("header does not re-encode to its bytes")
		}
		if h.BaseSize > MaxImageSize || h.ResultSize > MaxImageSize || h.BodySize > MaxBodySize {
			t.Fatalf("sizes over the limits passed: %+v", h)
		}
	})
}

// FuzzTransforms makes and applies patches between arbitrary images with
// every transform: the result must be the target, byte for byte, whatever
// the bytes (instructions, data that looks like them, cut instructions).
func FuzzTransforms(f *testing.F) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, tr := range allTransforms {
		p := newProgram(rng, tr, 6)
		f.Add(byte(tr), uint64(0x08000000), p.image(), p.grown(rng).image())
	}
	f.Add(byte(TransformThumb2), uint64(0), []byte{0x00, 0xf0, 0x00, 0xd0}, []byte{0, 0, 0x00, 0xf0, 0x00, 0xd0})
	f.Fuzz(func(t *testing.T, tr byte, imageBase uint64, old, next []byte) {
		if len(old) > 2048 || len(next) > 2048 {
			return
		}
		// The transform from tr's low bits; the coding (the literals'
		// model, which transforms do not touch) and the address map's
		// granularity from its high bits.
		h := Header{Version: Version, Coding: CodingRange, Transform: Transform(tr % 8 % transformCount),
			TransformFlags: FlagPointers | FlagRelWords, ImageBase: imageBase}
		if tr&0x80 != 0 {
			h.Coding = CodingMix
		}
		minRun := 1
		if tr&0x40 != 0 {
			minRun = 64
		}
		recs := diff(old, next, nil)
		patch, _ := encodeV2(old, next, recs, h, buildMap(len(old), recs, minRun))
		var out bytes.Buffer
		if _, err := Apply(bytes.NewReader(old), bytes.NewReader(patch), &out); err != nil {
			t.Fatalf("%s: Apply: %v", h.Transform, err)
		}
		if !bytes.Equal(out.Bytes(), next) {
			t.Fatalf("%s: Apply wrote another image", h.Transform)
		}
	})
}

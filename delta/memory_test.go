package delta

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// maxApplyHeap is the bound the design sets on Apply's memory.
const maxApplyHeap = 1 << 20

// largePair makes a base of size bytes and a patch to a target that
// changes one word in 64, inserts code and skips part of the base, from
// records written directly (a suffix array of a large image would take
// longer than the test should).
func largePair(tb testing.TB, size int) (base, patch []byte, target []byte) {
	tb.Helper()
	base = randomBytes(uint64(size), size)
	half, ins, skip := size/2, 4096, 8192
	target = make([]byte, 0, size)
	target = append(target, base[:half]...)
	for i := 0; i+4 <= half; i += 256 {
		target[i] += 0x10 // a shifted address in every literal pool
	}
	target = append(target, randomBytes(9, ins)...)
	target = append(target, base[half+skip:]...)
	recs := []record{
		{copy: int64(half), insert: int64(ins)},
		{seek: int64(skip), copy: int64(size - half - skip)},
	}
	// Version 2 with the Thumb-2 transform, pointer words and an address
	// map as large as a patch may carry, so that Apply's largest tables
	// are all there.
	am := addrMap{start: make([]uint32, maxMapEntries), dlt: make([]int32, maxMapEntries)}
	for k := range am.start {
		am.start[k] = uint32(k * (size / maxMapEntries))
		if am.start[k] >= uint32(half) {
			am.dlt[k] = int32(ins - skip)
		}
	}
	h := Header{Version: Version, Coding: CodingMix, Transform: TransformThumb2, TransformFlags: FlagPointers, ImageBase: 0x08000000}
	patch, _ = encodeV2(base, target, recs, h, am)
	return base, patch, target
}

// applyHeap returns the bytes Apply allocates, and the number of
// allocations, to rebuild a target of the given size.
func applyHeap(tb testing.TB, size int) (heap, allocs uint64) {
	base, patch, target := largePair(tb, size)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var w countingWriter
	if _, err := Apply(bytes.NewReader(base), bytes.NewReader(patch), &w); err != nil {
		tb.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if w.n != int64(len(target)) {
		tb.Fatalf("wrote %d bytes, want %d", w.n, len(target))
	}
	return after.TotalAlloc - before.TotalAlloc, after.Mallocs - before.Mallocs
}

// TestApplyMemoryIsFlat proves Apply's memory does not grow with the image:
// every byte it allocates, for a 1 MiB and a 64 MiB image, is under
// maxApplyHeap, and the two differ by no more than noise.
func TestApplyMemoryIsFlat(t *testing.T) {
	large := 64 << 20
	if testing.Short() || raceEnabled {
		large = 16 << 20
	}
	smallBytes, smallAllocs := applyHeap(t, 1<<20)
	largeBytes, largeAllocs := applyHeap(t, large)
	t.Logf("Apply allocated %d bytes in %d allocations for 1 MiB, %d bytes in %d allocations for %d MiB",
		smallBytes, smallAllocs, largeBytes, largeAllocs, large>>20)
	for _, b := range []uint64{smallBytes, largeBytes} {
		if b > maxApplyHeap {
			t.Errorf("Apply allocated %d bytes, over the %d-byte bound", b, maxApplyHeap)
		}
	}
	if largeBytes > smallBytes+4096 || largeAllocs > smallAllocs+8 {
		t.Errorf("memory grows with the image: %d bytes (%d allocations) for 1 MiB, %d (%d) for %d MiB",
			smallBytes, smallAllocs, largeBytes, largeAllocs, large>>20)
	}
}

// TestApplyAllocsPerRun counts allocations with testing.AllocsPerRun: a
// fixed number, the same for a small and a large image.
func TestApplyAllocsPerRun(t *testing.T) {
	count := func(size int) float64 {
		base, patch, _ := largePair(t, size)
		return testing.AllocsPerRun(3, func() {
			if _, err := Apply(bytes.NewReader(base), bytes.NewReader(patch), &countingWriter{}); err != nil {
				t.Fatal(err)
			}
		})
	}
	small, large := count(256<<10), count(8<<20)
	t.Logf("allocations per Apply: %v for 256 KiB, %v for 8 MiB", small, large)
	if large != small || small > 32 {
		t.Errorf("allocations per Apply: %v for 256 KiB, %v for 8 MiB; want the same small number", small, large)
	}
}

// BenchmarkApplyLarge reports Apply's allocation per image size (B/op
// stays flat while the images grow).
func BenchmarkApplyLarge(b *testing.B) {
	for _, size := range []int{1 << 20, 16 << 20, 64 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			base, patch, _ := largePair(b, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Apply(bytes.NewReader(base), bytes.NewReader(patch), &countingWriter{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchPairs returns the corpus pairs, or the pairs in testdata when the
// corpus is missing.
func benchPairs(b *testing.B) (dir string, pairs []corpusPair) {
	dir = *corpusDir
	if _, err := os.Stat(filepath.Join(dir, "pairs.json")); err != nil {
		b.Logf("firmware corpus not found at %s (pass -corpus DIR): using testdata", dir)
		dir = "../testdata/firmware"
		names, _ := filepath.Glob(filepath.Join(dir, "baseflight-stm32f103", "*.bin"))
		for i := 1; i < len(names); i++ {
			o, _ := filepath.Rel(dir, names[i-1])
			n, _ := filepath.Rel(dir, names[i])
			pairs = append(pairs, corpusPair{Family: "baseflight-stm32f103", Old: o, New: n,
				OldVersion: filepath.Base(o), NewVersion: filepath.Base(n)})
		}
		return dir, pairs
	}
	return dir, loadCorpus(b, dir)
}

func readPair(b *testing.B, dir string, p corpusPair) (old, next []byte) {
	old, err := os.ReadFile(filepath.Join(dir, p.Old))
	if err != nil {
		b.Fatal(err)
	}
	next, err = os.ReadFile(filepath.Join(dir, p.New))
	if err != nil {
		b.Fatal(err)
	}
	return old, next
}

// BenchmarkCorpus creates and applies a patch for each corpus pair,
// reporting the patch size.
func BenchmarkCorpus(b *testing.B) {
	dir, pairs := benchPairs(b)
	for _, p := range pairs {
		old, next := readPair(b, dir, p)
		name := p.Family + "/" + p.OldVersion + "-" + p.NewVersion
		var patch []byte
		b.Run("create/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(next)))
			for b.Loop() {
				patch = mustCreate(b, old, next)
			}
			b.ReportMetric(float64(len(patch)), "patch-bytes")
		})
		b.Run("apply/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(next)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Apply(bytes.NewReader(old), bytes.NewReader(patch), &countingWriter{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

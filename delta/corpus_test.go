//go:build corpus

// The corpus comparison needs the shared corpora, which are not in the
// repository: run it with
//
//	go test -tags corpus ./delta -run TestCorpus -corpus DIR [-cross DIR]
//
// (scripts/bench-delta.sh measures the same pairs against the other tools).

package delta

import (
	"flag"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

var crossDir = flag.String("cross", "../../shared/corpus/cross", "cross-architecture corpus `DIR` (thumb2-/rv32-/aarch64-/x86_64-vX.bin)")

// TestCorpus makes and applies a patch for every pair of the shared
// firmware corpus and compares its size with bsdiff's, as recorded in
// pairs.json: the geometric mean of ours/bsdiff must stay under 0.45.
func TestCorpus(t *testing.T) {
	pairs := loadCorpus(t, *corpusDir)
	var logSum float64
	for _, p := range pairs {
		old, err := os.ReadFile(filepath.Join(*corpusDir, p.Old))
		if err != nil {
			t.Fatal(err)
		}
		next, err := os.ReadFile(filepath.Join(*corpusDir, p.New))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		patch := roundTrip(t, old, next)
		r := float64(len(patch)) / float64(p.Bsdiff)
		logSum += math.Log(r)
		t.Logf("%-34s %-12s -> %-12s %8d %8d  %5.3f  %v", p.Family, p.OldVersion, p.NewVersion, len(patch), p.Bsdiff,
			r, time.Since(start).Round(time.Millisecond))
	}
	g := math.Exp(logSum / float64(len(pairs)))
	t.Logf("geometric mean of ours/bsdiff: %.3f over %d pairs", g, len(pairs))
	if g > 0.45 {
		t.Errorf("geometric mean of ours/bsdiff is %.3f, over 0.45", g)
	}
}

// TestCrossCorpus does the same over the cross-architecture pairs (littlefs
// for Thumb-2, RV32, AArch64 and x86-64), against bsdiff run here: the
// geometric mean must stay under 0.5 and no pair over 0.65.
func TestCrossCorpus(t *testing.T) {
	if _, err := exec.LookPath("bsdiff"); err != nil {
		t.Fatal("bsdiff is needed: apt-get install bsdiff")
	}
	var logSum float64
	n := 0
	for _, arch := range []string{"thumb2", "rv32", "aarch64", "x86_64"} {
		for _, v := range [][2]string{{"v2.7.1", "v2.8.0"}, {"v2.9.2", "v2.9.3"}} {
			a := filepath.Join(*crossDir, arch+"-"+v[0]+".bin")
			b := filepath.Join(*crossDir, arch+"-"+v[1]+".bin")
			old, err := os.ReadFile(a)
			if err != nil {
				t.Fatal(err)
			}
			next, err := os.ReadFile(b)
			if err != nil {
				t.Fatal(err)
			}
			patch := roundTrip(t, old, next)
			bs := filepath.Join(t.TempDir(), "p")
			if out, err := exec.Command("bsdiff", a, b, bs).CombinedOutput(); err != nil {
				t.Fatalf("bsdiff: %v %s", err, out)
			}
			st, err := os.Stat(bs)
			if err != nil {
				t.Fatal(err)
			}
			r := float64(len(patch)) / float64(st.Size())
			logSum += math.Log(r)
			n++
			t.Logf("%-8s %s -> %s %6d %6d  %5.3f", arch, v[0], v[1], len(patch), st.Size(), r)
			if r > 0.65 {
				t.Errorf("%s %s -> %s: %.3f of bsdiff, over 0.65", arch, v[0], v[1], r)
			}
		}
	}
	g := math.Exp(logSum / float64(n))
	t.Logf("geometric mean of ours/bsdiff: %.3f over %d pairs", g, n)
	if g > 0.5 {
		t.Errorf("geometric mean of ours/bsdiff is %.3f, over 0.5", g)
	}
}

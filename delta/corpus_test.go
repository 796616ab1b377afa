//go:build corpus

// The corpus comparison needs the shared firmware corpus, which is not in
// the repository: run it with
//
//	go test -tags corpus ./delta -run TestCorpus -corpus DIR
//
// (scripts/bench-delta.sh measures the same pairs against the other tools).

package delta

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCorpus makes and applies a patch for every pair of the shared corpus
// and compares its size with bsdiff's, as recorded in pairs.json.
func TestCorpus(t *testing.T) {
	pairs := loadCorpus(t, *corpusDir)
	var ours, theirs []int64
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
		t.Logf("%-34s %-12s -> %-12s %8d %8d  %5.1f%%  %v", p.Family, p.OldVersion, p.NewVersion, len(patch), p.Bsdiff,
			100*float64(len(patch))/float64(p.Bsdiff), time.Since(start).Round(time.Millisecond))
		ours = append(ours, int64(len(patch)))
		theirs = append(theirs, p.Bsdiff)
	}
	mo, mb := median(ours), median(theirs)
	t.Logf("median: ours %d, bsdiff %d; total: ours %d, bsdiff %d", mo, mb, sum(ours), sum(theirs))
	if mo > mb {
		t.Errorf("median patch %d is larger than bsdiff's %d", mo, mb)
	}
}

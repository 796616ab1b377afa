package delta

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// corpusDir is the shared firmware corpus (README.md and pairs.json); the
// default is its place beside the repository, ../shared/corpus/firmware.
var corpusDir = flag.String("corpus", "../../shared/corpus/firmware", "firmware corpus `DIR` with pairs.json")

type corpusPair struct {
	Family     string `json:"family"`
	Old        string `json:"old"`
	New        string `json:"new"`
	OldVersion string `json:"old_version"`
	NewVersion string `json:"new_version"`
	Bsdiff     int64  `json:"bsdiff"`
}

// loadCorpus returns the pairs of pairs.json in dir.
func loadCorpus(tb testing.TB, dir string) []corpusPair {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "pairs.json"))
	if os.IsNotExist(err) {
		tb.Fatalf("firmware corpus not found at %s: pass -corpus DIR", dir)
	}
	if err != nil {
		tb.Fatal(err)
	}
	var pj struct {
		Pairs []corpusPair `json:"pairs"`
	}
	if err := json.Unmarshal(b, &pj); err != nil {
		tb.Fatal(err)
	}
	return pj.Pairs
}

// roundTrip creates a patch from old to next, applies it and checks the
// result; it returns the patch.
func roundTrip(tb testing.TB, old, next []byte) []byte {
	tb.Helper()
	var patch bytes.Buffer
	info, err := Create(&patch, bytes.NewReader(old), int64(len(old)), bytes.NewReader(next))
	if err != nil {
		tb.Fatalf("Create: %v", err)
	}
	if info.PatchSize() != int64(patch.Len()) {
		tb.Errorf("Info.PatchSize %d, patch is %d bytes", info.PatchSize(), patch.Len())
	}
	var out bytes.Buffer
	ainfo, err := Apply(bytes.NewReader(old), bytes.NewReader(patch.Bytes()), &out)
	if err != nil {
		tb.Fatalf("Apply: %v", err)
	}
	if !bytes.Equal(out.Bytes(), next) {
		tb.Fatalf("Apply wrote %d bytes that differ from the %d-byte target", out.Len(), len(next))
	}
	info.Detected = ""
	if ainfo != info {
		tb.Errorf("Apply's info %+v differs from Create's %+v", ainfo, info)
	}
	return patch.Bytes()
}

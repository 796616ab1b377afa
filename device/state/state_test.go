package state

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func conformance(t *testing.T, open func() Store) {
	t.Helper()
	s := open()
	if _, err := s.Load(); !errors.Is(err, ErrNoState) {
		t.Fatalf("fresh Load: %v", err)
	}
	for _, rec := range []string{"one", "two", "three", ""} {
		if err := s.Save([]byte(rec)); err != nil {
			t.Fatal(err)
		}
		got, err := s.Load()
		if err != nil || string(got) != rec {
			t.Fatalf("Load = %q %v, want %q", got, err, rec)
		}
	}
}

func TestMem(t *testing.T) {
	m := &Mem{}
	conformance(t, func() Store { return m })
	if m.Saves != 4 {
		t.Fatalf("Saves = %d", m.Saves)
	}
}

func TestDir(t *testing.T) {
	dir := t.TempDir()
	conformance(t, func() Store {
		d, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
	// Reopen: the newest survives and the next save goes to the other copy.
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := d.Load(); err != nil || string(got) != "" {
		t.Fatalf("after reopen: %q %v", got, err)
	}
	if err := d.Save([]byte("four")); err != nil {
		t.Fatal(err)
	}
	d2, _ := OpenDir(dir)
	if got, _ := d2.Load(); string(got) != "four" {
		t.Fatalf("got %q", got)
	}
	if d2.Path() != dir {
		t.Fatal("Path")
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.tmp*"))
	if len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
}

func TestDirFallsBackToOlderCopy(t *testing.T) {
	dir := t.TempDir()
	d, _ := OpenDir(dir)
	if err := d.Save([]byte("older")); err != nil {
		t.Fatal(err)
	}
	if err := d.Save([]byte("newer")); err != nil {
		t.Fatal(err)
	}
	// Tear the newest copy (state.b holds seq 2).
	p := filepath.Join(dir, "state.b")
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, b[:len(b)-2], 0o644); err != nil {
		t.Fatal(err)
	}
	d, _ = OpenDir(dir)
	got, err := d.Load()
	if err != nil || string(got) != "older" {
		t.Fatalf("Load = %q %v, want the older copy", got, err)
	}
	// The next save replaces the torn copy, not the good one.
	if err := d.Save([]byte("newest")); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Load(); string(got) != "newest" {
		t.Fatalf("got %q", got)
	}
	// Flip a bit of the other copy: checksum catches it.
	pa := filepath.Join(dir, "state.a")
	b, _ = os.ReadFile(pa)
	b[len(b)-1] ^= 1
	os.WriteFile(pa, b, 0o644)
	if got, err := d.Load(); err != nil || string(got) != "newest" {
		t.Fatalf("got %q %v", got, err)
	}
	// Both corrupt: a clear error, not a silent reset.
	pb := filepath.Join(dir, "state.b")
	os.WriteFile(pb, []byte("garbage-garbage-garbage"), 0o644)
	if _, err := d.Load(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Load = %v, want ErrCorrupt", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encode([]byte(`{"phase":"downloading"}`), 3))
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, seq, err := decode(b)
		if err != nil {
			return
		}
		if string(encode(rec, seq)) != string(b) {
			t.Fatalf("decode accepted a record that does not re-encode to itself")
		}
	})
}

package staging

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/awsfota/awsfota/device/dfu"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestResumeKeepsOnlyTheCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "image.part")
	img := bytes.Repeat([]byte("0123456789"), 1000)
	s := New(path, 0)
	if err := s.Init(int64(len(img)), 0); err != nil {
		t.Fatal(err)
	}
	s.Write(img[:4000])
	off, err := s.Checkpoint()
	if err != nil || off != 4000 {
		t.Fatalf("checkpoint %d %v", off, err)
	}
	s.Write([]byte("garbage written after the checkpoint"))

	// A restart: a new File on the same path resumes at the checkpoint.
	s2 := New(path, 0)
	if err := s2.Init(int64(len(img)), off); err != nil {
		t.Fatal(err)
	}
	if err := s2.Write(img[4000:]); err != nil {
		t.Fatal(err)
	}
	n, sum, err := s2.Finish()
	want := sha256.Sum256(img)
	if err != nil || n != int64(len(img)) || !bytes.Equal(sum, want[:]) {
		t.Fatalf("finish %d %x %v", n, sum, err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, img) {
		t.Fatal("file content differs")
	}
	// Re-opening the complete file to check it again.
	s3 := New(path, 0)
	if err := s3.Init(int64(len(img)), int64(len(img))); err != nil {
		t.Fatal(err)
	}
	if n, _, err := s3.Finish(); err != nil || n != int64(len(img)) {
		t.Fatalf("re-check %d %v", n, err)
	}
	if err := s3.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reset left the file: %v", err)
	}
	if err := s3.Reset(); err != nil {
		t.Fatalf("second reset: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	s := New(filepath.Join(dir, "a"), 1000)
	var tl *dfu.TooLargeError
	if err := s.Init(1001, 0); !errors.As(err, &tl) || tl.Max != 1000 {
		t.Fatalf("too large: %v", err)
	}
	if err := s.Write([]byte("x")); !errors.Is(err, dfu.ErrNotInitialised) {
		t.Fatalf("write before init: %v", err)
	}
	if err := s.Init(0, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(make([]byte, 1001)); !errors.Is(err, dfu.ErrTooLarge) {
		t.Fatalf("unknown size over the limit: %v", err)
	}
	s = New(filepath.Join(dir, "b"), 0)
	s.Init(10, 0)
	if err := s.Write(make([]byte, 11)); !errors.Is(err, dfu.ErrInvalidImage) {
		t.Fatalf("more than announced: %v", err)
	}
	s.Init(10, 0)
	s.Write(make([]byte, 5))
	if _, _, err := s.Finish(); !errors.Is(err, dfu.ErrInvalidImage) {
		t.Fatalf("short image: %v", err)
	}
	// Resuming past what the file holds (it was lost) fails: start over.
	s2 := New(filepath.Join(dir, "b"), 0)
	if err := s2.Init(10, 8); err == nil {
		t.Fatal("resumed past the end of the file")
	}
	s2.Reset()
	s.Reset()
}

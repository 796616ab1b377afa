package dfu

import (
	"errors"
	"testing"
)

// recTarget records what a Router does with it.
type recTarget struct {
	inits   [][2]int64
	written []byte
	resets  int
	ckpt    int64
}

func (t *recTarget) Init(size, offset int64) error {
	t.inits = append(t.inits, [2]int64{size, offset})
	return nil
}
func (t *recTarget) Write(p []byte) error       { t.written = append(t.written, p...); return nil }
func (t *recTarget) Offset() int64              { return int64(len(t.written)) }
func (t *recTarget) Checkpoint() (int64, error) { return t.ckpt, nil }
func (t *recTarget) Done() (Image, error)       { return Image{Size: int64(len(t.written))}, nil }
func (t *recTarget) Schedule(bool) error        { return nil }
func (t *recTarget) Reset() error               { t.resets++; return nil }

func TestRouterChoosesByFirstBytes(t *testing.T) {
	app, dl := &recTarget{ckpt: 4096}, &recTarget{}
	r := &Router{Targets: map[ImageType]Target{TypeMCUboot: app, TypeDelta: dl}, Resume: TypeMCUboot}
	patch := []byte("AFDP\x01\x01\x00\x00rest-of-patch")
	if err := r.Init(int64(len(patch)), 0); err != nil {
		t.Fatal(err)
	}
	// Bytes arrive in small pieces: the choice waits for IdentifyLen of them.
	for _, c := range patch {
		if err := r.Write([]byte{c}); err != nil {
			t.Fatal(err)
		}
	}
	if r.Kind() != TypeDelta || string(dl.written) != string(patch) || len(app.written) != 0 || dl.inits[0] != [2]int64{int64(len(patch)), 0} {
		t.Fatalf("kind %v, delta got %q, app got %q", r.Kind(), dl.written, app.written)
	}
	if im, err := r.Done(); err != nil || im.Size != int64(len(patch)) {
		t.Fatal(im, err)
	}
	// Resuming at an offset goes to the resumable target.
	if err := r.Init(100000, 8192); err != nil || r.Kind() != TypeMCUboot || app.inits[0] != [2]int64{100000, 8192} {
		t.Fatalf("resume: %v %v", r.Kind(), app.inits)
	}
	if off, _ := r.Checkpoint(); off != 4096 {
		t.Fatal(off)
	}
	r.Reset()
	if app.resets != 1 || dl.resets != 1 {
		t.Fatal("Reset must reach every target")
	}
}

func TestRouterRefusesUnknownTypes(t *testing.T) {
	r := &Router{Targets: map[ImageType]Target{TypeMCUboot: &recTarget{}}}
	r.Init(0, 0)
	if err := r.Write([]byte{0xd2, 0x84, 0, 0, 0, 0, 0, 0}); !errors.Is(err, ErrUnsupportedType) {
		t.Fatalf("modem image on the app: %v", err)
	}
	// A file that is no image at all is an invalid image, not one this
	// device does not support.
	r.Init(0, 0)
	if err := r.Write([]byte("<html><body>")); !errors.Is(err, ErrInvalidImage) || errors.Is(err, ErrUnsupportedType) {
		t.Fatalf("not an image: %v", err)
	}
	r.Init(0, 0)
	r.Write([]byte{1, 2})
	if _, err := r.Done(); !errors.Is(err, ErrInvalidImage) {
		t.Fatalf("two bytes: %v", err)
	}
	if err := r.Init(10, 5); !errors.Is(err, ErrUnsupportedType) {
		t.Fatalf("resume without a resumable target: %v", err)
	}
	if err := (&Router{}).Schedule(false); !errors.Is(err, ErrNotInitialised) {
		t.Fatal(err)
	}
	// After a restart the Resume target schedules what it holds.
	app := &recTarget{}
	if err := (&Router{Targets: map[ImageType]Target{TypeMCUboot: app}, Resume: TypeMCUboot}).Schedule(false); err != nil {
		t.Fatal(err)
	}
}

package deltaslot

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/awsfota/awsfota/delta"
	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/device/dfu/mcubootslot"
	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/mcuboot"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var geo = flash.Geometry{Size: 256 << 10, SectorSize: 4096, WriteAlign: 4}

func image(t *testing.T, seed uint64, n int, ver string, edit func([]byte)) []byte {
	t.Helper()
	body := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 3))
	for i := range body {
		body[i] = byte(r.Uint32() % 7) // compressible, firmware-like
	}
	if edit != nil {
		edit(body)
	}
	v, _ := mcuboot.ParseVersion(ver)
	var b bytes.Buffer
	if _, err := mcuboot.Create(&b, bytes.NewReader(body), int64(n), mcuboot.CreateOptions{Version: v, PadHeader: true}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func patch(t *testing.T, old, next []byte) []byte {
	t.Helper()
	var p bytes.Buffer
	if _, err := delta.Create(&p, bytes.NewReader(old), int64(len(old)), bytes.NewReader(next)); err != nil {
		t.Fatal(err)
	}
	return p.Bytes()
}

func setup(t *testing.T, running []byte) (*flash.Mem, *flash.Mem, *Target) {
	t.Helper()
	primary, _ := flash.NewMem(geo)
	secondary, _ := flash.NewMem(geo)
	primary.WriteAt(running, 0)
	return primary, secondary, New(primary, mcubootslot.NewTarget(secondary, mcubootslot.Options{}))
}

func feed(t *testing.T, tg dfu.Target, p []byte, chunk int) error {
	t.Helper()
	if err := tg.Init(int64(len(p)), 0); err != nil {
		return err
	}
	for len(p) > 0 {
		n := min(chunk, len(p))
		if err := tg.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

func TestApplyIntoSlot(t *testing.T) {
	old := image(t, 1, 60000, "1.0.0", nil)
	next := image(t, 1, 61000, "1.0.1", func(b []byte) { copy(b[3000:], []byte("new code here")) })
	p := patch(t, old, next)
	_, secondary, tg := setup(t, old)
	if err := feed(t, tg, p, 1000); err != nil {
		t.Fatal(err)
	}
	if off, _ := tg.Checkpoint(); off != 0 || tg.Offset() != int64(len(p)) {
		t.Fatalf("checkpoint %d offset %d", off, tg.Offset())
	}
	im, err := tg.Done()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(p)
	if im.Type != dfu.TypeDelta || im.Version != "1.0.1" || im.Size != int64(len(p)) || !bytes.Equal(im.SHA256, sum[:]) || len(im.BootHash) != 32 {
		t.Fatalf("image %+v", im)
	}
	if !bytes.Equal(secondary.Bytes()[:len(next)], next) {
		t.Fatal("the secondary slot does not hold the new image")
	}
	if err := tg.Schedule(false); err != nil {
		t.Fatal(err)
	}
	st, _ := mcuboot.ReadTrailer(secondary, mcuboot.Layout{SlotSize: geo.Size})
	if mcuboot.DecideSwap(mcuboot.TrailerState{}, st) != mcuboot.SwapTest {
		t.Fatal("no swap requested")
	}
}

func TestWrongBaseWritesNothing(t *testing.T) {
	old := image(t, 1, 60000, "1.0.0", nil)
	other := image(t, 2, 60000, "1.0.0", nil)
	next := image(t, 1, 60000, "1.0.1", nil)
	_, secondary, tg := setup(t, other)
	err := feed(t, tg, patch(t, old, next), 512)
	if err == nil {
		_, err = tg.Done()
	}
	if !errors.Is(err, dfu.ErrBaseMismatch) {
		t.Fatalf("err = %v", err)
	}
	if _, err := mcuboot.Parse(secondary, geo.Size); !errors.Is(err, mcuboot.ErrNotImage) {
		t.Fatal("something was written for a patch of another base")
	}
	tg.Reset()
}

func TestDamagedPatches(t *testing.T) {
	old := image(t, 1, 30000, "1.0.0", nil)
	next := image(t, 1, 30000, "1.0.1", func(b []byte) { b[100] ^= 1 })
	p := patch(t, old, next)
	for name, bad := range map[string][]byte{
		"truncated":   p[:len(p)-3],
		"flipped":     append(append([]byte(nil), p[:len(p)/2]...), append([]byte{p[len(p)/2] ^ 0xff}, p[len(p)/2+1:]...)...),
		"trailing":    append(append([]byte(nil), p...), 1, 2, 3),
		"not a patch": bytes.Repeat([]byte{9}, 200),
	} {
		t.Run(name, func(t *testing.T) {
			_, _, tg := setup(t, old)
			err := feed(t, tg, bad, 700)
			if err == nil {
				_, err = tg.Done()
			}
			if !errors.Is(err, dfu.ErrInvalidImage) {
				t.Fatalf("err = %v", err)
			}
			tg.Reset()
		})
	}
}

func TestResetMidPatch(t *testing.T) {
	old := image(t, 1, 30000, "1.0.0", nil)
	p := patch(t, old, image(t, 1, 30000, "1.0.1", func(b []byte) { b[7] = 1 }))
	_, _, tg := setup(t, old)
	tg.Init(int64(len(p)), 0)
	tg.Write(p[:50])
	if err := tg.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := tg.Write(p[50:]); !errors.Is(err, dfu.ErrNotInitialised) {
		t.Fatalf("write after reset: %v", err)
	}
	if err := tg.Init(10, 5); err == nil {
		t.Fatal("resume accepted")
	}
}

package sim

import (
	"bytes"
	"errors"
	"testing"

	"github.com/awsfota/awsfota/device/dfu/mcubootslot"
	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/mcuboot"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var smallGeo = flash.Geometry{Size: 64 * 1024, SectorSize: 4096, WriteAlign: 4}

func slots(t *testing.T, running []byte) (*flash.Mem, *flash.Mem, *Bootloader) {
	t.Helper()
	p, _ := flash.NewMem(smallGeo)
	s, _ := flash.NewMem(smallGeo)
	p.WriteAt(running, 0)
	return p, s, &Bootloader{Primary: p, Secondary: s}
}

func stage(t *testing.T, s *flash.Mem, img []byte, permanent bool) {
	t.Helper()
	tg := mcubootslot.NewTarget(s, mcubootslot.Options{})
	if err := tg.Init(int64(len(img)), 0); err != nil {
		t.Fatal(err)
	}
	if err := tg.Write(img); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Done(); err != nil {
		t.Fatal(err)
	}
	if err := tg.Schedule(permanent); err != nil {
		t.Fatal(err)
	}
}

func running(t *testing.T, p *flash.Mem) (string, bool) {
	t.Helper()
	r, err := mcubootslot.NewPrimary(p, mcubootslot.Options{}).Running()
	if err != nil {
		t.Fatal(err)
	}
	return r.Version, r.Confirmed
}

func TestTestSwapThenConfirm(t *testing.T) {
	old, _ := AppImage("1.0.0", 9000)
	img, _ := AppImage("1.0.1", 20000)
	p, s, b := slots(t, old)
	if res, err := b.Boot(); err != nil || res.Swap != mcuboot.SwapNone {
		t.Fatalf("plain boot: %+v %v", res, err)
	}
	stage(t, s, img, false)
	res, err := b.Boot()
	if err != nil || res.Swap != mcuboot.SwapTest {
		t.Fatalf("boot: %+v %v", res, err)
	}
	if v, ok := running(t, p); v != "1.0.1" || ok {
		t.Fatalf("running %s confirmed=%v", v, ok)
	}
	if !bytes.Equal(p.Bytes()[:len(img)], img) || !bytes.Equal(s.Bytes()[:len(old)], old) {
		t.Fatal("slots not exchanged")
	}
	if err := mcubootslot.NewPrimary(p, mcubootslot.Options{}).Confirm(); err != nil {
		t.Fatal(err)
	}
	res, _ = b.Boot()
	if v, ok := running(t, p); res.Swap != mcuboot.SwapNone || v != "1.0.1" || !ok {
		t.Fatalf("after confirm: %+v %s %v", res, v, ok)
	}
}

func TestUnconfirmedImageReverts(t *testing.T) {
	old, _ := AppImage("1.0.0", 9000)
	img, _ := AppImage("1.0.1", 20000)
	p, s, b := slots(t, old)
	stage(t, s, img, false)
	b.Boot()
	res, err := b.Boot() // no confirm in between
	if err != nil || res.Swap != mcuboot.SwapRevert {
		t.Fatalf("boot: %+v %v", res, err)
	}
	if v, ok := running(t, p); v != "1.0.0" || !ok {
		t.Fatalf("after revert: %s %v", v, ok)
	}
	if res, _ := b.Boot(); res.Swap != mcuboot.SwapNone {
		t.Fatalf("reverted twice: %+v", res)
	}
}

func TestPermanentSwap(t *testing.T) {
	old, _ := AppImage("1.0.0", 9000)
	img, _ := AppImage("2.0.0", 9000)
	p, s, b := slots(t, old)
	stage(t, s, img, true)
	if res, _ := b.Boot(); res.Swap != mcuboot.SwapPerm {
		t.Fatal(res)
	}
	if v, ok := running(t, p); v != "2.0.0" || !ok {
		t.Fatalf("%s %v", v, ok)
	}
	if res, _ := b.Boot(); res.Swap != mcuboot.SwapNone {
		t.Fatal("permanent image reverted")
	}
}

func TestInvalidImageRefused(t *testing.T) {
	old, _ := AppImage("1.0.0", 9000)
	img, _ := AppImage("1.0.1", 9000)
	p, s, b := slots(t, old)
	stage(t, s, img, false)
	// Damage the staged image after the target verified it (a flash fault, or
	// tampering): the bootloader must refuse it.
	blk := make([]byte, 4)
	s.ReadAt(blk, 0x400)
	s.Erase(0, 4096)
	buf := append([]byte(nil), img[:4096]...)
	buf[0x400] ^= 0xff
	s.WriteAt(buf, 0)
	res, err := b.Boot()
	if err != nil || res.Swap != mcuboot.SwapNone || !errors.Is(res.Refused, mcuboot.ErrHashMismatch) {
		t.Fatalf("boot: %+v %v", res, err)
	}
	if v, _ := running(t, p); v != "1.0.0" {
		t.Fatalf("running %s", v)
	}
	if _, err := mcuboot.Parse(s, smallGeo.Size); err == nil {
		t.Fatal("refused image not erased")
	}
}

func TestBrickedDevice(t *testing.T) {
	_, _, b := slots(t, []byte("not an image"))
	if _, err := b.Boot(); !errors.Is(err, ErrNoBootableImage) {
		t.Fatal(err)
	}
}

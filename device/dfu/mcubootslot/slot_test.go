package mcubootslot

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/mcuboot"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var geo = flash.Geometry{Size: 64 * 1024, SectorSize: 4096, WriteAlign: 4}

func makeImage(t *testing.T, n int, ver string) []byte {
	t.Helper()
	payload := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 1))
	for i := range payload {
		payload[i] = byte(r.Uint32())
	}
	v, err := mcuboot.ParseVersion(ver)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := mcuboot.Create(&b, bytes.NewReader(payload), int64(n), mcuboot.CreateOptions{Version: v, PadHeader: true}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func newSlot(t *testing.T) *flash.Mem {
	t.Helper()
	m, err := flash.NewMem(geo)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func writeChunks(t *testing.T, tg *Target, img []byte, chunk int) {
	t.Helper()
	for p := img; len(p) > 0; {
		n := min(chunk, len(p))
		if err := tg.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
}

func TestWriteDoneSchedule(t *testing.T) {
	img := makeImage(t, 20001, "1.0.1")
	slot := newSlot(t)
	// Leave junk from an earlier image and an old swap request behind.
	slot.WriteAt(bytes.Repeat([]byte{0}, 100), 30000)
	l := mcuboot.Layout{SlotSize: geo.Size}
	_, blk := l.MagicBlock()
	slot.WriteAt(blk, geo.Size-16)

	tg := NewTarget(slot, Options{})
	if err := tg.Init(int64(len(img)), 0); err != nil {
		t.Fatal(err)
	}
	if st, _ := mcuboot.ReadTrailer(slot, l); st.Magic != mcuboot.MagicUnset {
		t.Fatal("Init left an old swap request in place")
	}
	writeChunks(t, tg, img, 777)
	if tg.Offset() != int64(len(img)) {
		t.Fatalf("Offset = %d", tg.Offset())
	}
	got, err := tg.Done()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(img)
	if got.Type != dfu.TypeMCUboot || got.Size != int64(len(img)) || !bytes.Equal(got.SHA256, sum[:]) || got.Version != "1.0.1" || len(got.BootHash) != 32 {
		t.Fatalf("Done = %+v", got)
	}
	if !bytes.Equal(slot.Bytes()[:len(img)], img) {
		t.Fatal("slot contents differ from the image")
	}
	if err := tg.Schedule(false); err != nil {
		t.Fatal(err)
	}
	st, _ := mcuboot.ReadTrailer(slot, l)
	if st.Magic != mcuboot.MagicGood || st.ImageOK != mcuboot.FlagUnset || st.SwapInfo != byte(mcuboot.SwapTest) {
		t.Fatalf("trailer after Schedule: %+v", st)
	}
	if mcuboot.DecideSwap(mcuboot.TrailerState{}, st) != mcuboot.SwapTest {
		t.Fatal("bootloader would not test-swap")
	}
	if err := tg.Schedule(false); err != nil {
		t.Fatalf("second Schedule: %v", err)
	}
}

func TestSchedulePermanent(t *testing.T) {
	img := makeImage(t, 1000, "2.0.0")
	slot := newSlot(t)
	tg := NewTarget(slot, Options{})
	tg.Init(0, 0)
	writeChunks(t, tg, img, 4096)
	if _, err := tg.Done(); err != nil {
		t.Fatal(err)
	}
	if err := tg.Schedule(true); err != nil {
		t.Fatal(err)
	}
	st, _ := mcuboot.ReadTrailer(slot, mcuboot.Layout{SlotSize: geo.Size})
	if mcuboot.DecideSwap(mcuboot.TrailerState{}, st) != mcuboot.SwapPerm || st.SwapInfo != byte(mcuboot.SwapPerm) {
		t.Fatalf("trailer %+v", st)
	}
}

func TestResumeFromCheckpoint(t *testing.T) {
	img := makeImage(t, 30000, "1.2.3+4")
	slot := newSlot(t)
	tg := NewTarget(slot, Options{})
	if err := tg.Init(int64(len(img)), 0); err != nil {
		t.Fatal(err)
	}
	writeChunks(t, tg, img[:12345], 1000)
	off, err := tg.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if off%4 != 0 || off > 12345 || off < 12345-3 {
		t.Fatalf("checkpoint %d", off)
	}
	// A new session (after a reboot) resumes from the checkpoint; bytes past
	// it that reached flash are written again, identically.
	tg2 := NewTarget(slot, Options{})
	if err := tg2.Init(int64(len(img)), off); err != nil {
		t.Fatal(err)
	}
	writeChunks(t, tg2, img[off:], 999)
	got, err := tg2.Done()
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != "1.2.3+4" || !bytes.Equal(slot.Bytes()[:len(img)], img) {
		t.Fatal("resumed image differs")
	}
	if err := tg2.Init(int64(len(img)), 3); err == nil {
		t.Fatal("unaligned resume accepted")
	}
}

func TestRefusals(t *testing.T) {
	slot := newSlot(t)
	tg := NewTarget(slot, Options{})
	if err := tg.Write([]byte{1}); !errors.Is(err, dfu.ErrNotInitialised) {
		t.Fatalf("Write before Init: %v", err)
	}
	if _, err := tg.Done(); !errors.Is(err, dfu.ErrNotInitialised) {
		t.Fatalf("Done before Init: %v", err)
	}
	if err := tg.Init(geo.Size, 0); !errors.Is(err, dfu.ErrTooLarge) {
		t.Fatalf("oversized Init: %v", err)
	}
	if tg.MaxImageSize() != geo.Size-4096 {
		t.Fatalf("MaxImageSize = %d", tg.MaxImageSize())
	}
	// Swap-using-move needs one free sector for the move.
	if n := NewTarget(slot, Options{SwapMove: true}).MaxImageSize(); n != geo.Size-2*geo.SectorSize {
		t.Fatalf("MaxImageSize with SwapMove = %d, want %d", n, geo.Size-2*geo.SectorSize)
	}
	// Unknown size: the limit still holds while writing.
	tg.Init(0, 0)
	big := make([]byte, tg.MaxImageSize()+1)
	if err := tg.Write(big); !errors.Is(err, dfu.ErrTooLarge) {
		t.Fatalf("oversized Write: %v", err)
	}
	// More bytes than announced.
	tg.Init(10, 0)
	if err := tg.Write(make([]byte, 11)); !errors.Is(err, dfu.ErrInvalidImage) {
		t.Fatalf("overlong Write: %v", err)
	}
	// A damaged image is refused by Done.
	img := makeImage(t, 5000, "1.0.0")
	img[600] ^= 0x80
	tg.Init(int64(len(img)), 0)
	writeChunks(t, tg, img, 512)
	if _, err := tg.Done(); !errors.Is(err, dfu.ErrInvalidImage) || !errors.Is(err, dfu.ErrHashMismatch) {
		t.Fatalf("damaged image: %v", err)
	}
	// Short image.
	img = makeImage(t, 5000, "1.0.0")
	tg.Init(int64(len(img)), 0)
	writeChunks(t, tg, img[:4000], 512)
	if _, err := tg.Done(); !errors.Is(err, dfu.ErrInvalidImage) {
		t.Fatalf("short image: %v", err)
	}
	// Not an MCUboot image at all.
	tg.Init(100, 0)
	tg.Write(bytes.Repeat([]byte{9}, 100))
	if _, err := tg.Done(); !errors.Is(err, mcuboot.ErrNotImage) {
		t.Fatalf("junk: %v", err)
	}
}

func TestResetMakesUnbootable(t *testing.T) {
	img := makeImage(t, 5000, "1.0.0")
	slot := newSlot(t)
	tg := NewTarget(slot, Options{})
	tg.Init(int64(len(img)), 0)
	writeChunks(t, tg, img, 5000)
	tg.Done()
	tg.Schedule(false)
	if err := tg.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := mcuboot.Parse(slot, geo.Size); !errors.Is(err, mcuboot.ErrNotImage) {
		t.Fatalf("after Reset the slot still parses: %v", err)
	}
	st, _ := mcuboot.ReadTrailer(slot, mcuboot.Layout{SlotSize: geo.Size})
	if st.Magic != mcuboot.MagicUnset {
		t.Fatal("Reset left the swap request")
	}
	if err := tg.Write([]byte{1}); !errors.Is(err, dfu.ErrNotInitialised) {
		t.Fatal("Write after Reset accepted")
	}
}

func TestPrimaryRunningAndConfirm(t *testing.T) {
	img := makeImage(t, 5000, "1.0.0+7")
	slot := newSlot(t)
	p := NewPrimary(slot, Options{})
	if _, err := p.Running(); !errors.Is(err, ErrNoImage) {
		t.Fatalf("empty primary: %v", err)
	}
	slot.WriteAt(img, 0)
	r, err := p.Running()
	if err != nil {
		t.Fatal(err)
	}
	im, hash, _ := mcuboot.VerifyHash(bytes.NewReader(img), int64(len(img)))
	if r.Version != im.Header.Version.String() || !bytes.Equal(r.BootHash, hash) || !r.Confirmed {
		t.Fatalf("Running = %+v", r)
	}
	// Confirm with no trailer magic does nothing.
	if err := p.Confirm(); err != nil {
		t.Fatal(err)
	}
	// As after a test swap: magic good, copy_done set, image_ok unset.
	l := mcuboot.Layout{SlotSize: geo.Size}
	off, blk := l.MagicBlock()
	slot.WriteAt(blk, off)
	slot.WriteAt(l.FlagBlock(1, 4), l.CopyDoneOffset())
	if r, _ := p.Running(); r.Confirmed {
		t.Fatal("image on trial reported confirmed")
	}
	if err := p.Confirm(); err != nil {
		t.Fatal(err)
	}
	r, _ = p.Running()
	if !r.Confirmed {
		t.Fatal("Confirm did not confirm")
	}
	st, _ := mcuboot.ReadTrailer(slot, l)
	if mcuboot.DecideSwap(st, mcuboot.TrailerState{}) != mcuboot.SwapNone {
		t.Fatal("confirmed image would revert")
	}
	if err := p.Confirm(); err != nil {
		t.Fatalf("second Confirm: %v", err)
	}
	// A Confirm cut short by a power loss left image_ok neither erased nor
	// 0x01: MCUboot will not revert, so the image is confirmed.
	slot.Erase(geo.Size-4096, 4096)
	slot.WriteAt(blk, off)
	slot.WriteAt(l.FlagBlock(1, 4), l.CopyDoneOffset())
	slot.WriteAt([]byte{0x41}, l.ImageOKOffset())
	st, _ = mcuboot.ReadTrailer(slot, l)
	if r, _ := p.Running(); !r.Confirmed || mcuboot.DecideSwap(st, mcuboot.TrailerState{}) != mcuboot.SwapNone {
		t.Fatalf("torn image_ok: Running %+v, swap %v", r, mcuboot.DecideSwap(st, mcuboot.TrailerState{}))
	}
	if err := p.Confirm(); err != nil {
		t.Fatalf("Confirm over a torn image_ok: %v", err)
	}
	slot.Erase(geo.Size-4096, 4096)
	slot.WriteAt([]byte{1, 2, 3}, l.MagicOffset())
	if err := p.Confirm(); err == nil {
		t.Fatal("Confirm with a damaged trailer succeeded")
	}
}

func TestInitCompleteForRecheck(t *testing.T) {
	img := makeImage(t, 4001, "1.0.0")
	slot := newSlot(t)
	tg := NewTarget(slot, Options{})
	tg.Init(int64(len(img)), 0)
	writeChunks(t, tg, img, 1000)
	if _, err := tg.Done(); err != nil {
		t.Fatal(err)
	}
	// After a reboot the agent re-checks the complete image.
	tg2 := NewTarget(slot, Options{})
	if err := tg2.Init(int64(len(img)), int64(len(img))); err != nil {
		t.Fatal(err)
	}
	if got, err := tg2.Done(); err != nil || got.Size != int64(len(img)) {
		t.Fatalf("re-check: %+v %v", got, err)
	}
}

func TestScheduleRepairsTornTrailer(t *testing.T) {
	img := makeImage(t, 3000, "1.0.1")
	slot := newSlot(t)
	tg := NewTarget(slot, Options{})
	tg.Init(int64(len(img)), 0)
	writeChunks(t, tg, img, 1000)
	if _, err := tg.Done(); err != nil {
		t.Fatal(err)
	}
	l := mcuboot.Layout{SlotSize: geo.Size}
	off, blk := l.MagicBlock()
	slot.WriteAt(blk[:5], off) // a power cut tore the first attempt
	if st, _ := mcuboot.ReadTrailer(slot, l); st.Magic != mcuboot.MagicBad {
		t.Fatal("setup: magic not torn")
	}
	if err := tg.Schedule(false); err != nil {
		t.Fatal(err)
	}
	st, _ := mcuboot.ReadTrailer(slot, l)
	if mcuboot.DecideSwap(mcuboot.TrailerState{}, st) != mcuboot.SwapTest {
		t.Fatalf("trailer after repair %+v", st)
	}
	if !bytes.Equal(slot.Bytes()[:len(img)], img) {
		t.Fatal("repairing the trailer touched the image")
	}
}

func signedImage(t *testing.T, n int, ver string, key *mcuboot.PrivateKey, counter *uint32) []byte {
	t.Helper()
	v, err := mcuboot.ParseVersion(ver)
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte{0xa5, 0x17, 0x3c}, n/3+1)[:n]
	var b bytes.Buffer
	if _, err := mcuboot.Create(&b, bytes.NewReader(payload), int64(n), mcuboot.CreateOptions{
		Version: v, PadHeader: true, Key: key, SecurityCounter: counter}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestDoneVerifiesSignatures(t *testing.T) {
	trusted, err := mcuboot.GenerateKey(mcuboot.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	other, err := mcuboot.GenerateKey(mcuboot.KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	seven := uint32(7)
	good := signedImage(t, 9000, "1.2.3", trusted, &seven)
	// An attacker who changes the body and fixes the hash cannot re-sign.
	rehashed := bytes.Clone(good)
	rehashed[0x300] ^= 0xff
	im, err := mcuboot.Parse(bytes.NewReader(rehashed), int64(len(rehashed)))
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := mcuboot.HashRegion(bytes.NewReader(rehashed), im.Header)
	h, _ := im.Find(mcuboot.TLVSHA256)
	copy(rehashed[h.Offset+4:], sum)
	flipped := bytes.Clone(good)
	flipped[0x300] ^= 0xff

	cases := []struct {
		name string
		img  []byte
		keys []*mcuboot.PublicKey
		want error // besides dfu.ErrInvalidImage; nil: accepted
	}{
		{"signed by the trusted key", good, []*mcuboot.PublicKey{trusted.Public()}, nil},
		{"trusted among others", good, []*mcuboot.PublicKey{other.Public(), trusted.Public()}, nil},
		{"unsigned", makeImage(t, 9000, "1.2.3"), []*mcuboot.PublicKey{trusted.Public()}, dfu.ErrUnsigned},
		{"signed by another key", signedImage(t, 9000, "1.2.3", other, nil), []*mcuboot.PublicKey{trusted.Public()}, dfu.ErrBadSignature},
		{"body changed, hash fixed", rehashed, []*mcuboot.PublicKey{trusted.Public()}, dfu.ErrBadSignature},
		{"body changed", flipped, []*mcuboot.PublicKey{trusted.Public()}, dfu.ErrHashMismatch},
		// Without keys, as today: the hash only.
		{"no keys, another key's signature", signedImage(t, 9000, "1.2.3", other, nil), nil, nil},
		{"no keys, unsigned", makeImage(t, 9000, "1.2.3"), nil, nil},
		{"no keys, body changed", flipped, nil, dfu.ErrHashMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tg := NewTarget(newSlot(t), Options{Keys: c.keys})
			if err := tg.Init(int64(len(c.img)), 0); err != nil {
				t.Fatal(err)
			}
			writeChunks(t, tg, c.img, 1000)
			got, err := tg.Done()
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if c.keys != nil && (got.SecurityCounter == nil || *got.SecurityCounter != 7) {
					t.Fatalf("security counter %v", got.SecurityCounter)
				}
				return
			}
			if !errors.Is(err, dfu.ErrInvalidImage) || !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			for _, other := range []error{dfu.ErrHashMismatch, dfu.ErrBadSignature, dfu.ErrUnsigned} {
				if other != c.want && errors.Is(err, other) {
					t.Fatalf("err %v also wraps %v", err, other)
				}
			}
		})
	}
}

func TestRunningSecurityCounter(t *testing.T) {
	slot := newSlot(t)
	p := NewPrimary(slot, Options{})
	slot.WriteAt(makeImage(t, 3000, "1.0.0"), 0)
	if r, err := p.Running(); err != nil || r.SecurityCounter != nil {
		t.Fatalf("no SEC_CNT: %+v %v", r, err)
	}
	n := uint32(0x01000005)
	slot.Erase(0, geo.Size)
	slot.WriteAt(signedImage(t, 3000, "1.0.5", nil, &n), 0)
	if r, err := p.Running(); err != nil || r.SecurityCounter == nil || *r.SecurityCounter != n || r.Version != "1.0.5" {
		t.Fatalf("SEC_CNT: %+v %v", r, err)
	}
}

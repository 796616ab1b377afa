package mcuboot

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// vectors are MCUboot imgtool's, copied unchanged from the shared test data.
const vectors = "../testdata/mcuboot"

func TestCreateWithoutPadHeader(t *testing.T) {
	payload := append(make([]byte, 0x200), bytes.Repeat([]byte{7}, 100)...)
	var out bytes.Buffer
	im, err := Create(&out, bytes.NewReader(payload), int64(len(payload)), CreateOptions{Version: Version{Major: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if im.Header.ImageSize != 100 || out.Len() != 0x200+100+40 {
		t.Fatalf("image size %d, output %d", im.Header.ImageSize, out.Len())
	}
	if _, _, err := VerifyHash(bytes.NewReader(out.Bytes()), int64(out.Len())); err != nil {
		t.Fatal(err)
	}
	payload[40] = 1
	if _, err := Create(&out, bytes.NewReader(payload), int64(len(payload)), CreateOptions{}); err == nil || !strings.Contains(err.Error(), "byte 40") {
		t.Fatalf("non-zero header gap: %v", err)
	}
	if _, err := Create(&out, bytes.NewReader(payload[:10]), 10, CreateOptions{}); err == nil {
		t.Fatal("short payload accepted")
	}
}

func TestCreateProtectedAndTooLarge(t *testing.T) {
	payload := bytes.Repeat([]byte{1}, 5000)
	var out bytes.Buffer
	im, err := Create(&out, bytes.NewReader(payload), int64(len(payload)), CreateOptions{
		Version: Version{1, 2, 3, 4}, PadHeader: true, ProtectedTLVs: []TLV{SecurityCounterTLV(7)},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := VerifyHash(bytes.NewReader(out.Bytes()), int64(out.Len()))
	if err != nil {
		t.Fatal(err)
	}
	sc, ok := got.Find(TLVSecCounter)
	if !ok || !bytes.Equal(sc.Value, []byte{7, 0, 0, 0}) || got.Header.ProtectTLVSize != 12 {
		t.Fatalf("SEC_CNT = %+v %v, protect size %d", sc, ok, got.Header.ProtectTLVSize)
	}
	if sc.Offset != im.Protected[0].Offset {
		t.Errorf("offset %d vs %d", sc.Offset, im.Protected[0].Offset)
	}
	_, err = Create(&out, bytes.NewReader(payload), int64(len(payload)), CreateOptions{PadHeader: true, SlotSize: 0x1000, Pad: true})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized image: %v", err)
	}
}

func TestVerifyHashDetectsDamage(t *testing.T) {
	payload := bytes.Repeat([]byte{3}, 4096)
	var out bytes.Buffer
	if _, err := Create(&out, bytes.NewReader(payload), int64(len(payload)), CreateOptions{PadHeader: true}); err != nil {
		t.Fatal(err)
	}
	img := out.Bytes()
	cases := []struct {
		name   string
		mutate func([]byte) []byte
		want   error
	}{
		{"body bit", func(b []byte) []byte { b[0x300] ^= 1; return b }, ErrHashMismatch},
		{"version", func(b []byte) []byte { b[20]++; return b }, ErrHashMismatch},
		{"magic", func(b []byte) []byte { b[0] = 0; return b }, ErrNotImage},
		{"truncated body", func(b []byte) []byte { return b[:0x400] }, ErrTruncated},
		{"truncated tlv", func(b []byte) []byte { return b[:len(b)-5] }, ErrTruncated},
		{"tlv magic", func(b []byte) []byte { b[0x200+4096] = 0; return b }, ErrMalformed},
		{"hdr size", func(b []byte) []byte { b[8], b[9] = 4, 0; return b }, ErrMalformed},
		{"tlv len", func(b []byte) []byte { b[0x200+4096+6] = 200; return b }, ErrMalformed},
		{"tiny", func(b []byte) []byte { return b[:10] }, ErrTruncated},
	}
	for _, c := range cases {
		b := c.mutate(append([]byte(nil), img...))
		_, _, err := VerifyHash(bytes.NewReader(b), int64(len(b)))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestVersion(t *testing.T) {
	good := map[string]Version{"1": {1, 0, 0, 0}, "1.2": {1, 2, 0, 0}, "1.2.3": {1, 2, 3, 0},
		"1.2.3+4": {1, 2, 3, 4}, "255.255.65535+4294967295": {255, 255, 65535, 4294967295}, "0.0.0": {}}
	for s, want := range good {
		v, err := ParseVersion(s)
		if err != nil || v != want {
			t.Errorf("ParseVersion(%q) = %v, %v", s, v, err)
		}
	}
	for _, s := range []string{"", "v1.0.0", "01.0.0", "1.0.0.0", "256.0.0", "1.256", "1.0.65536", "1.0.0+4294967296", "1.0.0+", "a.b.c", "1..0"} {
		if _, err := ParseVersion(s); err == nil {
			t.Errorf("ParseVersion(%q) accepted", s)
		}
	}
	if (Version{1, 0, 1, 0}).String() != "1.0.1" || (Version{1, 0, 1, 9}).String() != "1.0.1+9" {
		t.Error("String")
	}
	ordered := []Version{{0, 9, 9, 9}, {1, 0, 0, 0}, {1, 0, 0, 1}, {1, 0, 1, 0}, {1, 1, 0, 0}, {2, 0, 0, 0}}
	for i := range ordered {
		for j := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := ordered[i].Compare(ordered[j]); got != want {
				t.Errorf("%v.Compare(%v) = %d", ordered[i], ordered[j], got)
			}
		}
	}
}

func TestTrailerLayoutAndSwapTable(t *testing.T) {
	l := Layout{SlotSize: 0x4000}
	if l.MagicOffset() != 0x4000-16 || l.ImageOKOffset() != 0x4000-24 || l.CopyDoneOffset() != 0x4000-32 ||
		l.SwapInfoOffset() != 0x4000-40 || l.SwapSizeOffset() != 0x4000-48 {
		t.Fatal("MA=8 offsets differ from TRAILER.md")
	}
	if l.TrailerSize(4, 0) != 0x630 || l.TrailerSize(8, 0) != 0xc30 {
		t.Fatalf("trailer sizes %#x %#x", l.TrailerSize(4, 0), l.TrailerSize(8, 0))
	}
	l32 := Layout{SlotSize: 0x4000, MaxAlign: 32}
	if m := l32.Magic(); m[0] != 0x20 || m[1] != 0 || m[2] != 0x2d {
		t.Fatalf("MA=32 magic % x", m)
	}
	off, blk := l32.MagicBlock()
	if off != 0x4000-32 || len(blk) != 32 || blk[0] != Erased || !bytes.Equal(blk[16:], l32.Magic()) {
		t.Fatalf("MA=32 magic block at %#x: % x", off, blk)
	}
	if b := l.FlagBlock(1, 8); !bytes.Equal(b, []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) {
		t.Fatalf("FlagBlock = % x", b)
	}
	slot := bytes.Repeat([]byte{Erased}, 0x4000)
	st, err := ReadTrailer(bytes.NewReader(slot), l)
	if err != nil || st.Magic != MagicUnset || st.ImageOK != FlagUnset {
		t.Fatalf("erased trailer = %+v, %v", st, err)
	}
	copy(slot[l.MagicOffset():], l.Magic())
	st, _ = ReadTrailer(bytes.NewReader(slot), l)
	if st.Magic != MagicGood || DecideSwap(TrailerState{}, st) != SwapTest {
		t.Fatalf("pending test: %+v", st)
	}
	slot[l.ImageOKOffset()] = 1
	st, _ = ReadTrailer(bytes.NewReader(slot), l)
	if DecideSwap(TrailerState{}, st) != SwapPerm {
		t.Fatal("perm")
	}
	slot[l.ImageOKOffset()] = 7
	st, _ = ReadTrailer(bytes.NewReader(slot), l)
	if st.ImageOK != FlagBad || DecideSwap(TrailerState{}, st) != SwapNone {
		t.Fatal("bad image_ok must not swap")
	}
	primary := TrailerState{Magic: MagicGood, ImageOK: FlagUnset, CopyDone: FlagSet}
	if DecideSwap(primary, TrailerState{}) != SwapRevert {
		t.Fatal("revert")
	}
	primary.ImageOK = FlagSet
	if DecideSwap(primary, TrailerState{}) != SwapNone {
		t.Fatal("confirmed image reverted")
	}
	slot[l.MagicOffset()] = 0
	st, _ = ReadTrailer(bytes.NewReader(slot), l)
	if st.Magic != MagicBad {
		t.Fatal("bad magic")
	}
	for _, s := range []SwapType{SwapNone, SwapTest, SwapPerm, SwapRevert, SwapFail, 9} {
		if s.String() == "" {
			t.Error("empty String")
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"images/unsigned_1k.bin", "images/ecdsa-p256_1k_prot_multi.bin", "images/ed25519_1k_basic.bin"} {
		b, err := os.ReadFile(filepath.Join(vectors, name))
		if err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		im, _, err := VerifyHash(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if !errors.Is(err, ErrNotImage) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTruncated) &&
				!errors.Is(err, ErrHashMismatch) && !errors.Is(err, ErrNoHash) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if im.Size > int64(len(b)) {
			t.Fatalf("image size %d beyond input %d", im.Size, len(b))
		}
	})
}

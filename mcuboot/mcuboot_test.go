package mcuboot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// vectors are MCUboot imgtool's, copied unchanged from the shared test data.
const vectors = "../testdata/mcuboot"

type manifestImage struct {
	File    string `json:"file"`
	Payload string `json:"payload"`
	Command string `json:"imgtool_command"`
	Header  struct {
		HdrSize        int    `json:"hdr_size"`
		ProtectTLVSize int    `json:"protect_tlv_size"`
		ImgSize        int64  `json:"img_size"`
		Flags          string `json:"flags"`
		Version        struct {
			Major, Minor, Revision int
			Build                  uint32
		} `json:"version"`
	} `json:"header"`
	SHA256TLV    string `json:"sha256_tlv"`
	ImageEnd     int64  `json:"image_end_offset"`
	MustVerify   bool   `json:"must_verify"`
	Padded       bool   `json:"padded"`
	HeaderGapFil any    `json:"header_gap_fill"`
}

func loadManifest(t testing.TB) []manifestImage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectors, "manifest.json"))
	if err != nil {
		t.Fatalf("reading the imgtool vectors: %v", err)
	}
	var m struct {
		Images []manifestImage `json:"images"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m.Images
}

func TestVectorsParseAndHash(t *testing.T) {
	imgs := loadManifest(t)
	if len(imgs) < 29 {
		t.Fatalf("manifest lists %d images", len(imgs))
	}
	for _, v := range imgs {
		t.Run(filepath.Base(v.File), func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(vectors, v.File))
			if err != nil {
				t.Fatal(err)
			}
			im, sum, err := VerifyHash(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatalf("VerifyHash: %v", err)
			}
			h := im.Header
			if int(h.HeaderSize) != v.Header.HdrSize || int(h.ProtectTLVSize) != v.Header.ProtectTLVSize ||
				int64(h.ImageSize) != v.Header.ImgSize {
				t.Errorf("header %+v, manifest %+v", h, v.Header)
			}
			flags, _ := strconv.ParseUint(strings.TrimPrefix(v.Header.Flags, "0x"), 16, 32)
			if h.Flags != uint32(flags) {
				t.Errorf("flags %#x, want %s", h.Flags, v.Header.Flags)
			}
			want := Version{uint8(v.Header.Version.Major), uint8(v.Header.Version.Minor), uint16(v.Header.Version.Revision), v.Header.Version.Build}
			if h.Version != want {
				t.Errorf("version %v, want %v", h.Version, want)
			}
			if hex.EncodeToString(sum) != v.SHA256TLV {
				t.Errorf("hash %x, want %s", sum, v.SHA256TLV)
			}
			if im.Size != v.ImageEnd {
				t.Errorf("image size %d, want %d", im.Size, v.ImageEnd)
			}
		})
	}
}

// imgtool's unsigned images are deterministic, so Create must reproduce them.
func TestCreateReproducesUnsignedVectors(t *testing.T) {
	cases := []struct {
		file, payload, version string
		slot                   int64
		confirm                bool
	}{
		{"images/unsigned_1k.bin", "payloads/payload-1k.bin", "0.0.1", 0x10000, false},
		{"images/unsigned_100k.bin", "payloads/payload-100k.bin", "0.0.2+3", 0x20000, false},
		{"images/unsigned_1k_confirm.bin", "payloads/payload-1k.bin", "0.0.3", 0x4000, true},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(vectors, c.file))
			if err != nil {
				t.Fatal(err)
			}
			payload, err := os.ReadFile(filepath.Join(vectors, c.payload))
			if err != nil {
				t.Fatal(err)
			}
			ver, err := ParseVersion(c.version)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			_, err = Create(&out, bytes.NewReader(payload), int64(len(payload)), CreateOptions{
				Version: ver, HeaderSize: 0x200, PadHeader: true, SlotSize: c.slot, Confirm: c.confirm, Align: 8,
			})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("output differs from imgtool's (%d vs %d bytes, sha %x vs %x)",
					out.Len(), len(want), sha256.Sum256(out.Bytes()), sha256.Sum256(want))
			}
		})
	}
}

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

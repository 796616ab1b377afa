package mcuboot

// Compatibility with MCUboot's imgtool, proven over every entry of
// testdata/mcuboot/manifest.json: parsing, verification, creation and the
// commands imgtool refuses.

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

type vecTLV struct {
	Type       string `json:"type"`
	TypeName   string `json:"type_name"`
	Len        int    `json:"len"`
	DataOffset int64  `json:"data_offset"`
	DataHex    string `json:"data_hex"`
	Decoded    *struct {
		SecurityCounter *uint32 `json:"security_counter"`
		ImageID         *uint8  `json:"image_id"`
		MinVersion      string  `json:"min_version"`
	} `json:"decoded"`
}

type vecArea struct {
	Offset  int64    `json:"offset"`
	Magic   string   `json:"magic"`
	TLVTot  int      `json:"tlv_tot"`
	Entries []vecTLV `json:"entries"`
}

type vecField struct {
	Offset int64  `json:"offset"`
	Len    int    `json:"len"`
	Value  string `json:"value"`
	Hex    string `json:"hex"`
}

type vecImage struct {
	File    string `json:"file"`
	Size    int64  `json:"size"`
	SHA     string `json:"sha256_file"`
	Payload string `json:"payload"`
	Command string `json:"imgtool_command"`
	Header  struct {
		Magic          string   `json:"magic"`
		LoadAddr       string   `json:"load_addr"`
		HdrSize        int      `json:"hdr_size"`
		ProtectTLVSize int      `json:"protect_tlv_size"`
		ImgSize        int64    `json:"img_size"`
		Flags          string   `json:"flags"`
		FlagNames      []string `json:"flag_names"`
		Version        struct {
			Major, Minor, Revision int
			Build                  uint32
		} `json:"version"`
		Pad1 string `json:"pad1"`
	} `json:"header"`
	HeaderGapFill *string `json:"header_gap_fill"`
	PayloadRegion struct {
		Offset, Length int64
	} `json:"payload_region"`
	HashedRegion struct {
		Offset, Length int64
	} `json:"hashed_region"`
	Protected    *vecArea `json:"protected_tlv_area"`
	TLVs         vecArea  `json:"tlv_area"`
	SHA256TLV    string   `json:"sha256_tlv"`
	ImageEnd     int64    `json:"image_end_offset"`
	KeyHash      *string  `json:"key_hash"`
	PublicKeyTLV *string  `json:"public_key_tlv"`
	PublicKeyFmt *string  `json:"public_key_format"`
	Signature    *struct {
		Type    string `json:"type"`
		TLVType string `json:"tlv_type"`
		Len     int    `json:"len"`
		Hex     string `json:"hex"`
	} `json:"signature"`
	MustVerify     bool    `json:"must_verify"`
	VerifyKey      *string `json:"verify_key"`
	WrongKeyChecks []struct {
		Key        string `json:"key"`
		MustVerify bool   `json:"must_verify"`
	} `json:"wrong_key_checks"`
	Padded       bool `json:"padded"`
	Reproducible bool `json:"reproducible_bytes"`
	Trailer      *struct {
		SlotSize        int64     `json:"slot_size"`
		Align           int       `json:"align_option"`
		MaxAlign        int       `json:"max_align"`
		MaxSectors      int       `json:"max_sectors"`
		TrailerSize     int64     `json:"trailer_size_imgtool"`
		TrailerStart    int64     `json:"trailer_start_offset"`
		Magic           vecField  `json:"magic"`
		MagicPadBefore  *vecField `json:"magic_pad_before"`
		ImageOK         vecField  `json:"image_ok"`
		CopyDone        vecField  `json:"copy_done"`
		SwapInfo        vecField  `json:"swap_info"`
		SwapSize        vecField  `json:"swap_size"`
		NonErased       []int64   `json:"non_erased_offsets_between_image_end_and_magic"`
		SecondarySwap   string    `json:"as_secondary_slot_swap_type"`
		ImageEndInSlot  int64     `json:"image_end_offset"`
		FileSizeInSlots int64     `json:"file_size"`
	} `json:"trailer"`
}

type vecTampered struct {
	File        string `json:"file"`
	Size        int64  `json:"size"`
	DerivedFrom string `json:"derived_from"`
	MustVerify  bool   `json:"must_verify"`
	VerifyKey   string `json:"verify_key"`
	Expected    string `json:"expected_failure"`
	Tamper      struct {
		What string `json:"what"`
	} `json:"tamper"`
}

type vecKey struct {
	Type        string `json:"type"`
	SigType     string `json:"signature_type"`
	SigTLV      string `json:"signature_tlv"`
	PrivatePEM  string `json:"private_pem"`
	PublicPEM   string `json:"public_pem"`
	EmbeddedFmt string `json:"embedded_key_format"`
	EmbeddedHex string `json:"embedded_key_der_hex"`
	EmbeddedLen int    `json:"embedded_key_len"`
	KeyHash     string `json:"key_hash_sha256"`
}

type manifest struct {
	Keys     map[string]vecKey `json:"keys"`
	Payloads map[string]struct {
		File   string `json:"file"`
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"payloads"`
	Images         []vecImage    `json:"images"`
	Tampered       []vecTampered `json:"tampered"`
	CreateFailures []struct {
		What    string `json:"what"`
		Command string `json:"command"`
		Error   string `json:"error"`
	} `json:"create_failures"`
	OptionFailures []json.RawMessage `json:"imgtool_option_failures"`
}

func readManifest(t testing.TB) *manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectors, "manifest.json"))
	if err != nil {
		t.Fatalf("reading the imgtool vectors: %v", err)
	}
	var m manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	if len(m.Images) != 29 || len(m.Tampered) != 17 || len(m.Keys) != 4 || len(m.CreateFailures) != 4 {
		t.Fatalf("manifest has %d images, %d tampered, %d keys, %d create failures: not the set the README describes",
			len(m.Images), len(m.Tampered), len(m.Keys), len(m.CreateFailures))
	}
	return &m
}

func vecFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectors, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hexNum(t testing.TB, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		t.Fatalf("manifest number %q: %v", s, err)
	}
	return v
}

// vecKeys loads every key of the manifest: name → public key.
func vecKeys(t testing.TB, m *manifest) map[string]*PublicKey {
	t.Helper()
	out := map[string]*PublicKey{}
	for name, k := range m.Keys {
		pub, err := ParsePublicKeyPEM(vecFile(t, k.PublicPEM))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = pub
	}
	return out
}

func TestVectorKeys(t *testing.T) {
	m := readManifest(t)
	for name, k := range m.Keys {
		t.Run(name, func(t *testing.T) {
			priv, err := ParsePrivateKeyPEM(vecFile(t, k.PrivatePEM))
			if err != nil {
				t.Fatal(err)
			}
			pub, err := ParsePublicKeyPEM(vecFile(t, k.PublicPEM))
			if err != nil {
				t.Fatal(err)
			}
			if !pub.Equal(priv.Public()) {
				t.Fatal("the public PEM is not the private key's public half")
			}
			if pub.Type().String() != k.Type || hex.EncodeToString(pub.Embedded()) != k.EmbeddedHex ||
				len(pub.Embedded()) != k.EmbeddedLen || hex.EncodeToString(pub.Hash()) != k.KeyHash {
				t.Fatalf("%v key: embedded %x, hash %x; manifest %s %s %s", pub.Type(), pub.Embedded(), pub.Hash(), k.Type, k.EmbeddedHex, k.KeyHash)
			}
			if got := fmt.Sprintf("%#02x", pub.Type().SignatureTLV()); got != k.SigTLV {
				t.Errorf("signature TLV %s, manifest %s", got, k.SigTLV)
			}
			// A private key file gives its public half to a verifier.
			if fromPriv, err := ParsePublicKeyPEM(vecFile(t, k.PrivatePEM)); err != nil || !fromPriv.Equal(pub) {
				t.Errorf("public key from the private PEM: %v", err)
			}
			// imgtool: "Cannot sign with a public-only PEM".
			if _, err := ParsePrivateKeyPEM(vecFile(t, k.PublicPEM)); !errors.Is(err, ErrPublicOnly) {
				t.Errorf("signing key from a public PEM: %v", err)
			}
			// Our encodings read back as the same key.
			b, err := priv.MarshalPEM()
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParsePrivateKeyPEM(b)
			if err != nil || !again.Public().Equal(pub) {
				t.Fatalf("private PEM round trip: %v", err)
			}
			b, err = pub.MarshalPEM()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, vecFile(t, k.PublicPEM)) {
				t.Errorf("public PEM differs from imgtool getpub's:\n%s", b)
			}
		})
	}
}

// checkArea compares a parsed TLV area with the manifest's.
func checkArea(t *testing.T, img []byte, name string, got []TLV, want *vecArea, magic uint16) {
	t.Helper()
	if want == nil {
		if len(got) > 0 {
			t.Errorf("%s area: %d TLVs, the manifest has none", name, len(got))
		}
		return
	}
	if m := binary.LittleEndian.Uint16(img[want.Offset:]); fmt.Sprintf("%#04x", m) != want.Magic || m != magic {
		t.Errorf("%s area magic %#04x, manifest %s", name, m, want.Magic)
	}
	if tot := binary.LittleEndian.Uint16(img[want.Offset+2:]); int(tot) != want.TLVTot {
		t.Errorf("%s area tlv_tot %d, manifest %d", name, tot, want.TLVTot)
	}
	if len(got) != len(want.Entries) {
		t.Fatalf("%s area: %d TLVs, manifest %d", name, len(got), len(want.Entries))
	}
	for i, w := range want.Entries {
		g := got[i]
		if fmt.Sprintf("%#02x", g.Type) != w.Type || TLVName(g.Type) != w.TypeName || len(g.Value) != w.Len ||
			g.Offset+4 != w.DataOffset || hex.EncodeToString(g.Value) != w.DataHex {
			t.Errorf("%s TLV %d: type %#02x %s len %d data at %d %x; manifest %s %s len %d at %d %s",
				name, i, g.Type, TLVName(g.Type), len(g.Value), g.Offset+4, g.Value, w.Type, w.TypeName, w.Len, w.DataOffset, w.DataHex)
		}
	}
}

// TestVectorImages parses every imgtool image to the manifest's fields and
// verifies it as the manifest says: with its key, with all keys, and not
// with the wrong keys.
func TestVectorImages(t *testing.T) {
	m := readManifest(t)
	keys := vecKeys(t, m)
	var all []*PublicKey
	for _, k := range keys {
		all = append(all, k)
	}
	for _, v := range m.Images {
		t.Run(filepath.Base(v.File), func(t *testing.T) {
			img := vecFile(t, v.File)
			if int64(len(img)) != v.Size || fmt.Sprintf("%x", sha256.Sum256(img)) != v.SHA {
				t.Fatal("the vector file differs from the manifest")
			}
			r := bytes.NewReader(img)
			im, err := Parse(r, int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			h := im.Header
			if hexNum(t, v.Header.Magic) != ImageMagic || uint64(h.LoadAddr) != hexNum(t, v.Header.LoadAddr) ||
				int(h.HeaderSize) != v.Header.HdrSize || int(h.ProtectTLVSize) != v.Header.ProtectTLVSize ||
				int64(h.ImageSize) != v.Header.ImgSize || uint64(h.Flags) != hexNum(t, v.Header.Flags) ||
				uint64(binary.LittleEndian.Uint32(img[28:])) != hexNum(t, v.Header.Pad1) {
				t.Errorf("header %+v, manifest %+v", h, v.Header)
			}
			if got := FlagNames(h.Flags); fmt.Sprint(got) != fmt.Sprint(v.Header.FlagNames) {
				t.Errorf("flag names %v, manifest %v", got, v.Header.FlagNames)
			}
			if want := (Version{uint8(v.Header.Version.Major), uint8(v.Header.Version.Minor), uint16(v.Header.Version.Revision), v.Header.Version.Build}); h.Version != want {
				t.Errorf("version %v, manifest %v", h.Version, want)
			}
			hb, _ := h.MarshalBinary()
			if !bytes.Equal(hb, img[:HeaderLen]) {
				t.Error("the header does not encode back to the same bytes")
			}
			switch gap := img[HeaderLen:h.HeaderSize]; {
			case v.HeaderGapFill == nil:
				if len(gap) != 0 {
					t.Errorf("header gap of %d bytes, the manifest has none", len(gap))
				}
			default:
				fill := byte(hexNum(t, *v.HeaderGapFill))
				if !bytes.Equal(gap, bytes.Repeat([]byte{fill}, len(gap))) {
					t.Errorf("header gap is not all %#02x", fill)
				}
			}
			payload := vecFile(t, v.Payload)
			if v.PayloadRegion.Offset != int64(h.HeaderSize) || v.PayloadRegion.Length != int64(h.ImageSize) ||
				!bytes.HasSuffix(payload, img[h.HeaderSize:int64(h.HeaderSize)+int64(h.ImageSize)]) {
				t.Error("the body is not the payload")
			}
			if v.HashedRegion.Offset != 0 || v.HashedRegion.Length != h.HashedLen() {
				t.Errorf("hashed region %d, manifest %+v", h.HashedLen(), v.HashedRegion)
			}
			checkArea(t, img, "protected", im.Protected, v.Protected, ProtTLVInfoMagic)
			checkArea(t, img, "unprotected", im.Unprotected, &v.TLVs, TLVInfoMagic)
			if im.Size != v.ImageEnd {
				t.Errorf("image size %d, manifest %d", im.Size, v.ImageEnd)
			}
			// Decoded protected TLVs.
			var wantCounter *uint32
			var wantDeps []Dependency
			if v.Protected != nil {
				for _, e := range v.Protected.Entries {
					switch {
					case e.Decoded != nil && e.Decoded.SecurityCounter != nil:
						wantCounter = e.Decoded.SecurityCounter
					case e.Decoded != nil && e.Decoded.ImageID != nil:
						ver, err := ParseVersion(e.Decoded.MinVersion)
						if err != nil {
							t.Fatal(err)
						}
						wantDeps = append(wantDeps, Dependency{*e.Decoded.ImageID, ver})
					}
				}
			}
			if n, ok := im.SecurityCounter(); ok != (wantCounter != nil) || (ok && n != *wantCounter) {
				t.Errorf("security counter %d %v, manifest %v", n, ok, wantCounter)
			}
			if deps, err := im.Dependencies(); err != nil || fmt.Sprint(deps) != fmt.Sprint(wantDeps) {
				t.Errorf("dependencies %v %v, manifest %v", deps, err, wantDeps)
			}
			// Key and signature TLVs.
			tlvHex := func(typ uint16) *string {
				if tl, ok := im.Find(typ); ok {
					s := hex.EncodeToString(tl.Value)
					return &s
				}
				return nil
			}
			if s := tlvHex(TLVSHA256); s == nil || *s != v.SHA256TLV {
				t.Errorf("SHA256 TLV %v, manifest %s", s, v.SHA256TLV)
			}
			if fmt.Sprint(deref(tlvHex(TLVKeyHash))) != fmt.Sprint(deref(v.KeyHash)) || fmt.Sprint(deref(tlvHex(TLVPubKey))) != fmt.Sprint(deref(v.PublicKeyTLV)) {
				t.Errorf("key TLVs %v %v, manifest %v %v", deref(tlvHex(TLVKeyHash)), deref(tlvHex(TLVPubKey)), deref(v.KeyHash), deref(v.PublicKeyTLV))
			}
			if v.Signature != nil {
				sig, ok := im.Find(uint16(hexNum(t, v.Signature.TLVType)))
				if !ok || len(sig.Value) != v.Signature.Len || hex.EncodeToString(sig.Value) != v.Signature.Hex {
					t.Errorf("signature TLV %s missing or different", v.Signature.TLVType)
				}
			}
			if v.Trailer != nil {
				checkTrailer(t, img, im, v)
			} else if v.Padded || im.Size != int64(len(img)) {
				t.Errorf("padded %v, image %d bytes in a %d-byte file, but no trailer in the manifest", v.Padded, im.Size, len(img))
			}

			// Verification.
			if !v.MustVerify {
				t.Fatal("every image in images/ must verify")
			}
			hashOnly, err := Verify(r, int64(len(img)), nil)
			if err != nil || hex.EncodeToString(hashOnly.Hash) != v.SHA256TLV || hashOnly.Key != nil {
				t.Fatalf("hash-only verification: %v", err)
			}
			if v.VerifyKey == nil {
				if _, err := Verify(r, int64(len(img)), all); !errors.Is(err, ErrUnsigned) {
					t.Errorf("unsigned image with trusted keys: %v", err)
				}
				return
			}
			want := keys[*v.VerifyKey]
			for _, set := range [][]*PublicKey{{want}, all} {
				got, err := Verify(r, int64(len(img)), set)
				if err != nil {
					t.Fatalf("verify with %d keys: %v", len(set), err)
				}
				if !got.Key.Equal(want) {
					t.Errorf("verified with %v, want %s", got.Key.Type(), *v.VerifyKey)
				}
			}
			if len(v.WrongKeyChecks) == 0 {
				t.Error("no wrong-key checks in the manifest")
			}
			for _, w := range v.WrongKeyChecks {
				_, err := Verify(r, int64(len(img)), []*PublicKey{keys[w.Key]})
				if w.MustVerify || !errors.Is(err, ErrKeyNotTrusted) || !errors.Is(err, ErrBadSignature) {
					t.Errorf("verify with the wrong key %s: %v", w.Key, err)
				}
			}
		})
	}
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func checkTrailer(t *testing.T, img []byte, im *Image, v vecImage) {
	t.Helper()
	tr := v.Trailer
	if int64(len(img)) != tr.SlotSize || tr.FileSizeInSlots != tr.SlotSize || tr.ImageEndInSlot != im.Size {
		t.Fatalf("padded file of %d bytes, slot %#x", len(img), tr.SlotSize)
	}
	r := bytes.NewReader(img)
	l, ok := DetectLayout(r, tr.SlotSize)
	if !ok || l.MaxAlign != tr.MaxAlign {
		t.Fatalf("DetectLayout = %+v %v, manifest max_align %d", l, ok, tr.MaxAlign)
	}
	if l.TrailerSize(tr.Align, tr.MaxSectors) != tr.TrailerSize || tr.SlotSize-tr.TrailerSize != tr.TrailerStart {
		t.Errorf("trailer size %#x, imgtool %#x", l.TrailerSize(tr.Align, tr.MaxSectors), tr.TrailerSize)
	}
	if l.MagicOffset() != tr.Magic.Offset || hex.EncodeToString(l.Magic()) != tr.Magic.Hex ||
		hex.EncodeToString(img[tr.Magic.Offset:tr.Magic.Offset+16]) != tr.Magic.Hex {
		t.Errorf("magic at %d % x, manifest %d %s", l.MagicOffset(), l.Magic(), tr.Magic.Offset, tr.Magic.Hex)
	}
	if l.ImageOKOffset() != tr.ImageOK.Offset || l.CopyDoneOffset() != tr.CopyDone.Offset ||
		l.SwapInfoOffset() != tr.SwapInfo.Offset || l.SwapSizeOffset() != tr.SwapSize.Offset {
		t.Errorf("offsets image_ok %d copy_done %d swap_info %d swap_size %d; manifest %d %d %d %d",
			l.ImageOKOffset(), l.CopyDoneOffset(), l.SwapInfoOffset(), l.SwapSizeOffset(),
			tr.ImageOK.Offset, tr.CopyDone.Offset, tr.SwapInfo.Offset, tr.SwapSize.Offset)
	}
	if tr.MagicPadBefore != nil {
		off, blk := l.MagicBlock()
		if off != tr.MagicPadBefore.Offset || !bytes.Equal(img[off:off+int64(len(blk))], blk) {
			t.Errorf("magic block at %d, manifest pad at %d", off, tr.MagicPadBefore.Offset)
		}
	}
	st, err := ReadTrailer(r, l)
	if err != nil {
		t.Fatal(err)
	}
	wantOK := FlagUnset
	if hexNum(t, tr.ImageOK.Value) == 1 {
		wantOK = FlagSet
	}
	if st.Magic != MagicGood || st.ImageOK != wantOK || st.CopyDone != FlagUnset ||
		uint64(st.SwapInfo) != hexNum(t, tr.SwapInfo.Value) || uint64(st.SwapSize) != hexNum(t, tr.SwapSize.Value) {
		t.Errorf("trailer %+v, manifest image_ok %s swap_info %s swap_size %s", st, tr.ImageOK.Value, tr.SwapInfo.Value, tr.SwapSize.Value)
	}
	if got := strings.ToUpper(DecideSwap(TrailerState{}, st).String()); got != tr.SecondarySwap {
		t.Errorf("as the secondary slot: swap %s, manifest %s", got, tr.SecondarySwap)
	}
	var nonErased []int64
	for off := im.Size; off < l.MagicOffset(); off++ {
		if img[off] != Erased {
			nonErased = append(nonErased, off)
		}
	}
	if fmt.Sprint(nonErased) != fmt.Sprint(tr.NonErased) {
		t.Errorf("non-erased bytes between the image and the magic at %v, manifest %v", nonErased, tr.NonErased)
	}
}

// TestVectorTampered: every damaged copy fails with a classified error, and
// the truncated ones also fail as MCUboot would see them in a flash slot
// (the missing bytes read as erased).
func TestVectorTampered(t *testing.T) {
	m := readManifest(t)
	keys := vecKeys(t, m)
	for _, v := range m.Tampered {
		t.Run(filepath.Base(v.File), func(t *testing.T) {
			img := vecFile(t, v.File)
			if int64(len(img)) != v.Size || v.MustVerify {
				t.Fatal("the vector differs from the manifest")
			}
			trusted := []*PublicKey{keys[v.VerifyKey]}
			if v.VerifyKey == "" || trusted[0] == nil {
				trusted = nil // the unsigned image: a hash-only check
			}
			var want, inSlot, hashOnly error
			switch x := v.Expected; {
			case x == "INVALID_HASH":
				want, inSlot, hashOnly = ErrHashMismatch, ErrHashMismatch, ErrHashMismatch
			case x == "INVALID_SIGNATURE":
				want, inSlot = ErrBadSignature, ErrBadSignature
			case strings.HasPrefix(x, "INVALID_SIGNATURE (signature TLV shorter"):
				// The file ends inside the signature: we say so; in a slot the
				// missing bytes are erased and the signature fails.
				want, inSlot, hashOnly = ErrTruncated, ErrBadSignature, ErrTruncated
			case strings.HasPrefix(x, "KEY_NOT_FOUND"):
				want, inSlot = ErrKeyNotTrusted, ErrKeyNotTrusted
			case x == "INVALID_MAGIC":
				want, inSlot, hashOnly = ErrNotImage, ErrNotImage, ErrNotImage
			case x == "INVALID_TLV_INFO_MAGIC":
				want, inSlot, hashOnly = ErrMalformed, ErrMalformed, ErrMalformed
			case strings.HasPrefix(x, "truncated:"):
				// In a slot the TLV info is read from erased flash.
				want, inSlot, hashOnly = ErrTruncated, ErrMalformed, ErrTruncated
			default:
				t.Fatalf("no expectation for %q", x)
			}
			if trusted == nil {
				want, inSlot = hashOnly, hashOnly
			}
			_, err := Verify(bytes.NewReader(img), int64(len(img)), trusted)
			if !errors.Is(err, want) {
				t.Errorf("verify: %v, want %v", err, want)
			}
			if want == ErrBadSignature && errors.Is(err, ErrKeyNotTrusted) {
				t.Errorf("a damaged signature by a trusted key reported as an untrusted key: %v", err)
			}
			slot := append(bytes.Clone(img), bytes.Repeat([]byte{Erased}, 0x10000-len(img))...)
			if _, err := Verify(bytes.NewReader(slot), int64(len(slot)), trusted); !errors.Is(err, inSlot) {
				t.Errorf("verify in a slot: %v, want %v", err, inSlot)
			}
			// Without keys only the hash is checked: a wrong signature or key
			// goes unnoticed — the reason devices must be given keys.
			_, err = Verify(bytes.NewReader(img), int64(len(img)), nil)
			if hashOnly == nil && err != nil || hashOnly != nil && !errors.Is(err, hashOnly) {
				t.Errorf("hash-only verify: %v, want %v", err, hashOnly)
			}
		})
	}
}

// createCase is an imgtool sign command line translated to Create's terms.
type createCase struct {
	opts    CreateOptions
	payload string
	key     string // the --key file, "" for an unsigned image
}

var depRE = regexp.MustCompile(`\(\s*(\d+)\s*,\s*([^)\s]+)\s*\)`)

// shellWords splits a command line as a POSIX shell would for the quoting
// the manifest uses (single and double quotes, no escapes).
func shellWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool
		quote rune
	)
	for _, c := range s {
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(c)
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// translate turns an imgtool sign command line into CreateOptions, loading
// the key it names. Every option of every manifest command is handled; an
// unknown one fails the test so that no vector is silently skipped. Errors
// are those our API gives for what imgtool refuses (a bad version, a
// public-only key).
func translate(t testing.TB, cmd string) (createCase, error) {
	t.Helper()
	words, err := shellWords(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if len(words) < 2 || words[0] != "imgtool" || words[1] != "sign" {
		t.Fatalf("not an imgtool sign command: %q", cmd)
	}
	var (
		c        createCase
		pos      []string
		counter  string
		loadErr  error
		num      = func(s string) int64 { return int64(hexNum(t, s)) }
		versionS string
	)
	for i := 2; i < len(words); i++ {
		w := words[i]
		arg := func() string {
			i++
			if i >= len(words) {
				t.Fatalf("%s needs a value in %q", w, cmd)
			}
			return words[i]
		}
		switch w {
		case "--key", "-k":
			c.key = arg()
		case "--public-key-format":
			f, err := ParseKeyFormat(arg())
			if err != nil {
				t.Fatal(err)
			}
			c.opts.PublicKeyFormat = f
		case "--version", "-v":
			versionS = arg()
		case "--header-size", "-H":
			c.opts.HeaderSize = int(num(arg()))
		case "--pad-header":
			c.opts.PadHeader = true
		case "--slot-size", "-S":
			c.opts.SlotSize = num(arg())
		case "--pad", "--test":
			c.opts.Pad = true
		case "--confirm":
			c.opts.Confirm = true
		case "--align":
			c.opts.Align = int(num(arg()))
		case "--max-align":
			c.opts.MaxAlign = int(num(arg()))
		case "--security-counter", "-s":
			counter = arg()
		case "--dependencies", "-d":
			for _, d := range depRE.FindAllStringSubmatch(arg(), -1) {
				ver, err := ParseVersion(d[2])
				if err != nil {
					t.Fatal(err)
				}
				c.opts.Dependencies = append(c.opts.Dependencies, Dependency{ImageID: uint8(num(d[1])), MinVersion: ver})
			}
		case "--custom-tlv":
			tag, val := uint16(num(arg())), arg()
			b := []byte(val)
			if h, ok := strings.CutPrefix(val, "0x"); ok {
				if b, err = hex.DecodeString(h); err != nil {
					t.Fatal(err)
				}
			}
			c.opts.ProtectedTLVs = append(c.opts.ProtectedTLVs, TLV{Type: tag, Value: b})
		case "--load-addr":
			c.opts.LoadAddr, c.opts.Flags = uint32(num(arg())), c.opts.Flags|FlagRAMLoad
		case "--rom-fixed":
			c.opts.LoadAddr, c.opts.Flags = uint32(num(arg())), c.opts.Flags|FlagROMFixed
		case "--non-bootable":
			c.opts.Flags |= FlagNonBootable
		default:
			if strings.HasPrefix(w, "-") {
				t.Fatalf("the translator does not know imgtool option %s (in %q)", w, cmd)
			}
			pos = append(pos, w)
		}
	}
	if len(pos) != 2 {
		t.Fatalf("want an input and an output file in %q", cmd)
	}
	c.payload = pos[0]
	if c.opts.Version, err = ParseVersion(versionS); err != nil {
		return c, err
	}
	switch counter {
	case "":
	case "auto":
		n := c.opts.Version.SecurityCounter()
		c.opts.SecurityCounter = &n
	default:
		n := uint32(num(counter))
		c.opts.SecurityCounter = &n
	}
	if c.key != "" {
		c.opts.Key, loadErr = ParsePrivateKeyPEM(vecFile(t, c.key))
	}
	return c, loadErr
}

// replaySigner stands in for a randomised signer: it returns the signature
// imgtool made, after checking it is asked to sign the same hash. Create then
// has no randomness left, so its output must equal imgtool's byte for byte.
type replaySigner struct {
	crypto.Signer
	digest, sig []byte
}

func (r replaySigner) Sign(_ io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	if !bytes.Equal(digest, r.digest) {
		return nil, fmt.Errorf("asked to sign %x, imgtool signed %x", digest, r.digest)
	}
	return r.sig, nil
}

func create(t *testing.T, c createCase) ([]byte, error) {
	t.Helper()
	payload := vecFile(t, c.payload)
	var out bytes.Buffer
	_, err := Create(&out, bytes.NewReader(payload), int64(len(payload)), c.opts)
	return out.Bytes(), err
}

// TestVectorCreate runs every manifest command through Create. Ed25519 and
// unsigned images must come out byte for byte; ECDSA and RSA ones must equal
// imgtool's everywhere but the signature (proven by replaying imgtool's
// signature through the same code path), and our own signature must verify.
func TestVectorCreate(t *testing.T) {
	m := readManifest(t)
	keys := vecKeys(t, m)
	for _, v := range m.Images {
		t.Run(filepath.Base(v.File), func(t *testing.T) {
			c, err := translate(t, v.Command)
			if err != nil {
				t.Fatal(err)
			}
			if c.payload != v.Payload {
				t.Fatalf("payload %s, manifest %s", c.payload, v.Payload)
			}
			want := vecFile(t, v.File)
			got, err := create(t, c)
			if err != nil {
				t.Fatal(err)
			}
			if v.Reproducible {
				if !bytes.Equal(got, want) {
					t.Fatalf("output differs from imgtool's (%d vs %d bytes, first difference at %d)", len(got), len(want), firstDiff(got, want))
				}
				return
			}
			if c.opts.Key == nil {
				t.Fatal("only signed images are randomised")
			}
			// Our own signature: the image verifies with the key, and only
			// the signature TLV differs from imgtool's.
			ours, err := Verify(bytes.NewReader(got), int64(len(got)), []*PublicKey{keys[*v.VerifyKey]})
			if err != nil {
				t.Fatalf("our image does not verify: %v", err)
			}
			if hex.EncodeToString(ours.Hash) != v.SHA256TLV || len(got) < int(ours.Image.Size) {
				t.Fatalf("our hash %x, imgtool's %s", ours.Hash, v.SHA256TLV)
			}
			theirs, _ := Parse(bytes.NewReader(want), int64(len(want)))
			if len(ours.Image.Unprotected) != len(theirs.Unprotected) {
				t.Fatalf("%d unprotected TLVs, imgtool %d", len(ours.Image.Unprotected), len(theirs.Unprotected))
			}
			for i, tl := range ours.Image.Unprotected {
				if th := theirs.Unprotected[i]; tl.Type != th.Type || tl.Offset != th.Offset || (!isSignatureTLV(tl.Type) && !bytes.Equal(tl.Value, th.Value)) {
					t.Errorf("TLV %d: %#x at %d, imgtool %#x at %d", i, tl.Type, tl.Offset, th.Type, th.Offset)
				}
			}
			// imgtool's signature through the same code: every byte equal.
			sig, _ := theirs.Find(uint16(hexNum(t, v.Signature.TLVType)))
			h, _ := theirs.Find(TLVSHA256)
			c.opts.Key, err = NewPrivateKey(replaySigner{Signer: c.opts.Key.Signer(), digest: h.Value, sig: sig.Value})
			if err != nil {
				t.Fatal(err)
			}
			replayed, err := create(t, c)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(replayed, want) {
				t.Fatalf("with imgtool's signature the output still differs (%d vs %d bytes, first difference at %d)", len(replayed), len(want), firstDiff(replayed, want))
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestVectorCreateFailures: what imgtool refuses, we refuse, for the same
// reason.
func TestVectorCreateFailures(t *testing.T) {
	m := readManifest(t)
	for _, f := range m.CreateFailures {
		t.Run(f.What, func(t *testing.T) {
			var want error
			switch {
			case strings.Contains(f.Error, "exceeds requested size"):
				want = ErrTooLarge
			case strings.Contains(f.Error, "does not start with zeros"):
				want = ErrHeaderNotZero
			case strings.Contains(f.Error, "Invalid version number"):
				want = ErrInvalidVersion
			case strings.Contains(f.Error, "public-only PEM"):
				want = ErrPublicOnly
			default:
				t.Fatalf("no expectation for imgtool's %q", f.Error)
			}
			c, err := translate(t, f.Command)
			if err == nil {
				_, err = create(t, c)
			}
			if !errors.Is(err, want) {
				t.Fatalf("got %v, want %v (imgtool: %s)", err, want, f.Error)
			}
			// imgtool's numbers, where it gives them, are ours too.
			if want == ErrTooLarge && !strings.Contains(err.Error(), "+ trailer (0xc30) exceeds") {
				t.Errorf("message %q, imgtool %q", err, f.Error)
			}
		})
	}
	if len(m.OptionFailures) != 0 {
		t.Errorf("the manifest lists %d imgtool option failures; cover them here", len(m.OptionFailures))
	}
}

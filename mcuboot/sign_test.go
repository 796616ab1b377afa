package mcuboot

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// testKeys are generated once: RSA-3072 takes a while.
var testKeys = sync.OnceValue(func() map[KeyType]*PrivateKey {
	m := map[KeyType]*PrivateKey{}
	for _, typ := range KeyTypes() {
		k, err := GenerateKey(typ)
		if err != nil {
			panic(err)
		}
		m[typ] = k
	}
	return m
})

func mustCreate(t testing.TB, payload []byte, o CreateOptions) []byte {
	t.Helper()
	var out bytes.Buffer
	if _, err := Create(&out, bytes.NewReader(payload), int64(len(payload)), o); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func verifyBytes(b []byte, keys ...*PublicKey) (*Verified, error) {
	return Verify(bytes.NewReader(b), int64(len(b)), keys)
}

func TestSignVerifyEveryKeyType(t *testing.T) {
	payload := bytes.Repeat([]byte("firmware"), 1000)
	keys := testKeys()
	for _, typ := range KeyTypes() {
		for _, format := range []KeyFormat{KeyHash, FullKey} {
			t.Run(typ.String()+"/"+format.String(), func(t *testing.T) {
				k := keys[typ]
				n := uint32(9)
				img := mustCreate(t, payload, CreateOptions{Version: Version{1, 2, 3, 4}, PadHeader: true, Key: k,
					PublicKeyFormat: format, SecurityCounter: &n, SlotSize: 0x10000, Pad: true})
				v, err := verifyBytes(img, k.Public())
				if err != nil {
					t.Fatal(err)
				}
				if !v.Key.Equal(k.Public()) || v.Image.Header.Version != (Version{1, 2, 3, 4}) {
					t.Fatalf("verified %+v", v)
				}
				if c, ok := v.Image.SecurityCounter(); !ok || c != 9 {
					t.Fatalf("security counter %d %v", c, ok)
				}
				var keyTLV uint16 = TLVKeyHash
				if format == FullKey {
					keyTLV = TLVPubKey
				}
				types := []uint16{}
				for _, tl := range v.Image.Unprotected {
					types = append(types, tl.Type)
				}
				if len(types) != 3 || types[0] != TLVSHA256 || types[1] != keyTLV || types[2] != typ.SignatureTLV() {
					t.Fatalf("unprotected TLVs %#x", types)
				}
				// Any other key is refused, whatever its type.
				for _, other := range KeyTypes() {
					if other == typ {
						continue
					}
					if _, err := verifyBytes(img, keys[other].Public()); !errors.Is(err, ErrKeyNotTrusted) {
						t.Errorf("verified with the %v key: %v", other, err)
					}
				}
				// A flipped signature bit is a bad signature by a trusted key.
				sig := v.Image.Unprotected[2]
				bad := bytes.Clone(img)
				bad[sig.Offset+4+int64(len(sig.Value))-1] ^= 1
				if _, err := verifyBytes(bad, k.Public()); !errors.Is(err, ErrBadSignature) || errors.Is(err, ErrKeyNotTrusted) {
					t.Errorf("flipped signature: %v", err)
				}
			})
		}
	}
}

// buildImage assembles an image by hand (header, body, the given TLV areas)
// with a correct SHA-256, for the cases Create never writes.
func buildImage(t *testing.T, prot []TLV, unprot func(digest []byte) []TLV) []byte {
	t.Helper()
	body := bytes.Repeat([]byte{0x5a}, 300)
	pa, err := encodeArea(ProtTLVInfoMagic, prot)
	if err != nil {
		t.Fatal(err)
	}
	h := Header{HeaderSize: HeaderLen, ProtectTLVSize: uint16(len(pa)), ImageSize: uint32(len(body)), Version: Version{Major: 1}}
	hb, _ := h.MarshalBinary()
	hashed := append(append(hb, body...), pa...)
	sum := sha256.Sum256(hashed)
	ua, err := encodeArea(TLVInfoMagic, unprot(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	return append(hashed, ua...)
}

func TestVerifyRules(t *testing.T) {
	keys := testKeys()
	ec, ed := keys[KeyECDSAP256], keys[KeyEd25519]
	sign := func(k *PrivateKey, d []byte) TLV {
		s, err := k.sign(d)
		if err != nil {
			t.Fatal(err)
		}
		return TLV{Type: k.pub.typ.SignatureTLV(), Value: s}
	}
	hash := func(d []byte) TLV { return TLV{Type: TLVSHA256, Value: d} }
	keyhash := func(k *PrivateKey) TLV { return TLV{Type: TLVKeyHash, Value: k.pub.Hash()} }
	cases := []struct {
		name    string
		prot    []TLV
		unprot  func(d []byte) []TLV
		trusted []*PublicKey
		want    error
	}{
		{"two signatures, the trusted one good", nil, func(d []byte) []TLV {
			return []TLV{hash(d), keyhash(ed), sign(ed, d), keyhash(ec), sign(ec, d)}
		}, []*PublicKey{ec.pub}, nil},
		{"a trusted signature fails although another verifies", nil, func(d []byte) []TLV {
			bad := sign(ed, d)
			bad.Value = bytes.Clone(bad.Value)
			bad.Value[0] ^= 1
			return []TLV{hash(d), keyhash(ec), sign(ec, d), keyhash(ed), bad}
		}, []*PublicKey{ec.pub, ed.pub}, ErrBadSignature},
		{"signature without a key TLV", nil, func(d []byte) []TLV { return []TLV{hash(d), sign(ec, d)} },
			[]*PublicKey{ec.pub}, ErrKeyNotTrusted},
		{"key TLV names a key, the signature is another type", nil, func(d []byte) []TLV {
			return []TLV{hash(d), keyhash(ec), sign(ed, d)}
		}, []*PublicKey{ec.pub, ed.pub}, ErrBadSignature},
		{"a key names the signature after the next key TLV only", nil, func(d []byte) []TLV {
			return []TLV{hash(d), keyhash(ec), keyhash(ed), sign(ec, d)}
		}, []*PublicKey{ec.pub}, ErrKeyNotTrusted},
		{"short KEYHASH", nil, func(d []byte) []TLV {
			return []TLV{hash(d), {Type: TLVKeyHash, Value: ec.pub.Hash()[:31]}, sign(ec, d)}
		}, []*PublicKey{ec.pub}, ErrMalformed},
		{"key but no signature", nil, func(d []byte) []TLV { return []TLV{hash(d), keyhash(ec)} },
			[]*PublicKey{ec.pub}, ErrUnsigned},
		{"no hash", nil, func(d []byte) []TLV { return []TLV{keyhash(ec), sign(ec, d)} },
			[]*PublicKey{ec.pub}, ErrNoHash},
		{"two hashes, one wrong", nil, func(d []byte) []TLV {
			return []TLV{hash(d), {Type: TLVSHA256, Value: make([]byte, 32)}, keyhash(ec), sign(ec, d)}
		}, nil, ErrHashMismatch},
		{"short hash", nil, func(d []byte) []TLV { return []TLV{{Type: TLVSHA256, Value: d[:31]}} }, nil, ErrMalformed},
		{"security counter unprotected", nil, func(d []byte) []TLV { return []TLV{hash(d), SecurityCounterTLV(3)} },
			nil, ErrMalformed},
		{"vendor TLV unprotected", nil, func(d []byte) []TLV { return []TLV{hash(d), {Type: 0xa0, Value: []byte{1}}} },
			nil, ErrMalformed},
		{"security counter of 2 bytes", []TLV{{Type: TLVSecCounter, Value: []byte{1, 0}}},
			func(d []byte) []TLV { return []TLV{hash(d)} }, nil, ErrMalformed},
		{"two security counters", []TLV{SecurityCounterTLV(1), SecurityCounterTLV(2)},
			func(d []byte) []TLV { return []TLV{hash(d)} }, nil, ErrMalformed},
		{"protected vendor TLVs are fine", []TLV{SecurityCounterTLV(1), {Type: 0xa0, Value: []byte("x")}},
			func(d []byte) []TLV { return []TLV{hash(d), keyhash(ec), sign(ec, d)} }, []*PublicKey{ed.pub, ec.pub}, nil},
		{"full key in a PUBKEY", nil, func(d []byte) []TLV {
			return []TLV{hash(d), {Type: TLVPubKey, Value: ed.pub.Embedded()}, sign(ed, d)}
		}, []*PublicKey{ed.pub}, nil},
		{"untrusted full key", nil, func(d []byte) []TLV {
			return []TLV{hash(d), {Type: TLVPubKey, Value: ed.pub.Embedded()}, sign(ed, d)}
		}, []*PublicKey{ec.pub}, ErrKeyNotTrusted},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := buildImage(t, c.prot, c.unprot)
			v, err := verifyBytes(img, c.trusted...)
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if err == nil && len(c.trusted) > 0 && v.Key == nil {
				t.Fatal("verified with keys but no key reported")
			}
		})
	}
}

func TestKeys(t *testing.T) {
	for _, typ := range KeyTypes() {
		got, err := ParseKeyType(typ.String())
		if err != nil || got != typ {
			t.Errorf("ParseKeyType(%q) = %v, %v", typ, got, err)
		}
		k := testKeys()[typ]
		b, err := k.MarshalPEM()
		if err != nil {
			t.Fatal(err)
		}
		if blk, _ := pem.Decode(b); blk == nil || blk.Type != "PRIVATE KEY" {
			t.Fatalf("%v: not PKCS#8: %s", typ, b)
		}
		pub, err := ParsePublicKeyPEM(b)
		if err != nil || !pub.Equal(k.Public()) || pub.Type() != typ {
			t.Fatalf("%v: public from private: %v", typ, err)
		}
	}
	if _, err := ParseKeyType("ecdsa-p384"); !errors.Is(err, ErrUnsupportedKey) {
		t.Error(err)
	}
	if KeyType(0).String() == "" || (KeyType(0)).SignatureTLV() != 0 {
		t.Error("zero KeyType")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := NewPrivateKey(p384); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("P-384: %v", err)
	}
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := NewPublicKey(&rsa1024.PublicKey); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("RSA-1024: %v", err)
	}
	if _, err := NewPublicKey("a string"); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("string key: %v", err)
	}
	for _, in := range []string{"", "not pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
		"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"} {
		if _, err := ParsePublicKeyPEM([]byte(in)); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParsePublicKeyPEM(%q) = %v", in, err)
		}
		if _, err := ParsePrivateKeyPEM([]byte(in)); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParsePrivateKeyPEM(%q) = %v", in, err)
		}
	}
	// PKCS#1 and SEC1 files, as openssl writes them, are read too.
	rk := testKeys()[KeyRSA2048].Signer().(*rsa.PrivateKey)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})
	if k, err := ParsePrivateKeyPEM(pkcs1); err != nil || k.Public().Type() != KeyRSA2048 {
		t.Errorf("PKCS#1 private key: %v", err)
	}
}

// lyingSigner claims a public key it does not sign with.
type lyingSigner struct {
	crypto.Signer
	pub crypto.PublicKey
}

func (l lyingSigner) Public() crypto.PublicKey { return l.pub }

func TestCreateRefusesBadSignerAndOptions(t *testing.T) {
	keys := testKeys()
	liar, err := NewPrivateKey(lyingSigner{keys[KeyEd25519].Signer(), keys[KeyEd25519].Public().Crypto()})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := GenerateKey(KeyEd25519)
	liar.signer = lyingSigner{other.Signer(), keys[KeyEd25519].Public().Crypto()}
	var out bytes.Buffer
	if _, err := Create(&out, bytes.NewReader(make([]byte, 10)), 10, CreateOptions{PadHeader: true, Key: liar}); err == nil ||
		!strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("lying signer: %v", err)
	}
	for _, o := range []CreateOptions{
		{Align: 3}, {MaxAlign: 4}, {Pad: true}, {Confirm: true}, {HeaderSize: 16}, {HeaderSize: 0x10000},
		{SlotSize: -1}, {MaxSectors: -1}, {PublicKeyFormat: 7}, {Flags: FlagRAMLoad | FlagROMFixed},
		{ProtectedTLVs: []TLV{{Type: TLVSHA256, Value: make([]byte, 32)}}},
		{ProtectedTLVs: []TLV{{Type: TLVKeyHash, Value: make([]byte, 32)}}},
		{ProtectedTLVs: []TLV{SecurityCounterTLV(1), SecurityCounterTLV(2)}},
		{ProtectedTLVs: []TLV{{Type: TLVSecCounter, Value: []byte{1}}}},
		{ProtectedTLVs: []TLV{{Type: 0xa0, Value: make([]byte, 40000)}, {Type: 0xa1, Value: make([]byte, 40000)}}},
		{ProtectedTLVs: []TLV{{Type: 0xa0, Value: make([]byte, 70000)}}},
	} {
		o.PadHeader = true
		if _, err := Create(&out, bytes.NewReader(make([]byte, 10)), 10, o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%+v: %v", o, err)
		}
	}
	if _, err := ParseKeyFormat("raw"); !errors.Is(err, ErrInvalidOptions) {
		t.Error(err)
	}
	// --align 16 without --max-align means BOOT_MAX_ALIGN 16, as imgtool.
	img := mustCreate(t, make([]byte, 100), CreateOptions{PadHeader: true, SlotSize: 0x4000, Confirm: true, Align: 16})
	l, ok := DetectLayout(bytes.NewReader(img), int64(len(img)))
	if !ok || l.MaxAlign != 16 || img[l.ImageOKOffset()] != 1 {
		t.Fatalf("align 16: layout %+v %v", l, ok)
	}
	if _, ok := DetectLayout(bytes.NewReader(make([]byte, 64)), 64); ok {
		t.Error("zeros detected as a trailer")
	}
	if v := (Version{1, 2, 3, 4}); v.SecurityCounter() != 0x01020003 {
		t.Errorf("auto security counter %#x", v.SecurityCounter())
	}
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// edges keeps the first and last bytes written to it and counts the rest.
type edges struct {
	head, tail []byte
	n          int64
}

func (e *edges) Write(p []byte) (int, error) {
	if len(e.head) < 4096 {
		e.head = append(e.head, p[:min(len(p), 4096-len(e.head))]...)
	}
	e.tail = append(e.tail, p...)
	if len(e.tail) > 1<<16 {
		e.tail = append(e.tail[:0], e.tail[len(e.tail)-1<<16:]...)
	}
	e.n += int64(len(p))
	return len(p), nil
}

// ReadAt serves the image back: the kept edges, and zeros between.
func (e *edges) ReadAt(p []byte, off int64) (int, error) {
	if off >= e.n {
		return 0, io.EOF
	}
	want := len(p)
	n := want
	if int64(n) > e.n-off {
		n = int(e.n - off)
	}
	p = p[:n]
	clear(p)
	if off < int64(len(e.head)) {
		copy(p, e.head[off:])
	}
	if tailStart := e.n - int64(len(e.tail)); off+int64(n) > tailStart {
		from := max(off, tailStart)
		copy(p[from-off:], e.tail[from-tailStart:])
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// TestStreamingMemory creates and verifies a 64 MiB signed image while
// measuring what is allocated: it must not grow with the image.
func TestStreamingMemory(t *testing.T) {
	const size = 64 << 20
	k := testKeys()[KeyECDSAP256]
	var img edges
	allocated := func(f func()) uint64 {
		var a, b runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&a)
		f()
		runtime.ReadMemStats(&b)
		return b.TotalAlloc - a.TotalAlloc
	}
	var err error
	created := allocated(func() {
		_, err = Create(&img, io.LimitReader(zeros{}, size), size, CreateOptions{PadHeader: true, Key: k, Version: Version{Major: 1}})
	})
	if err != nil {
		t.Fatal(err)
	}
	var v *Verified
	verified := allocated(func() { v, err = Verify(&img, img.n, []*PublicKey{k.Public()}) })
	if err != nil {
		t.Fatal(err)
	}
	if int64(v.Image.Header.ImageSize) != size {
		t.Fatalf("image size %d", v.Image.Header.ImageSize)
	}
	t.Logf("a %d MiB image: Create allocated %d KiB, Verify %d KiB", size>>20, created>>10, verified>>10)
	if created > 1<<20 || verified > 1<<20 {
		t.Fatalf("allocations grow with the image: Create %d, Verify %d bytes", created, verified)
	}
}

func TestSecurityCounterAndDependenciesDecode(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(vectors, "images/ecdsa-p256_1k_prot_multi.bin"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	deps, err := im.Dependencies()
	if err != nil || len(deps) != 1 || deps[0].ImageID != 1 || deps[0].MinVersion != (Version{2, 3, 4, 5}) {
		t.Fatalf("dependencies %+v %v", deps, err)
	}
	im.Protected[1].Value = im.Protected[1].Value[:5]
	if _, err := im.Dependencies(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short dependency: %v", err)
	}
}

func TestFlagNames(t *testing.T) {
	if got := FlagNames(FlagRAMLoad | FlagPIC | 0x4000); strings.Join(got, ",") != "PIC,RAM_LOAD,0x4000" {
		t.Fatalf("FlagNames = %v", got)
	}
	if got := FlagNames(0); got == nil || len(got) != 0 {
		t.Fatalf("FlagNames(0) = %#v", got)
	}
	if TLVName(0xa0) != "VENDOR/UNKNOWN" || TLVName(TLVSecCounter) != "SEC_CNT" {
		t.Fatal("TLVName")
	}
}

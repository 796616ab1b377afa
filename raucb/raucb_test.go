package raucb

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// The bundles in testdata were made by RAUC 1.8 (testdata/make.sh).

var now = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func load(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func keyring(t testing.TB, name string) *x509.CertPool {
	t.Helper()
	k, err := ParseKeyring(load(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func open(t testing.TB, b []byte) *Bundle {
	t.Helper()
	bd, err := Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return bd
}

func TestPlainBundle(t *testing.T) {
	b := load(t, "plain-rsa.raucb")
	if !IsBundle(b) {
		t.Fatal("not recognised")
	}
	bd := open(t, b)
	m := bd.Manifest
	if !bd.Detached || m.Format != "plain" || m.Compatible != "awsfota-test" || m.Version != "1.2.3" || m.Description != "test bundle" {
		t.Fatalf("bundle %+v manifest %+v", bd, m)
	}
	if len(m.Images) != 1 || m.Images[0].SlotClass != "rootfs" || m.Images[0].Filename != "rootfs.img" || m.Images[0].Size != 12000 || len(m.Images[0].SHA256) != 64 {
		t.Fatalf("images %+v", m.Images)
	}
	// The layout: payload, then the signature, then its size.
	if bd.PayloadSize+int64(len(bd.Signature))+8 != int64(len(b)) || bd.PayloadSize%4096 != 0 {
		t.Fatalf("payload %d + signature %d + 8 != %d", bd.PayloadSize, len(bd.Signature), len(b))
	}
	cert, err := bd.Verify(keyring(t, "ca-rsa.pem"), now)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "awsfota test signer" {
		t.Fatalf("signer %v", cert.Subject)
	}
	// Another keyring does not trust it.
	if _, err := bd.Verify(keyring(t, "ec.pem"), now); !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("foreign keyring: %v", err)
	}
	// Nor does the right one after the certificates expired.
	if _, err := bd.Verify(keyring(t, "ca-rsa.pem"), now.AddDate(200, 0, 0)); !errors.Is(err, ErrSignature) {
		t.Fatalf("expired: %v", err)
	}
}

func TestVerityBundle(t *testing.T) {
	b := load(t, "verity-ec.raucb")
	bd := open(t, b)
	m := bd.Manifest
	if bd.Detached || m.Format != "verity" || m.Compatible != "awsfota-test" || m.Version != "1.2.3" || m.VeritySize == 0 || len(m.VerityHash) != 64 {
		t.Fatalf("manifest %+v", m)
	}
	cert, err := bd.Verify(keyring(t, "ec.pem"), now)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "awsfota test EC signer" {
		t.Fatal(cert.Subject)
	}
}

func TestTamperedBundlesFail(t *testing.T) {
	for _, c := range []struct{ file, keyring string }{{"plain-rsa.raucb", "ca-rsa.pem"}, {"verity-ec.raucb", "ec.pem"}} {
		b := load(t, c.file)
		bd := open(t, b)
		// A byte of the image inside the squashfs (its data comes first).
		bad := bytes.Clone(b)
		bad[200] ^= 0x01
		if _, err := open(t, bad).Verify(keyring(t, c.keyring), now); !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "changed after signing") {
			t.Errorf("%s with a changed payload: %v", c.file, err)
		}
		// A byte of the signature value (near its end, past the
		// certificates).
		bad = bytes.Clone(b)
		bad[bd.PayloadSize+int64(len(bd.Signature))-10] ^= 0x01
		if o, err := Open(bytes.NewReader(bad), int64(len(bad))); err == nil {
			if _, err := o.Verify(keyring(t, c.keyring), now); !errors.Is(err, ErrSignature) {
				t.Errorf("%s with a changed signature: %v", c.file, err)
			}
		}
	}
}

func TestOtherCompression(t *testing.T) {
	b := load(t, "plain-xz.raucb")
	_, err := Open(bytes.NewReader(b), int64(len(b)))
	if !errors.Is(err, ErrCompression) || !strings.Contains(err.Error(), "xz") {
		t.Fatalf("xz bundle: %v", err)
	}
}

func TestLayoutErrors(t *testing.T) {
	good := load(t, "plain-rsa.raucb")
	withSize := func(n uint64) []byte {
		b := bytes.Clone(good)
		binary.BigEndian.PutUint64(b[len(b)-8:], n)
		return b
	}
	for name, c := range map[string]struct {
		b    []byte
		want string
	}{
		"short":      {good[:50], "too short"},
		"zero size":  {withSize(0), "size is 0"},
		"huge size":  {withSize(1 << 40), "exceeds RAUC's 64 KiB"},
		"past start": {withSize(uint64(len(good))), "exceeds the bundle"},
		"not cms":    {withSize(100), "not a CMS"},
		"truncated":  {good[:len(good)-100], ""},
	} {
		_, err := Open(bytes.NewReader(c.b), int64(len(c.b)))
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an ErrFormat saying %q", name, err, c.want)
		}
	}
	// Not a squashfs.
	b := bytes.Clone(good)
	copy(b, "XXXX")
	if IsBundle(b) {
		t.Fatal("recognised without the magic")
	}
	if _, err := Open(bytes.NewReader(b), int64(len(b))); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "magic") {
		t.Fatalf("no magic: %v", err)
	}
}

func TestManifest(t *testing.T) {
	m, err := ParseManifest([]byte("# a comment\n[update]\ncompatible = acme\\sgw\nversion=2024.06\nbuild=20240601\n\n[image.rootfs]\nsha256=ab\nsize=10\nfilename=r.ext4\n[image.appfs]\nfilename=a.img\n[hooks]\nfilename=hook.sh\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Compatible != "acme gw" || m.Version != "2024.06" || m.Build != "20240601" || m.Format != "plain" || len(m.Images) != 2 || m.Images[1].SlotClass != "appfs" || m.Images[0].Size != 10 {
		t.Fatalf("%+v", m)
	}
	for in, want := range map[string]string{
		"[update]\nversion=1\n":               "no [update] compatible",
		"[update\ncompatible=x\n":             "not a [group]",
		"[update]\ncompatible\n":              "not key=value",
		"[image.x]\nsize=ten\n":               "not a number",
		strings.Repeat("#", 70000):            "more than",
		"[bundle]\nverity-size=-\ncompatible": "not a number",
	} {
		if _, err := ParseManifest([]byte(in)); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", truncate(in, 30), err, want)
		}
	}
}

func TestKeyring(t *testing.T) {
	if _, err := ParseKeyring([]byte("nothing")); err == nil {
		t.Fatal("empty keyring accepted")
	}
	two := append(load(t, "ca-rsa.pem"), load(t, "ec.pem")...)
	k, err := ParseKeyring(two)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"plain-rsa.raucb", "verity-ec.raucb"} {
		if _, err := open(t, load(t, f)).Verify(k, now); err != nil {
			t.Errorf("%s with both keys: %v", f, err)
		}
	}
}

func FuzzOpen(f *testing.F) {
	for _, name := range []string{"plain-rsa.raucb", "verity-ec.raucb", "plain-xz.raucb"} {
		f.Add(load(f, name))
	}
	k := keyring(f, "ca-rsa.pem")
	f.Fuzz(func(t *testing.T, b []byte) {
		bd, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrCompression) && !errors.Is(err, ErrSignature) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if bd.Manifest.Compatible == "" || bd.PayloadSize < 0 {
			t.Fatalf("accepted %+v", bd.Manifest)
		}
		if _, err := bd.Verify(k, now); err != nil && !errors.Is(err, ErrSignature) && !errors.Is(err, ErrFormat) {
			t.Fatalf("verify error wraps no sentinel: %v", err)
		}
	})
}

func FuzzManifest(f *testing.F) {
	f.Add([]byte("[update]\ncompatible=a\nversion=1\n[bundle]\nformat=verity\nverity-size=4096\n[image.rootfs]\nsize=3\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if m.Compatible == "" || m.Format == "" {
			t.Fatalf("accepted %+v", m)
		}
	})
}

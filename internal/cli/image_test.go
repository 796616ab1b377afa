package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const vectors = "../../testdata/mcuboot"

// TestImageRoundTrip: keygen, create and verify for each key type; the
// tampered copy, another key and the unsigned image are refused.
func TestImageRoundTrip(t *testing.T) {
	dir := t.TempDir()
	firmware := filepath.Join(dir, "app.bin")
	body := bytes.Repeat([]byte("awsfota image round trip "), 2000)
	if err := os.WriteFile(firmware, body, 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.pem")
	if code, _, errOut := run(t, "image", "keygen", "--type", "ed25519", "-o", other); code != 0 {
		t.Fatalf("keygen other: %s", errOut)
	}
	unsigned := filepath.Join(dir, "unsigned.bin")
	if code, _, errOut := run(t, "image", "create", "--version", "1.0.0", "--pad-header", firmware, unsigned); code != 0 {
		t.Fatalf("unsigned create: %s", errOut)
	}
	for _, typ := range []string{"ecdsa-p256", "ed25519", "rsa-2048"} {
		t.Run(typ, func(t *testing.T) {
			key := filepath.Join(dir, typ+".pem")
			code, out, errOut := run(t, "image", "keygen", "--type", typ, "-o", key)
			if code != 0 || !strings.Contains(out, "key hash") {
				t.Fatalf("keygen: %d %s %s", code, out, errOut)
			}
			pub := filepath.Join(dir, typ+".pub.pem")
			if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("private key file: %v %v", st.Mode(), err)
			}
			pubPEM, err := os.ReadFile(pub)
			if err != nil || !strings.HasPrefix(string(pubPEM), "-----BEGIN PUBLIC KEY-----") {
				t.Fatalf("public key file: %v", err)
			}
			img := filepath.Join(dir, typ+".bin")
			code, out, errOut = run(t, "image", "create", "--key", key, "--version", "1.2.3+4", "--pad-header",
				"--security-counter", "auto", "--slot-size", "0x20000", "--pad", firmware, img)
			if code != 0 || !strings.Contains(out, "signed with "+typ) || !strings.Contains(out, "security counter 16908291") {
				t.Fatalf("create: %d %s %s", code, out, errOut)
			}
			code, out, errOut = run(t, "image", "verify", "--key", pub, img)
			if code != 0 || !strings.Contains(out, "valid MCUboot image 1.2.3+4") || !strings.Contains(out, "trusted "+typ+" key") {
				t.Fatalf("verify: %d %s %s", code, out, errOut)
			}
			// Several keys: any of them may have signed.
			if code, _, errOut := run(t, "image", "verify", "--key", other, "--key", pub, img); code != 0 {
				t.Fatalf("verify with two keys: %s", errOut)
			}
			// A private key file trusts its public half.
			if code, _, errOut := run(t, "image", "verify", "-k", key, img); code != 0 {
				t.Fatalf("verify with the private key file: %s", errOut)
			}

			b, _ := os.ReadFile(img)
			b[0x300] ^= 1
			tampered := filepath.Join(dir, typ+"-tampered.bin")
			os.WriteFile(tampered, b, 0o644)
			code, out, errOut = run(t, "image", "verify", "--key", pub, tampered)
			if code != exitFailure || out != "" || !strings.Contains(errOut, "NOT valid") || !strings.Contains(errOut, "hash mismatch") {
				t.Fatalf("tampered: %d %q %q", code, out, errOut)
			}
			code, _, errOut = run(t, "image", "verify", "--key", other, img)
			if code != exitFailure || !strings.Contains(errOut, "no trusted key") {
				t.Fatalf("another key: %d %q", code, errOut)
			}
			code, out, _ = run(t, "image", "verify", "--key", pub, "--json", unsigned)
			var res verifyResult
			if code != exitFailure || json.Unmarshal([]byte(out), &res) != nil || res.Valid || res.Reason != "unsigned" {
				t.Fatalf("unsigned: %d %s", code, out)
			}
		})
	}
}

// TestImageCreateMatchesImgtool: the command reproduces imgtool's vectors
// (Ed25519 and unsigned byte for byte; ECDSA verified and the same size),
// with imgtool's own command lines.
func TestImageCreateMatchesImgtool(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		vector string
		args   []string
		exact  bool
	}{
		{"images/ed25519_300k_fullkey_seccnt.bin", []string{"--key", "keys/ed25519.pem", "--public-key-format", "full", "--version", "3.1.4+159",
			"--security-counter", "auto", "--header-size", "0x200", "--pad-header", "--slot-size", "0x50000", "payloads/payload-300k.bin"}, true},
		{"images/ed25519_100k_confirm.bin", []string{"--key", "keys/ed25519.pem", "--version", "1.0.1", "--header-size", "0x200", "--pad-header",
			"--slot-size", "0x20000", "--confirm", "--align", "8", "payloads/payload-100k.bin"}, true},
		{"images/unsigned_1k.bin", []string{"--version", "0.0.1", "--header-size", "0x200", "--pad-header", "--slot-size", "0x10000",
			"payloads/payload-1k.bin"}, true},
		{"images/ecdsa-p256_1k_confirm_maxalign16.bin", []string{"--key", "keys/ecdsa-p256.pem", "--version", "1.2.3+4", "--header-size", "0x200",
			"--pad-header", "--slot-size", "0x4000", "--confirm", "--align", "8", "--max-align", "16", "payloads/payload-1k.bin"}, false},
		{"images/ecdsa-p256_1k_prot_multi.bin", []string{"--key", "keys/ecdsa-p256.pem", "--version", "5.6.7+8", "--security-counter", "42",
			"--dependencies", "(1,2.3.4+5)", "--custom-tlv", "0xa0=0x0102030405", "--custom-tlv", "0xa1=hello", "--header-size", "0x200",
			"--pad-header", "--slot-size", "0x10000", "payloads/payload-1k.bin"}, false},
		{"images/ecdsa-p256_1k_ramload.bin", []string{"--key", "keys/ecdsa-p256.pem", "--version", "1.0.0", "--load-addr", "0x20000000",
			"--header-size", "0x200", "--pad-header", "--slot-size", "0x10000", "payloads/payload-1k.bin"}, false},
		{"images/ecdsa-p256_1k_zerohdr_no_pad_header.bin", []string{"-k", "keys/ecdsa-p256.pem", "--version", "1.0.0", "-H", "0x200",
			"-S", "0x10000", "payloads/payload-1k-zerohdr512.bin"}, false},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.vector), func(t *testing.T) {
			out := filepath.Join(dir, filepath.Base(c.vector))
			args := []string{"image", "create"}
			for _, a := range c.args {
				if strings.HasPrefix(a, "keys/") || strings.HasPrefix(a, "payloads/") {
					a = filepath.Join(vectors, a)
				}
				args = append(args, a)
			}
			if code, _, errOut := run(t, append(args, out)...); code != 0 {
				t.Fatalf("create: %s", errOut)
			}
			got, _ := os.ReadFile(out)
			want, err := os.ReadFile(filepath.Join(vectors, c.vector))
			if err != nil {
				t.Fatal(err)
			}
			if c.exact && !bytes.Equal(got, want) {
				t.Fatalf("differs from imgtool's %s", c.vector)
			}
			// Both verify with the key, and describe the same image.
			var infos [2]imageInfo
			for i, f := range []string{out, filepath.Join(vectors, c.vector)} {
				verifyArgs := []string{"image", "verify", f}
				if c.args[0] == "--key" || c.args[0] == "-k" {
					verifyArgs = append(verifyArgs, "--key", filepath.Join(vectors, strings.TrimSuffix(c.args[1], ".pem")+".pub.pem"))
				}
				if code, _, errOut := run(t, verifyArgs...); code != 0 {
					t.Fatalf("verify %s: %s", f, errOut)
				}
				code, js, errOut := run(t, "image", "info", "--json", f)
				if code != 0 || json.Unmarshal([]byte(js), &infos[i]) != nil {
					t.Fatalf("info: %d %s", code, errOut)
				}
			}
			a, b := infos[0], infos[1]
			if a.Header.Version != b.Header.Version || a.Header.Flags != b.Header.Flags || a.Header.LoadAddr != b.Header.LoadAddr ||
				a.SHA256 != b.SHA256 || len(a.TLVs) != len(b.TLVs) || len(a.Protected) != len(b.Protected) ||
				(a.Trailer == nil) != (b.Trailer == nil) || (a.Trailer != nil && (a.FileSize != b.FileSize || *a.Trailer != *b.Trailer)) {
				t.Fatalf("ours %+v\nimgtool's %+v", a, b)
			}
		})
	}
}

func TestImageInfoJSON(t *testing.T) {
	code, out, errOut := run(t, "image", "info", "--json", filepath.Join(vectors, "images/ecdsa-p256_1k_confirm_maxalign32.bin"))
	if code != 0 {
		t.Fatal(errOut)
	}
	var info imageInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if info.Header.Version != "1.2.3+4" || info.Header.HeaderSize != 0x200 || !info.HashValid || info.ImageSize != 1687 ||
		len(info.TLVs) != 3 || info.TLVs[1].Name != "KEYHASH" || info.TLVs[1].Offset != 1580 ||
		info.TLVs[1].Value != "b4c2cb879e263d8c02c54e0e65f41eee837be5c1395257977c49d23c5d44b48c" {
		t.Fatalf("info %+v", info)
	}
	if tr := info.Trailer; tr == nil || tr.MaxAlign != 32 || tr.Magic != "good" || tr.ImageOK != "set" || tr.Swap != "perm" || tr.SwapSize != "0xffffffff" {
		t.Fatalf("trailer %+v", info.Trailer)
	}
	code, out, _ = run(t, "image", "info", "--json", filepath.Join(vectors, "images/ecdsa-p256_1k_prot_multi.bin"))
	info = imageInfo{}
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info.SecurityCounter == nil || *info.SecurityCounter != 42 ||
		len(info.Dependencies) != 1 || info.Dependencies[0].MinVersion != "2.3.4+5" || len(info.Protected) != 4 || info.Trailer != nil {
		t.Fatalf("prot_multi: %s", out)
	}
	code, out, _ = run(t, "image", "info", filepath.Join(vectors, "images/ecdsa-p256_1k_ramload.bin"))
	if code != 0 || !strings.Contains(out, "RAM_LOAD") || !strings.Contains(out, "ECDSASIG") {
		t.Fatalf("text info: %s", out)
	}
	code, _, errOut = run(t, "image", "info", filepath.Join(vectors, "tampered/tampered_ecdsa-p256_truncated-in-payload.bin"))
	if code != exitFailure || !strings.Contains(errOut, "truncated") {
		t.Fatalf("truncated: %d %s", code, errOut)
	}
}

// TestImageVerifyVectors: the keyhash tamper imgtool accepts is refused,
// and every other tampered vector fails with exit status 1.
func TestImageVerifyVectors(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(vectors, "tampered", "*.bin"))
	if len(files) != 17 {
		t.Fatalf("%d tampered vectors", len(files))
	}
	for _, f := range files {
		key := "ecdsa-p256"
		for _, k := range []string{"ed25519", "rsa-2048"} {
			if strings.Contains(f, "_"+k+"_") {
				key = k
			}
		}
		args := []string{"image", "verify", "--key", filepath.Join(vectors, "keys", key+".pub.pem"), f}
		if strings.Contains(f, "_unsigned_") {
			args = []string{"image", "verify", f}
		}
		code, out, errOut := run(t, args...)
		if code != exitFailure || out != "" || !strings.Contains(errOut, "NOT valid") {
			t.Errorf("%s: %d %q %q", filepath.Base(f), code, out, errOut)
		}
		if strings.Contains(f, "keyhash-flip") && !strings.Contains(errOut, "names no trusted key") {
			t.Errorf("keyhash flip: %s", errOut)
		}
	}
}

func TestImageUsageErrors(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.bin")
	os.WriteFile(in, []byte("firmware"), 0o644)
	out := filepath.Join(dir, "out.bin")
	for _, args := range [][]string{
		{"image", "keygen", "--type", "dsa", "-o", filepath.Join(dir, "k.pem")},
		{"image", "keygen", "--type", "ed25519"},
		{"image", "keygen", "extra", "-o", filepath.Join(dir, "k.pem")},
		{"image", "create", "--pad-header", in, out},
		{"image", "create", "--version", "1.2.3.4", "--pad-header", in, out},
		{"image", "create", "--version", "1.0.0", "--pad-header", "--pad", in, out},
		{"image", "create", "--version", "1.0.0", "--pad-header", "--header-size", "0x1ffff", in, out},
		{"image", "create", "--version", "1.0.0", "--pad-header", "--slot-size", "big", in, out},
		{"image", "create", "--version", "1.0.0", "--pad-header", "--security-counter", "-1", in, out},
		{"image", "create", "--version", "1.0.0", "--pad-header", "--public-key-format", "raw", in, out},
		{"image", "create", "--version", "1.0.0", "--pad-header", "--custom-tlv", "0x10=0x00", in, out},
		{"image", "create", "--version", "1.0.0", "--pad-header", "--custom-tlv", "0xa0=0x0", in, out},
		{"image", "create", "--version", "1.0.0", "--pad-header", "--dependencies", "1,2", in, out},
		{"image", "create", "--version", "1.0.0", "--pad-header", "--load-addr", "1", "--rom-fixed", "2", in, out},
		{"image", "create", "--version", "1.0.0", in},
		{"image", "verify"},
		{"image", "info", "a", "b"},
	} {
		code, _, errOut := run(t, args...)
		if code != exitUsage || !strings.Contains(errOut, "awsfota:") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("an output file was written")
	}
	// Failures of the work itself exit 1 and leave no output file behind.
	for _, args := range [][]string{
		{"image", "create", "--version", "1.0.0", in, out}, // no room for the header
		{"image", "create", "--key", filepath.Join(vectors, "keys/ed25519.pub.pem"), "--version", "1.0.0", "--pad-header", in, out},
		{"image", "create", "--version", "1.0.0", "--pad-header", "--slot-size", "0x100", in, out},
		{"image", "create", "--version", "1.0.0", "--pad-header", filepath.Join(dir, "missing.bin"), out},
		{"image", "verify", "--key", in, in},
		{"image", "info", in},
	} {
		code, _, errOut := run(t, args...)
		if code != exitFailure || !strings.Contains(errOut, "awsfota:") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("a failed create left an output file")
	}
	// The advice names the command's flag, not the library's option.
	if _, _, errOut := run(t, "image", "create", "--version", "1.0.0", in, out); !strings.Contains(errOut, "add --pad-header to put the header in front") ||
		strings.Contains(errOut, "PadHeader") {
		t.Errorf("no room for the header: %q", errOut)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

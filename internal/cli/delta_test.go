package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const deltaTestdata = "../../testdata/firmware/baseflight-stm32f103/"

// TestDeltaCreateApplyInfo runs the three delta commands on a real pair.
func TestDeltaCreateApplyInfo(t *testing.T) {
	dir := t.TempDir()
	oldPath, newPath := deltaTestdata+"2015-03-27.bin", deltaTestdata+"2015-05-13.bin"
	patch, rebuilt := filepath.Join(dir, "p.afdp"), filepath.Join(dir, "new.bin")

	code, out, errOut := run(t, "delta", "create", oldPath, newPath, "-o", patch)
	if code != 0 {
		t.Fatalf("create exited %d: %s", code, errOut)
	}
	for _, want := range []string{"base", "result", "patch", "70796", "71592", "of the new image", "records"} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
	}
	st, err := os.Stat(patch)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() >= 4754 { // bsdiff's patch for this pair
		t.Errorf("patch is %d bytes, no smaller than bsdiff's 4754", st.Size())
	}

	code, out, errOut = run(t, "delta", "apply", oldPath, patch, "-o", rebuilt)
	if code != 0 || !strings.Contains(out, "verified") {
		t.Fatalf("apply exited %d: %s%s", code, out, errOut)
	}
	got, _ := os.ReadFile(rebuilt)
	want, _ := os.ReadFile(newPath)
	if !bytes.Equal(got, want) {
		t.Fatal("apply wrote another image")
	}

	code, out, _ = run(t, "delta", "info", patch)
	if code != 0 || !strings.Contains(out, "version 2, coding mix-v2, transform thumb2") || !strings.Contains(out, "71592 bytes") {
		t.Errorf("info exited %d:\n%s", code, out)
	}
	code, out, _ = run(t, "delta", "info", "--json", patch)
	var info deltaInfo
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil {
		t.Fatalf("info --json exited %d:\n%s", code, out)
	}
	if info.BaseSize != 70796 || info.ResultSize != 71592 || info.PatchSize != st.Size() || len(info.BaseSHA256) != 64 ||
		info.Transform != "thumb2" || info.ImageBase != "0x8000000" {
		t.Errorf("info --json: %+v", info)
	}
}

// TestDeltaApplyWrongBase applies a patch to another image: exit 1, a
// message naming the base mismatch, and no output file.
func TestDeltaApplyWrongBase(t *testing.T) {
	dir := t.TempDir()
	patch, out := filepath.Join(dir, "p"), filepath.Join(dir, "out.bin")
	if code, _, errOut := run(t, "delta", "create", deltaTestdata+"2015-03-27.bin", deltaTestdata+"2015-05-13.bin", "-o", patch); code != 0 {
		t.Fatal(errOut)
	}
	code, _, errOut := run(t, "delta", "apply", deltaTestdata+"2015-06-27.bin", patch, "-o", out)
	if code != exitFailure || !strings.Contains(errOut, "base image") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output file left behind: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files left in the directory: %v", entries)
	}
}

func TestDeltaErrors(t *testing.T) {
	dir := t.TempDir()
	notPatch := filepath.Join(dir, "not-a-patch")
	if err := os.WriteFile(notPatch, []byte("hello, this is text"), 0o644); err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut")
	if code, _, errOut := run(t, "delta", "create", deltaTestdata+"2015-03-27.bin", deltaTestdata+"2015-05-13.bin", "-o", cut); code != 0 {
		t.Fatal(errOut)
	}
	b, _ := os.ReadFile(cut)
	if err := os.WriteFile(cut, b[:len(b)-1], 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"delta", "create", "a"}, exitUsage, "takes OLD and NEW"},
		{[]string{"delta", "create", "a", "b"}, exitUsage, "needs -o PATCH"},
		{[]string{"delta", "apply", "a", "b"}, exitUsage, "needs -o NEW"},
		{[]string{"delta", "info"}, exitUsage, "takes one PATCH"},
		{[]string{"delta", "info", "--bogus", "x"}, exitUsage, "unknown flag"},
		{[]string{"delta", "create", filepath.Join(dir, "missing"), notPatch, "-o", filepath.Join(dir, "p")}, exitFailure, "no such file"},
		{[]string{"delta", "info", notPatch}, exitFailure, "not a patch"},
		{[]string{"delta", "info", cut}, exitFailure, "was cut"},
		{[]string{"delta", "apply", deltaTestdata + "2015-03-27.bin", cut, "-o", filepath.Join(dir, "o")}, exitFailure, "corrupt patch"},
	}
	for _, c := range cases {
		code, _, errOut := run(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.err) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, errOut, c.code, c.err)
		}
	}
}

// TestDeltaCreateArch: --arch picks the transform (and says so), auto says
// how it decided, and an unknown name is a usage error listing the others.
func TestDeltaCreateArch(t *testing.T) {
	dir := t.TempDir()
	patch := filepath.Join(dir, "p")
	oldPath, newPath := deltaTestdata+"2015-03-27.bin", deltaTestdata+"2015-05-13.bin"
	code, out, errOut := run(t, "delta", "create", "--arch", "none", oldPath, newPath, "-o", patch)
	if code != 0 || !strings.Contains(out, "architecture: none (--arch none)") {
		t.Fatalf("--arch none exited %d: %s%s", code, out, errOut)
	}
	none, _ := os.Stat(patch)
	code, out, errOut = run(t, "delta", "create", oldPath, newPath, "-o", patch)
	if code != 0 || !strings.Contains(out, "architecture: thumb2 (auto: instruction statistics:") {
		t.Fatalf("auto exited %d: %s%s", code, out, errOut)
	}
	thumb, _ := os.Stat(patch)
	if thumb.Size() >= none.Size() {
		t.Errorf("thumb2 patch %d bytes, not smaller than --arch none's %d", thumb.Size(), none.Size())
	}
	code, _, errOut = run(t, "delta", "create", "--arch", "mips", oldPath, newPath, "-o", patch)
	if code != exitUsage || !strings.Contains(errOut, `unknown architecture "mips": use auto, none, thumb2, arm, aarch64, rv32, rv64, x86-64`) {
		t.Errorf("--arch mips: exit %d, stderr %q", code, errOut)
	}
}

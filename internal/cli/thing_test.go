package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// thing create refuses to replace device files without --force, checks
// what it can before it creates anything, and deletes what it created when
// a later step fails.
func TestThingCreateDoesNothingHalfway(t *testing.T) {
	o := newOperatorEnv(t)
	certs := func() int {
		t.Helper()
		cs, err := o.cloud.Registry.ListCertificates()
		if err != nil {
			t.Fatal(err)
		}
		return len(cs)
	}
	exists := func(thing string) bool {
		_, err := o.cloud.Registry.DescribeThing(thing)
		return err == nil
	}

	out := filepath.Join(t.TempDir(), "dev")
	if code, _, errOut := run(t, "thing", "create", "dev", "--out", out, "--local", o.data); code != 0 {
		t.Fatalf("thing create: %s", errOut)
	}
	// A hand-edited device file is not overwritten...
	edited := []byte(`{"thing":"dev","trustedKeys":["mine.pub.pem"]}`)
	os.WriteFile(filepath.Join(out, "device.json"), edited, 0o644)
	code, _, errOut := run(t, "thing", "create", "dev-2", "--out", out, "--local", o.data)
	if code != exitUsage || !strings.Contains(errOut, "already holds") || !strings.Contains(errOut, "--force") {
		t.Fatalf("existing --out: exit %d, %q", code, errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "device.json")); string(b) != string(edited) || exists("dev-2") || certs() != 1 {
		t.Fatalf("the refused call changed something: device.json %s, dev-2 exists %v, %d certificates", b, exists("dev-2"), certs())
	}
	// ... unless --force says so.
	if code, _, errOut := run(t, "thing", "create", "dev-2", "--out", out, "--local", o.data, "--force"); code != 0 {
		t.Fatalf("--force: %s", errOut)
	}
	if f, err := readDeviceFile(filepath.Join(out, "device.json")); err != nil || f.Thing != "dev-2" || !exists("dev-2") {
		t.Fatalf("after --force: %+v %v", f, err)
	}

	// Checks before anything is created: a name AWS would refuse, a policy
	// the local cloud does not take, an --out that is a file.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	before := certs()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bad name", "--out", filepath.Join(t.TempDir(), "x")}, `thing name "bad name"`},
		{[]string{"p-1", "--out", filepath.Join(t.TempDir(), "x"), "--policy", "p"}, "drop --policy"},
		{[]string{"f-1", "--out", file}, "is a file"},
	} {
		code, _, errOut := run(t, append([]string{"thing", "create", "--local", o.data}, c.args...)...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, %q", c.args, code, errOut)
		}
	}
	if exists("p-1") || exists("f-1") || certs() != before {
		t.Fatal("a refused thing create created something")
	}

	// A failure after the thing and its certificate exist (here: the key
	// device file cannot be written, a directory is in its place) undoes them,
	// and removes the files it wrote before.
	broken := filepath.Join(t.TempDir(), "broken")
	os.MkdirAll(filepath.Join(broken, "device.json", "x"), 0o755)
	code, _, errOut = run(t, "thing", "create", "half", "--out", broken, "--local", o.data, "--force")
	if code != exitFailure || !strings.Contains(errOut, "writing the device files") {
		t.Fatalf("unwritable key: exit %d, %q", code, errOut)
	}
	if exists("half") || certs() != before {
		t.Fatalf("a failed thing create left thing half (%v) or a certificate (%d, want %d)", exists("half"), certs(), before)
	}
	for _, f := range []string{"key.pem", "cert.pem", "ca.pem"} {
		if _, err := os.Stat(filepath.Join(broken, f)); err == nil {
			t.Errorf("a failed thing create left %s", f)
		}
	}
}

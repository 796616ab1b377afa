package awsfota

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// shellBlock returns the commands of the first ```sh block of a document
// that builds awsfota, without comments and blank lines.
func shellBlock(t *testing.T, doc string) []string {
	t.Helper()
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		if !strings.Contains(m[1], "go build -o awsfota ./cmd/awsfota") {
			continue
		}
		var cmds []string
		for _, line := range strings.Split(m[1], "\n") {
			if i := strings.Index(line, " # "); i >= 0 {
				line = line[:i]
			}
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				cmds = append(cmds, line)
			}
		}
		return cmds
	}
	t.Fatalf("%s has no sh block that builds awsfota", doc)
	return nil
}

// git runs git in dir.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=quickstart", "-c", "user.email=quickstart@example.com", "-c", "init.defaultBranch=main"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestQuickstart runs the quick start of docs/quickstart.md as written, in a
// fresh repository holding this tree, and checks that it updates the device
// and leaves the source tree clean (git status shows nothing). The README's
// step-by-step block must be the same commands.
//
// Two changes are made to the commands: the binary is built once, by the
// documented `go build -o awsfota ./cmd/awsfota` run here (where the build
// cache has the packages; in a new directory everything would compile
// again), into the copy; and the local cloud gets free ports (the endpoints
// file tells the other commands), so that test runs in parallel do not
// collide on 8883 and 4566.
func TestQuickstart(t *testing.T) {
	cmds := shellBlock(t, "docs/quickstart.md")
	if readme := shellBlock(t, "README.md"); strings.Join(readme, "\n") != strings.Join(cmds, "\n") {
		t.Fatalf("the README's commands differ from docs/quickstart.md's:\nREADME:\n%s\nquickstart:\n%s", strings.Join(readme, "\n"), strings.Join(cmds, "\n"))
	}
	for _, tool := range []string{"git", "go", "bash", "head"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the quick start test needs %s: %v", tool, err)
		}
	}

	// A fresh repository with what this one tracks (as the working tree
	// has it) and the files not yet added that git would not ignore.
	clone := t.TempDir()
	files := strings.Split(strings.TrimSpace(git(t, ".", "ls-files", "-z", "--cached", "--others", "--exclude-standard")), "\x00")
	for _, f := range files {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(f)
		if err := os.MkdirAll(filepath.Join(clone, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(clone, f), b, st.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	git(t, clone, "init", "-q")
	git(t, clone, "add", "-A")
	git(t, clone, "commit", "-q", "-m", "the tree under test")

	const build = "go build -o awsfota ./cmd/awsfota"
	if cmds[0] != build {
		t.Fatalf("the quick start begins with %q, not %q", cmds[0], build)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	gb := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(clone, "awsfota"), "./cmd/awsfota")
	if out, err := gb.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, out)
	}
	cmds[0] = "true # " + build + ": done above"
	served := false
	for i, c := range cmds {
		if strings.HasPrefix(c, "./awsfota cloud serve") && strings.HasSuffix(c, "&") {
			cmds[i] = strings.TrimSpace(strings.TrimSuffix(c, "&")) + " --mqtt-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 &"
			served = true
		}
	}
	if !served {
		t.Fatal("the quick start does not start the local cloud in the background")
	}
	script := "set -euo pipefail\n" +
		"trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + // stop the cloud and the device (SIGTERM: a clean stop)
		strings.Join(cmds, "\n") + "\n"
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = clone
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("the quick start failed: %v\nscript:\n%s\noutput:\n%s", err, script, out.String())
	}
	for _, want := range []string{"dev-1: booted 1.0.1 (on trial", "1 succeeded"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the quick start's output lacks %q:\n%s", want, out.String())
		}
	}
	if st := git(t, clone, "status", "--porcelain", "--untracked-files=all"); st != "" {
		t.Fatalf("the quick start left the source tree changed:\n%s", st)
	}
	if _, err := os.Stat(filepath.Join(clone, ".awsfota", "cloud", "cloud.db")); err != nil {
		t.Fatalf("the cloud's state is not where the docs say: %v", err)
	}
}

package cli

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// repoRoot is the module's root, from this package's directory.
const repoRoot = "../.."

// docFiles returns README.md and docs/*.md, by path relative to the root.
func docFiles(t *testing.T) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	paths = append(paths, filepath.Join(repoRoot, "README.md"))
	docs := map[string]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(repoRoot, p)
		docs[filepath.ToSlash(rel)] = string(b)
	}
	if len(docs) < 5 {
		t.Fatalf("found only %d documents", len(docs))
	}
	return docs
}

// foreignFlags are flags the documents show that belong to other programs,
// each with the reason it is not ours.
var foreignFlags = map[string]string{
	"--endpoint-url":                "AWS CLI: points it at the local cloud",
	"--endpoint-type":               "AWS CLI: aws iot describe-endpoint",
	"--role-name":                   "AWS CLI: aws iam create-role",
	"--assume-role-policy-document": "AWS CLI: aws iam create-role",
	"--policy-name":                 "AWS CLI: aws iam put-role-policy, aws iot create-policy",
	"--policy-document":             "AWS CLI: aws iam put-role-policy, aws iot create-policy",
	"--thing-group-name":            "AWS CLI: aws iot create-thing-group",
	"--long":                        "zstd --long=27, in the delta benchmarks",
	"--patch-from":                  "zstd --patch-from, in the delta benchmarks",
	"--ultra":                       "zstd --ultra, in the delta benchmarks",
	"--build":                       "scripts/bench-delta.sh --build, in the delta benchmarks",
	"--thing-name":                  "AWS CLI: aws iot add-thing-to-thing-group",
	"--ca-bundle":                   "AWS CLI: trusts the local CA for cloud serve --https",
	"--now":                         "systemctl enable --now",
	"--max-time":                    "curl, in the Linux device's health check",
	"--mksquashfs-args":             "rauc bundle",
	"--override-boot-slot":          "rauc status mark-*",
	"--help":                        "cobra adds it to every command",
	"--version":                     "cobra adds it to the root command",
	"--fuzz":                        "go test's flag (written -fuzz, also --fuzz)",
}

var docFlagRE = regexp.MustCompile("(?:^|[\\s(\\[`\"'|/,])(--[a-z][a-z0-9]*(?:-[a-z0-9]+)*)")

// TestDocsFlagsExist fails when README.md or docs/*.md mention a --flag that
// no awsfota command has: the docs drifted from the code.
func TestDocsFlagsExist(t *testing.T) {
	var cmds []*cobra.Command
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		cmds = append(cmds, c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot(&env{ctx: context.Background(), out: io.Discard, errOut: io.Discard}))
	registered := func(flag string) bool {
		for _, c := range cmds {
			if c.LocalFlags().Lookup(flag[2:]) != nil || c.PersistentFlags().Lookup(flag[2:]) != nil {
				return true
			}
		}
		return false
	}
	checked := 0
	for name, text := range docFiles(t) {
		for _, m := range docFlagRE.FindAllStringSubmatch(text, -1) {
			flag := m[1]
			checked++
			if foreignFlags[flag] == "" && !registered(flag) {
				t.Errorf("%s mentions %s, which no awsfota command has", name, flag)
			}
		}
	}
	if checked < 100 {
		t.Fatalf("found only %d flags in the documents", checked)
	}
}

// sourceStrings returns the string literals of the module's non-test Go
// files (testdata, hidden directories and other modules aside).
func sourceStrings(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != repoRoot && (strings.HasPrefix(n, ".") || n == "testdata") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); p != repoRoot && err == nil {
				return filepath.SkipDir // another module's (third_party)
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					out = append(out, s)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// codeSpanRE finds Markdown code spans: in single backticks, or in double
// backticks (which may hold single ones); a span may run over a line break.
var codeSpanRE = regexp.MustCompile("``((?:[^`]|`[^`])+?)``|`([^`]+)`")

// fenceRE finds fenced code blocks: commands and files, not quotes.
var fenceRE = regexp.MustCompile("(?ms)^[ \t]*```.*?^[ \t]*```")

// placeholderRE finds what a document's rendering of a message stands in
// for, which the code prints with a verb: "…", "...", CAPITALS standing
// alone (HOST:PORT, X, N, FILE, and words printed from values: SUCCEEDED,
// KEYHASH, HTTP; not the D of D-Bus), quoted values ("X", "acme-camera"),
// numbers (404), and flags (checked by TestDocsFlagsExist); and the ": " and
// "; " where errors wrap others.
var placeholderRE = regexp.MustCompile(`"[^"]*"|…|\.\.\.|--[a-z][a-z0-9-]*|\b[A-Z][A-Z0-9_]*(?::[A-Z]+)?\b|\b\d+\b|: |; `)

// pieces splits a quoted message at its placeholders into the pieces a
// string literal of the code must hold.
func pieces(msg string) []string {
	var out []string
	last := 0
	for _, m := range placeholderRE.FindAllStringIndex(msg, -1) {
		a, b := m[0], m[1]
		if (a > 0 && msg[a-1] == '-') || (b < len(msg) && msg[b] == '-') {
			continue // part of a word: D-Bus, Content-Range
		}
		out = append(out, msg[last:a])
		last = b
	}
	return append(out, msg[last:])
}

// notMessages start a code span that is a command, a file or code, not a
// message.
var notMessages = []string{"awsfota ", "./awsfota", "go ", "aws ", "imgtool", "xdelta3", "zstd", "bsdiff", "scripts/", "/usr/", "{", "$", "\"", "-",
	"image ", "job ", "thing ", "device ", "cloud ", "delta ", "fetch ", "mosquitto", "head ", "rm ", "kill ", "operation:", "01 ", "rauc ", "systemctl ", "curl ", "perf "}

// messageSpans returns the code spans of the documents that quote what
// awsfota prints: in the first column of the troubleshooting table those
// with a space that are not a command's name ("(`job watch`)" says which
// command prints the message), elsewhere those of three words or more that
// are not commands or code.
func messageSpans(t *testing.T) map[string][]string {
	commands := map[string]bool{}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		commands[name(c)] = true
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot(&env{ctx: context.Background(), out: io.Discard, errOut: io.Discard}))
	spans := map[string][]string{}
	for name, text := range docFiles(t) {
		text = fenceRE.ReplaceAllString(text, "")
		var prose []string
		for _, line := range strings.Split(text, "\n") {
			if name != "docs/troubleshooting.md" || !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| message") {
				prose = append(prose, line)
				continue
			}
			for _, m := range codeSpanRE.FindAllStringSubmatch(firstColumn(line[2:]), -1) {
				if span := m[1] + m[2]; !commands[span] && strings.Contains(span, " ") {
					spans[name] = append(spans[name], span)
				}
			}
		}
		for _, m := range codeSpanRE.FindAllStringSubmatch(strings.Join(prose, "\n"), -1) {
			span := strings.Join(strings.Fields(m[1]+m[2]), " ")
			if hasAnyPrefix(span, notMessages) || strings.Count(span, " ") < 2 || strings.ContainsAny(span, "=<>{}[]") {
				continue
			}
			spans[name] = append(spans[name], span)
		}
	}
	return spans
}

// firstColumn returns a table row's first cell (code spans may hold "|").
func firstColumn(row string) string {
	in := false
	for i := 0; i < len(row); i++ {
		switch {
		case row[i] == '`':
			in = !in
		case row[i] == '|' && !in:
			return row[:i]
		}
	}
	return row
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// foreignMessages are quoted in the documents but printed by other programs
// or assembled from parts no literal holds, each with the reason.
var foreignMessages = map[string]string{
	"booted 1.0.1 (on trial, swap test)":                                    `device run prints "booted %s (%s, swap %s)" with "on trial" and the swap's name`,
	"SSL validation failed … certificate verify failed":                     "the AWS CLI's words, not ours",
	"x509: certificate signed by unknown authority":                         "Go's crypto/x509, in any Go client",
	"signature verification failed: …":                                      "RAUC's words, which the rauc target passes on",
	"rauc: connecting to D-Bus (the system bus): …":                         `"the system bus" is the value of a %s`,
	"console: listen tcp …: address already in use (choose another --addr)": "Go's net error (listen tcp …: address already in use), wrapped by the console's literal",
}

// TestDocsMessagesExist fails when README.md or docs/*.md quote a message
// that the code does not print: each piece of the quote between its
// placeholders must be in a string literal of the (non-test) source.
func TestDocsMessagesExist(t *testing.T) {
	lits := sourceStrings(t)
	found := func(piece string) bool {
		for _, l := range lits {
			if strings.Contains(l, piece) {
				return true
			}
		}
		return false
	}
	checked := 0
	names := []string{}
	spans := messageSpans(t)
	for n := range spans {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, span := range spans[name] {
			if foreignMessages[span] != "" {
				continue
			}
			if code, ok := strings.CutPrefix(span, "reason: "); ok {
				// A job failure reason: the code that sets it.
				if !found(code) {
					t.Errorf("%s: job failure reason %q is not in the code", name, code)
				}
				checked++
				continue
			}
			for _, piece := range pieces(span) {
				piece = strings.Trim(piece, " ,;:()'")
				if len(piece) < 4 || !strings.ContainsAny(piece, "abcdefghijklmnopqrstuvwxyz") {
					continue
				}
				checked++
				if !found(piece) {
					t.Errorf("%s quotes %q, but no string in the code holds %q", name, span, piece)
				}
			}
		}
	}
	if checked < 40 {
		t.Fatalf("checked only %d pieces of messages: the documents' format changed?", checked)
	}
}

// TestDocsGoVersion fails when the README asks for another Go than go.mod.
func TestDocsGoVersion(t *testing.T) {
	mod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	readme := docFiles(t)["README.md"]
	want := "Go " + string(m[1]) + " or newer"
	if !strings.Contains(readme, want) {
		t.Fatalf("README.md does not say %q, as go.mod requires", want)
	}
	for _, v := range regexp.MustCompile(`\bGo (1\.\d+(?:\.\d+)?)`).FindAllStringSubmatch(readme, -1) {
		if v[1] != string(m[1]) {
			t.Errorf("README.md names Go %s; go.mod says %s", v[1], m[1])
		}
	}
}

package awsfota

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryPackageIsDocumented fails when a package has no doc comment, or
// one that does not start with its name and say what it may or must not
// import (STYLE.md, Docs).
func TestEveryPackageIsDocumented(t *testing.T) {
	type pkg struct {
		name string
		doc  string
	}
	pkgs := map[string]*pkg{}
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if notOurs(p) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		dir := filepath.Dir(p)
		if pkgs[dir] == nil {
			pkgs[dir] = &pkg{name: f.Name.Name}
		}
		if f.Doc != nil {
			pkgs[dir].doc += f.Doc.Text()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 10 {
		t.Fatalf("found only %d packages", len(pkgs))
	}
	for dir, p := range pkgs {
		want := "Package " + p.name + " "
		if p.name == "main" {
			want = "Command "
		}
		switch {
		case p.doc == "":
			t.Errorf("%s (package %s) has no doc comment", dir, p.name)
		case !strings.HasPrefix(p.doc, want):
			t.Errorf("%s: the doc comment should start with %q", dir, want)
		case p.name != "main" && !strings.Contains(p.doc, "import"):
			t.Errorf("%s: the doc comment does not say what the package may import", dir)
		case strings.Count(p.doc, want) > 1:
			t.Errorf("%s: several files carry a package doc comment", dir)
		}
	}
}

package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// asset is an embedded static file.
type asset struct {
	data        []byte
	contentType string
	etag        string
}

var assets = func() map[string]asset {
	out := map[string]asset{}
	entries, err := fs.ReadDir(staticFS, "static")
	if err != nil {
		panic(err)
	}
	types := map[string]string{".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
	for _, e := range entries {
		b, err := staticFS.ReadFile("static/" + e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(b)
		out[e.Name()] = asset{data: b, contentType: types[path.Ext(e.Name())], etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return out
}()

// assetVersion is in the URLs of the stylesheet and script, so that a new
// build's are fetched.
var assetVersion = func() string {
	h := sha256.New()
	for _, n := range []string{"console.css", "console.js"} {
		h.Write(assets[n].data)
	}
	return hex.EncodeToString(h.Sum(nil)[:6])
}()

var funcs = template.FuncMap{
	"lower":  func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", " ")) },
	"title":  statusTitle,
	"css":    func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "-")) },
	"ts":     timestamp,
	"iso":    func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"bytes":  humanBytes,
	"hex":    func(b []byte) string { return hex.EncodeToString(b) },
	"pct":    func(f float64) string { return fmt.Sprintf("%.3f", f) },
	"asset":  func() string { return assetVersion },
	"plural": plural,
	"add":    func(a, b int) int { return a + b },
	"has":    slices.Contains[[]string],
}

func statusTitle(s string) string {
	t := strings.ToLower(strings.ReplaceAll(s, "_", " "))
	if t == "" {
		return ""
	}
	return strings.ToUpper(t[:1]) + t[1:]
}

func timestamp(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// pages are the page templates, each with the layout and the parts.
var pages, partsTmpl = func() (map[string]*template.Template, *template.Template) {
	common := template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html"))
	out := map[string]*template.Template{}
	files, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".html")
		if name == "layout" || name == "parts" {
			continue
		}
		out[name] = template.Must(template.Must(common.Clone()).ParseFS(templateFS, f))
	}
	return out, common
}()

// render writes page name with data.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var b bytes.Buffer
	if err := pages[name].ExecuteTemplate(&b, "layout", data); err != nil {
		s.log.Error("console: rendering a page failed", "page", name, "err", err)
		http.Error(w, "the console could not render this page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(b.Bytes())
	}
}

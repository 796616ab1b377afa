package awsfota

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/awsfota/awsfota"

// thirdParty are the modules the project chose (docs/architecture.md,
// Dependencies); nothing else may be imported.
var thirdParty = []string{
	"github.com/eclipse/paho.golang",
	"github.com/mochi-mqtt/server/v2",
	"github.com/aws/aws-sdk-go-v2",
	"github.com/aws/smithy-go",
	"go.etcd.io/bbolt",
	"github.com/spf13/cobra",
	"github.com/schollz/progressbar/v3",
	"go.uber.org/goleak",
	"golang.org/x/term", // terminal detection; already required by progressbar
	"github.com/godbus/dbus/v5",
	"github.com/coreos/go-systemd/v22",
	"github.com/chromedp/chromedp", // drives Chromium in the console's browser tests only
	"github.com/chromedp/cdproto",  // its DevTools protocol types (emulation of dark mode)
}

// onlyIn confines a dependency to the packages that need it (issue 15: RAUC
// over D-Bus, systemd's sd_notify; paho: the Jobs service attached to an
// external broker, and the cloud's tests of another MQTT client — devices
// use device/mqttconn's own).
var onlyIn = map[string][]string{
	"github.com/godbus/dbus/v5":        {"device/dfu/rauc"},
	"github.com/coreos/go-systemd/v22": {"internal/cli"},
	"github.com/eclipse/paho.golang":   {"cloud/broker", "cloud/emu"},
}

// browserTests are chromedp's modules: only the console's browser tests may
// import them.
var browserTests = []string{"github.com/chromedp/chromedp", "github.com/chromedp/cdproto"}

// formats are the packages shared by device and cloud: standard library only.
var formats = []string{"iotjobs", "jobdoc", "mcuboot", "delta", "clock", "raucb"}

// pkgImports maps a package (relative path) to its imports, split into
// production files and test files.
type pkgImports struct {
	prod, test map[string][]string // import path → files
}

// notOurs reports whether the directory p holds no package of this
// module: hidden, testdata, "_" directories, and another module's
// (third_party/mochi-mqtt-server, built through a replace line, has its own
// dependencies and rules).
func notOurs(p string) bool {
	if p == "." {
		return false
	}
	if n := filepath.Base(p); strings.HasPrefix(n, ".") || n == "testdata" || strings.HasPrefix(n, "_") {
		return true
	}
	_, err := os.Stat(filepath.Join(p, "go.mod"))
	return err == nil
}

func scan(t *testing.T) map[string]*pkgImports {
	t.Helper()
	out := map[string]*pkgImports{}
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
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(p))
		pi := out[dir]
		if pi == nil {
			pi = &pkgImports{prod: map[string][]string{}, test: map[string][]string{}}
			out[dir] = pi
		}
		m := pi.prod
		if strings.HasSuffix(p, "_test.go") {
			m = pi.test
		}
		for _, im := range f.Imports {
			ip, _ := strconv.Unquote(im.Path.Value)
			m[ip] = append(m[ip], filepath.Base(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func isStd(ip string) bool { return !strings.Contains(strings.Split(ip, "/")[0], ".") }

func under(pkg, dir string) bool { return pkg == dir || strings.HasPrefix(pkg, dir+"/") }

// check returns the rule each import of pkg (a path relative to the module)
// breaks; test says whether the import is from a _test.go file.
func check(pkg, ip string, test bool) string {
	local, isLocal := strings.CutPrefix(ip, module+"/")
	if !isLocal && ip == module {
		local, isLocal = ".", true
	}
	switch {
	case isStd(ip):
		if pkg == "device/agent" && !test {
			for _, banned := range []string{"os", "net", "syscall", "io/fs", "math/rand", "math/rand/v2", "crypto/rand"} {
				if under(ip, banned) {
					return "device/agent is pure: no I/O, no randomness of its own (" + ip + ")"
				}
			}
		}
		return ""
	case !isLocal:
		for _, m := range thirdParty {
			if under(ip, m) {
				if pkgs, ok := onlyIn[m]; ok && !slicesContains(pkgs, pkg) {
					return m + " is for " + strings.Join(pkgs, ", ") + " only"
				}
				if slicesContains(browserTests, m) && (!test || !under(pkg, "console") && pkg != "internal/cli") {
					return "chromedp is for the console's browser tests only"
				}
				if slicesContains(formats, pkg) && !test {
					return "format packages import only the standard library"
				}
				if pkg == "device/agent" && !test {
					return "device/agent imports only iotjobs and jobdoc"
				}
				return ""
			}
		}
		return "module " + ip + " is not among the dependencies docs/architecture.md lists"
	}
	switch {
	case slicesContains(formats, pkg) && !test:
		return "format packages import only the standard library"
	case pkg == "device/agent" && !test && local != "iotjobs" && local != "jobdoc":
		return "device/agent imports only iotjobs and jobdoc"
	case under(pkg, "device") && (under(local, "cloud") || under(local, "sim")):
		return "device/* never imports cloud/* or sim/"
	case under(pkg, "cloud") && (under(local, "device") || under(local, "sim")):
		return "cloud/* never imports device/* or sim/"
	case under(pkg, "cloud") && (under(local, "console") || under(local, "operator")):
		return "cloud/* never imports the console or the operator layer (cloud/emu mounts the console as an http.Handler)"
	case (under(pkg, "console") || under(pkg, "operator")) && !test && (under(local, "cloud") || under(local, "sim")):
		return "the console and the operator layer work against AWS or the local cloud alike: never cloud/* or sim/"
	case under(pkg, "console") && !test && under(local, "device"):
		return "the console never imports device/*"
	case under(local, "internal/cli") && pkg != "cmd/awsfota" && pkg != "internal/cli":
		return "only cmd/awsfota imports internal/cli"
	case under(local, "cmd"):
		return "nothing imports a command"
	case pkg == "atomicfile" && !test:
		return "atomicfile is the bottom of every durable write: it imports only the standard library"
	case local == "internal/faultproxy" && !test:
		return "internal/faultproxy is for tests only"
	case local == ".":
		return "nothing imports the root package"
	}
	return ""
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestImportRules fails when an import breaks the layering docs/architecture.md
// describes (Package map).
func TestImportRules(t *testing.T) {
	pkgs := scan(t)
	if len(pkgs) < 10 {
		t.Fatalf("found only %d packages: is the test running at the module root?", len(pkgs))
	}
	names := make([]string, 0, len(pkgs))
	for p := range pkgs {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		for _, set := range []struct {
			m    map[string][]string
			test bool
		}{{pkgs[p].prod, false}, {pkgs[p].test, true}} {
			for ip, files := range set.m {
				if rule := check(p, ip, set.test); rule != "" {
					t.Errorf("%s imports %s (%s): %s", p, ip, strings.Join(files, ", "), rule)
				}
			}
		}
	}
}

// TestImportRulesCatchViolations proves the checker refuses what it must.
func TestImportRulesCatchViolations(t *testing.T) {
	bad := []struct {
		pkg, ip string
		test    bool
	}{
		{"iotjobs", "go.etcd.io/bbolt", false},
		{"mcuboot", module + "/device/flash", false},
		{"jobdoc", module + "/clock", false},
		{"device/agent", "os", false},
		{"device/agent", "net/http", false},
		{"device/agent", module + "/device/state", false},
		{"device/agent", module + "/clock", false},
		{"device/runner", module + "/cloud/jobsvc", false},
		{"device/runner", module + "/sim", false},
		{"device/download", module + "/cloud/objstore", true},
		{"cloud/broker", module + "/device/mqttconn", false},
		{"cloud/emu", module + "/sim", false},
		{"sim", module + "/internal/cli", false},
		{"cloud/emu", "github.com/gorilla/mux", false},
		{"sim", module + "/cmd/awsfota", false},
		{"device/runner", module + "/internal/faultproxy", false},
		{"atomicfile", module + "/clock", false},
		{"device/runner", "github.com/godbus/dbus/v5", false},
		{"device/mqttconn", "github.com/eclipse/paho.golang/autopaho", false},
		{"sim", "github.com/eclipse/paho.golang/paho", true},
		{"raucb", "github.com/godbus/dbus/v5", false},
		{"device/agent", "github.com/coreos/go-systemd/v22/daemon", false},
		{"raucb", module + "/device/dfu", false},
		{"cloud/emu", module + "/console", false},
		{"cloud/jobsvc", module + "/operator", false},
		{"console", module + "/cloud/jobsvc", false},
		{"console", module + "/device/agent", false},
		{"operator", module + "/cloud/emu", false},
		{"console", "github.com/chromedp/chromedp", false},
		{"sim", "github.com/chromedp/chromedp", true},
		{"operator", "github.com/chromedp/cdproto/emulation", true},
	}
	for _, c := range bad {
		if check(c.pkg, c.ip, c.test) == "" {
			t.Errorf("%s importing %s (test=%v) passed", c.pkg, c.ip, c.test)
		}
	}
	good := []struct {
		pkg, ip string
		test    bool
	}{
		{"iotjobs", "encoding/json", false},
		{"device/agent", module + "/iotjobs", false},
		{"device/agent", "time", false},
		{"device/runner", module + "/device/agent", false},
		{"device/runner", module + "/clock", false},
		{"cloud/broker", "github.com/eclipse/paho.golang/paho", false},
		{"cloud/emu", "github.com/eclipse/paho.golang/autopaho", true},
		{"cloud/broker", module + "/cloud/jobsvc", false},
		{"sim", module + "/cloud/emu", false},
		{"sim", module + "/device/runner", false},
		{"cmd/awsfota", module + "/internal/cli", false},
		{"device/download", module + "/internal/faultproxy", true},
		{"device/state", module + "/atomicfile", false},
		{"cloud/pki", module + "/atomicfile", false},
		{"sim", module + "/atomicfile", false},
		{"device/agent", "go.uber.org/goleak", true},
		{"device/dfu/rauc", "github.com/godbus/dbus/v5", false},
		{"internal/cli", "github.com/coreos/go-systemd/v22/daemon", false},
		{"device/dfu/rauc", module + "/raucb", false},
		{"console", module + "/operator", false},
		{"console", module + "/cloud/emu", true},
		{"internal/cli", module + "/console", false},
		{"internal/cli", "github.com/chromedp/chromedp", true},
		{"console", "github.com/chromedp/chromedp", true},
		{"internal/cli", "github.com/chromedp/cdproto/emulation", true},
	}
	for _, c := range good {
		if rule := check(c.pkg, c.ip, c.test); rule != "" {
			t.Errorf("%s importing %s refused: %s", c.pkg, c.ip, rule)
		}
	}
}

// Package rauctest runs a real RAUC for tests (build tag rauc): a private
// dbus-daemon, `rauc service` with a system.conf of two raw root-filesystem
// slots backed by files, and RAUC's custom bootloader backend as a small
// shell script that keeps a U-Boot-like boot order and attempt counters in a
// file. A Reboot stops RAUC, picks the slot as U-Boot would (the first in the
// boot order with attempts left, counting one down; a Broken slot fails to
// boot and uses up its attempts), and starts RAUC again with that slot
// booted. It also builds and signs bundles with `rauc bundle`.
//
// It needs Debian's rauc, rauc-service, dbus and squashfs-tools, root (RAUC
// mounts bundles through loop devices), and fails the test — never skips it
// — when they are missing. It is for tests only and imports only the
// standard library.
package rauctest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/awsfota/awsfota/atomicfile"
)

// Slots are the bootnames of the two slots, rootfs.0 and rootfs.1.
var Slots = []string{"A", "B"}

// Attempts is how many times the bootloader tries a slot marked good.
const Attempts = 3

// System is a running RAUC system.
type System struct {
	Dir        string
	Bus        string // the D-Bus address, for DBUS_SYSTEM_BUS_ADDRESS or rauc.Dial
	Compatible string
	Keyring    string // the CA certificate the system trusts (PEM)
	Cert, Key  string // a signing certificate and key the keyring trusts
	// Broken slots do not boot: the bootloader counts the attempt and tries
	// again, as a watchdog reset after a kernel panic makes it.
	Broken map[string]bool
	// Booted is the bootname of the slot running.
	Booted string

	t    testing.TB
	dbus *exec.Cmd
	rauc *exec.Cmd
	conf string
}

// Tools are the programs the package needs.
var Tools = []string{"rauc", "dbus-daemon", "dbus-send", "mksquashfs", "unsquashfs"}

// CheckTools fails t when a tool is missing.
func CheckTools(t testing.TB) {
	t.Helper()
	for _, tool := range Tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: the RAUC tests need Debian's rauc, rauc-service, dbus and squashfs-tools (apt-get install rauc rauc-service dbus squashfs-tools; .ci/run does it)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("the RAUC tests need root: RAUC mounts bundles through loop devices")
	}
}

// Start starts a system in dir whose slot A holds a factory image of
// version factory (as if RAUC had installed it) and is booted.
func Start(t testing.TB, dir, compatible, factory string) *System {
	t.Helper()
	CheckTools(t)
	s := &System{Dir: dir, Compatible: compatible, Broken: map[string]bool{}, t: t}
	for _, d := range []string{"data", "mnt", "pki"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.pki()
	for _, b := range Slots {
		if err := os.WriteFile(s.slotFile(b), make([]byte, 4<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The factory image in slot A, recorded in RAUC's central status file.
	img := []byte(strings.Repeat("factory image "+factory+"\n", 1000))
	f, err := os.OpenFile(s.slotFile("A"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(img, 0)
	f.Close()
	sum := sha256.Sum256(img)
	status := fmt.Sprintf("[slot.rootfs.0]\nbundle.compatible=%s\nbundle.version=%s\nstatus=ok\nsha256=%x\nsize=%d\n", compatible, factory, sum, len(img))
	if err := os.WriteFile(filepath.Join(dir, "data", "central.raucs"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bootloader.sh"), []byte(bootloaderScript), 0o755); err != nil {
		t.Fatal(err)
	}
	s.writeBootState([]string{"A", "B"}, map[string]int{"A": Attempts, "B": Attempts})
	s.conf = filepath.Join(dir, "system.conf")
	conf := fmt.Sprintf(`[system]
compatible=%s
bootloader=custom
data-directory=%s

[keyring]
path=%s

[handlers]
bootloader-custom-backend=%s

[slot.rootfs.0]
device=%s
type=raw
bootname=A

[slot.rootfs.1]
device=%s
type=raw
bootname=B
`, compatible, filepath.Join(dir, "data"), s.Keyring, filepath.Join(dir, "bootloader.sh"), s.slotFile("A"), s.slotFile("B"))
	if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s.startBus()
	t.Cleanup(s.Close)
	s.Booted = "A"
	s.startRAUC()
	return s
}

func (s *System) slotFile(bootname string) string {
	return filepath.Join(s.Dir, "slot-"+bootname+".img")
}

// SlotImage returns what slot bootname holds, cut to n bytes.
func (s *System) SlotImage(bootname string, n int) []byte {
	b, err := os.ReadFile(s.slotFile(bootname))
	if err != nil {
		s.t.Fatal(err)
	}
	return b[:min(n, len(b))]
}

// pki writes a self-signed CA (the keyring) that also signs bundles.
func (s *System) pki() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "awsfota test bundle signer", Organization: []string{"awsfota"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		s.t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	s.Cert = filepath.Join(s.Dir, "pki", "signer.pem")
	s.Key = filepath.Join(s.Dir, "pki", "signer.key")
	s.Keyring = s.Cert
	os.WriteFile(s.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(s.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
}

func (s *System) startBus() {
	conf := filepath.Join(s.Dir, "dbus.conf")
	sock := filepath.Join(s.Dir, "bus")
	os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=`+sock+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`), 0o644)
	cmd := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--print-address")
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stderr = s.log("dbus.log")
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting dbus-daemon: %v", err)
	}
	s.dbus = cmd
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		s.t.Fatalf("dbus-daemon printed no address: %v", err)
	}
	s.Bus = strings.TrimSpace(addr)
}

func (s *System) log(name string) *os.File {
	f, err := os.OpenFile(filepath.Join(s.Dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	return f
}

// Env is the environment for RAUC's command line tools on this system.
func (s *System) Env() []string {
	return append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+s.Bus)
}

func (s *System) startRAUC() {
	cmd := exec.Command("rauc", "--conf="+s.conf, "--mount="+filepath.Join(s.Dir, "mnt"), "service", "--override-boot-slot="+s.Booted)
	cmd.Env = s.Env()
	l := s.log("rauc.log")
	fmt.Fprintf(l, "---- boot %s at %s\n", s.Booted, time.Now().Format(time.TimeOnly))
	cmd.Stdout, cmd.Stderr = l, l
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting rauc service: %v", err)
	}
	s.rauc = cmd
	// Ready once it owns its bus name.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _ := exec.Command("dbus-send", "--bus="+s.Bus, "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
			"org.freedesktop.DBus.NameHasOwner", "string:de.pengutronix.rauc").Output()
		if strings.Contains(string(out), "boolean true") {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("rauc service did not come up on %s; its log:\n%s", s.Bus, s.Log())
		}
		time.Sleep(20 * time.Millisecond) // polling a daemon's start-up: no event to wait for
	}
}

// Log returns RAUC's log.
func (s *System) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "rauc.log"))
	return string(b)
}

func (s *System) stopRAUC() {
	if s.rauc == nil {
		return
	}
	s.rauc.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- s.rauc.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.rauc.Process.Kill()
		<-done
	}
	s.rauc = nil
}

// Reboot stops RAUC, boots as U-Boot would and starts RAUC on the slot
// booted, which it returns.
func (s *System) Reboot() string {
	s.t.Helper()
	s.stopRAUC()
	order, left := s.BootState()
	booted := ""
	for try := 0; try < 2*Attempts*len(Slots)+1 && booted == ""; try++ {
		pick := ""
		for _, b := range order {
			if left[b] > 0 {
				pick = b
				break
			}
		}
		if pick == "" {
			// U-Boot's RAUC script: no slot left to try, reset the counters.
			for _, b := range Slots {
				left[b] = Attempts
			}
			continue
		}
		left[pick]--
		if !s.Broken[pick] {
			booted = pick
		}
	}
	if booted == "" {
		s.t.Fatal("no slot boots")
	}
	s.writeBootState(order, left)
	s.Booted = booted
	s.startRAUC()
	return booted
}

// BootState reads the boot order and the attempts left.
func (s *System) BootState() ([]string, map[string]int) {
	b, err := os.ReadFile(filepath.Join(s.Dir, "bootstate"))
	if err != nil {
		s.t.Fatal(err)
	}
	left := map[string]int{}
	var order []string
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"`)
		switch {
		case k == "ORDER":
			order = strings.Fields(v)
		case strings.HasPrefix(k, "LEFT_"):
			n, _ := strconv.Atoi(v)
			left[strings.TrimPrefix(k, "LEFT_")] = n
		}
	}
	return order, left
}

func (s *System) writeBootState(order []string, left map[string]int) {
	var b strings.Builder
	fmt.Fprintf(&b, "ORDER=\"%s\"\nSLOTS=\"%s\"\n", strings.Join(order, " "), strings.Join(Slots, " "))
	for _, sl := range Slots {
		fmt.Fprintf(&b, "LEFT_%s=%d\n", sl, left[sl])
	}
	p := filepath.Join(s.Dir, "bootstate")
	if err := atomicfile.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// bootloaderScript is RAUC's custom backend: get-primary, set-primary,
// get-state and set-state on the boot state file, with U-Boot's meaning
// (a primary gets Attempts tries; good resets them, bad takes them away).
const bootloaderScript = `#!/bin/sh
STATE="$(dirname "$0")/bootstate"
. "$STATE"
left() { eval echo "\${LEFT_$1:-0}"; }
save() {
	{
		echo "ORDER=\"$ORDER\""
		echo "SLOTS=\"$SLOTS\""
		for s in $SLOTS; do echo "LEFT_$s=$(left "$s")"; done
	} > "$STATE.tmp" && mv "$STATE.tmp" "$STATE"
}
case "$1" in
get-primary)
	for s in $ORDER; do
		if [ "$(left "$s")" -gt 0 ]; then echo "$s"; exit 0; fi
	done
	exit 1 ;;
set-primary)
	o="$2"
	for s in $ORDER; do [ "$s" = "$2" ] || o="$o $s"; done
	ORDER="$o"
	eval "LEFT_$2=3"
	save ;;
get-state)
	if [ "$(left "$2")" -gt 0 ]; then echo good; else echo bad; fi ;;
set-state)
	if [ "$3" = good ]; then eval "LEFT_$2=3"; else eval "LEFT_$2=0"; fi
	save ;;
*)
	echo "bootloader.sh: unknown command $1" >&2
	exit 2 ;;
esac
`

// Bundle builds a plain bundle for compatible holding image as the rootfs
// slot's image, signed with the system's signer, and returns its path.
func (s *System) Bundle(name, compatible, version string, image []byte) string {
	s.t.Helper()
	return s.bundle(name, compatible, version, image, "")
}

// GatedBundle is Bundle with a slot pre-install hook that touches
// <gate>.waiting and then holds the install until the file gate exists: a
// test can catch RAUC in the middle of an install.
func (s *System) GatedBundle(name, compatible, version string, image []byte, gate string) string {
	s.t.Helper()
	hook := fmt.Sprintf(`#!/bin/sh
case "$1" in
slot-pre-install)
	touch %[1]q.waiting
	n=0
	while [ ! -e %[1]q ]; do
		n=$((n+1)); [ $n -gt 3000 ] && { echo "gate %[1]s never opened" >&2; exit 1; }
		sleep 0.02
	done ;;
esac
`, gate)
	return s.bundle(name, compatible, version, image, hook)
}

func (s *System) bundle(name, compatible, version string, image []byte, hook string) string {
	content := filepath.Join(s.Dir, "bundles", name+".d")
	out := filepath.Join(s.Dir, "bundles", name+".raucb")
	os.RemoveAll(content)
	os.Remove(out)
	if err := os.MkdirAll(content, 0o755); err != nil {
		s.t.Fatal(err)
	}
	os.WriteFile(filepath.Join(content, "rootfs.img"), image, 0o644)
	manifest := fmt.Sprintf("[update]\ncompatible=%s\nversion=%s\n\n[bundle]\nformat=plain\n\n[image.rootfs]\nfilename=rootfs.img\n", compatible, version)
	if hook != "" {
		os.WriteFile(filepath.Join(content, "hook.sh"), []byte(hook), 0o755)
		manifest += "hooks=pre-install\n\n[hooks]\nfilename=hook.sh\n"
	}
	os.WriteFile(filepath.Join(content, "manifest.raucm"), []byte(manifest), 0o644)
	cmd := exec.Command("rauc", "bundle", "--cert="+s.Cert, "--key="+s.Key, content, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("rauc bundle: %v\n%s", err, b)
	}
	return out
}

// Close stops RAUC and the bus.
func (s *System) Close() {
	s.stopRAUC()
	if s.dbus != nil {
		s.dbus.Process.Kill()
		s.dbus.Wait()
		s.dbus = nil
	}
}

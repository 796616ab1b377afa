// Package tcpstate tells tests what Linux reports of a TCP socket in
// /proc/net/tcp: whether its keep-alive timer runs.
//
// It is a non-test package so that the tests of several packages can import
// it; production code must not. It imports only the standard library.
package tcpstate

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// ErrUnsupported is returned where /proc/net/tcp is not there (not Linux).
var ErrUnsupported = errors.New("tcpstate: no /proc/net/tcp on this system")

// KeepAlive reports whether the IPv4 socket from local to remote runs TCP's
// keep-alive timer. A socket shows one timer at a time, and while data it
// sent awaits its ACK that is the retransmission timer: KeepAlive polls,
// until timeout, for the socket with nothing in flight.
func KeepAlive(local, remote string, timeout time.Duration) (bool, error) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		return false, ErrUnsupported
	}
	l, err := procAddr(local)
	if err != nil {
		return false, err
	}
	r, err := procAddr(remote)
	if err != nil {
		return false, err
	}
	// Polled with a deadline: the kernel tells nobody when an ACK comes.
	for deadline := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			return false, err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// local remote state tx_queue:rx_queue tr:tm->when ...
			if len(f) < 6 || f[1] != l || f[2] != r || !strings.HasPrefix(f[4], "00000000:") {
				continue
			}
			return strings.HasPrefix(f[5], "02:"), nil // timer 2: keep-alive
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("tcpstate: no socket %s -> %s with nothing in flight in /proc/net/tcp within %v", local, remote, timeout)
		}
	}
}

// procAddr writes an IPv4 host:port as /proc/net/tcp does: the address's
// bytes as a little-endian number, then the port, in hex.
func procAddr(hostport string) (string, error) {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil || !ap.Addr().Unmap().Is4() {
		return "", fmt.Errorf("tcpstate: %q is not an IPv4 address and port", hostport)
	}
	a := ap.Addr().Unmap().As4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], ap.Port()), nil
}

// RequireNoKeepAlive fails t when the socket from local to remote (socket
// says whose, for the message) runs TCP's keep-alive timer. Where there is
// no /proc/net/tcp (not Linux) it skips t: nothing there can tell.
func RequireNoKeepAlive(t testing.TB, local, remote, socket string) {
	t.Helper()
	on, err := KeepAlive(local, remote, 10*time.Second)
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if on {
		t.Fatalf("%s runs a TCP keep-alive timer", socket)
	}
}

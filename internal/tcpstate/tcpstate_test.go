package tcpstate

import (
	"errors"
	"net"
	"testing"
	"time"
)

func TestKeepAlive(t *testing.T) {
	for _, on := range []bool{false, true} {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ka := time.Duration(-1)
		if on {
			ka = time.Minute
		}
		d := net.Dialer{KeepAlive: ka}
		c, err := d.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got, err := KeepAlive(c.LocalAddr().String(), c.RemoteAddr().String(), 5*time.Second)
		if errors.Is(err, ErrUnsupported) {
			t.Skip(err)
		}
		if err != nil || got != on {
			t.Fatalf("keep-alive %v: KeepAlive reports %v, %v", on, got, err)
		}
	}
	if _, err := KeepAlive("127.0.0.1:1", "127.0.0.1:2", 0); err == nil {
		t.Fatal("no error for a socket that is not there")
	}
	if _, err := procAddr("[::1]:80"); err == nil {
		t.Fatal("no error for an IPv6 address")
	}
}

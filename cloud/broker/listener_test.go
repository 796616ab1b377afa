package broker

import (
	"crypto/tls"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestCloseWhileConnecting closes the broker while devices keep connecting.
// Close must return with no connection left served (goleak checks the
// goroutines in TestMain) and, under -race, without the race mochi's own
// listener has between a connection being established and Close waiting
// for its clients.
func TestCloseWhileConnecting(t *testing.T) {
	for round := 0; round < 5; round++ {
		e := newEnv(t)
		addr := e.b.Addr()
		cert := e.cert["dev-1"]
		stop := make(chan struct{})
		var wg sync.WaitGroup
		connected := make(chan struct{}, 1)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if i%2 == 0 {
						// A bare TCP connection: held in the TLS handshake.
						c, err := net.Dial("tcp", addr)
						if err != nil {
							continue
						}
						c.Close()
						continue
					}
					c, err := tls.Dial("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: e.ca.Pool(), ServerName: "localhost"})
					if err != nil {
						continue
					}
					select {
					case connected <- struct{}{}:
					default:
					}
					c.Close()
				}
			}()
		}
		<-connected // at least one full handshake happened before Close
		if err := e.b.Close(); err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
		// Nothing accepts connections after Close.
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Fatalf("round %d: the broker still accepts connections after Close", round)
		}
	}
}

// flakyListener fails its first accepts as a process out of file
// descriptors does, then hands out conns.
type flakyListener struct {
	fails  int
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (f *flakyListener) Accept() (net.Conn, error) {
	if f.fails > 0 {
		f.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	select {
	case c := <-f.conns:
		return c, nil
	case <-f.closed:
		return nil, net.ErrClosed
	}
}

func (f *flakyListener) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

func (f *flakyListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestListenerKeepsAcceptingAfterEMFILE: an accept that fails because the
// process has no file descriptor left must not stop the broker listening
// (it did: a fleet of 10 000 rebooting devices found the port dead once
// the downloads had used up the descriptors, and every device stayed
// offline).
func TestListenerKeepsAcceptingAfterEMFILE(t *testing.T) {
	fl := &flakyListener{fails: 3, conns: make(chan net.Conn, 1), closed: make(chan struct{})}
	l := newListener("t", fl)
	if err := l.Init(nil); err != nil {
		t.Fatal(err)
	}
	served := make(chan net.Conn, 1)
	go l.Serve(func(_ string, c net.Conn) error {
		served <- c
		return nil
	})
	a, b := net.Pipe()
	defer b.Close()
	fl.conns <- a
	select {
	case c := <-served:
		if c != a {
			t.Fatal("served another connection")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the listener stopped accepting after EMFILE")
	}
	if fl.fails != 0 {
		t.Fatalf("%d failing accepts left", fl.fails)
	}
	l.Close(func(string) {})
}

// TestListenerCloseDuringPause: Close ends the pause after a failed accept
// at once.
func TestListenerCloseDuringPause(t *testing.T) {
	fl := &flakyListener{fails: 1 << 30, conns: make(chan net.Conn), closed: make(chan struct{})}
	l := newListener("t", fl)
	l.Init(nil)
	go l.Serve(func(string, net.Conn) error { return nil })
	l.Close(func(string) {}) // returns only when Serve has
}

package faultproxy_test

import (
	"bytes"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/awsfota/awsfota/internal/faultproxy"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tcpServer is a loopback TCP server running serve on each connection.
type tcpServer struct {
	ln       net.Listener
	wg       sync.WaitGroup
	accepted atomic.Int64
	mu       sync.Mutex
	conns    []net.Conn
}

func newTCPServer(t *testing.T, serve func(net.Conn)) *tcpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *tcpServer) addr() string { return s.ln.Addr().String() }

func echo(c net.Conn) { io.Copy(c, c) }

// source sends n bytes of pattern then closes.
func source(n int) func(net.Conn) {
	return func(c net.Conn) { c.Write(pattern(n)) }
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func newProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func dial(t *testing.T, p *faultproxy.Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second)) // a hung test fails instead of hanging
	return c
}

// eventually polls cond until it holds, failing the test after a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

func TestForward(t *testing.T) {
	srv := newTCPServer(t, echo)
	p := newProxy(t, srv.addr())
	c := dial(t, p)
	data := pattern(300_000)
	go func() {
		c.Write(data)
		c.(*net.TCPConn).CloseWrite() // half-close passes through to the server
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echoed %d bytes, want %d", len(got), len(data))
	}
	c.Close()
	eventually(t, "the connection to end", func() bool { return p.Stats().Active == 0 })
	st := p.Stats()
	if st.Accepted != 1 || st.BytesUp != int64(len(data)) || st.BytesDown != int64(len(data)) || st.Cuts != 0 {
		t.Fatalf("Stats %+v", st)
	}
}

func TestHTTP(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(pattern(100_000))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	defer srv.Close()
	p := newProxy(t, srv.Listener.Addr().String())
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	for range 3 {
		resp, err := client.Get("http://" + p.Addr() + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(body) != 100_000 {
			t.Fatalf("%d bytes, %v", len(body), err)
		}
	}
	if st := p.Stats(); st.Accepted != 1 || st.BytesDown < 300_000 {
		t.Fatalf("keep-alive through the proxy: %+v", st)
	}
}

func TestCutAfter(t *testing.T) {
	srv := newTCPServer(t, source(1<<20))
	p := newProxy(t, srv.addr())
	p.SetFault(faultproxy.Fault{CutAfter: 10_000})
	for range 2 { // not Once: every connection
		got, err := io.ReadAll(dial(t, p))
		if err != nil || !bytes.Equal(got, pattern(10_000)) {
			t.Fatalf("read %d bytes, %v; want the first 10000 then EOF", len(got), err)
		}
	}
	if st := p.Stats(); st.Cuts != 2 || st.BytesDown != 20_000 {
		t.Fatalf("Stats %+v", st)
	}
}

func TestCutAfterReset(t *testing.T) {
	srv := newTCPServer(t, source(1<<20))
	p := newProxy(t, srv.addr())
	p.SetFault(faultproxy.Fault{CutAfter: 10_000, Reset: true})
	var got []byte
	c, err := net.Dial("tcp", p.Addr()) // the RST may even beat the end of connect
	if err == nil {
		got, err = io.ReadAll(c)
		c.Close()
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("err = %v, want a connection reset", err)
	}
	if len(got) > 10_000 {
		t.Fatalf("read %d bytes past the cut", len(got))
	}
}

func TestCutUpstreamAfter(t *testing.T) {
	received := make(chan int, 1)
	srv := newTCPServer(t, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		received <- int(n)
	})
	p := newProxy(t, srv.addr())
	p.SetFault(faultproxy.Fault{CutUpstreamAfter: 5000})
	c := dial(t, p)
	go c.Write(pattern(1 << 20)) // fails once the proxy cuts
	if n := <-received; n != 5000 {
		t.Fatalf("server received %d bytes, want 5000", n)
	}
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client side not closed: %v", err)
	}
}

func TestStall(t *testing.T) {
	srv := newTCPServer(t, source(1<<20))
	p := newProxy(t, srv.addr())
	p.SetFault(faultproxy.Fault{CutAfter: 10_000, Stall: true})
	c := dial(t, p)
	buf := make([]byte, 10_000)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes, %v from a stalled connection; want a timeout", n, err)
	}
	if st := p.Stats(); st.Active != 1 || st.BytesDown != 10_000 {
		t.Fatalf("Stats %+v", st)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	p.CloseConns()
	if n, err := c.Read(buf); err != io.EOF {
		t.Fatalf("read %d, %v after CloseConns; want EOF", n, err)
	}
	eventually(t, "the stalled connection to end", func() bool { return p.Stats().Active == 0 })

	// A stalled connection ends when the client gives up.
	c = dial(t, p)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stall", func() bool { return p.Stats().Cuts == 2 })
	c.Close()
	eventually(t, "the abandoned connection to end", func() bool { return p.Stats().Active == 0 })
}

func TestRefuse(t *testing.T) {
	srv := newTCPServer(t, echo)
	p := newProxy(t, srv.addr())
	for _, reset := range []bool{false, true} {
		p.SetFault(faultproxy.Fault{Refuse: true, Reset: reset})
		var got []byte
		c, err := net.Dial("tcp", p.Addr()) // with a RST, even connect may see the reset
		if err == nil {
			got, err = io.ReadAll(c)
			c.Close()
		}
		if len(got) != 0 || (err != nil && !(reset && errors.Is(err, syscall.ECONNRESET))) {
			t.Fatalf("reset=%v: read %d bytes, %v", reset, len(got), err)
		}
	}
	if st := p.Stats(); st.Refused != 2 || st.Accepted != 2 || srv.accepted.Load() != 0 {
		t.Fatalf("Stats %+v, server accepted %d", st, srv.accepted.Load())
	}
}

func TestOnce(t *testing.T) {
	srv := newTCPServer(t, source(50_000))
	p := newProxy(t, srv.addr())
	p.SetFault(faultproxy.Fault{CutAfter: 100, Once: true})
	if got, _ := io.ReadAll(dial(t, p)); len(got) != 100 {
		t.Fatalf("first connection: %d bytes, want 100", len(got))
	}
	if got, err := io.ReadAll(dial(t, p)); err != nil || len(got) != 50_000 {
		t.Fatalf("second connection: %d bytes, %v; want all", len(got), err)
	}
}

// A chooser gives each connection its own fault, by the order of accept.
func TestChooser(t *testing.T) {
	srv := newTCPServer(t, source(50_000))
	p := newProxy(t, srv.addr())
	var seen []int64
	p.SetChooser(func(n int64) faultproxy.Fault {
		seen = append(seen, n) // one goroutine: no lock needed
		return faultproxy.Fault{CutAfter: 1000 * (n + 1)}
	})
	for i := range 3 {
		if got, _ := io.ReadAll(dial(t, p)); len(got) != 1000*(i+1) {
			t.Fatalf("connection %d: %d bytes, want %d", i, len(got), 1000*(i+1))
		}
	}
	p.SetChooser(nil) // back to SetFault's (none)
	if got, _ := io.ReadAll(dial(t, p)); len(got) != 50_000 {
		t.Fatalf("after SetChooser(nil): %d bytes", len(got))
	}
	if len(seen) != 3 || seen[0] != 0 || seen[2] != 2 {
		t.Fatalf("chooser called with %v", seen)
	}
}

// A fault set while a connection is open applies to it, counting from then;
// the zero Fault removes a pending cut.
func TestSetFaultLive(t *testing.T) {
	srv := newTCPServer(t, echo)
	p := newProxy(t, srv.addr())
	c := dial(t, p)
	roundTrip := func(n int) ([]byte, error) {
		go c.Write(pattern(n))
		buf := make([]byte, n)
		m, err := io.ReadFull(c, buf)
		return buf[:m], err
	}
	if _, err := roundTrip(1000); err != nil {
		t.Fatal(err)
	}
	p.SetFault(faultproxy.Fault{CutAfter: 5000})
	p.SetFault(faultproxy.Fault{}) // healed before the cut is due
	if _, err := roundTrip(10_000); err != nil {
		t.Fatal(err)
	}
	p.SetFault(faultproxy.Fault{CutAfter: 300})
	got, err := roundTrip(1000)
	if len(got) != 300 || (err != io.ErrUnexpectedEOF && !errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("after a live CutAfter 300: %d bytes, %v", len(got), err)
	}
}

func TestCloseConns(t *testing.T) {
	srv := newTCPServer(t, echo)
	p := newProxy(t, srv.addr())
	c := dial(t, p)
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	p.CloseConns()
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("err = %v after CloseConns, want EOF", err)
	}
	c2 := dial(t, p)
	c2.Write([]byte("pong"))
	if _, err := io.ReadFull(c2, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("new connection after CloseConns: %q, %v", buf, err)
	}
}

func TestClose(t *testing.T) {
	srv := newTCPServer(t, echo)
	p, err := faultproxy.New(srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p)
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))
	p.SetFault(faultproxy.Fault{CutAfter: 1, Stall: true})
	c.Write([]byte("y"))
	io.ReadFull(c, make([]byte, 1)) // now stalled
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("live connection after Close: %v", err)
	}
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		c.Close()
		t.Fatal("proxy still accepts after Close")
	}
}

func TestDialError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := newProxy(t, addr)
	got, err := io.ReadAll(dial(t, p))
	if len(got) != 0 || err != nil {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if st := p.Stats(); st.DialErrors != 1 {
		t.Fatalf("Stats %+v", st)
	}
}

// Stall alone: the connection is accepted and carries nothing either way.
func TestStallAtOnce(t *testing.T) {
	received := make(chan int64, 1)
	srv := newTCPServer(t, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		received <- n
	})
	p := newProxy(t, srv.addr())
	p.SetFault(faultproxy.Fault{Stall: true})
	c := dial(t, p)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	c.Close()
	if n := <-received; n != 0 {
		t.Fatalf("server received %d bytes through a stalled connection", n)
	}
	if st := p.Stats(); st.BytesUp != 0 || st.Cuts != 1 {
		t.Fatalf("Stats %+v", st)
	}
}

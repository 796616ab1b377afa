// Package faultproxy is a TCP proxy for tests that injects network faults
// between a client and a server: connections cut after a number of bytes
// (with FIN or RST), stalled links that stay open but carry nothing more,
// refused connections, and cuts on demand — the same fault for every
// connection, or one per connection from a (seeded) chooser. It forwards bytes without looking
// at them, so it serves plain HTTP as well as TLS (MQTT over mutual TLS, HTTPS)
// unchanged.
//
// It is a non-test package so that the tests of several packages can import
// it; production code must not. It imports only the standard library.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Fault describes what the proxy does to connections. The zero Fault forwards
// everything.
type Fault struct {
	// CutAfter closes both sides of a connection once this many bytes have
	// been forwarded downstream (server to client) on it. 0: never.
	CutAfter int64
	// CutUpstreamAfter is CutAfter for bytes forwarded upstream (client to
	// server). 0: never.
	CutUpstreamAfter int64
	// Stall, when a cut is due, holds the connection open instead of closing
	// it: nothing more is forwarded in either direction (what arrives is
	// read and dropped), until the client closes its side, CloseConns or
	// Close. Stall with neither CutAfter nor CutUpstreamAfter stalls at once:
	// a connection that is accepted but never answers.
	Stall bool
	// Reset closes with a TCP RST (SO_LINGER 0) instead of a FIN, both for
	// cuts and for Refuse.
	Reset bool
	// Refuse accepts a new connection and closes it at once, without
	// connecting to the target.
	Refuse bool
	// Once applies the fault to the next accepted connection only; the
	// proxy's fault then returns to the zero Fault. A Once fault does not
	// touch live connections.
	Once bool
}

// Stats counts what the proxy did since New.
type Stats struct {
	Accepted   int64 // connections accepted (refused ones included)
	Refused    int64 // connections closed at once because of Fault.Refuse
	DialErrors int64 // connections closed because the target could not be reached
	Cuts       int64 // connections cut or stalled by a byte-count fault
	Active     int   // connections being forwarded now
	BytesUp    int64 // bytes forwarded (handed to the socket) client → server, all connections
	BytesDown  int64 // bytes forwarded (handed to the socket) server → client, all connections
}

// Proxy listens on a loopback port and forwards each connection to a target.
// Its methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // ends at Close: aborts dials in progress
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	fault  Fault
	choose func(n int64) Fault
	conns  map[*conn]struct{}
	closed bool

	accepted, refused, dialErrors, cuts, up, down atomic.Int64
}

// New starts a proxy to target (host:port) listening on 127.0.0.1 at a free
// port. Close it when done.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listening on loopback: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{target: target, ln: ln, ctx: ctx, cancel: cancel, conns: make(map[*conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the host:port clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetFault makes f the proxy's fault. Every fault applies to connections
// accepted after the call. A fault without Once also applies at once to the
// live connections: its byte counts count from the bytes already forwarded
// (CutAfter 100 cuts after 100 more bytes), and the zero Fault removes their
// pending cuts. A connection already stalled stays stalled.
func (p *Proxy) SetFault(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault = f
	if f.Once {
		return
	}
	for c := range p.conns {
		c.apply(f)
	}
}

// SetChooser makes choose pick the fault of every new connection from its
// number n (0 for the first connection the proxy accepted), in place of
// SetFault's; nil returns to SetFault's. Live connections keep their fault.
// choose is called from one goroutine, in the order connections are
// accepted, so a chooser drawing from a seeded source hands out the same
// sequence of faults in every run.
func (p *Proxy) SetChooser(choose func(n int64) Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.choose = choose
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := len(p.conns)
	p.mu.Unlock()
	return Stats{
		Accepted:   p.accepted.Load(),
		Refused:    p.refused.Load(),
		DialErrors: p.dialErrors.Load(),
		Cuts:       p.cuts.Load(),
		Active:     active,
		BytesUp:    p.up.Load(),
		BytesDown:  p.down.Load(),
	}
}

// CloseConns cuts every live connection now (with RST if the connection's
// fault says Reset). The proxy keeps accepting new ones.
func (p *Proxy) CloseConns() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.close()
	}
}

// Close stops listening, cuts every connection and waits until all the
// proxy's goroutines have ended.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.cancel()
	p.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		f := p.takeFault(p.accepted.Add(1) - 1)
		p.wg.Add(1)
		go p.serve(c, f)
	}
}

// takeFault returns the fault for new connection number n, clearing a Once
// fault.
func (p *Proxy) takeFault(n int64) Fault {
	p.mu.Lock()
	choose, f := p.choose, p.fault
	if choose == nil && f.Once {
		p.fault = Fault{}
	}
	p.mu.Unlock()
	if choose != nil {
		return choose(n)
	}
	return f
}

func (p *Proxy) serve(client net.Conn, f Fault) {
	defer p.wg.Done()
	if f.Refuse {
		p.refused.Add(1)
		closeConn(client, f.Reset)
		return
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	server, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		p.dialErrors.Add(1)
		closeConn(client, f.Reset)
		return
	}
	c := &conn{p: p, client: client, server: server}
	c.apply(f)

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.close()
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()

	done := make(chan struct{})
	go func() {
		defer close(done)
		c.pump(down)
	}()
	c.pump(up)
	<-done
	c.close()

	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// direction of a pump.
type direction int

const (
	down direction = iota // server → client
	up                    // client → server
)

// conn is one proxied connection.
type conn struct {
	p              *Proxy
	client, server net.Conn
	closeOnce      sync.Once

	mu        sync.Mutex
	forwarded [2]int64 // bytes forwarded, by direction
	limit     [2]int64 // forwarded count at which to cut, by direction; 0: none
	stall     bool
	reset     bool
	stalled   bool
}

// apply sets the connection's fault, byte counts counting from now.
// Called with p.mu held or before the connection is shared.
func (c *conn) apply(f Fault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.limit = [2]int64{}
	if f.CutAfter > 0 {
		c.limit[down] = c.forwarded[down] + f.CutAfter
	}
	if f.CutUpstreamAfter > 0 {
		c.limit[up] = c.forwarded[up] + f.CutUpstreamAfter
	}
	c.stall, c.reset = f.Stall, f.Reset
	if f.Stall && f.CutAfter <= 0 && f.CutUpstreamAfter <= 0 && !c.stalled {
		c.stalled = true
		c.p.cuts.Add(1)
	}
}

// admit returns how many of n bytes read in direction dir may be forwarded,
// and whether a cut is due after them.
func (c *conn) admit(dir direction, n int) (allowed int, cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stalled {
		return 0, false
	}
	allowed = n
	if l := c.limit[dir]; l > 0 && c.forwarded[dir]+int64(n) >= l {
		allowed, cut = int(l-c.forwarded[dir]), true
	}
	c.forwarded[dir] += int64(allowed)
	return allowed, cut
}

// trip performs a cut that admit said is due: stall or close.
func (c *conn) trip() {
	c.p.cuts.Add(1)
	c.mu.Lock()
	stall := c.stall
	if stall {
		c.stalled = true
	}
	c.mu.Unlock()
	if !stall {
		c.close()
	}
}

func (c *conn) isStalled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stalled
}

// pump forwards one direction until its source ends or the connection is
// closed.
func (c *conn) pump(dir direction) {
	src, dst, count := c.server, c.client, &c.p.down
	if dir == up {
		src, dst, count = c.client, c.server, &c.p.up
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			allowed, cut := c.admit(dir, n)
			if allowed > 0 {
				// Counted before the write, so that a client that has seen
				// the bytes finds them in Stats.
				count.Add(int64(allowed))
				if _, werr := dst.Write(buf[:allowed]); werr != nil {
					c.close()
					return
				}
			}
			if cut {
				c.trip()
			}
		}
		if err == nil {
			continue
		}
		switch {
		case c.isStalled():
			// Hold the client's side open until the client gives up.
			if dir == up {
				c.close()
			}
		case err == io.EOF:
			// Pass the half-close on; the other direction may go on.
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			} else {
				c.close()
			}
		default:
			c.close()
		}
		return
	}
}

// close closes both sides, once.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		reset := c.reset
		c.mu.Unlock()
		closeConn(c.client, reset)
		closeConn(c.server, reset)
	})
}

// closeConn closes nc, with a RST if reset.
func closeConn(nc net.Conn, reset bool) {
	if tc, ok := nc.(*net.TCPConn); ok && reset {
		tc.SetLinger(0)
	}
	nc.Close()
}

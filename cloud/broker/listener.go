package broker

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/awsfota/awsfota/growstack"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// listener serves mochi's connections from a net.Listener and, unlike
// mochi's own listeners.Net, knows every connection it handed out: Close
// stops accepting, drops every connection (also those still in their TLS
// or MQTT handshake, which mochi's client list does not hold yet) and
// waits for each connection's goroutine to end. mochi's Server.Close then
// finds no connection being established while it waits for its clients,
// which otherwise races (a WaitGroup Add during its Wait) and can leave a
// connection served after Close returned.
type listener struct {
	id  string
	ln  net.Listener
	log *slog.Logger
	// ended, if set, is told of each connection whose goroutine has ended
	// (after mochi is done with it).
	ended func(net.Conn)

	mu      sync.Mutex
	closed  bool
	serving bool // Serve has started: Close waits for it to return
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup // one per connection
	served  chan struct{}  // closed when Serve has returned
	done    chan struct{}  // closed by Close: ends a wait between accepts
}

var _ listeners.Listener = (*listener)(nil)

func newListener(id string, ln net.Listener) *listener {
	return &listener{id: id, ln: ln, conns: map[net.Conn]struct{}{}, served: make(chan struct{}), done: make(chan struct{})}
}

func (l *listener) ID() string       { return l.id }
func (l *listener) Address() string  { return l.ln.Addr().String() }
func (l *listener) Protocol() string { return l.ln.Addr().Network() }

func (l *listener) Init(log *slog.Logger) error {
	l.log = log
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Serve accepts connections until the listener is closed and hands each to
// establish on its own goroutine. An accept that fails for want of a
// resource (file descriptors, kernel memory) or because a client gave up
// is tried again after a pause, as net/http's server does: a fleet that
// opens more connections than the process may hold must find the broker
// listening again once some have closed, not a port nobody accepts on.
func (l *listener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.serving = true
	l.mu.Unlock()
	defer close(l.served)
	var pause time.Duration
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if !acceptRetryable(err) {
				return // closed (or broken beyond use)
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			l.log.Warn("accepting a connection failed; trying again", "err", err, "in", pause)
			t := time.NewTimer(pause)
			select {
			case <-t.C:
				continue
			case <-l.done:
				t.Stop()
				return
			}
		}
		pause = 0
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			conn.Close()
			return
		}
		l.conns[conn] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.handshake(conn, establish)
	}
}

// handshakeTimeout bounds a TLS handshake: a client that connects and
// never finishes one does not hold a connection for good.
const handshakeTimeout = 30 * time.Second

// handshake completes the TLS handshake of conn, within handshakeTimeout,
// and serves it on a goroutine of its own. The handshake's goroutine ends
// there: a TLS handshake needs a stack of 16–32 KiB (grown in one step
// while it is shallow: growstack), which then goes back to the runtime for
// the next handshake, while the goroutine that serves
// the connection for hours starts small and stays so (in a storm of 10 000
// connections, 10 000 stacks grown to 32 KiB were a tenth of the CPU:
// copied as they grew, faulted in fresh, copied again as the collector
// shrank them).
func (l *listener) handshake(conn net.Conn, establish listeners.EstablishFn) {
	if tc, ok := conn.(*tls.Conn); ok {
		growstack.Grow()
		tc.SetDeadline(time.Now().Add(handshakeTimeout))
		err := tc.Handshake()
		tc.SetDeadline(time.Time{})
		if err != nil {
			l.log.Debug("TLS handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
			l.finish(conn)
			return
		}
	}
	go l.serve(conn, establish)
}

func (l *listener) serve(conn net.Conn, establish listeners.EstablishFn) {
	if err := establish(l.id, conn); err != nil {
		l.log.Debug("connection ended", "remote", conn.RemoteAddr().String(), "err", err)
	}
	l.finish(conn)
}

// finish closes a connection that is no longer served and forgets it.
func (l *listener) finish(conn net.Conn) {
	defer l.wg.Done()
	conn.Close()
	if l.ended != nil {
		l.ended(conn)
	}
	l.mu.Lock()
	delete(l.conns, conn)
	l.mu.Unlock()
}

// Close stops accepting, disconnects mochi's clients on this listener,
// closes every other connection and waits until no connection is served.
func (l *listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.done)
	l.ln.Close()
	l.mu.Unlock()

	closeClients(l.id)

	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	serving := l.serving
	l.mu.Unlock()
	if serving {
		<-l.served // no Accept can hand out a connection after this
	}
	l.wg.Wait()
}

// acceptRetryable reports whether a failed Accept may succeed when tried
// again: the process or the system is out of file descriptors or buffers
// for now, or a connection was reset before it was accepted.
func acceptRetryable(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

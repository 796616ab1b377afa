package mqttconn

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// session is one network connection, from its CONNACK until it is lost.
type session struct {
	conn      net.Conn
	keepAlive time.Duration // 0: none
	maxOut    int           // the largest packet the broker accepts (0: no limit)
	pending0  []byte        // bytes read after the CONNACK

	wmu  sync.Mutex // one packet written at a time, each in one Write
	sent atomic.Int64
	wg   sync.WaitGroup // a PINGREQ written off the reading goroutine

	mu      sync.Mutex
	nextID  uint16
	pending map[uint16]chan ack
	// inflight holds a slot per QoS 1 PUBLISH awaiting its PUBACK: at most
	// the broker's Receive Maximum.
	inflight chan struct{}
	closed   chan struct{}
}

func newSession(conn net.Conn, keepAlive time.Duration, ca connack, rest []byte) *session {
	if ca.props.serverKeepAlive >= 0 {
		keepAlive = time.Duration(ca.props.serverKeepAlive) * time.Second
	}
	rm := int(ca.props.receiveMaximum)
	if rm == 0 {
		rm = 65535
	}
	s := &session{conn: conn, keepAlive: keepAlive, maxOut: int(ca.props.maximumPacket),
		pending: map[uint16]chan ack{}, inflight: make(chan struct{}, rm), closed: make(chan struct{})}
	if len(rest) > 0 {
		s.pending0 = bytes.Clone(rest)
	}
	s.sent.Store(time.Now().UnixNano())
	return s
}

// register reserves a packet identifier and the channel its ack comes on.
func (s *session) register() (uint16, chan ack, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closed:
		return 0, nil, ErrNotConnected
	default:
	}
	for range 65535 {
		s.nextID++
		if s.nextID == 0 {
			s.nextID = 1
		}
		if _, used := s.pending[s.nextID]; !used {
			ch := make(chan ack, 1)
			s.pending[s.nextID] = ch
			return s.nextID, ch, nil
		}
	}
	return 0, nil, errors.New("mqttconn: every packet identifier is in use")
}

func (s *session) unregister(id uint16) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

// write sends one packet.
func (s *session) write(p []byte) error {
	if s.maxOut > 0 && len(p) > s.maxOut {
		return fmt.Errorf("a packet of %d bytes, more than the %d the broker accepts", len(p), s.maxOut)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	select {
	case <-s.closed:
		return ErrNotConnected
	default:
	}
	if _, err := s.conn.Write(p); err != nil {
		s.conn.Close() // the reader ends the session
		return err
	}
	s.sent.Store(time.Now().UnixNano())
	return nil
}

// end wakes everyone waiting on the session.
func (s *session) end() {
	s.mu.Lock()
	close(s.closed)
	s.pending = nil
	s.mu.Unlock()
}

// read reads packets until the connection fails, handing messages to
// onMessage, and keeps the connection alive: when no packet has both gone
// out and come in for the keep-alive interval it sends a PINGREQ, and when
// the PINGRESP has not come an interval later it gives the connection up
// (MQTT 5, 3.1.2.10). Never a PINGREQ right after connecting: a round trip
// for nothing, on a cellular link a radio wake-up, for a broker ten
// thousand PINGREQs when a fleet connects at once. The timing is the
// connection's read deadline: no goroutine or timer of its own.
func (s *session) read(onMessage func(topic string, payload []byte)) error {
	buf := s.pending0
	s.pending0 = nil
	if buf == nil {
		buf = make([]byte, 0, readBuffer)
	}
	ka := keepAlive{interval: s.keepAlive, received: time.Now()}
	var deadline time.Time
	for {
		for {
			typ, flags, body, n, err := splitPacket(buf)
			if err != nil {
				return err
			}
			if n == 0 {
				break
			}
			ka.received = time.Now()
			if err := s.handle(typ, flags, body, &ka, onMessage); err != nil {
				return err
			}
			buf = buf[:copy(buf, buf[n:])]
		}
		if len(buf) == 0 && cap(buf) > maxKeptBuffer {
			buf = make([]byte, 0, readBuffer) // an idle connection keeps little
		}
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
		if d := ka.deadline(time.Unix(0, s.sent.Load())); !d.Equal(deadline) {
			deadline = d
			s.conn.SetReadDeadline(d)
		}
		m, err := s.conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == nil {
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		switch ka.due(time.Now(), time.Unix(0, s.sent.Load())) {
		case kaGone:
			return fmt.Errorf("no PINGRESP within the keep-alive interval of %v: the broker or the link is gone", ka.interval)
		case kaPing:
			ka.pingSent = time.Now()
			if s.wmu.TryLock() {
				_, err := s.conn.Write(pingreqPacket)
				s.wmu.Unlock()
				if err != nil {
					return fmt.Errorf("sending PINGREQ: %w", err)
				}
				s.sent.Store(time.Now().UnixNano())
				break
			}
			// A large packet is being written, on a slow link perhaps for a
			// while: the PINGREQ follows it, off this goroutine, which goes
			// on reading (and gives the connection up if no PINGRESP comes,
			// which ends a write stuck on a dead link).
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.write(pingreqPacket)
			}()
		}
	}
}

// The read buffer: a device's jobs messages are a few hundred bytes; larger
// ones grow it, and it shrinks back once they are read.
const (
	readBuffer    = 512
	maxKeptBuffer = 4096
)

func (s *session) handle(typ, flags byte, body []byte, ka *keepAlive, onMessage func(string, []byte)) error {
	switch typ {
	case pktPublish:
		p, err := parsePublish(flags, body)
		if err != nil {
			return err
		}
		if onMessage != nil {
			onMessage(p.topic, bytes.Clone(p.payload))
		}
		if p.qos == 1 {
			return s.write(pubackPacket(p.id))
		}
	case pktPuback, pktSuback:
		a, err := parseAck(typ, flags, body)
		if err != nil {
			return err
		}
		a.reasons = bytes.Clone(a.reasons)
		s.mu.Lock()
		ch := s.pending[a.id]
		delete(s.pending, a.id)
		s.mu.Unlock()
		if ch != nil {
			ch <- a
		}
	case pktPingresp:
		if flags != 0 || len(body) != 0 {
			return malformed("a PINGRESP of %d bytes", len(body))
		}
		ka.pingSent = time.Time{}
	case pktDisconnect:
		d, err := parseDisconnect(flags, body)
		if err != nil {
			return err
		}
		msg := fmt.Sprintf("the broker disconnected (reason %#02x)", d.reason)
		if d.reasonString != "" {
			msg += ": " + d.reasonString
		}
		return errors.New(msg)
	default:
		return malformed("unexpected packet type %d from the broker", typ)
	}
	return nil
}

// keepAlive decides when a connection is pinged and when it is given up.
type keepAlive struct {
	interval time.Duration // 0: no keep-alive
	received time.Time     // the last packet received
	pingSent time.Time     // the PINGREQ awaiting its PINGRESP (zero: none)
}

type kaAction int

const (
	kaWait kaAction = iota // nothing due yet
	kaPing                 // send a PINGREQ
	kaGone                 // no PINGRESP came: give the connection up
)

// due says what is due at now, given the last packet sent.
func (k keepAlive) due(now, sent time.Time) kaAction {
	if k.interval <= 0 {
		return kaWait
	}
	if !k.pingSent.IsZero() {
		if !now.Before(k.pingSent.Add(k.interval)) {
			return kaGone
		}
		return kaWait
	}
	quiet := sent
	if k.received.Before(quiet) {
		quiet = k.received
	}
	if !now.Before(quiet.Add(k.interval)) {
		return kaPing
	}
	return kaWait
}

// deadline is when due next needs asking (zero: never).
func (k keepAlive) deadline(sent time.Time) time.Time {
	if k.interval <= 0 {
		return time.Time{}
	}
	if !k.pingSent.IsZero() {
		return k.pingSent.Add(k.interval)
	}
	quiet := sent
	if k.received.Before(quiet) {
		quiet = k.received
	}
	return quiet.Add(k.interval)
}

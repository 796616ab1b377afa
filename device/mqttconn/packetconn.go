package mqttconn

import (
	"net"
	"sync"
)

// packetConn sends each MQTT packet in one write. paho writes a packet as
// several pieces (the fixed header's type byte, its length, the variable
// header and payload), each a Write: over TLS every piece would be a record
// of its own (22 bytes of overhead each) and a TCP segment, on a cellular
// link a radio transmission each, and for a broker as many reads. packetConn
// reads the packet's length from its fixed header and holds the pieces
// until the packet is whole; the Write that completes it writes the packet
// and returns its error.
//
// The stream written must be MQTT packets, one after the other, which is
// all an MQTT client writes. Writers hold the lock around a packet, as
// paho's ControlPacket.WriteTo does for a connection that is a sync.Locker
// (in place of packets.NewThreadSafeConn).
type packetConn struct {
	net.Conn
	sync.Mutex
	buf []byte // the start of a packet not yet whole
}

// maxKeptBuffer is the largest buffer kept between packets: an idle
// device's connection holds no more.
const maxKeptBuffer = 256

func (c *packetConn) Write(p []byte) (int, error) {
	if len(c.buf) == 0 {
		if n := wholePackets(p); n == len(p) {
			return c.Conn.Write(p)
		}
	}
	c.buf = append(c.buf, p...)
	n := wholePackets(c.buf)
	if n == 0 {
		return len(p), nil
	}
	_, err := c.Conn.Write(c.buf[:n])
	rest := copy(c.buf, c.buf[n:])
	c.buf = c.buf[:rest]
	if rest == 0 && cap(c.buf) > maxKeptBuffer {
		c.buf = nil
	}
	if err != nil {
		c.buf = nil
		return 0, err
	}
	return len(p), nil
}

// wholePackets returns the length of the longest prefix of b made of whole
// MQTT packets. A fixed header whose remaining length is malformed (a fifth
// length byte) ends the prefix at the end of b: such bytes are not held
// back, the broker is the one to refuse them.
func wholePackets(b []byte) int {
	n := 0
	for n < len(b) {
		size, ok := packetSize(b[n:])
		switch {
		case !ok || n+size > len(b):
			return n
		case size < 0:
			return len(b)
		}
		n += size
	}
	return n
}

// packetSize returns the size of the packet b starts with, from its fixed
// header: ok is false when b does not hold the whole header yet, and size
// is -1 when the header's remaining length is malformed.
func packetSize(b []byte) (size int, ok bool) {
	remaining, mult := 0, 1
	for i := 1; i <= 4; i++ {
		if i >= len(b) {
			return 0, false
		}
		remaining += int(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			return 1 + i + remaining, true
		}
		mult *= 128
	}
	return -1, true
}

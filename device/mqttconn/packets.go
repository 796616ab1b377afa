package mqttconn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The MQTT 5 packets a device sends and receives (OASIS MQTT 5.0, section
// 3): what a Jobs client needs, QoS 0 and 1, no topic aliases, no
// authentication exchange. Encoders append a whole packet to a buffer, so
// that each is one write; decoders are pure functions over one packet's
// bytes, fuzzed.

// Packet types (MQTT 5, 2.1.2).
const (
	pktConnect    = 1
	pktConnack    = 2
	pktPublish    = 3
	pktPuback     = 4
	pktSubscribe  = 8
	pktSuback     = 9
	pktPingreq    = 12
	pktPingresp   = 13
	pktDisconnect = 14
)

// Properties this client reads or writes (MQTT 5, 2.2.2.2).
const (
	propSessionExpiry   = 0x11
	propServerKeepAlive = 0x13
	propReasonString    = 0x1f
	propReceiveMaximum  = 0x21
	propTopicAlias      = 0x23
	propMaximumPacket   = 0x27
)

// maxPacket is the largest packet the device accepts (announced in CONNECT
// as Maximum Packet Size): AWS IoT Core's messages are at most 128 KiB.
const maxPacket = 256 << 10

// ErrMalformed is wrapped by every decoding error: the broker sent bytes
// that are not the MQTT 5 packet they claim to be.
var ErrMalformed = errors.New("mqttconn: malformed MQTT packet")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// appendVarInt appends n as an MQTT Variable Byte Integer (1.5.5).
func appendVarInt(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// varInt reads a Variable Byte Integer: its value and length. Length 0
// means b ends before it does.
func varInt(b []byte) (int, int, error) {
	n, mult := 0, 1
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, nil
		}
		n += int(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			return n, i + 1, nil
		}
		mult *= 128
	}
	return 0, 0, malformed("a variable byte integer longer than four bytes")
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// appendPacket appends a packet: its fixed header (type, flags, remaining
// length) and body.
func appendPacket(b []byte, typ, flags byte, body []byte) []byte {
	b = append(b, typ<<4|flags)
	b = appendVarInt(b, len(body))
	return append(b, body...)
}

// connectPacket is CONNECT (3.1): clean start or not, the keep-alive in
// seconds, Session Expiry, Receive Maximum and Maximum Packet Size, and the
// client id. No will, no user name or password: AWS IoT authenticates the
// certificate.
func connectPacket(clientID string, keepAlive uint16, cleanStart bool, sessionExpiry uint32, receiveMax uint16) []byte {
	body := make([]byte, 0, 32+len(clientID))
	body = appendString(body, "MQTT")
	body = append(body, 5)
	var flags byte
	if cleanStart {
		flags |= 0x02
	}
	body = append(body, flags)
	body = binary.BigEndian.AppendUint16(body, keepAlive)
	var props []byte
	if sessionExpiry > 0 {
		props = append(props, propSessionExpiry)
		props = binary.BigEndian.AppendUint32(props, sessionExpiry)
	}
	props = append(props, propReceiveMaximum)
	props = binary.BigEndian.AppendUint16(props, receiveMax)
	props = append(props, propMaximumPacket)
	props = binary.BigEndian.AppendUint32(props, maxPacket)
	body = appendVarInt(body, len(props))
	body = append(body, props...)
	body = appendString(body, clientID)
	return appendPacket(nil, pktConnect, 0, body)
}

// subscribePacket is SUBSCRIBE (3.8) of filters at QoS 1.
func subscribePacket(id uint16, filters []string) []byte {
	n := 3
	for _, f := range filters {
		n += 3 + len(f)
	}
	body := make([]byte, 0, n)
	body = binary.BigEndian.AppendUint16(body, id)
	body = append(body, 0) // no properties
	for _, f := range filters {
		body = appendString(body, f)
		body = append(body, 1) // QoS 1, no options
	}
	return appendPacket(make([]byte, 0, n+5), pktSubscribe, 0x02, body)
}

// publishPacket is PUBLISH (3.3) at QoS 1.
func publishPacket(id uint16, topic string, payload []byte) []byte {
	n := 2 + len(topic) + 2 + 1 + len(payload)
	b := make([]byte, 0, n+5)
	b = append(b, pktPublish<<4|0x02) // QoS 1
	b = appendVarInt(b, n)
	b = appendString(b, topic)
	b = binary.BigEndian.AppendUint16(b, id)
	b = append(b, 0) // no properties
	return append(b, payload...)
}

// pubackPacket is PUBACK (3.4) with reason Success, which MQTT 5 lets a
// client leave out.
func pubackPacket(id uint16) []byte {
	return []byte{pktPuback << 4, 2, byte(id >> 8), byte(id)}
}

var (
	pingreqPacket    = []byte{pktPingreq << 4, 0}
	disconnectPacket = []byte{pktDisconnect << 4, 0} // Normal disconnection
)

// splitPacket finds the first whole packet at the start of b: its type,
// flags and body, and the bytes it takes. n is 0 when b holds no whole
// packet yet.
func splitPacket(b []byte) (typ, flags byte, body []byte, n int, err error) {
	if len(b) < 2 {
		return 0, 0, nil, 0, nil
	}
	length, l, err := varInt(b[1:])
	if err != nil || l == 0 {
		return 0, 0, nil, 0, err
	}
	if length > maxPacket {
		return 0, 0, nil, 0, malformed("a packet of %d bytes, more than the %d announced", length, maxPacket)
	}
	end := 1 + l + length
	if len(b) < end {
		return 0, 0, nil, 0, nil
	}
	return b[0] >> 4, b[0] & 0x0f, b[1+l : end], end, nil
}

// props are the properties of a received packet this client acts on.
type props struct {
	reasonString    string
	receiveMaximum  uint16 // 0: not sent
	serverKeepAlive int    // -1: not sent
	maximumPacket   uint32 // 0: not sent
	topicAlias      bool
}

// readProps reads a property list (2.2.2): its length, then the properties.
// It returns the properties and the bytes they took.
func readProps(b []byte) (props, int, error) {
	p := props{serverKeepAlive: -1}
	length, l, err := varInt(b)
	if err != nil {
		return p, 0, err
	}
	if l == 0 || len(b)-l < length {
		return p, 0, malformed("the properties run past the packet")
	}
	rest := b[l : l+length]
	for len(rest) > 0 {
		id, il, err := varInt(rest)
		if err != nil {
			return p, 0, err
		}
		if il == 0 {
			return p, 0, malformed("a property identifier runs past the properties")
		}
		rest = rest[il:]
		var size int
		switch id {
		case 0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2a: // byte
			size = 1
		case propServerKeepAlive, propReceiveMaximum, 0x22, propTopicAlias: // two-byte integer
			size = 2
		case 0x02, propSessionExpiry, 0x18, propMaximumPacket: // four-byte integer
			size = 4
		case 0x0b: // subscription identifier: variable byte integer
			_, vl, err := varInt(rest)
			if err != nil {
				return p, 0, err
			}
			if vl == 0 {
				return p, 0, malformed("property %#x runs past the properties", id)
			}
			size = vl
		case 0x03, 0x08, 0x12, 0x15, 0x1a, 0x1c, propReasonString, 0x09, 0x16: // UTF-8 string or binary data
			if len(rest) < 2 {
				return p, 0, malformed("property %#x runs past the properties", id)
			}
			size = 2 + int(binary.BigEndian.Uint16(rest))
		case 0x26: // user property: a string pair
			if len(rest) < 2 {
				return p, 0, malformed("a user property runs past the properties")
			}
			k := 2 + int(binary.BigEndian.Uint16(rest))
			if len(rest) < k+2 {
				return p, 0, malformed("a user property runs past the properties")
			}
			size = k + 2 + int(binary.BigEndian.Uint16(rest[k:]))
		default:
			return p, 0, malformed("unknown property %#x", id)
		}
		if len(rest) < size {
			return p, 0, malformed("property %#x runs past the properties", id)
		}
		v := rest[:size]
		switch id {
		case propReasonString:
			if !utf8.Valid(v[2:]) {
				return p, 0, malformed("the reason string is not UTF-8")
			}
			p.reasonString = string(v[2:])
		case propReceiveMaximum:
			p.receiveMaximum = binary.BigEndian.Uint16(v)
			if p.receiveMaximum == 0 {
				return p, 0, malformed("Receive Maximum 0")
			}
		case propServerKeepAlive:
			p.serverKeepAlive = int(binary.BigEndian.Uint16(v))
		case propMaximumPacket:
			p.maximumPacket = binary.BigEndian.Uint32(v)
			if p.maximumPacket == 0 {
				return p, 0, malformed("Maximum Packet Size 0")
			}
		case propTopicAlias:
			p.topicAlias = true
		}
		rest = rest[size:]
	}
	return p, l + length, nil
}

// connack is a decoded CONNACK (3.2).
type connack struct {
	sessionPresent bool
	reason         byte
	props          props
}

func parseConnack(flags byte, body []byte) (connack, error) {
	var c connack
	if flags != 0 {
		return c, malformed("CONNACK with flags %#x", flags)
	}
	if len(body) < 2 {
		return c, malformed("a CONNACK of %d bytes", len(body))
	}
	if body[0]&^1 != 0 {
		return c, malformed("CONNACK acknowledge flags %#x", body[0])
	}
	c.sessionPresent = body[0]&1 == 1
	c.reason = body[1]
	p, n, err := readProps(body[2:])
	if err != nil {
		return c, fmt.Errorf("CONNACK: %w", err)
	}
	if 2+n != len(body) {
		return c, malformed("%d bytes after the CONNACK's properties", len(body)-2-n)
	}
	c.props = p
	return c, nil
}

// publish is a received PUBLISH (3.3).
type publish struct {
	topic   string
	id      uint16 // 0 at QoS 0
	qos     byte
	payload []byte
}

func parsePublish(flags byte, body []byte) (publish, error) {
	var p publish
	p.qos = flags >> 1 & 3
	if p.qos > 1 {
		return p, malformed("PUBLISH at QoS %d: the device subscribes at QoS 1 at most", p.qos)
	}
	if len(body) < 2 {
		return p, malformed("a PUBLISH of %d bytes", len(body))
	}
	tl := int(binary.BigEndian.Uint16(body))
	if len(body) < 2+tl {
		return p, malformed("the PUBLISH's topic runs past the packet")
	}
	topic := body[2 : 2+tl]
	if !utf8.Valid(topic) {
		return p, malformed("the PUBLISH's topic is not UTF-8")
	}
	rest := body[2+tl:]
	if p.qos > 0 {
		if len(rest) < 2 {
			return p, malformed("a QoS 1 PUBLISH without a packet identifier")
		}
		p.id = binary.BigEndian.Uint16(rest)
		if p.id == 0 {
			return p, malformed("a QoS 1 PUBLISH with packet identifier 0")
		}
		rest = rest[2:]
	}
	pr, n, err := readProps(rest)
	if err != nil {
		return p, fmt.Errorf("PUBLISH to %q: %w", topic, err)
	}
	if pr.topicAlias {
		return p, malformed("a PUBLISH with a topic alias: the device allows none")
	}
	if tl == 0 {
		return p, malformed("a PUBLISH without a topic")
	}
	p.topic = string(topic)
	p.payload = rest[n:]
	return p, nil
}

// ack is a decoded PUBACK (3.4) or SUBACK (3.9): the packet identifier and
// the reason codes (one for a PUBACK, one per filter for a SUBACK).
type ack struct {
	id      uint16
	reasons []byte
	reason  string // the Reason String property, if any
}

func parseAck(typ, flags byte, body []byte) (ack, error) {
	var a ack
	name := map[byte]string{pktPuback: "PUBACK", pktSuback: "SUBACK"}[typ]
	if flags != 0 {
		return a, malformed("%s with flags %#x", name, flags)
	}
	if len(body) < 2 {
		return a, malformed("a %s of %d bytes", name, len(body))
	}
	a.id = binary.BigEndian.Uint16(body)
	if a.id == 0 {
		return a, malformed("a %s for packet identifier 0", name)
	}
	rest := body[2:]
	if typ == pktSuback {
		pr, n, err := readProps(rest)
		if err != nil {
			return a, fmt.Errorf("%s: %w", name, err)
		}
		if len(rest) == n {
			return a, malformed("a SUBACK without reason codes")
		}
		a.reason = pr.reasonString
		a.reasons = rest[n:]
		return a, nil
	}
	switch len(rest) {
	case 0:
		a.reasons = []byte{0} // Success, left out (3.4.2.1)
		return a, nil
	case 1:
		a.reasons = []byte{rest[0]}
		return a, nil
	}
	pr, n, err := readProps(rest[1:])
	if err != nil {
		return a, fmt.Errorf("%s: %w", name, err)
	}
	if 1+n != len(rest) {
		return a, malformed("%d bytes after the PUBACK's properties", len(rest)-1-n)
	}
	a.reason = pr.reasonString
	a.reasons = []byte{rest[0]}
	return a, nil
}

// disconnect is a DISCONNECT (3.14) from the broker.
type disconnect struct {
	reason       byte
	reasonString string
}

func parseDisconnect(flags byte, body []byte) (disconnect, error) {
	var d disconnect
	if flags != 0 {
		return d, malformed("DISCONNECT with flags %#x", flags)
	}
	if len(body) == 0 {
		return d, nil // Normal disconnection
	}
	d.reason = body[0]
	if len(body) == 1 {
		return d, nil
	}
	pr, n, err := readProps(body[1:])
	if err != nil {
		return d, fmt.Errorf("DISCONNECT: %w", err)
	}
	if 1+n != len(body) {
		return d, malformed("%d bytes after the DISCONNECT's properties", len(body)-1-n)
	}
	d.reasonString = pr.reasonString
	return d, nil
}

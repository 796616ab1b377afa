package mqttconn

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	mpackets "github.com/mochi-mqtt/server/v2/packets"
)

// decodeWithMochi reads a packet this client encoded with the broker's
// decoder, as a broker would.
func decodeWithMochi(t *testing.T, b []byte) mpackets.Packet {
	t.Helper()
	pk := mpackets.Packet{ProtocolVersion: 5}
	typ, flags, body, n, err := splitPacket(b)
	if err != nil || n != len(b) {
		t.Fatalf("splitPacket(% x) = %d, %v: want the whole packet", b, n, err)
	}
	pk.FixedHeader = mpackets.FixedHeader{Type: typ, Remaining: len(body)}
	if err := pk.FixedHeader.Decode(b[0]); err != nil {
		t.Fatal(err)
	}
	_ = flags
	var derr error
	switch typ {
	case pktConnect:
		derr = pk.ConnectDecode(body)
	case pktSubscribe:
		derr = pk.SubscribeDecode(body)
	case pktPublish:
		derr = pk.PublishDecode(body)
	case pktPuback:
		derr = pk.PubackDecode(body)
	default:
		pk.FixedHeader.Type = typ
	}
	if derr != nil {
		t.Fatalf("mochi cannot decode % x: %v", b, derr)
	}
	return pk
}

// What the device sends, read back by another implementation (mochi's).
func TestPacketsMochiReads(t *testing.T) {
	c := decodeWithMochi(t, connectPacket("thing-1", 60, true, 3600, 32))
	if c.Connect.ClientIdentifier != "thing-1" || c.Connect.Keepalive != 60 || !c.Connect.Clean || c.ProtocolVersion != 5 ||
		c.Properties.SessionExpiryInterval != 3600 || c.Properties.ReceiveMaximum != 32 || c.Properties.MaximumPacketSize != maxPacket {
		t.Fatalf("CONNECT read as %+v %+v", c.Connect, c.Properties)
	}
	c = decodeWithMochi(t, connectPacket("t", 30, false, 0, 1))
	if c.Connect.Clean || c.Properties.SessionExpiryIntervalFlag {
		t.Fatalf("CONNECT without clean start or expiry read as %+v %+v", c.Connect, c.Properties)
	}
	filters := []string{"$aws/things/t/jobs/notify-next", "$aws/things/t/jobs/$next/get/+"}
	s := decodeWithMochi(t, subscribePacket(7, filters))
	if s.PacketID != 7 || len(s.Filters) != 2 || s.Filters[0].Filter != filters[0] || s.Filters[1].Filter != filters[1] || s.Filters[1].Qos != 1 {
		t.Fatalf("SUBSCRIBE read as id %d %+v", s.PacketID, s.Filters)
	}
	big := bytes.Repeat([]byte("x"), 300) // a remaining length of two bytes
	p := decodeWithMochi(t, publishPacket(9, "$aws/things/t/jobs/$next/get", big))
	if p.PacketID != 9 || p.TopicName != "$aws/things/t/jobs/$next/get" || !bytes.Equal(p.Payload, big) || p.FixedHeader.Qos != 1 {
		t.Fatalf("PUBLISH read as id %d topic %q qos %d, %d bytes", p.PacketID, p.TopicName, p.FixedHeader.Qos, len(p.Payload))
	}
	a := decodeWithMochi(t, pubackPacket(513))
	if a.PacketID != 513 || a.ReasonCode != 0 {
		t.Fatalf("PUBACK read as id %d reason %#x", a.PacketID, a.ReasonCode)
	}
}

// encodeWithMochi writes a packet as the broker would.
func encodeWithMochi(t *testing.T, pk mpackets.Packet) []byte {
	t.Helper()
	pk.ProtocolVersion = 5
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case mpackets.Connack:
		err = pk.ConnackEncode(&buf)
	case mpackets.Publish:
		err = pk.PublishEncode(&buf)
	case mpackets.Puback:
		err = pk.PubackEncode(&buf)
	case mpackets.Suback:
		err = pk.SubackEncode(&buf)
	case mpackets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// What a broker sends, read by the device.
func TestPacketsFromMochi(t *testing.T) {
	b := encodeWithMochi(t, mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Connack}, SessionPresent: true,
		Properties: mpackets.Properties{ReceiveMaximum: 100, ServerKeepAlive: 45, ServerKeepAliveFlag: true, MaximumPacketSize: 131072,
			ReasonString: "welcome", User: []mpackets.UserProperty{{Key: "k", Val: "v"}}, TopicAliasMaximum: 8}})
	typ, flags, body, n, err := splitPacket(b)
	if err != nil || n != len(b) || typ != pktConnack {
		t.Fatalf("splitPacket(CONNACK) = %d %d %v", typ, n, err)
	}
	ca, err := parseConnack(flags, body)
	if err != nil || !ca.sessionPresent || ca.reason != 0 || ca.props.receiveMaximum != 100 || ca.props.serverKeepAlive != 45 ||
		ca.props.maximumPacket != 131072 || ca.props.reasonString != "welcome" {
		t.Fatalf("CONNACK = %+v, %v", ca, err)
	}

	payload := bytes.Repeat([]byte(`{"execution":{}}`), 40)
	b = encodeWithMochi(t, mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Publish, Qos: 1}, PacketID: 300,
		TopicName: "$aws/things/t/jobs/notify-next", Payload: payload, Properties: mpackets.Properties{MessageExpiryInterval: 60}})
	typ, flags, body, _, _ = splitPacket(b)
	pub, err := parsePublish(flags, body)
	if err != nil || typ != pktPublish || pub.id != 300 || pub.qos != 1 || pub.topic != "$aws/things/t/jobs/notify-next" || !bytes.Equal(pub.payload, payload) {
		t.Fatalf("PUBLISH = %+v, %v", pub, err)
	}

	for _, rc := range []byte{0, 0x87} {
		b = encodeWithMochi(t, mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Puback}, PacketID: 5, ReasonCode: rc})
		typ, flags, body, _, _ = splitPacket(b)
		a, err := parseAck(typ, flags, body)
		if err != nil || a.id != 5 || len(a.reasons) != 1 || a.reasons[0] != rc {
			t.Fatalf("PUBACK %#x = %+v, %v", rc, a, err)
		}
	}

	b = encodeWithMochi(t, mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Suback}, PacketID: 6, ReasonCodes: []byte{1, 0x87}})
	typ, flags, body, _, _ = splitPacket(b)
	a, err := parseAck(typ, flags, body)
	if err != nil || a.id != 6 || !bytes.Equal(a.reasons, []byte{1, 0x87}) {
		t.Fatalf("SUBACK = %+v, %v", a, err)
	}

	b = encodeWithMochi(t, mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Disconnect}, ReasonCode: 0x8e,
		Properties: mpackets.Properties{ReasonString: "session taken over"}})
	typ, flags, body, _, _ = splitPacket(b)
	d, err := parseDisconnect(flags, body)
	if err != nil || typ != pktDisconnect || d.reason != 0x8e || d.reasonString != "session taken over" {
		t.Fatalf("DISCONNECT = %+v, %v", d, err)
	}
}

// A stream split anywhere: splitPacket waits for the rest.
func TestSplitPacketPartial(t *testing.T) {
	stream := append(publishPacket(1, "a/b", bytes.Repeat([]byte("z"), 200)), pingreqPacket...)
	for cut := range len(stream) {
		_, _, _, n, err := splitPacket(stream[:cut])
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if first := len(stream) - 2; (cut < first && n != 0) || (cut >= first && n != first) {
			t.Fatalf("cut at %d: n = %d", cut, n)
		}
	}
}

func TestPacketErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkt  []byte
		want string
	}{
		{"remaining length of five bytes", []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, "longer than four bytes"},
		{"too big", []byte{0x30, 0xff, 0xff, 0x7f}, "more than the"},
		{"CONNACK too short", []byte{0x20, 1, 0}, "a CONNACK of 1 bytes"},
		{"CONNACK flags", []byte{0x20, 3, 2, 0, 0}, "acknowledge flags"},
		{"CONNACK trailing", []byte{0x20, 4, 0, 0, 0, 9}, "after the CONNACK's properties"},
		{"CONNACK properties past the end", []byte{0x20, 3, 0, 0, 5}, "run past the packet"},
		{"unknown property", []byte{0x20, 5, 0, 0, 2, 0x7f, 0}, "unknown property 0x7f"},
		{"Receive Maximum 0", []byte{0x20, 6, 0, 0, 3, 0x21, 0, 0}, "Receive Maximum 0"},
		{"string property past the end", []byte{0x20, 6, 0, 0, 3, 0x1f, 0, 9}, "property 0x1f runs past"},
		{"reason string not UTF-8", []byte{0x20, 7, 0, 0, 4, 0x1f, 0, 1, 0xff}, "not UTF-8"},
		{"PUBLISH QoS 2", []byte{0x34, 5, 0, 1, 'a', 0, 1}, "QoS 2"},
		{"PUBLISH topic past the end", []byte{0x30, 3, 0, 9, 'a'}, "topic runs past"},
		{"PUBLISH without id", []byte{0x32, 4, 0, 1, 'a', 0}, "without a packet identifier"},
		{"PUBLISH id 0", []byte{0x32, 6, 0, 1, 'a', 0, 0, 0}, "packet identifier 0"},
		{"PUBLISH topic alias", []byte{0x30, 7, 0, 1, 'a', 3, 0x23, 0, 1}, "topic alias"},
		{"PUBLISH without topic", []byte{0x30, 3, 0, 0, 0}, "without a topic"},
		{"PUBLISH topic not UTF-8", []byte{0x30, 4, 0, 1, 0xfe, 0}, "not UTF-8"},
		{"SUBACK without reasons", []byte{0x90, 3, 0, 1, 0}, "without reason codes"},
		{"PUBACK id 0", []byte{0x40, 2, 0, 0}, "packet identifier 0"},
		{"PUBACK flags", []byte{0x41, 2, 0, 1}, "flags"},
		{"PUBACK trailing", []byte{0x40, 5, 0, 1, 0x10, 0, 7}, "after the PUBACK's properties"},
		{"DISCONNECT properties", []byte{0xe0, 3, 0x8e, 5, 0}, "run past the packet"},
	} {
		typ, flags, body, _, err := splitPacket(tc.pkt)
		if err == nil {
			switch typ {
			case pktConnack:
				_, err = parseConnack(flags, body)
			case pktPublish:
				_, err = parsePublish(flags, body)
			case pktPuback, pktSuback:
				_, err = parseAck(typ, flags, body)
			case pktDisconnect:
				_, err = parseDisconnect(flags, body)
			}
		}
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: % x: err = %v, want ErrMalformed about %q", tc.name, tc.pkt, err, tc.want)
		}
	}
}

// Whatever a broker sends, the device's decoders return a packet or an
// ErrMalformed, and never panic or read past the packet.
func FuzzPackets(f *testing.F) {
	f.Add([]byte{0x20, 3, 1, 0, 0})
	f.Add(publishPacket(1, "$aws/things/t/jobs/notify-next", []byte(`{"timestamp":1}`)))
	f.Add([]byte{0x30, 7, 0, 1, 'a', 3, 0x23, 0, 1})
	f.Add([]byte{0x90, 4, 0, 1, 0, 1})
	f.Add([]byte{0x40, 6, 0, 1, 0x10, 2, 0x1f, 0})
	f.Add([]byte{0xe0, 8, 0x8e, 6, 0x26, 0, 1, 'k', 0, 0})
	f.Add([]byte{0x20, 9, 0, 0, 6, 0x0b, 0x80, 0x01, 0x13, 0, 5})
	f.Fuzz(func(t *testing.T, b []byte) {
		for len(b) > 0 {
			typ, flags, body, n, err := splitPacket(b)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("splitPacket: %v is not ErrMalformed", err)
				}
				return
			}
			if n == 0 {
				return
			}
			if n > len(b) || len(body) > n {
				t.Fatalf("splitPacket took %d of %d bytes", n, len(b))
			}
			switch typ {
			case pktConnack:
				_, err = parseConnack(flags, body)
			case pktPublish:
				var p publish
				p, err = parsePublish(flags, body)
				if err == nil && (p.topic == "" || len(p.payload) > len(body)) {
					t.Fatalf("PUBLISH %+v from %d bytes", p, len(body))
				}
			case pktPuback, pktSuback:
				var a ack
				a, err = parseAck(typ, flags, body)
				if err == nil && (a.id == 0 || len(a.reasons) == 0) {
					t.Fatalf("ack %+v", a)
				}
			case pktDisconnect:
				_, err = parseDisconnect(flags, body)
			}
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("type %d: %v is not ErrMalformed", typ, err)
			}
			b = b[n:]
		}
	})
}

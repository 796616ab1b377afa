package mqttconn

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/packets"
	mqtt "github.com/mochi-mqtt/server/v2"
	mpackets "github.com/mochi-mqtt/server/v2/packets"
)

// writeRecorder keeps each Write apart, and passes it on to Conn if set.
type writeRecorder struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	fail   error
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail != nil {
		return 0, w.fail
	}
	w.writes = append(w.writes, bytes.Clone(p))
	if w.Conn != nil {
		return w.Conn.Write(p)
	}
	return len(p), nil
}

func (w *writeRecorder) all() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes
}

// pahoPackets are packets as paho writes them, big and small.
func pahoPackets() []*packets.ControlPacket {
	connect := packets.NewControlPacket(packets.CONNECT)
	c := connect.Content.(*packets.Connect)
	c.ClientID, c.KeepAlive, c.CleanStart, c.ProtocolName, c.ProtocolVersion = "sim-00001", 60, true, "MQTT", 5
	sub := packets.NewControlPacket(packets.SUBSCRIBE)
	s := sub.Content.(*packets.Subscribe)
	s.PacketID = 1
	s.Subscriptions = []packets.SubOptions{{Topic: "$aws/things/sim-00001/jobs/notify-next", QoS: 1}, {Topic: "$aws/things/sim-00001/jobs/+/get/+", QoS: 1}}
	pub := packets.NewControlPacket(packets.PUBLISH)
	p := pub.Content.(*packets.Publish)
	p.Topic, p.QoS, p.PacketID, p.Payload = "$aws/things/sim-00001/jobs/$next/get", 1, 2, []byte(`{"clientToken":"x"}`)
	big := packets.NewControlPacket(packets.PUBLISH)
	b := big.Content.(*packets.Publish)
	b.Topic, b.QoS, b.PacketID, b.Payload = "big", 1, 3, bytes.Repeat([]byte("z"), 300_000) // a 3-byte remaining length
	ack := packets.NewControlPacket(packets.PUBACK)
	ack.Content.(*packets.Puback).PacketID = 7
	return []*packets.ControlPacket{connect, sub, pub, big, ack, packets.NewControlPacket(packets.PINGREQ)}
}

// Each packet paho writes reaches the connection in one write, byte for
// byte what paho wrote, and a connection's error is the packet's.
func TestPacketConnOneWritePerPacket(t *testing.T) {
	rec := &writeRecorder{}
	pc := &packetConn{Conn: rec}
	var want [][]byte
	for _, p := range pahoPackets() {
		var direct bytes.Buffer
		if _, err := p.WriteTo(&direct); err != nil {
			t.Fatal(err)
		}
		want = append(want, direct.Bytes())
		if _, err := p.WriteTo(pc); err != nil {
			t.Fatal(err)
		}
	}
	got := rec.all()
	if len(got) != len(want) {
		t.Fatalf("%d packets went out in %d writes, want one each", len(want), len(got))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d: wrote % x…, paho wrote % x…", i, got[i][:min(8, len(got[i]))], want[i][:min(8, len(want[i]))])
		}
	}
	if len(pc.buf) != 0 || cap(pc.buf) > maxKeptBuffer {
		t.Fatalf("after whole packets the connection keeps %d bytes (capacity %d)", len(pc.buf), cap(pc.buf))
	}

	rec.fail = net.ErrClosed
	if _, err := pahoPackets()[2].WriteTo(pc); err == nil {
		t.Fatal("a packet written to a closed connection reported no error")
	}
}

// Over a real TLS connection to a broker, every MQTT packet the device
// sends is one TLS record in one write: CONNECT, SUBSCRIBE and PUBLISH
// are three application-data records (paho alone writes each in pieces,
// a record each).
func TestPacketsAreOneRecordEach(t *testing.T) {
	p := newPKI(t)
	srv, addr := broker(t, p)
	var raw *writeRecorder
	dialed := make(chan struct{})
	up := make(chan struct{}, 1)
	ctx := context.Background()
	c := dialUp(t, Config{
		Endpoint: addr, ClientID: "dev-1", Certificate: p.client, RootCAs: p.pool, ServerName: "localhost",
		Filters: []string{"$aws/things/dev-1/jobs/notify-next", "$aws/things/dev-1/jobs/$next/get/+"},
		OnUp:    func() { up <- struct{}{} },
		Dialer: func(ctx context.Context, network, a string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, network, a)
			if err != nil {
				return nil, err
			}
			raw = &writeRecorder{Conn: conn}
			close(dialed)
			return raw, nil
		},
	}, up)
	seen := make(chan struct{}, 1)
	if err := srv.Subscribe("probe/#", 2, func(*mqtt.Client, mpackets.Subscription, mpackets.Packet) { seen <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, "probe/x", bytes.Repeat([]byte("p"), 200)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, seen, "publish")
	<-dialed

	// The first write holding application-data records is the client's
	// encrypted handshake flight (TLS 1.3); each one after it is MQTT.
	handshake, packets := false, 0
	for i, w := range raw.all() {
		var types []byte
		for rest := w; len(rest) > 0; {
			if len(rest) < 5 {
				t.Fatalf("write %d ends inside a record header", i)
			}
			n := 5 + int(binary.BigEndian.Uint16(rest[3:5]))
			if n > len(rest) {
				t.Fatalf("write %d ends inside a record", i)
			}
			types = append(types, rest[0])
			rest = rest[n:]
		}
		switch {
		case !bytes.Contains(types, []byte{23}):
		case !handshake:
			handshake = true
		case len(types) != 1:
			t.Fatalf("write %d holds records of types %v: want one record a write", i, types)
		default:
			packets++
		}
	}
	if packets != 3 {
		t.Fatalf("CONNECT, SUBSCRIBE and PUBLISH went out in %d application records, want 3", packets)
	}
}

// Whatever pieces a stream of packets is written in, the bytes go out
// unchanged, and every write ends where a packet ends.
func FuzzPacketConn(f *testing.F) {
	var stream bytes.Buffer
	for _, p := range pahoPackets()[:3] {
		p.WriteTo(&stream)
	}
	f.Add(stream.Bytes(), []byte{1, 3, 5, 200})
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00}, []byte{2}) // a malformed length
	f.Add([]byte{0xc0, 0x00, 0xd0, 0x00}, []byte{})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		rec := &writeRecorder{}
		pc := &packetConn{Conn: rec}
		rest := data
		for _, c := range cuts {
			n := min(int(c), len(rest))
			if _, err := pc.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if _, err := pc.Write(rest); err != nil {
			t.Fatal(err)
		}
		var out []byte
		ends := map[int]bool{0: true}
		for _, w := range rec.all() {
			out = append(out, w...)
			ends[len(out)] = true
		}
		if got := append(bytes.Clone(out), pc.buf...); !bytes.Equal(got, data) {
			t.Fatalf("wrote and held % x, given % x", got, data)
		}
		// Packet boundaries of data, as far as its headers are sound.
		bounds := map[int]bool{0: true}
		for n := 0; n < len(data); {
			size, ok := packetSize(data[n:])
			if !ok || size < 0 {
				return // an incomplete or malformed header: nothing more to check
			}
			n += size
			bounds[n] = true
		}
		for e := range ends {
			if !bounds[e] && e != len(data) {
				t.Fatalf("a write ended at %d, inside a packet (packets end at %v)", e, bounds)
			}
		}
	})
}

package mqttconn

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	mpackets "github.com/mochi-mqtt/server/v2/packets"
)

// writeRecorder keeps each Write apart and passes it on to Conn.
type writeRecorder struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, bytes.Clone(p))
	return w.Conn.Write(p)
}

func (w *writeRecorder) all() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes
}

// Over a real TLS connection to a broker, every MQTT packet the device
// sends is one TLS record in one write: CONNECT, SUBSCRIBE and PUBLISH
// are three application-data records (a record costs 22 bytes and, on a
// cellular link, a transmission).
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

package mqttconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"testing"
	"time"

	"github.com/awsfota/awsfota/internal/tcpstate"
)

// keepAlive pings only after an interval without traffic both ways, never
// right after connecting, and gives the connection up when a PINGRESP does
// not come within the interval.
func TestKeepAliveDue(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, tc := range []struct {
		name         string
		k            keepAlive
		now, sent    time.Time
		want         kaAction
		wantDeadline time.Time
	}{
		{"just connected", keepAlive{interval: 30 * time.Second, received: at(0)}, at(0), at(0), kaWait, at(30)},
		{"traffic both ways at 20 s", keepAlive{interval: 30 * time.Second, received: at(20)}, at(30), at(20), kaWait, at(50)},
		{"received only", keepAlive{interval: 30 * time.Second, received: at(29)}, at(30), at(0), kaPing, at(30)},
		{"sent only", keepAlive{interval: 30 * time.Second, received: at(0)}, at(30), at(29), kaPing, at(30)},
		{"idle an interval", keepAlive{interval: 30 * time.Second, received: at(20)}, at(50), at(20), kaPing, at(50)},
		{"awaiting the PINGRESP", keepAlive{interval: 30 * time.Second, received: at(20), pingSent: at(50)}, at(79), at(50), kaWait, at(80)},
		{"no PINGRESP", keepAlive{interval: 30 * time.Second, received: at(20), pingSent: at(50)}, at(80), at(50), kaGone, at(80)},
		{"no keep-alive", keepAlive{received: at(0)}, at(1000), at(0), kaWait, time.Time{}},
	} {
		if got := tc.k.due(tc.now, tc.sent); got != tc.want {
			t.Errorf("%s: due = %v, want %v", tc.name, got, tc.want)
		}
		if got := tc.k.deadline(tc.sent); !got.Equal(tc.wantDeadline) {
			t.Errorf("%s: deadline = %v, want %v", tc.name, got, tc.wantDeadline)
		}
	}
}

// rawBroker accepts one TLS connection, answers its CONNECT with a CONNACK
// (session present if asked), then hands every packet it reads to got, and
// answers a PINGREQ with a PINGRESP when pong.
func rawBroker(t *testing.T, p *pki, pong bool, got chan<- []byte) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAnyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); ln.Close(); <-done })
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		defer stop()
		var buf []byte
		connected := false
		for {
			b := make([]byte, 512)
			n, err := conn.Read(b)
			if err != nil {
				close(got)
				return
			}
			buf = append(buf, b[:n]...)
			for {
				typ, _, _, m, err := splitPacket(buf)
				if err != nil || m == 0 {
					break
				}
				pkt := bytes.Clone(buf[:m])
				buf = buf[m:]
				switch {
				case !connected && typ == pktConnect:
					connected = true
					conn.Write([]byte{pktConnack << 4, 3, 0, 0, 0})
				case typ == pktPingreq && pong:
					conn.Write([]byte{pktPingresp << 4, 0})
				}
				got <- pkt
			}
		}
	}()
	return ln.Addr().String()
}

// Against a broker that never answers a PINGREQ: the first comes a
// keep-alive interval after the CONNACK (not at once), and an interval
// later, no PINGRESP having come, the device gives the connection up.
func TestKeepAliveGivesUpWithoutPingresp(t *testing.T) {
	p := newPKI(t)
	got := make(chan []byte, 16)
	addr := rawBroker(t, p, false, got)
	down := make(chan time.Time, 1)
	const interval = 300 * time.Millisecond
	c, err := Dial(context.Background(), Config{Endpoint: addr, ClientID: "dev-1", Certificate: p.client, RootCAs: p.pool, ServerName: "localhost",
		KeepAlive: interval, BackoffMin: time.Hour, BackoffMax: time.Hour,
		OnDown: func() { down <- time.Now() }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	connect := waitFor(t, got, "CONNECT")
	connected := time.Now()
	if connect[0] != pktConnect<<4 || binary.BigEndian.Uint16(connect[10:12]) != 1 {
		t.Fatalf("CONNECT % x: want keep-alive 1 s (300 ms rounded up)", connect)
	}
	ping := waitFor(t, got, "PINGREQ")
	pinged := time.Now()
	if !bytes.Equal(ping, pingreqPacket) {
		t.Fatalf("sent % x, want a PINGREQ", ping)
	}
	if d := pinged.Sub(connected); d < interval-20*time.Millisecond {
		t.Fatalf("PINGREQ %v after the CONNACK, want a keep-alive interval (%v) of quiet first", d, interval)
	}
	lost := waitFor(t, down, "connection given up")
	if d := lost.Sub(pinged); d < interval-20*time.Millisecond {
		t.Fatalf("given up %v after the PINGREQ, want the keep-alive interval (%v)", d, interval)
	}
	if extra, ok := <-got; ok {
		t.Fatalf("sent % x after the PINGREQ, want nothing more", extra)
	}
}

// A broker that answers keeps the connection: three PINGREQs, each answered,
// and the connection is still up.
func TestKeepAliveAnswered(t *testing.T) {
	p := newPKI(t)
	got := make(chan []byte, 16)
	addr := rawBroker(t, p, true, got)
	down := make(chan struct{}, 1)
	c, err := Dial(context.Background(), Config{Endpoint: addr, ClientID: "dev-1", Certificate: p.client, RootCAs: p.pool, ServerName: "localhost",
		KeepAlive: 100 * time.Millisecond, BackoffMin: time.Hour, BackoffMax: time.Hour,
		OnDown: func() { down <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, got, "CONNECT")
	for i := range 3 {
		if ping := waitFor(t, got, "PINGREQ"); !bytes.Equal(ping, pingreqPacket) {
			t.Fatalf("packet %d: % x, want a PINGREQ", i, ping)
		}
	}
	select {
	case <-down:
		t.Fatal("the connection was given up although every PINGREQ was answered")
	default:
	}
	if err := c.AwaitConnection(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A device's connection probes with MQTT's PINGREQ alone: no TCP
// keep-alive timer runs on its socket.
func TestNoTCPKeepAlive(t *testing.T) {
	p := newPKI(t)
	srv, addr := broker(t, p)
	up := make(chan struct{}, 1)
	dialUp(t, Config{
		Endpoint: addr, ClientID: "dev-1", Certificate: p.client, RootCAs: p.pool, ServerName: "localhost",
		OnUp: func() { up <- struct{}{} },
	}, up)
	tcpstate.RequireNoKeepAlive(t, brokerClient(t, srv, "dev-1").Net.Remote, addr, "the device's socket")
}

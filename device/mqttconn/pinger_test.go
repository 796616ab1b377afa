package mqttconn

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/internal/tcpstate"
)

// The pinger pings only after a keep-alive interval without traffic both
// ways, never right after connecting, and ends the connection when a
// PINGRESP does not come within the interval.
func TestPinger(t *testing.T) {
	fc := clock.NewFake(time.Unix(1_800_000_000, 0))
	p := newPinger(fc)
	a, b := net.Pipe()
	defer a.Close()
	pings := make(chan []byte, 4)
	go func() {
		defer close(pings)
		for {
			buf := make([]byte, 2)
			if _, err := io.ReadFull(b, buf); err != nil {
				return
			}
			pings <- buf
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, &packetConn{Conn: a}, 30) }()
	armed := func() {
		t.Helper()
		if err := fc.WaitTimers(ctx, 1); err != nil {
			t.Fatal("the pinger set no timer")
		}
	}
	noPing := func(when string) {
		t.Helper()
		select {
		case got := <-pings:
			t.Fatalf("%s: sent % x, want no PINGREQ", when, got)
		default:
		}
	}
	armed()
	noPing("just connected")

	// Traffic both ways at 20 s: nothing is due at 30 s.
	fc.Advance(20 * time.Second)
	p.PacketSent()
	p.PacketReceived()
	fc.Advance(10 * time.Second)
	armed()
	noPing("10 s after traffic")

	// Idle until 50 s: a PINGREQ; its PINGRESP comes.
	fc.Advance(20 * time.Second)
	select {
	case got := <-pings:
		if !bytes.Equal(got, []byte{0xc0, 0x00}) {
			t.Fatalf("sent % x, want a PINGREQ (c0 00)", got)
		}
	case <-ctx.Done():
		t.Fatal("no PINGREQ after a keep-alive interval idle")
	}
	armed()
	p.PacketReceived()
	p.PingResp()

	// Idle again: the next at 80 s, and no PINGRESP for it.
	fc.Advance(30 * time.Second)
	select {
	case <-pings:
	case <-ctx.Done():
		t.Fatal("no second PINGREQ")
	}
	armed()
	noPing("waiting for the PINGRESP")
	fc.Advance(30 * time.Second)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no PINGRESP within the keep-alive interval of 30s") {
			t.Fatalf("Run returned %v, want the missing PINGRESP said", err)
		}
	case <-ctx.Done():
		t.Fatal("the connection was not ended without a PINGRESP")
	}
	b.Close()
	for range pings {
	}
}

// Run returns nil when its connection ends, and at once for keep-alive 0.
func TestPingerStops(t *testing.T) {
	fc := clock.NewFake(time.Unix(1_800_000_000, 0))
	p := newPinger(fc)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if err := p.Run(context.Background(), a, 0); err != nil || fc.Timers() != 0 {
		t.Fatalf("keep-alive 0: Run returned %v with %d timers", err, fc.Timers())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, a, 60) }()
	if err := fc.WaitTimers(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v when its connection ended", err)
	}
	if n := fc.Timers(); n != 0 {
		t.Fatalf("%d timers left", n)
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

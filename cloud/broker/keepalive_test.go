package broker

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/awsfota/awsfota/internal/tcpstate"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// The broker holds each client to AWS's keep-alive bounds, 30 to 1200 s
// (none asked: 1200), and tells an MQTT 5 client that must ping sooner
// than it asked (not one that pings more often than needed).
func TestKeepAliveBounds(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct{ asked, held uint16 }{{0, 1200}, {5, 30}, {30, 30}, {600, 600}, {1200, 1200}, {4000, 1200}} {
		t.Run(fmt.Sprintf("MQTT 3.1.1, %d s", c.asked), func(t *testing.T) {
			rc := e.rawDial("dev-1")
			pkt := connectPacket("dev-1", nil)
			pkt[len(pkt)-len("dev-1")-4], pkt[len(pkt)-len("dev-1")-3] = byte(c.asked>>8), byte(c.asked)
			if _, err := rc.c.Write(pkt); err != nil {
				t.Fatal(err)
			}
			if first, body, err := rc.readPacket(); err != nil || first != 0x20 || body[1] != 0 {
				t.Fatalf("CONNACK %#x % x, %v", first, body, err)
			}
			cl, ok := e.b.srv.Clients.Get("dev-1")
			if !ok {
				t.Fatal("dev-1 is not connected")
			}
			if got := cl.State.Keepalive; got != c.held {
				t.Fatalf("keep-alive %d s asked, the broker holds the client to %d s, want %d", c.asked, got, c.held)
			}
			rc.c.Close()
			e.waitGone("dev-1")
		})
	}
	for _, c := range []struct {
		asked uint16
		told  *uint16
	}{{5, nil}, {0, ptr[uint16](1200)}, {4000, ptr[uint16](1200)}, {60, nil}} {
		t.Run(fmt.Sprintf("MQTT 5, %d s", c.asked), func(t *testing.T) {
			tc, err := tls.Dial("tcp", e.b.Addr(), e.deviceTLS())
			if err != nil {
				t.Fatal(err)
			}
			defer tc.Close()
			cl := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(tc)})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ack, err := cl.Connect(ctx, &paho.Connect{ClientID: "dev-1", CleanStart: true, KeepAlive: c.asked})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				cl.Disconnect(&paho.Disconnect{})
				<-cl.Done()
				e.waitGone("dev-1")
			}()
			got := ack.Properties.ServerKeepAlive
			switch {
			case c.told == nil && got != nil:
				t.Fatalf("keep-alive %d s asked: the CONNACK says %d s, want no Server Keep Alive", c.asked, *got)
			case c.told != nil && (got == nil || *got != *c.told):
				t.Fatalf("keep-alive %d s asked: the CONNACK says %v, want Server Keep Alive %d", c.asked, got, *c.told)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// The broker's sockets run no TCP keep-alive timer (MQTT's keep-alive ends
// a silent connection).
func TestBrokerSocketsNoTCPKeepAlive(t *testing.T) {
	e := newEnv(t)
	rc := e.rawDial("dev-1")
	if code, err := rc.connect("dev-1", nil); err != nil || code != 0 {
		t.Fatalf("CONNACK %d, %v", code, err)
	}
	tcpstate.RequireNoKeepAlive(t, e.b.Addr(), rc.c.LocalAddr().String(), "the broker's socket of a device")
}

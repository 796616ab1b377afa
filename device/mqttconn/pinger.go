package mqttconn

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/log"

	"github.com/awsfota/awsfota/clock"
)

// pinger keeps a connection alive as MQTT asks (MQTT 5, 3.1.2.10): once no
// packet has both gone out and come in for the keep-alive interval, it sends
// a PINGREQ, and when the PINGRESP has not come an interval later it ends
// the connection (autopaho then connects again). paho's DefaultPinger does
// the same, and also pings the moment the connection is up: a round trip
// for nothing on every connection — on a cellular link a radio wake-up, for
// a broker ten thousand PINGREQs when a fleet connects at once.
//
// paho calls Run once per connection, one after another; the other methods
// at any time.
type pinger struct {
	clock clock.Clock

	mu             sync.Mutex
	sent, received time.Time // the last packet sent and received
	pingSent       time.Time // the PINGREQ awaiting its PINGRESP (zero: none)
}

var _ paho.Pinger = (*pinger)(nil)

func newPinger(c clock.Clock) *pinger { return &pinger{clock: c} }

// Run keeps the connection alive until ctx ends, or returns why it is not.
func (p *pinger) Run(ctx context.Context, conn net.Conn, keepAlive uint16) error {
	if keepAlive == 0 {
		return nil
	}
	interval := time.Duration(keepAlive) * time.Second
	p.mu.Lock()
	now := p.clock.Now()
	// CONNECT went out and CONNACK came in just now.
	p.sent, p.received, p.pingSent = now, now, time.Time{}
	p.mu.Unlock()
	t := p.clock.NewTimer(interval)
	defer t.Stop()
	// A PINGREQ is written off this goroutine, as a large packet being
	// written on a slow link may hold the connection for a while; closing
	// the connection ends the write.
	failed := make(chan error, 1)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return err
		case <-t.C():
		}
		p.mu.Lock()
		now := p.clock.Now()
		if !p.pingSent.IsZero() {
			wait := p.pingSent.Add(interval).Sub(now)
			p.mu.Unlock()
			if wait <= 0 {
				return fmt.Errorf("no PINGRESP within the keep-alive interval of %v: the broker or the link is gone", interval)
			}
			t.Reset(wait)
			continue
		}
		due := p.sent
		if p.received.Before(due) {
			due = p.received
		}
		if wait := due.Add(interval).Sub(now); wait > 0 {
			p.mu.Unlock()
			t.Reset(wait)
			continue
		}
		p.pingSent = now
		p.mu.Unlock()
		t.Reset(interval)
		go func() {
			if _, err := packets.NewControlPacket(packets.PINGREQ).WriteTo(conn); err != nil {
				select {
				case failed <- fmt.Errorf("sending PINGREQ: %w", err):
				default:
				}
			}
		}()
	}
}

func (p *pinger) PacketSent() {
	p.mu.Lock()
	p.sent = p.clock.Now()
	p.mu.Unlock()
}

func (p *pinger) PacketReceived() {
	p.mu.Lock()
	p.received = p.clock.Now()
	p.mu.Unlock()
}

func (p *pinger) PingResp() {
	p.mu.Lock()
	p.pingSent = time.Time{}
	p.mu.Unlock()
}

func (p *pinger) SetDebug(log.Logger) {}

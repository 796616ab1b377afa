package broker

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"
)

// TestCloseWhileConnecting closes the broker while devices keep connecting.
// Close must return with no connection left served (goleak checks the
// goroutines in TestMain) and, under -race, without the race mochi's own
// listener has between a connection being established and Close waiting
// for its clients.
func TestCloseWhileConnecting(t *testing.T) {
	for round := 0; round < 5; round++ {
		e := newEnv(t)
		addr := e.b.Addr()
		cert := e.cert["dev-1"]
		stop := make(chan struct{})
		var wg sync.WaitGroup
		connected := make(chan struct{}, 1)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if i%2 == 0 {
						// A bare TCP connection: held in the TLS handshake.
						c, err := net.Dial("tcp", addr)
						if err != nil {
							continue
						}
						c.Close()
						continue
					}
					c, err := tls.Dial("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: e.ca.Pool(), ServerName: "localhost"})
					if err != nil {
						continue
					}
					select {
					case connected <- struct{}{}:
					default:
					}
					c.Close()
				}
			}()
		}
		<-connected // at least one full handshake happened before Close
		if err := e.b.Close(); err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
		// Nothing accepts connections after Close.
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Fatalf("round %d: the broker still accepts connections after Close", round)
		}
	}
}

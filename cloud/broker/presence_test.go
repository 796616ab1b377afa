package broker

import (
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

func TestConnected(t *testing.T) {
	e := newEnv(t)
	if e.b.Connected("dev-1") {
		t.Fatal("dev-1 is connected before it dialled")
	}
	d1, err := e.dial("dev-1", "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.b.ConnectedClients(); len(got) != 1 || got[0] != "dev-1" {
		t.Fatalf("connected clients: %v", got)
	}
	if !e.b.Connected("dev-1") || e.b.Connected("dev-2") {
		t.Fatalf("connected: dev-1 %v (want true), dev-2 %v (want false)", e.b.Connected("dev-1"), e.b.Connected("dev-2"))
	}
	d1.c.Disconnect(&paho.Disconnect{})
	<-d1.c.Done()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond) // the broker notices the DISCONNECT on its own
	defer tick.Stop()
	for e.b.Connected("dev-1") {
		if time.Now().After(deadline) {
			t.Fatal("dev-1 still connected 10s after it disconnected")
		}
		<-tick.C
	}
}

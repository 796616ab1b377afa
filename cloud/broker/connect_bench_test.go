package broker

import (
	"sync/atomic"
	"testing"
)

// BenchmarkConnect is one device connecting: TCP, the TLS handshake with
// its certificate, CONNECT and the SUBSCRIBE of the device library's jobs
// filters, both acked; then it disconnects. The client's side is in this
// process too (a bare TLS client, no MQTT library; 32 at once), so compare runs, not
// absolute numbers: `go test -bench Connect -count 6 ./cloud/broker` on two
// versions, then benchstat.
func BenchmarkConnect(b *testing.B) {
	e := newEnv(b)
	const things = 64
	for i := range things {
		name := thingName(i)
		e.reg.CreateThing(name, nil)
		e.reg.AttachThingPrincipal(name, e.ids["dev-1"])
	}
	b.ReportAllocs()
	// Many devices connecting at once, as in a connection storm.
	b.SetParallelism(16)
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := connectRaw(b, e, thingName(int(next.Add(1))%things))
			c.Close()
		}
	})
}

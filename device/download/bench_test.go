package download_test

import (
	"context"
	"net/http"
	"runtime"
	"testing"

	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/device/download"
)

// discard is a Sink that drops the bytes.
type discard struct{ n int64 }

func (d *discard) Write(p []byte) (int, error) { d.n += int64(len(p)); return len(p), nil }
func (d *discard) Restart() error              { d.n = 0; return nil }

// BenchmarkFetch64MiB fetches 64 MiB over loopback HTTP from a ServeContent
// server (in the same process: its allocations are counted too) with the
// real clock and the stall watchdog on.
func BenchmarkFetch64MiB(b *testing.B) {
	const size = 64 << 20
	obj := object(size, 64)
	srv := newServer(b, func(w http.ResponseWriter, r *http.Request) { serveContent(w, r, obj, etag1) })
	d := download.New(download.Config{Clock: clock.Real()})
	b.Cleanup(d.CloseIdleConnections)
	ctx := context.Background()
	b.SetBytes(size)
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sink := &discard{}
		res, err := d.Fetch(ctx, download.Request{URL: srv.URL + "/fw.bin", Size: size}, sink)
		if err != nil || sink.n != size || res.Attempts != 1 {
			b.Fatalf("%+v, %v", res, err)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N)/(size>>20), "allocs/MiB")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/(size>>20), "B/MiB")
}

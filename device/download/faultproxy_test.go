package download_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/awsfota/awsfota/device/download"
	"github.com/awsfota/awsfota/internal/faultproxy"
)

// Through a proxy that cuts every connection after 64 KiB, the download
// completes, resuming each time, without fetching much more than the object.
func TestFetchThroughCuttingProxy(t *testing.T) {
	obj := object(2<<20+17, 20)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { serveContent(w, r, obj, etag1) })
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	p.SetFault(faultproxy.Fault{CutAfter: 64 << 10})

	const buf = 32 << 10
	d := newDownloader(t, download.Config{BufferSize: buf})
	sink := &memSink{t: t, maxWrite: buf}
	res, err := fetch(t, d, download.Request{URL: "http://" + p.Addr() + "/fw.bin", Size: int64(len(obj))}, sink)
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, sink.data, obj)
	st := p.Stats()
	cuts := st.Cuts
	if cuts < 30 || res.Attempts != int(cuts)+1 || res.Restarts != 0 {
		t.Fatalf("Result %+v with %d cuts", res, cuts)
	}
	t.Logf("Result %+v, proxy %+v", res, st)
	size := float64(len(obj))
	if limit := 1.1*size + float64(cuts*buf); float64(res.Fetched) >= limit || float64(st.BytesDown) >= limit {
		t.Fatalf("fetched %d bytes (%d through the proxy) for %d: limit %.0f", res.Fetched, st.BytesDown, len(obj), limit)
	}
}

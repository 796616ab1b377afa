package fleetsim

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSpread: a share of the fleet is exactly that share of any run of
// devices from the first, spread evenly, and two phases choose different
// devices.
func TestSpread(t *testing.T) {
	for _, c := range []struct {
		n     int
		pct   float64
		phase int
		want  int
	}{
		{200, 10, 0, 20}, {200, 10, 7, 20}, {10000, 2.5, 0, 250}, {3, 50, 0, 1}, {100, 0, 0, 0}, {100, 100, 3, 100}, {40, 10, 7, 4},
	} {
		got, run, longest := 0, 0, 0
		for i := range c.n {
			if spread(i, c.pct, c.phase) {
				got++
				run++
				longest = max(longest, run)
			} else {
				run = 0
			}
		}
		if got != c.want {
			t.Errorf("%g%% of %d (phase %d): %d chosen, want %d", c.pct, c.n, c.phase, got, c.want)
		}
		if c.pct <= 50 && longest > 1 {
			t.Errorf("%g%% of %d: %d neighbours chosen in a row; want them spread", c.pct, c.n, longest)
		}
	}
	same := 0
	for i := range 1000 {
		if spread(i, 10, 0) && spread(i, 10, 7) {
			same++
		}
	}
	if same == 100 {
		t.Error("phases 0 and 7 choose the same devices")
	}
}

// TestDownloadSlots: with a bound, no more downloads than the bound are
// under way at once, each is its own connection (closed when its body is),
// every one completes, and the bytes read are counted.
func TestDownloadSlots(t *testing.T) {
	body := strings.Repeat("x", 64<<10)
	var (
		mu        sync.Mutex
		now, most int
		conns     atomic.Int64
	)
	gate := make(chan struct{})
	arrived := make(chan struct{}, 64)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		now++
		most = max(most, now)
		mu.Unlock()
		arrived <- struct{}{}
		<-gate
		io.WriteString(w, body)
		mu.Lock()
		now--
		mu.Unlock()
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	var open sync.Once
	release := func() { open.Do(func() { close(gate) }) }
	defer release() // before srv.Close: a failing test must not leave handlers waiting

	const bound, devices, each = 3, 10, 2
	var served atomic.Int64
	slots := make(chan struct{}, bound)
	var wg sync.WaitGroup
	errs := make(chan error, devices*each)
	for range devices {
		c := &http.Client{Transport: &countingTransport{rt: &http.Transport{DisableKeepAlives: true}, n: &served, slots: slots}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				res, err := c.Get(srv.URL)
				if err != nil {
					errs <- err
					return
				}
				_, err = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	// Let the requests pile up against the bound, then let them through.
	for range bound {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("fewer downloads than the bound started")
		}
	}
	// No more start while those are under way (without the bound, the
	// other devices' requests arrive at once).
	select {
	case <-arrived:
		t.Fatal("more downloads than the bound are under way")
	case <-time.After(200 * time.Millisecond):
	}
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if most != bound {
		t.Errorf("%d downloads at once, want the bound %d", most, bound)
	}
	if got, want := served.Load(), int64(devices*each*len(body)); got != want {
		t.Errorf("%d bytes counted, want %d", got, want)
	}
	if got := conns.Load(); got != devices*each {
		t.Errorf("%d connections for %d downloads, want one each", got, devices*each)
	}
	if len(slots) != 0 {
		t.Errorf("%d slots still held", len(slots))
	}
}

package download_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/awsfota/awsfota/device/download"
)

// A redirect to a scheme the client cannot follow (file:, ftp:) fails at
// once: no retry can succeed.
func TestFetchRedirectToOtherScheme(t *testing.T) {
	for _, target := range []string{"file:///etc/passwd", "ftp://example.com/fw.bin", "gopher://x/"} {
		t.Run(target, func(t *testing.T) {
			var calls atomic.Int32
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				http.Redirect(w, r, target, http.StatusFound)
			})
			tc := newTestClock()
			d := newDownloader(t, download.Config{Clock: tc})
			res, err := fetch(t, d, download.Request{URL: srv.URL + "/fw.bin?X-Amz-Signature=secret"}, &memSink{t: t})
			if !errors.Is(err, download.ErrBadRedirect) || errors.Is(err, download.ErrRetriesExhausted) {
				t.Fatalf("err = %v, want ErrBadRedirect at once", err)
			}
			if res.Attempts != 1 || calls.Load() != 1 || len(tc.Waits()) != 0 {
				t.Fatalf("retried a redirect to %s: %+v, %d requests, waits %v", target, res, calls.Load(), tc.Waits())
			}
			mustNotContain(t, err, "secret")
		})
	}
}

// gates lets a test release the server's chunks by offset: every waiter on
// an offset is released, and a release no one waits for is kept.
type gates struct {
	mu sync.Mutex
	m  map[int]chan struct{}
}

func (g *gates) at(off int) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[int]chan struct{}{}
	}
	if g.m[off] == nil {
		g.m[off] = make(chan struct{})
	}
	return g.m[off]
}

func (g *gates) open(off int) {
	c := g.at(off)
	select {
	case <-c:
	default:
		close(c)
	}
}

// dripServer sends obj from the requested offset in chunks of chunk bytes:
// the first at once, each next one once the test opens its offset's gate.
func dripServer(t *testing.T, obj []byte, chunk int, g *gates) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		from := rangeStart(t, r)
		if from > 0 {
			w.Header().Set("Content-Range", "bytes "+strconv.Itoa(from)+"-"+strconv.Itoa(len(obj)-1)+"/"+strconv.Itoa(len(obj)))
			w.Header().Set("Content-Length", strconv.Itoa(len(obj)-from))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(len(obj)))
		}
		for i := from; i < len(obj); i += chunk {
			if i > from {
				select {
				case <-g.at(i):
				case <-r.Context().Done():
					return
				}
			}
			w.Write(obj[i:min(i+chunk, len(obj))])
			http.NewResponseController(w).Flush()
		}
	})
	return srv, &calls
}

// A body that drips below MinRate over a RateWindow is abandoned, and the
// too-slow attempts spend the retry budget although each delivered bytes.
// One at or above the floor goes on, however long it takes.
func TestFetchMinRate(t *testing.T) {
	const chunk = 1024
	obj := object(40*chunk, 31)
	run := func(t *testing.T, every time.Duration, retries int) (download.Result, error, *atomic.Int32) {
		g := &gates{}
		srv, calls := dripServer(t, obj, chunk, g)
		tc := newTestClock()
		d := newDownloader(t, download.Config{Clock: tc, BufferSize: chunk, MinRate: 40, RateWindow: time.Minute, Retries: retries})
		progress := make(chan int64, 100)
		errc := make(chan error, 1)
		var res download.Result
		go func() {
			var err error
			res, err = fetch(t, d, download.Request{URL: srv.URL, OnProgress: func(p download.Progress) { progress <- p.Offset }}, &memSink{t: t})
			errc <- err
		}()
		// Each chunk arrives every after the one before, on the fake clock.
		for {
			select {
			case err := <-errc:
				return res, err, calls
			case off := <-progress:
				if off == int64(len(obj)) {
					continue
				}
				tc.Advance(every)
				g.open(int(off))
			}
		}
	}
	t.Run("1 KiB every 30s is too slow", func(t *testing.T) {
		// 34 bytes/s < 40: each attempt's first window closes too slow.
		res, err, calls := run(t, 30*time.Second, 2)
		if !errors.Is(err, download.ErrTooSlow) || !errors.Is(err, download.ErrRetriesExhausted) {
			t.Fatalf("err = %v, want ErrTooSlow and ErrRetriesExhausted", err)
		}
		if res.Attempts != 3 || calls.Load() != 3 || res.Size != 9*chunk {
			t.Fatalf("%+v, %d requests: want 3 attempts (Retries 2) of 3 KiB each, too slow", res, calls.Load())
		}
	})
	t.Run("1 KiB every 20s is enough", func(t *testing.T) {
		// 51 bytes/s >= 40: 40 chunks over 13 minutes, one attempt.
		res, err, _ := run(t, 20*time.Second, -1)
		if err != nil || res.Attempts != 1 || res.Size != int64(len(obj)) {
			t.Fatalf("%+v, %v: a body above the floor was aborted", res, err)
		}
	})
}

// A 429 or 503 with Retry-After (seconds or an HTTP date) delays the next
// attempt by that long, capped by MaxRetryAfter; a shorter one than the
// backoff does not shorten it.
func TestFetchRetryAfter(t *testing.T) {
	obj := object(10_000, 32)
	tc := newTestClock()
	answers := []func(w http.ResponseWriter){
		func(w http.ResponseWriter) { w.Header().Set("Retry-After", "120"); w.WriteHeader(503) },
		func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", tc.Now().Add(30*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(429)
		},
		func(w http.ResponseWriter) { w.Header().Set("Retry-After", "86400"); w.WriteHeader(503) },
		func(w http.ResponseWriter) { w.Header().Set("Retry-After", "0"); w.WriteHeader(429) },
		func(w http.ResponseWriter) { w.Header().Set("Retry-After", "soon"); w.WriteHeader(503) },
		// Retry-After on a 500 is not AWS's throttling: backoff only.
		func(w http.ResponseWriter) { w.Header().Set("Retry-After", "60"); w.WriteHeader(500) },
	}
	var calls atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n := int(calls.Add(1)); n <= len(answers) {
			answers[n-1](w)
			return
		}
		serveContent(w, r, obj, "")
	})
	d := newDownloader(t, download.Config{Clock: tc, Rand: func() float64 { return 0.5 }, MaxRetryAfter: 10 * time.Minute, Retries: 10})
	sink := &memSink{t: t}
	res, err := fetch(t, d, download.Request{URL: srv.URL}, sink)
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, sink.data, obj)
	// Backoffs with jitter 0.5 from 1s: 0.5s 1s 2s 4s 8s 16s.
	want := []time.Duration{120 * time.Second, 30 * time.Second, 10 * time.Minute, 4 * time.Second, 8 * time.Second, 16 * time.Second}
	if w := tc.Waits(); len(w) != len(want) || res.Attempts != len(want)+1 {
		t.Fatalf("waits %v after %d attempts, want %v", w, res.Attempts, want)
	} else {
		for i := range want {
			if w[i] != want[i] {
				t.Fatalf("waits %v, want %v", w, want)
			}
		}
	}

	// A negative MaxRetryAfter ignores the header.
	calls.Store(0)
	answers = answers[:1]
	tc2 := newTestClock()
	d = newDownloader(t, download.Config{Clock: tc2, Rand: func() float64 { return 0.5 }, MaxRetryAfter: -1})
	if _, err := fetch(t, d, download.Request{URL: srv.URL}, &memSink{t: t}); err != nil {
		t.Fatal(err)
	}
	if w := tc2.Waits(); len(w) != 1 || w[0] != 500*time.Millisecond {
		t.Fatalf("waits %v with Retry-After ignored, want [500ms]", w)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, c := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{" 120 ", 120 * time.Second, true},
		{"007", 7 * time.Second, true},
		{"99999999999999999999999", 1<<63 - 1, true},
		{"9223372037", 1<<63 - 1, true},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"12abc", 0, false},
		{"soon", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"Wednesday, 04-Mar-26 05:07:07 GMT", time.Minute, true}, // RFC 850
		{"Wed Mar  4 05:06:17 2026", 10 * time.Second, true},     // asctime
		{"Wed, 04 Mar 2026 05:06", 0, false},
	} {
		got, ok := download.ParseRetryAfter(c.v, now)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", c.v, got, ok, c.want, c.ok)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "Wed, 04 Mar 2026 05:07:37 GMT", "x", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := download.ParseRetryAfter(v, now)
		if d < 0 || (!ok && d != 0) {
			t.Fatalf("ParseRetryAfter(%q) = %v, %v", v, d, ok)
		}
	})
}

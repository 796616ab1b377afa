package download_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/device/download"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testReadTimeout is the ReadTimeout of the tests: far above any backoff, so
// that testClock tells the watchdog's timers from the backoff's.
const testReadTimeout = time.Hour

// testClock is a fake clock that skips every backoff at once (it advances
// the fake time as soon as a backoff timer is made) and records the waits.
// The watchdog's timers (of testReadTimeout) are left for the test to fire
// with Advance. With hold set, backoff timers are not advanced: each is
// announced on backoffs instead.
type testClock struct {
	*clock.Fake
	hold     bool
	backoffs chan time.Duration

	mu    sync.Mutex
	waits []time.Duration
}

func newTestClock() *testClock {
	return &testClock{
		Fake:     clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		backoffs: make(chan time.Duration, 1000),
	}
}

func (c *testClock) NewTimer(d time.Duration) clock.Timer {
	t := c.Fake.NewTimer(d)
	if d < testReadTimeout {
		c.mu.Lock()
		c.waits = append(c.waits, d)
		c.mu.Unlock()
		if c.hold {
			c.backoffs <- d
		} else {
			c.Fake.Advance(d)
		}
	}
	return t
}

func (c *testClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

// newDownloader returns a Downloader on a testClock unless cfg has a clock,
// with a fixed jitter of 0.5 unless cfg has a Rand.
func newDownloader(t testing.TB, cfg download.Config) *download.Downloader {
	t.Helper()
	if cfg.Clock == nil {
		cfg.Clock = newTestClock()
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = testReadTimeout
	}
	if cfg.Rand == nil {
		cfg.Rand = func() float64 { return 0.5 }
	}
	d := download.New(cfg)
	t.Cleanup(d.CloseIdleConnections)
	return d
}

// object returns n deterministic pseudo-random bytes.
func object(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// memSink is a Sink in memory that checks the Sink contract.
type memSink struct {
	t        testing.TB
	data     []byte
	maxWrite int // writes larger than this fail the test; 0: no check
	writes   []int
	restarts int
	failAt   int64 // a Write reaching this length fails with errSinkFull; 0: never
	failRest bool  // Restart fails
}

var errSinkFull = errors.New("sink full")

func (s *memSink) Write(p []byte) (int, error) {
	if s.maxWrite > 0 && len(p) > s.maxWrite {
		s.t.Errorf("Write of %d bytes, more than the buffer size %d", len(p), s.maxWrite)
	}
	if s.failAt > 0 && int64(len(s.data)+len(p)) >= s.failAt {
		return 0, errSinkFull
	}
	s.writes = append(s.writes, len(p))
	s.data = append(s.data, p...)
	return len(p), nil
}

func (s *memSink) Restart() error {
	if s.failRest {
		return errors.New("flash erase failed")
	}
	s.restarts++
	s.data = s.data[:0]
	return nil
}

// checkSame fails the test unless got == want, without printing megabytes.
func checkSame(t testing.TB, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Fatalf("sink holds %d bytes, want %d; first difference at offset %d", len(got), len(want), i)
}

// reqLog records the headers of the requests a server received.
type reqLog struct {
	mu   sync.Mutex
	reqs []http.Header
	path []string
}

func (l *reqLog) add(r *http.Request) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, r.Header.Clone())
	l.path = append(l.path, r.URL.Path)
	return len(l.reqs)
}

func (l *reqLog) n() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.reqs)
}

func (l *reqLog) header(i int, name string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reqs[i].Get(name)
}

// newServer starts a loopback HTTP server for the test.
func newServer(t testing.TB, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// serveContent is a well-behaved server of obj with ETag etag (if not "").
func serveContent(w http.ResponseWriter, r *http.Request, obj []byte, etag string) {
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(obj))
}

// cutWriter passes at most left body bytes, then flushes and aborts the
// connection mid-body.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (w *cutWriter) Write(p []byte) (int, error) {
	if len(p) < w.left {
		w.left -= len(p)
		return w.ResponseWriter.Write(p)
	}
	w.ResponseWriter.Write(p[:w.left])
	http.NewResponseController(w.ResponseWriter).Flush()
	panic(http.ErrAbortHandler)
}

// rangeStart returns the offset of a "bytes=N-" Range header, 0 without one.
func rangeStart(t testing.TB, r *http.Request) int {
	h := r.Header.Get("Range")
	if h == "" {
		return 0
	}
	s, ok := strings.CutPrefix(h, "bytes=")
	s, ok2 := strings.CutSuffix(s, "-")
	n, err := strconv.Atoi(s)
	if !ok || !ok2 || err != nil {
		t.Errorf("unexpected Range header %q", h)
	}
	return n
}

func fetch(t testing.TB, d *download.Downloader, req download.Request, sink download.Sink) (download.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return d.Fetch(ctx, req, sink)
}

func checkResult(t testing.TB, got, want download.Result) {
	t.Helper()
	if got != want {
		t.Fatalf("Result = %+v, want %+v", got, want)
	}
}

func mustNotContain(t testing.TB, err error, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains %q", err, s)
		}
	}
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

package download_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/awsfota/awsfota/device/download"
)

const etag1, etag2 = `"v1"`, `"v2"`

// A whole object in one streaming GET: no Range, identity encoding, writes of
// the buffer size, progress reported, Result filled in.
func TestFetchWhole(t *testing.T) {
	obj := object(1<<20+123, 1)
	var log reqLog
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		serveContent(w, r, obj, etag1)
	})
	const buf = 4096
	d := newDownloader(t, download.Config{BufferSize: buf, UserAgent: "awsfota-test"})
	var prog []download.Progress
	sink := &memSink{t: t, maxWrite: buf}
	res, err := fetch(t, d, download.Request{URL: srv.URL + "/fw.bin", OnProgress: func(p download.Progress) { prog = append(prog, p) }}, sink)
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, sink.data, obj)
	checkResult(t, res, download.Result{Size: int64(len(obj)), ETag: etag1, Fetched: int64(len(obj)), Attempts: 1})
	if log.n() != 1 {
		t.Fatalf("%d requests, want one streaming GET", log.n())
	}
	if h := log.header(0, "Range"); h != "" {
		t.Errorf("Range %q sent at offset 0", h)
	}
	if h := log.header(0, "Accept-Encoding"); h != "identity" {
		t.Errorf("Accept-Encoding = %q, want identity", h)
	}
	if h := log.header(0, "User-Agent"); h != "awsfota-test" {
		t.Errorf("User-Agent = %q", h)
	}
	for i, n := range sink.writes[:len(sink.writes)-1] {
		if n != buf {
			t.Fatalf("write %d is %d bytes; every write but the last must fill the buffer", i, n)
		}
	}
	if len(prog) != len(sink.writes) {
		t.Fatalf("%d progress reports for %d writes", len(prog), len(sink.writes))
	}
	var last int64
	for _, p := range prog {
		if p.Offset <= last || p.Total != int64(len(obj)) || p.ETag != etag1 {
			t.Fatalf("progress %+v after offset %d", p, last)
		}
		last = p.Offset
	}
	if last != int64(len(obj)) {
		t.Fatalf("last progress at %d", last)
	}
}

// Resuming sends Range and If-Range and appends the 206 body.
func TestFetchResume(t *testing.T) {
	obj := object(300_000, 2)
	var log reqLog
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		serveContent(w, r, obj, etag1)
	})
	d := newDownloader(t, download.Config{})
	const off = 123_457
	sink := &memSink{t: t, data: append([]byte(nil), obj[:off]...)}
	res, err := fetch(t, d, download.Request{URL: srv.URL, Offset: off, Size: int64(len(obj)), ETag: etag1}, sink)
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, sink.data, obj)
	checkResult(t, res, download.Result{Size: int64(len(obj)), ETag: etag1, Fetched: int64(len(obj) - off), Attempts: 1})
	if h := log.header(0, "Range"); h != "bytes=123457-" {
		t.Errorf("Range = %q", h)
	}
	if h := log.header(0, "If-Range"); h != etag1 {
		t.Errorf("If-Range = %q", h)
	}
}

// A weak ETag is never sent as If-Range (a server would always answer 200).
func TestFetchWeakETagNotInIfRange(t *testing.T) {
	obj := object(10_000, 3)
	var log reqLog
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		serveContent(w, r, obj, `W/"weak"`)
	})
	d := newDownloader(t, download.Config{})
	sink := &memSink{t: t, data: append([]byte(nil), obj[:100]...)}
	res, err := fetch(t, d, download.Request{URL: srv.URL, Offset: 100, ETag: `W/"weak"`}, sink)
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, sink.data, obj)
	if res.Restarts != 0 || log.header(0, "If-Range") != "" {
		t.Fatalf("Restarts %d, If-Range %q", res.Restarts, log.header(0, "If-Range"))
	}
}

// A server that ignores Range answers 200: the sink restarts and takes the
// body of the same response.
func TestFetchServerIgnoresRange(t *testing.T) {
	obj := object(200_000, 4)
	var log reqLog
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		r.Header.Del("Range")
		serveContent(w, r, obj, "")
	})
	d := newDownloader(t, download.Config{})
	sink := &memSink{t: t, data: append([]byte(nil), obj[:50_000]...)}
	res, err := fetch(t, d, download.Request{URL: srv.URL, Offset: 50_000, ETag: etag1}, sink)
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, sink.data, obj)
	// The old ETag does not describe the bytes taken from 0: Result.ETag is "".
	checkResult(t, res, download.Result{Size: int64(len(obj)), Fetched: int64(len(obj)), Attempts: 1, Restarts: 1})
	if sink.restarts != 1 || log.n() != 1 {
		t.Fatalf("sink restarts %d, requests %d", sink.restarts, log.n())
	}
}

// A 206 without Content-Range is tolerated, with or without Content-Length.
func TestFetchNoContentRange(t *testing.T) {
	obj := object(150_000, 5)
	for _, withLength := range []bool{true, false} {
		t.Run("Content-Length="+strconv.FormatBool(withLength), func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				off := rangeStart(t, r)
				if withLength {
					w.Header().Set("Content-Length", strconv.Itoa(len(obj)-off))
				}
				w.WriteHeader(http.StatusPartialContent)
				for p := obj[off:]; len(p) > 0; {
					n := min(len(p), 7000)
					w.Write(p[:n])
					http.NewResponseController(w).Flush()
					p = p[n:]
				}
			})
			d := newDownloader(t, download.Config{})
			sink := &memSink{t: t, data: append([]byte(nil), obj[:1000]...)}
			var totals []int64
			res, err := fetch(t, d, download.Request{URL: srv.URL, Offset: 1000, OnProgress: func(p download.Progress) { totals = append(totals, p.Total) }}, sink)
			if err != nil {
				t.Fatal(err)
			}
			checkSame(t, sink.data, obj)
			checkResult(t, res, download.Result{Size: int64(len(obj)), Fetched: int64(len(obj) - 1000), Attempts: 1})
			want := int64(0)
			if withLength {
				want = int64(len(obj))
			}
			if totals[0] != want {
				t.Fatalf("Progress.Total = %d, want %d", totals[0], want)
			}
		})
	}
}

// A 200 of unknown length (chunked) ends with its body.
func TestFetchUnknownLength(t *testing.T) {
	obj := object(100_000, 6)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write(obj[:60_000])
		http.NewResponseController(w).Flush()
		w.Write(obj[60_000:])
	})
	d := newDownloader(t, download.Config{})
	sink := &memSink{t: t}
	res, err := fetch(t, d, download.Request{URL: srv.URL}, sink)
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, sink.data, obj)
	checkResult(t, res, download.Result{Size: int64(len(obj)), Fetched: int64(len(obj)), Attempts: 1})
}

// A 206 whose Content-Range starts elsewhere than asked: a fresh request for
// the whole object; a 206 that starts at 0: restart in the same response.
func TestFetchContentRangeStart(t *testing.T) {
	obj := object(100_000, 7)
	const off = 40_000
	t.Run("wrong", func(t *testing.T) {
		var log reqLog
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			log.add(r)
			if start := rangeStart(t, r); start > 0 {
				start += 7 // off by seven
				w.Header().Set("Content-Range", "bytes "+strconv.Itoa(start)+"-"+strconv.Itoa(len(obj)-1)+"/"+strconv.Itoa(len(obj)))
				w.WriteHeader(http.StatusPartialContent)
				w.Write(obj[start:])
				return
			}
			serveContent(w, r, obj, "")
		})
		d := newDownloader(t, download.Config{})
		sink := &memSink{t: t, data: append([]byte(nil), obj[:off]...)}
		res, err := fetch(t, d, download.Request{URL: srv.URL, Offset: off}, sink)
		if err != nil {
			t.Fatal(err)
		}
		checkSame(t, sink.data, obj)
		checkResult(t, res, download.Result{Size: int64(len(obj)), Fetched: int64(len(obj)), Attempts: 2, Restarts: 1})
		if log.header(1, "Range") != "" {
			t.Fatalf("restart asked for Range %q", log.header(1, "Range"))
		}
	})
	t.Run("zero", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 0-"+strconv.Itoa(len(obj)-1)+"/"+strconv.Itoa(len(obj)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(obj)
		})
		d := newDownloader(t, download.Config{})
		sink := &memSink{t: t, data: append([]byte(nil), obj[:off]...)}
		res, err := fetch(t, d, download.Request{URL: srv.URL, Offset: off}, sink)
		if err != nil {
			t.Fatal(err)
		}
		checkSame(t, sink.data, obj)
		checkResult(t, res, download.Result{Size: int64(len(obj)), Fetched: int64(len(obj)), Attempts: 1, Restarts: 1})
	})
	t.Run("garbage", func(t *testing.T) {
		var log reqLog
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			log.add(r)
			if r.Header.Get("Range") != "" {
				w.Header().Set("Content-Range", "bytes what/ever")
				w.WriteHeader(http.StatusPartialContent)
				w.Write(obj[off:])
				return
			}
			serveContent(w, r, obj, "")
		})
		d := newDownloader(t, download.Config{})
		sink := &memSink{t: t, data: append([]byte(nil), obj[:off]...)}
		res, err := fetch(t, d, download.Request{URL: srv.URL, Offset: off}, sink)
		if err != nil {
			t.Fatal(err)
		}
		checkSame(t, sink.data, obj)
		if res.Attempts != 2 || res.Restarts != 1 || log.header(1, "Range") != "" {
			t.Fatalf("Result %+v, second Range %q", res, log.header(1, "Range"))
		}
	})
}

// A 416 at the end of the object means done; any other 416 restarts.
func TestFetchRangeNotSatisfiable(t *testing.T) {
	obj := object(50_000, 8)
	n := int64(len(obj))
	bare416 := func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		serveContent(w, r, obj, "")
	}
	good := func(w http.ResponseWriter, r *http.Request) { serveContent(w, r, obj, etag1) }
	tests := []struct {
		name     string
		h        http.HandlerFunc
		held     []byte
		size     int64
		attempts int
		restarts int
		fetched  int64
	}{
		{"at end", good, obj, 0, 1, 0, 0},
		{"at end, size given", good, obj, n, 1, 0, 0},
		{"past end", good, append(append([]byte(nil), obj...), "trailing junk"...), 0, 2, 1, n},
		{"no Content-Range, size says end", bare416, obj, n, 1, 0, 0},
		{"no Content-Range, size unknown", bare416, obj, 0, 2, 1, n},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.h)
			d := newDownloader(t, download.Config{})
			sink := &memSink{t: t, data: append([]byte(nil), tt.held...)}
			res, err := fetch(t, d, download.Request{URL: srv.URL, Offset: int64(len(tt.held)), Size: tt.size}, sink)
			if err != nil {
				t.Fatal(err)
			}
			checkSame(t, sink.data, obj)
			if res.Size != n || res.Attempts != tt.attempts || res.Restarts != tt.restarts || res.Fetched != tt.fetched {
				t.Fatalf("Result %+v; want %d attempts, %d restarts, %d fetched", res, tt.attempts, tt.restarts, tt.fetched)
			}
		})
	}
}

// swapServer serves object a until swapped, then b; every request is cut
// after cut body bytes while cutting is set.
type swapServer struct {
	mu            sync.Mutex
	obj           []byte
	etag          string
	cut           int
	ignoreIfRange bool
	log           reqLog
}

func (s *swapServer) set(obj []byte, etag string, cut int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.obj, s.etag, s.cut = obj, etag, cut
}

func (s *swapServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.log.add(r)
	s.mu.Lock()
	obj, etag, cut, ignore := s.obj, s.etag, s.cut, s.ignoreIfRange
	s.mu.Unlock()
	if ignore {
		r.Header.Del("If-Range")
	}
	if cut > 0 {
		w = &cutWriter{ResponseWriter: w, left: cut}
	}
	serveContent(w, r, obj, etag)
}

// The object changes while the sink holds part of the old one.
func TestFetchObjectChanged(t *testing.T) {
	a, b := object(120_000, 9), object(130_000, 10)
	t.Run("If-Range gives 200", func(t *testing.T) {
		s := &swapServer{}
		s.set(b, etag2, 0)
		srv := newServer(t, s.ServeHTTP)
		d := newDownloader(t, download.Config{})
		sink := &memSink{t: t, data: append([]byte(nil), a[:60_000]...)}
		res, err := fetch(t, d, download.Request{URL: srv.URL, Offset: 60_000, ETag: etag1}, sink)
		if err != nil {
			t.Fatal(err)
		}
		checkSame(t, sink.data, b)
		checkResult(t, res, download.Result{Size: int64(len(b)), ETag: etag2, Fetched: int64(len(b)), Attempts: 1, Restarts: 1})
	})
	t.Run("If-Range ignored, other ETag on 206", func(t *testing.T) {
		s := &swapServer{ignoreIfRange: true}
		s.set(b, etag2, 0)
		srv := newServer(t, s.ServeHTTP)
		d := newDownloader(t, download.Config{})
		sink := &memSink{t: t, data: append([]byte(nil), a[:60_000]...)}
		res, err := fetch(t, d, download.Request{URL: srv.URL, Offset: 60_000, ETag: etag1}, sink)
		if err != nil {
			t.Fatal(err)
		}
		checkSame(t, sink.data, b)
		checkResult(t, res, download.Result{Size: int64(len(b)), ETag: etag2, Fetched: int64(len(b)), Attempts: 2, Restarts: 1})
		if s.log.header(1, "Range") != "" {
			t.Fatal("restart sent a Range")
		}
	})
	t.Run("mid-fetch, ETag", func(t *testing.T) {
		// Attempt 1 gets 50 000 bytes of a, then the connection drops and b
		// replaces a: attempt 2's If-Range brings b whole.
		s := &swapServer{}
		s.set(a, etag1, 50_000)
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			s.ServeHTTP(w, r)
		})
		d := newDownloader(t, download.Config{})
		sink := &memSink{t: t}
		var once sync.Once
		res, err := fetch(t, d, download.Request{URL: srv.URL, OnProgress: func(p download.Progress) {
			if p.Offset >= 32<<10 {
				once.Do(func() { s.set(b, etag2, 0) })
			}
		}}, sink)
		if err != nil {
			t.Fatal(err)
		}
		checkSame(t, sink.data, b)
		checkResult(t, res, download.Result{Size: int64(len(b)), ETag: etag2, Fetched: 50_000 + int64(len(b)), Attempts: 2, Restarts: 1})
		if s.log.header(1, "If-Range") != etag1 {
			t.Fatalf("If-Range = %q", s.log.header(1, "If-Range"))
		}
	})
	t.Run("mid-fetch, size, no ETag", func(t *testing.T) {
		// Without ETags the size in the 206's Content-Range gives the change away.
		s := &swapServer{}
		s.set(a, "", 50_000)
		srv := newServer(t, s.ServeHTTP)
		d := newDownloader(t, download.Config{})
		sink := &memSink{t: t}
		var once sync.Once
		res, err := fetch(t, d, download.Request{URL: srv.URL, OnProgress: func(p download.Progress) {
			once.Do(func() { s.set(b, "", 0) })
		}}, sink)
		if err != nil {
			t.Fatal(err)
		}
		checkSame(t, sink.data, b)
		if res.Attempts != 3 || res.Restarts != 1 || s.log.header(1, "Range") != "bytes=50000-" || s.log.header(2, "Range") != "" {
			t.Fatalf("Result %+v; Range headers %q, %q", res, s.log.header(1, "Range"), s.log.header(2, "Range"))
		}
	})
	t.Run("size differs from the request's", func(t *testing.T) {
		// A request for 120 000 bytes that finds the object at 130 000:
		// restarted, then refused as the wrong object.
		s := &swapServer{}
		s.set(b, "", 0)
		srv := newServer(t, s.ServeHTTP)
		d := newDownloader(t, download.Config{})
		sink := &memSink{t: t, data: append([]byte(nil), a[:60_000]...)}
		res, err := fetch(t, d, download.Request{URL: srv.URL, Offset: 60_000, Size: int64(len(a))}, sink)
		if !errors.Is(err, download.ErrSizeMismatch) {
			t.Fatalf("err = %v, want ErrSizeMismatch", err)
		}
		if res.Attempts != 2 || res.Fetched != 0 || sink.restarts != 0 {
			t.Fatalf("Result %+v, sink restarts %d", res, sink.restarts)
		}
	})
}

// Request.Size is checked against a full body before a byte is written, and
// against a body of unknown length as it flows.
func TestFetchSizeMismatch(t *testing.T) {
	obj := object(70_000, 11)
	for _, chunked := range []bool{false, true} {
		t.Run("chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if chunked {
					w.Write(obj[:100])
					http.NewResponseController(w).Flush()
					w.Write(obj[100:])
					return
				}
				serveContent(w, r, obj, "")
			})
			d := newDownloader(t, download.Config{})
			sink := &memSink{t: t}
			res, err := fetch(t, d, download.Request{URL: srv.URL, Size: 50_000}, sink)
			if !errors.Is(err, download.ErrSizeMismatch) {
				t.Fatalf("err = %v, want ErrSizeMismatch", err)
			}
			if res.Attempts != 1 || res.Size > 50_000 {
				t.Fatalf("Result %+v", res)
			}
			if !chunked && len(sink.writes) != 0 {
				t.Fatal("wrote to the sink before checking the size")
			}
		})
	}
}

// Redirects are followed with Range and If-Range; too many is an error that
// is not retried.
func TestFetchRedirects(t *testing.T) {
	obj := object(80_000, 12)
	var log reqLog
	codes := []int{301, 302, 303, 307, 308}
	mux := http.NewServeMux()
	mux.HandleFunc("/hop/{n}", func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		n, _ := strconv.Atoi(r.PathValue("n"))
		next := "/obj?X-Amz-Signature=final-secret"
		if n > 1 {
			next = "/hop/" + strconv.Itoa(n-1)
		}
		http.Redirect(w, r, next, codes[n%len(codes)])
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		http.Redirect(w, r, "/loop?X-Amz-Signature=loop-secret", http.StatusFound)
	})
	mux.HandleFunc("/obj", func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		serveContent(w, r, obj, etag1)
	})
	srv := newServer(t, mux.ServeHTTP)

	for _, hops := range []int{1, 5} {
		t.Run("hops="+strconv.Itoa(hops), func(t *testing.T) {
			d := newDownloader(t, download.Config{})
			sink := &memSink{t: t, data: append([]byte(nil), obj[:1000]...)}
			before := log.n()
			res, err := fetch(t, d, download.Request{URL: srv.URL + "/hop/" + strconv.Itoa(hops), Offset: 1000, ETag: etag1}, sink)
			if err != nil {
				t.Fatal(err)
			}
			checkSame(t, sink.data, obj)
			checkResult(t, res, download.Result{Size: int64(len(obj)), ETag: etag1, Fetched: int64(len(obj) - 1000), Attempts: 1})
			for i := before; i < log.n(); i++ {
				if log.header(i, "Range") != "bytes=1000-" || log.header(i, "If-Range") != etag1 {
					t.Fatalf("request %d to %s: Range %q If-Range %q", i, log.path[i], log.header(i, "Range"), log.header(i, "If-Range"))
				}
			}
		})
	}
	for _, tt := range []struct {
		name string
		path string
		max  int
	}{{"chain of 6", "/hop/6", 0}, {"loop", "/loop", 0}, {"MaxRedirects 2", "/hop/3", 2}, {"none allowed", "/hop/1", -1}} {
		t.Run(tt.name, func(t *testing.T) {
			d := newDownloader(t, download.Config{MaxRedirects: tt.max})
			res, err := fetch(t, d, download.Request{URL: srv.URL + tt.path}, &memSink{t: t})
			if !errors.Is(err, download.ErrTooManyRedirects) {
				t.Fatalf("err = %v, want ErrTooManyRedirects", err)
			}
			if res.Attempts != 1 {
				t.Fatalf("retried a redirect loop: %+v", res)
			}
			mustNotContain(t, err, "secret")
		})
	}
}

// 400/401/403 are ErrURLRejected and 404/410 ErrNotFound, returned at once;
// other 4xx are returned at once too. Errors never show the query string.
func TestFetchClientErrors(t *testing.T) {
	const s3Body = `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Request has expired</Message><X-Amz-Expires>60</X-Amz-Expires></Error>`
	tests := []struct {
		code     int
		body     string
		sentinel error
		says     string
	}{
		{403, s3Body, download.ErrURLRejected, "re-read the job for a fresh one"},
		{400, "", download.ErrURLRejected, "presigned URL may have expired"},
		{401, "", download.ErrURLRejected, "presigned URL"},
		{404, "", download.ErrNotFound, "does not exist"},
		{410, "", download.ErrNotFound, "does not exist"},
		{418, "", nil, "unexpected reply"},
		{416, "", nil, "asked for no range"},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.code), func(t *testing.T) {
			var log reqLog
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				log.add(r)
				w.WriteHeader(tt.code)
				io.WriteString(w, tt.body)
			})
			d := newDownloader(t, download.Config{})
			res, err := fetch(t, d, download.Request{URL: srv.URL + "/bucket/fw.bin?X-Amz-Credential=AKID&X-Amz-Signature=deadbeefsecret"}, &memSink{t: t})
			var se *download.StatusError
			if !errors.As(err, &se) || se.StatusCode != tt.code {
				t.Fatalf("err = %v, want a StatusError %d", err, tt.code)
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Fatalf("err = %v, want %v", err, tt.sentinel)
			}
			for _, other := range []error{download.ErrURLRejected, download.ErrNotFound, download.ErrRetriesExhausted} {
				if other != tt.sentinel && errors.Is(err, other) {
					t.Fatalf("err = %v is also %v", err, other)
				}
			}
			if res.Attempts != 1 || log.n() != 1 {
				t.Fatalf("retried: %+v", res)
			}
			if se.URL != srv.URL+"/bucket/fw.bin" {
				t.Errorf("StatusError.URL = %q", se.URL)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.says) || !strings.Contains(msg, http.StatusText(tt.code)) {
				t.Errorf("error %q does not say %q", msg, tt.says)
			}
			if tt.body != "" && (se.Code != "AccessDenied" || se.Message != "Request has expired" || !strings.Contains(err.Error(), "Request has expired")) {
				t.Errorf("S3 error not reported: %+v", se)
			}
			mustNotContain(t, err, "deadbeefsecret", "AKID", "X-Amz")
		})
	}
}

// 5xx (and 408, 429) are retried after a backoff with jitter on the clock.
func TestFetchRetriesServerErrors(t *testing.T) {
	obj := object(40_000, 13)
	for _, code := range []int{500, 503, 408, 429} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			var calls atomic.Int32
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) <= 2 {
					w.WriteHeader(code)
					return
				}
				serveContent(w, r, obj, "")
			})
			tc := newTestClock()
			d := newDownloader(t, download.Config{Clock: tc, Rand: func() float64 { return 0.5 }})
			sink := &memSink{t: t}
			res, err := fetch(t, d, download.Request{URL: srv.URL}, sink)
			if err != nil {
				t.Fatal(err)
			}
			checkSame(t, sink.data, obj)
			checkResult(t, res, download.Result{Size: int64(len(obj)), Fetched: int64(len(obj)), Attempts: 3})
			if w := tc.Waits(); len(w) != 2 || w[0] != 500*time.Millisecond || w[1] != time.Second {
				t.Fatalf("backoff waits %v, want [500ms 1s]", w)
			}
		})
	}
}

// When every attempt fails the budget runs out: ErrRetriesExhausted wrapping
// the last cause, after Retries+1 attempts and exponential, capped waits.
func TestFetchRetriesExhausted(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	tc := newTestClock()
	d := newDownloader(t, download.Config{Clock: tc, Retries: 5, BackoffMin: time.Second, BackoffMax: 5 * time.Second,
		Rand: func() float64 { return 0.999 }})
	res, err := fetch(t, d, download.Request{URL: srv.URL + "/x?sig=secret"}, &memSink{t: t})
	if !errors.Is(err, download.ErrRetriesExhausted) {
		t.Fatalf("err = %v, want ErrRetriesExhausted", err)
	}
	var se *download.StatusError
	if !errors.As(err, &se) || se.StatusCode != 503 {
		t.Fatalf("err = %v does not wrap the 503", err)
	}
	mustNotContain(t, err, "secret")
	if res.Attempts != 6 {
		t.Fatalf("%d attempts, want 6", res.Attempts)
	}
	want := []time.Duration{999, 1998, 3996, 4995, 4995}
	w := tc.Waits()
	if len(w) != len(want) {
		t.Fatalf("waits %v", w)
	}
	for i := range want {
		if w[i] != want[i]*time.Millisecond {
			t.Fatalf("waits %v, want %v ms", w, want)
		}
	}

	d = newDownloader(t, download.Config{Retries: -1})
	res, err = fetch(t, d, download.Request{URL: srv.URL}, &memSink{t: t})
	if !errors.Is(err, download.ErrRetriesExhausted) || res.Attempts != 1 {
		t.Fatalf("Retries -1: %+v, %v", res, err)
	}
}

// A connection cut mid-body resumes from the current offset. Attempts that
// make progress refill the budget, so a link that keeps dropping finishes;
// a server that restarts every attempt does not loop forever.
func TestFetchCutConnections(t *testing.T) {
	obj := object(1<<20, 14)
	t.Run("progress", func(t *testing.T) {
		var log reqLog
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			log.add(r)
			serveContent(&cutWriter{ResponseWriter: w, left: 100_000}, r, obj, etag1)
		})
		d := newDownloader(t, download.Config{Retries: 1})
		sink := &memSink{t: t}
		res, err := fetch(t, d, download.Request{URL: srv.URL}, sink)
		if err != nil {
			t.Fatal(err)
		}
		checkSame(t, sink.data, obj)
		checkResult(t, res, download.Result{Size: int64(len(obj)), ETag: etag1, Fetched: int64(len(obj)), Attempts: 11})
		for i := 1; i < log.n(); i++ {
			if want := "bytes=" + strconv.Itoa(i*100_000) + "-"; log.header(i, "Range") != want {
				t.Fatalf("request %d: Range %q, want %q", i, log.header(i, "Range"), want)
			}
		}
	})
	t.Run("no progress", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del("Range")
			serveContent(&cutWriter{ResponseWriter: w, left: 100_000}, r, obj, "")
		})
		d := newDownloader(t, download.Config{Retries: 2})
		res, err := fetch(t, d, download.Request{URL: srv.URL}, &memSink{t: t})
		if !errors.Is(err, download.ErrRetriesExhausted) || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v, want ErrRetriesExhausted wrapping io.ErrUnexpectedEOF", err)
		}
		checkResult(t, res, download.Result{Size: 100_000, Fetched: 400_000, Attempts: 4, Restarts: 3})
	})
}

// A server that answers an open range with a part of it is asked for the
// rest at once: no backoff, no budget spent.
func TestFetchPartialRanges(t *testing.T) {
	obj := object(250_000, 15)
	const part = 64_000
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		start := rangeStart(t, r)
		end := min(start+part, len(obj))
		w.Header().Set("Content-Range", "bytes "+strconv.Itoa(start)+"-"+strconv.Itoa(end-1)+"/"+strconv.Itoa(len(obj)))
		w.Header().Set("Content-Length", strconv.Itoa(end-start))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(obj[start:end])
	})
	tc := newTestClock()
	d := newDownloader(t, download.Config{Clock: tc, Retries: -1})
	sink := &memSink{t: t}
	res, err := fetch(t, d, download.Request{URL: srv.URL}, sink)
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, sink.data, obj)
	checkResult(t, res, download.Result{Size: int64(len(obj)), Fetched: int64(len(obj)), Attempts: 4})
	if w := tc.Waits(); len(w) != 0 {
		t.Fatalf("waited %v between parts", w)
	}
}

// stallServer sends head bytes of obj on its first request, then holds the
// connection until the client goes; later requests are served normally.
// With head < 0 the first request gets no response at all. entered is
// closed when the first request reaches the server.
//
// A test that waits for the stall must know that the last of the head bytes
// has been read before it moves the clock: a byte read after the clock moved
// restarts the read timeout, and the stall is then never seen. So head is a
// multiple of the downloader's buffer, and the test waits for the progress
// report of exactly head bytes, which comes after every read of them.
func stallServer(t *testing.T, obj []byte, head int) (srv *httptest.Server, calls *atomic.Int32, entered chan struct{}) {
	calls, entered = new(atomic.Int32), make(chan struct{})
	srv = newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) > 1 {
			serveContent(w, r, obj, "")
			return
		}
		close(entered)
		if head >= 0 {
			w.Header().Set("Content-Length", strconv.Itoa(len(obj)))
			w.Write(obj[:head])
			http.NewResponseController(w).Flush()
		}
		<-r.Context().Done()
	})
	return srv, calls, entered
}

// An attempt with no byte for ReadTimeout is aborted and retried from the
// current offset.
func TestFetchStall(t *testing.T) {
	obj := object(300_000, 16)
	t.Run("mid-body", func(t *testing.T) {
		const buf = 32 << 10
		const head = 3 * buf // a whole number of buffers: see stallServer
		srv, calls, _ := stallServer(t, obj, head)
		tc := newTestClock()
		d := newDownloader(t, download.Config{Clock: tc, BufferSize: buf})
		got := make(chan struct{})
		var once sync.Once
		errc := make(chan error, 1)
		sink := &memSink{t: t}
		var res download.Result
		go func() {
			var err error
			res, err = fetch(t, d, download.Request{URL: srv.URL, OnProgress: func(p download.Progress) {
				if p.Offset == head {
					once.Do(func() { close(got) })
				}
			}}, sink)
			errc <- err
		}()
		<-got // every byte the server sent has been read: the reader now waits
		tc.Advance(testReadTimeout - 1)
		select {
		case err := <-errc:
			t.Fatalf("Fetch ended before the read timeout: %v", err)
		default:
		}
		tc.Advance(1)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		checkSame(t, sink.data, obj)
		checkResult(t, res, download.Result{Size: int64(len(obj)), Fetched: int64(len(obj)), Attempts: 2})
		if calls.Load() != 2 {
			t.Fatalf("%d requests", calls.Load())
		}
	})
	t.Run("before headers", func(t *testing.T) {
		srv, _, entered := stallServer(t, obj, -1)
		tc := newTestClock()
		d := newDownloader(t, download.Config{Clock: tc})
		errc := make(chan error, 1)
		sink := &memSink{t: t}
		var res download.Result
		go func() {
			var err error
			res, err = fetch(t, d, download.Request{URL: srv.URL}, sink)
			errc <- err
		}()
		<-entered // the watchdog's timer exists from before the request
		tc.Advance(testReadTimeout)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		checkSame(t, sink.data, obj)
		checkResult(t, res, download.Result{Size: int64(len(obj)), Fetched: int64(len(obj)), Attempts: 2})
	})
	t.Run("exhausted", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		tc := newTestClock()
		d := newDownloader(t, download.Config{Clock: tc, Retries: -1})
		errc := make(chan error, 1)
		go func() {
			_, err := fetch(t, d, download.Request{URL: srv.URL}, &memSink{t: t})
			errc <- err
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tc.WaitTimers(ctx, 1); err != nil {
			t.Fatal(err)
		}
		tc.Advance(testReadTimeout)
		if err := <-errc; !errors.Is(err, download.ErrStalled) || !errors.Is(err, download.ErrRetriesExhausted) {
			t.Fatalf("err = %v, want ErrStalled and ErrRetriesExhausted", err)
		}
	})
}

// A Sink error ends the Fetch at once, wrapped; so does a Restart error.
func TestFetchSinkErrors(t *testing.T) {
	obj := object(200_000, 17)
	var calls atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		r.Header.Del("Range")
		serveContent(w, r, obj, "")
	})
	d := newDownloader(t, download.Config{})
	res, err := fetch(t, d, download.Request{URL: srv.URL}, &memSink{t: t, failAt: 100_000})
	if !errors.Is(err, errSinkFull) || errors.Is(err, download.ErrRetriesExhausted) {
		t.Fatalf("err = %v, want the sink's error", err)
	}
	if res.Attempts != 1 || calls.Load() != 1 || res.Size != 3*32<<10 {
		t.Fatalf("Result %+v after a sink error", res)
	}

	sink := &memSink{t: t, data: append([]byte(nil), obj[:1000]...), failRest: true}
	res, err = fetch(t, d, download.Request{URL: srv.URL, Offset: 1000}, sink)
	if err == nil || res.Attempts != 1 || res.Restarts != 0 || !strings.Contains(err.Error(), "flash erase failed") {
		t.Fatalf("Restart failure: %+v, %v", res, err)
	}
}

// Cancelling ctx stops a Fetch in a read or in a backoff, with ctx.Err()
// wrapped.
func TestFetchCancel(t *testing.T) {
	obj := object(300_000, 18)
	t.Run("reading", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(obj)))
			w.Write(obj[:100_000])
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
		})
		d := newDownloader(t, download.Config{})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		res, err := d.Fetch(ctx, download.Request{URL: srv.URL, OnProgress: func(p download.Progress) {
			if p.Offset >= 64<<10 {
				cancel()
			}
		}}, &memSink{t: t})
		if !errors.Is(err, context.Canceled) || res.Attempts != 1 {
			t.Fatalf("%+v, %v", res, err)
		}
	})
	t.Run("backoff", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
		tc := newTestClock()
		tc.hold = true
		d := newDownloader(t, download.Config{Clock: tc})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		errc := make(chan error, 1)
		go func() {
			_, err := d.Fetch(ctx, download.Request{URL: srv.URL}, &memSink{t: t})
			errc <- err
		}()
		<-tc.backoffs
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("before", func(t *testing.T) {
		d := newDownloader(t, download.Config{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res, err := d.Fetch(ctx, download.Request{URL: "http://127.0.0.1:1/x"}, &memSink{t: t})
		if !errors.Is(err, context.Canceled) || res.Attempts != 0 {
			t.Fatalf("%+v, %v", res, err)
		}
	})
}

// HTTPS: trusted through RootCAs; an untrusted certificate is an error that
// is not retried.
func TestFetchTLS(t *testing.T) {
	obj := object(100_000, 19)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveContent(w, r, obj, etag1)
	}))
	srv.Config.ErrorLog = discardLog()
	srv.StartTLS()
	t.Cleanup(srv.Close)

	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	d := newDownloader(t, download.Config{RootCAs: roots})
	sink := &memSink{t: t, data: append([]byte(nil), obj[:5000]...)}
	res, err := fetch(t, d, download.Request{URL: srv.URL + "/fw?X-Amz-Signature=s", Offset: 5000, ETag: etag1}, sink)
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, sink.data, obj)
	checkResult(t, res, download.Result{Size: int64(len(obj)), ETag: etag1, Fetched: int64(len(obj) - 5000), Attempts: 1})

	d = newDownloader(t, download.Config{}) // system roots only
	res, err = fetch(t, d, download.Request{URL: srv.URL + "/fw?X-Amz-Signature=secret"}, &memSink{t: t})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) || res.Attempts != 1 || !strings.Contains(err.Error(), "root CAs") {
		t.Fatalf("untrusted server: %+v, %v", res, err)
	}
	mustNotContain(t, err, "secret")
}

// Connection errors are retried; their text never holds the query.
func TestFetchConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tc := newTestClock()
	d := newDownloader(t, download.Config{Clock: tc, Retries: 2})
	res, err := fetch(t, d, download.Request{URL: "http://" + addr + "/fw.bin?X-Amz-Signature=secret"}, &memSink{t: t})
	if !errors.Is(err, download.ErrRetriesExhausted) || res.Attempts != 3 || len(tc.Waits()) != 2 {
		t.Fatalf("%+v, %v", res, err)
	}
	mustNotContain(t, err, "secret")
}

func TestFetchInvalidRequest(t *testing.T) {
	d := newDownloader(t, download.Config{})
	for _, req := range []download.Request{
		{URL: "ftp://host/fw.bin"},
		{URL: "http:///fw.bin"},
		{URL: "http://host/%zz?X-Amz-Signature=secret"},
		{URL: "http://host/fw.bin", Offset: -1},
		{URL: "http://host/fw.bin", Size: -5},
	} {
		res, err := d.Fetch(context.Background(), req, &memSink{t: t})
		if !errors.Is(err, download.ErrInvalidRequest) || res.Attempts != 0 {
			t.Errorf("%+v: %+v, %v", req, res, err)
			continue
		}
		mustNotContain(t, err, "secret")
	}
}

// The body streams through one buffer: memory does not grow with the object.
func TestFetchMemoryBounded(t *testing.T) {
	const size = 16 << 20
	obj := object(size, 21)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { serveContent(w, r, obj, "") })
	d := newDownloader(t, download.Config{})
	fetch(t, d, download.Request{URL: srv.URL}, &discard{}) // warm up the connection
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	sink := &discard{}
	if _, err := fetch(t, d, download.Request{URL: srv.URL}, sink); err != nil || sink.n != size {
		t.Fatalf("%d bytes, %v", sink.n, err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Fatalf("a %d MiB fetch allocated %d bytes (client and server together)", size>>20, alloc)
	}
}

// Bytes that keep arriving, each within ReadTimeout of the last, keep an
// attempt alive however long it lasts in total.
func TestFetchSlowButAlive(t *testing.T) {
	obj := object(5000, 22)
	next := make(chan struct{})
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(obj)))
		for i := 0; i < len(obj); i += 1000 {
			w.Write(obj[i : i+1000])
			http.NewResponseController(w).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})
	tc := newTestClock()
	d := newDownloader(t, download.Config{Clock: tc, BufferSize: 1000})
	progress := make(chan int64, 10)
	errc := make(chan error, 1)
	var res download.Result
	go func() {
		var err error
		res, err = fetch(t, d, download.Request{URL: srv.URL, OnProgress: func(p download.Progress) { progress <- p.Offset }}, &memSink{t: t})
		errc <- err
	}()
	for i := 0; i < 5; i++ {
		<-progress
		tc.Advance(testReadTimeout * 2 / 3)
		next <- struct{}{}
	}
	if err := <-errc; err != nil || res.Attempts != 1 {
		t.Fatalf("%+v, %v: a slow but steady body was aborted", res, err)
	}
}

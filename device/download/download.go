package download

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/awsfota/awsfota/clock"
)

// Sink receives the object's bytes, in order. It is implemented by the
// caller, typically on top of a DFU target.
//
// Fetch calls the Sink only from the goroutine that called Fetch, never
// concurrently, and never after Fetch returns. Writes are of at most
// Config.BufferSize bytes: every Write of an attempt but its last is exactly
// BufferSize bytes long.
type Sink interface {
	// Write stores p at the current offset; on success the offset advances by
	// len(p). An error (or a short write) ends the Fetch without retrying:
	// Fetch returns the error wrapped.
	io.Writer
	// Restart discards everything written so far (for a DFU target: makes the
	// partial image unbootable and starts over); the next Write is at offset
	// 0. Fetch calls it when the server sends the object from its start while
	// the sink already holds bytes: the server ignored Range, or the object
	// changed. An error ends the Fetch without retrying.
	Restart() error
}

// Config configures a Downloader. The zero value is usable: every field has
// a default.
type Config struct {
	// Client makes the requests. Nil: a client of the Downloader's own,
	// whose transport trusts RootCAs and uses no HTTP proxy (never
	// http.DefaultClient; HTTPS_PROXY and the like are not read). A given
	// client is copied, not modified; its CheckRedirect, if any, is called
	// after the MaxRedirects check. Its Timeout, if set, bounds a whole
	// attempt including the body: leave it 0 and rely on ReadTimeout.
	Client *http.Client
	// RootCAs are the certificate authorities trusted for HTTPS. Nil: the
	// system roots. Used only when Client is nil.
	RootCAs *x509.CertPool
	// MaxRedirects is how many redirects (301, 302, 303, 307, 308) one
	// attempt follows; one more ends the Fetch with ErrTooManyRedirects.
	// 0: 5. Negative: redirects are not followed and are an error.
	MaxRedirects int
	// ReadTimeout aborts an attempt (to be retried) when no byte arrives for
	// this long, from sending the request to the end of the body.
	// 0: 30s. Negative: no stall detection.
	ReadTimeout time.Duration
	// Retries is the retry budget: how many failed attempts in a row that
	// made no progress Fetch tolerates before it gives up with
	// ErrRetriesExhausted. An attempt that leaves the sink holding more bytes
	// than ever before in this Fetch refills the budget (and restarts the
	// backoff from BackoffMin), so a link that keeps dropping but keeps
	// delivering finishes the download. 0: 8. Negative: no retries.
	Retries int
	// BackoffMin and BackoffMax bound the wait before a retry: the n-th
	// consecutive failure waits a random duration in
	// [0, min(BackoffMax, BackoffMin·2ⁿ⁻¹)) ("full jitter").
	// 0: 1s and 1m.
	BackoffMin, BackoffMax time.Duration
	// Clock times the backoff and the stall detection. Nil: clock.Real().
	Clock clock.Clock
	// Rand returns the jitter, uniform in [0,1). Nil: a private generator
	// seeded from crypto/rand. It is called under a lock.
	Rand func() float64
	// BufferSize is the size of the one read buffer of a Fetch, and so the
	// largest Sink write. 0: 32 KiB.
	BufferSize int
	// UserAgent is sent as User-Agent when not empty.
	UserAgent string
	// MinRate is the slowest a body may arrive, in bytes per second, over
	// each RateWindow of an attempt: when a window of the body ends with
	// fewer than MinRate·RateWindow bytes received in it, the attempt is
	// aborted with ErrTooSlow and retried from its offset. A too-slow
	// attempt counts against Retries even though it delivered bytes, so a
	// link that stays below the floor ends in ErrRetriesExhausted (wrapping
	// ErrTooSlow) instead of dripping until the job times out. The rate is
	// checked as bytes arrive, on Clock; a body that sends nothing is
	// ReadTimeout's. 0 (the default): no minimum, however slow.
	MinRate int64
	// RateWindow is the span MinRate is averaged over. 0: 1 minute.
	RateWindow time.Duration
	// MaxRetryAfter caps the wait a Retry-After header (on 429 or 503)
	// imposes before the next attempt; the backoff applies when it is
	// longer. 0: 5 minutes. Negative: Retry-After is ignored.
	MaxRetryAfter time.Duration
}

// Defaults of Config.
const (
	DefaultMaxRedirects = 5
	DefaultReadTimeout  = 30 * time.Second
	DefaultRetries      = 8
	DefaultBackoffMin   = time.Second
	DefaultBackoffMax   = time.Minute
	DefaultBufferSize   = 32 << 10
	DefaultRateWindow   = time.Minute
	// DefaultMaxRetryAfter caps the wait a Retry-After header imposes.
	DefaultMaxRetryAfter = 5 * time.Minute
)

// Request names the object to fetch and what the caller already holds of it.
type Request struct {
	// URL is the http or https URL of the object (a presigned S3 URL, say).
	URL string
	// Offset is how many bytes of the object the sink already holds: the
	// resume point. When > 0 the request asks for "Range: bytes=Offset-".
	Offset int64
	// Size is the object size the caller expects (from the job document or
	// a previous Result), 0 if unknown. Fetch fails with ErrSizeMismatch when
	// the server serves a full object of another size; a 206 or 416 that
	// reports another size means the object changed, and Fetch restarts it
	// from 0.
	Size int64
	// ETag is the entity tag a previous Fetch reported for this object
	// (Result.ETag or Progress.ETag), "" if unknown. A strong ETag is sent as
	// If-Range, so a server whose object changed answers with the whole new
	// object, which Fetch takes from 0; a 206 carrying another ETag also
	// makes Fetch restart from 0.
	ETag string
	// OnProgress, if set, is called after each successful Sink.Write, from
	// the goroutine that called Fetch. It must not block for long: it delays
	// the download (and counts against ReadTimeout).
	OnProgress func(Progress)
}

// Progress reports how far a Fetch is.
type Progress struct {
	Offset int64 // bytes the sink now holds
	Total  int64 // object size, 0 while unknown
	// ETag is the object's entity tag as the server last sent it ("" if
	// none). A caller that persists Offset to resume after a reboot should
	// persist ETag with it and pass both back in the next Request.
	ETag string
}

// Result reports what a Fetch did. Fetch returns it with an error too: it then
// says how far the download got.
type Result struct {
	// Size is the number of bytes the sink holds: on success, the object's
	// size.
	Size int64
	// ETag is the entity tag of the object whose bytes the sink holds: the
	// one of the last response that carried an ETag, the Request's if no
	// response did, "" if the object was taken from its start from a
	// response without one. Persist it with Size to resume later.
	ETag string
	// Fetched counts the body bytes read off the network in all attempts.
	Fetched int64
	// Attempts counts the HTTP requests made (redirects not counted).
	Attempts int
	// Restarts counts the calls to Sink.Restart.
	Restarts int
}

// Downloader fetches objects over HTTP(S) into Sinks, resuming and retrying.
// It is safe for concurrent use; each Fetch is independent.
type Downloader struct {
	client        *http.Client
	clock         clock.Clock
	maxRedirects  int
	readTimeout   time.Duration
	retries       int
	backoffMin    time.Duration
	backoffMax    time.Duration
	bufferSize    int
	userAgent     string
	minRate       int64
	rateWindow    time.Duration
	maxRetryAfter time.Duration

	randMu sync.Mutex
	rand   func() float64
}

// New returns a Downloader configured by cfg, with defaults for zero fields.
func New(cfg Config) *Downloader {
	d := &Downloader{
		clock:         cfg.Clock,
		maxRedirects:  cfg.MaxRedirects,
		readTimeout:   cfg.ReadTimeout,
		retries:       cfg.Retries,
		backoffMin:    cfg.BackoffMin,
		backoffMax:    cfg.BackoffMax,
		bufferSize:    cfg.BufferSize,
		userAgent:     cfg.UserAgent,
		rand:          cfg.Rand,
		minRate:       max(cfg.MinRate, 0),
		rateWindow:    cfg.RateWindow,
		maxRetryAfter: cfg.MaxRetryAfter,
	}
	if d.rateWindow <= 0 {
		d.rateWindow = DefaultRateWindow
	}
	if d.maxRetryAfter == 0 {
		d.maxRetryAfter = DefaultMaxRetryAfter
	}
	if d.clock == nil {
		d.clock = clock.Real()
	}
	switch {
	case d.maxRedirects == 0:
		d.maxRedirects = DefaultMaxRedirects
	case d.maxRedirects < 0:
		d.maxRedirects = 0
	}
	if d.readTimeout == 0 {
		d.readTimeout = DefaultReadTimeout
	}
	switch {
	case d.retries == 0:
		d.retries = DefaultRetries
	case d.retries < 0:
		d.retries = 0
	}
	if d.backoffMin <= 0 {
		d.backoffMin = DefaultBackoffMin
	}
	if d.backoffMax <= 0 {
		d.backoffMax = DefaultBackoffMax
	}
	if d.backoffMax < d.backoffMin {
		d.backoffMax = d.backoffMin
	}
	if d.bufferSize <= 0 {
		d.bufferSize = DefaultBufferSize
	}
	if d.rand == nil {
		var seed [32]byte
		rand.Read(seed[:]) // never fails (crypto/rand panics rather than return an error)
		r := mrand.New(mrand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:16])))
		d.rand = r.Float64
	}

	var c http.Client
	if cfg.Client != nil {
		c = *cfg.Client
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil // no environment read deep in a library: pass a Client to use a proxy
		t.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
		c.Transport = t
	}
	next := c.CheckRedirect
	max := d.maxRedirects
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > max {
			return fmt.Errorf("%w: more than %d redirects, the last to %s; the URL may lead into a redirect loop",
				ErrTooManyRedirects, max, redact(req.URL))
		}
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			// No retry can follow it: fail at once.
			return fmt.Errorf("%w: %s redirected to %s; only http and https can be followed: check the server",
				ErrBadRedirect, redact(via[len(via)-1].URL), redact(req.URL))
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	d.client = &c
	return d
}

// CloseIdleConnections closes the kept-alive connections of the Downloader's
// HTTP client that are not in use. Call it when the Downloader is no longer
// needed, or after a Fetch if no other is expected soon.
func (d *Downloader) CloseIdleConnections() { d.client.CloseIdleConnections() }

// Fetch downloads the object named by req into sink, starting at req.Offset,
// until the sink holds the whole object, ctx ends, or an error that retrying
// cannot fix occurs. It makes one streaming GET per attempt and follows the
// status table of the package documentation. It returns a Result in every
// case: after an error, Result.Size is how many bytes the sink holds, the
// offset to resume from.
func (d *Downloader) Fetch(ctx context.Context, req Request, sink Sink) (Result, error) {
	f := &fetch{d: d, req: req, sink: sink, offset: req.Offset, etag: req.ETag, total: -1}
	u, err := url.Parse(req.URL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the whole URL, query included
		}
		return f.result(), fmt.Errorf("download: %w: cannot parse the URL: %w; check the job document", ErrInvalidRequest, err)
	}
	f.url = u
	f.where = redact(u)
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return f.result(), fmt.Errorf("download of %s: %w: the scheme must be http or https; check the job document", f.where, ErrInvalidRequest)
	case u.Host == "":
		return f.result(), fmt.Errorf("download of %s: %w: the URL has no host; check the job document", f.where, ErrInvalidRequest)
	case req.Offset < 0 || req.Size < 0:
		return f.result(), fmt.Errorf("download of %s: %w: negative offset %d or size %d", f.where, ErrInvalidRequest, req.Offset, req.Size)
	}
	if req.Size > 0 {
		f.total = req.Size
		if req.Offset > req.Size {
			f.fromZero = true // the sink holds more than the object: start over
		}
	}
	f.buf = make([]byte, d.bufferSize)
	err = f.run(ctx)
	return f.result(), err
}

// backoff returns the wait before the retry that follows the failures-th
// consecutive failure (failures >= 1; 0 is taken as 1): a duration in
// [0, min(max, min·2^(failures-1))) scaled by r in [0,1).
func backoff(failures int, min, max time.Duration, r float64) time.Duration {
	ceil := min
	for i := 1; i < failures && ceil < max; i++ {
		ceil *= 2
	}
	if ceil > max || ceil <= 0 {
		ceil = max
	}
	return time.Duration(r * float64(ceil))
}

func (d *Downloader) jitter() float64 {
	d.randMu.Lock()
	defer d.randMu.Unlock()
	r := d.rand()
	if r < 0 || r >= 1 {
		r = 0
	}
	return r
}

// sleep waits for dur on the Downloader's clock, or until ctx ends.
func (d *Downloader) sleep(ctx context.Context, dur time.Duration) error {
	if !clock.Sleep(d.clock, dur, ctx.Done()) {
		return ctx.Err()
	}
	return nil
}

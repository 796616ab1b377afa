package download

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/awsfota/awsfota/clock"
)

// fetch is the state of one Fetch call.
type fetch struct {
	d     *Downloader
	req   Request
	sink  Sink
	url   *url.URL
	where string // the URL as scheme://host/path, for messages
	buf   []byte

	offset   int64  // bytes the sink holds
	high     int64  // the most the sink has held during this Fetch
	etag     string // the object's ETag as last seen
	total    int64  // the object's size, -1 while unknown
	fromZero bool   // the next attempt asks for the whole object
	res      Result
}

// action is what the retry loop does after an attempt.
type action int

const (
	actDone  action = iota // the sink holds the whole object
	actFail                // stop: the error cannot be fixed by retrying
	actAgain               // go again at once (a partial answer, or a restart)
	actRetry               // go again after a backoff
	actBody                // (inside an attempt) the response body is usable
)

func (f *fetch) result() Result {
	r := f.res
	r.Size, r.ETag = f.offset, f.etag
	return r
}

// run is the retry loop: attempts until done, a fatal error, ctx's end or
// the budget is spent.
func (f *fetch) run(ctx context.Context) error {
	f.high = f.offset
	failures := 0
	for {
		if err := ctx.Err(); err != nil {
			return f.canceled(err)
		}
		f.res.Attempts++
		start, restarts := f.offset, f.res.Restarts
		act, err := f.attempt(ctx)
		switch act {
		case actDone:
			return nil
		case actFail:
			if ctx.Err() != nil {
				return f.canceled(ctx.Err())
			}
			return f.fail(err)
		}
		if ctx.Err() != nil {
			return f.canceled(ctx.Err())
		}
		// Progress: more bytes than at the start of the attempt, and (if the
		// attempt restarted the sink) more than ever before, so that a server
		// that restarts every attempt cannot loop forever.
		progressed := f.offset > start && (f.res.Restarts == restarts || f.offset > f.high)
		if f.offset > f.high {
			f.high = f.offset
		}
		// A too-slow attempt delivered bytes, but at a rate that must not
		// go on for ever: it counts as a failure.
		if progressed && !errors.Is(err, ErrTooSlow) {
			failures = 0
		} else {
			failures++
		}
		if failures > f.d.retries {
			return fmt.Errorf("download of %s: %w after %d attempts, %d in a row without progress, at offset %d%s (a later Fetch resumes there); last error: %w",
				f.where, ErrRetriesExhausted, f.res.Attempts, failures, f.offset, f.ofTotal(), err)
		}
		if act == actRetry {
			wait := backoff(failures, f.d.backoffMin, f.d.backoffMax, f.d.jitter())
			var se *StatusError
			if errors.As(err, &se) && se.RetryAfter > wait && f.d.maxRetryAfter > 0 {
				wait = min(se.RetryAfter, f.d.maxRetryAfter)
			}
			if err := f.d.sleep(ctx, wait); err != nil {
				return f.canceled(err)
			}
		}
	}
}

// fail gives a fatal error its context.
func (f *fetch) fail(err error) error {
	var se *StatusError
	if errors.As(err, &se) {
		return fmt.Errorf("download at offset %d%s: %w", f.offset, f.ofTotal(), err) // se names the URL
	}
	return fmt.Errorf("download of %s at offset %d%s: %w", f.where, f.offset, f.ofTotal(), err)
}

func (f *fetch) canceled(err error) error {
	return fmt.Errorf("download of %s stopped at offset %d%s: %w", f.where, f.offset, f.ofTotal(), err)
}

func (f *fetch) ofTotal() string {
	if f.total < 0 {
		return ""
	}
	return " of " + strconv.FormatInt(f.total, 10)
}

// attempt makes one GET and streams its body into the sink.
func (f *fetch) attempt(ctx context.Context) (action, error) {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	wd := f.d.watch(cancel)
	defer wd.close()

	req, err := http.NewRequestWithContext(actx, http.MethodGet, f.req.URL, nil)
	if err != nil {
		return actFail, fmt.Errorf("%w: %w", ErrInvalidRequest, unwrapURLError(err))
	}
	// Offsets are in bytes of the stored object: never let a transport
	// compress the body.
	req.Header.Set("Accept-Encoding", "identity")
	if f.d.userAgent != "" {
		req.Header.Set("User-Agent", f.d.userAgent)
	}
	ranged := f.offset > 0 && !f.fromZero
	if ranged {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(f.offset, 10)+"-")
		if f.etag != "" && !strings.HasPrefix(f.etag, "W/") {
			// If-Range takes only a strong validator (RFC 9110 §13.1.5).
			req.Header.Set("If-Range", f.etag)
		}
	}
	resp, err := f.d.client.Do(req)
	if err != nil {
		return f.netError(ctx, actx, err)
	}
	defer resp.Body.Close()
	wd.touch()

	b, act, err := f.describe(resp, ranged)
	if act != actBody {
		return act, err
	}
	if b.start == 0 && f.offset > 0 {
		if err := f.sink.Restart(); err != nil {
			return actFail, fmt.Errorf("restarting the sink (the server sent the object from its start): %w", err)
		}
		f.offset = 0
		f.res.Restarts++
	}
	f.fromZero = false
	switch {
	case b.start == 0:
		// A new beginning: what was known of the object no longer holds.
		f.etag, f.total = b.etag, b.total
		if f.total < 0 && f.req.Size > 0 {
			f.total = f.req.Size
		}
	default:
		if b.etag != "" {
			f.etag = b.etag
		}
		if b.total >= 0 {
			f.total = b.total
		}
	}
	if b.end >= 0 && b.end == b.start {
		// An empty body: "bytes X-Y" cannot say so, only 200 with length 0.
		return f.finish(b, false)
	}

	rerr, ferr := f.stream(resp.Body, wd)
	if ferr != nil {
		return actFail, ferr
	}
	if rerr != nil {
		return f.netError(ctx, actx, fmt.Errorf("reading the response body: %w", rerr))
	}
	return f.finish(b, f.offset > b.start)
}

// body describes the bytes a response carries.
type body struct {
	start int64  // object offset of the first byte
	end   int64  // object offset after the last byte, -1 if unknown
	total int64  // object size, -1 if unknown
	etag  string // the response's ETag
}

// describe checks a response against what the sink holds and decides whether
// its body can be used (actBody) or what to do instead.
func (f *fetch) describe(resp *http.Response, ranged bool) (body, action, error) {
	b := body{end: -1, total: -1, etag: resp.Header.Get("ETag")}
	switch resp.StatusCode {
	case http.StatusOK:
		b.end, b.total = resp.ContentLength, resp.ContentLength
	case http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		first, last, total, err := ParseContentRange(cr)
		switch {
		case err == nil && first >= 0:
			b.start, b.end, b.total = first, last+1, total
		case cr != "" && ranged:
			f.fromZero = true
			return b, actAgain, fmt.Errorf("server answered 206 with an unusable Content-Range (%w); restarting from 0", err)
		default:
			// No Content-Range (tolerated): the body is what was asked for.
			if ranged {
				b.start = f.offset
			}
			if resp.ContentLength >= 0 {
				b.end = b.start + resp.ContentLength
				b.total = b.end
			}
		}
	case http.StatusRequestedRangeNotSatisfiable:
		if !ranged {
			act, err := f.statusAction(resp)
			return b, act, err
		}
		act, err := f.unsatisfiable(resp)
		return b, act, err
	default:
		act, err := f.statusAction(resp)
		return b, act, err
	}

	if b.start == 0 {
		// The object from its start (the sink is restarted if it holds bytes).
		if f.req.Size > 0 && b.total >= 0 && b.total != f.req.Size {
			return b, actFail, f.sizeMismatch(b.total)
		}
		return b, actBody, nil
	}
	if b.start != f.offset {
		f.fromZero = true
		return b, actAgain, fmt.Errorf("server sent bytes from offset %d when asked for offset %d; restarting from 0",
			b.start, f.offset)
	}
	// A resumed body: is it still the same object?
	if f.etag != "" && b.etag != "" && !etagMatch(f.etag, b.etag) {
		f.fromZero = true
		return b, actAgain, fmt.Errorf("the object changed (ETag %s, was %s) and the server ignored If-Range; restarting from 0",
			b.etag, f.etag)
	}
	if f.total >= 0 && b.total >= 0 && b.total != f.total {
		f.fromZero = true
		return b, actAgain, fmt.Errorf("the object changed (size %d, was %d); restarting from 0", b.total, f.total)
	}
	return b, actBody, nil
}

func (f *fetch) sizeMismatch(got int64) error {
	return fmt.Errorf("%w: the server has %d bytes but %d were expected; it is not the image the job describes: check the upload and the job document",
		ErrSizeMismatch, got, f.req.Size)
}

// unsatisfiable handles a 416 to a ranged request: the offset is at (or
// past) the end of the object.
func (f *fetch) unsatisfiable(resp *http.Response) (action, error) {
	size := int64(-1)
	if first, _, total, err := ParseContentRange(resp.Header.Get("Content-Range")); err == nil && first < 0 {
		size = total
	}
	switch {
	case size >= 0 && size == f.offset && (f.req.Size == 0 || f.req.Size == size):
		f.total = size
		return actDone, nil
	case size < 0 && f.total >= 0 && f.total == f.offset:
		return actDone, nil
	}
	f.fromZero = true
	what := "an unknown size"
	if size >= 0 {
		what = "size " + strconv.FormatInt(size, 10)
	}
	return actAgain, fmt.Errorf("server answered 416 to a request from offset %d and reports %s; restarting from 0",
		f.offset, what)
}

// statusAction turns a status the downloader does not use into an error.
func (f *fetch) statusAction(resp *http.Response) (action, error) {
	se := newStatusError(resp)
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		se.RetryAfter, _ = ParseRetryAfter(resp.Header.Get("Retry-After"), f.d.clock.Now())
	}
	if se.retryable() {
		return actRetry, se
	}
	return actFail, se
}

// finish decides what follows a body that ended cleanly.
func (f *fetch) finish(b body, progressed bool) (action, error) {
	if b.end >= 0 && f.offset < b.end {
		return actRetry, fmt.Errorf("body ended at offset %d, before the announced %d: %w", f.offset, b.end, io.ErrUnexpectedEOF)
	}
	switch {
	case f.total >= 0 && f.offset >= f.total:
		return actDone, nil
	case f.total >= 0 && progressed:
		// A server may answer an open range with a part of it.
		return actAgain, fmt.Errorf("server sent a part of the object, up to offset %d of %d", f.offset, f.total)
	case f.total >= 0:
		return actRetry, fmt.Errorf("server sent no bytes from offset %d of %d", f.offset, f.total)
	case f.req.Size > 0 && f.offset < f.req.Size:
		return actRetry, fmt.Errorf("body of unknown length ended at offset %d, before the expected %d: %w",
			f.offset, f.req.Size, io.ErrUnexpectedEOF)
	}
	f.total = f.offset // an object of unknown length ends with its body
	return actDone, nil
}

// stream copies the body into the sink through the one buffer, filling it
// before each write. rerr is the read error that ended the body (nil at a
// clean EOF); ferr a sink error or a size overflow, which ends the Fetch.
func (f *fetch) stream(r io.Reader, wd *watchdog) (rerr, ferr error) {
	buf, filled := f.buf, 0
	rate := f.d.newRateCheck()
	for {
		n, err := r.Read(buf[filled:])
		if n > 0 {
			wd.touch()
			filled += n
			f.res.Fetched += int64(n)
			if err == nil {
				err = rate.add(n)
			}
		}
		if filled == len(buf) || (err != nil && filled > 0) {
			if ferr := f.write(buf[:filled]); ferr != nil {
				return nil, ferr
			}
			filled = 0
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}

// write passes p to the sink and reports progress.
func (f *fetch) write(p []byte) error {
	if f.req.Size > 0 && f.offset+int64(len(p)) > f.req.Size {
		return fmt.Errorf("%w: the server sends more than the expected %d bytes; it is not the image the job describes: check the upload and the job document",
			ErrSizeMismatch, f.req.Size)
	}
	n, err := f.sink.Write(p)
	if n > 0 {
		f.offset += int64(n)
	}
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("writing to the sink: %w", err)
	}
	if f.req.OnProgress != nil {
		f.req.OnProgress(Progress{Offset: f.offset, Total: max(f.total, 0), ETag: f.etag})
	}
	return nil
}

// netError classifies an error of client.Do or of a body read.
func (f *fetch) netError(ctx, actx context.Context, err error) (action, error) {
	if ctx.Err() != nil {
		return actFail, ctx.Err() // run reports it
	}
	if cause := context.Cause(actx); errors.Is(cause, ErrStalled) {
		return actRetry, cause
	}
	err = unwrapURLError(err)
	if errors.Is(err, ErrTooManyRedirects) || errors.Is(err, ErrBadRedirect) {
		return actFail, err
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		certErr   x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &certErr) || errors.As(err, &verifyErr) {
		return actFail, fmt.Errorf("the server's TLS certificate is not trusted: %w; check the URL's host and the configured root CAs", err)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return actRetry, fmt.Errorf("cannot reach the server: %w; check the network and the host in the job document's URL", err)
	}
	return actRetry, err
}

// unwrapURLError drops the *url.Error layer of a client error: its text
// repeats the whole URL, presigned signature included.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// etagMatch compares two entity tags; weakly if either is weak.
func etagMatch(a, b string) bool {
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}

// rateCheck enforces Config.MinRate on one body: the body's time is cut
// into windows of RateWindow from its first bytes, each closed by the first
// bytes that arrive after it ends (counted in it); a window that received
// fewer than MinRate bytes a second ends the attempt. It reads the clock, sets no
// timer: a body that sends nothing is the watchdog's.
type rateCheck struct {
	clock  clock.Clock
	min    int64
	window time.Duration
	start  time.Time // of the current window; zero before the first byte
	bytes  int64     // received in the current window
}

// newRateCheck returns the check of one body, nil without a MinRate.
func (d *Downloader) newRateCheck() *rateCheck {
	if d.minRate <= 0 {
		return nil
	}
	return &rateCheck{clock: d.clock, min: d.minRate, window: d.rateWindow}
}

// add counts n bytes that just arrived; it fails with ErrTooSlow when they
// close a window that was too slow.
func (c *rateCheck) add(n int) error {
	if c == nil {
		return nil
	}
	now := c.clock.Now()
	if c.start.IsZero() {
		c.start = now // the first bytes start the clock; they took no time
		return nil
	}
	c.bytes += int64(n)
	elapsed := now.Sub(c.start)
	if elapsed < c.window {
		return nil
	}
	if rate := float64(c.bytes) / elapsed.Seconds(); rate < float64(c.min) {
		return fmt.Errorf("%w: %d bytes in %v (%.0f bytes/s), below the minimum of %d bytes/s; the link or the server is too slow",
			ErrTooSlow, c.bytes, elapsed.Round(time.Second), rate, c.min)
	}
	c.start, c.bytes = now, 0
	return nil
}

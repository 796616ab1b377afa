package download

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors. Test for them with errors.Is; the error returned by Fetch
// carries more context (the URL without its query, the offset, the cause).
var (
	// ErrURLRejected is returned, without retrying, when the server answers
	// 400 Bad Request, 401 Unauthorized or 403 Forbidden. With S3 that is what
	// an expired or wrongly signed presigned URL gets: the caller should
	// re-read the job execution for a fresh URL and call Fetch again with the
	// same offset and ETag.
	ErrURLRejected = errors.New("URL rejected by the server")

	// ErrNotFound is returned, without retrying, when the server answers
	// 404 Not Found or 410 Gone: the object named by the job does not exist.
	ErrNotFound = errors.New("object not found")

	// ErrRetriesExhausted is returned when the retry budget (Config.Retries)
	// was spent on failed attempts that made no progress. The error also
	// wraps the cause of the last failure (a *StatusError, a network error,
	// io.ErrUnexpectedEOF, ErrStalled, ...). The sink keeps the bytes already
	// written; a later Fetch resumes from them.
	ErrRetriesExhausted = errors.New("retries exhausted")

	// ErrSizeMismatch is returned, without retrying, when Request.Size was
	// given and the server serves the object from its start with a different
	// size, or sends more bytes than Request.Size: the object is not the one
	// the caller expects.
	ErrSizeMismatch = errors.New("size mismatch")

	// ErrTooManyRedirects is returned, without retrying, when the server
	// redirects more than Config.MaxRedirects times (a redirect loop, or a
	// chain longer than allowed).
	ErrTooManyRedirects = errors.New("too many redirects")

	// ErrBadRedirect is returned, without retrying, when the server
	// redirects to a URL that is not http or https (file:, ftp:, ...).
	ErrBadRedirect = errors.New("redirect to a scheme other than http or https")

	// ErrTooSlow is the cause of a failed attempt whose body arrived slower
	// than Config.MinRate over a Config.RateWindow. Such an attempt is
	// retried but counts as a failure; Fetch returns it only wrapped in
	// ErrRetriesExhausted.
	ErrTooSlow = errors.New("download too slow")

	// ErrStalled is the cause of a failed attempt during which no byte arrived
	// for Config.ReadTimeout. Such an attempt is retried; Fetch returns it
	// only wrapped in ErrRetriesExhausted.
	ErrStalled = errors.New("stalled")

	// ErrInvalidRequest is returned, without any request being made, when the
	// Request is unusable: a URL that does not parse or is not http(s), or a
	// negative offset or size.
	ErrInvalidRequest = errors.New("invalid request")
)

// StatusError is an HTTP reply that ended an attempt: a status the downloader
// does not turn into bytes (anything but 200, 206 and a 416 it can interpret).
// errors.Is maps it to ErrURLRejected (400, 401, 403) and ErrNotFound (404,
// 410). Status codes 408, 429 and 5xx are retried; others are returned at once.
type StatusError struct {
	StatusCode int    // e.g. 403
	Status     string // e.g. "403 Forbidden", as sent by the server
	// RetryAfter is the wait a 429 or 503 asked for with Retry-After
	// (seconds or an HTTP date), 0 when it asked for none; Fetch waits at
	// least this long, up to Config.MaxRetryAfter, before the next attempt.
	RetryAfter time.Duration
	// URL is the URL that answered (after redirects) as scheme://host/path:
	// the query string, which holds presigned signatures, is left out.
	URL string
	// Code and Message are taken from an S3-style XML error body
	// (<Error><Code>AccessDenied</Code><Message>Request has expired</Message>)
	// when the server sent one; empty otherwise.
	Code, Message string
}

// Error says what the server answered and what to do about it.
func (e *StatusError) Error() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "server returned %s for %s", e.Status, e.URL)
	if e.Code != "" || e.Message != "" {
		b.WriteString(" (")
		b.WriteString(e.Code)
		if e.Code != "" && e.Message != "" {
			b.WriteString(": ")
		}
		b.WriteString(e.Message)
		b.WriteString(")")
	}
	b.WriteString(": ")
	b.WriteString(e.advice())
	return b.String()
}

func (e *StatusError) advice() string {
	switch c := e.StatusCode; {
	case c == http.StatusBadRequest || c == http.StatusUnauthorized || c == http.StatusForbidden:
		return "the presigned URL may have expired or be signed wrongly; re-read the job for a fresh one"
	case c == http.StatusNotFound || c == http.StatusGone:
		return "the object does not exist; check that the image was uploaded and that the job document's URL names it"
	case e.retryable():
		return "the server is failing or overloaded; try again later, the download resumes from its offset"
	case c == http.StatusRequestedRangeNotSatisfiable:
		return "the server refused a request that asked for no range; check the server"
	default:
		return "unexpected reply; check the URL and the server"
	}
}

// Is reports whether e belongs to the class of target (ErrURLRejected or
// ErrNotFound).
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrURLRejected:
		return e.StatusCode == http.StatusBadRequest || e.StatusCode == http.StatusUnauthorized ||
			e.StatusCode == http.StatusForbidden
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound || e.StatusCode == http.StatusGone
	}
	return false
}

// retryable reports whether another attempt may get a different answer.
func (e *StatusError) retryable() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusRequestTimeout ||
		e.StatusCode == http.StatusTooManyRequests
}

// ParseRetryAfter reads a Retry-After header (RFC 9110 §10.2.3): a number
// of seconds, or an HTTP date taken relative to now. ok is false for an
// absent or malformed value; a date in the past is a wait of 0.
func ParseRetryAfter(v string, now time.Time) (wait time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if strings.Trim(v, "0123456789") == "" {
		// Only a value too large for uint64 fails to parse: the cap applies.
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > uint64(math.MaxInt64/int64(time.Second)) {
			return math.MaxInt64, true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// newStatusError builds a StatusError from resp, reading at most a small
// part of the body for an S3 error code and message.
func newStatusError(resp *http.Response) *StatusError {
	e := &StatusError{StatusCode: resp.StatusCode, Status: resp.Status, URL: redact(resp.Request.URL)}
	if e.Status == "" {
		e.Status = fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	var s3 struct {
		XMLName xml.Name `xml:"Error"`
		Code    string   `xml:"Code"`
		Message string   `xml:"Message"`
	}
	if xml.Unmarshal(body, &s3) == nil {
		e.Code, e.Message = clip(s3.Code), clip(s3.Message)
	}
	return e
}

func clip(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// redact returns u as scheme://host/path: no user information, no query (it
// holds the signature of a presigned URL), no fragment.
func redact(u *url.URL) string {
	if u == nil {
		return "<no URL>"
	}
	return u.Scheme + "://" + u.Host + u.EscapedPath()
}

// Package download is the device's resumable HTTP(S) downloader: it streams
// one firmware image from a URL (typically a presigned S3 URL taken from a
// FOTA job document) into a Sink — a DFU target adapter — resuming from the
// bytes the sink already holds, across dropped connections, stalls, restarts
// of the device and servers that do not honour Range.
//
// It imports only the standard library and package clock. It must never
// import cloud/*, sim/ or any other device/* package: the runner wires it to
// the DFU target and the persisted state.
//
// # One request per attempt
//
// Each attempt is one streaming GET: "Range: bytes=OFFSET-" when the sink
// already holds OFFSET > 0 bytes, with "If-Range: ETAG" when a strong ETag of
// the object is known, so that a changed object comes back whole as a 200.
// The body flows through one fixed buffer (Config.BufferSize) into the sink;
// memory does not grow with the object. Redirects are followed, up to
// Config.MaxRedirects, keeping Range and If-Range.
//
// # Replies and what Fetch does
//
//	200 OK, offset 0              take the body
//	200 OK, offset > 0            the server ignored Range or the object changed:
//	                              Sink.Restart, take the body from 0 (same response)
//	206, Content-Range a-b/n      a == offset: append; n is the size
//	                              a != offset: restart from 0 with a new request
//	206, no Content-Range         append; size = offset + Content-Length, if known
//	206, other ETag or size       the object changed (If-Range ignored): restart from 0
//	size ≠ Request.Size at 0      ErrSizeMismatch, not retried
//	416, bytes */n, n == offset   done (the sink already holds the whole object)
//	416, otherwise                restart from 0
//	400, 401, 403                 ErrURLRejected, not retried: get a fresh (presigned) URL
//	404, 410                      ErrNotFound, not retried
//	408, 429, 5xx                 retried with backoff; after a 429 or 503, at
//	                              least its Retry-After (capped: MaxRetryAfter)
//	other statuses                *StatusError, not retried
//	more redirects than allowed   ErrTooManyRedirects, not retried
//	redirect to another scheme    ErrBadRedirect (file:, ftp:, ...), not retried
//	body slower than MinRate      ErrTooSlow: retried from the offset, counted
//	over a RateWindow             as a failure though it made progress
//	untrusted TLS certificate     error, not retried
//	connection error, reset,      retried from the current offset with backoff
//	truncated body, stall
//	Sink error                    returned, not retried
//	ctx done                      returned at once, wrapping ctx.Err()
//
// "Restart from 0" asks for the whole object with no Range; the sink is
// restarted only once that body arrives, so a failed request loses nothing.
//
// # Retries
//
// Failed attempts are retried after a backoff with full jitter: the n-th
// failure in a row waits a random time in [0, min(BackoffMax,
// BackoffMin·2ⁿ⁻¹)), measured on Config.Clock. Config.Retries bounds the
// failures in a row that made no progress; an attempt after which the sink
// holds more bytes than ever before in this Fetch refills the budget (and
// the next wait is again drawn below BackoffMin). A "restart from 0" is
// retried at once but, unless it made progress, spends the budget too, so a
// server that never serves the object consistently cannot loop forever. A
// server that answers an open range with part of the object is asked for the
// rest at once, without spending budget. When the budget is spent Fetch
// returns ErrRetriesExhausted wrapping the last cause.
//
// # Errors
//
// Errors name the URL as scheme://host/path only: a presigned URL's query
// holds its signature and never appears in an error. HTTP failures are
// *StatusError; classes of failure are the exported sentinels.
package download

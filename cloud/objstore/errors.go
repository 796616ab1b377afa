package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/awsfota/awsfota/cloud/sigv4"
)

// Errors of the Go API. The HTTP handler answers each with the S3 error code
// in parentheses.
var (
	// ErrNoSuchBucket: the named bucket does not exist (404 NoSuchBucket).
	ErrNoSuchBucket = errors.New("objstore: the specified bucket does not exist")
	// ErrNoSuchKey: the bucket has no object with that key (404 NoSuchKey).
	ErrNoSuchKey = errors.New("objstore: the specified key does not exist")
	// ErrBucketExists: CreateBucket of a bucket that already exists (409
	// BucketAlreadyOwnedByYou; there is only one owner here).
	ErrBucketExists = errors.New("objstore: the bucket already exists")
	// ErrBucketNotEmpty: DeleteBucket of a bucket that still holds objects
	// (409 BucketNotEmpty). Delete the objects first.
	ErrBucketNotEmpty = errors.New("objstore: the bucket is not empty")
	// ErrInvalidBucketName: the name breaks S3's bucket naming rules (400
	// InvalidBucketName); the wrapping error says which rule.
	ErrInvalidBucketName = errors.New("objstore: invalid bucket name")
	// ErrInvalidKey: an empty key, one longer than 1024 bytes (400
	// KeyTooLongError) or one that is not valid UTF-8 (400 InvalidURI).
	ErrInvalidKey = errors.New("objstore: invalid object key")
	// ErrNoSuchUpload: a multipart upload ID that is unknown, completed or
	// aborted (404 NoSuchUpload).
	ErrNoSuchUpload = errors.New("objstore: the specified multipart upload does not exist")
	// ErrEntityTooLarge: a single PUT or part larger than 5 GiB (400
	// EntityTooLarge); use a multipart upload.
	ErrEntityTooLarge = errors.New("objstore: the object exceeds the 5 GiB maximum of a single upload")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("objstore: store is closed")
)

// apiError is a failure with its S3 answer decided where it happens (a bad
// digest, a malformed aws-chunked body, ...). It may wrap a cause.
type apiError struct {
	status int
	code   string
	msg    string
	err    error
}

func (e *apiError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("objstore: %s: %s: %v", e.code, e.msg, e.err)
	}
	return fmt.Sprintf("objstore: %s: %s", e.code, e.msg)
}

func (e *apiError) Unwrap() error { return e.err }

func newAPIError(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func badRequest(code, format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, code, format, args...)
}

// s3Answer is what the handler sends for an error.
type s3Answer struct {
	status        int
	code, message string
	sig           *sigv4.Error // for SignatureDoesNotMatch details
	internal      bool         // log it: the client is not to blame
}

var sentinelAnswers = []struct {
	err    error
	status int
	code   string
}{
	{ErrNoSuchBucket, http.StatusNotFound, "NoSuchBucket"},
	{ErrNoSuchKey, http.StatusNotFound, "NoSuchKey"},
	{ErrBucketExists, http.StatusConflict, "BucketAlreadyOwnedByYou"},
	{ErrBucketNotEmpty, http.StatusConflict, "BucketNotEmpty"},
	{ErrInvalidBucketName, http.StatusBadRequest, "InvalidBucketName"},
	{ErrInvalidKey, http.StatusBadRequest, "KeyTooLongError"},
	{ErrNoSuchUpload, http.StatusNotFound, "NoSuchUpload"},
	{ErrEntityTooLarge, http.StatusBadRequest, "EntityTooLarge"},
	{ErrClosed, http.StatusServiceUnavailable, "ServiceUnavailable"},
}

// answerFor maps any error to the S3 error the handler sends.
func answerFor(err error) s3Answer {
	var ae *apiError
	if errors.As(err, &ae) {
		return s3Answer{status: ae.status, code: ae.code, message: ae.msg}
	}
	var se *sigv4.Error
	if errors.As(err, &se) {
		return s3Answer{status: se.Status, code: se.Code, message: se.Message, sig: se}
	}
	for _, s := range sentinelAnswers {
		if errors.Is(err, s.err) {
			return s3Answer{status: s.status, code: s.code, message: err.Error()}
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The client went away or took too long: not the store's failure.
		return s3Answer{status: http.StatusBadRequest, code: "RequestTimeout",
			message: "Your socket connection to the server was not read from or written to within the timeout period."}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return s3Answer{status: http.StatusBadRequest, code: "IncompleteBody",
			message: "You did not provide the number of bytes specified by the Content-Length HTTP header."}
	}
	return s3Answer{status: http.StatusInternalServerError, code: "InternalError",
		message: "We encountered an internal error. Please try again.", internal: true}
}

package sigv4

import (
	"fmt"
	"net/http"
)

// Error codes carried by *Error. They are the codes S3 answers with; a handler
// for a JSON service may translate them (for example SignatureDoesNotMatch to
// InvalidSignatureException) before answering.
const (
	// CodeMissingAuthenticationToken: the request carries neither an
	// Authorization header nor presigned query parameters. S3 treats such a
	// request as anonymous; other services refuse it.
	CodeMissingAuthenticationToken = "MissingAuthenticationToken"
	// CodeAuthorizationHeaderMalformed: the Authorization header cannot be
	// parsed, names an unexpected region, or its date disagrees with
	// X-Amz-Date.
	CodeAuthorizationHeaderMalformed = "AuthorizationHeaderMalformed"
	// CodeAuthorizationQueryParametersError: a presigned URL lacks a
	// parameter or has a malformed one (including X-Amz-Expires over a week).
	CodeAuthorizationQueryParametersError = "AuthorizationQueryParametersError"
	// CodeInvalidRequest: an authentication mechanism this package does not
	// support (SigV2, SigV4a) or a header-signed request whose body cannot be
	// hashed.
	CodeInvalidRequest = "InvalidRequest"
	// CodeInvalidArgument: both header and query authentication were sent.
	CodeInvalidArgument = "InvalidArgument"
	// CodeInvalidAccessKeyID: the access key ID is unknown.
	CodeInvalidAccessKeyID = "InvalidAccessKeyId"
	// CodeSignatureDoesNotMatch: the signature is wrong: wrong secret, or a
	// signed part of the request was changed.
	CodeSignatureDoesNotMatch = "SignatureDoesNotMatch"
	// CodeRequestTimeTooSkewed: a header-signed request's date is further than
	// Verifier.MaxSkew from the verifier's clock.
	CodeRequestTimeTooSkewed = "RequestTimeTooSkewed"
	// CodeAccessDenied: a presigned URL has expired ("Request has expired"),
	// is not valid yet, or leaves a header that must be signed unsigned.
	CodeAccessDenied = "AccessDenied"
	// CodeRequestEntityTooLarge: a request without X-Amz-Content-Sha256 has a
	// body larger than Verifier.MaxBufferedBody, so its hash cannot be checked.
	CodeRequestEntityTooLarge = "RequestEntityTooLarge"
)

// Error is an authentication failure in the shape AWS reports it.
type Error struct {
	// Code is one of the Code constants.
	Code string
	// Message is the human-readable explanation, worded as AWS words it where
	// a client may recognise it (e.g. "Request has expired").
	Message string
	// Status is the HTTP status code to answer with (400 or 403).
	Status int
	// For SignatureDoesNotMatch: what the server signed, so that a client
	// author can find where their canonical request differs (S3 returns
	// these in its error document too).
	CanonicalRequest string
	StringToSign     string
}

func (e *Error) Error() string {
	return fmt.Sprintf("sigv4: %s: %s", e.Code, e.Message)
}

func newError(code string, status int, format string, args ...any) *Error {
	return &Error{Code: code, Status: status, Message: fmt.Sprintf(format, args...)}
}

func malformedHeader(format string, args ...any) *Error {
	return newError(CodeAuthorizationHeaderMalformed, http.StatusBadRequest, format, args...)
}

func malformedQuery(format string, args ...any) *Error {
	return newError(CodeAuthorizationQueryParametersError, http.StatusBadRequest, format, args...)
}

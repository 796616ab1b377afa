// Package sigv4 verifies and creates AWS Signature Version 4 signatures, the
// authentication every AWS HTTP API uses, so that the local cloud can accept
// requests from the official AWS SDKs and the AWS CLI unmodified.
//
// A Verifier checks header-signed requests (Authorization: AWS4-HMAC-SHA256
// ...) and presigned URLs (X-Amz-Signature in the query): the canonical
// request is rebuilt exactly as the SigV4 specification says (per-segment URI
// encoding, applied once for S3 and twice for every other service; sorted,
// re-encoded query; lower-case sorted signed headers with trimmed values; the
// payload hash), the signature compared in constant time, the request date
// checked against a clock.Clock with a skew allowance and a presigned URL's
// X-Amz-Expires honoured. ScopeService reads the service name of the
// credential scope without verifying anything, so that one HTTP port can route
// S3 and IoT control-plane requests to different handlers, as LocalStack does.
//
// Sign, Presign and ChunkSigner create signatures for tests and for
// awsfota's own clients; the aws-chunked chain of a
// STREAMING-AWS4-HMAC-SHA256-PAYLOAD body is verified with Auth.ChunkSigner.
//
// Failures are *Error values whose Code is the error code AWS answers with
// (S3's spelling; see the Code constants) and whose Status is the HTTP status
// code, so a handler can answer in AWS's shape without parsing text.
//
// The package imports only the standard library and awsfota's clock. Like
// every cloud/* package it must never import device/* or sim/.
package sigv4

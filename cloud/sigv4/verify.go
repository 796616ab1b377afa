package sigv4

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/awsfota/awsfota/clock"
)

// Credentials are an access key pair.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
}

// Defaults applied to a Verifier's zero fields.
const (
	DefaultMaxSkew         = 15 * time.Minute
	DefaultMaxBufferedBody = 8 << 20
)

// Verifier checks SigV4 signatures. Its fields are read, never written, by
// Verify, so one Verifier may serve concurrent requests.
type Verifier struct {
	// Region every credential scope must name (e.g. "us-east-1").
	Region string
	// Lookup returns the secret of an access key ID; ok is false for an
	// unknown ID. It must be safe for concurrent use.
	Lookup func(accessKeyID string) (secret string, ok bool)
	// Clock tells the time for skew and expiry checks; nil means clock.Real().
	Clock clock.Clock
	// MaxSkew is how far a header-signed request's date may be from the
	// clock; zero means DefaultMaxSkew (15 minutes, as AWS).
	MaxSkew time.Duration
	// MaxBufferedBody bounds the body Verify reads into memory to hash it
	// when a request lacks X-Amz-Content-Sha256 (the SDKs omit it for
	// services other than S3); zero means DefaultMaxBufferedBody.
	MaxBufferedBody int64
}

// Auth describes a request whose signature verified.
type Auth struct {
	AccessKeyID string
	Region      string
	Service     string
	// Date is the signing time (X-Amz-Date).
	Date time.Time
	// Presigned is true for query (presigned URL) authentication.
	Presigned bool
	// Expires is when a presigned URL stops being valid (zero otherwise).
	Expires time.Time
	// PayloadHash is the payload hash that was signed: the value of
	// X-Amz-Content-Sha256 (a hex SHA-256, UNSIGNED-PAYLOAD or one of the
	// STREAMING-* values), or the hash Verify computed of a buffered body.
	// When it is a hex hash taken from the header, the caller must check the
	// body against it while reading.
	PayloadHash string
	// SeedSignature is the request's signature, the first link of an
	// aws-chunked signature chain.
	SeedSignature string
	// SigningKey is the derived key for Date, Region and Service.
	SigningKey []byte
}

// Scope returns the credential scope "YYYYMMDD/region/service/aws4_request".
func (a *Auth) Scope() string {
	return credential{Date: a.Date.UTC().Format(shortDateForm), Region: a.Region, Service: a.Service}.scope()
}

const (
	hdrAuthorization = "Authorization"
	hdrAmzDate       = "X-Amz-Date"
	hdrContentSHA256 = "X-Amz-Content-Sha256"

	qAlgorithm     = "X-Amz-Algorithm"
	qCredential    = "X-Amz-Credential"
	qDate          = "X-Amz-Date"
	qExpires       = "X-Amz-Expires"
	qSignedHeaders = "X-Amz-SignedHeaders"
	qSignature     = "X-Amz-Signature"
	qContentSHA256 = "X-Amz-Content-Sha256"
)

// ScopeService returns the service name of the request's credential scope,
// from the Authorization header or the X-Amz-Credential query parameter,
// without verifying anything. It is meant for routing: the handler it routes
// to must still call Verify. ok is false when the request names no parsable
// credential (anonymous requests included).
func ScopeService(r *http.Request) (service string, ok bool) {
	if h := r.Header.Get(hdrAuthorization); h != "" {
		_, rest, found := strings.Cut(h, "Credential=")
		if !found {
			return "", false
		}
		rest, _, _ = strings.Cut(rest, ",")
		c, ok := parseCredential(strings.TrimSpace(rest))
		return c.Service, ok
	}
	if r.URL == nil {
		return "", false
	}
	for _, p := range parseQuery(r.URL.RawQuery) {
		if p.key == qCredential {
			c, ok := parseCredential(p.value)
			return c.Service, ok
		}
	}
	return "", false
}

func (v *Verifier) now() time.Time {
	if v.Clock == nil {
		return time.Now()
	}
	return v.Clock.Now()
}

func (v *Verifier) maxSkew() time.Duration {
	if v.MaxSkew > 0 {
		return v.MaxSkew
	}
	return DefaultMaxSkew
}

// Verify checks the SigV4 signature of r, sent either in the Authorization
// header or as a presigned URL. Every failure is a *Error. When r has no
// X-Amz-Content-Sha256 header and is not a presigned S3 request, Verify reads
// the body (at most MaxBufferedBody bytes) to hash it and replaces r.Body
// with the buffered copy.
func (v *Verifier) Verify(r *http.Request) (*Auth, error) {
	header := r.Header.Get(hdrAuthorization)
	params := parseQuery(r.URL.RawQuery)
	presigned := false
	for _, p := range params {
		switch p.key {
		case qAlgorithm, qCredential, qSignature:
			presigned = true
		case "AWSAccessKeyId":
			if header == "" {
				return nil, newError(CodeInvalidRequest, http.StatusBadRequest,
					"Signature Version 2 is not supported; sign the URL with %s.", Algorithm)
			}
		}
	}
	switch {
	case header == "" && !presigned:
		return nil, newError(CodeMissingAuthenticationToken, http.StatusForbidden, "Request is missing Authentication Token")
	case header != "" && presigned:
		return nil, newError(CodeInvalidArgument, http.StatusBadRequest,
			"Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified")
	case presigned:
		return v.verifyQuery(r, params)
	default:
		return v.verifyHeader(r, header, params)
	}
}

func (v *Verifier) verifyHeader(r *http.Request, header string, params []queryParam) (*Auth, error) {
	a, perr := parseAuthorization(header)
	if perr != nil {
		return nil, perr
	}
	t, amzDate, ok := requestDate(r)
	if !ok {
		return nil, newError(CodeAccessDenied, http.StatusForbidden, "AWS authentication requires a valid Date or x-amz-date header")
	}
	if err := v.checkScope(a.Credential, t, malformedHeader); err != nil {
		return nil, err
	}
	secret, err := v.lookup(a.Credential.AccessKeyID)
	if err != nil {
		return nil, err
	}
	if now := v.now(); t.Before(now.Add(-v.maxSkew())) || t.After(now.Add(v.maxSkew())) {
		return nil, newError(CodeRequestTimeTooSkewed, http.StatusForbidden,
			"The difference between the request time (%s) and the current time (%s) is too large.",
			t.UTC().Format(amzDateFormat), now.UTC().Format(amzDateFormat))
	}
	if err := requireSigned(r, a.SignedHeaders); err != nil {
		return nil, err
	}
	payload := r.Header.Get(hdrContentSHA256)
	if payload != "" {
		if !validPayloadHash(payload) {
			return nil, newError(CodeInvalidArgument, http.StatusBadRequest,
				"x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value.")
		}
	} else if payload, err = v.hashBody(r); err != nil {
		return nil, err
	}
	auth := &Auth{
		AccessKeyID: a.Credential.AccessKeyID, Region: a.Credential.Region, Service: a.Credential.Service,
		Date: t, PayloadHash: payload, SeedSignature: a.Signature,
		SigningKey: SigningKey(secret, t, a.Credential.Region, a.Credential.Service),
	}
	if err := check(r, auth, amzDate, a, canonicalQuery(params, "")); err != nil {
		return nil, err
	}
	return auth, nil
}

func (v *Verifier) verifyQuery(r *http.Request, params []queryParam) (*Auth, error) {
	values := map[string]string{}
	for _, p := range params {
		switch p.key {
		case qAlgorithm, qCredential, qDate, qExpires, qSignedHeaders, qSignature, qContentSHA256:
			if _, dup := values[p.key]; dup {
				return nil, malformedQuery("The query parameter %s appears more than once.", p.key)
			}
			values[p.key] = p.value
		}
	}
	for _, k := range []string{qAlgorithm, qCredential, qDate, qExpires, qSignedHeaders, qSignature} {
		if _, ok := values[k]; !ok {
			return nil, malformedQuery("Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.")
		}
	}
	if values[qAlgorithm] != Algorithm {
		return nil, malformedQuery("X-Amz-Algorithm only supports %q", Algorithm)
	}
	c, ok := parseCredential(values[qCredential])
	if !ok {
		return nil, malformedQuery("Error parsing the X-Amz-Credential parameter; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".")
	}
	t, err := time.Parse(amzDateFormat, values[qDate])
	if err != nil {
		return nil, malformedQuery("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
	}
	secs, err := strconv.ParseInt(values[qExpires], 10, 64)
	switch {
	case err != nil:
		return nil, malformedQuery("X-Amz-Expires should be a number")
	case secs < 0:
		return nil, malformedQuery("X-Amz-Expires must be non-negative")
	case secs > int64(maxPresignLife/time.Second):
		return nil, malformedQuery("X-Amz-Expires must be less than a week (in seconds) that is 604800")
	}
	signed, ok := parseSignedHeaders(values[qSignedHeaders])
	if !ok {
		return nil, malformedQuery("X-Amz-SignedHeaders must be a non-empty list of lower-case header names separated by ';'.")
	}
	if !isHexSignature(values[qSignature]) {
		return nil, malformedQuery("X-Amz-Signature must be 64 lower-case hex digits.")
	}
	if err := v.checkScope(c, t, malformedQuery); err != nil {
		return nil, err
	}
	secret, err := v.lookup(c.AccessKeyID)
	if err != nil {
		return nil, err
	}
	expires := t.Add(time.Duration(secs) * time.Second)
	now := v.now()
	if now.After(expires) {
		return nil, newError(CodeAccessDenied, http.StatusForbidden, "Request has expired")
	}
	if t.After(now.Add(v.maxSkew())) {
		return nil, newError(CodeAccessDenied, http.StatusForbidden, "Request is not valid yet")
	}
	payload := r.Header.Get(hdrContentSHA256)
	if payload == "" {
		payload = values[qContentSHA256]
	}
	if payload == "" && c.Service == "s3" {
		payload = UnsignedPayload
	}
	if payload == "" {
		if payload, err = v.hashBody(r); err != nil {
			return nil, err
		}
	} else if !validPayloadHash(payload) {
		return nil, malformedQuery("X-Amz-Content-Sha256 must be UNSIGNED-PAYLOAD or a valid sha256 value.")
	}
	auth := &Auth{
		AccessKeyID: c.AccessKeyID, Region: c.Region, Service: c.Service,
		Date: t, Presigned: true, Expires: expires, PayloadHash: payload,
		SeedSignature: values[qSignature],
		SigningKey:    SigningKey(secret, t, c.Region, c.Service),
	}
	a := authorization{Credential: c, SignedHeaders: signed, Signature: values[qSignature]}
	if err := check(r, auth, values[qDate], a, canonicalQuery(params, qSignature)); err != nil {
		return nil, err
	}
	return auth, nil
}

// requestDate returns the signing time of a header-signed request: X-Amz-Date,
// or else the Date header, and its X-Amz-Date form for the string to sign.
func requestDate(r *http.Request) (time.Time, string, bool) {
	if v := r.Header.Get(hdrAmzDate); v != "" {
		t, err := time.Parse(amzDateFormat, v)
		return t, v, err == nil
	}
	if v := r.Header.Get("Date"); v != "" {
		t, err := http.ParseTime(v)
		return t, t.UTC().Format(amzDateFormat), err == nil
	}
	return time.Time{}, "", false
}

// checkScope checks the scope's date against the request date and its region
// against the verifier's; bad builds the error for the mechanism in use.
func (v *Verifier) checkScope(c credential, t time.Time, bad func(string, ...any) *Error) error {
	if c.Date != t.UTC().Format(shortDateForm) {
		return bad("Invalid credential date %q. Date is not the same as X-Amz-Date.", c.Date)
	}
	if c.Region != v.Region {
		return bad("The authorization header is malformed; the region '%s' is wrong; expecting '%s'", clip(c.Region), v.Region)
	}
	return nil
}

func (v *Verifier) lookup(id string) (string, error) {
	if v.Lookup != nil {
		if secret, ok := v.Lookup(id); ok {
			return secret, nil
		}
	}
	return "", newError(CodeInvalidAccessKeyID, http.StatusForbidden,
		"The AWS Access Key Id you provided does not exist in our records.")
}

// requireSigned refuses a header-signed request that leaves host or any
// x-amz-* header it carries out of the signature: those headers change what
// the request means (payload hash, checksums, content length).
func requireSigned(r *http.Request, signed []string) error {
	set := make(map[string]bool, len(signed))
	for _, h := range signed {
		set[h] = true
	}
	if !set["host"] {
		return malformedHeader("The authorization header is malformed; SignedHeaders must include host.")
	}
	var missing []string
	for k := range r.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-amz-") && !set[lk] {
			missing = append(missing, lk)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return newError(CodeAccessDenied, http.StatusForbidden,
			"There were headers present in the request which were not signed: %s", clip(strings.Join(missing, ", ")))
	}
	return nil
}

func validPayloadHash(s string) bool {
	switch s {
	case UnsignedPayload, StreamingPayload, StreamingPayloadTrailer, StreamingUnsignedPayloadTrailer:
		return true
	}
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// hashBody reads r's body into memory (bounded), hashes it and puts the bytes
// back so the handler can read them.
func (v *Verifier) hashBody(r *http.Request) (string, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return EmptyPayloadHash, nil
	}
	limit := v.MaxBufferedBody
	if limit <= 0 {
		limit = DefaultMaxBufferedBody
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return "", newError(CodeInvalidRequest, http.StatusBadRequest, "reading the request body to check its signature: %v", err)
	}
	if int64(len(data)) > limit {
		return "", newError(CodeRequestEntityTooLarge, http.StatusRequestEntityTooLarge,
			"The request body is larger than %d bytes; send X-Amz-Content-Sha256 with larger bodies.", limit)
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{bytes.NewReader(data), r.Body}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// check rebuilds the canonical request for each canonical URI candidate and
// compares the signature in constant time.
func check(r *http.Request, auth *Auth, amzDate string, a authorization, query string) error {
	scope := a.Credential.scope()
	mismatch := newError(CodeSignatureDoesNotMatch, http.StatusForbidden,
		"The request signature we calculated does not match the signature you provided. Check your key and signing method.")
	for _, uri := range canonicalURIs(r.URL, a.Credential.Service) {
		canonical := canonicalRequest(r, uri, query, a.SignedHeaders, auth.PayloadHash)
		sts := stringToSign(amzDate, scope, canonical)
		if hmac.Equal([]byte(signature(auth.SigningKey, sts)), []byte(a.Signature)) {
			return nil
		}
		if mismatch.CanonicalRequest == "" {
			mismatch.CanonicalRequest, mismatch.StringToSign = canonical, sts
		}
	}
	return mismatch
}

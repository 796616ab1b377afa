package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Algorithm is the only signing algorithm this package supports.
const Algorithm = "AWS4-HMAC-SHA256"

// Payload hash values that stand in for the hex SHA-256 of the body.
const (
	// UnsignedPayload: the body is not covered by the signature.
	UnsignedPayload = "UNSIGNED-PAYLOAD"
	// StreamingPayload: an aws-chunked body whose chunks are signed.
	StreamingPayload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	// StreamingPayloadTrailer: as StreamingPayload, with signed trailers.
	StreamingPayloadTrailer = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	// StreamingUnsignedPayloadTrailer: an aws-chunked body, unsigned, with
	// trailing checksums; what aws-sdk-go-v2 sends for PutObject over HTTPS.
	StreamingUnsignedPayloadTrailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
	// EmptyPayloadHash is the hex SHA-256 of no bytes.
	EmptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

const (
	amzDateFormat  = "20060102T150405Z"
	shortDateForm  = "20060102"
	scopeTerm      = "aws4_request"
	maxPresignLife = 7 * 24 * time.Hour
	// Limits that keep a hostile Authorization header cheap to reject.
	maxSignedHeaders = 256
	maxHeaderName    = 256
)

// credential is the parsed "AKID/20150830/us-east-1/service/aws4_request".
type credential struct {
	AccessKeyID, Date, Region, Service string
}

func (c credential) scope() string {
	return c.Date + "/" + c.Region + "/" + c.Service + "/" + scopeTerm
}

// authorization is a parsed Authorization header or the equivalent presigned
// query parameters.
type authorization struct {
	Credential    credential
	SignedHeaders []string
	Signature     string
}

// parseCredential parses the Credential value of a header or presigned URL.
func parseCredential(s string) (credential, bool) {
	parts := strings.Split(s, "/")
	if len(parts) != 5 {
		return credential{}, false
	}
	c := credential{AccessKeyID: parts[0], Date: parts[1], Region: parts[2], Service: parts[3]}
	if c.AccessKeyID == "" || c.Region == "" || c.Service == "" || parts[4] != scopeTerm {
		return credential{}, false
	}
	if _, err := time.Parse(shortDateForm, c.Date); err != nil || len(c.Date) != 8 {
		return credential{}, false
	}
	return c, true
}

func parseSignedHeaders(s string) ([]string, bool) {
	if s == "" {
		return nil, false
	}
	names := strings.Split(s, ";")
	if len(names) > maxSignedHeaders {
		return nil, false
	}
	for _, n := range names {
		if n == "" || len(n) > maxHeaderName {
			return nil, false
		}
		for i := 0; i < len(n); i++ {
			c := n[i]
			if !isTokenChar(c) || ('A' <= c && c <= 'Z') {
				return nil, false
			}
		}
	}
	return names, true
}

// isTokenChar reports whether c may appear in an HTTP header name (RFC 9110 tchar).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isHexSignature(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// parseAuthorization parses an Authorization header value of the form
//
//	AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=host;x-amz-date, Signature=5d67...
//
// It is a pure function; every failure is a *Error.
func parseAuthorization(h string) (authorization, *Error) {
	alg, rest, ok := strings.Cut(strings.TrimLeft(h, " "), " ")
	if !ok || alg != Algorithm {
		switch {
		case alg == "AWS":
			return authorization{}, newError(CodeInvalidRequest, http.StatusBadRequest,
				"The authorization mechanism you have provided is not supported. Please use %s.", Algorithm)
		case strings.HasPrefix(alg, "AWS4-ECDSA"):
			return authorization{}, newError(CodeInvalidRequest, http.StatusBadRequest,
				"SigV4a (%s) is not supported. Please use %s.", alg, Algorithm)
		}
		return authorization{}, malformedHeader("The authorization header is malformed; the authorization header requires the algorithm %s.", Algorithm)
	}
	var a authorization
	var seen [3]bool
	for _, field := range strings.Split(rest, ",") {
		field = strings.TrimSpace(field)
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			return authorization{}, malformedHeader("The authorization header is malformed; the component %q is not of the form Key=Value.", clip(field))
		}
		var i int
		switch k {
		case "Credential":
			c, ok := parseCredential(v)
			if !ok {
				return authorization{}, malformedHeader("The authorization header is malformed; the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".")
			}
			a.Credential, i = c, 0
		case "SignedHeaders":
			names, ok := parseSignedHeaders(v)
			if !ok {
				return authorization{}, malformedHeader("The authorization header is malformed; SignedHeaders must be a non-empty list of lower-case header names separated by ';'.")
			}
			a.SignedHeaders, i = names, 1
		case "Signature":
			if !isHexSignature(v) {
				return authorization{}, malformedHeader("The authorization header is malformed; Signature must be 64 lower-case hex digits.")
			}
			a.Signature, i = v, 2
		default:
			return authorization{}, malformedHeader("The authorization header is malformed; unexpected component %q.", clip(k))
		}
		if seen[i] {
			return authorization{}, malformedHeader("The authorization header is malformed; component %s appears twice.", k)
		}
		seen[i] = true
	}
	for i, name := range []string{"Credential", "SignedHeaders", "Signature"} {
		if !seen[i] {
			return authorization{}, malformedHeader("The authorization header is malformed; it lacks %s.", name)
		}
	}
	return a, nil
}

// clip shortens attacker-supplied text before it is echoed in a message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// queryParam is one decoded key=value pair of a query string, in wire order.
type queryParam struct{ key, value string }

// parseQuery splits a raw query into decoded pairs. Unlike url.ParseQuery it
// never fails: an invalid escape is kept literally (the signature will then
// simply not match) and ';' is an ordinary character.
func parseQuery(raw string) []queryParam {
	if raw == "" {
		return nil
	}
	var out []queryParam
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		out = append(out, queryParam{unescapeQuery(k), unescapeQuery(v)})
	}
	return out
}

func unescapeQuery(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// uriEncode escapes s as SigV4 requires: every byte except the unreserved
// characters A-Z a-z 0-9 - . _ ~ becomes %XY (upper-case hex); '/' is kept
// when keepSlash.
func uriEncode(s string, keepSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) || (c == '/' && keepSlash) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

func isUnreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// canonicalQuery encodes params sorted by encoded key then encoded value,
// leaving out the key skip (X-Amz-Signature of a presigned URL).
func canonicalQuery(params []queryParam, skip string) string {
	enc := make([]queryParam, 0, len(params))
	for _, p := range params {
		if skip != "" && p.key == skip {
			continue
		}
		enc = append(enc, queryParam{uriEncode(p.key, false), uriEncode(p.value, false)})
	}
	sort.Slice(enc, func(i, j int) bool {
		if enc[i].key != enc[j].key {
			return enc[i].key < enc[j].key
		}
		return enc[i].value < enc[j].value
	})
	var b strings.Builder
	for i, p := range enc {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.key)
		b.WriteByte('=')
		b.WriteString(p.value)
	}
	return b.String()
}

// canonicalURIs returns the canonical URI of u for service, most standard
// form first. For S3 the decoded path is encoded once per segment, never
// normalised; a second candidate is the path exactly as sent, which is what
// aws-sdk-go-v2 signs for S3 (it disables its own escaping there). For every
// other service the escaped path, with dot segments and repeated slashes
// removed, is encoded a second time; the second candidate skips the
// normalisation, as the Go SDK does.
func canonicalURIs(u *url.URL, service string) []string {
	escaped := u.EscapedPath()
	if escaped == "" {
		escaped = "/"
	}
	var first, second string
	if service == "s3" {
		p := u.Path
		if p == "" {
			p = "/"
		}
		first, second = uriEncode(p, true), escaped
	} else {
		first, second = uriEncode(normalizePath(escaped), true), uriEncode(escaped, true)
	}
	if first == second {
		return []string{first}
	}
	return []string{first, second}
}

// normalizePath removes empty, "." and ".." segments as RFC 3986 describes,
// keeping the leading slash and a trailing one.
func normalizePath(p string) string {
	if p == "" || p == "/" {
		return "/"
	}
	var segs []string
	parts := strings.Split(p, "/")
	for _, s := range parts {
		switch s {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, s)
		}
	}
	out := "/" + strings.Join(segs, "/")
	last := parts[len(parts)-1]
	if len(segs) > 0 && (last == "" || last == "." || last == "..") {
		out += "/"
	}
	return out
}

// trimAll trims a header value and collapses runs of spaces into one, as the
// SigV4 "Trimall" step (and the AWS SDKs) do.
func trimAll(v string) string {
	v = strings.TrimSpace(v)
	if !strings.Contains(v, "  ") {
		return v
	}
	var b strings.Builder
	space := false
	for i := 0; i < len(v); i++ {
		if v[i] == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// headerValue returns the canonical value of the lower-case header name on a
// request as a server received it (or as a client is about to send it).
func headerValue(r *http.Request, name string) string {
	switch name {
	case "host":
		if r.Host != "" {
			return trimAll(r.Host)
		}
		if r.URL != nil {
			return trimAll(r.URL.Host)
		}
		return ""
	case "content-length":
		if v := r.Header.Get("Content-Length"); v != "" {
			return trimAll(v)
		}
		if r.ContentLength >= 0 {
			return strconv.FormatInt(r.ContentLength, 10)
		}
		return ""
	}
	values := r.Header.Values(name)
	if len(values) == 1 {
		return trimAll(values[0])
	}
	trimmed := make([]string, len(values))
	for i, v := range values {
		trimmed[i] = trimAll(v)
	}
	return strings.Join(trimmed, ",")
}

// canonicalRequest assembles the six lines of the SigV4 canonical request.
func canonicalRequest(r *http.Request, uri, query string, signed []string, payloadHash string) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(uri)
	b.WriteByte('\n')
	b.WriteString(query)
	b.WriteByte('\n')
	for _, h := range signed {
		b.WriteString(h)
		b.WriteByte(':')
		b.WriteString(headerValue(r, h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String()
}

func stringToSign(amzDate, scope, canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return Algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// SigningKey derives the SigV4 signing key for a secret, a day (UTC), a
// region and a service.
func SigningKey(secret string, day time.Time, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), day.UTC().Format(shortDateForm))
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, scopeTerm)
}

func signature(key []byte, toSign string) string {
	return hex.EncodeToString(hmacSHA256(key, toSign))
}

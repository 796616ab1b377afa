package sigv4

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ignoredHeaders are never signed: proxies and transports rewrite them (the
// same list as aws-sdk-go-v2).
var ignoredHeaders = map[string]bool{
	"authorization":     true,
	"user-agent":        true,
	"x-amzn-trace-id":   true,
	"expect":            true,
	"transfer-encoding": true,
}

// Sign signs r in place with header authentication, as aws-sdk-go-v2 would:
// it sets X-Amz-Date (and, for S3, X-Amz-Content-Sha256) and Authorization,
// signing host, Content-Length when positive and every other header present
// except User-Agent, Expect, Transfer-Encoding and X-Amzn-Trace-Id. A
// payloadHash of "" means hash the body: it is read through r.GetBody when
// set, otherwise read into memory and put back. Use UnsignedPayload or a
// STREAMING-* value to leave the body out.
func Sign(r *http.Request, creds Credentials, region, service string, now time.Time, payloadHash string) error {
	if r.URL == nil {
		return errors.New("sigv4: sign: request has no URL")
	}
	if r.Header == nil {
		r.Header = http.Header{}
	}
	if payloadHash == "" {
		h, err := hashRequestBody(r)
		if err != nil {
			return fmt.Errorf("sigv4: sign: hashing the body: %w", err)
		}
		payloadHash = h
	}
	now = now.UTC()
	amzDate := now.Format(amzDateFormat)
	r.Header.Del(hdrAuthorization)
	r.Header.Set(hdrAmzDate, amzDate)
	if service == "s3" {
		r.Header.Set(hdrContentSHA256, payloadHash)
	}

	signed := []string{"host"}
	if r.ContentLength > 0 {
		signed = append(signed, "content-length")
	}
	for k := range r.Header {
		lk := strings.ToLower(k)
		if ignoredHeaders[lk] || lk == "host" || lk == "content-length" {
			continue
		}
		signed = append(signed, lk)
	}
	sort.Strings(signed)
	signed = dedupe(signed)

	c := credential{AccessKeyID: creds.AccessKeyID, Date: now.Format(shortDateForm), Region: region, Service: service}
	canonical := canonicalRequest(r, canonicalURIs(r.URL, service)[0], canonicalQuery(parseQuery(r.URL.RawQuery), ""), signed, payloadHash)
	sig := signature(SigningKey(creds.SecretAccessKey, now, region, service), stringToSign(amzDate, c.scope(), canonical))
	r.Header.Set(hdrAuthorization, fmt.Sprintf("%s Credential=%s/%s, SignedHeaders=%s, Signature=%s",
		Algorithm, creds.AccessKeyID, c.scope(), strings.Join(signed, ";"), sig))
	return nil
}

func dedupe(sorted []string) []string {
	out := sorted[:0]
	for i, s := range sorted {
		if i == 0 || s != sorted[i-1] {
			out = append(out, s)
		}
	}
	return out
}

func hashRequestBody(r *http.Request) (string, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return EmptyPayloadHash, nil
	}
	h := sha256.New()
	if r.GetBody != nil {
		b, err := r.GetBody()
		if err != nil {
			return "", err
		}
		defer b.Close()
		if _, err := io.Copy(h, b); err != nil {
			return "", err
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return "", err
	}
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(data))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Presign returns rawURL with SigV4 query authentication added, valid for
// expires (at most 7 days, whole seconds) from now, for a request with the
// given method and no headers other than Host. For S3 the payload is
// UNSIGNED-PAYLOAD and the path is re-escaped in S3's canonical form; for
// other services the payload is the empty body.
func Presign(creds Credentials, region, service, method, rawURL string, now time.Time, expires time.Duration) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("sigv4: presign: %w", err)
	}
	if u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("sigv4: presign: URL %q needs a scheme and a host", rawURL)
	}
	if expires < time.Second || expires > maxPresignLife {
		return "", fmt.Errorf("sigv4: presign: expiry %v must be between 1s and 7 days", expires)
	}
	params := parseQuery(u.RawQuery)
	for _, p := range params {
		switch p.key {
		case qAlgorithm, qCredential, qDate, qExpires, qSignedHeaders, qSignature:
			return "", fmt.Errorf("sigv4: presign: URL %q is already signed (has %s)", rawURL, p.key)
		}
	}
	if service == "s3" {
		u.RawPath = uriEncode(u.Path, true)
	}
	now = now.UTC()
	amzDate := now.Format(amzDateFormat)
	c := credential{AccessKeyID: creds.AccessKeyID, Date: now.Format(shortDateForm), Region: region, Service: service}
	params = append(params,
		queryParam{qAlgorithm, Algorithm},
		queryParam{qCredential, creds.AccessKeyID + "/" + c.scope()},
		queryParam{qDate, amzDate},
		queryParam{qExpires, strconv.FormatInt(int64(expires/time.Second), 10)},
		queryParam{qSignedHeaders, "host"},
	)
	payload := EmptyPayloadHash
	if service == "s3" {
		payload = UnsignedPayload
	}
	query := canonicalQuery(params, "")
	req := &http.Request{Method: method, URL: u, Host: u.Host, Header: http.Header{}}
	canonical := canonicalRequest(req, canonicalURIs(u, service)[0], query, []string{"host"}, payload)
	sig := signature(SigningKey(creds.SecretAccessKey, now, region, service), stringToSign(amzDate, c.scope(), canonical))
	u.RawQuery = query + "&" + qSignature + "=" + sig
	return u.String(), nil
}

// ChunkSigner computes the chained signatures of an aws-chunked body sent
// with X-Amz-Content-Sha256 STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER).
// Each chunk's signature covers the previous signature, so chunks can be
// neither reordered nor dropped. A ChunkSigner is not safe for concurrent use.
type ChunkSigner struct {
	key     []byte
	amzDate string
	scope   string
	prev    string
}

// ChunkSigner returns the signer that verifies the chunks of a's request body,
// seeded with the request signature.
func (a *Auth) ChunkSigner() *ChunkSigner {
	return &ChunkSigner{key: a.SigningKey, amzDate: a.Date.UTC().Format(amzDateFormat), scope: a.Scope(), prev: a.SeedSignature}
}

// NewChunkSigner returns a signer for a client sending a signed aws-chunked
// body: t and seedSignature are the X-Amz-Date and the Signature of the
// request's Authorization header.
func NewChunkSigner(creds Credentials, region, service string, t time.Time, seedSignature string) *ChunkSigner {
	t = t.UTC()
	c := credential{Date: t.Format(shortDateForm), Region: region, Service: service}
	return &ChunkSigner{key: SigningKey(creds.SecretAccessKey, t, region, service), amzDate: t.Format(amzDateFormat), scope: c.scope(), prev: seedSignature}
}

// Next returns the signature of the next chunk, given the SHA-256 of its data
// (the final, empty chunk included), and advances the chain.
func (c *ChunkSigner) Next(chunkSHA256 [32]byte) string {
	sts := "AWS4-HMAC-SHA256-PAYLOAD\n" + c.amzDate + "\n" + c.scope + "\n" + c.prev + "\n" +
		EmptyPayloadHash + "\n" + hex.EncodeToString(chunkSHA256[:])
	c.prev = signature(c.key, sts)
	return c.prev
}

// Trailer returns the x-amz-trailer-signature of the trailing headers, given
// the SHA-256 of their canonical form: each "name:value\n", in the order
// sent. It follows the final chunk's signature.
func (c *ChunkSigner) Trailer(trailerSHA256 [32]byte) string {
	sts := "AWS4-HMAC-SHA256-TRAILER\n" + c.amzDate + "\n" + c.scope + "\n" + c.prev + "\n" +
		hex.EncodeToString(trailerSHA256[:])
	c.prev = signature(c.key, sts)
	return c.prev
}

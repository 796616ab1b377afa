package jobsvc

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Presigned-URL placeholders a job document may hold; the service replaces
// each with a fresh presigned GET URL of the object every time it delivers
// the document.
const (
	placeholderV1 = "${aws:iot:s3-presigned-url:"
	placeholderV2 = "${aws:iot:s3-presigned-url-v2:"
)

// DefaultPresignExpiry is presignedUrlConfig.expiresInSec's default.
const DefaultPresignExpiry = 3600 * time.Second

// Limits of presignedUrlConfig.expiresInSec.
const (
	MinPresignSeconds = 60
	MaxPresignSeconds = 3600
)

// Presigner makes a presigned GET URL for an object, valid for expires. The
// local cloud's points at its own object store. It must be safe for
// concurrent use and must not call back into the Service.
type Presigner func(bucket, key string, expires time.Duration) (string, error)

// ParseS3URL returns the bucket and key an S3 object URL names, in any of
// the forms AWS accepts in documentSource and presigned-URL placeholders:
// path style (https://s3.amazonaws.com/BUCKET/KEY,
// https://s3.REGION.amazonaws.com/BUCKET/KEY, https://s3-REGION...), virtual
// host style (https://BUCKET.s3.amazonaws.com/KEY,
// https://BUCKET.s3.REGION.amazonaws.com/KEY), and, for the local cloud, any
// other http(s) URL taken as path style (http://127.0.0.1:4566/BUCKET/KEY).
func ParseS3URL(raw string) (bucket, key string, err error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", "", fmt.Errorf("%q is not an S3 object URL: use https://s3.REGION.amazonaws.com/BUCKET/KEY", raw)
	}
	host := strings.ToLower(u.Hostname())
	path := strings.TrimPrefix(u.Path, "/")
	if b, rest, ok := strings.Cut(host, ".s3"); ok && strings.HasSuffix(host, ".amazonaws.com") && b != "" &&
		(strings.HasPrefix(rest, ".") || strings.HasPrefix(rest, "-")) {
		bucket, key = b, path
	} else {
		bucket, key, _ = strings.Cut(path, "/")
	}
	if bucket == "" || key == "" {
		return "", "", fmt.Errorf("%q names no object: use https://s3.REGION.amazonaws.com/BUCKET/KEY", raw)
	}
	return bucket, key, nil
}

// placeholder is one presigned-URL placeholder found in a document.
type placeholder struct {
	start, end  int // byte range of ${...}
	bucket, key string
}

// findPlaceholders returns the document's presigned-URL placeholders, in
// order; an error names the first malformed one.
func findPlaceholders(doc []byte) ([]placeholder, error) {
	var out []placeholder
	for off := 0; ; {
		i := bytes.Index(doc[off:], []byte("${aws:iot:s3-presigned-url"))
		if i < 0 {
			return out, nil
		}
		start := off + i
		rest := doc[start:]
		var body []byte
		switch {
		case bytes.HasPrefix(rest, []byte(placeholderV2)):
			body = rest[len(placeholderV2):]
		case bytes.HasPrefix(rest, []byte(placeholderV1)):
			body = rest[len(placeholderV1):]
		default:
			return nil, fmt.Errorf("unknown placeholder at byte %d: use ${aws:iot:s3-presigned-url:URL} or ${aws:iot:s3-presigned-url-v2:URL}", start)
		}
		j := bytes.IndexByte(body, '}')
		if j < 0 {
			return nil, fmt.Errorf("the presigned-URL placeholder at byte %d has no closing }", start)
		}
		b, k, err := ParseS3URL(string(body[:j]))
		if err != nil {
			return nil, fmt.Errorf("the presigned-URL placeholder at byte %d: %w", start, err)
		}
		end := start + (len(rest) - len(body)) + j + 1
		out = append(out, placeholder{start: start, end: end, bucket: b, key: k})
		off = end
	}
}

// errNoPresigner: a document with placeholders, and no way to sign.
var errNoPresigner = errors.New("the service has no presigner for the document's presigned-URL placeholders")

// substitutePresigned returns doc with every presigned-URL placeholder
// replaced by a URL from presign (valid for expires). A document without
// placeholders is returned as it is.
func substitutePresigned(doc []byte, presign Presigner, expires time.Duration) ([]byte, error) {
	ph, err := findPlaceholders(doc)
	if err != nil || len(ph) == 0 {
		return doc, err
	}
	if presign == nil {
		return doc, errNoPresigner
	}
	var b bytes.Buffer
	last := 0
	for _, p := range ph {
		u, err := presign(p.bucket, p.key, expires)
		if err != nil {
			return doc, fmt.Errorf("presigning s3://%s/%s: %w", p.bucket, p.key, err)
		}
		b.Write(doc[last:p.start])
		b.WriteString(jsonStringSafe(u))
		last = p.end
	}
	b.Write(doc[last:])
	return b.Bytes(), nil
}

// jsonStringSafe escapes what a URL could hold that a JSON string cannot.
func jsonStringSafe(s string) string {
	if !strings.ContainsAny(s, "\"\\") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// presignExpiry is how long the job's presigned URLs live.
func (j *Job) presignExpiry() time.Duration {
	if j.PresignedURL != nil && j.PresignedURL.ExpiresInSec > 0 {
		return time.Duration(j.PresignedURL.ExpiresInSec) * time.Second
	}
	return DefaultPresignExpiry
}

package objstore

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestSDKPresignedGet fetches a URL made by the SDK's presign client with
// plain net/http, then lets the fake clock pass its expiry.
func TestSDKPresignedGet(t *testing.T) {
	e := newEnv(t, true)
	if err := e.store.CreateBucket("fw-images"); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(3, 100_000)
	mustPut(t, e.store, "fw-images", "app/v2 final.bin", data)

	pc := s3.NewPresignClient(e.client(testCreds))
	req, err := pc.PresignGetObject(ctx(t), &s3.GetObjectInput{Bucket: aws.String("fw-images"), Key: aws.String("app/v2 final.bin")},
		s3.WithPresignExpires(10*time.Minute))
	if err != nil {
		t.Fatalf("PresignGetObject: %v", err)
	}
	if req.Method != http.MethodGet || !strings.Contains(req.URL, "X-Amz-Expires=600") {
		t.Fatalf("presigned request %s %s", req.Method, req.URL)
	}
	resp, body := e.httpDo(http.MethodGet, req.URL, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("presigned GET: %s, %d bytes: %.200s", resp.Status, len(body), body)
	}
	resp, body = e.httpDo(http.MethodGet, req.URL, map[string]string{"Range": "bytes=10-19"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[10:20]) {
		t.Fatalf("presigned ranged GET: %s", resp.Status)
	}

	e.clock.Advance(10*time.Minute + time.Second)
	resp, body = e.httpDo(http.MethodGet, req.URL, nil)
	if resp.StatusCode != http.StatusForbidden || errorCodeOf(body) != "AccessDenied" || !strings.Contains(string(body), "<Message>Request has expired</Message>") {
		t.Fatalf("expired presigned GET: %s %s", resp.Status, body)
	}
	if resp.Header.Get("Content-Type") != "application/xml" || resp.Header.Get("X-Amz-Request-Id") == "" {
		t.Errorf("error response headers %v", resp.Header)
	}

	// The SDK signs with the wall clock; a store clock 16 minutes ahead
	// refuses its requests as too skewed.
	e.clock.Advance(6 * time.Minute)
	_, err = e.client(testCreds).HeadObject(ctx(t), &s3.HeadObjectInput{Bucket: aws.String("fw-images"), Key: aws.String("app/v2 final.bin")})
	wantStatus(t, err, http.StatusForbidden)
	_, err = e.client(testCreds).ListBuckets(ctx(t), &s3.ListBucketsInput{})
	wantAPIError(t, err, "RequestTimeTooSkewed")
}

// TestStorePresign checks the store's own presigned URLs with net/http: a
// Range answers 206 with Content-Range; the URL is good for GET only and
// only until it expires; tampering is caught.
func TestStorePresign(t *testing.T) {
	e := newEnv(t, false)
	if err := e.store.CreateBucket("fw-images"); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(4, 1<<20+3)
	mustPut(t, e.store, "fw-images", "dir/image+1 (ü).bin", data)

	u, err := e.store.Presign(e.srv.URL, "fw-images", "dir/image+1 (ü).bin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := e.httpDo(http.MethodGet, u, map[string]string{"Range": "bytes=1000-1999"})
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("ranged GET: %s %s", resp.Status, body)
	}
	if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes 1000-1999/%d", len(data)) {
		t.Errorf("Content-Range %q", cr)
	}
	if !bytes.Equal(body, data[1000:2000]) || resp.Header.Get("ETag") != quotedMD5(data) || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("ranged body or headers wrong: %v", resp.Header)
	}
	// Resume from an offset to the end, as the device downloader does.
	resp, body = e.httpDo(http.MethodGet, u, map[string]string{"Range": "bytes=1048000-", "If-Range": quotedMD5(data)})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[1048000:]) {
		t.Errorf("open-ended range with If-Range: %s, %d bytes", resp.Status, len(body))
	}
	// A stale If-Range gets the whole object.
	resp, body = e.httpDo(http.MethodGet, u, map[string]string{"Range": "bytes=0-9", "If-Range": `"stale"`})
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Errorf("stale If-Range: %s, %d bytes", resp.Status, len(body))
	}
	resp, body = e.httpDo(http.MethodGet, u, map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(data))})
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || errorCodeOf(body) != "InvalidRange" ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", len(data)) {
		t.Errorf("range past the end: %s %v %s", resp.Status, resp.Header, body)
	}
	// S3 answers no multipart/byteranges: several ranges get the whole
	// object; an empty suffix range is unsatisfiable.
	resp, body = e.httpDo(http.MethodGet, u, map[string]string{"Range": "bytes=0-9,100-109"})
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) || resp.Header.Get("Content-Range") != "" {
		t.Errorf("multi-range: %s %v, %d bytes", resp.Status, resp.Header, len(body))
	}
	resp, body = e.httpDo(http.MethodGet, u, map[string]string{"Range": "bytes=-0"})
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || errorCodeOf(body) != "InvalidRange" ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", len(data)) {
		t.Errorf("empty suffix range: %s %v %s", resp.Status, resp.Header, body)
	}
	resp, _ = e.httpDo(http.MethodGet, u, map[string]string{"If-None-Match": quotedMD5(data)})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %s", resp.Status)
	}
	resp, body = e.httpDo(http.MethodHead, u, nil)
	if resp.StatusCode != http.StatusForbidden || len(body) != 0 {
		t.Errorf("HEAD with a GET URL: %s", resp.Status)
	}
	resp, body = e.httpDo(http.MethodGet, strings.Replace(u, "image%2B1", "image%2B2", 1), nil)
	if resp.StatusCode != http.StatusForbidden || errorCodeOf(body) != "SignatureDoesNotMatch" {
		t.Errorf("tampered URL: %s %s", resp.Status, body)
	}
	if !strings.Contains(string(body), "<CanonicalRequest>GET&#xA;/fw-images/dir/image%2B2") {
		t.Errorf("SignatureDoesNotMatch should show the canonical request: %s", body)
	}

	e.clock.Advance(time.Hour + time.Second)
	resp, body = e.httpDo(http.MethodGet, u, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "Request has expired") {
		t.Errorf("expired URL: %s %s", resp.Status, body)
	}

	for name, call := range map[string]func() (string, error){
		"too long":    func() (string, error) { return e.store.Presign(e.srv.URL, "fw-images", "k", 8*24*time.Hour) },
		"bad bucket":  func() (string, error) { return e.store.Presign(e.srv.URL, "Bad", "k", time.Hour) },
		"empty key":   func() (string, error) { return e.store.Presign(e.srv.URL, "fw-images", "", time.Hour) },
		"no base URL": func() (string, error) { return e.store.Presign("127.0.0.1:4566", "fw-images", "k", time.Hour) },
	} {
		if _, err := call(); err == nil {
			t.Errorf("Presign %s succeeded", name)
		}
	}
}

// TestPublicRead: anonymous reads work only in a bucket made public, and
// only reads.
func TestPublicRead(t *testing.T) {
	e := newEnv(t, false)
	for _, b := range []string{"public-fw", "private-fw"} {
		if err := e.store.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
		mustPut(t, e.store, b, "app.bin", []byte("image bytes"))
	}
	if err := e.store.SetPublicRead("public-fw", true); err != nil {
		t.Fatal(err)
	}
	resp, body := e.httpDo(http.MethodGet, e.srv.URL+"/public-fw/app.bin", nil)
	if resp.StatusCode != http.StatusOK || string(body) != "image bytes" {
		t.Errorf("anonymous GET of a public object: %s %s", resp.Status, body)
	}
	resp, _ = e.httpDo(http.MethodHead, e.srv.URL+"/public-fw/app.bin", nil)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len("image bytes")) {
		t.Errorf("anonymous HEAD of a public object: %s", resp.Status)
	}
	resp, _ = e.httpDo(http.MethodGet, e.srv.URL+"/public-fw/missing.bin", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("anonymous GET of a missing public object: %s", resp.Status)
	}
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/private-fw/app.bin"},
		{http.MethodHead, "/private-fw/app.bin"},
		{http.MethodGet, "/missing-bucket/app.bin"},
		{http.MethodPut, "/public-fw/app.bin"},
		{http.MethodDelete, "/public-fw/app.bin"},
		{http.MethodGet, "/public-fw?list-type=2"},
		{http.MethodGet, "/"},
	} {
		resp, body := e.httpDo(tc.method, e.srv.URL+tc.path, nil)
		if resp.StatusCode != http.StatusForbidden || (tc.method != http.MethodHead && errorCodeOf(body) != "AccessDenied") {
			t.Errorf("anonymous %s %s: %s %s", tc.method, tc.path, resp.Status, body)
		}
	}
	if err := e.store.SetPublicRead("public-fw", false); err != nil {
		t.Fatal(err)
	}
	if resp, _ := e.httpDo(http.MethodGet, e.srv.URL+"/public-fw/app.bin", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("anonymous GET after making the bucket private: %s", resp.Status)
	}
	if err := e.store.SetPublicRead("missing-bucket", true); err == nil {
		t.Error("SetPublicRead of a missing bucket succeeded")
	}
}

package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/awsfota/awsfota/clock"
)

// verifyServer answers 204 when a request verifies and records the error
// otherwise.
type verifyServer struct {
	*httptest.Server
	mu   sync.Mutex
	errs []error
	auth []*Auth
}

func newVerifyServer(t *testing.T, v *Verifier) *verifyServer {
	s := &verifyServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, err := v.Verify(r)
		s.mu.Lock()
		s.errs = append(s.errs, err)
		s.auth = append(s.auth, a)
		s.mu.Unlock()
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				t.Logf("server canonical request:\n%s", e.CanonicalRequest)
			}
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *verifyServer) send(t *testing.T, r *http.Request) {
	t.Helper()
	resp, err := s.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("%s %s: %s %s", r.Method, r.URL, resp.Status, body)
	}
}

func hashHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestSDKSignedRequestsVerify sends requests signed by aws-sdk-go-v2's own
// signer, configured as the SDK configures it for S3 (no path escaping by the
// signer, X-Amz-Content-Sha256 sent) and for other services (path escaped a
// second time, payload hash not sent).
func TestSDKSignedRequestsVerify(t *testing.T) {
	at := testTime
	v := &Verifier{Region: "eu-west-1", Lookup: lookupOf(testCreds), Clock: clock.NewFake(at)}
	srv := newVerifyServer(t, v)
	signer := v4.NewSigner()
	creds := aws.Credentials{AccessKeyID: testCreds.AccessKeyID, SecretAccessKey: testCreds.SecretAccessKey}

	cases := []struct {
		name, method, path, query, body, service string
		header                                   map[string]string
	}{
		{"iot create job", "PUT", "/jobs/fota-job-1", "", `{"targets":["arn:aws:iot:eu-west-1:1:thing/dev 1"],"document":"{}"}`, "iot",
			map[string]string{"Content-Type": "application/json"}},
		{"iot escaped path and query", "GET", "/things/my%20thing/jobs", "status=IN_PROGRESS&nextToken=a%2Bb%3D&maxResults=10", "", "iot", nil},
		{"iot unicode path", "GET", "/things/%C3%BC-%E2%9C%93", "", "", "iot", nil},
		{"s3 put", "PUT", "/firmware/images/app%20v2%2B%21%2A%27%28%29.bin", "", "binary image", "s3",
			map[string]string{"Content-Type": "application/octet-stream", "X-Amz-Meta-Version": "2.0.1", "X-Amz-Checksum-Crc32": "AAAAAA=="}},
		{"s3 list", "GET", "/firmware", "list-type=2&prefix=images%2F&delimiter=%2F&encoding-type=url", "", "s3", nil},
		{"s3 range", "GET", "/firmware/a/b", "", "", "s3", map[string]string{"Range": "bytes=0-9"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := srv.URL + tc.path
			if tc.query != "" {
				u += "?" + tc.query
			}
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			r, err := http.NewRequest(tc.method, u, body)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			payload := hashHex([]byte(tc.body))
			opt := func(o *v4.SignerOptions) {}
			if tc.service == "s3" {
				r.Header.Set("X-Amz-Content-Sha256", payload)
				opt = func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }
			}
			if err := signer.SignHTTP(context.Background(), creds, r, payload, tc.service, "eu-west-1", at, opt); err != nil {
				t.Fatal(err)
			}
			srv.send(t, r)
		})
	}

	// The S3 presign middleware puts X-Amz-Expires in the query before the
	// signer runs; do the same.
	for _, service := range []string{"s3", "iot"} {
		t.Run("presigned "+service, func(t *testing.T) {
			r, _ := http.NewRequest("GET", srv.URL+"/firmware/app%20v2.bin?response-content-type=x%2Fy&X-Amz-Expires=900", nil)
			payload, opt := EmptyPayloadHash, func(o *v4.SignerOptions) {}
			if service == "s3" {
				payload, opt = UnsignedPayload, func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }
			}
			signed, _, err := signer.PresignHTTP(context.Background(), creds, r, payload, service, "eu-west-1", at, opt)
			if err != nil {
				t.Fatal(err)
			}
			srv.send(t, httptestRequest("GET", signed))
			srv.mu.Lock()
			a := srv.auth[len(srv.auth)-1]
			srv.mu.Unlock()
			if !a.Presigned || !a.Expires.Equal(at.Add(900*time.Second)) {
				t.Errorf("Auth %+v", a)
			}
		})
	}
}

// TestSignMatchesSDK checks that Sign produces byte-for-byte the
// Authorization header of aws-sdk-go-v2's signer for the same request.
func TestSignMatchesSDK(t *testing.T) {
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	creds := aws.Credentials{AccessKeyID: testCreds.AccessKeyID, SecretAccessKey: testCreds.SecretAccessKey}
	for _, service := range []string{"s3", "iot"} {
		for _, path := range []string{"/", "/b/k", "/things/a%20b/c%2Bd", "/x/%C3%BC~"} {
			body := []byte(`{"a":1}`)
			mk := func() *http.Request {
				r, _ := http.NewRequest("POST", "https://127.0.0.1:4566"+path+"?b=2&a=1&c=x%20y", bytes.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				r.Header.Set("X-Amz-Target", "  spaced   value ")
				return r
			}
			ours, theirs := mk(), mk()
			if err := Sign(ours, testCreds, "eu-west-1", service, at, ""); err != nil {
				t.Fatal(err)
			}
			payload := hashHex(body)
			opt := func(o *v4.SignerOptions) {}
			if service == "s3" {
				theirs.Header.Set("X-Amz-Content-Sha256", payload)
				opt = func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }
			}
			if err := v4.NewSigner().SignHTTP(context.Background(), creds, theirs, payload, service, "eu-west-1", at, opt); err != nil {
				t.Fatal(err)
			}
			if a, b := ours.Header.Get("Authorization"), theirs.Header.Get("Authorization"); a != b {
				t.Errorf("%s %s:\nSign: %s\nSDK:  %s", service, path, a, b)
			}
		}
	}
}

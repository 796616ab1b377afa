package sigv4

import (
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/awsfota/awsfota/clock"
)

func sha256Of(s string) [32]byte { return sha256.Sum256([]byte(s)) }

var (
	testCreds = Credentials{AccessKeyID: "AKIAAWSFOTATEST", SecretAccessKey: "local-secret/with+odd=chars"}
	testTime  = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
)

func testVerifier(now time.Time) *Verifier {
	return &Verifier{Region: "eu-west-1", Lookup: lookupOf(testCreds), Clock: clock.NewFake(now)}
}

// serverSide turns a client request into what a server receives, the way
// net/http's server would present it (Host moved out of the header,
// Content-Length in the header, RequestURI set).
func serverSide(t *testing.T, r *http.Request) *http.Request {
	t.Helper()
	var b strings.Builder
	if err := r.Write(&b); err != nil {
		t.Fatalf("writing request: %v", err)
	}
	return readRequest(t, b.String())
}

func wantCode(t *testing.T, err error, code string) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want *Error with code %s", err, err, code)
	}
	if e.Code != code {
		t.Fatalf("code %s (%s), want %s", e.Code, e.Message, code)
	}
	if e.Status != http.StatusForbidden && e.Status != http.StatusBadRequest && e.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d", e.Status)
	}
	return e
}

func newSigned(t *testing.T, method, rawURL, body, service string, header map[string]string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, rawURL, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		r.Header.Set(k, v)
	}
	if err := Sign(r, testCreds, "eu-west-1", service, testTime, ""); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSignVerifyRoundTrip(t *testing.T) {
	cases := []struct {
		name, method, url, body, service string
		header                           map[string]string
	}{
		{"s3 get", "GET", "http://127.0.0.1:4566/bucket/key", "", "s3", nil},
		{"s3 odd key", "PUT", "http://127.0.0.1:4566/bucket/dir/a%20b+c!*'()~%C3%BC%2Fx", "data", "s3", map[string]string{"Content-Type": "text/plain"}},
		{"s3 list", "GET", "http://localhost:4566/bucket?list-type=2&prefix=a%2Fb&delimiter=%2F&start-after=x+y", "", "s3", nil},
		{"iot json", "POST", "https://localhost:4566/jobs/job-1?targetSelection=SNAPSHOT", `{"targets":["arn:aws:iot:x"]}`, "iot",
			map[string]string{"Content-Type": "application/json", "X-Amz-Meta-Spaces": "  a   b  "}},
		{"iot escaped path", "GET", "http://localhost:4566/things/my%20thing/jobs", "", "iot", nil},
		{"empty query value and repeated key", "GET", "http://localhost/b?a=2&a=1&flag&z=", "", "s3", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := serverSide(t, newSigned(t, tc.method, tc.url, tc.body, tc.service, tc.header))
			a, err := testVerifier(testTime.Add(time.Minute)).Verify(r)
			if err != nil {
				var e *Error
				if errors.As(err, &e) {
					t.Logf("server canonical request:\n%s", e.CanonicalRequest)
				}
				t.Fatalf("Verify: %v", err)
			}
			if a.Service != tc.service || a.AccessKeyID != testCreds.AccessKeyID || !a.Date.Equal(testTime) {
				t.Errorf("Auth %+v", a)
			}
			if want := sha256Of(tc.body); a.PayloadHash != hexOf(want) {
				t.Errorf("PayloadHash %s, want hash of body", a.PayloadHash)
			}
			got, _ := io.ReadAll(r.Body)
			if string(got) != tc.body {
				t.Errorf("body after Verify %q", got)
			}
		})
	}
}

func hexOf(b [32]byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 64)
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}

// TestTamperedRequestsFail changes one signed part at a time.
func TestTamperedRequestsFail(t *testing.T) {
	base := func(t *testing.T) *http.Request {
		return serverSide(t, newSigned(t, "PUT", "http://127.0.0.1:4566/jobs/j1/things?force=true&x=1", "payload", "iot",
			map[string]string{"Content-Type": "application/json", "X-Amz-Meta-A": "b"}))
	}
	v := testVerifier(testTime)
	if _, err := v.Verify(base(t)); err != nil {
		t.Fatalf("untampered request: %v", err)
	}
	tampers := map[string]func(r *http.Request){
		"method":       func(r *http.Request) { r.Method = "POST" },
		"path":         func(r *http.Request) { r.URL.Path = "/jobs/j2/things" },
		"path escaped": func(r *http.Request) { r.URL.Path, r.URL.RawPath = "/jobs/j 1/things", "" },
		"query value":  func(r *http.Request) { r.URL.RawQuery = "force=false&x=1" },
		"query added":  func(r *http.Request) { r.URL.RawQuery += "&y=2" },
		"query gone":   func(r *http.Request) { r.URL.RawQuery = "x=1" },
		"host":         func(r *http.Request) { r.Host = "127.0.0.1:4567" },
		"header":       func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") },
		"meta header":  func(r *http.Request) { r.Header.Set("X-Amz-Meta-A", "c") },
		"header added": func(r *http.Request) { r.Header.Add("X-Amz-Meta-A", "d") },
		"date": func(r *http.Request) {
			r.Header.Set("X-Amz-Date", testTime.Add(time.Second).Format(amzDateFormat))
		},
		"body":           func(r *http.Request) { r.Body = io.NopCloser(strings.NewReader("PAYLOAD")) },
		"content-length": func(r *http.Request) { r.Header.Set("Content-Length", "8") },
		"signature": func(r *http.Request) {
			h := r.Header.Get("Authorization")
			r.Header.Set("Authorization", h[:len(h)-1]+string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", h[len(h)-1])+1)%16]))
		},
		"signed headers list": func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "content-type;", "", 1))
		},
	}
	for name, tamper := range tampers {
		t.Run(name, func(t *testing.T) {
			r := base(t)
			tamper(r)
			_, err := v.Verify(r)
			wantCode(t, err, CodeSignatureDoesNotMatch)
		})
	}
	t.Run("wrong secret", func(t *testing.T) {
		r, _ := http.NewRequest("GET", "http://127.0.0.1:4566/bucket/key", nil)
		if err := Sign(r, Credentials{testCreds.AccessKeyID, "not-the-secret"}, "eu-west-1", "s3", testTime, UnsignedPayload); err != nil {
			t.Fatal(err)
		}
		e := wantCode(t, mustFail(v.Verify(serverSide(t, r))), CodeSignatureDoesNotMatch)
		if !strings.HasPrefix(e.CanonicalRequest, "GET\n/bucket/key\n") || !strings.HasPrefix(e.StringToSign, Algorithm+"\n") {
			t.Errorf("mismatch error lacks the canonical request: %+v", e)
		}
	})
}

func mustFail(_ *Auth, err error) error { return err }

func TestVerifyErrors(t *testing.T) {
	v := testVerifier(testTime)
	signed := func(mod func(r *http.Request)) *http.Request {
		r, _ := http.NewRequest("GET", "http://127.0.0.1:4566/bucket/key", nil)
		if mod != nil {
			mod(r)
		}
		if err := Sign(r, testCreds, "eu-west-1", "s3", testTime, UnsignedPayload); err != nil {
			t.Fatal(err)
		}
		return serverSide(t, r)
	}
	cases := []struct {
		name string
		req  func() *http.Request
		v    *Verifier
		code string
		msg  string
	}{
		{name: "anonymous", code: CodeMissingAuthenticationToken, req: func() *http.Request {
			return serverSide(t, httptestRequest("GET", "http://h/b/k"))
		}},
		{name: "unknown key", code: CodeInvalidAccessKeyID, req: func() *http.Request {
			r, _ := http.NewRequest("GET", "http://h/b/k", nil)
			Sign(r, Credentials{"AKIAUNKNOWN", "x"}, "eu-west-1", "s3", testTime, UnsignedPayload)
			return serverSide(t, r)
		}},
		{name: "skew past", code: CodeRequestTimeTooSkewed, v: testVerifier(testTime.Add(16 * time.Minute)), req: func() *http.Request { return signed(nil) }},
		{name: "skew future", code: CodeRequestTimeTooSkewed, v: testVerifier(testTime.Add(-16 * time.Minute)), req: func() *http.Request { return signed(nil) }},
		{name: "wrong region", code: CodeAuthorizationHeaderMalformed, msg: "expecting 'eu-west-1'", req: func() *http.Request {
			r, _ := http.NewRequest("GET", "http://h/b/k", nil)
			Sign(r, testCreds, "us-east-1", "s3", testTime, UnsignedPayload)
			return serverSide(t, r)
		}},
		{name: "scope date differs", code: CodeAuthorizationHeaderMalformed, req: func() *http.Request {
			r := signed(nil)
			r.Header.Set("X-Amz-Date", testTime.Add(24*time.Hour).Format(amzDateFormat))
			return r
		}},
		{name: "no date", code: CodeAccessDenied, req: func() *http.Request {
			r := signed(nil)
			r.Header.Del("X-Amz-Date")
			return r
		}},
		{name: "malformed header", code: CodeAuthorizationHeaderMalformed, req: func() *http.Request {
			r := signed(nil)
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIA/20260301/eu-west-1/s3, SignedHeaders=host, Signature=00")
			return r
		}},
		{name: "sigv2", code: CodeInvalidRequest, req: func() *http.Request {
			r := signed(nil)
			r.Header.Set("Authorization", "AWS AKIAAWSFOTATEST:c2lnbmF0dXJl")
			return r
		}},
		{name: "both mechanisms", code: CodeInvalidArgument, req: func() *http.Request {
			r := signed(nil)
			r.URL.RawQuery = "X-Amz-Signature=00"
			return r
		}},
		{name: "unsigned amz header", code: CodeAccessDenied, msg: "x-amz-meta-late", req: func() *http.Request {
			r := signed(nil)
			r.Header.Set("X-Amz-Meta-Late", "added after signing")
			return r
		}},
		{name: "host not signed", code: CodeAuthorizationHeaderMalformed, req: func() *http.Request {
			r := signed(nil)
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "SignedHeaders=host;", "SignedHeaders=", 1))
			return r
		}},
		{name: "bad payload hash", code: CodeInvalidArgument, req: func() *http.Request {
			r := signed(nil)
			r.Header.Set("X-Amz-Content-Sha256", "not-a-hash")
			return r
		}},
		{name: "body too large to hash", code: CodeRequestEntityTooLarge,
			v: &Verifier{Region: "eu-west-1", Lookup: lookupOf(testCreds), Clock: clock.NewFake(testTime), MaxBufferedBody: 4},
			req: func() *http.Request {
				return serverSide(t, newSigned(t, "POST", "http://h/jobs", "12345", "iot", nil))
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.req()
			vv := v
			if tc.v != nil {
				vv = tc.v
			}
			a, err := vv.Verify(r)
			if a != nil {
				t.Fatalf("Verify returned Auth %+v with error %v", a, err)
			}
			e := wantCode(t, err, tc.code)
			if !strings.Contains(e.Message, tc.msg) {
				t.Errorf("message %q lacks %q", e.Message, tc.msg)
			}
		})
	}
}

func httptestRequest(method, u string) *http.Request {
	r, _ := http.NewRequest(method, u, nil)
	return r
}

func TestPresign(t *testing.T) {
	raw, err := Presign(testCreds, "eu-west-1", "s3", "GET", "http://127.0.0.1:4566/firmware/app v2+1.bin?versionId=x", testTime, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(raw)
	if u.EscapedPath() != "/firmware/app%20v2%2B1.bin" {
		t.Errorf("path %q not in S3 canonical form", u.EscapedPath())
	}
	for _, p := range []string{"X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Expires=3600", "X-Amz-SignedHeaders=host", "versionId=x", "X-Amz-Signature="} {
		if !strings.Contains(raw, p) {
			t.Errorf("URL %s lacks %s", raw, p)
		}
	}
	get := func(rawURL string) *http.Request {
		return serverSide(t, httptestRequest("GET", rawURL))
	}
	fake := clock.NewFake(testTime)
	v := &Verifier{Region: "eu-west-1", Lookup: lookupOf(testCreds), Clock: fake}
	// Fake clocks never go back: later cases use fresh verifiers.

	a, err := v.Verify(get(raw))
	if err != nil {
		t.Fatalf("fresh URL: %v", err)
	}
	if !a.Presigned || !a.Expires.Equal(testTime.Add(time.Hour)) || a.PayloadHash != UnsignedPayload {
		t.Errorf("Auth %+v", a)
	}
	fake.Advance(time.Hour)
	if _, err := v.Verify(get(raw)); err != nil {
		t.Fatalf("URL at its expiry instant: %v", err)
	}
	fake.Advance(time.Second)
	e := wantCode(t, mustFail(v.Verify(get(raw))), CodeAccessDenied)
	if e.Message != "Request has expired" {
		t.Errorf("message %q", e.Message)
	}

	v = testVerifier(testTime)
	for name, mod := range map[string]func(string) string{
		"path":    func(s string) string { return strings.Replace(s, "app%20v2", "app%20v3", 1) },
		"expires": func(s string) string { return strings.Replace(s, "X-Amz-Expires=3600", "X-Amz-Expires=3601", 1) },
		"param":   func(s string) string { return strings.Replace(s, "versionId=x", "versionId=y", 1) },
	} {
		t.Run(name, func(t *testing.T) {
			wantCode(t, mustFail(v.Verify(get(mod(raw)))), CodeSignatureDoesNotMatch)
		})
	}
	t.Run("head with a GET URL", func(t *testing.T) {
		wantCode(t, mustFail(v.Verify(serverSide(t, httptestRequest("HEAD", raw)))), CodeSignatureDoesNotMatch)
	})
	t.Run("over a week", func(t *testing.T) {
		long := strings.Replace(raw, "X-Amz-Expires=3600", "X-Amz-Expires=604801", 1)
		wantCode(t, mustFail(v.Verify(get(long))), CodeAuthorizationQueryParametersError)
	})
	t.Run("missing parameter", func(t *testing.T) {
		short := strings.Replace(raw, "X-Amz-SignedHeaders=host&", "", 1)
		wantCode(t, mustFail(v.Verify(get(short))), CodeAuthorizationQueryParametersError)
	})
	t.Run("not valid yet", func(t *testing.T) {
		e := wantCode(t, mustFail(testVerifier(testTime.Add(-time.Hour)).Verify(get(raw))), CodeAccessDenied)
		if e.Message != "Request is not valid yet" {
			t.Errorf("message %q", e.Message)
		}
	})
	t.Run("other service signs the empty payload", func(t *testing.T) {
		raw, err := Presign(testCreds, "eu-west-1", "iot", "GET", "http://127.0.0.1:4566/things/a%20b", testTime, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		a, err := v.Verify(get(raw))
		if err != nil {
			t.Fatal(err)
		}
		if a.PayloadHash != EmptyPayloadHash || a.Service != "iot" {
			t.Errorf("Auth %+v", a)
		}
	})
	for name, d := range map[string]time.Duration{"zero": 0, "eight days": 8 * 24 * time.Hour} {
		if _, err := Presign(testCreds, "eu-west-1", "s3", "GET", "http://h/b/k", testTime, d); err == nil {
			t.Errorf("Presign with expiry %s succeeded", name)
		}
	}
	if _, err := Presign(testCreds, "eu-west-1", "s3", "GET", "/b/k", testTime, time.Hour); err == nil {
		t.Error("Presign of a relative URL succeeded")
	}
}

func TestScopeService(t *testing.T) {
	s3Req := newSigned(t, "GET", "http://h/b/k", "", "s3", nil)
	iotReq := newSigned(t, "GET", "http://h/things", "", "iot", nil)
	presigned, _ := Presign(testCreds, "eu-west-1", "iot", "GET", "http://h/jobs", testTime, time.Minute)
	cases := []struct {
		r    *http.Request
		want string
		ok   bool
	}{
		{s3Req, "s3", true},
		{iotReq, "iot", true},
		{httptestRequest("GET", presigned), "iot", true},
		{httptestRequest("GET", "http://h/b/k"), "", false},
		{httptestRequest("GET", "http://h/b/k?X-Amz-Credential=garbage"), "", false},
	}
	for i, tc := range cases {
		got, ok := ScopeService(tc.r)
		if got != tc.want || ok != tc.ok {
			t.Errorf("case %d: ScopeService = %q, %v; want %q, %v", i, got, ok, tc.want, tc.ok)
		}
	}
	// Routing only needs the credential, even when the rest is malformed.
	r := httptestRequest("GET", "http://h/")
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AK/20260301/eu-west-1/iot/aws4_request, Signature=zz")
	if got, ok := ScopeService(r); got != "iot" || !ok {
		t.Errorf("ScopeService of a partly malformed header = %q, %v", got, ok)
	}
}

func TestNormalizePath(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "/",
		"/":                        "/",
		"//":                       "/",
		"/a/b":                     "/a/b",
		"/a/b/":                    "/a/b/",
		"//example//":              "/example/",
		"/./example":               "/example",
		"/example1/example2/../..": "/",
		"/a/./b/../c/.":            "/a/c/",
		"/../../a":                 "/a",
	} {
		if got := normalizePath(in); got != want {
			t.Errorf("normalizePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCanonicalURIByService(t *testing.T) {
	u, _ := url.Parse("http://h/bucket/a%20b/c%2Fd")
	if got := canonicalURIs(u, "s3"); got[0] != "/bucket/a%20b/c/d" || got[1] != "/bucket/a%20b/c%2Fd" {
		t.Errorf("s3 canonical URIs %q", got)
	}
	if got := canonicalURIs(u, "iot"); len(got) != 1 || got[0] != "/bucket/a%2520b/c%252Fd" {
		t.Errorf("iot canonical URIs %q (want double encoding)", got)
	}
}

package sigv4

import (
	"bufio"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestParseAuthorization(t *testing.T) {
	good := "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
	a, err := parseAuthorization(good)
	if err != nil {
		t.Fatal(err)
	}
	if a.Credential != (credential{"AKIDEXAMPLE", "20150830", "us-east-1", "iam"}) ||
		strings.Join(a.SignedHeaders, ";") != "content-type;host;x-amz-date" || len(a.Signature) != 64 {
		t.Fatalf("parsed %+v", a)
	}
	// No spaces after commas, as the S3 documentation writes it.
	if _, err := parseAuthorization(strings.ReplaceAll(good, ", ", ",")); err != nil {
		t.Fatalf("compact form: %v", err)
	}
	bad := map[string]string{
		"empty":            "",
		"algorithm only":   "AWS4-HMAC-SHA256",
		"wrong algorithm":  strings.Replace(good, "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512", 1),
		"sigv4a":           strings.Replace(good, "AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256", 1),
		"sigv2":            "AWS AKIDEXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=",
		"no signature":     strings.Split(good, ", Signature")[0],
		"duplicate":        good + ", Signature=" + strings.Repeat("a", 64),
		"unknown field":    good + ", Extra=1",
		"no equals":        good + ", junk",
		"short signature":  strings.Replace(good, "Signature=5d", "Signature=", 1),
		"upper signature":  strings.Replace(good, "Signature=5d", "Signature=5D", 1),
		"four part scope":  strings.Replace(good, "/iam/aws4_request", "/aws4_request", 1),
		"bad terminator":   strings.Replace(good, "aws4_request", "aws4_reques", 1),
		"bad date":         strings.Replace(good, "20150830", "2015083X", 1),
		"empty key id":     strings.Replace(good, "AKIDEXAMPLE/", "/", 1),
		"upper header":     strings.Replace(good, "content-type", "Content-Type", 1),
		"empty header":     strings.Replace(good, "content-type;", ";", 1),
		"space in header":  strings.Replace(good, "content-type", "content type", 1),
		"no signed header": strings.Replace(good, "content-type;host;x-amz-date", "", 1),
	}
	for name, h := range bad {
		if _, err := parseAuthorization(h); err == nil {
			t.Errorf("%s: parsed %q", name, h)
		} else if err.Code != CodeAuthorizationHeaderMalformed && err.Code != CodeInvalidRequest {
			t.Errorf("%s: code %s", name, err.Code)
		}
	}
}

func TestParseQuery(t *testing.T) {
	got := parseQuery("a=1&&b&c=x%20y+z&%zz=bad;semi&d=%E1%88%B4")
	want := []queryParam{{"a", "1"}, {"b", ""}, {"c", "x y z"}, {"%zz", "bad;semi"}, {"d", "ሴ"}}
	if len(got) != len(want) {
		t.Fatalf("parseQuery = %q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("param %d = %q, want %q", i, got[i], want[i])
		}
	}
	if c := canonicalQuery(got, "b"); c != "%25zz=bad%3Bsemi&a=1&c=x%20y%20z&d=%E1%88%B4" {
		t.Errorf("canonicalQuery = %s", c)
	}
}

// FuzzParseAuthorization feeds arbitrary Authorization headers and query
// strings to the parsers and to Verify: they must fail with a *Error, never
// panic, and a header that parses must be well-formed.
func FuzzParseAuthorization(f *testing.F) {
	for _, tc := range suiteVectors {
		f.Add(suiteAuth+tc.signature, "")
	}
	for _, tc := range docsVectors {
		r := readRequestF(tc.raw)
		f.Add(r.Header.Get("Authorization"), r.URL.RawQuery)
	}
	f.Add("", "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=A%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=-1&X-Amz-SignedHeaders=host&X-Amz-Signature=00")
	f.Add("AWS4-HMAC-SHA256 Credential=/,,,,=,", "%%%&=&==")
	f.Fuzz(func(t *testing.T, header, query string) {
		if a, err := parseAuthorization(header); err == nil {
			if a.Credential.AccessKeyID == "" || len(a.Signature) != 64 || len(a.SignedHeaders) == 0 {
				t.Fatalf("accepted malformed header %q: %+v", header, a)
			}
		}
		ScopeService(&http.Request{Header: http.Header{"Authorization": {header}}, URL: &url.URL{RawQuery: query}})
		canonicalQuery(parseQuery(query), qSignature)

		r := &http.Request{Method: "GET", Host: "h", URL: &url.URL{Path: "/b/k", RawQuery: query}, Header: http.Header{}}
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		r.Header.Set("X-Amz-Date", "20130524T000000Z")
		_, err := suiteVerifier(docsTime).Verify(r)
		var e *Error
		if err != nil && !errors.As(err, &e) {
			t.Fatalf("Verify error %T %v is not *Error", err, err)
		}
	})
}

func readRequestF(raw string) *http.Request {
	r, err := http.ReadRequest(bufioReader(raw))
	if err != nil {
		panic(err)
	}
	return r
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

package sigv4

import (
	"bufio"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/awsfota/awsfota/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The AWS SigV4 test suite's credentials and time.
var (
	suiteCreds = Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
	suiteTime  = time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)
	// The S3 documentation's examples (sig-v4-header-based-auth, presigned
	// URL and streaming pages).
	docsCreds = Credentials{AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
	docsTime  = time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC)
)

func lookupOf(creds ...Credentials) func(string) (string, bool) {
	return func(id string) (string, bool) {
		for _, c := range creds {
			if c.AccessKeyID == id {
				return c.SecretAccessKey, true
			}
		}
		return "", false
	}
}

func readRequest(t *testing.T, raw string) *http.Request {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("ReadRequest: %v", err)
	}
	return r
}

const suiteAuth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature="

// suiteVectors are requests of the AWS SigV4 test suite (2015-08-30), written
// as the raw HTTP the suite's .req files hold, with the .authz line added.
var suiteVectors = []struct {
	name, raw, signature string
	signedHeaders        string // when not host;x-amz-date
	body                 string
}{
	{name: "get-vanilla", raw: "GET / HTTP/1.1\r\nHost:example.amazonaws.com\r\nX-Amz-Date:20150830T123600Z\r\n",
		signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
	{name: "get-vanilla-query-order-key-case", raw: "GET /?Param2=value2&Param1=value1 HTTP/1.1\r\nHost:example.amazonaws.com\r\nX-Amz-Date:20150830T123600Z\r\n",
		signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
	{name: "get-vanilla-empty-query-key", raw: "GET /?Param1=value1 HTTP/1.1\r\nHost:example.amazonaws.com\r\nX-Amz-Date:20150830T123600Z\r\n",
		signature: "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"},
	{name: "get-vanilla-utf8-query", raw: "GET /?%E1%88%B4=bar HTTP/1.1\r\nHost:example.amazonaws.com\r\nX-Amz-Date:20150830T123600Z\r\n",
		signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
	{name: "post-vanilla", raw: "POST / HTTP/1.1\r\nHost:example.amazonaws.com\r\nX-Amz-Date:20150830T123600Z\r\n",
		signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
	{name: "post-x-www-form-urlencoded",
		raw:           "POST / HTTP/1.1\r\nContent-Type:application/x-www-form-urlencoded\r\nHost:example.amazonaws.com\r\nX-Amz-Date:20150830T123600Z\r\nContent-Length:13\r\n",
		body:          "Param1=value1",
		signedHeaders: "content-type;host;x-amz-date",
		signature:     "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"},
	{name: "get-header-value-trim",
		raw:           "GET / HTTP/1.1\r\nHost:example.amazonaws.com\r\nMy-Header1: value1\r\nMy-Header2: \"a   b   c\"\r\nX-Amz-Date:20150830T123600Z\r\n",
		signedHeaders: "host;my-header1;my-header2;x-amz-date",
		signature:     "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
	// normalize-path: the canonical URI drops dot segments and empty ones.
	{name: "get-relative-relative", raw: "GET /example1/example2/../.. HTTP/1.1\r\nHost:example.amazonaws.com\r\nX-Amz-Date:20150830T123600Z\r\n",
		signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
	{name: "get-slash-dot-slash", raw: "GET /./ HTTP/1.1\r\nHost:example.amazonaws.com\r\nX-Amz-Date:20150830T123600Z\r\n",
		signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
	{name: "get-slash-pointless-dot", raw: "GET /./example HTTP/1.1\r\nHost:example.amazonaws.com\r\nX-Amz-Date:20150830T123600Z\r\n",
		signature: "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5"},
	{name: "get-slashes", raw: "GET //example// HTTP/1.1\r\nHost:example.amazonaws.com\r\nX-Amz-Date:20150830T123600Z\r\n",
		signature: "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84"},
}

func suiteVerifier(at time.Time) *Verifier {
	return &Verifier{Region: "us-east-1", Lookup: lookupOf(suiteCreds, docsCreds), Clock: clock.NewFake(at)}
}

func TestSuiteVectorsVerify(t *testing.T) {
	v := suiteVerifier(suiteTime.Add(time.Minute))
	for _, tc := range suiteVectors {
		t.Run(tc.name, func(t *testing.T) {
			auth := suiteAuth + tc.signature
			if tc.signedHeaders != "" {
				auth = strings.Replace(auth, "host;x-amz-date", tc.signedHeaders, 1)
			}
			r := readRequest(t, tc.raw+"Authorization: "+auth+"\r\n\r\n"+tc.body)
			a, err := v.Verify(r)
			if err != nil {
				var e *Error
				if errors.As(err, &e) {
					t.Logf("canonical request:\n%s", e.CanonicalRequest)
				}
				t.Fatalf("Verify: %v", err)
			}
			if a.Service != "service" || a.Region != "us-east-1" || a.AccessKeyID != "AKIDEXAMPLE" || !a.Date.Equal(suiteTime) || a.Presigned {
				t.Errorf("Auth = %+v", a)
			}
			// The body a verifier hashed must still be readable.
			if tc.body != "" {
				buf := new(strings.Builder)
				if _, err := bufio.NewReader(r.Body).WriteTo(buf); err != nil || buf.String() != tc.body {
					t.Errorf("body after Verify = %q, %v", buf.String(), err)
				}
			}
		})
	}
}

func TestSuiteGetVanillaCanonicalForm(t *testing.T) {
	r := readRequest(t, suiteVectors[0].raw+"\r\n")
	canonical := canonicalRequest(r, canonicalURIs(r.URL, "service")[0], "", []string{"host", "x-amz-date"}, EmptyPayloadHash)
	want := "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" + EmptyPayloadHash
	if canonical != want {
		t.Fatalf("canonical request\n%q\nwant\n%q", canonical, want)
	}
	sts := stringToSign("20150830T123600Z", "20150830/us-east-1/service/aws4_request", canonical)
	wantSTS := "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
	if sts != wantSTS {
		t.Fatalf("string to sign\n%q\nwant\n%q", sts, wantSTS)
	}
}

// TestSuiteVectorsSign re-creates the suite's signatures with Sign, from
// client-side requests carrying the same headers.
func TestSuiteVectorsSign(t *testing.T) {
	for _, tc := range suiteVectors {
		t.Run(tc.name, func(t *testing.T) {
			srv := readRequest(t, tc.raw+"\r\n"+tc.body)
			var body *strings.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			var r *http.Request
			var err error
			if body != nil {
				r, err = http.NewRequest(srv.Method, "https://"+srv.Host+srv.RequestURI, body)
			} else {
				r, err = http.NewRequest(srv.Method, "https://"+srv.Host+srv.RequestURI, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, vs := range srv.Header {
				if k != "Content-Length" && k != "X-Amz-Date" {
					r.Header[k] = vs
				}
			}
			// The suite does not sign Content-Length.
			r.ContentLength = 0
			if err := Sign(r, suiteCreds, "us-east-1", "service", suiteTime, ""); err != nil {
				t.Fatal(err)
			}
			got := r.Header.Get("Authorization")
			if !strings.HasSuffix(got, "Signature="+tc.signature) {
				t.Fatalf("Authorization = %s\nwant signature %s", got, tc.signature)
			}
		})
	}
}

// The S3 documentation's examples: a header-signed GET with Range, a
// presigned URL and the seed request of a signed aws-chunked upload.
var docsVectors = []struct{ name, raw string }{
	{"get-object-range", "GET /test.txt HTTP/1.1\r\nHost: examplebucket.s3.amazonaws.com\r\n" +
		"Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41\r\n" +
		"Range: bytes=0-9\r\nx-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\r\nx-amz-date: 20130524T000000Z\r\n\r\n"},
	{"presigned-get", "GET /test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404 HTTP/1.1\r\n" +
		"Host: examplebucket.s3.amazonaws.com\r\n\r\n"},
	{"streaming-seed", "PUT /examplebucket/chunkObject.txt HTTP/1.1\r\nHost: s3.amazonaws.com\r\nx-amz-date: 20130524T000000Z\r\nx-amz-storage-class: REDUCED_REDUNDANCY\r\n" +
		"Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9\r\n" +
		"x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD\r\nContent-Encoding: aws-chunked\r\nx-amz-decoded-content-length: 66560\r\nContent-Length: 66824\r\n\r\n"},
}

func TestS3DocsVectors(t *testing.T) {
	v := suiteVerifier(docsTime.Add(time.Minute))
	for _, tc := range docsVectors {
		t.Run(tc.name, func(t *testing.T) {
			a, err := v.Verify(readRequest(t, tc.raw))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if a.Service != "s3" {
				t.Errorf("service %q", a.Service)
			}
		})
	}
}

// TestChunkSignerDocsExample checks the chunk signature chain against the S3
// documentation's example: a 65536-byte chunk and a 1024-byte chunk of 'a',
// then the final empty chunk.
func TestChunkSignerDocsExample(t *testing.T) {
	r := readRequest(t, docsVectors[2].raw)
	a, err := suiteVerifier(docsTime).Verify(r)
	if err != nil {
		t.Fatal(err)
	}
	if a.PayloadHash != StreamingPayload {
		t.Fatalf("PayloadHash %q", a.PayloadHash)
	}
	want := []string{
		"ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
		"0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
		"b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
	}
	for _, signer := range []*ChunkSigner{a.ChunkSigner(), NewChunkSigner(docsCreds, "us-east-1", "s3", docsTime, a.SeedSignature)} {
		for i, chunk := range []string{strings.Repeat("a", 65536), strings.Repeat("a", 1024), ""} {
			if got := signer.Next(sha256Of(chunk)); got != want[i] {
				t.Fatalf("chunk %d signature %s, want %s", i, got, want[i])
			}
		}
	}
}

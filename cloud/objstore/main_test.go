package objstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/goleak"

	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/cloud/sigv4"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testCreds = sigv4.Credentials{AccessKeyID: "AKIAAWSFOTALOCAL", SecretAccessKey: "local/secret+key=="}

const testRegion = "eu-central-1"

// wireRecord is what the SDK put on the wire for one request.
type wireRecord struct {
	method, path, query string
	header              http.Header
}

// env is a store served on loopback, over TLS or plain HTTP.
type env struct {
	t     *testing.T
	dir   string
	clock *clock.Fake
	store *Store
	srv   *httptest.Server

	mu   sync.Mutex
	wire []wireRecord
}

func newEnv(t *testing.T, useTLS bool) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	// The SDK signs with the wall clock: start the fake there.
	e.clock = clock.NewFake(time.Now())
	e.open()
	h := e.store.Handler()
	record := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.wire = append(e.wire, wireRecord{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone()})
		e.mu.Unlock()
		h.ServeHTTP(w, r)
	})
	if useTLS {
		e.srv = httptest.NewTLSServer(record)
	} else {
		e.srv = httptest.NewServer(record)
	}
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) open() {
	e.t.Helper()
	s, err := Open(Config{Dir: e.dir, Region: testRegion, Credentials: []sigv4.Credentials{testCreds}, Clock: e.clock})
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	e.store = s
}

func (e *env) records() []wireRecord {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]wireRecord(nil), e.wire...)
}

// client is the official S3 client pointed at the store, path style. The
// config is built by hand, not by config.LoadDefaultConfig, so that the
// environment (AWS_CA_BUNDLE, profiles) cannot change the test; it sets the
// two checksum defaults LoadDefaultConfig applies (config/resolve.go), so the
// SDK behaves on the wire as it does in applications.
func (e *env) client(creds sigv4.Credentials) *s3.Client {
	return s3.NewFromConfig(aws.Config{
		Region:                     testRegion,
		Credentials:                credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, ""),
		HTTPClient:                 e.srv.Client(),
		Retryer:                    func() aws.Retryer { return aws.NopRetryer{} },
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported,
	}, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(e.srv.URL)
		o.UsePathStyle = true
	})
}

// randomBytes returns n bytes from a seeded generator: tests are repeatable.
func randomBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func sum256(b []byte) [32]byte { return sha256.Sum256(b) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func mustPut(t *testing.T, s *Store, bucket, key string, data []byte) ObjectInfo {
	t.Helper()
	info, err := s.Put(context.Background(), bucket, key, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Put %s/%s: %v", bucket, key, err)
	}
	return info
}

func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// httpDo sends a plain net/http request to the store.
func (e *env) httpDo(method, url string, header map[string]string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp, readAll(e.t, resp.Body)
}

func errorCodeOf(body []byte) string {
	_, rest, ok := strings.Cut(string(body), "<Code>")
	if !ok {
		return ""
	}
	code, _, _ := strings.Cut(rest, "</Code>")
	return code
}

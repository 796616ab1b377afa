package emu

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/cloud/pki"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// BenchmarkFleetLoad runs the cloud in this binary, in a process of its own.
	if dir := os.Getenv(loadServerEnv); dir != "" {
		os.Exit(loadServer(dir))
	}
	goleak.VerifyTestMain(m)
}

func start(t *testing.T, dir string) *Cloud {
	t.Helper()
	c, err := Start(Config{DataDir: dir, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStartWritesEndpointsAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	c := start(t, dir)
	ep := c.Endpoints()
	got, err := ReadEndpoints(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got != ep || !strings.HasPrefix(ep.HTTP, "http://127.0.0.1:") || strings.HasSuffix(ep.MQTT, ":0") || ep.AccessKeyID == "" || len(ep.SecretAccessKey) != 40 {
		t.Fatalf("endpoints %+v (file %+v)", ep, got)
	}
	if st, _ := os.Stat(filepath.Join(dir, EndpointsFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("endpoints file mode %v: it holds the secret key", st.Mode())
	}
	creds, err := c.ProvisionThing("dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(creds.CertPEM, creds.KeyPEM); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Jobs.CreateJob(jobsvc.JobSpec{JobID: "j1", Things: []string{"dev-1"}, Document: []byte(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	c.Objects.CreateBucket("bucket-1")
	c.Objects.SetPublicRead("bucket-1", true)
	c.Objects.Put(context.Background(), "bucket-1", "k", bytes.NewReader([]byte("hello")))

	// The data directory is locked while in use.
	if _, err := Start(Config{DataDir: dir, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second cloud on the same directory: %v", err)
	}
	if got, err := ReadEndpoints(dir); err != nil || got != ep {
		t.Fatalf("after a second cloud failed to start on the directory, endpoints.json %+v %v, want the running one's", got, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	c = start(t, dir)
	defer c.Close()
	if c.Endpoints().AccessKeyID != ep.AccessKeyID || !c.CA.Cert.Equal(mustCA(t, dir)) {
		t.Fatal("credentials or CA changed across a restart")
	}
	if _, err := c.Registry.DescribeThing("dev-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.DescribeCertificate(creds.CertificateID); err != nil {
		t.Fatal(err)
	}
	if j, err := c.Jobs.DescribeJob("j1"); err != nil || j.Status != jobsvc.JobInProgress {
		t.Fatalf("job %+v %v", j, err)
	}
	resp, err := http.Get(c.Endpoints().HTTP + "/bucket-1/k")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Fatalf("object after restart: %q", body)
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestDeferEndpoints: with DeferEndpoints, endpoints.json (the "ready"
// signal) appears only when the caller writes it, and a file left by an
// earlier run is gone from the moment the new cloud owns the directory.
func TestDeferEndpoints(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, EndpointsFile)
	if err := os.WriteFile(file, []byte(`{"mqtt":"127.0.0.1:1","http":"http://127.0.0.1:1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Start(Config{DataDir: dir, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true, DeferEndpoints: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := os.Stat(file); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("endpoints.json before WriteEndpoints: %v (the stale one must go, and no new one yet)", err)
	}
	if err := c.WriteEndpoints(); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadEndpoints(dir); err != nil || got != c.Endpoints() {
		t.Fatalf("endpoints.json %+v %v, want %+v", got, err, c.Endpoints())
	}
}

func mustCA(t *testing.T, dir string) *x509Cert {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "pki", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseCert(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRouterRefusesOtherServices(t *testing.T) {
	c := start(t, t.TempDir())
	defer c.Close()
	req, _ := http.NewRequest("GET", c.Endpoints().HTTP+"/things", nil)
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != http.StatusNotImplemented {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if _, err := Start(Config{}); err == nil {
		t.Fatal("no data dir accepted")
	}
	if _, err := ReadEndpoints(t.TempDir()); err == nil || !strings.Contains(err.Error(), "cloud serve") {
		t.Fatalf("missing endpoints: %v", err)
	}
}

type x509Cert = x509.Certificate

func parseCert(b []byte) (*x509.Certificate, error) { return pki.ParseCertificatePEM(b) }

package cli

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/console"
	"github.com/awsfota/awsfota/iotjobs"
)

// fetch GETs a URL (no redirects followed) and returns the status and body.
func fetch(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	c.CloseIdleConnections()
	return resp.StatusCode, string(b)
}

// waitMatch waits until a command's output matches re and returns the
// first submatch.
func waitMatch(t *testing.T, out *syncBuffer, re *regexp.Regexp, done <-chan int) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		select {
		case code := <-done:
			t.Fatalf("the command exited %d before printing %s:\n%s", code, re, out.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s in:\n%s", re, out.String())
		}
	}
}

// TestCloudServeConsole: `cloud serve` serves the console at /console/ on
// its HTTP port and says so.
func TestCloudServeConsole(t *testing.T) {
	dir := t.TempDir()
	ep, stop := serving(t, dir)
	ic, _ := clients(ep)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := ic.CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String("dev-1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.CreateJob(ctx, &iot.CreateJobInput{JobId: aws.String("j1"), Document: aws.String(`{"op":"x"}`),
		Targets: []string{"arn:aws:iot:" + ep.Region + ":" + ep.AccountID + ":thing/dev-1"}}); err != nil {
		t.Fatal(err)
	}
	if code, body := fetch(t, ep.HTTP+"/console/"); code != 200 || !strings.Contains(body, `id="thing-dev-1"`) || !strings.Contains(body, "local cloud") {
		t.Fatalf("GET /console/: %d\n%s", code, body)
	}
	if code, body := fetch(t, ep.HTTP+"/console/jobs/j1"); code != 200 || !strings.Contains(body, `id="exec-dev-1"`) {
		t.Fatalf("GET /console/jobs/j1: %d\n%s", code, body)
	}
	code, out := stop()
	if code != 0 || !strings.Contains(out, "web console         "+ep.HTTP+"/console/\n") {
		t.Fatalf("serve exited %d:\n%s", code, out)
	}
}

// TestCloudServeConsoleHTTPS: with --https the console is served over TLS
// too, and reads the cloud over TLS, trusting the local CA.
func TestCloudServeConsoleHTTPS(t *testing.T) {
	dir := t.TempDir()
	ep, stop := serving(t, dir, "--https")
	defer stop()
	pem, err := os.ReadFile(ep.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 30 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get(ep.HTTP + "/console/jobs")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(ep.HTTP, "https://") || resp.StatusCode != 200 || !strings.Contains(string(body), "Newest first") {
		t.Fatalf("GET %s/console/jobs: %d\n%s", ep.HTTP, resp.StatusCode, body)
	}
}

// TestConsoleCommand: `awsfota console --local DIR` serves the console of
// a local cloud running in another process (here: started apart), live from
// that cloud's change stream; with --token-file it wants the token.
func TestConsoleCommand(t *testing.T) {
	dir := t.TempDir()
	cloud, err := emu.Start(emu.Config{DataDir: dir, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	if _, err := cloud.Registry.CreateThing("dev-1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.Jobs.CreateJob(jobsvc.JobSpec{JobID: "j1", Things: []string{"dev-1"}, Document: []byte(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	for _, withToken := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		var out, errOut syncBuffer
		done := make(chan int, 1)
		args := []string{"console", "--local", dir, "--addr", "127.0.0.1:0"}
		if withToken {
			args = append(args, "--token-file", tokenFile)
		}
		go func() { done <- Run(ctx, args, &out, &errOut) }()
		url := waitMatch(t, &out, regexp.MustCompile(`console serving the local cloud at (\S+)\n`), done)
		if withToken {
			tok, err := os.ReadFile(tokenFile)
			if err != nil {
				t.Fatal(err)
			}
			if st, _ := os.Stat(tokenFile); st.Mode().Perm() != 0o600 {
				t.Errorf("the token file's mode is %v", st.Mode())
			}
			if !strings.HasSuffix(url, "?token="+strings.TrimSpace(string(tok))) {
				t.Fatalf("the printed URL %s does not carry the token it wrote", url)
			}
			base := strings.Split(url, "?")[0]
			if code, _ := fetch(t, base+"jobs"); code != 401 {
				t.Fatalf("without the token: %d", code)
			}
			if code, _ := fetch(t, url); code != http.StatusSeeOther {
				t.Fatalf("with the token: %d", code)
			}
		} else {
			if code, body := fetch(t, url+"jobs"); code != 200 || !strings.Contains(body, `id="job-j1"`) || !strings.Contains(body, "Live (change stream)") {
				t.Fatalf("GET %sjobs: %d\n%s", url, code, body)
			}
			// The job's page is live from the cloud's change stream: a
			// device's report shows long before the 30 s poll.
			sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
			req, _ := http.NewRequestWithContext(sctx, http.MethodGet, url+"jobs/j1", nil)
			req.Header.Set("Accept", "text/event-stream")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(resp.Body)
			readUntil := func(want string) {
				t.Helper()
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						t.Fatalf("the stream ended before %q: %v", want, err)
					}
					if strings.Contains(line, want) {
						return
					}
				}
			}
			readUntil("event: patch")
			cloud.Jobs.HandleDevice("dev-1", "dev-1", iotjobs.UpdateTopic("dev-1", "j1").String(),
				[]byte(`{"status":"IN_PROGRESS","statusDetails":{"state":"downloading","progress":"64"}}`))
			readUntil(`value=\"64\"`)
			resp.Body.Close()
			scancel()
			http.DefaultClient.CloseIdleConnections()
		}
		cancel()
		if code := <-done; code != 0 {
			t.Fatalf("console exited %d:\n%s%s", code, out.String(), errOut.String())
		}
	}
	// The token file is kept: the next start reads it and prints nothing
	// secret.
	tok, err := consoleTokenFor(t, "127.0.0.1:0", tokenFile)
	if err != nil || tok.print || tok.token == "" {
		t.Fatalf("reading the token file again: %+v %v", tok, err)
	}
	if tok, err := consoleTokenFor(t, "10.1.2.3:8080", ""); err != nil || !tok.print || len(tok.token) < 32 {
		t.Fatalf("a non-loopback address without a token file: %+v %v", tok, err)
	}
	if tok, err := consoleTokenFor(t, "127.0.0.1:8080", ""); err != nil || tok.token != "" {
		t.Fatalf("loopback: %+v %v", tok, err)
	}
	short := filepath.Join(t.TempDir(), "short")
	os.WriteFile(short, []byte("abc\n"), 0o600)
	if _, err := consoleTokenFor(t, "127.0.0.1:8080", short); err == nil || !strings.Contains(err.Error(), "16 characters") {
		t.Fatalf("a short token: %v", err)
	}
}

type tokenResult struct {
	token string
	print bool
}

func consoleTokenFor(t *testing.T, addr, file string) (tokenResult, error) {
	t.Helper()
	tok, print, err := consoleToken(addr, file)
	return tokenResult{tok, print}, err
}

// TestDemoConsole: `demo --console` serves the console while the demo runs
// and after it, until interrupted.
func TestDemoConsole(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"demo", "--devices", "1", "--console", "--link-rate", "0", "--image-size", "20000"}, &out, &errOut)
	}()
	url := waitMatch(t, &out, regexp.MustCompile(`web console: (\S+) `), done)
	if code, _ := fetch(t, url); code != 200 {
		t.Fatalf("GET %s during the demo: %d", url, code)
	}
	waitMatch(t, &out, regexp.MustCompile(`(the web console stays open at \S+: press Ctrl-C to end)`), done)
	code, body := fetch(t, url+"jobs")
	if code != 200 || !strings.Contains(body, "demo-1_0_1-") || !strings.Contains(body, "Completed") {
		t.Fatalf("GET %sjobs after the demo: %d\n%s", url, code, body)
	}
	select {
	case code := <-done:
		t.Fatalf("the demo exited (%d) before Ctrl-C", code)
	default:
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("demo --console exited %d after Ctrl-C:\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "all 1 devices updated") {
		t.Fatalf("the demo did not succeed:\n%s", out.String())
	}
}

// TestJobsFeed: the local cloud's change stream as the console takes it:
// executions with their statusDetails, job changes, and the end of the
// subscription with its context.
func TestJobsFeed(t *testing.T) {
	cloud, err := emu.Start(emu.Config{DataDir: filepath.Join(t.TempDir(), "cloud"), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := inProcess(cloud.Jobs).Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := func() console.Change {
		t.Helper()
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatal("the feed ended")
			}
			return c
		case <-time.After(30 * time.Second):
			t.Fatal("no change from the feed")
		}
		return console.Change{}
	}
	if _, err := cloud.Jobs.CreateJob(jobsvc.JobSpec{JobID: "j1", Things: []string{"dev-1"}, Document: []byte(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	if c := next(); c.JobID != "j1" || c.Thing != "" {
		t.Fatalf("the new job: %+v", c)
	}
	if c := next(); c.JobID != "j1" || c.Thing != "dev-1" || c.Execution == nil || c.Execution.Status != "QUEUED" || c.Execution.QueuedAt.IsZero() {
		t.Fatalf("the new execution: %+v %+v", c, c.Execution)
	}
	cloud.Jobs.HandleDevice("dev-1", "dev-1", iotjobs.UpdateTopic("dev-1", "j1").String(),
		[]byte(`{"status":"IN_PROGRESS","statusDetails":{"state":"downloading","progress":"40","bytes":"4000","size":"10000"}}`))
	c := next()
	if x := c.Execution; x == nil || x.Status != "IN_PROGRESS" || x.Percent != 40 || x.Bytes != 4000 || x.State != "downloading" || x.VersionNumber != 2 || x.StartedAt.IsZero() {
		t.Fatalf("the progress report: %+v", c.Execution)
	}
	cancel()
	for range ch { // ends: the subscription ended with its context
	}
}

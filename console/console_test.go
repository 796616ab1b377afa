package console

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/mcuboot"
	"github.com/awsfota/awsfota/operator"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a console on a local cloud, served over loopback.
type fixture struct {
	t     testing.TB
	cloud *emu.Cloud
	op    *operator.Client
	srv   *Server
	ts    *httptest.Server
	url   string       // the console's base URL, ending in /
	http  *http.Client // a browser: cookies, no redirects followed
	bare  *http.Client // no cookies
}

func newFixture(t testing.TB, tune func(*Config)) *fixture {
	t.Helper()
	cloud, err := emu.Start(emu.Config{DataDir: filepath.Join(t.TempDir(), "cloud"), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NoSync: true,
		JobDeletionDelay: -1}) // deleted as soon as the timers run
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cloud.Close() })
	ep := cloud.Endpoints()
	op := operator.NewLocal(operator.Endpoint{URL: ep.HTTP, Region: ep.Region, AccessKeyID: ep.AccessKeyID, SecretAccessKey: ep.SecretAccessKey})
	cfg := Config{Client: op, Bucket: "firmware", CreateBucket: true, UploadDir: t.TempDir()}
	if tune != nil {
		tune(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	tr := &http.Transport{}
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
		ts.Close()
	})
	jar, _ := cookiejar.New(nil)
	return &fixture{t: t, cloud: cloud, op: op, srv: srv, ts: ts, url: ts.URL + srv.cfg.Prefix, bare: &http.Client{Transport: tr},
		http: &http.Client{Transport: tr, Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// get fetches a console page and returns its status and body.
func (f *fixture) get(path string) (int, string) {
	f.t.Helper()
	resp, err := f.http.Get(f.url + path)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// csrf reads the CSRF token a page's form carries.
func (f *fixture) csrf(path string) string {
	f.t.Helper()
	code, body := f.get(path)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if code != 200 || m == nil {
		f.t.Fatalf("GET %s: %d, no CSRF token:\n%s", path, code, body)
	}
	return m[1]
}

// post submits a form; the browser's headers say it comes from the
// console's own origin.
func (f *fixture) post(path string, form url.Values) (int, string, string) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.url+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := f.http.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

// job creates a job on things (registered first) directly in the Jobs
// service.
func (f *fixture) job(id string, things ...string) {
	f.t.Helper()
	for _, th := range things {
		if _, err := f.cloud.Registry.CreateThing(th, nil); err != nil {
			f.t.Fatal(err)
		}
	}
	if _, err := f.cloud.Jobs.CreateJob(jobsvc.JobSpec{JobID: id, Things: things, Document: []byte(`{"operation":"app_fw_update","fwversion":"2.0.0"}`)}); err != nil {
		f.t.Fatal(err)
	}
}

// report is a device's UpdateJobExecution, as the broker hands it to the
// Jobs service.
func (f *fixture) report(thing, job, payload string) {
	f.t.Helper()
	f.cloud.Jobs.HandleDevice(thing, thing, iotjobs.UpdateTopic(thing, job).String(), []byte(payload))
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t, nil)
	f.job("j1", "dev-1")
	for _, path := range []string{"", "jobs", "jobs/j1", "devices/dev-1", "publish", "jobs/j1/cancel", "jobs/j1/delete", "nowhere", "static/console.css"} {
		resp, err := f.http.Get(f.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "style-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
			!strings.Contains(csp, "frame-ancestors 'none'") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET /%s: security headers %v", path, resp.Header)
		}
		if want := 200; path == "nowhere" && resp.StatusCode != 404 || path != "nowhere" && resp.StatusCode != want {
			t.Errorf("GET /%s: %d", path, resp.StatusCode)
		}
	}
	// No inline script or style anywhere: the CSP would block them.
	_, body := f.get("jobs/j1")
	for _, bad := range []string{"<script>", "style=", "<style", " on"} {
		if bad == " on" {
			if regexp.MustCompile(`\son[a-z]+=`).MatchString(body) {
				t.Errorf("the job page has an inline event handler")
			}
			continue
		}
		if strings.Contains(body, bad) {
			t.Errorf("the job page holds %q, which the Content-Security-Policy blocks", bad)
		}
	}
}

// TestLoopbackOnly: without a token the console answers requests addressed
// to loopback names only (a DNS-rebinding page gets nothing).
func TestLoopbackOnly(t *testing.T) {
	f := newFixture(t, nil)
	for host, want := range map[string]int{"localhost:8080": 200, "127.0.0.1:8080": 200, "[::1]:8080": 200,
		"evil.example:8080": 403, "192.168.1.10:8080": 403} {
		req, _ := http.NewRequest(http.MethodGet, f.url, nil)
		req.Host = host
		resp, err := f.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d, want %d", host, resp.StatusCode, want)
		}
		if want == 403 && !strings.Contains(string(b), "token") {
			t.Errorf("Host %s: the refusal does not say what to do:\n%s", host, b)
		}
	}
	for addr, want := range map[string]bool{"127.0.0.1:8080": true, "localhost:80": true, "[::1]:1": true, "0.0.0.0:8080": false, ":8080": false, "10.0.0.1:80": false} {
		if IsLoopback(addr) != want {
			t.Errorf("IsLoopback(%q) = %v", addr, !want)
		}
	}
}

func TestToken(t *testing.T) {
	const token = "s3cret-token-0123456789"
	f := newFixture(t, func(c *Config) { c.Token = token })
	if code, body := f.get("jobs"); code != 401 || !strings.Contains(body, "?token=") {
		t.Fatalf("no token: %d\n%s", code, body)
	}
	if code, _ := f.get("jobs?token=wrong"); code != 401 {
		t.Fatalf("a wrong token: %d", code)
	}
	resp, err := f.http.Get(f.url + "jobs?token=" + token + "&status=COMPLETED")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || strings.Contains(loc, "token") || !strings.Contains(loc, "status=COMPLETED") {
		t.Fatalf("the right token: %d, Location %q: want a redirect that drops the token", resp.StatusCode, loc)
	}
	// The cookie it set now proves it, whatever the host.
	cookies := f.http.Jar.Cookies(resp.Request.URL)
	if len(cookies) != 1 || cookies[0].Name != tokenCookie {
		t.Fatalf("cookies after the token: %v", cookies)
	}
	req, _ := http.NewRequest(http.MethodGet, f.url+"jobs", nil)
	req.Host = "console.example:8080"
	req.AddCookie(cookies[0])
	if resp, err = f.bare.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("with the cookie: %d", resp.StatusCode)
	}
	// So does a bearer header, without cookies.
	req, _ = http.NewRequest(http.MethodGet, f.url+"jobs", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err = f.bare.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("with a bearer token: %d", resp.StatusCode)
	}
}

// TestCSRF: a state change needs the session's CSRF token and must not come
// from another origin.
func TestCSRF(t *testing.T) {
	f := newFixture(t, nil)
	f.job("j1", "dev-1")
	tok := f.csrf("jobs/j1/cancel")
	if code, _, body := f.post("jobs/j1/cancel", url.Values{}); code != 403 || !strings.Contains(body, "CSRF") {
		t.Fatalf("no token: %d\n%s", code, body)
	}
	if code, _, _ := f.post("jobs/j1/cancel", url.Values{"csrf": {tok + "x"}}); code != 403 {
		t.Fatalf("a wrong token: %d", code)
	}
	// Another browser session's token is no good here.
	other := newFixture(t, nil)
	if code, _, _ := f.post("jobs/j1/cancel", url.Values{"csrf": {other.csrf("publish")}}); code != 403 {
		t.Fatalf("another session's token: %d", code)
	}
	req, _ := http.NewRequest(http.MethodPost, f.url+"jobs/j1/cancel", strings.NewReader(url.Values{"csrf": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := f.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("a cross-site request with the right token: %d", resp.StatusCode)
	}
	if j, _ := f.cloud.Jobs.DescribeJob("j1"); j.Status != jobsvc.JobInProgress {
		t.Fatalf("a refused request changed the job: %s", j.Status)
	}
	code, loc, body := f.post("jobs/j1/cancel", url.Values{"csrf": {tok}, "comment": {"not now"}})
	if code != http.StatusSeeOther || !strings.HasSuffix(loc, "/jobs/j1") {
		t.Fatalf("cancel: %d %q\n%s", code, loc, body)
	}
	if j, _ := f.cloud.Jobs.DescribeJob("j1"); j.Status != jobsvc.JobCanceled || j.Comment != "not now" {
		t.Fatalf("after cancel: %s %q", j.Status, j.Comment)
	}
}

// TestCancelForceAndDelete: cancel leaves a device that is updating alone
// unless forced; delete wants the job id typed.
func TestCancelForceAndDelete(t *testing.T) {
	f := newFixture(t, nil)
	f.job("j1", "dev-1", "dev-2")
	f.report("dev-1", "j1", `{"status":"IN_PROGRESS"}`)
	tok := f.csrf("jobs/j1/cancel")
	if code, _, _ := f.post("jobs/j1/cancel", url.Values{"csrf": {tok}}); code != http.StatusSeeOther {
		t.Fatalf("cancel: %d", code)
	}
	if x, _ := f.cloud.Jobs.DescribeExecution("j1", "dev-1"); x.Status != iotjobs.StatusInProgress {
		t.Fatalf("without force the updating device's execution became %s", x.Status)
	}
	if code, _, _ := f.post("jobs/j1/cancel", url.Values{"csrf": {tok}, "force": {"on"}}); code != http.StatusSeeOther {
		t.Fatalf("cancel with force: %d", code)
	}
	if x, _ := f.cloud.Jobs.DescribeExecution("j1", "dev-1"); x.Status != iotjobs.StatusCanceled {
		t.Fatalf("with force the updating device's execution is %s", x.Status)
	}
	code, _, body := f.post("jobs/j1/delete", url.Values{"csrf": {tok}, "confirm": {"j"}})
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "Type the job id") {
		t.Fatalf("delete without the id typed: %d\n%s", code, body)
	}
	if code, loc, _ := f.post("jobs/j1/delete", url.Values{"csrf": {tok}, "confirm": {"j1"}}); code != http.StatusSeeOther || !strings.HasSuffix(loc, "/jobs") {
		t.Fatalf("delete: %d %q", code, loc)
	}
	// The deletion is asynchronous, as on AWS: the page shows it under way,
	// then the job is gone.
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		code, body := f.get("jobs/j1")
		if code == 404 && strings.Contains(body, "does not exist") {
			break
		}
		if code != 200 || !strings.Contains(body, "Deletion in progress") || time.Now().After(deadline) {
			t.Fatalf("the deleted job's page: %d\n%s", code, body)
		}
		<-tick.C
	}
}

// TestDeviceTextEscaped: statusDetails are the device's words; they show as
// text on every page that shows them, and in the live updates.
func TestDeviceTextEscaped(t *testing.T) {
	f := newFixture(t, nil)
	f.job("j1", "dev-1")
	const hostile = `<script>alert(1)</script><img src=x onerror=alert(2)>"'`
	payload, _ := json.Marshal(map[string]any{"status": "IN_PROGRESS", "statusDetails": map[string]string{"message": hostile, "note": hostile, "state": "downloading"}})
	f.report("dev-1", "j1", string(payload))
	for _, path := range []string{"jobs/j1", "devices/dev-1", ""} {
		code, body := f.get(path)
		if code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
			t.Errorf("%s renders the device's text as markup", path)
		}
		if path != "" && !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s does not show the device's text", path)
		}
	}
	// The live stream sends the same escaped HTML.
	ev := f.openStream("jobs/j1")
	defer ev.close()
	p := ev.next("patch")
	if !strings.Contains(p, `\u0026lt;script\u0026gt;alert(1)`) || strings.Contains(p, "<script>alert") {
		t.Fatalf("the stream's patch is not escaped: %s", p)
	}
}

// stream reads a page's event stream.
type stream struct {
	t      testing.TB
	resp   *http.Response
	r      *bufio.Reader
	cancel context.CancelFunc
}

func (f *fixture) openStream(path string) *stream {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.url+path, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := f.http.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		f.t.Fatalf("stream %s: %d %s", path, resp.StatusCode, ct)
	}
	return &stream{t: f.t, resp: resp, r: bufio.NewReader(resp.Body), cancel: cancel}
}

// next returns the data of the next event of a kind (a read deadline of 30
// seconds guards the test).
func (s *stream) next(kind string) string {
	s.t.Helper()
	done := make(chan struct{})
	timer := time.AfterFunc(30*time.Second, func() { s.cancel() })
	defer func() { timer.Stop(); close(done) }()
	event := ""
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading the stream for a %q event: %v", kind, err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == kind:
			return strings.TrimPrefix(line, "data: ")
		}
	}
}

func (s *stream) close() {
	s.cancel()
	s.resp.Body.Close()
}

func patches(t *testing.T, data string) map[string]string {
	t.Helper()
	var ps []patch
	if err := json.Unmarshal([]byte(data), &ps); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range ps {
		out[p.ID] = p.HTML
	}
	return out
}

// feed is a ChangeFeed the test drives.
type feed struct{ subs chan chan Change }

func (fd *feed) Subscribe(ctx context.Context) (<-chan Change, error) {
	ch := make(chan Change, 16)
	select {
	case fd.subs <- ch:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	go func() { <-ctx.Done() }()
	return ch, nil
}

// TestLiveFromFeed: with a feed, a change is pushed to the page that shows
// it as the re-rendered row alone, and the counts; the statusDetails come
// with the change (the console reads nothing per device).
func TestLiveFromFeed(t *testing.T) {
	fd := &feed{subs: make(chan chan Change)}
	f := newFixture(t, func(c *Config) {
		c.Feed = fd
		c.PollMax = time.Hour // nothing but the feed refreshes the page
	})
	changes := <-fd.subs
	defer close(changes)
	f.job("j1", "dev-1", "dev-2")
	ev := f.openStream("jobs/j1")
	defer ev.close()
	first := patches(t, ev.next("patch"))
	if _, ok := first["job-rows"]; !ok {
		t.Fatalf("the first patch lacks the rows: %v", first)
	}
	// The change carries what the device reported: the cloud does not even
	// have it, so the row can only come from the feed.
	f.report("dev-1", "j1", `{"status":"IN_PROGRESS","statusDetails":{"state":"downloading","progress":"10"}}`)
	x, err := f.op.DescribeExecution(context.Background(), "j1", "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	x.Percent, x.Details = 42, map[string]string{"state": "downloading", "progress": "42"}
	changes <- Change{JobID: "j1", Thing: "dev-1", Execution: &x}
	got := patches(t, ev.next("patch"))
	row, ok := got["exec-dev-1"]
	if !ok || !strings.Contains(row, `value="42"`) || !strings.Contains(row, "In progress") {
		t.Fatalf("the patch for dev-1: %v", got)
	}
	if _, ok := got["exec-dev-2"]; ok {
		t.Errorf("an unchanged row was sent again: %v", got)
	}
	if s := got["job-summary"]; !strings.Contains(s, "In progress <b>1</b>") {
		t.Errorf("the counts were not refreshed: %s", s)
	}
	// A change of another job is not this page's business: the next patch
	// is this job's.
	f.job("j2", "dev-3")
	changes <- Change{JobID: "j2"}
	f.report("dev-2", "j1", `{"status":"FAILED","statusDetails":{"reason":"bad_signature"}}`)
	changes <- Change{JobID: "j1", Thing: "dev-2"}
	got = patches(t, ev.next("patch"))
	if row := got["exec-dev-2"]; !strings.Contains(row, "bad_signature") || !strings.Contains(row, "Failed") {
		t.Fatalf("dev-2's failure: %v", got)
	}
}

// TestLiveByPolling: without a feed, the page polls; its interval doubles
// from PollMin to PollMax while nothing changes.
func TestLiveByPolling(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.PollMin, c.PollMax = 20*time.Millisecond, 20*time.Millisecond })
	f.job("j1", "dev-1")
	ev := f.openStream("jobs/j1")
	defer ev.close()
	ev.next("patch")
	f.report("dev-1", "j1", `{"status":"IN_PROGRESS","statusDetails":{"state":"downloading","progress":"30"}}`)
	if row := patches(t, ev.next("patch"))["exec-dev-1"]; !strings.Contains(row, `value="30"`) {
		t.Fatalf("the poll did not bring dev-1's progress: %s", row)
	}
	for _, c := range []struct {
		cur     time.Duration
		changed bool
		want    time.Duration
	}{{2 * time.Second, false, 4 * time.Second}, {16 * time.Second, false, 30 * time.Second}, {30 * time.Second, false, 30 * time.Second},
		{30 * time.Second, true, 2 * time.Second}, {time.Second, false, 2 * time.Second}} {
		if got := nextPoll(c.cur, 2*time.Second, 30*time.Second, c.changed); got != c.want {
			t.Errorf("nextPoll(%v, changed %v) = %v, want %v", c.cur, c.changed, got, c.want)
		}
	}
}

// TestPagination: a job's executions come a page at a time, with the counts
// of all of them and a filter by status.
func TestPagination(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.PageSize = 50 })
	things := make([]string, 120)
	for i := range things {
		things[i] = fmt.Sprintf("dev-%03d", i)
	}
	if _, err := f.cloud.Jobs.CreateJob(jobsvc.JobSpec{JobID: "big", Things: things, Document: []byte(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	for _, th := range things[:7] {
		f.report(th, "big", `{"status":"SUCCEEDED"}`)
	}
	rows := regexp.MustCompile(`<tr id="exec-(dev-\d+)"`)
	_, body := f.get("jobs/big?page=3")
	got := rows.FindAllStringSubmatch(body, -1)
	if len(got) != 20 || got[0][1] != "dev-100" || !strings.Contains(body, "101–120 of 120") || !strings.Contains(body, "Page 3 of 3") {
		t.Fatalf("page 3: %d rows from %v", len(got), got[:min(len(got), 1)])
	}
	_, body = f.get("jobs/big?page=2")
	if got = rows.FindAllStringSubmatch(body, -1); len(got) != 50 || got[0][1] != "dev-050" {
		t.Fatalf("page 2: %d rows", len(got))
	}
	_, body = f.get("jobs/big?status=SUCCEEDED")
	if got = rows.FindAllStringSubmatch(body, -1); len(got) != 7 || !strings.Contains(body, "Succeeded <b>7</b>") || !strings.Contains(body, "Queued <b>113</b>") {
		t.Fatalf("filtered by SUCCEEDED: %d rows", len(got))
	}
	if code, body := f.get("jobs/big?status=DONE"); code != 400 || !strings.Contains(body, "IN_PROGRESS") {
		t.Fatalf("a bad status filter: %d", code)
	}
}

// TestPublish uploads a bad image (refused, with why), then a signed one
// (shown: version, SHA-256, key hash) and creates its job.
func TestPublish(t *testing.T) {
	f := newFixture(t, nil)
	for _, th := range []string{"dev-1", "dev-2"} {
		if _, err := f.cloud.Registry.CreateThing(th, nil); err != nil {
			t.Fatal(err)
		}
	}
	tok := f.csrf("publish")
	upload := func(name string, data []byte, token string) (int, string, string) {
		t.Helper()
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		mw.WriteField("csrf", token)
		w, _ := mw.CreateFormFile("image", name)
		w.Write(data)
		mw.Close()
		req, _ := http.NewRequest(http.MethodPost, f.url+"publish", &b)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		resp, err := f.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Location"), string(body)
	}
	if code, _, _ := upload("app.bin", []byte("x"), "forged"); code != 403 {
		t.Fatalf("an upload without the CSRF token: %d", code)
	}
	// A file of no kind awsfota knows: said at once; only devices with an
	// exec target install it, with the version the operator gives.
	code, loc, _ := upload("../../etc/notes.txt", []byte("these are not firmware"), tok)
	if code != http.StatusSeeOther {
		t.Fatalf("a plain file: %d", code)
	}
	u, _ := url.Parse(loc)
	_, body := f.get("publish?" + u.RawQuery)
	if !strings.Contains(body, "notes.txt is not an image awsfota devices install") || !strings.Contains(body, "7468657365206172") || strings.Contains(body, f.srv.cfg.UploadDir) {
		t.Fatalf("a plain file's page:\n%s", body)
	}
	if code, _, body := f.post("publish/create", url.Values{"csrf": {tok}, "upload": {u.Query().Get("upload")}, "thing": {"dev-1"}}); code != http.StatusUnprocessableEntity ||
		!strings.Contains(body, "notes.txt is not an image awsfota devices install") || !strings.Contains(body, "give the version it installs") {
		t.Fatalf("a plain file without a version: %d\n%s", code, body)
	}
	if code, _, _ := upload("empty.bin", nil, tok); code != http.StatusUnprocessableEntity {
		t.Fatalf("an empty file: %d", code)
	}
	key, err := mcuboot.GenerateKey(mcuboot.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	var img bytes.Buffer
	if _, err := mcuboot.Create(&img, bytes.NewReader(make([]byte, 5000)), 5000, mcuboot.CreateOptions{Version: mustVersion(t, "2.1.0"), Key: key, PadHeader: true}); err != nil {
		t.Fatal(err)
	}
	broken := bytes.Clone(img.Bytes())
	broken[600] ^= 1
	if code, _, body := upload("app.bin", broken, tok); code != http.StatusUnprocessableEntity || !strings.Contains(body, "starts like an MCUboot image but is not a valid one") {
		t.Fatalf("a damaged image: %d\n%s", code, body)
	}
	code, loc, _ = upload("app-2.1.0.bin", img.Bytes(), tok)
	if code != http.StatusSeeOther || !strings.Contains(loc, "publish?upload=") {
		t.Fatalf("a good image: %d %q", code, loc)
	}
	u, _ = url.Parse(loc)
	_, body = f.get("publish?" + u.RawQuery)
	for _, want := range []string{"2.1.0", fmt.Sprintf("%x", key.Public().Hash()), "ED25519", "app-2.1.0.bin", `value="dev-1"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the review page lacks %q", want)
		}
	}
	id := u.Query().Get("upload")
	if code, _, body := f.post("publish/create", url.Values{"csrf": {tok}, "upload": {id}}); code != http.StatusUnprocessableEntity || !strings.Contains(body, "at least one thing") {
		t.Fatalf("no targets: %d\n%s", code, body)
	}
	if code, _, body := f.post("publish/create", url.Values{"csrf": {tok}, "upload": {id}, "thing": {"dev-1"}, "retries": {"11"}}); code != http.StatusUnprocessableEntity || !strings.Contains(body, "Retries") {
		t.Fatalf("11 retries: %d\n%s", code, body)
	}
	code, loc, body = f.post("publish/create", url.Values{"csrf": {tok}, "upload": {id}, "thing": {"dev-1", "dev-2"}, "job-id": {"fw-210"},
		"rollout": {"5"}, "abort-percent": {"50"}, "abort-min": {"2"}, "timeout": {"30"}, "retries": {"2"}})
	if code != http.StatusSeeOther || !strings.HasSuffix(loc, "/jobs/fw-210") {
		t.Fatalf("create: %d %q\n%s", code, loc, body)
	}
	j, err := f.cloud.Jobs.DescribeJob("fw-210")
	if err != nil {
		t.Fatal(err)
	}
	if len(j.TargetThings) != 2 || j.Rollout == nil || j.Rollout.MaximumPerMinute != 5 || j.Abort == nil || j.Abort.CriteriaList[0].ThresholdPercentage != 50 ||
		j.Timeout == nil || j.Timeout.InProgressTimeoutInMinutes != 30 || j.Retry == nil || j.Retry.CriteriaList[0].NumberOfRetries != 2 {
		t.Fatalf("the job: %+v", j)
	}
	_, body = f.get("jobs/fw-210")
	for _, want := range []string{"at most 5 devices a minute", "cancel once 50% of the devices that finished failed, rejected the job or timed out (counted from 2 finished)", "30 min in progress", "2 retries when a device failed"} {
		if !strings.Contains(body, want) {
			t.Errorf("the job page's settings lack %q", want)
		}
	}
	if f.srv.uploads.get(id) != nil {
		t.Error("the upload is kept after its job was created")
	}
	obj, _, err := f.cloud.Objects.Open("firmware", "firmware/"+fmt.Sprintf("%x", sha256Of(img.Bytes()))[:12]+"/app-2.1.0.bin")
	if err != nil {
		t.Fatalf("the image in the bucket: %v", err)
	}
	obj.Close()
}

func mustVersion(t *testing.T, s string) mcuboot.Version {
	t.Helper()
	v, err := mcuboot.ParseVersion(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{"app.bin": "app.bin", "../../etc/passwd": "passwd", `C:\fw\app 1.bin`: "app_1.bin",
		"..": "image.bin", "": "image.bin", ".hidden": "hidden", "über.bin": "_ber.bin"} {
		if got := cleanName(in); got != want {
			t.Errorf("cleanName(%q) = %q, want %q", in, got, want)
		}
	}
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// FuzzCleanName: whatever name a browser sends, the file's name is one
// safe path element of letters, digits, '.', '_' and '-'.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"app.bin", "../../etc/passwd", `C:\fw\app 1.bin`, "..", "", ".hidden", "über.bin", "a/b/", strings.Repeat("x", 300), strings.Repeat("x", 50) + "." + strings.Repeat("y", 99)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := cleanName(in)
		if out == "" || len(out) > 100 || strings.HasPrefix(out, ".") {
			t.Fatalf("cleanName(%q) = %q", in, out)
		}
		for _, c := range out {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				t.Fatalf("cleanName(%q) = %q holds %q", in, out, c)
			}
		}
	})
}

// TestDetailsOfAVanishedExecution: an execution listed, then deleted before
// its details are read (a job being deleted), shows as listed; the page
// does not fail with the execution's "not found" (it did: the job's page
// answered 502 while its deletion was under way).
func TestDetailsOfAVanishedExecution(t *testing.T) {
	f := newFixture(t, nil)
	f.job("j1", "dev-1")
	f.report("dev-1", "j1", `{"status":"IN_PROGRESS"}`)
	listed := []operator.Execution{{JobID: "j1", Thing: "dev-1", Status: "IN_PROGRESS"}, {JobID: "j1", Thing: "dev-gone", Status: "IN_PROGRESS"}}
	got, err := f.srv.withDetails(context.Background(), "j1", listed)
	if err != nil {
		t.Fatalf("an execution gone since the listing failed the page: %v", err)
	}
	if len(got) != 2 || got[1].Thing != "dev-gone" || got[1].Status != "IN_PROGRESS" {
		t.Fatalf("%+v", got)
	}
	if got[0].Thing != "dev-1" || got[0].VersionNumber == 0 {
		t.Fatalf("the execution still there was not read: %+v", got[0])
	}
}

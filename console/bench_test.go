package console

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/awsfota/awsfota/cloud/jobsvc"
)

// bigJob makes a job of n executions on the fixture's cloud: the first
// page's devices are downloading (their statusDetails must be read), some
// further ones succeeded or failed, the rest are queued.
func bigJob(tb testing.TB, f *fixture, n int) (queued int) {
	tb.Helper()
	things := make([]string, n)
	for i := range things {
		things[i] = fmt.Sprintf("dev-%05d", i)
	}
	if _, err := f.cloud.Jobs.CreateJob(jobsvc.JobSpec{JobID: "big", Things: things, Document: []byte(`{"operation":"app_fw_update"}`)}); err != nil {
		tb.Fatal(err)
	}
	for i, th := range things[:min(n, 400)] {
		switch {
		case i < 100:
			f.report(th, "big", fmt.Sprintf(`{"status":"IN_PROGRESS","statusDetails":{"state":"downloading","progress":"%d","bytes":"%d","size":"409600"}}`, i, i*4096))
		case i < 300:
			f.report(th, "big", `{"status":"SUCCEEDED","statusDetails":{"state":"succeeded","fwversion":"1.0.1","from":"1.0.0"}}`)
		default:
			f.report(th, "big", `{"status":"FAILED","statusDetails":{"reason":"download_failed","message":"the server answered 403"}}`)
		}
	}
	return n - min(n, 400)
}

// BenchmarkJobPageFirstView measures the first view of a job's page: a
// console with nothing cached reads the job's counts (aggregated by the Jobs
// service), one page of executions and the statusDetails of its 50 rows,
// over the AWS SDK against the local cloud, and renders it. The page of a
// job with 10 000 executions must show in under a second, and cost about
// what the page of a job with 100 does (the anchor, in the same run).
func BenchmarkJobPageFirstView(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		b.Run(fmt.Sprintf("executions=%d", n), func(b *testing.B) {
			f := newFixture(b, nil)
			queued := bigJob(b, f, n)
			rows := regexp.MustCompile(`<tr id="exec-`)
			for b.Loop() {
				b.StopTimer()
				srv, err := New(Config{Client: f.op, UploadDir: b.TempDir()}) // a cold cache
				if err != nil {
					b.Fatal(err)
				}
				ts := httptest.NewServer(srv)
				b.StartTimer()
				resp, err := http.Get(ts.URL + "/jobs/big")
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				b.StopTimer()
				if resp.StatusCode != 200 || len(rows.FindAllIndex(body, -1)) != 50 || queued > 0 && !strings.Contains(string(body), fmt.Sprintf("Queued <b>%d</b>", queued)) {
					b.Fatalf("the page: %d, %d rows", resp.StatusCode, len(rows.FindAllIndex(body, -1)))
				}
				srv.Close()
				ts.Close()
				http.DefaultTransport.(*http.Transport).CloseIdleConnections()
				b.StartTimer()
			}
		})
	}
}

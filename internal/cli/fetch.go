package cli

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/awsfota/awsfota/device/download"
	"github.com/spf13/cobra"
)

func fetchCmd(e *env) *cobra.Command {
	var (
		out, caFile     string
		retries         int
		fresh, quiet    bool
		noSync          bool
		readTimeoutSecs int
		minRate         int64
		minRateWindow   int
	)
	cmd := &cobra.Command{
		Use:   "fetch URL -o FILE",
		Short: "Download a file with the device's resumable downloader",
		Long: `fetch downloads URL to FILE with the same downloader the device agent uses: one
streaming request per attempt, resumption with Range after a cut, redirects,
servers that ignore Range or omit Content-Range, retries with backoff.

The download goes to FILE.part; if fetch is interrupted, running it again
resumes where it stopped (unless the object changed, which restarts it).`,
		Args: exactArgs(1, "one URL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("fetch needs -o FILE")
			}
			var roots *x509.CertPool
			if caFile != "" {
				b, err := os.ReadFile(caFile)
				if err != nil {
					return err
				}
				roots = x509.NewCertPool()
				if !roots.AppendCertsFromPEM(b) {
					return usagef("--ca %s holds no PEM certificate", caFile)
				}
			}
			return runFetch(e, args[0], out, download.Config{RootCAs: roots, Retries: retries,
				ReadTimeout: secs(readTimeoutSecs), UserAgent: "awsfota/" + version(),
				MinRate: minRate, RateWindow: secs(minRateWindow)}, fresh, quiet, noSync)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to `FILE`")
	cmd.Flags().StringVar(&caFile, "ca", "", "trust the CA certificates in `PEM` for HTTPS (default: the system roots)")
	cmd.Flags().IntVar(&retries, "retries", 0, "failed attempts in a row without progress before giving up (default 8)")
	cmd.Flags().IntVar(&readTimeoutSecs, "read-timeout", 0, "seconds without a byte before an attempt is retried (default 30)")
	cmd.Flags().Int64Var(&minRate, "min-rate", 0, "retry an attempt slower than `BYTES` a second over --min-rate-window (such attempts count as failures; default: no minimum)")
	cmd.Flags().IntVar(&minRateWindow, "min-rate-window", 0, "`SECONDS` over which --min-rate is measured (default 60)")
	cmd.Flags().BoolVar(&fresh, "no-resume", false, "start over even if FILE.part exists")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing but errors")
	cmd.Flags().BoolVar(&noSync, "no-sync", false, "do not fsync FILE before renaming it into place (faster; a power cut may then lose it)")
	return cmd
}

// partMeta is what FILE.part.json keeps to resume: the object's ETag.
type partMeta struct {
	URL  string `json:"url"`
	ETag string `json:"etag"`
}

// fileSink appends to a file; Restart truncates it.
type fileSink struct{ f *os.File }

func (s *fileSink) Write(p []byte) (int, error) { return s.f.Write(p) }
func (s *fileSink) Restart() error {
	if err := s.f.Truncate(0); err != nil {
		return err
	}
	_, err := s.f.Seek(0, io.SeekStart)
	return err
}

func runFetch(e *env, url, out string, cfg download.Config, fresh, quiet, noSync bool) error {
	part, metaPath := out+".part", out+".part.json"
	var meta partMeta
	if b, err := os.ReadFile(metaPath); err == nil && !fresh {
		json.Unmarshal(b, &meta)
	}
	flags := os.O_RDWR | os.O_CREATE
	if fresh || meta.URL != url {
		flags |= os.O_TRUNC
		meta = partMeta{URL: url}
	}
	f, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	offset, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if offset > 0 && !quiet {
		fmt.Fprintf(e.errOut, "resuming at %d bytes\n", offset)
	}
	var bar *progress
	if !quiet {
		bar = e.progress(out, -1)
	}
	saveMeta := func() {
		b, _ := json.Marshal(meta)
		os.WriteFile(metaPath, b, 0o644)
	}
	d := download.New(cfg)
	defer d.CloseIdleConnections()
	start := time.Now()
	res, err := d.Fetch(e.ctx, download.Request{URL: url, Offset: offset, ETag: meta.ETag, OnProgress: func(p download.Progress) {
		meta.ETag = p.ETag
		if p.Total > 0 {
			bar.SetTotal(p.Total)
		}
		bar.Set(p.Offset)
	}}, &fileSink{f})
	bar.Done()
	if err != nil {
		meta.ETag = res.ETag
		saveMeta()
		if errors.Is(err, e.ctx.Err()) && e.ctx.Err() != nil {
			fmt.Fprintf(e.errOut, "interrupted at %d bytes; run the same command again to resume\n", res.Size)
			return exitCode(exitInterrupted)
		}
		return fmt.Errorf("%w (%d bytes kept in %s for a later resume)", err, res.Size, part)
	}
	if !noSync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(part, out); err != nil {
		return err
	}
	os.Remove(metaPath)
	if !quiet {
		secs := time.Since(start).Seconds()
		fmt.Fprintf(e.out, "%s: %d bytes in %.2fs (%.1f MB/s), %d request(s), %d restart(s), %d bytes over the network\n",
			out, res.Size, secs, float64(res.Fetched)/1e6/max(secs, 1e-9), res.Attempts, res.Restarts, res.Fetched)
	}
	return nil
}

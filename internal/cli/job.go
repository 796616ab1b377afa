package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/awsfota/awsfota/operator"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

func jobCmd(e *env) *cobra.Command {
	var t target
	cmd := &cobra.Command{Use: "job", Short: "Publish, follow and cancel firmware jobs (AWS or the local cloud)"}
	t.flags(cmd)
	cmd.AddCommand(jobCreateCmd(e, &t), jobWatchCmd(e, &t), jobDescribeCmd(e, &t), jobListCmd(e, &t), jobCancelCmd(e, &t))
	t.explainErrors(e, cmd)
	return cmd
}

// localBucket is the bucket `job create --local` uses when none is given.
const localBucket = "awsfota-firmware"

func jobCreateCmd(e *env, t *target) *cobra.Command {
	var (
		o      operator.JobOptions
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "create --image FILE (--thing NAME... | --group NAME...)",
		Short: "Upload an image and create the job that installs it",
		Long: `create publishes a firmware image in one step: it uploads the image to S3, reads
its size, SHA-256 and version (from the MCUboot header; a delta's base from its
header), writes the job document — the seed's format plus awsfota's sha256,
size, fwversion and base, with a presigned-URL placeholder so the bucket stays
private — and creates the job with the rollout, abort, timeout and retry
settings given. It prints the job id.

A RAUC bundle (.raucb) is recognised: its manifest's compatible and version
go into the document, with component "rauc", and with --keyring KEYRING.pem
(the CA certificates the devices' RAUC trusts) its signature is verified
first, as RAUC will. Devices of another compatible refuse the job before
downloading it. Any other file (a SWUpdate .swu, a tarball) is published for
devices whose own install command takes it (the exec target) when --version
says the version it installs.

With --local DIR it publishes to the local cloud (bucket awsfota-firmware by
default, created if missing). On AWS, --bucket is required and a presigned URL
needs --presign-role (or --public for a bucket anyone may read, as the seed's
procedure). --dry-run prints the document and the calls without making them.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Image == "" {
				return usagef("job create needs --image FILE")
			}
			if len(o.Things) == 0 && len(o.Groups) == 0 {
				return usagef("job create needs targets: --thing NAME or --group NAME")
			}
			// AWS's limits, checked before anything is uploaded.
			for _, r := range []struct {
				flag      string
				v, lo, hi int
			}{
				{"--rollout-per-minute", o.RolloutPerMinute, 1, 1000},
				{"--timeout-minutes", o.TimeoutMinutes, 1, 10080},
				{"--step-timeout-minutes", o.StepTimeoutMinutes, 1, 10080},
				{"--retries", o.Retries, 1, 10},
			} {
				if r.v != 0 && (r.v < r.lo || r.v > r.hi) {
					return usagef("%s %d: use %d to %d, or 0 for none", r.flag, r.v, r.lo, r.hi)
				}
			}
			if o.AbortFailurePercent < 0 || o.AbortFailurePercent > 100 {
				return usagef("--abort-failure-percent %g: use 0 to 100", o.AbortFailurePercent)
			}
			if o.PresignExpires < time.Minute || o.PresignExpires > time.Hour {
				return usagef("--presign-expires %v: use 1m to 1h", o.PresignExpires)
			}
			c, _, err := t.client(e)
			if err != nil {
				return err
			}
			if o.Bucket == "" && t.local != "" {
				o.Bucket, o.CreateBucket = localBucket, true
			}
			if o.Bucket == "" {
				return usagef("job create needs --bucket on AWS")
			}
			var reading *progress
			if st, err := os.Stat(o.Image); err == nil {
				reading = e.progress("reading "+filepath.Base(o.Image), st.Size())
				o.Progress = func(read, _ int64) { reading.Set(read) }
			}
			p, err := c.Prepare(o)
			reading.Done()
			if err != nil {
				return err
			}
			if dryRun {
				fmt.Fprintf(e.out, "job %s\ndocument:\n", p.JobID)
				var doc any
				json.Unmarshal(p.Document, &doc)
				pretty, _ := json.MarshalIndent(doc, "  ", "  ")
				fmt.Fprintf(e.out, "  %s\ncalls:\n", pretty)
				for _, call := range p.Calls {
					fmt.Fprintf(e.out, "  %s\n", call)
				}
				return nil
			}
			bar := e.progress("uploading "+filepath.Base(o.Image), p.Size)
			res, err := c.Create(e.ctx, p, func(sent, total int64) { bar.Set(sent) })
			bar.Done()
			if err != nil {
				return err
			}
			if p.Compatible != "" {
				fmt.Fprintf(e.errOut, "RAUC bundle for %q systems, version %s", p.Compatible, orDash(p.Version))
				if p.Signer != "" {
					fmt.Fprintf(e.errOut, ", signature verified (%s)", p.Signer)
				}
				fmt.Fprintln(e.errOut)
			}
			fmt.Fprintf(e.errOut, "uploaded s3://%s/%s (%s %s, %d bytes) and created job %s\n", p.Bucket, p.Key, p.Kind, orDash(p.Version), p.Size, res.JobID)
			fmt.Fprintln(e.out, res.JobID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Image, "image", "", "the image `FILE` (MCUboot image, awsfota delta, modem image, RAUC bundle; any file with --version, for exec targets)")
	f.StringVar(&o.Keyring, "keyring", "", "verify a RAUC bundle's signature against this `KEYRING.pem` (the devices' RAUC keyring)")
	f.StringSliceVar(&o.Things, "thing", nil, "target thing `NAME` (repeatable)")
	f.StringSliceVar(&o.Groups, "group", nil, "target thing group `NAME` (repeatable)")
	f.StringVar(&o.JobID, "job-id", "", "the job `id` (default: fota-VERSION-TIME)")
	f.StringVar(&o.Bucket, "bucket", "", "S3 `bucket` for the image (local cloud default: "+localBucket+")")
	f.BoolVar(&o.CreateBucket, "create-bucket", false, "create the bucket if it does not exist")
	f.StringVar(&o.Key, "key", "", "S3 `key` (default: firmware/SHA256-PREFIX/FILE)")
	f.StringVar(&o.Version, "version", "", "the `version` devices run afterwards (default: the image's)")
	f.StringVar(&o.Component, "component", "", "`app`, `modem` or `rauc` (default: from the image)")
	f.BoolVar(&o.Public, "public", false, "write the object's plain URL (a bucket anyone may read, the seed's procedure) instead of a presigned URL")
	f.StringVar(&o.PresignRole, "presign-role", "", "IAM role `ARN` AWS IoT assumes to presign the image URL (AWS)")
	f.DurationVar(&o.PresignExpires, "presign-expires", time.Hour, "lifetime of each presigned URL (1m to 1h)")
	f.IntVar(&o.RolloutPerMinute, "rollout-per-minute", 0, "notify at most `N` devices a minute (1-1000; 0: all at once)")
	f.Float64Var(&o.AbortFailurePercent, "abort-failure-percent", 0, "cancel the rest once this `percent` of executed devices failed, timed out or rejected")
	f.IntVar(&o.AbortMinExecuted, "abort-min-executed", 1, "… but only after `N` devices finished")
	f.IntVar(&o.TimeoutMinutes, "timeout-minutes", 0, "time an execution out after `M` minutes IN_PROGRESS (1-10080; 0: never)")
	f.IntVar(&o.StepTimeoutMinutes, "step-timeout-minutes", 0, "time an execution out when its device is silent for `M` minutes (1-10080; 0: never)")
	f.IntVar(&o.Retries, "retries", 0, "re-run a failed or timed-out execution up to `N` times (0-10)")
	f.BoolVar(&o.Continuous, "continuous", false, "also update things added to the groups later")
	f.StringVar(&o.Description, "description", "", "job description")
	f.BoolVar(&dryRun, "dry-run", false, "print the document and the calls, make none")
	return cmd
}

func jobWatchCmd(e *env, t *target) *cobra.Command {
	var (
		interval, timeout time.Duration
		asJSON            bool
	)
	cmd := &cobra.Command{
		Use:   "watch JOB-ID",
		Short: "Follow a job until every execution is done",
		Long: `watch shows one line per device — status, a progress bar from the device's
statusDetails, the reason of a failure — and a summary, until every execution
has ended. It exits 0 when every execution SUCCEEDED, 1 otherwise. --json
prints the final state as JSON.`,
		Args: exactArgs(1, "one JOB-ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval <= 0 {
				return usagef("--interval %v: give a positive duration", interval)
			}
			c, _, err := t.client(e)
			if err != nil {
				return err
			}
			w := c.Watch(args[0])
			var deadline <-chan time.Time
			if timeout > 0 {
				tm := time.NewTimer(timeout)
				defer tm.Stop()
				deadline = tm.C
			}
			view := &jobView{w: e.out, tty: e.tty(e.out) && !asJSON, quiet: asJSON}
			var (
				snap  *operator.Snapshot
				wait  = interval // until the next poll
				since time.Time  // when the cloud stopped answering
			)
			for {
				s, err := w.Snapshot(e.ctx)
				switch {
				case e.ctx.Err() != nil:
					return e.ctx.Err() // interrupted: not the cloud's fault
				case err == nil:
					if !since.IsZero() {
						fmt.Fprintf(e.errOut, "the cloud answers again (after %v)\n", time.Since(since).Round(time.Second))
						since, wait = time.Time{}, interval
					}
					snap = s
					view.show(snap)
				case operator.Unreachable(err):
					// A cloud that restarts, or a network that drops, is no
					// reason to stop following the rollout: poll less often
					// until it answers again.
					if since.IsZero() {
						since = time.Now()
						fmt.Fprintf(e.errOut, "the cloud does not answer (%v); still watching: trying again with a growing delay (from %v up to %v)\n",
							unreachableCause(err), wait, maxWatchBackoff)
					}
					wait = min(2*wait, maxWatchBackoff)
				default:
					return err
				}
				if snap != nil && snap.Done {
					break
				}
				tick := time.NewTimer(wait)
				select {
				case <-e.ctx.Done():
					tick.Stop()
					return e.ctx.Err()
				case <-deadline:
					tick.Stop()
					if snap != nil {
						view.summary(snap)
					}
					return fmt.Errorf("job %s still running after %v", args[0], timeout)
				case <-tick.C:
				}
			}
			if asJSON {
				b, _ := json.MarshalIndent(snap, "", "  ")
				fmt.Fprintln(e.out, string(b))
			} else {
				view.summary(snap)
			}
			if !snap.Succeeded {
				return errSilent
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often to poll")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: never)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the final state as JSON")
	return cmd
}

// jobView draws a job's executions.
type jobView struct {
	w      io.Writer
	tty    bool
	quiet  bool
	drawn  int
	logged map[string]string
}

func (v *jobView) line(x operator.Execution, width int) string {
	bar := progressbar.NewOptions64(100, progressbar.OptionSetWriter(io.Discard), progressbar.OptionSetWidth(20),
		progressbar.OptionSetRenderBlankState(true), progressbar.OptionSetElapsedTime(false), progressbar.OptionSetPredictTime(false))
	bar.Set(x.Percent)
	s := strings.TrimLeft(bar.String(), "\r")
	if i := strings.LastIndex(s, "|"); i >= 0 {
		s = s[:i+1]
	}
	detail := x.State
	switch {
	case x.Reason != "":
		detail = x.Reason + ": " + x.Message
	case x.Status == "SUCCEEDED" && x.FWVersion != "":
		detail = "runs " + x.FWVersion
	case x.Size > 0:
		detail = fmt.Sprintf("%s %d/%d KiB", x.State, x.Bytes>>10, x.Size>>10)
	}
	return fmt.Sprintf("%-*s %-12s %s %s", width, x.Thing, x.Status, s, detail)
}

func (v *jobView) show(s *operator.Snapshot) {
	if v.quiet {
		return
	}
	width := 5
	for _, x := range s.Executions {
		width = max(width, len(x.Thing))
	}
	if v.tty {
		var b strings.Builder
		if v.drawn > 0 {
			fmt.Fprintf(&b, "\x1b[%dA", v.drawn)
		}
		for _, x := range s.Executions {
			b.WriteString("\r\x1b[2K" + v.line(x, width) + "\n")
		}
		v.drawn = len(s.Executions)
		io.WriteString(v.w, b.String())
		return
	}
	if v.logged == nil {
		v.logged = map[string]string{}
	}
	for _, x := range s.Executions {
		key := x.Status + "/" + x.State + "/" + x.Reason + "/" + fmt.Sprint(x.Percent/25)
		if v.logged[x.Thing] != key {
			v.logged[x.Thing] = key
			fmt.Fprintln(v.w, strings.TrimRight(v.line(x, width), " "))
		}
	}
}

func (v *jobView) summary(s *operator.Snapshot) {
	var parts []string
	for _, st := range []string{"QUEUED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "CANCELED", "REMOVED"} {
		if n := s.Counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, strings.ToLower(strings.ReplaceAll(st, "_", " "))))
		}
	}
	fmt.Fprintf(v.w, "job %s %s: %s\n", s.JobID, s.Status, strings.Join(parts, ", "))
}

// maxWatchBackoff bounds the delay between polls of a cloud that does not
// answer.
const maxWatchBackoff = 30 * time.Second

// unreachableCause is the last link of an SDK error chain ("connection
// refused"): the rest repeats the operation and the URL.
func unreachableCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

func jobDescribeCmd(e *env, t *target) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "describe JOB-ID",
		Short: "Show a job, its document and its executions",
		Args:  exactArgs(1, "one JOB-ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := t.client(e)
			if err != nil {
				return err
			}
			s, err := c.Watch(args[0]).Snapshot(e.ctx)
			if err != nil {
				return err
			}
			doc, err := c.JobDocument(e.ctx, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				b, _ := json.MarshalIndent(struct {
					*operator.Snapshot
					Document json.RawMessage `json:"document"`
				}{s, json.RawMessage(doc)}, "", "  ")
				fmt.Fprintln(e.out, string(b))
				return nil
			}
			rows := [][]string{{"job", s.JobID}, {"status", s.Status}}
			if s.Description != "" {
				rows = append(rows, []string{"description", s.Description})
			}
			rows = append(rows, []string{"document", doc})
			printTable(e.out, rows)
			fmt.Fprintln(e.out)
			(&jobView{w: e.out}).show(s)
			(&jobView{w: e.out}).summary(s)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func jobListCmd(e *env, t *target) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs, newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := t.client(e)
			if err != nil {
				return err
			}
			jobs, err := c.ListJobs(e.ctx)
			if err != nil {
				return err
			}
			if asJSON {
				b, _ := json.MarshalIndent(jobs, "", "  ")
				fmt.Fprintln(e.out, string(b))
				return nil
			}
			rows := [][]string{{"JOB", "STATUS", "SELECTION", "CREATED"}}
			for _, j := range jobs {
				rows = append(rows, []string{j.JobID, j.Status, j.TargetSelection, j.CreatedAt.Local().Format(time.DateTime)})
			}
			printTable(e.out, rows)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func jobCancelCmd(e *env, t *target) *cobra.Command {
	var (
		force   bool
		comment string
	)
	cmd := &cobra.Command{
		Use:   "cancel JOB-ID",
		Short: "Cancel a job (--force also stops devices already updating)",
		Args:  exactArgs(1, "one JOB-ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := t.client(e)
			if err != nil {
				return err
			}
			if err := c.CancelJob(e.ctx, args[0], force, comment); err != nil {
				return err
			}
			what := "queued executions canceled; devices already updating finish"
			if force {
				what = "every unfinished execution canceled: devices stop and erase what they fetched"
			}
			fmt.Fprintf(e.out, "job %s canceled: %s\n", args[0], what)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "also cancel IN_PROGRESS executions")
	cmd.Flags().StringVar(&comment, "comment", "", "why")
	return cmd
}

package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/mcuboot"
	"github.com/awsfota/awsfota/sim"
	"github.com/schollz/progressbar/v3"
)

// fleetView shows one line per device: a progress bar, what the device is
// doing and what the cloud sees. On a terminal the lines are redrawn in
// place; in a pipe each change is printed once, as a log line.
type fleetView struct {
	w     io.Writer
	tty   bool
	mu    sync.Mutex
	order []string
	rows  map[string]*deviceRow
	drawn int
	stopC chan struct{}
	done  chan struct{}
}

type deviceRow struct {
	bar    *progressbar.ProgressBar
	total  int64
	bytes  int64
	device string // what the device says it is doing
	cloud  string // the execution as the cloud sees it
	modem  string // the modem firmware at the last boot
	logged string
}

func newFleetView(w io.Writer, things []string) *fleetView {
	v := &fleetView{w: w, tty: tty(w), rows: map[string]*deviceRow{}, order: things}
	width := 0
	for _, th := range things {
		width = max(width, len(th))
	}
	for _, th := range things {
		v.rows[th] = &deviceRow{device: "waiting for a job", cloud: "-",
			bar: progressbar.NewOptions64(1, progressbar.OptionSetWriter(io.Discard), progressbar.OptionSetWidth(24),
				progressbar.OptionSetDescription(fmt.Sprintf("%-*s", width, th)), progressbar.OptionThrottle(0),
				progressbar.OptionSetPredictTime(false), progressbar.OptionSetElapsedTime(false),
				progressbar.OptionSetRenderBlankState(true))}
	}
	return v
}

func (v *fleetView) event(thing string, e agent.AppEvent) {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := v.rows[thing]
	if r == nil {
		return
	}
	switch e.Kind {
	case agent.EventStart:
		r.device = "downloading"
		if e.Total > 0 {
			r.total = e.Total
			r.bar.ChangeMax64(e.Total)
		}
	case agent.EventProgress:
		if e.Total > 0 && e.Total != r.total {
			r.total = e.Total
			r.bar.ChangeMax64(e.Total)
		}
		r.bytes = e.Bytes
		r.bar.Set64(e.Bytes)
		if e.Percent >= 100 {
			r.device = "verifying"
		}
	case agent.EventDone:
		r.device = "verified " + e.Version + ", rebooting into it"
	case agent.EventError:
		r.device = "failed: " + e.Reason
	case agent.EventCanceled:
		r.device = "job canceled: " + e.Message
	case agent.EventCompleted:
		r.device = "reported " + string(e.Status)
	}
	v.logLocked(thing, r)
}

func (v *fleetView) boot(thing string, res sim.BootResult, run dfu.Running) {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := v.rows[thing]
	if r == nil {
		return
	}
	modem := res.ModemVersion != "" && r.modem != "" && res.ModemVersion != r.modem
	switch {
	case res.Refused != nil:
		r.device = "bootloader refused the image"
	case res.Swap == mcuboot.SwapTest:
		r.device = "booted " + run.Version + " on trial: self-test, confirm"
	case res.Swap == mcuboot.SwapRevert:
		r.device = "bootloader reverted to " + run.Version
	case res.ModemRefused != nil:
		r.device = "the modem refused its update"
	case modem:
		r.device = "modem restarted on " + res.ModemVersion
	default:
		r.modem = res.ModemVersion
		return
	}
	r.modem = res.ModemVersion
	v.logLocked(thing, r)
}

func (v *fleetView) cloud(execs []jobsvc.Execution) { v.cloudLabeled(execs, "") }

// cloudLabeled shows executions with a label (the job they belong to).
func (v *fleetView) cloudLabeled(execs []jobsvc.Execution, label string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, x := range execs {
		r := v.rows[x.Thing]
		if r == nil {
			continue
		}
		c := label + string(x.Status)
		if s := x.StatusDetails["state"]; s != "" && !x.Status.Terminal() {
			c += " " + s
		}
		if c != r.cloud {
			r.cloud = c
			v.logLocked(x.Thing, r)
		}
	}
}

// logLocked prints a changed row when not on a terminal.
func (v *fleetView) logLocked(thing string, r *deviceRow) {
	if v.tty {
		return
	}
	line := fmt.Sprintf("%s: %s (cloud: %s)", thing, r.device, r.cloud)
	if line != r.logged {
		r.logged = line
		fmt.Fprintln(v.w, line)
	}
}

func (r *deviceRow) line() string {
	s := strings.TrimLeft(r.bar.String(), "\r")
	if i := strings.LastIndex(s, "|"); i >= 0 {
		s = s[:i+1] // drop the bar's own rate: the row says more
	}
	count := ""
	if r.total > 0 {
		count = fmt.Sprintf(" %4d/%d KiB", r.bytes>>10, r.total>>10)
	}
	return fmt.Sprintf("%s%s  %-40s cloud: %s", s, count, r.device, r.cloud)
}

func (v *fleetView) start() {
	if !v.tty {
		return
	}
	v.stopC, v.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(v.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			v.draw()
			select {
			case <-v.stopC:
				return
			case <-t.C:
			}
		}
	}()
}

func (v *fleetView) stop() {
	if v.stopC != nil {
		close(v.stopC)
		<-v.done
		v.draw()
	}
}

func (v *fleetView) draw() {
	v.mu.Lock()
	defer v.mu.Unlock()
	var b strings.Builder
	if v.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", v.drawn)
	}
	for _, th := range v.order {
		b.WriteString("\r\x1b[2K")
		b.WriteString(v.rows[th].line())
		b.WriteByte('\n')
	}
	v.drawn = len(v.order)
	io.WriteString(v.w, b.String())
}

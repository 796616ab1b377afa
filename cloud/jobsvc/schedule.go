package jobsvc

import (
	"fmt"
	"strings"
	"time"
)

// SchedulingConfig is CreateJob's schedulingConfig: when the rollout
// starts and ends, what happens at the end, and the recurring maintenance
// windows outside which no execution is released. Times are UTC.
type SchedulingConfig struct {
	// StartTime and EndTime are "YYYY-MM-DDTHH:MM" (UTC; seconds and a
	// trailing Z or offset are accepted too).
	StartTime   string `json:"startTime,omitempty"`
	EndTime     string `json:"endTime,omitempty"`
	EndBehavior string `json:"endBehavior,omitempty"`
	// MaintenanceWindows: each starts at every time its cron expression
	// names and lasts DurationInMinutes.
	MaintenanceWindows []MaintenanceWindow `json:"maintenanceWindows,omitempty"`
}

// MaintenanceWindow is one recurring window of a schedule.
type MaintenanceWindow struct {
	StartTime         string `json:"startTime"`
	DurationInMinutes int64  `json:"durationInMinutes"`
}

// End behaviours of a schedule.
const (
	EndStopRollout = "STOP_ROLLOUT"
	EndCancel      = "CANCEL"
	EndForceCancel = "FORCE_CANCEL"
)

// Scheduling limits, as AWS documents them.
const (
	// MinScheduleLead: startTime and endTime at least 30 minutes from now,
	// and endTime at least 30 minutes after startTime.
	MinScheduleLead = 30 * time.Minute
	// MaxStartAhead: startTime at most a year ahead.
	MaxStartAhead = 365 * 24 * time.Hour
	// MaxEndAhead: endTime at most two years ahead (and after startTime).
	MaxEndAhead = 2 * 365 * 24 * time.Hour
	// MaxWindowMinutes bounds a maintenance window's duration.
	MaxWindowMinutes = 1430
	// ScheduledRolloutsShown is how many upcoming window starts DescribeJob
	// shows (scheduledJobRollouts).
	ScheduledRolloutsShown = 7
)

// scheduleTimeLayouts are the forms a schedule's times may take.
var scheduleTimeLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02T15:04Z07:00", time.RFC3339, "2006-01-02 15:04"}

// ParseScheduleTime reads a schedule's start or end time (UTC unless an
// offset is given).
func ParseScheduleTime(s string) (time.Time, error) {
	for _, l := range scheduleTimeLayouts {
		if t, err := time.Parse(l, strings.TrimSpace(s)); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time: use YYYY-MM-DDTHH:MM (UTC)", s)
}

// FormatScheduleTime writes a time the way schedules show it.
func FormatScheduleTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04") }

// schedule is a SchedulingConfig read and checked.
type schedule struct {
	start, end  time.Time // zero when not given
	endBehavior string
	windows     []window
}

type window struct {
	cron     *Cron
	duration time.Duration
}

// readSchedule reads a schedulingConfig's times, end behaviour and
// windows, without the rules that depend on the time of the request.
// Errors wrap ErrInvalid.
func readSchedule(c *SchedulingConfig) (schedule, error) {
	var s schedule
	if c == nil {
		return s, nil
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: schedulingConfig: "+format, append([]any{ErrInvalid}, args...)...)
	}
	var err error
	if c.StartTime != "" {
		if s.start, err = ParseScheduleTime(c.StartTime); err != nil {
			return s, bad("startTime: %v", err)
		}
	}
	if c.EndTime != "" {
		if s.end, err = ParseScheduleTime(c.EndTime); err != nil {
			return s, bad("endTime: %v", err)
		}
	}
	switch c.EndBehavior {
	case "":
		s.endBehavior = EndStopRollout
	case EndStopRollout, EndCancel, EndForceCancel:
		s.endBehavior = c.EndBehavior
	default:
		return s, bad("endBehavior %q: use STOP_ROLLOUT, CANCEL or FORCE_CANCEL", c.EndBehavior)
	}
	if s.windows, err = parseWindows(c.MaintenanceWindows); err != nil {
		return s, bad("%v", err)
	}
	return s, nil
}

// parseSchedule reads a schedulingConfig and checks it against AWS's rules
// for a job created at now. Errors wrap ErrInvalid.
func parseSchedule(c *SchedulingConfig, now time.Time) (schedule, error) {
	s, err := readSchedule(c)
	if err != nil || c == nil {
		return s, err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: schedulingConfig: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if !s.start.IsZero() {
		if s.start.Before(now.Add(MinScheduleLead)) {
			return s, bad("startTime %s must be at least 30 minutes from now (%s UTC)", FormatScheduleTime(s.start), FormatScheduleTime(now))
		}
		if s.start.After(now.Add(MaxStartAhead)) {
			return s, bad("startTime %s is more than a year ahead", FormatScheduleTime(s.start))
		}
	}
	if !s.end.IsZero() {
		from := now
		if !s.start.IsZero() {
			from = s.start
		}
		if s.end.Before(from.Add(MinScheduleLead)) {
			return s, bad("endTime %s must be at least 30 minutes after the start (%s UTC)", FormatScheduleTime(s.end), FormatScheduleTime(from))
		}
		if s.end.After(now.Add(MaxEndAhead)) {
			return s, bad("endTime %s is more than two years ahead", FormatScheduleTime(s.end))
		}
	}
	return s, nil
}

// parseWindows reads maintenance windows.
func parseWindows(ws []MaintenanceWindow) ([]window, error) {
	var out []window
	for i, w := range ws {
		if w.DurationInMinutes < 1 || w.DurationInMinutes > MaxWindowMinutes {
			return nil, fmt.Errorf("maintenanceWindows[%d].durationInMinutes %d: use 1..%d", i, w.DurationInMinutes, MaxWindowMinutes)
		}
		c, err := ParseCron(w.StartTime)
		if err != nil {
			return nil, fmt.Errorf("maintenanceWindows[%d].startTime: %v", i, err)
		}
		out = append(out, window{cron: c, duration: time.Duration(w.DurationInMinutes) * time.Minute})
	}
	return out, nil
}

// openWindow reports whether now is inside one of the windows, and when the
// window that holds it closes. With no windows it is always open.
func openWindow(ws []window, now time.Time) (bool, time.Time) {
	if len(ws) == 0 {
		return true, time.Time{}
	}
	open, closes := false, time.Time{}
	for _, w := range ws {
		// The earliest start after now-duration: if it is not after now,
		// now is inside that occurrence.
		st, ok := w.cron.Next(now.Add(-w.duration + time.Minute))
		if ok && !st.After(now) {
			if end := st.Add(w.duration); !open || end.After(closes) {
				closes = end
			}
			open = true
		}
	}
	return open, closes
}

// nextWindow returns when the next window opens after t (zero: never).
func nextWindow(ws []window, t time.Time) time.Time {
	var next time.Time
	for _, w := range ws {
		if st, ok := w.cron.Next(t); ok && (next.IsZero() || st.Before(next)) {
			next = st
		}
	}
	return next
}

// upcomingRollouts lists the next n window starts at or after from.
func upcomingRollouts(ws []window, from time.Time, n int) []time.Time {
	var out []time.Time
	t := from
	for len(out) < n {
		st := nextWindow(ws, t)
		if st.IsZero() {
			break
		}
		out = append(out, st)
		t = st.Add(time.Minute)
	}
	return out
}

// releaseWake decides when a rollout that still has things waiting looks
// again, given the windows: the rollout's own wake if a window is open
// then, else the next window start.
func releaseWake(ws []window, wake time.Time) time.Time {
	if len(ws) == 0 || wake.IsZero() {
		return wake
	}
	if open, _ := openWindow(ws, wake); open {
		return wake
	}
	return nextWindow(ws, wake)
}

package jobsvc

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseCron(t *testing.T) {
	for _, c := range []struct {
		expr string
		err  string // a part of the error, "" when valid
	}{
		{"cron(0 2 ? * SUN *)", ""},
		{"0 2 ? * SUN *", ""},
		{"cron(*/15 * * * ? *)", ""},
		{"cron(0 8-17/3 ? * MON-FRI 2026-2030)", ""},
		{"cron(0,30 1 1,15 JAN,jul ? *)", ""},
		{"cron(5 4 * * ? 2026)", ""},
		{"cron(0 2 ? * SUN *", "no closing parenthesis"},
		{"cron(0 2 ? * SUN)", "has 5 fields"},
		{"", "has 0 fields"},
		{"cron(60 2 ? * SUN *)", "out of range 0-59"},
		{"cron(0 24 ? * SUN *)", "out of range 0-23"},
		{"cron(0 2 0 * ? *)", "out of range 1-31"},
		{"cron(0 2 ? * ? *)", "cannot both be ?"},
		{"cron(0 2 ? 13 MON *)", "out of range 1-12"},
		{"cron(0 2 ? * 8 *)", "out of range 1-7"},
		{"cron(0 2 L * ? *)", "not supported"},
		{"cron(0 2 15W * ? *)", "not supported"},
		{"cron(0 2 ? * 6#3 *)", "not supported"},
		{"cron(0 2 ? * 6L *)", "not supported"},
		{"cron(x 2 ? * SUN *)", "not a number"},
		{"cron(0/0 2 ? * SUN *)", "step"},
		{"cron(10-5 2 ? * SUN *)", "backwards"},
		{"cron(0 2 ? * SUN 1969)", "out of range"},
		{"cron(0 2 ?/2 * SUN *)", "no step"},
		{"cron(0 2 ,, * ? *)", "not a number"},
	} {
		_, err := ParseCron(c.expr)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.expr, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want one saying %q", c.expr, err, c.err)
		}
	}
}

func TestCronNext(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse("2006-01-02 15:04:05", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		expr, from, want string
	}{
		// 2026-11-29 is a Sunday.
		{"cron(0 2 ? * SUN *)", "2026-11-29 01:00:00", "2026-11-29 02:00:00"},
		{"cron(0 2 ? * SUN *)", "2026-11-29 02:00:00", "2026-11-29 02:00:00"},
		{"cron(0 2 ? * SUN *)", "2026-11-29 02:00:01", "2026-12-06 02:00:00"},
		{"cron(*/15 * * * ? *)", "2026-11-29 10:07:00", "2026-11-29 10:15:00"},
		{"cron(0 9 ? * MON-FRI *)", "2026-11-28 12:00:00", "2026-11-30 09:00:00"},
		{"cron(30 23 31 * ? *)", "2026-11-01 00:00:00", "2026-12-31 23:30:00"},
		{"cron(0 0 29 FEB ? *)", "2026-03-01 00:00:00", "2028-02-29 00:00:00"},
		{"cron(0 0 1 JAN ? 2030)", "2026-03-01 00:00:00", "2030-01-01 00:00:00"},
		// Both day fields restricted: either matches.
		{"cron(0 0 1 * MON *)", "2026-11-28 00:00:00", "2026-11-30 00:00:00"},
	} {
		cr, err := ParseCron(c.expr)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := cr.Next(at(c.from))
		if !ok || !got.Equal(at(c.want)) {
			t.Errorf("%s from %s: %v %v, want %s", c.expr, c.from, got, ok, c.want)
		}
	}
	cr, _ := ParseCron("cron(0 0 1 JAN ? 2020)")
	if _, ok := cr.Next(at("2026-01-01 00:00:00")); ok {
		t.Error("a past year has a next time")
	}
}

func FuzzParseCron(f *testing.F) {
	for _, s := range []string{"cron(0 2 ? * SUN *)", "*/15 * * * ? *", "cron(0 8-17/3 ? * MON-FRI 2026-2030)", "cron(0,30 1 1,15 JAN,jul ? *)",
		"cron(0 2 L * ? *)", "cron(0 2 ? * 6#3 *)", "cron(", ")", "0 0 31 FEB ? *"} {
		f.Add(s)
	}
	from := time.Date(2026, 11, 29, 10, 7, 30, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCron(s)
		if err != nil {
			if c != nil {
				t.Fatal("an error with a result")
			}
			return
		}
		next, ok := c.Next(from)
		if !ok {
			return
		}
		if next.Before(from) || next.Second() != 0 || next.Location() != time.UTC {
			t.Fatalf("%q: next %v from %v", s, next, from)
		}
		// The time found matches: it is its own next.
		if again, ok := c.Next(next); !ok || !again.Equal(next) {
			t.Fatalf("%q: next %v is not a match (%v)", s, next, again)
		}
	})
}

func TestParseSchedule(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		cfg SchedulingConfig
		err string
	}{
		{SchedulingConfig{StartTime: "2026-11-29T10:30"}, ""},
		{SchedulingConfig{StartTime: "2026-11-29T10:30:00Z", EndTime: "2026-11-29T11:00", EndBehavior: EndForceCancel}, ""},
		{SchedulingConfig{EndTime: "2026-11-29T10:30"}, ""},
		{SchedulingConfig{MaintenanceWindows: []MaintenanceWindow{{"cron(0 2 ? * SUN *)", 1430}}}, ""},
		{SchedulingConfig{StartTime: "2026-11-29T10:29"}, "at least 30 minutes from now"},
		{SchedulingConfig{StartTime: "2027-11-30T10:00"}, "more than a year ahead"},
		{SchedulingConfig{StartTime: "2026-11-29T11:00", EndTime: "2026-11-29T11:29"}, "at least 30 minutes after"},
		{SchedulingConfig{EndTime: "2029-01-01T00:00"}, "more than two years ahead"},
		{SchedulingConfig{StartTime: "tomorrow"}, "is not a time"},
		{SchedulingConfig{EndBehavior: "STOP"}, "endBehavior"},
		{SchedulingConfig{MaintenanceWindows: []MaintenanceWindow{{"cron(0 2 ? * SUN *)", 1431}}}, "durationInMinutes"},
		{SchedulingConfig{MaintenanceWindows: []MaintenanceWindow{{"at 2am", 60}}}, "startTime"},
	} {
		_, err := parseSchedule(&c.cfg, now)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%+v: %v", c.cfg, err)
		case c.err != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%+v: error %v, want one saying %q", c.cfg, err, c.err)
		}
	}
}

func TestOpenWindow(t *testing.T) {
	ws, err := parseWindows([]MaintenanceWindow{{"cron(0 2 ? * SUN *)", 90}, {"cron(0 12 * * ? *)", 30}})
	if err != nil {
		t.Fatal(err)
	}
	sun := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC) // a Sunday
	for _, c := range []struct {
		at     time.Duration // after Sunday 00:00
		open   bool
		closes time.Duration
	}{
		{time.Hour, false, 0},
		{2 * time.Hour, true, 3*time.Hour + 30*time.Minute},
		{3*time.Hour + 29*time.Minute, true, 3*time.Hour + 30*time.Minute},
		{3*time.Hour + 30*time.Minute, false, 0},
		{12*time.Hour + 10*time.Minute, true, 12*time.Hour + 30*time.Minute},
		{24*time.Hour + 2*time.Hour, false, 0}, // Monday 02:00
		{24*time.Hour + 12*time.Hour, true, 24*time.Hour + 12*time.Hour + 30*time.Minute},
	} {
		open, closes := openWindow(ws, sun.Add(c.at))
		if open != c.open || open && !closes.Equal(sun.Add(c.closes)) {
			t.Errorf("at +%v: open %v closes %v", c.at, open, closes)
		}
	}
	if n := nextWindow(ws, sun.Add(time.Hour)); !n.Equal(sun.Add(2 * time.Hour)) {
		t.Error(n)
	}
	if got := upcomingRollouts(ws, sun, 3); len(got) != 3 || !got[0].Equal(sun.Add(2*time.Hour)) || !got[2].Equal(sun.Add(36*time.Hour)) {
		t.Error(got)
	}
	if open, _ := openWindow(nil, sun); !open {
		t.Error("no windows must mean always open")
	}
}

func TestScheduleEndStopsTheRollout(t *testing.T) {
	f := newFixture(t)
	f.create(JobSpec{JobID: "j", Things: []string{"a", "b", "c"}, Rollout: &RolloutConfig{MaximumPerMinute: 1},
		Scheduling: &SchedulingConfig{EndTime: FormatScheduleTime(t0.Add(30 * time.Minute))}})
	f.tick(time.Minute)
	if got := f.statuses("j", "a", "b", "c"); got != "QUEUED,QUEUED,-" {
		t.Fatal(got)
	}
	// The end time comes before the rollout reaches c (STOP_ROLLOUT, the
	// default): c never gets an execution; the job completes when the
	// executions it has end.
	f.tick(29 * time.Minute)
	if got := f.statuses("j", "a", "b", "c"); got != "QUEUED,QUEUED,-" {
		t.Fatal(got)
	}
	if j, _ := f.s.DescribeJob("j"); j.Status != JobInProgress || !j.RolloutStopped {
		t.Fatalf("%+v", j)
	}
	f.update("a", "j", `{"status":"SUCCEEDED"}`)
	f.update("b", "j", `{"status":"SUCCEEDED"}`)
	if j, _ := f.s.DescribeJob("j"); j.Status != JobCompleted {
		t.Fatalf("%+v", j)
	}
}

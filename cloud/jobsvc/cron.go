package jobsvc

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Cron is a parsed maintenance-window start time: an EventBridge-style cron
// expression, cron(MINUTES HOURS DAY-OF-MONTH MONTH DAY-OF-WEEK YEAR), read
// in UTC. The subset the local cloud understands: *, ?, single values,
// lists (a,b), ranges (a-b), steps (*/n, a/n, a-b/n), month names JAN-DEC
// and day names SUN-SAT (day-of-week 1-7 is SUN-SAT, as in EventBridge).
// Not understood (refused with an error saying so): L, W and #.
type Cron struct {
	minute, hour, dom, month, dow, year []bool
	domAny, dowAny                      bool // the field was * or ?
	src                                 string
}

// String returns the expression as it was given.
func (c *Cron) String() string { return c.src }

var (
	monthNames = []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}
	dayNames   = []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}
)

// Cron years this parser accepts.
const (
	cronMinYear = 1970
	cronMaxYear = 2199
)

// ParseCron reads a cron expression, with or without the cron( ) around it.
func ParseCron(s string) (*Cron, error) {
	src := s
	body := strings.TrimSpace(s)
	if strings.HasPrefix(body, "cron(") {
		if !strings.HasSuffix(body, ")") {
			return nil, fmt.Errorf("cron expression %q has no closing parenthesis", src)
		}
		body = body[len("cron(") : len(body)-1]
	}
	f := strings.Fields(body)
	if len(f) != 6 {
		return nil, fmt.Errorf("cron expression %q has %d fields; use cron(MINUTES HOURS DAY-OF-MONTH MONTH DAY-OF-WEEK YEAR), e.g. cron(0 2 ? * SUN *)", src, len(f))
	}
	c := &Cron{src: src}
	var err error
	parse := func(i int, name string, lo, hi int, names []string, nameBase int) []bool {
		if err != nil {
			return nil
		}
		var set []bool
		set, err = parseCronField(f[i], lo, hi, names, nameBase)
		if err != nil {
			err = fmt.Errorf("cron expression %q: %s field %q: %w", src, name, f[i], err)
		}
		return set
	}
	c.minute = parse(0, "minutes", 0, 59, nil, 0)
	c.hour = parse(1, "hours", 0, 23, nil, 0)
	c.dom = parse(2, "day-of-month", 1, 31, nil, 0)
	c.month = parse(3, "month", 1, 12, monthNames, 1)
	c.dow = parse(4, "day-of-week", 1, 7, dayNames, 1)
	c.year = parse(5, "year", cronMinYear, cronMaxYear, nil, 0)
	if err != nil {
		return nil, err
	}
	c.domAny = f[2] == "*" || f[2] == "?"
	c.dowAny = f[4] == "*" || f[4] == "?"
	if f[2] == "?" && f[4] == "?" {
		return nil, fmt.Errorf("cron expression %q: day-of-month and day-of-week cannot both be ?", src)
	}
	return c, nil
}

var errCronUnsupported = errors.New("the characters L, W and # are not supported by the local cloud")

// parseCronField reads one field into a set indexed by value (lo..hi).
func parseCronField(f string, lo, hi int, names []string, nameBase int) ([]bool, error) {
	set := make([]bool, hi+1)
	if f == "" {
		return nil, errors.New("empty")
	}
	value := func(v string) (int, error) {
		for i, n := range names {
			if strings.EqualFold(v, n) {
				return i + nameBase, nil
			}
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			if strings.ContainsAny(v, "LW#") {
				return 0, errCronUnsupported
			}
			return 0, fmt.Errorf("%q is not a number", v)
		}
		if n < lo || n > hi {
			return 0, fmt.Errorf("%d is out of range %d-%d", n, lo, hi)
		}
		return n, nil
	}
	for _, part := range strings.Split(f, ",") {
		rng, stepText, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n < 1 || n > hi {
				return nil, fmt.Errorf("step %q: use a number from 1 to %d", stepText, hi)
			}
			step = n
		}
		from, to := lo, hi
		switch {
		case rng == "*" || rng == "?":
			if rng == "?" && hasStep {
				return nil, errors.New("? takes no step")
			}
		case strings.Contains(rng, "-"):
			a, b, _ := strings.Cut(rng, "-")
			var err error
			if from, err = value(a); err != nil {
				return nil, err
			}
			if to, err = value(b); err != nil {
				return nil, err
			}
			if to < from {
				return nil, fmt.Errorf("range %s runs backwards", rng)
			}
		default:
			v, err := value(rng)
			if err != nil {
				return nil, err
			}
			from = v
			if !hasStep {
				to = v
			}
		}
		for v := from; v <= to; v += step {
			set[v] = true
		}
	}
	return set, nil
}

// dayMatches applies cron's rule for days: when both day fields are
// restricted a day matching either one matches.
func (c *Cron) dayMatches(t time.Time) bool {
	dom := c.dom[t.Day()]
	dow := c.dow[int(t.Weekday())+1]
	switch {
	case c.domAny && c.dowAny:
		return true
	case c.domAny:
		return dow
	case c.dowAny:
		return dom
	}
	return dom || dow
}

// Next returns the first time at or after t (rounded up to the minute, in
// UTC) that the expression names; ok is false when there is none before
// the parser's last year.
func (c *Cron) Next(t time.Time) (time.Time, bool) {
	t = t.UTC()
	if r := t.Truncate(time.Minute); !r.Equal(t) {
		t = r.Add(time.Minute)
	}
	for t.Year() <= cronMaxYear {
		if !c.year[t.Year()] {
			t = time.Date(t.Year()+1, 1, 1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if !c.month[int(t.Month())] {
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if !c.dayMatches(t) {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if !c.hour[t.Hour()] {
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, time.UTC)
			continue
		}
		if !c.minute[t.Minute()] {
			t = t.Add(time.Minute)
			continue
		}
		return t, true
	}
	return time.Time{}, false
}

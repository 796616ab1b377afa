package console

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/awsfota/awsfota/operator"
)

// Event is a step of a device's update, for its timeline.
type Event struct {
	At      time.Time
	JobID   string
	ExecNum int64
	What    string // "queued", "started", a status, or a state reported IN_PROGRESS
	Detail  string // version, reason and message (device text: escaped when shown)
	Status  string // the execution's status then
	Percent int
}

// recorder keeps the steps of each device's executions that the console
// saw — every change a feed delivered, every execution it read — since it
// started: AWS keeps no history of statusDetails, only the current ones and
// a few timestamps.
type recorder struct {
	now    func() time.Time
	mu     sync.Mutex
	things map[string]*thingLog
}

type thingLog struct {
	events []Event
	last   map[string]string // job → key of its last recorded step
	// ran is the firmware the thing's reports last named, by component
	// ("app", "modem"): installed by a SUCCEEDED update, or run when one
	// started (what it still runs if that one fails).
	ran map[string]seen
}

type seen struct {
	version string
	at      time.Time
}

// Bounds: events per thing, and things.
const (
	maxEventsPerThing = 100
	maxThingLogs      = 100_000
)

func newRecorder(now func() time.Time) *recorder {
	return &recorder{now: now, things: map[string]*thingLog{}}
}

// observe records an execution's state if its step (status, state,
// reason) is new; progress within a step is not a step.
func (r *recorder) observe(e operator.Execution) {
	if e.Thing == "" || e.JobID == "" {
		return
	}
	what := e.Status
	if e.Status == "IN_PROGRESS" && e.State != "" {
		what = e.State
	}
	if e.Status == "QUEUED" {
		what = "queued"
	}
	key := what + "\x00" + itoa(int(e.ExecutionNum)) + "\x00" + e.Reason
	at := e.LastUpdatedAt
	if at.IsZero() {
		at = r.now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.things[e.Thing]
	if l == nil {
		if len(r.things) >= maxThingLogs {
			r.things = map[string]*thingLog{}
		}
		l = &thingLog{last: map[string]string{}}
		r.things[e.Thing] = l
	}
	comp := e.Details["component"]
	if comp == "" {
		comp = "app"
	}
	v := e.Details["from"]
	if e.Status == "SUCCEEDED" && e.FWVersion != "" {
		v = e.FWVersion
	}
	if old, ok := l.ran[comp]; v != "" && (!ok || !at.Before(old.at)) {
		if l.ran == nil {
			l.ran = map[string]seen{}
		}
		l.ran[comp] = seen{v, at}
	}
	if l.last[e.JobID] == key {
		return
	}
	l.last[e.JobID] = key
	d := detail(e)
	if d == strings.ReplaceAll(what, "_", " ") {
		d = ""
	}
	l.events = append(l.events, Event{At: at, JobID: e.JobID, ExecNum: e.ExecutionNum, What: what, Detail: d, Status: e.Status, Percent: percent(e)})
	if len(l.events) > maxEventsPerThing {
		l.events = l.events[len(l.events)-maxEventsPerThing:]
	}
}

// ran returns the application and modem firmware a thing's reports last
// named, as far as the console saw them.
func (r *recorder) ran(thing string) (app, modem string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l := r.things[thing]; l != nil {
		return l.ran["app"].version, l.ran["modem"].version
	}
	return "", ""
}

// timeline returns a thing's events, newest first: what the console
// recorded, and the timestamps the cloud keeps of each execution (queued,
// started, ended) where the console saw nothing at that time.
func (r *recorder) timeline(thing string, execs []operator.Execution) []Event {
	r.mu.Lock()
	var out []Event
	if l := r.things[thing]; l != nil {
		out = append(out, l.events...)
	}
	r.mu.Unlock()
	seen := map[string]bool{}
	for _, ev := range out {
		seen[ev.JobID+"\x00"+itoa(int(ev.ExecNum))+"\x00"+ev.What] = true
	}
	add := func(e operator.Execution, what string, at time.Time) {
		if at.IsZero() || seen[e.JobID+"\x00"+itoa(int(e.ExecutionNum))+"\x00"+what] {
			return
		}
		out = append(out, Event{At: at, JobID: e.JobID, ExecNum: e.ExecutionNum, What: what, Status: e.Status})
	}
	for _, e := range execs {
		add(e, "queued", e.QueuedAt)
		if !e.StartedAt.IsZero() && !seen[e.JobID+"\x00"+itoa(int(e.ExecutionNum))+"\x00downloading"] {
			add(e, "started", e.StartedAt)
		}
		if terminal(e.Status) {
			ev := Event{At: e.LastUpdatedAt, JobID: e.JobID, ExecNum: e.ExecutionNum, What: e.Status, Status: e.Status, Detail: detail(e), Percent: percent(e)}
			if !ev.At.IsZero() && !seen[e.JobID+"\x00"+itoa(int(e.ExecutionNum))+"\x00"+e.Status] {
				out = append(out, ev)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.After(out[j].At) })
	return out
}

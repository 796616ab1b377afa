package agent

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/jobdoc"
)

const thing = "dev-1"

var (
	t0      = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	oldHash = []byte("old-image-hash-0123456789abcdef!")
	newHash = []byte("new-image-hash-0123456789abcdef!")
	oldBoot = Boot{Version: "1.0.0", BootHash: oldHash, Confirmed: true}
	newImg  = Image{Type: "mcuboot", Size: 4096, SHA256: []byte("sha-of-file-0123456789abcdefghij"), BootHash: newHash, Version: "1.0.1"}
)

func testDoc(extra string) []byte {
	return []byte(`{"operation":"app_fw_update","fwversion":"1.0.1","size":4096` + extra + `,"location":{"protocol":"http:","host":"127.0.0.1:4566","path":"fw/app.bin"}}`)
}

// h drives one agent through events, as a transcript.
type h struct {
	t     *testing.T
	a     *Agent
	now   time.Time
	last  Ready
	saved State // the last Persist
	cfg   Config
}

func newH(t *testing.T, st State, cfg Config) *h {
	t.Helper()
	cfg.Thing = thing
	a, err := New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase == "" {
		st.Phase = PhaseIdle
	}
	return &h{t: t, a: a, now: t0, saved: st, cfg: cfg}
}

// restart builds a new agent from the last persisted state, as after a reboot.
func (x *h) restart(boot Boot) *h {
	x.t.Helper()
	y := newH(x.t, x.saved, x.cfg)
	y.now = x.now
	y.step(Started{Base{y.now}, boot, "n2"})
	return y
}

func (x *h) step(ev Event) Ready {
	x.t.Helper()
	x.last = x.a.Step(ev)
	for _, act := range x.last.Actions {
		if p, ok := act.(Persist); ok {
			x.saved = p.State
			// Everything persisted must survive an encode/decode round trip.
			back, err := UnmarshalState(p.State.Marshal())
			if err != nil {
				x.t.Fatalf("persisted state does not reload: %v", err)
			}
			if !reflect.DeepEqual(back, p.State) {
				x.t.Fatalf("persisted state changes on reload:\n%+v\n%+v", p.State, back)
			}
		}
	}
	return x.last
}

func (x *h) b() Base { return Base{x.now} }

func (x *h) advance(d time.Duration) { x.now = x.now.Add(d) }

func (x *h) start(boot Boot) Ready { return x.step(Started{x.b(), boot, "n1"}) }
func (x *h) connect() Ready        { return x.step(Connected{x.b()}) }

func (x *h) msg(topic iotjobs.Topic, v any) Ready {
	x.t.Helper()
	return x.step(Message{x.b(), topic.String(), iotjobs.Encode(v)})
}

// published returns the Publish actions of the last step.
func (x *h) published() []Publish {
	var out []Publish
	for _, a := range x.last.Actions {
		if p, ok := a.(Publish); ok {
			out = append(out, p)
		}
	}
	return out
}

// onlyPublish expects exactly one Publish on topic and decodes it into v.
func (x *h) onlyPublish(topic iotjobs.Topic, v any) {
	x.t.Helper()
	ps := x.published()
	if len(ps) != 1 {
		x.t.Fatalf("want one publish to %s, got %d: %s", topic, len(ps), x.describe())
	}
	if ps[0].Topic != topic.String() {
		x.t.Fatalf("published to %s, want %s", ps[0].Topic, topic)
	}
	if err := iotjobs.Decode(ps[0].Payload, v); err != nil {
		x.t.Fatal(err)
	}
}

func (x *h) noPublish() {
	x.t.Helper()
	if ps := x.published(); len(ps) != 0 {
		x.t.Fatalf("unexpected publish: %s", x.describe())
	}
}

// has reports whether the last step emitted an action of the same type as want.
func (x *h) has(want Action) bool {
	for _, a := range x.last.Actions {
		if reflect.TypeOf(a) == reflect.TypeOf(want) {
			return true
		}
	}
	return false
}

func (x *h) want(acts ...Action) {
	x.t.Helper()
	for _, w := range acts {
		if !x.has(w) {
			x.t.Fatalf("missing %T in %s", w, x.describe())
		}
	}
}

func (x *h) not(acts ...Action) {
	x.t.Helper()
	for _, w := range acts {
		if x.has(w) {
			x.t.Fatalf("unexpected %T in %s", w, x.describe())
		}
	}
}

func (x *h) action(want Action) Action {
	x.t.Helper()
	for _, a := range x.last.Actions {
		if reflect.TypeOf(a) == reflect.TypeOf(want) {
			return a
		}
	}
	x.t.Fatalf("missing %T in %s", want, x.describe())
	return nil
}

func (x *h) event(kind AppEventKind) AppEvent {
	x.t.Helper()
	for _, a := range x.last.Actions {
		if n, ok := a.(Notify); ok && n.Event.Kind == kind {
			return n.Event
		}
	}
	x.t.Fatalf("no %s event in %s", kind, x.describe())
	return AppEvent{}
}

func (x *h) describe() string {
	var b strings.Builder
	for _, a := range x.last.Actions {
		switch v := a.(type) {
		case Publish:
			fmt.Fprintf(&b, "\n  Publish %s %s", v.Topic, v.Payload)
		case Persist:
			fmt.Fprintf(&b, "\n  Persist phase=%s", v.State.Phase)
		default:
			fmt.Fprintf(&b, "\n  %T %+v", a, a)
		}
	}
	return b.String()
}

func (x *h) phase(p Phase) {
	x.t.Helper()
	if got := x.a.State().Phase; got != p {
		x.t.Fatalf("phase %s, want %s", got, p)
	}
	if x.saved.Phase != p {
		x.t.Fatalf("persisted phase %s, want %s", x.saved.Phase, p)
	}
}

func execution(id string, status iotjobs.Status, version int64, doc []byte) *iotjobs.JobExecution {
	return &iotjobs.JobExecution{JobID: id, ThingName: thing, JobDocument: json.RawMessage(doc), Status: status,
		QueuedAt: t0.Unix(), LastUpdatedAt: t0.Unix(), VersionNumber: version, ExecutionNumber: 1}
}

// answerNext replies to the pending $next/get with e.
func (x *h) answerNext(e *iotjobs.JobExecution) {
	x.t.Helper()
	var req iotjobs.DescribeRequest
	x.onlyPublish(iotjobs.DescribeTopic(thing, iotjobs.NextJobID), &req)
	x.msg(iotjobs.DescribeTopic(thing, iotjobs.NextJobID).Accepted(), iotjobs.ExecutionResponse{Execution: e, Timestamp: x.now.Unix(), ClientToken: req.ClientToken})
}

// answerDescribe replies to the pending {job}/get with e.
func (x *h) answerDescribe(job string, e *iotjobs.JobExecution) {
	x.t.Helper()
	var req iotjobs.DescribeRequest
	x.onlyPublish(iotjobs.DescribeTopic(thing, job), &req)
	x.msg(iotjobs.DescribeTopic(thing, job).Accepted(), iotjobs.ExecutionResponse{Execution: e, Timestamp: x.now.Unix(), ClientToken: req.ClientToken})
}

// update expects one UpdateJobExecution in the last step and returns it.
func (x *h) update(job string) iotjobs.UpdateRequest {
	x.t.Helper()
	var u iotjobs.UpdateRequest
	x.onlyPublish(iotjobs.UpdateTopic(thing, job), &u)
	if err := iotjobs.ValidateStatusDetails(u.StatusDetails); err != nil {
		x.t.Fatalf("agent sent invalid statusDetails: %v", err)
	}
	return u
}

// accept answers an update with the next version.
func (x *h) accept(job string, u iotjobs.UpdateRequest) {
	x.t.Helper()
	v := int64(*u.ExpectedVersion) + 1
	x.msg(iotjobs.UpdateTopic(thing, job).Accepted(), iotjobs.UpdateResponse{
		ExecutionState: &iotjobs.JobExecutionState{Status: u.Status, StatusDetails: u.StatusDetails, VersionNumber: v},
		Timestamp:      x.now.Unix(), ClientToken: u.ClientToken})
}

func (x *h) reject(job string, u iotjobs.UpdateRequest, code iotjobs.ErrorCode, es *iotjobs.JobExecutionState) {
	x.t.Helper()
	x.msg(iotjobs.UpdateTopic(thing, job).Rejected(), iotjobs.ErrorResponse{Code: code, Message: "test", ClientToken: u.ClientToken,
		Timestamp: x.now.Unix(), ExecutionState: es})
}

// toDownloading runs a fresh agent up to a running download of job "fw-1".
func toDownloading(t *testing.T, cfg Config, docs ...[]byte) *h {
	t.Helper()
	doc := testDoc("")
	if len(docs) > 0 {
		doc = docs[0]
	}
	x := newH(t, State{}, cfg)
	x.start(oldBoot)
	x.connect()
	x.answerNext(execution("fw-1", iotjobs.StatusQueued, 1, doc))
	u := x.update("fw-1")
	if u.Status != iotjobs.StatusInProgress || *u.ExpectedVersion != 1 || !u.IncludeJobExecutionState {
		t.Fatalf("start report %+v", u)
	}
	x.accept("fw-1", u)
	x.want(StartDownload{})
	x.phase(PhaseDownloading)
	return x
}

// toVerifying continues to the Verify action.
func toVerifying(t *testing.T, x *h) {
	t.Helper()
	x.step(DownloadProgress{x.b(), 2048, 2048, 4096, `"e1"`})
	if len(x.published()) > 0 {
		u := x.update("fw-1")
		if u.StatusDetails["progress"] != "50" || u.StatusDetails["bytes"] != "2048" {
			t.Fatalf("progress report %+v", u)
		}
		x.accept("fw-1", u)
	}
	x.step(DownloadDone{Base: x.b(), Total: 4096, ETag: `"e1"`})
	x.want(Verify{})
	x.phase(PhaseVerifying)
}

// toReady continues until the ready report is in flight.
func toReady(t *testing.T, x *h) iotjobs.UpdateRequest {
	t.Helper()
	toVerifying(t, x)
	x.step(Verified{Base: x.b(), Image: newImg})
	x.phase(PhaseReady)
	u := x.update("fw-1")
	if u.StatusDetails["state"] != "ready_to_reboot" || u.StatusDetails["fwversion"] != "1.0.1" {
		t.Fatalf("ready report %+v", u)
	}
	return u
}

// toRebooting continues until the Reboot action.
func toRebooting(t *testing.T, x *h) {
	t.Helper()
	u := toReady(t, x)
	x.accept("fw-1", u)
	x.want(Schedule{})
	x.not(Reboot{})
	x.step(Scheduled{Base: x.b()})
	x.want(Reboot{})
	x.phase(PhaseRebooting)
	if e := x.event(EventDone); !e.RebootRequired || e.Version != "1.0.1" {
		t.Fatalf("done event %+v", e)
	}
}

func defaultCfg() Config { return Config{Limits: jobdoc.DefaultLimits()} }

package console

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/awsfota/awsfota/operator"
)

// Execution statuses, in the order the console shows them.
var statuses = []string{"IN_PROGRESS", "QUEUED", "SUCCEEDED", "FAILED", "TIMED_OUT", "REJECTED", "CANCELED", "REMOVED"}

// Job statuses a list may be filtered by.
var jobStatuses = []string{"IN_PROGRESS", "COMPLETED", "CANCELED", "DELETION_IN_PROGRESS"}

func itoa(n int) string { return strconv.Itoa(n) }

// base is what every page's template gets.
type base struct {
	Prefix string
	Title  string
	Nav    string // the current section: fleet, jobs, publish
	Target string
	CSRF   string
	// Live: the page's parts are refreshed by its event stream; Feed says
	// whether changes come from the Jobs service's feed or from polling.
	Live bool
	Feed bool
}

func (s *Server) base(r *http.Request, nav, title string) base {
	return base{Prefix: s.cfg.Prefix, Title: title, Nav: nav, Target: s.cfg.Target, CSRF: s.csrfToken(r), Feed: s.cfg.Feed != nil}
}

// part is a piece of a page that its event stream re-renders: the element
// with id ID, made by template Tmpl from Data. A part with Children (rows)
// is re-rendered child by child while the set of children stays the same.
type part struct {
	ID       string
	Tmpl     string
	Data     any
	Children []part
}

// liveView is a page that streams its changes.
type liveView interface {
	parts() []part
	// relevant reports whether a change concerns what the page shows. It
	// is called from the feed's goroutine.
	relevant(c Change) bool
}

// isStream reports whether r asks for the page's event stream (what
// EventSource asks for) rather than the page.
func isStream(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

// serve answers a live page: its event stream, or the page rendered by
// template name.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, name string, build func(ctx context.Context) (liveView, error)) error {
	if isStream(r) {
		return s.stream(w, r, build)
	}
	v, err := build(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, http.StatusOK, name, v)
	return nil
}

// notFound turns the cloud's "no such resource" into a 404 page.
func notFound(err error, what string) error {
	if operator.IsNotFound(err) {
		return httpError{http.StatusNotFound, what + " does not exist (it may have been deleted)."}
	}
	return err
}

// pager is a page's position in a list.
type pager struct {
	Page, Pages     int // from 1
	From, To, Total int // rows shown (from 1) and in all
	First, Prev     string
	Next, Last      string
}

// newPager places page (from 1, clamped) of size rows in total rows; link
// makes a page's URL.
func newPager(page, size, total int, link func(page int) string) pager {
	pages := max(1, (total+size-1)/size)
	page = min(max(page, 1), pages)
	p := pager{Page: page, Pages: pages, Total: total, From: min((page-1)*size+1, total), To: min(page*size, total)}
	if page > 1 {
		p.First, p.Prev = link(1), link(page-1)
	}
	if page < pages {
		p.Next, p.Last = link(page+1), link(pages)
	}
	return p
}

func pageParam(r *http.Request) int {
	n, _ := strconv.Atoi(r.URL.Query().Get("page"))
	return max(n, 1)
}

// link builds a console URL with query parameters (empty ones dropped).
func (s *Server) link(path string, kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" && !(kv[i] == "page" && kv[i+1] == "1") {
			q.Set(kv[i], kv[i+1])
		}
	}
	u := s.cfg.Prefix + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// ---- Fleet ----

type fleetView struct {
	base
	Query, Group string
	Groups       []string
	Rows         []part
	Pager        pager
	Presence     bool
	Fleet        int // things in the registry
	things       map[string]bool
}

type fleetRow struct {
	Prefix    string
	Thing     string
	Groups    []string
	App       string
	Modem     string
	Latest    *execRow
	LastSeen  time.Time
	Presence  bool
	Connected bool
}

func (v *fleetView) parts() []part {
	return []part{{ID: "fleet-rows", Tmpl: "fleet-rows", Data: v, Children: v.Rows}}
}

func (v *fleetView) relevant(c Change) bool { return c.Thing != "" && v.things[c.Thing] }

func (s *Server) fleetPage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	query, group, page := strings.TrimSpace(q.Get("q")), q.Get("group"), pageParam(r)
	return s.serve(w, r, "fleet", func(ctx context.Context) (liveView, error) {
		v := &fleetView{base: s.base(r, "fleet", "Fleet"), Query: query, Group: group, Presence: s.cfg.Presence != nil, things: map[string]bool{}}
		v.Live = true
		all, err := s.allThings(ctx)
		if err != nil {
			return nil, err
		}
		v.Fleet = len(all)
		names, byThing, err := s.groupsOf(ctx)
		if err != nil {
			return nil, err
		}
		v.Groups = names
		var members map[string]bool
		if group != "" {
			if !slices.Contains(names, group) {
				return nil, httpError{http.StatusNotFound, "There is no thing group " + group + "."}
			}
			in, err := s.c.ThingsInGroup(ctx, group, true)
			if err != nil {
				return nil, err
			}
			members = map[string]bool{}
			for _, t := range in {
				members[t] = true
			}
		}
		var match []string
		lq := strings.ToLower(query)
		for _, t := range all {
			if (members == nil || members[t.Name]) && strings.Contains(strings.ToLower(t.Name), lq) {
				match = append(match, t.Name)
			}
		}
		size := s.cfg.PageSize
		v.Pager = newPager(page, size, len(match), func(p int) string { return s.link("", "q", query, "group", group, "page", itoa(p)) })
		shown := match[max(v.Pager.From-1, 0):v.Pager.To]
		rows := make([]fleetRow, len(shown))
		if err := parallel(ctx, len(shown), func(ctx context.Context, i int) error {
			var err error
			rows[i], err = s.fleetRow(ctx, shown[i], byThing[shown[i]])
			return err
		}); err != nil {
			return nil, err
		}
		for _, row := range rows {
			v.things[row.Thing] = true
			v.Rows = append(v.Rows, part{ID: "thing-" + row.Thing, Tmpl: "fleet-row", Data: row})
		}
		return v, nil
	})
}

// fleetRow reads what the fleet page shows of a thing: the firmware its
// last reports name, its latest execution, when it was last heard of.
func (s *Server) fleetRow(ctx context.Context, thing string, groups []string) (fleetRow, error) {
	row := fleetRow{Prefix: s.cfg.Prefix, Thing: thing, Groups: groups, Presence: s.cfg.Presence != nil}
	if s.cfg.Presence != nil {
		row.Connected = s.cfg.Presence.Connected(thing)
	}
	execs, err := s.c.ThingExecutions(ctx, thing)
	if err != nil {
		return row, err
	}
	for _, e := range execs {
		if e.LastUpdatedAt.After(row.LastSeen) && e.Status != "QUEUED" {
			row.LastSeen = e.LastUpdatedAt
		}
	}
	recent, err := s.withDetails(ctx, "", execs[:min(len(execs), 5)])
	if err != nil {
		return row, err
	}
	row.App, row.Modem = s.versions(thing, recent)
	if len(recent) > 0 {
		x := s.execRow(recent[0].JobID, recent[0])
		row.Latest = &x
	}
	return row, nil
}

// versions returns the application and modem firmware a device's reports
// (its executions, newest first, and what the console saw of earlier
// reports) say it runs.
func (s *Server) versions(thing string, execs []operator.Execution) (app, modem string) {
	app, modem = versions(execs)
	if app == "" || modem == "" {
		a, m := s.events.ran(thing)
		app, modem = cmp.Or(app, a), cmp.Or(modem, m)
	}
	return app, modem
}

// versions returns the application and modem firmware a device's current
// reports (newest first) say it runs: the version a SUCCEEDED update
// installed, or the one it ran when an update started.
func versions(execs []operator.Execution) (app, modem string) {
	for _, e := range execs {
		comp := e.Details["component"]
		v := ""
		switch {
		case e.Status == "SUCCEEDED" && e.FWVersion != "":
			v = e.FWVersion
		case e.Details["from"] != "":
			v = e.Details["from"]
		}
		if v == "" {
			continue
		}
		if comp == "modem" {
			if modem == "" {
				modem = v
			}
		} else if app == "" {
			app = v
		}
	}
	return app, modem
}

// ---- Jobs ----

type jobsView struct {
	base
	Status   string
	Statuses []string
	Rows     []part
	Pager    pager
	jobs     map[string]bool
}

type jobsRow struct {
	Prefix string
	Job    *operator.JobDetail
	Bar    []segment
}

func (v *jobsView) parts() []part {
	return []part{{ID: "jobs-rows", Tmpl: "jobs-rows", Data: v, Children: v.Rows}}
}

// relevant: a job's change (created, its status) or a change of an
// execution of a job on the page (its counts moved).
func (v *jobsView) relevant(c Change) bool { return c.Thing == "" || v.jobs[c.JobID] }

// jobsPerPage is the size of a page of the jobs list: each row costs a
// DescribeJob.
const jobsPerPage = 20

func (s *Server) jobsPage(w http.ResponseWriter, r *http.Request) error {
	status := r.URL.Query().Get("status")
	if status != "" && !slices.Contains(jobStatuses, status) {
		return httpError{http.StatusBadRequest, fmt.Sprintf("%q is not a job status: use one of %s.", status, strings.Join(jobStatuses, ", "))}
	}
	page := pageParam(r)
	return s.serve(w, r, "jobs", func(ctx context.Context) (liveView, error) {
		v := &jobsView{base: s.base(r, "jobs", "Jobs"), Status: status, Statuses: jobStatuses, jobs: map[string]bool{}}
		v.Live = true
		all, err := s.c.ListJobs(ctx)
		if err != nil {
			return nil, err
		}
		if status != "" {
			all = slices.DeleteFunc(all, func(j operator.JobSummary) bool { return j.Status != status })
		}
		v.Pager = newPager(page, jobsPerPage, len(all), func(p int) string { return s.link("jobs", "status", status, "page", itoa(p)) })
		shown := all[max(v.Pager.From-1, 0):v.Pager.To]
		rows := make([]*operator.JobDetail, len(shown))
		if err := parallel(ctx, len(shown), func(ctx context.Context, i int) error {
			d, err := s.c.DescribeJob(ctx, shown[i].JobID)
			if err != nil {
				if operator.IsNotFound(err) {
					return nil // deleted meanwhile
				}
				return err
			}
			rows[i] = d
			return nil
		}); err != nil {
			return nil, err
		}
		for _, d := range rows {
			if d != nil {
				v.jobs[d.JobID] = true
				v.Rows = append(v.Rows, part{ID: "job-" + d.JobID, Tmpl: "jobs-row", Data: jobsRow{Prefix: s.cfg.Prefix, Job: d, Bar: stack(d.Counts)}})
			}
		}
		return v, nil
	})
}

// segment is a piece of a stacked bar of counts (an SVG rect: x and width
// are attributes, which the Content-Security-Policy allows, not styles).
type segment struct {
	Status string
	N      int
	X, W   float64 // percent of the width
}

func stack(counts map[string]int) []segment {
	total := 0
	for _, n := range counts {
		total += n
	}
	var out []segment
	x := 0.0
	for _, st := range statuses {
		if n := counts[st]; n > 0 {
			w := float64(n) * 100 / float64(total)
			out = append(out, segment{Status: st, N: n, X: x, W: w})
			x += w
		}
	}
	return out
}

// ---- Job ----

type jobView struct {
	base
	Job      *operator.JobDetail
	Document string
	Filter   string
	Chips    []chip
	Bar      []segment
	Settings [][2]string
	Rows     []part
	Pager    pager
	things   map[string]bool
}

type chip struct {
	Status string
	N      int
	Link   string
	On     bool
}

// execRow is an execution as a row shows it.
type execRow struct {
	Prefix string
	JobID  string
	operator.Execution
	Pct    int
	Detail string
	Extra  [][2]string // the other statusDetails, sorted
}

func (v *jobView) parts() []part {
	return []part{{ID: "job-summary", Tmpl: "job-summary", Data: v}, {ID: "job-rows", Tmpl: "job-rows", Data: v, Children: v.Rows}}
}

func (v *jobView) relevant(c Change) bool { return c.JobID == v.Job.JobID }

func (s *Server) jobPage(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("job")
	filter := r.URL.Query().Get("status")
	if filter != "" && !slices.Contains(statuses, filter) {
		return httpError{http.StatusBadRequest, fmt.Sprintf("%q is not an execution status: use one of %s.", filter, strings.Join(statuses, ", "))}
	}
	page := pageParam(r)
	withDoc := !isStream(r)
	return s.serve(w, r, "job", func(ctx context.Context) (liveView, error) {
		v, err := s.jobView(ctx, r, id, filter, page)
		if err != nil {
			return nil, err
		}
		if withDoc {
			doc, err := s.c.JobDocument(ctx, id)
			if err != nil {
				return nil, notFound(err, "Job "+id)
			}
			var pretty bytes.Buffer
			if json.Indent(&pretty, []byte(doc), "", "  ") == nil {
				doc = pretty.String()
			}
			v.Document = doc
		}
		return v, nil
	})
}

// jobView reads a job and one page of its executions: the counts come
// aggregated from the service, the page is one list call and the
// statusDetails of its rows come from the cache or a read each.
func (s *Server) jobView(ctx context.Context, r *http.Request, id, filter string, page int) (*jobView, error) {
	d, err := s.c.DescribeJob(ctx, id)
	if err != nil {
		return nil, notFound(err, "Job "+id)
	}
	v := &jobView{base: s.base(r, "jobs", "Job "+id), Job: d, Filter: filter, Bar: stack(d.Counts), things: map[string]bool{}}
	v.Live = true
	for _, st := range statuses {
		if n := d.Counts[st]; n > 0 || st == filter {
			v.Chips = append(v.Chips, chip{Status: st, N: n, Link: s.link("jobs/"+id, "status", st), On: st == filter})
		}
	}
	v.Settings = settings(d)
	total := d.Total()
	if filter != "" {
		total = d.Counts[filter]
	}
	size := s.cfg.PageSize
	v.Pager = newPager(page, size, total, func(p int) string { return s.link("jobs/"+id, "status", filter, "page", itoa(p)) })
	p, err := s.executionPage(ctx, id, filter, size, v.Pager.Page-1)
	if err != nil {
		return nil, notFound(err, "Job "+id)
	}
	execs, err := s.withDetails(ctx, id, p.Executions)
	if err != nil {
		return nil, err
	}
	for _, e := range execs {
		v.things[e.Thing] = true
		v.Rows = append(v.Rows, part{ID: "exec-" + e.Thing, Tmpl: "job-row", Data: s.execRow(id, e)})
	}
	return v, nil
}

func (s *Server) execRow(job string, e operator.Execution) execRow {
	x := execRow{Prefix: s.cfg.Prefix, JobID: job, Execution: e, Pct: percent(e), Detail: detail(e)}
	for k, val := range e.Details {
		switch k {
		case "state", "progress", "bytes", "size", "reason", "message":
		default:
			x.Extra = append(x.Extra, [2]string{k, val})
		}
	}
	sort.Slice(x.Extra, func(i, j int) bool { return x.Extra[i][0] < x.Extra[j][0] })
	return x
}

// percent is how much of its image a device has: what it last reported,
// and all of it once it is ready to reboot or succeeded.
func percent(e operator.Execution) int {
	switch {
	case e.Status == "SUCCEEDED", e.State == "ready_to_reboot", e.State == "succeeded":
		return 100
	case e.Size > 0 && e.Bytes > 0:
		return int(min(e.Bytes*100/e.Size, 100))
	}
	return min(max(e.Percent, 0), 100)
}

// detail is the one-line summary of what a device reported.
func detail(e operator.Execution) string {
	switch {
	case e.Reason != "" && e.Message != "":
		return e.Reason + ": " + e.Message
	case e.Reason != "":
		return e.Reason
	case e.Message != "":
		return e.Message
	case e.Status == "SUCCEEDED" && e.FWVersion != "":
		if from := e.Details["from"]; from != "" {
			return "updated from " + from + " to " + e.FWVersion
		}
		return "runs " + e.FWVersion
	case e.State == "downloading" && e.Size > 0:
		return fmt.Sprintf("downloading: %s of %s", humanBytes(e.Bytes), humanBytes(e.Size))
	case e.State == "ready_to_reboot" && e.FWVersion != "":
		return "ready to reboot into " + e.FWVersion
	case e.State == "downloading" && e.Details["from"] != "":
		return "downloading, from " + e.Details["from"]
	case e.State != "":
		return strings.ReplaceAll(e.State, "_", " ")
	}
	return ""
}

func humanBytes(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 10<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// settings lists a job's rollout, abort, timeout, retry and URL settings.
func settings(d *operator.JobDetail) [][2]string {
	var out [][2]string
	add := func(k, v string) { out = append(out, [2]string{k, v}) }
	add("Targets", fmt.Sprintf("%s (%s)", targetNames(d.Targets), strings.ToLower(d.TargetSelection)))
	switch {
	case d.Exponential != nil:
		e := d.Exponential
		crit := fmt.Sprintf("%d notified", e.NotifiedThings)
		if e.SucceededThings > 0 {
			crit = fmt.Sprintf("%d succeeded", e.SucceededThings)
		}
		add("Rollout", fmt.Sprintf("%d a minute, ×%g after every %s", e.BasePerMinute, e.Factor, crit))
	case d.RolloutPerMinute > 0:
		add("Rollout", fmt.Sprintf("at most %d devices a minute", d.RolloutPerMinute))
	default:
		add("Rollout", "all at once")
	}
	if len(d.Abort) == 0 {
		add("Abort", "never")
	}
	for _, a := range d.Abort {
		add("Abort", fmt.Sprintf("cancel once %g%% of the devices that finished %s (counted from %d finished)", a.Percent, failures(a.FailureType), a.MinExecuted))
	}
	if d.TimeoutMinutes > 0 {
		add("Timeout", fmt.Sprintf("%d min in progress", d.TimeoutMinutes))
	} else {
		add("Timeout", "none")
	}
	if len(d.Retry) == 0 {
		add("Retries", "none")
	}
	for _, r := range d.Retry {
		what := failures(r.FailureType)
		if r.FailureType == "ALL" {
			what = "failed or timed out" // a rejection is never retried
		}
		n := fmt.Sprintf("%d retries", r.Retries)
		if r.Retries == 1 {
			n = "1 retry"
		}
		add("Retries", fmt.Sprintf("%s when a device %s", n, what))
	}
	if d.PresignExpires > 0 {
		add("Image URL", "presigned, each valid "+minutes(time.Duration(d.PresignExpires)*time.Second))
	}
	return out
}

// failures says what an abort or retry criterion's failure type counts.
func failures(typ string) string {
	switch typ {
	case "FAILED":
		return "failed"
	case "REJECTED":
		return "rejected the job"
	case "TIMED_OUT":
		return "timed out"
	case "ALL":
		return "failed, rejected the job or timed out"
	}
	return strings.ToLower(typ)
}

func minutes(d time.Duration) string {
	if d%time.Hour == 0 {
		return plural(int(d/time.Hour), "hour")
	}
	if d%time.Minute == 0 {
		return plural(int(d/time.Minute), "minute")
	}
	return d.String()
}

// targetNames shortens target ARNs to "thing a, group g".
func targetNames(arns []string) string {
	var out []string
	for i, a := range arns {
		if i == 10 {
			out = append(out, fmt.Sprintf("and %d more", len(arns)-10))
			break
		}
		_, rest, _ := strings.Cut(a, ":thing")
		switch {
		case strings.HasPrefix(rest, "group/"):
			out = append(out, "group "+strings.TrimPrefix(rest, "group/"))
		case strings.HasPrefix(rest, "/"):
			out = append(out, strings.TrimPrefix(rest, "/"))
		default:
			out = append(out, a)
		}
	}
	return strings.Join(out, ", ")
}

// ---- Device ----

type deviceView struct {
	base
	Thing      operator.ThingInfo
	Attributes [][2]string
	Groups     []string
	App, Modem string
	Presence   bool
	Connected  bool
	Execs      []part
	Events     []Event
}

func (v *deviceView) parts() []part {
	return []part{{ID: "device-summary", Tmpl: "device-summary", Data: v},
		{ID: "device-execs", Tmpl: "device-execs", Data: v, Children: v.Execs},
		{ID: "device-timeline", Tmpl: "device-timeline", Data: v}}
}

func (v *deviceView) relevant(c Change) bool { return c.Thing == v.Thing.Name }

// maxDeviceExecs bounds the executions a device page reads.
const maxDeviceExecs = 100

func (s *Server) devicePage(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("thing")
	return s.serve(w, r, "device", func(ctx context.Context) (liveView, error) {
		th, err := s.c.DescribeThing(ctx, name)
		if err != nil {
			return nil, notFound(err, "Thing "+name)
		}
		v := &deviceView{base: s.base(r, "fleet", name), Thing: th, Presence: s.cfg.Presence != nil}
		v.Live = true
		for k, val := range th.Attributes {
			v.Attributes = append(v.Attributes, [2]string{k, val})
		}
		sort.Slice(v.Attributes, func(i, j int) bool { return v.Attributes[i][0] < v.Attributes[j][0] })
		if _, byThing, err := s.groupsOf(ctx); err == nil {
			v.Groups = byThing[name]
		} else {
			return nil, err
		}
		if s.cfg.Presence != nil {
			v.Connected = s.cfg.Presence.Connected(name)
		}
		execs, err := s.c.ThingExecutions(ctx, name)
		if err != nil {
			return nil, err
		}
		execs, err = s.withDetails(ctx, "", execs[:min(len(execs), maxDeviceExecs)])
		if err != nil {
			return nil, err
		}
		for _, e := range execs {
			s.events.observe(e)
			v.Execs = append(v.Execs, part{ID: "dexec-" + e.JobID, Tmpl: "device-exec", Data: s.execRow(e.JobID, e)})
		}
		v.App, v.Modem = s.versions(name, execs)
		v.Events = s.events.timeline(name, execs)
		return v, nil
	})
}

// ---- Cancel and delete ----

type confirmView struct {
	base
	Job   *operator.JobDetail
	Error string
}

func (s *Server) confirmView(r *http.Request, what string) (*confirmView, error) {
	id := r.PathValue("job")
	d, err := s.c.DescribeJob(r.Context(), id)
	if err != nil {
		return nil, notFound(err, "Job "+id)
	}
	return &confirmView{base: s.base(r, "jobs", what+" job "+id), Job: d}, nil
}

func (s *Server) cancelPage(w http.ResponseWriter, r *http.Request) error {
	v, err := s.confirmView(r, "Cancel")
	if err != nil {
		return err
	}
	s.render(w, r, http.StatusOK, "cancel", v)
	return nil
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("job")
	force := r.PostForm.Get("force") == "on"
	comment := strings.TrimSpace(r.PostForm.Get("comment"))
	if len(comment) > 2028 {
		return httpError{http.StatusBadRequest, "The comment is too long: at most 2028 characters."}
	}
	if err := s.c.CancelJob(r.Context(), id, force, comment); err != nil {
		v, verr := s.confirmView(r, "Cancel")
		if verr != nil {
			return verr
		}
		v.Error = err.Error()
		s.render(w, r, http.StatusConflict, "cancel", v)
		return nil
	}
	http.Redirect(w, r, s.cfg.Prefix+"jobs/"+url.PathEscape(id), http.StatusSeeOther)
	return nil
}

func (s *Server) deletePage(w http.ResponseWriter, r *http.Request) error {
	v, err := s.confirmView(r, "Delete")
	if err != nil {
		return err
	}
	s.render(w, r, http.StatusOK, "delete", v)
	return nil
}

func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("job")
	fail := func(status int, msg string) error {
		v, err := s.confirmView(r, "Delete")
		if err != nil {
			return err
		}
		v.Error = msg
		s.render(w, r, status, "delete", v)
		return nil
	}
	if r.PostForm.Get("confirm") != id {
		return fail(http.StatusUnprocessableEntity, "Type the job id, "+id+", to confirm the deletion.")
	}
	if err := s.c.DeleteJob(r.Context(), id, r.PostForm.Get("force") == "on"); err != nil {
		return fail(http.StatusConflict, err.Error())
	}
	s.pages.forget(id)
	http.Redirect(w, r, s.cfg.Prefix+"jobs", http.StatusSeeOther)
	return nil
}

// errorView is an error page.
type errorView struct {
	base
	Status  int
	Message string
}

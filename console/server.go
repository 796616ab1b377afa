package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/operator"
)

// ChangeFeed is a Jobs service's own change stream (the local cloud's).
// Subscribe delivers every change committed after it returns, in commit
// order, until ctx ends or the subscriber falls behind; then the channel is
// closed. The console re-reads what it shows and subscribes again after a
// close. Subscribe must be safe for concurrent use.
type ChangeFeed interface {
	Subscribe(ctx context.Context) (<-chan Change, error)
}

// Change is one committed change: of a job's execution on a thing, or of
// the job itself (Thing empty).
type Change struct {
	JobID string
	Thing string
	// Execution is the execution after the change, with its statusDetails;
	// nil when it was deleted, or when the feed does not carry it (the
	// console then reads it).
	Execution *operator.Execution
}

// Presence tells whether a thing is connected now (the local cloud's broker
// knows; AWS needs fleet indexing, which the console does not use).
// Connected must be safe for concurrent use and fast: it is called for
// every row of the fleet page.
type Presence interface {
	Connected(thing string) bool
}

// Config configures a console.
type Config struct {
	// Client is the operator layer, on AWS or on the local cloud.
	Client *operator.Client
	// Target describes what the console is connected to, for its header
	// ("local cloud", "AWS eu-west-1").
	Target string
	// Feed, when set, makes pages live from the Jobs service's change
	// stream; without it they poll with back-off (PollMin to PollMax).
	Feed ChangeFeed
	// Presence, when set, shows which things are connected now.
	Presence Presence
	// Prefix is the URL path the console is served under: "/" (the
	// default) or "/console/" (mounted on the local cloud's HTTP port). It
	// begins and ends with a slash.
	Prefix string
	// Token, when set, must be proved by every request: once as ?token=
	// (the console then sets a cookie and drops it from the URL), or by
	// cookie or "Authorization: Bearer". Without a token the console
	// answers only requests addressed to a loopback name (localhost,
	// 127.0.0.1, [::1]), which also defeats DNS rebinding.
	Token string
	// Bucket receives published images; CreateBucket creates it if
	// missing. PresignRole is the IAM role AWS IoT assumes to presign the
	// image URL (AWS; the local cloud presigns itself).
	Bucket       string
	CreateBucket bool
	PresignRole  string
	// Keyring, a PEM file of the CA certificates the devices' RAUC trusts,
	// makes Publish verify a RAUC bundle's signature before its job is
	// created.
	Keyring string
	// UploadDir keeps uploaded images until their job is created (default:
	// a new directory under os.TempDir, removed by Close); MaxUpload bounds
	// an upload (default 64 MiB).
	UploadDir string
	MaxUpload int64
	// PollMin and PollMax bound the polling interval without a feed
	// (default 2 s and 30 s): it doubles while nothing changes and drops
	// back to PollMin when something does. With a feed, pages still
	// refresh every PollMax for what the feed does not carry (new things,
	// connections).
	PollMin, PollMax time.Duration
	// PageSize is how many rows a page shows (default 50, at most 250).
	PageSize int
	Clock    clock.Clock
	Logger   *slog.Logger
}

// DefaultMaxUpload bounds an uploaded image.
const DefaultMaxUpload = 64 << 20

// Server is the console: an http.Handler. Close ends its live streams and
// removes its uploads.
type Server struct {
	cfg     Config
	c       *operator.Client
	mux     *http.ServeMux
	log     *slog.Logger
	keys    keys
	ctx     context.Context // ends at Close: live streams stop
	stop    context.CancelFunc
	wg      sync.WaitGroup
	tmpDir  bool // UploadDir was made by New
	hub     *hub
	cache   *execCache
	pages   *pageTokens
	things  *thingCache
	events  *recorder
	uploads *uploads
}

// New returns a console.
func New(cfg Config) (*Server, error) {
	if cfg.Client == nil {
		return nil, errors.New("console: an operator client is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "/"
	}
	if !strings.HasPrefix(cfg.Prefix, "/") || !strings.HasSuffix(cfg.Prefix, "/") {
		return nil, fmt.Errorf("console: prefix %q must begin and end with /", cfg.Prefix)
	}
	if cfg.MaxUpload <= 0 {
		cfg.MaxUpload = DefaultMaxUpload
	}
	if cfg.PollMin <= 0 {
		cfg.PollMin = 2 * time.Second
	}
	if cfg.PollMax < cfg.PollMin {
		cfg.PollMax = max(30*time.Second, cfg.PollMin)
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 50
	}
	cfg.PageSize = min(cfg.PageSize, 250)
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Target == "" {
		cfg.Target = "AWS " + cfg.Client.Region
		if cfg.Client.Local {
			cfg.Target = "local cloud"
		}
	}
	s := &Server{cfg: cfg, c: cfg.Client, log: cfg.Logger, cache: newExecCache(), pages: newPageTokens(),
		things: &thingCache{}}
	s.events = newRecorder(cfg.Clock.Now)
	var err error
	if s.keys, err = newKeys(); err != nil {
		return nil, err
	}
	if cfg.UploadDir == "" {
		if s.cfg.UploadDir, err = os.MkdirTemp("", "awsfota-console-"); err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
		s.tmpDir = true
	}
	s.uploads = &uploads{dir: s.cfg.UploadDir, byID: map[string]*upload{}}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.hub = newHub(s)
	if cfg.Feed != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.hub.follow(s.ctx, cfg.Feed)
		}()
	}
	s.routes()
	return s, nil
}

// Close ends the live streams (their requests return) and removes the
// uploads.
func (s *Server) Close() error {
	s.stop()
	s.wg.Wait()
	s.uploads.removeAll()
	if s.tmpDir {
		return os.RemoveAll(s.cfg.UploadDir)
	}
	return nil
}

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	p := s.cfg.Prefix
	handle := func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		method, path, _ := strings.Cut(pattern, " ")
		s.mux.Handle(method+" "+p+path, s.page(h))
	}
	handle("GET {$}", s.fleetPage)
	handle("GET jobs", s.jobsPage)
	handle("GET jobs/{job}", s.jobPage)
	handle("GET jobs/{job}/cancel", s.cancelPage)
	handle("POST jobs/{job}/cancel", s.cancelJob)
	handle("GET jobs/{job}/delete", s.deletePage)
	handle("POST jobs/{job}/delete", s.deleteJob)
	handle("GET devices/{thing}", s.devicePage)
	handle("GET publish", s.publishPage)
	handle("POST publish", s.uploadImage)
	handle("POST publish/create", s.createJob)
	s.mux.Handle("GET "+p+"static/{file}", http.HandlerFunc(s.static))
	s.mux.Handle(p, s.page(func(w http.ResponseWriter, r *http.Request) error {
		return httpError{http.StatusNotFound, "There is no page at " + r.URL.Path + "."}
	}))
}

// ServeHTTP serves the console, after the security checks: the address
// (loopback names only without a token), the token, the CSRF token and
// origin of a state change; every response carries the security headers.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if err := s.authorize(w, r); err != nil {
		s.fail(w, r, err)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := s.checkCSRF(r); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// httpError is an error shown to the user with a status.
type httpError struct {
	status int
	msg    string
}

func (e httpError) Error() string { return e.msg }

// page adapts a handler that returns an error: errors are shown on a page
// of their own (or as an event-stream error).
func (s *Server) page(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.fail(w, r, err)
		}
	})
}

// fail shows err to the user: what was wrong and what to do.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway // the cloud refused or failed
	var he httpError
	if errors.As(err, &he) {
		if he.status == 0 {
			return // handled: a redirect
		}
		status = he.status
	} else if errors.Is(err, context.Canceled) {
		return
	} else {
		s.log.Warn("console request failed", "path", r.URL.Path, "err", err)
	}
	if isStream(r) {
		http.Error(w, err.Error(), status)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, status, "error", &errorView{base: s.base(r, "", "Error"), Status: status, Message: err.Error()})
}

// static serves the embedded stylesheet and script.
func (s *Server) static(w http.ResponseWriter, r *http.Request) {
	f, ok := assets[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", f.contentType)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", f.etag)
	if r.Header.Get("If-None-Match") == f.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Write(f.data)
}

// uploadPath is where an upload's file lives.
func (s *Server) uploadPath(id, name string) string { return filepath.Join(s.cfg.UploadDir, id, name) }

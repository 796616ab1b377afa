package console

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/awsfota/awsfota/operator"
)

// upload is an image uploaded to be published, kept until its job is
// created (or for uploadTTL).
type upload struct {
	ID      string
	Name    string // the file's name, as the browser gave it (cleaned)
	Path    string
	Info    *operator.ImageInfo
	Created time.Time
}

type uploads struct {
	dir  string
	mu   sync.Mutex
	byID map[string]*upload
}

// uploadTTL is how long an upload waits for its job.
const uploadTTL = time.Hour

func (u *uploads) get(id string) *upload {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.byID[id]
}

func (u *uploads) add(up *upload, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, old := range u.byID {
		if now.Sub(old.Created) > uploadTTL {
			os.RemoveAll(filepath.Dir(old.Path))
			delete(u.byID, id)
		}
	}
	u.byID[up.ID] = up
}

func (u *uploads) remove(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if up, ok := u.byID[id]; ok {
		os.RemoveAll(filepath.Dir(up.Path))
		delete(u.byID, id)
	}
}

func (u *uploads) removeAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, up := range u.byID {
		os.RemoveAll(filepath.Dir(up.Path))
		delete(u.byID, id)
	}
}

// publishView is the Publish page: the upload form, or (with an upload)
// what the image is and the job's targets and settings.
type publishView struct {
	base
	Error  string
	Max    string
	Bucket string
	Upload *upload
	Things []string
	Groups []string
	Form   url.Values // what was submitted, to show again with an error
	AWS    bool
}

func (s *Server) publishView(r *http.Request) *publishView {
	return &publishView{base: s.base(r, "publish", "Publish"), Max: humanBytes(s.cfg.MaxUpload), Bucket: s.cfg.Bucket, Form: url.Values{}, AWS: !s.c.Local}
}

func (s *Server) publishPage(w http.ResponseWriter, r *http.Request) error {
	v := s.publishView(r)
	if id := r.URL.Query().Get("upload"); id != "" {
		if v.Upload = s.uploads.get(id); v.Upload == nil {
			v.Error = "That upload is gone (uploads are kept for an hour, and until their job is created): upload the image again."
		} else {
			v.Title = "Publish " + v.Upload.Name
			if err := s.targets(r, v); err != nil {
				return err
			}
		}
	}
	s.render(w, r, http.StatusOK, "publish", v)
	return nil
}

// targets lists the things and groups a job may target.
func (s *Server) targets(r *http.Request, v *publishView) error {
	things, err := s.allThings(r.Context())
	if err != nil {
		return err
	}
	for _, t := range things {
		v.Things = append(v.Things, t.Name)
	}
	v.Groups, _, err = s.groupsOf(r.Context())
	return err
}

// uploadImage receives an image (multipart: the CSRF token first, then the
// file, streamed to disk) and inspects it; a bad image is refused with what
// is wrong with it.
func (s *Server) uploadImage(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxUpload+64<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		return httpError{http.StatusBadRequest, "The upload is not a multipart form: " + err.Error()}
	}
	part, err := mr.NextPart()
	if err != nil || part.FormName() != csrfField {
		return s.validCSRF(r, "") // the token must come first
	}
	tok, _ := io.ReadAll(io.LimitReader(part, 256))
	if err := s.validCSRF(r, string(tok)); err != nil {
		return err
	}
	fail := func(msg string) error {
		v := s.publishView(r)
		v.Error = msg
		s.render(w, r, http.StatusUnprocessableEntity, "publish", v)
		return nil
	}
	var file *multipart.Part
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail("The upload was cut short: " + err.Error())
		}
		if p.FormName() == "image" {
			file = p
			break
		}
	}
	if file == nil || file.FileName() == "" {
		return fail("Choose an image file to upload (or drop one on the page).")
	}
	up := &upload{ID: randomID(), Name: cleanName(file.FileName()), Created: s.cfg.Clock.Now()}
	up.Path = s.uploadPath(up.ID, up.Name)
	if err := os.MkdirAll(filepath.Dir(up.Path), 0o700); err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(filepath.Dir(up.Path))
		}
	}()
	f, err := os.OpenFile(up.Path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, file)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig) || n > s.cfg.MaxUpload:
		return fail(fmt.Sprintf("%s is larger than the %s this console accepts.", up.Name, humanBytes(s.cfg.MaxUpload)))
	case err != nil:
		return fail("The upload was cut short: " + err.Error())
	case n == 0:
		return fail(up.Name + " is empty.")
	}
	info, err := operator.InspectImage(up.Path)
	if err != nil {
		return fail(strings.ReplaceAll(err.Error(), up.Path, up.Name))
	}
	up.Info = info
	keep = true
	s.uploads.add(up, s.cfg.Clock.Now())
	http.Redirect(w, r, s.link("publish", "upload", up.ID), http.StatusSeeOther)
	return nil
}

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// cleanName makes a browser-given file name safe as a file and S3 key
// name: its base, with only letters, digits, '.', '_' and '-'.
func cleanName(name string) string {
	name = filepath.Base(strings.ReplaceAll(name, "\\", "/"))
	var b strings.Builder
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	out := b.String()
	if len(out) > 100 {
		out = out[len(out)-100:] // the end keeps the extension
	}
	out = strings.TrimLeft(out, ".")
	if out == "" {
		out = "image.bin"
	}
	return out
}

// createJob publishes an uploaded image: the job's targets and settings
// come from the form.
func (s *Server) createJob(w http.ResponseWriter, r *http.Request) error {
	f := r.PostForm
	v := s.publishView(r)
	v.Form = f
	if v.Upload = s.uploads.get(f.Get("upload")); v.Upload == nil {
		v.Error = "That upload is gone (uploads are kept for an hour, and until their job is created): upload the image again."
		s.render(w, r, http.StatusUnprocessableEntity, "publish", v)
		return nil
	}
	v.Title = "Publish " + v.Upload.Name
	fail := func(msg string) error {
		if err := s.targets(r, v); err != nil {
			return err
		}
		v.Error = msg
		s.render(w, r, http.StatusUnprocessableEntity, "publish", v)
		return nil
	}
	o := operator.JobOptions{Image: v.Upload.Path, Things: f["thing"], Groups: f["group"], JobID: strings.TrimSpace(f.Get("job-id")),
		Bucket: s.cfg.Bucket, CreateBucket: s.cfg.CreateBucket, PresignRole: s.cfg.PresignRole, Keyring: s.cfg.Keyring, Description: strings.TrimSpace(f.Get("description")),
		Version: strings.TrimSpace(f.Get("version")), Continuous: f.Get("continuous") == "on"}
	if len(o.Things) == 0 && len(o.Groups) == 0 {
		return fail("Pick the devices to update: at least one thing or thing group.")
	}
	if o.Bucket == "" {
		return fail("This console has no bucket for images: start it with --bucket NAME.")
	}
	for _, n := range []struct {
		field    string
		label    string
		min, max float64
		to       func(float64)
	}{
		{"rollout", "Devices a minute", 0, 1000, func(x float64) { o.RolloutPerMinute = int(x) }},
		{"abort-percent", "Abort failure percentage", 0, 100, func(x float64) { o.AbortFailurePercent = x }},
		{"abort-min", "Abort after this many finished", 1, 1e6, func(x float64) { o.AbortMinExecuted = int(x) }},
		{"timeout", "In-progress timeout", 0, 10080, func(x float64) { o.TimeoutMinutes = int(x) }},
		{"step-timeout", "Step timeout", 0, 10080, func(x float64) { o.StepTimeoutMinutes = int(x) }},
		{"retries", "Retries", 0, 10, func(x float64) { o.Retries = int(x) }},
	} {
		raw := strings.TrimSpace(f.Get(n.field))
		if raw == "" {
			continue
		}
		x, err := strconv.ParseFloat(raw, 64)
		if err != nil || x < n.min || x > n.max || (n.field != "abort-percent" && x != float64(int(x))) {
			return fail(fmt.Sprintf("%s: %q is not a number from %g to %g.", n.label, raw, n.min, n.max))
		}
		n.to(x)
	}
	p, err := s.c.Prepare(o)
	if err != nil {
		return fail(strings.ReplaceAll(err.Error(), v.Upload.Path, v.Upload.Name))
	}
	res, err := s.c.Create(r.Context(), p, nil)
	if err != nil {
		return fail(err.Error())
	}
	s.uploads.remove(v.Upload.ID)
	http.Redirect(w, r, s.cfg.Prefix+"jobs/"+url.PathEscape(res.JobID), http.StatusSeeOther)
	return nil
}

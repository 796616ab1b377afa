package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// contentSecurityPolicy allows the console's own script and stylesheet and
// nothing else: no inline script or style, no other origin, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Cookie names.
const (
	tokenCookie   = "awsfota_console_token"
	sessionCookie = "awsfota_console_session"
	csrfField     = "csrf" // the form field that carries the CSRF token
)

// keys are the server's secrets for this process.
type keys struct {
	csrf []byte // HMAC key of CSRF tokens
}

func newKeys() (keys, error) {
	k := keys{csrf: make([]byte, 32)}
	if _, err := rand.Read(k.csrf); err != nil {
		return k, fmt.Errorf("console: %w", err)
	}
	return k, nil
}

// NewToken returns a random access token (32 bytes, base64url).
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// IsLoopback reports whether a listen address (host:port) binds loopback
// only, where the console needs no token.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type sessionKey struct{}

// authorize checks who may use the console: the token when there is one,
// else a request addressed to a loopback name. It also gives a browser
// without one a session (the CSRF tokens are bound to it).
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Token == "" {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return httpError{http.StatusForbidden, fmt.Sprintf("This console answers only at a loopback address (localhost, 127.0.0.1), not at %q. "+
				"To serve it on another address, start it with --addr and use the token it prints (or --token-file).", r.Host)}
		}
	} else {
		if q := r.URL.Query().Get("token"); q != "" && r.Method == http.MethodGet {
			if !equal(q, s.cfg.Token) {
				return httpError{http.StatusUnauthorized, "The token in this URL is not this console's. Open the URL the console printed when it started, or read the token from its --token-file."}
			}
			http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: s.cfg.Token, Path: s.cfg.Prefix, HttpOnly: true, SameSite: http.SameSiteStrictMode})
			u := *r.URL
			v := u.Query()
			v.Del("token")
			u.RawQuery = v.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return errHandled
		}
		ok := false
		if c, err := r.Cookie(tokenCookie); err == nil && equal(c.Value, s.cfg.Token) {
			ok = true
		}
		if b, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); found && equal(b, s.cfg.Token) {
			ok = true
		}
		if !ok {
			return httpError{http.StatusUnauthorized, "This console needs its token. Open the URL it printed when it started (it ends in ?token=…), or read the token from its --token-file and add ?token=TOKEN to the address."}
		}
	}
	sess := ""
	if c, err := r.Cookie(sessionCookie); err == nil && len(c.Value) == 43 {
		sess = c.Value
	} else {
		b := make([]byte, 32)
		rand.Read(b)
		sess = base64.RawURLEncoding.EncodeToString(b)
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sess, Path: s.cfg.Prefix, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	}
	*r = *r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess))
	return nil
}

// errHandled: the response was written (a redirect).
var errHandled = httpError{0, ""}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// csrfToken is the CSRF token of the request's session: every form carries
// it, and a state change is accepted only with it.
func (s *Server) csrfToken(r *http.Request) string {
	sess, _ := r.Context().Value(sessionKey{}).(string)
	m := hmac.New(sha256.New, s.keys.csrf)
	m.Write([]byte(sess))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

var crossOrigin = http.NewCrossOriginProtection()

// checkCSRF refuses a state change from another origin, or without the
// session's CSRF token. A multipart form (an upload) is checked by its
// handler, which reads the token from the form's first part without
// buffering the file.
func (s *Server) checkCSRF(r *http.Request) error {
	if err := crossOrigin.Check(r); err != nil {
		return httpError{http.StatusForbidden, "This request came from another site and was refused (cross-origin request protection)."}
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		return nil
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		return httpError{http.StatusBadRequest, "The form could not be read: " + err.Error()}
	}
	return s.validCSRF(r, r.PostForm.Get(csrfField))
}

func (s *Server) validCSRF(r *http.Request, token string) error {
	if token == "" || !equal(token, s.csrfToken(r)) {
		return httpError{http.StatusForbidden, "This form has expired or did not come from this console (its CSRF token does not match). Reload the page and submit it again."}
	}
	return nil
}

// withToken returns a console URL that carries the token, to print once.
func WithToken(u, token string) string {
	if token == "" {
		return u
	}
	return u + "?token=" + url.QueryEscape(token)
}

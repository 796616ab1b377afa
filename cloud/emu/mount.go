package emu

import (
	"net/http"
	"strings"
)

// mounts are the handlers Mount added to the HTTP port.
type mounts struct {
	prefix  []string
	handler []http.Handler
}

// Mount serves h on the cloud's HTTP port for the unsigned requests whose
// path starts with prefix ("/console/", say), ahead of the object store:
// an anonymous read of a public bucket of that name is then out of reach
// (signed and presigned requests still go to the APIs). h sees the whole
// path. `awsfota cloud serve` mounts the web console this way, so that
// cloud/ needs nothing of it. Mount is safe for concurrent use; a handler
// that holds long requests open (server-sent events) should end them before
// Close, which waits up to 5 seconds for requests in flight.
func (c *Cloud) Mount(prefix string, h http.Handler) {
	c.mountMu.Lock()
	defer c.mountMu.Unlock()
	c.mounted.prefix = append(c.mounted.prefix, prefix)
	c.mounted.handler = append(c.mounted.handler, h)
}

// mountFor returns the mounted handler that serves r, or nil.
func (c *Cloud) mountFor(r *http.Request) http.Handler {
	c.mountMu.RLock()
	defer c.mountMu.RUnlock()
	for i, p := range c.mounted.prefix {
		if strings.HasPrefix(r.URL.Path, p) {
			return c.mounted.handler[i]
		}
	}
	return nil
}

// Connected reports whether a thing has a live MQTT connection to the
// embedded broker now. With an external broker the cloud cannot tell, and
// it reports false.
func (c *Cloud) Connected(thing string) bool {
	return c.broker != nil && c.broker.Connected(thing)
}

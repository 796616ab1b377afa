package emu

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/awsfota/awsfota/cloud/jobsvc"
	"github.com/awsfota/awsfota/cloud/sigv4"
)

// Paths of the local cloud's own HTTP API, for awsfota's tools in another
// process (`awsfota console --local DIR`): the Jobs service's change stream
// and the things connected now. Requests are signed with SigV4 (service
// "iot") with the cloud's credentials, as the AWS IoT API's.
const (
	ChangesPath   = "/awsfota/v1/job-changes"
	ConnectedPath = "/awsfota/v1/connected-things"
)

// changesBuffer is how many changes may wait for a slow reader of the
// stream before the cloud ends it (the reader re-reads and starts again).
const changesBuffer = 4096

// serveOwn serves the cloud's own API, or reports that r is not for it.
func (c *Cloud) serveOwn(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Path != ChangesPath && r.URL.Path != ConnectedPath {
		return false
	}
	v := sigv4.Verifier{Region: c.cfg.Region, Clock: c.cfg.Clock, Lookup: func(id string) (string, bool) {
		return c.creds.SecretAccessKey, id == c.creds.AccessKeyID
	}}
	if auth, err := v.Verify(r); err != nil || auth.Service != "iot" {
		http.Error(w, "sign the request with SigV4 for service iot, with the credentials of endpoints.json", http.StatusForbidden)
		return true
	}
	if r.Method != http.MethodGet {
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return true
	}
	if r.URL.Path == ConnectedPath {
		if c.broker == nil {
			http.Error(w, "this local cloud runs on an external broker (--external-mqtt): it cannot tell which things are connected", http.StatusNotImplemented)
			return true
		}
		things := c.broker.ConnectedClients()
		sort.Strings(things)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(struct {
			Things []string `json:"things"`
		}{append([]string{}, things...)})
		return true
	}
	c.streamChanges(w, r)
	return true
}

// streamChanges sends the Jobs service's changes, one JSON object a line,
// until the client goes, the cloud closes, or the client falls behind.
func (c *Cloud) streamChanges(w http.ResponseWriter, r *http.Request) {
	c.own.once.Do(func() {
		c.own.streams, c.own.end = context.WithCancel(context.Background())
		c.httpSrv.RegisterOnShutdown(c.own.end) // Close ends the streams
	})
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(c.own.streams, cancel)
	defer stop()
	watch := c.Jobs.Watch(changesBuffer)
	defer watch.Close()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	enc := json.NewEncoder(w)
	for {
		select {
		case <-ctx.Done():
			return
		case ch, ok := <-watch.C:
			if !ok {
				return // fell behind
			}
			if enc.Encode(ch) != nil {
				return
			}
			if len(watch.C) == 0 && rc.Flush() != nil {
				return
			}
		}
	}
}

// signedGet makes a GET of the cloud's own API, signed.
func signedGet(ctx context.Context, ep Endpoints, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.HTTP+path, nil)
	if err != nil {
		return nil, err
	}
	if err := sigv4.Sign(req, sigv4.Credentials{AccessKeyID: ep.AccessKeyID, SecretAccessKey: ep.SecretAccessKey}, ep.Region, "iot", time.Now(), ""); err != nil {
		return nil, err
	}
	client := &http.Client{}
	if strings.HasPrefix(ep.HTTP, "https://") {
		// The port serves TLS with a certificate of the local CA.
		pem, err := os.ReadFile(ep.CAFile)
		if err != nil {
			return nil, fmt.Errorf("emu: reading the local cloud's CA: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("emu: %s holds no PEM certificate: restart the local cloud to rewrite it", ep.CAFile)
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("emu: %w (is the local cloud at %s running?)", err, ep.HTTP)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("emu: GET %s%s: %s: %s", ep.HTTP, path, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

// WatchChanges follows the Jobs service of the local cloud at ep from
// another process, as jobsvc.Service.Watch does in the cloud's: the channel
// receives every change committed after the call returns, and is closed
// when ctx ends, the cloud stops, or the reader fell behind (then re-read,
// and watch again).
func WatchChanges(ctx context.Context, ep Endpoints) (<-chan jobsvc.Change, error) {
	resp, err := signedGet(ctx, ep, ChangesPath)
	if err != nil {
		return nil, err
	}
	ch := make(chan jobsvc.Change, 64)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		dec := json.NewDecoder(resp.Body)
		for {
			var c jobsvc.Change
			if err := dec.Decode(&c); err != nil {
				return
			}
			select {
			case ch <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// ConnectedThings returns the things connected now to the embedded broker
// of the local cloud at ep (none with an external broker).
func ConnectedThings(ctx context.Context, ep Endpoints) ([]string, error) {
	resp, err := signedGet(ctx, ep, ConnectedPath)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Things []string `json:"things"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("emu: reading the connected things: %w", err)
	}
	return out.Things, nil
}

// ownAPI is the state of the cloud's own API.
type ownAPI struct {
	once    sync.Once
	streams context.Context // ends when the HTTP server shuts down
	end     context.CancelFunc
}

package sim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"time"

	"github.com/awsfota/awsfota/clock"
)

// linkClient returns an HTTP client whose response bodies arrive at most at
// rate bytes per second, as over a constrained (cellular) link.
func linkClient(rate int64, roots *x509.CertPool, clk clock.Clock) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.TLSClientConfig = &tls.Config{RootCAs: roots}
	return &http.Client{Transport: SlowLink(tr, rate, clk)}
}

// SlowLink returns a transport whose response bodies arrive through rt at
// most at rate bytes per second, as over a constrained (cellular) link.
func SlowLink(rt http.RoundTripper, rate int64, clk clock.Clock) http.RoundTripper {
	return &slowTransport{rt: rt, rate: rate, clk: clk}
}

type slowTransport struct {
	rt   http.RoundTripper
	rate int64
	clk  clock.Clock
}

func (s *slowTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &slowBody{ReadCloser: resp.Body, rate: s.rate, clk: s.clk, ctx: r.Context(), start: s.clk.Now()}
	return resp, nil
}

// CloseIdleConnections lets the client drop its connections at a reboot.
func (s *slowTransport) CloseIdleConnections() {
	if c, ok := s.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type slowBody struct {
	io.ReadCloser
	rate  int64
	clk   clock.Clock
	ctx   context.Context
	start time.Time
	n     int64
}

func (b *slowBody) Read(p []byte) (int, error) {
	// Deliver in slices of a tenth of a second's worth, paced by the clock.
	if max := int(b.rate/10) + 1; len(p) > max {
		p = p[:max]
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	due := b.start.Add(time.Duration(float64(b.n) / float64(b.rate) * float64(time.Second)))
	if wait := due.Sub(b.clk.Now()); wait > 0 {
		if !clock.Sleep(b.clk, wait, b.ctx.Done()) {
			return n, b.ctx.Err()
		}
	}
	return n, err
}

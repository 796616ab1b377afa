// Package fleetsim runs a fleet of thousands of simulated devices in one
// process against a cloud in another: each device is the real device
// library (agent, runner, MQTT connection with its own certificate,
// resumable downloader, MCUboot target) over a simulated bootloader and
// flash kept in memory, its sectors shared between devices that hold the
// same bytes (sim.SharedFlash), so that ten thousand devices fit in a few
// hundred MiB. It counts what the devices do (connected, downloading, on
// trial, done, failed) and when each finished, for `awsfota sim fleet`.
//
// It imports sim and device/*; never cloud/* (the cloud is another
// process, reached over the network) nor the operator layer (the CLI
// provisions the things and hands their credentials in).
package fleetsim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/device/download"
	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/device/mqttconn"
	"github.com/awsfota/awsfota/device/state"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/mcuboot"
	"github.com/awsfota/awsfota/sim"
)

// Credentials are what a device needs to connect as its thing.
type Credentials struct {
	Thing   string `json:"thing"`
	CertPEM string `json:"certificatePem"`
	KeyPEM  string `json:"privateKeyPem"`
}

// Config describes a fleet.
type Config struct {
	Devices []Credentials
	// Endpoint is the broker's host:port; RootCAs verify it (and HTTPS
	// downloads); ServerName is the name checked in its certificate.
	Endpoint   string
	RootCAs    *x509.CertPool
	ServerName string
	// Factory is the image every device runs at first.
	Factory []byte
	// Keys are the image signing keys the devices trust.
	Keys []*mcuboot.PublicKey
	// Geometry of each slot; zero: the smallest sim.DefaultGeometry-like
	// area (4 KiB sectors) that holds MaxImage.
	Geometry flash.Geometry
	// MaxImage is the largest image the slots must hold (default 1 MiB
	// slots when Geometry is zero and MaxImage is 0).
	MaxImage int64
	// LinkRate limits each device's downloads to this many bytes a second
	// (0: no limit).
	LinkRate int64
	// FailPercent of the devices (spread evenly) fail their self-test
	// after booting a new image; OfflinePercent never connect.
	FailPercent, OfflinePercent float64
	// Connecting bounds the devices connecting at once (default 200): a
	// fleet switched on together would otherwise time out its own TLS
	// handshakes.
	Connecting int
	// Downloading bounds the devices downloading at once (0: no bound): the
	// network the fleet shares. Each download is its own connection,
	// closed when the body is done, so that a fleet of N devices holds at
	// most N MQTT and Downloading HTTP connections in both processes.
	Downloading int
	// Agent settings for every device (Thing is filled in).
	Agent  agent.Config
	Logger *slog.Logger
	// Clock tells the time of events (default time.Now).
	Now func() time.Time
}

// Phase is where a device is in an update.
type Phase int32

// Phases, in the order a device goes through them.
const (
	Offline     Phase = iota // never connects (Config.OfflinePercent)
	Connecting               // started, not connected yet
	Connected                // connected, no update under way
	Downloading              // a job was accepted; downloading and verifying
	OnTrial                  // rebooting into the new image, self-test, confirm
	Done                     // reported SUCCEEDED
	Failed                   // reported FAILED (or another terminal status but SUCCEEDED)
	Canceled                 // the cloud canceled or removed the job
	numPhases
)

var phaseNames = [numPhases]string{"offline", "connecting", "connected", "downloading", "on trial", "done", "failed", "canceled"}

func (p Phase) String() string {
	if p < 0 || p >= numPhases {
		return fmt.Sprintf("phase(%d)", int(p))
	}
	return phaseNames[p]
}

// Counts is how many devices are in each phase.
type Counts [numPhases]int

// Fleet is a running fleet.
type Fleet struct {
	cfg     Config
	devices []*member
	counts  [numPhases]atomic.Int64
	served  atomic.Int64
	// downloads holds a token per download under way (nil: no bound).
	downloads chan struct{}
	connErrs  atomic.Int64
	up        atomic.Int64 // devices that have connected at least once
	upAll     chan struct{}
	online    int
	upOnce    sync.Once
}

type member struct {
	f          *Fleet
	dev        *sim.Device
	offline    bool
	fails      bool
	mu         sync.Mutex
	phase      Phase
	up         bool          // has connected at least once
	connecting chan struct{} // the Connecting slot it holds until it connects
	job        string
	started    time.Time // of the current update (EventStart)
	end        time.Time // of its terminal report
	status     iotjobs.Status
	reason     string
	connErr    error // the last connection error
	connErrs   int   // connection errors so far
}

// spread reports whether item i of n is among the share pct (0-100) chosen
// evenly across the n, shifted by phase so that two shares differ.
func spread(i int, pct float64, phase int) bool {
	// In thousandths of a percent, in integers: exactly n*pct/100 of any n
	// devices from the first.
	p := int64(pct * 1000)
	k := int64(i + phase)
	return (k+1)*p/100_000 > k*p/100_000
}

// New makes the fleet's devices, each factory-fresh and running Factory.
func New(cfg Config) (*Fleet, error) {
	if len(cfg.Devices) == 0 {
		return nil, errors.New("fleetsim: no devices")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Connecting <= 0 {
		cfg.Connecting = 200
	}
	if cfg.Geometry == (flash.Geometry{}) {
		cfg.Geometry = sim.DefaultGeometry
		if cfg.MaxImage > 0 {
			// Room for the image and MCUboot's trailer, in whole sectors.
			need := cfg.MaxImage + 8*cfg.Geometry.SectorSize
			cfg.Geometry.Size = (need + cfg.Geometry.SectorSize - 1) / cfg.Geometry.SectorSize * cfg.Geometry.SectorSize
		}
	}
	f := &Fleet{cfg: cfg, upAll: make(chan struct{})}
	if cfg.Downloading > 0 {
		f.downloads = make(chan struct{}, cfg.Downloading)
	}
	// The bootloaders of devices that hold the same image check it once.
	validate := &sim.ValidateCache{Keys: cfg.Keys}
	// They all trust the same CA and reach the same broker: its chain is
	// verified once (each handshake still checks the broker's signature).
	chains := new(mqttconn.VerifiedChains)
	for i, c := range cfg.Devices {
		// Each device its own HTTP connection, as devices share nothing but
		// the network, closed once a download is done, as a device does; the
		// bytes served are the bodies read.
		var rt http.RoundTripper = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cfg.RootCAs}, DisableKeepAlives: true}
		if cfg.LinkRate > 0 {
			rt = sim.SlowLink(rt, cfg.LinkRate, clock.Real())
		}
		rt = &countingTransport{rt: rt, n: &f.served, slots: f.downloads}
		cert, err := tls.X509KeyPair([]byte(c.CertPEM), []byte(c.KeyPEM))
		if err != nil {
			return nil, fmt.Errorf("fleetsim: %s's certificate and key: %w", c.Thing, err)
		}
		p, err := sim.NewSharedFlash(cfg.Geometry)
		if err != nil {
			return nil, err
		}
		s, _ := sim.NewSharedFlash(cfg.Geometry)
		m := &member{f: f, offline: spread(i, cfg.OfflinePercent, 0), fails: spread(i, cfg.FailPercent, 7)}
		dc := sim.DeviceConfig{
			Thing: c.Thing, Geometry: cfg.Geometry, Keys: cfg.Keys,
			Memory:   &sim.Memory{Primary: p, Secondary: s, State: &state.Mem{}},
			Endpoint: cfg.Endpoint, Certificate: cert, RootCAs: cfg.RootCAs, ServerName: cfg.ServerName,
			TLSSessions:    tls.NewLRUClientSessionCache(1),
			VerifiedChains: chains,
			// P-256 alone: a microcontroller's TLS stack offers no
			// post-quantum key exchange, and its crypto accelerator does
			// P-256 (CryptoCell and the like); it is also the cheapest for
			// the machine that simulates the fleet (a quarter less CPU than
			// X25519 on each side of a handshake).
			TLSCurves: []tls.CurveID{tls.CurveP256},
			// A reboot reconnects to the session the broker kept: no
			// SUBSCRIBE storm when thousands reboot together.
			TrustSession: true,
			Agent:        cfg.Agent,
			Download:     download.Config{Client: &http.Client{Transport: rt}},
			// Progress is made durable every 64 KiB, as a device with a
			// small flash page budget would.
			CheckpointBytes: 64 << 10,
			SelfTest:        m.selfTest,
			BootValidate:    validate.Validate,
			OnEvent:         m.event,
			OnBoot:          m.boot,
			OnConnUp:        m.connUp,
			OnConnError:     m.connError,
			Logger:          cfg.Logger,
		}
		d, err := sim.OpenDevice(dc)
		if err != nil {
			return nil, err
		}
		if err := d.Install(cfg.Factory); err != nil {
			return nil, err
		}
		m.dev = d
		if m.offline {
			m.phase = Offline
		} else {
			m.phase = Connecting
			f.online++
		}
		f.counts[m.phase].Add(1)
		f.devices = append(f.devices, m)
	}
	if f.online == 0 {
		close(f.upAll)
	}
	return f, nil
}

// Online is how many devices connect (the fleet less the offline share).
func (f *Fleet) Online() int { return f.online }

// Connected is closed once every online device has connected.
func (f *Fleet) Connected() <-chan struct{} { return f.upAll }

// Counts returns how many devices are in each phase now.
func (f *Fleet) Counts() Counts {
	var c Counts
	for i := range c {
		c[i] = int(f.counts[i].Load())
	}
	return c
}

// ConnErrors counts the devices' failed connection attempts.
func (f *Fleet) ConnErrors() int64 { return f.connErrs.Load() }

// BytesServed is how many bytes of firmware the devices have downloaded.
func (f *Fleet) BytesServed() int64 { return f.served.Load() }

// Run runs every online device until ctx ends, starting them as fast as
// Config.Connecting allows, and returns nil then. A device that fails
// (bricks) stops the fleet with its error.
func (f *Fleet) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	slots := make(chan struct{}, f.cfg.Connecting)
	for _, m := range f.devices {
		if m.offline {
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		m.mu.Lock()
		m.connecting = slots
		m.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := m.dev.Run(ctx)
			m.release()
			if err != nil && !errors.Is(err, context.Canceled) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", m.dev.Thing(), err))
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close releases the devices.
func (f *Fleet) Close() error {
	var errs []error
	for _, m := range f.devices {
		errs = append(errs, m.dev.Close())
	}
	return errors.Join(errs...)
}

// Result is one device's last update.
type Result struct {
	Thing   string
	Phase   Phase
	JobID   string
	Status  iotjobs.Status // its terminal report, if any
	Reason  string         // why it failed
	Started time.Time      // when it accepted the job
	End     time.Time      // when the cloud accepted its terminal report
	// ConnErrors counts its failed connection attempts; ConnErr is the
	// last one.
	ConnErrors int
	ConnErr    error
}

// Results returns every device's last update, in the order of the devices.
func (f *Fleet) Results() []Result {
	out := make([]Result, len(f.devices))
	for i, m := range f.devices {
		m.mu.Lock()
		out[i] = Result{Thing: m.dev.Thing(), Phase: m.phase, JobID: m.job, Status: m.status, Reason: m.reason, Started: m.started, End: m.end,
			ConnErrors: m.connErrs, ConnErr: m.connErr}
		m.mu.Unlock()
	}
	return out
}

// setPhase moves the device to p; the caller holds m.mu.
func (m *member) setPhase(p Phase) {
	if m.phase == p {
		return
	}
	m.f.counts[m.phase].Add(-1)
	m.f.counts[p].Add(1)
	m.phase = p
}

func (m *member) connUp() {
	m.mu.Lock()
	first := !m.up
	m.up = true
	if m.phase == Connecting {
		m.setPhase(Connected)
	}
	m.mu.Unlock()
	if first {
		m.release()
		if int(m.f.up.Add(1)) == m.f.online {
			m.f.upOnce.Do(func() { close(m.f.upAll) })
		}
	}
}

func (m *member) connError(err error) {
	m.mu.Lock()
	m.connErr = err
	m.connErrs++
	m.mu.Unlock()
	m.f.connErrs.Add(1)
}

func (m *member) release() {
	m.mu.Lock()
	c := m.connecting
	m.connecting = nil
	m.mu.Unlock()
	if c != nil {
		<-c
	}
}

func (m *member) event(e agent.AppEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch e.Kind {
	case agent.EventStart:
		if e.JobID != m.job || m.phase >= Done {
			m.job, m.started, m.end, m.status, m.reason = e.JobID, m.f.cfg.Now(), time.Time{}, "", ""
		}
		m.setPhase(Downloading)
	case agent.EventDone:
		m.setPhase(OnTrial)
	case agent.EventError:
		m.reason = e.Reason
	case agent.EventCanceled:
		m.end = m.f.cfg.Now()
		m.setPhase(Canceled)
	case agent.EventCompleted:
		m.end, m.status = m.f.cfg.Now(), e.Status
		if e.JobID != "" {
			m.job = e.JobID
		}
		if e.Status == iotjobs.StatusSucceeded {
			m.setPhase(Done)
		} else {
			m.setPhase(Failed)
		}
	}
}

func (m *member) boot(_ sim.BootResult, run dfu.Running) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !run.Confirmed && m.phase == Downloading {
		m.setPhase(OnTrial)
	}
}

func (m *member) selfTest(context.Context) error {
	if m.fails {
		return errors.New("simulated self-test failure (--fail-percent)")
	}
	return nil
}

// countingTransport counts the bytes of the bodies read through it and,
// with slots, holds a slot from each request until its body is closed.
type countingTransport struct {
	rt    http.RoundTripper
	n     *atomic.Int64
	slots chan struct{}
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	release := func() {}
	if c.slots != nil {
		select {
		case c.slots <- struct{}{}:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
		var once sync.Once
		release = func() { once.Do(func() { <-c.slots }) }
	}
	res, err := c.rt.RoundTrip(r)
	if err != nil {
		release()
		return nil, err
	}
	res.Body = &countingBody{ReadCloser: res.Body, n: c.n, release: release}
	return res, nil
}

func (c *countingTransport) CloseIdleConnections() {
	if ci, ok := c.rt.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

type countingBody struct {
	io.ReadCloser
	n       *atomic.Int64
	release func()
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *countingBody) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}

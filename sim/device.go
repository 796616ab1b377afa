package sim

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/device/dfu/deltaslot"
	"github.com/awsfota/awsfota/device/dfu/mcubootslot"
	"github.com/awsfota/awsfota/device/dfu/modem"
	"github.com/awsfota/awsfota/device/download"
	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/device/mqttconn"
	"github.com/awsfota/awsfota/device/runner"
	"github.com/awsfota/awsfota/device/state"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/mcuboot"
)

// DefaultGeometry is the slot geometry of simulated devices: 1 MiB slots of
// 4 KiB sectors, programmed in 4-byte words (an nRF91-like part).
var DefaultGeometry = flash.Geometry{Size: 1 << 20, SectorSize: 4096, WriteAlign: 4}

// slotOptions describe the simulated bootloader's build: it swaps using
// move, so the largest image leaves one sector free.
var slotOptions = mcubootslot.Options{SwapMove: true}

// DeviceConfig describes a simulated device.
type DeviceConfig struct {
	// Dir keeps the device's flash (primary.bin, secondary.bin) and state,
	// unless Memory says otherwise.
	Dir string
	// Memory, when set, holds the device's slots and the agent's state
	// instead of files in Dir (which is then unused): the device forgets
	// everything when the process ends, and fleets of thousands need no
	// disk. Its slots must have the device's Geometry.
	Memory *Memory
	Thing  string
	// Geometry of each slot (DefaultGeometry).
	Geometry flash.Geometry
	// Keys are the public keys the device trusts: its bootloader's built-in
	// keys, which the agent's target checks too. Without keys images are
	// checked by their SHA-256 alone.
	Keys []*mcuboot.PublicKey

	// MQTT endpoint (host:port), the device certificate and the CA that
	// signed the broker's certificate.
	Endpoint    string
	Certificate tls.Certificate
	RootCAs     *x509.CertPool
	ServerName  string
	// TLSSessions, when set, lets the device resume its TLS session with
	// the broker when it reconnects (after a reboot, say), as a device
	// that keeps its session ticket does.
	TLSSessions tls.ClientSessionCache
	// VerifiedChains, when set, is shared by devices that trust the same
	// RootCAs: the broker's chain is verified once for all of them
	// (mqttconn.VerifiedChains).
	VerifiedChains *mqttconn.VerifiedChains
	// TrustSession skips resubscribing when the broker kept the device's
	// session (mqttconn.Config.TrustSession).
	TrustSession bool
	// TLSCurves, when set, are the key exchanges the device offers the
	// broker (mqttconn.Config.CurvePreferences).
	TLSCurves []tls.CurveID

	// Agent settings (Thing is filled in).
	Agent agent.Config
	// Download settings (RootCAs defaults to the device's).
	Download download.Config
	// CheckpointBytes is how often download progress is made durable.
	CheckpointBytes int64
	// LinkRate limits downloads to this many bytes per second (0: no limit),
	// to simulate a constrained link.
	LinkRate int64
	// SelfTest runs after booting a new image; nil passes.
	SelfTest func(ctx context.Context) error
	// BootValidate, when set, is the bootloader's image check
	// (Bootloader.Validate), such as a ValidateCache shared by a fleet.
	BootValidate func(r io.ReaderAt, size int64) error
	// OnEvent receives the agent's application events.
	OnEvent func(agent.AppEvent)
	// OnBoot is told about every boot.
	OnBoot func(BootResult, dfu.Running)
	// OnConnError receives the MQTT connection's errors, as
	// mqttconn.Config.OnError; nil logs them at Warn. OnConnUp is told
	// when the connection is up.
	OnConnError func(error)
	OnConnUp    func()
	// KeepAlive is the MQTT keep-alive (mqttconn's default when 0): a
	// short one notices a stalled connection sooner.
	KeepAlive time.Duration
	// ConnectTimeout bounds each MQTT connection attempt (mqttconn's
	// default when 0).
	ConnectTimeout time.Duration
	// ModemVersion, when set, gives the device a simulated modem (kept in
	// Dir/modem) that first runs this firmware.
	ModemVersion string
	// Power, when set, subjects the device library's flash, state and
	// publishes to a simulated supply that may be cut (see Power).
	Power  *Power
	Logger *slog.Logger
}

// Device is a simulated device: two flash slots in files, a bootloader and
// the device library.
type Device struct {
	cfg       DeviceConfig
	primary   flash.Flash
	secondary flash.Flash
	store     state.Store
	boot      Bootloader
	fetch     *download.Downloader
	modem     *Modem
	reboots   atomic.Int64
	mu        sync.Mutex
	closed    bool
}

// OpenDevice opens (creating if needed) the device kept in cfg.Dir.
func OpenDevice(cfg DeviceConfig) (*Device, error) {
	if cfg.Thing == "" {
		return nil, errors.New("sim: the device needs a thing name")
	}
	if cfg.Geometry == (flash.Geometry{}) {
		cfg.Geometry = DefaultGeometry
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p, s, st, err := openStorage(cfg)
	if err != nil {
		return nil, err
	}
	dl := cfg.Download
	if dl.RootCAs == nil {
		dl.RootCAs = cfg.RootCAs
	}
	if cfg.LinkRate > 0 && dl.Client == nil {
		dl.Client = linkClient(cfg.LinkRate, dl.RootCAs, clock.Real())
	}
	d := &Device{cfg: cfg, primary: p, secondary: s, store: st, fetch: download.New(dl)}
	if cfg.ModemVersion != "" {
		if d.modem, err = OpenModem(filepath.Join(cfg.Dir, "modem"), cfg.ModemVersion); err != nil {
			closeFlash(p, s)
			return nil, err
		}
	}
	// The bootloader runs on the device's supply too: a cut may fall inside
	// a swap, which the next boot resumes.
	var bp, bs flash.Flash = p, s
	if cfg.Power != nil {
		bp, bs = &powerFlash{p, cfg.Power}, &powerFlash{s, cfg.Power}
	}
	d.boot = Bootloader{Primary: bp, Secondary: bs, Keys: cfg.Keys, Validate: cfg.BootValidate}
	return d, nil
}

// Thing returns the device's thing name.
func (d *Device) Thing() string { return d.cfg.Thing }

// Install programs an image into the primary slot, as a factory would: the
// image runs confirmed at the next boot.
func (d *Device) Install(image []byte) error {
	g := d.cfg.Geometry
	if int64(len(image)) > mcubootslot.MaxImageSize(g, slotOptions) {
		return fmt.Errorf("sim: image of %d bytes does not fit the %d-byte slot", len(image), g.Size)
	}
	for _, f := range []flash.Flash{d.primary, d.secondary} {
		if err := f.Erase(0, g.Size); err != nil {
			return err
		}
	}
	if _, err := d.primary.WriteAt(image, 0); err != nil {
		return err
	}
	return d.primary.Sync()
}

// Running describes the image in the primary slot.
func (d *Device) Running() (dfu.Running, error) {
	return mcubootslot.NewPrimary(d.primary, mcubootslot.Options{}).Running()
}

// Primary returns the primary slot's image area (for tests and checks).
func (d *Device) Primary() io.ReaderAt { return d.primary }

// Secondary returns the secondary slot.
func (d *Device) Secondary() io.ReaderAt { return d.secondary }

// Reboots counts the reboots the agent asked for.
func (d *Device) Reboots() int { return int(d.reboots.Load()) }

// ModemVersion returns the simulated modem's firmware version ("" without a
// modem).
func (d *Device) ModemVersion() (string, error) {
	if d.modem == nil {
		return "", nil
	}
	return d.modem.Version()
}

// Boot runs the bootloader once without starting the agent.
func (d *Device) Boot() (BootResult, error) { return d.boot.Boot() }

// Run boots the device and runs the agent until ctx ends; every reboot the
// agent asks for goes through the bootloader again. It returns ctx's error,
// ErrNoBootableImage if the device bricked, or ErrPowerCut when its Power was
// cut.
func (d *Device) Run(ctx context.Context) error {
	if p := d.cfg.Power; p != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		p.whenCut(cancel)
	}
	for {
		res, err := d.boot.Boot()
		if err != nil {
			return err
		}
		if d.modem != nil {
			// The modem starts with the device, installing a committed update.
			res.ModemRefused = d.modem.Restart()
			res.ModemVersion, _ = d.modem.Version()
		}
		run, err := d.Running()
		if err != nil {
			return err
		}
		d.cfg.Logger.Info("booted", "thing", d.cfg.Thing, "swap", res.Swap, "version", run.Version, "confirmed", run.Confirmed, "refused", res.Refused)
		if d.cfg.OnBoot != nil {
			d.cfg.OnBoot(res, run)
		}
		err = d.runOnce(ctx)
		if d.cfg.Power != nil && d.cfg.Power.Cut() {
			return ErrPowerCut
		}
		if errors.Is(err, runner.ErrReboot) {
			d.reboots.Add(1)
			d.fetch.CloseIdleConnections()
			continue
		}
		return err
	}
}

func (d *Device) runOnce(ctx context.Context) error {
	ac := d.cfg.Agent
	ac.Thing = d.cfg.Thing
	var (
		primary, secondary flash.Flash = d.primary, d.secondary
		store              state.Store = d.store
	)
	if p := d.cfg.Power; p != nil {
		primary, secondary, store = &powerFlash{d.primary, p}, &powerFlash{d.secondary, p}, &powerStore{d.store, p}
	}
	// The application slot takes full images and deltas against the running
	// image; the modem, if any, its own images and deltas.
	o := slotOptions
	o.Keys = d.cfg.Keys
	slot := mcubootslot.NewTarget(secondary, o)
	app := &dfu.Router{Resume: dfu.TypeMCUboot, Targets: map[dfu.ImageType]dfu.Target{
		dfu.TypeMCUboot: slot,
		dfu.TypeDelta:   deltaslot.New(primary, slot),
	}}
	var components map[string]runner.Component
	if d.modem != nil {
		mt := modem.NewTarget(d.modem)
		mt.Erasing = func(on bool) {
			if d.cfg.OnEvent != nil {
				kind := agent.EventEraseDone
				if on {
					kind = agent.EventErasePending
				}
				d.cfg.OnEvent(agent.AppEvent{Kind: kind})
			}
		}
		components = map[string]runner.Component{"modem": {
			Target: &dfu.Router{Resume: dfu.TypeModemFull, Targets: map[dfu.ImageType]dfu.Target{
				dfu.TypeModemFull: mt, dfu.TypeModemDelta: mt, dfu.TypeDelta: mt}},
			Base:    d.modem,
			Version: d.modem.Version,
		}}
	}
	r, err := runner.New(runner.Config{
		Agent:           ac,
		Store:           store,
		Target:          app,
		Base:            primary,
		Components:      components,
		Boot:            mcubootslot.NewPrimary(primary, mcubootslot.Options{}),
		Fetcher:         d.fetch,
		SelfTest:        d.cfg.SelfTest,
		OnEvent:         d.cfg.OnEvent,
		CheckpointBytes: d.cfg.CheckpointBytes,
		Logger:          d.cfg.Logger.With("thing", d.cfg.Thing),
	})
	if err != nil {
		return err
	}
	conn, err := mqttconn.Dial(ctx, mqttconn.Config{
		Endpoint:         d.cfg.Endpoint,
		ClientID:         d.cfg.Thing,
		Certificate:      d.cfg.Certificate,
		RootCAs:          d.cfg.RootCAs,
		ServerName:       d.cfg.ServerName,
		SessionCache:     d.cfg.TLSSessions,
		VerifiedChains:   d.cfg.VerifiedChains,
		CurvePreferences: d.cfg.TLSCurves,
		TrustSession:     d.cfg.TrustSession,
		// A persistent session, as on AWS: QoS 1 messages sent while the
		// device is away are delivered when it reconnects.
		SessionExpiry: time.Hour,
		Filters:       iotjobs.DeviceFilters(d.cfg.Thing),
		OnMessage:     r.Deliver,
		OnUp: func() {
			if d.cfg.OnConnUp != nil {
				d.cfg.OnConnUp()
			}
			r.Connected()
		},
		OnDown:         r.Disconnected,
		OnError:        d.onConnError,
		BackoffMin:     100 * time.Millisecond,
		KeepAlive:      d.cfg.KeepAlive,
		ConnectTimeout: d.cfg.ConnectTimeout,
		Logger:         d.cfg.Logger,
	})
	if err != nil {
		return err
	}
	var tr runner.Transport = conn
	if p := d.cfg.Power; p != nil {
		tr = &powerTransport{conn, p}
	}
	err = r.Run(ctx, tr)
	if cerr := conn.Close(); cerr != nil {
		d.cfg.Logger.Debug("closing mqtt", "err", cerr)
	}
	return err
}

func (d *Device) onConnError(err error) {
	if d.cfg.OnConnError != nil {
		d.cfg.OnConnError(err)
		return
	}
	d.cfg.Logger.Warn("mqtt", "thing", d.cfg.Thing, "err", err)
}

// Close releases the device's files.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	d.fetch.CloseIdleConnections()
	return closeFlash(d.primary, d.secondary)
}

// Memory is the storage of a device kept in memory (DeviceConfig.Memory).
type Memory struct {
	Primary, Secondary flash.Flash
	State              state.Store
}

// openStorage opens the device's slots and state store: cfg.Memory's, or
// files in cfg.Dir.
func openStorage(cfg DeviceConfig) (primary, secondary flash.Flash, st state.Store, err error) {
	if m := cfg.Memory; m != nil {
		for _, f := range []flash.Flash{m.Primary, m.Secondary} {
			if f == nil || f.Geometry() != cfg.Geometry {
				return nil, nil, nil, fmt.Errorf("sim: %s's in-memory slots must both have the device's geometry %+v", cfg.Thing, cfg.Geometry)
			}
		}
		if m.State == nil {
			return nil, nil, nil, fmt.Errorf("sim: %s's in-memory storage has no state store", cfg.Thing)
		}
		return m.Primary, m.Secondary, m.State, nil
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, nil, nil, fmt.Errorf("sim: %w", err)
	}
	p, err := flash.OpenFile(filepath.Join(cfg.Dir, "primary.bin"), cfg.Geometry)
	if err != nil {
		return nil, nil, nil, err
	}
	s, err := flash.OpenFile(filepath.Join(cfg.Dir, "secondary.bin"), cfg.Geometry)
	if err != nil {
		p.Close()
		return nil, nil, nil, err
	}
	dir, err := state.OpenDir(filepath.Join(cfg.Dir, "state"))
	if err != nil {
		p.Close()
		s.Close()
		return nil, nil, nil, err
	}
	return p, s, dir, nil
}

// closeFlash closes the slots that are files.
func closeFlash(fs ...flash.Flash) error {
	var errs []error
	for _, f := range fs {
		if c, ok := f.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// SlotImage returns the first n bytes of the primary slot.
func (d *Device) SlotImage(n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := d.primary.ReadAt(b, 0); err != nil {
		return nil, err
	}
	return bytes.Clone(b), nil
}

// Package rauc makes awsfota the AWS IoT Jobs front end of RAUC, the update
// service of Yocto and Debian devices with A/B root filesystems. It is a DFU
// target and a boot control for the runner, talking to RAUC over D-Bus
// (de.pengutronix.rauc.Installer):
//
//   - the bundle is downloaded, resumably, into a staging file (package
//     staging);
//   - Install reads the bundle's manifest (package raucb), refuses a bundle
//     for another compatible than RAUC's, has RAUC check and install it into
//     the other slot (InstallBundle, following Progress and Completed; an
//     install still running from before a restart is waited for first; a
//     refusal carries RAUC's LastError) and names what will boot: the primary
//     slot's bootname and image checksum;
//   - after the reboot, Running says which slot booted (BootSlot) and the
//     version RAUC recorded for it, so the agent tells the new system from a
//     bootloader's fallback to the old one; Confirm marks the booted slot good
//     once the health check passed, and CheckHealth marks it bad when the
//     check fails, so that the reboot after the FAILED report returns to the
//     other slot;
//   - Reset (a canceled or failed job) removes the staged bundle and marks
//     the booted slot active again, so that a bundle installed for a job that
//     ended is never booted.
//
// The D-Bus calls sit behind the Service interface; DBus is the real one.
//
// It imports the standard library, godbus, raucb, device/dfu and
// device/dfu/staging; it must never import cloud/* or sim/.
package rauc

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/device/dfu/staging"
	"github.com/awsfota/awsfota/raucb"
)

// Component is the job component a RAUC device takes as its application.
const Component = "rauc"

// Slot is one slot of RAUC's status (GetSlotStatus).
type Slot struct {
	Name       string // "rootfs.1"
	Class      string // "rootfs"
	BootName   string // the bootloader's name of it ("B"); "" for slots it does not boot
	State      string // "booted", "active" or "inactive"
	BootStatus string // "good" or "bad", as the bootloader says
	// What RAUC last installed there; empty for a slot it never wrote.
	BundleVersion    string
	BundleCompatible string
	SHA256           string // of the image written
}

// System is RAUC's view of the device.
type System struct {
	Compatible string // the system's compatible (system.conf)
	BootSlot   string // bootname of the booted slot
	Primary    string // name of the slot the bootloader boots next, "" if it cannot tell
	Slots      []Slot
}

// Booted returns the booted slot.
func (s System) Booted() (Slot, bool) { return s.byBootName(s.BootSlot) }

func (s System) byBootName(b string) (Slot, bool) {
	for _, sl := range s.Slots {
		if sl.BootName != "" && sl.BootName == b {
			return sl, true
		}
	}
	return Slot{}, false
}

// Slot returns the slot named name.
func (s System) Slot(name string) (Slot, bool) {
	for _, sl := range s.Slots {
		if sl.Name == name {
			return sl, true
		}
	}
	return Slot{}, false
}

// Service is what the package needs of RAUC. DBus implements it over
// D-Bus; methods may be called from several goroutines.
type Service interface {
	// Install installs a bundle and returns when RAUC has finished, after
	// any install already running has ended. progress (may be nil) follows
	// RAUC's Progress. An error that is an *InstallError is RAUC's verdict
	// (LastError); others are failures to talk to RAUC.
	Install(ctx context.Context, bundle string, progress func(percent int, message string)) error
	// WaitIdle returns once RAUC installs nothing.
	WaitIdle(ctx context.Context) error
	// Status reads the system and its slots. RAUC answers it only when idle.
	Status(ctx context.Context) (System, error)
	// Mark marks a slot ("booted", "other" or a slot name) "good", "bad" or
	// "active".
	Mark(ctx context.Context, state, slot string) error
}

// InstallError is RAUC's report of a failed installation.
type InstallError struct {
	Result    int32  // Completed's result
	LastError string // RAUC's LastError
}

func (e *InstallError) Error() string {
	if e.LastError == "" {
		return fmt.Sprintf("RAUC failed to install the bundle (result %d, no LastError)", e.Result)
	}
	return "RAUC failed to install the bundle: " + e.LastError
}

// BootHash is the identity of a slot's content: its bootname and the
// checksum RAUC recorded for the image written there. The same image in the
// other slot is another identity, so a fallback is never taken for success.
func BootHash(s Slot) []byte {
	h := sha256.Sum256([]byte("awsfota-rauc\x00" + s.BootName + "\x00" + s.SHA256))
	return h[:]
}

// Config configures a Target.
type Config struct {
	Service Service
	// Staging is where bundles are downloaded (required). RAUC must be able
	// to read it (plain bundles: owned by root, not writable by others).
	Staging string
	// MaxSize bounds the bundles accepted (0: the filesystem's room).
	MaxSize int64
	// CallTimeout bounds each D-Bus call but the install (default 1 min).
	CallTimeout time.Duration
	Logger      *slog.Logger
}

// Target is the RAUC target and boot control. It implements dfu.Installer
// and the runner's Boot (Running, Confirm).
type Target struct {
	*staging.File
	svc     Service
	timeout time.Duration
	log     *slog.Logger
}

var _ dfu.Installer = (*Target)(nil)

// New returns a target.
func New(cfg Config) (*Target, error) {
	switch {
	case cfg.Service == nil:
		return nil, errors.New("rauc: a RAUC service is required")
	case cfg.Staging == "":
		return nil, errors.New("rauc: a staging file is required")
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Target{File: staging.New(cfg.Staging, cfg.MaxSize), svc: cfg.Service, timeout: cfg.CallTimeout, log: cfg.Logger}, nil
}

func (t *Target) call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), t.timeout)
}

// Done installs the bundle with no job information; the runner calls
// Install.
func (t *Target) Done() (dfu.Image, error) {
	return t.Install(context.Background(), dfu.InstallRequest{})
}

// Kind is what the target installs: a RAUC bundle: RAUC and its bootloader count their own boot attempts, so the agent never installs it again after a trial cut short.
func (t *Target) Kind() dfu.ImageType { return dfu.TypeRAUC }

// Install checks the staged bundle with RAUC and installs it.
func (t *Target) Install(ctx context.Context, req dfu.InstallRequest) (dfu.Image, error) {
	progress := req.Progress
	if progress == nil {
		progress = func(int, string) {}
	}
	size, sum, err := t.Finish()
	if err != nil {
		return dfu.Image{}, err
	}
	progress(0, "checking the bundle")
	// RAUC answers no method while it installs: an install from before a
	// restart must end first.
	if err := t.svc.WaitIdle(ctx); err != nil {
		return dfu.Image{}, fmt.Errorf("rauc: waiting for RAUC to finish an install: %w", err)
	}
	m, err := t.manifest(size)
	if err != nil {
		return dfu.Image{}, err
	}
	sys, err := t.svc.Status(ctx)
	if err != nil {
		return dfu.Image{}, fmt.Errorf("rauc: reading the system's status: %w", err)
	}
	if m != nil && m.Compatible != sys.Compatible {
		return dfu.Image{}, fmt.Errorf("%w: the bundle is for %q systems and this device is %q (RAUC's compatible): it was not installed", dfu.ErrIncompatible, m.Compatible, sys.Compatible)
	}
	if err := t.svc.Install(ctx, t.Path(), progress); err != nil {
		if ctx.Err() != nil {
			return dfu.Image{}, ctx.Err()
		}
		var ie *InstallError
		if errors.As(err, &ie) {
			return dfu.Image{}, fmt.Errorf("%w: %w", dfu.ErrInstallFailed, err)
		}
		return dfu.Image{}, fmt.Errorf("rauc: %w", err)
	}
	if sys, err = t.svc.Status(ctx); err != nil {
		return dfu.Image{}, fmt.Errorf("rauc: reading the system's status after the install: %w", err)
	}
	slot, ok := sys.Slot(sys.Primary)
	if !ok || slot.BootName == "" {
		return dfu.Image{}, fmt.Errorf("%w: RAUC installed the bundle but the bootloader names no primary slot to boot (%q)", dfu.ErrInstallFailed, sys.Primary)
	}
	if slot.BootName == sys.BootSlot {
		return dfu.Image{}, fmt.Errorf("%w: after the install the bootloader's primary slot is %s, the one running: RAUC did not switch slots", dfu.ErrInstallFailed, slot.Name)
	}
	version := slot.BundleVersion // as RAUC recorded it
	if version == "" && m != nil {
		version = m.Version
	}
	t.log.Info("RAUC installed the bundle", "slot", slot.Name, "bootname", slot.BootName, "version", version)
	return dfu.Image{Type: dfu.TypeRAUC, Size: size, SHA256: sum, Version: version, BootHash: BootHash(slot)}, nil
}

// manifest reads the staged bundle's manifest; nil when this reader cannot
// (a compression it lacks: RAUC then checks the compatible itself).
func (t *Target) manifest(size int64) (*raucb.Manifest, error) {
	f, err := os.Open(t.Path())
	if err != nil {
		return nil, fmt.Errorf("rauc: %w", err)
	}
	defer f.Close() // before RAUC opens it: it wants the bundle to itself
	b, err := raucb.Open(f, size)
	switch {
	case errors.Is(err, raucb.ErrCompression):
		t.log.Info("cannot read the bundle's manifest; RAUC checks it", "err", err)
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("%w: the file is not a RAUC bundle: %w", dfu.ErrInvalidImage, err)
	}
	return &b.Manifest, nil
}

// Schedule has nothing to do: RAUC made the new slot primary when it
// installed it.
func (t *Target) Schedule(bool) error { return nil }

// Reset removes the staged bundle, waits for RAUC to finish an install still
// running, and marks the booted slot active, so that the bootloader keeps
// booting it.
func (t *Target) Reset() error {
	err := t.File.Reset()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if werr := t.svc.WaitIdle(ctx); werr != nil {
		return errors.Join(err, fmt.Errorf("rauc: waiting for RAUC to finish: %w", werr))
	}
	mctx, mcancel := t.call()
	defer mcancel()
	if merr := t.svc.Mark(mctx, "active", "booted"); merr != nil {
		return errors.Join(err, fmt.Errorf("rauc: marking the booted slot active again: %w", merr))
	}
	return err
}

// Running describes the booted slot: the version RAUC installed there (""
// for a slot RAUC never wrote) and its identity. A RAUC slot is never
// reported confirmed: the agent checks the slot it rebooted into, and
// Confirm marks it good. When RAUC is installing (this process restarted
// during an install) it waits for the end: RAUC tells nothing before.
func (t *Target) Running() (dfu.Running, error) {
	run := dfu.Running{AppComponent: Component}
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Minute)
	err := t.svc.WaitIdle(wctx)
	wcancel()
	if err != nil {
		return run, fmt.Errorf("rauc: waiting for RAUC to finish an install: %w", err)
	}
	ctx, cancel := t.call()
	defer cancel()
	sys, err := t.svc.Status(ctx)
	if err != nil {
		return run, fmt.Errorf("rauc: %w", err)
	}
	run.Compatible = sys.Compatible
	s, ok := sys.Booted()
	if !ok {
		return run, fmt.Errorf("rauc: no slot has the booted bootname %q (slots: %s): check the bootname of each slot in RAUC's system.conf", sys.BootSlot, describe(sys))
	}
	run.Version, run.BootHash = s.BundleVersion, BootHash(s)
	return run, nil
}

// Confirm marks the booted slot good. When that fails it marks it bad, so
// that the reboot after the FAILED report returns to the other slot.
func (t *Target) Confirm() error {
	ctx, cancel := t.call()
	defer cancel()
	err := t.svc.Mark(ctx, "good", "booted")
	if err == nil {
		return nil
	}
	if berr := t.svc.Mark(ctx, "bad", "booted"); berr != nil {
		return fmt.Errorf("rauc: marking the booted slot good failed (%w), and marking it bad too: %w", err, berr)
	}
	return fmt.Errorf("rauc: marking the booted slot good failed, so it was marked bad: %w", err)
}

// CheckHealth wraps a health check for the runner's SelfTest: when the check
// fails, the booted slot is marked bad, so that any reboot from now on — the
// one after the FAILED report, or a crash — returns to the other slot.
func (t *Target) CheckHealth(check func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		if check == nil {
			return nil
		}
		err := check(ctx)
		if err == nil {
			return nil
		}
		mctx, cancel := t.call()
		defer cancel()
		if merr := t.svc.Mark(mctx, "bad", "booted"); merr != nil {
			return fmt.Errorf("%w (and marking the slot bad failed: %v)", err, merr)
		}
		return err
	}
}

// describe gives the slots as a line for errors and logs.
func describe(sys System) string {
	var parts []string
	for _, s := range sys.Slots {
		if s.BootName == "" {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s(%s) %s %s %s", s.Name, s.BootName, s.State, s.BootStatus, s.BundleVersion))
	}
	return strings.Join(parts, ", ")
}

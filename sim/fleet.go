package sim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/awsfota/awsfota/cloud/emu"
	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/mcuboot"
)

// FleetConfig describes a fleet of simulated devices on a local cloud.
type FleetConfig struct {
	Cloud *emu.Cloud
	// Dir keeps the devices (one directory each); existing ones are
	// replaced by factory-fresh devices.
	Dir string
	// Things are the devices' thing names.
	Things []string
	// Factory is the image every device runs at first.
	Factory []byte
	// ModemVersions gives the devices that have a modem the firmware it
	// first runs, by thing.
	ModemVersions map[string]string
	// Keys are the public keys every device trusts (see DeviceConfig.Keys).
	Keys []*mcuboot.PublicKey
	// Agent, CheckpointBytes, SelfTest: as in DeviceConfig.
	Agent           agent.Config
	CheckpointBytes int64
	LinkRate        int64
	SelfTest        func(ctx context.Context) error
	// OnEvent receives every device's application events.
	OnEvent func(thing string, e agent.AppEvent)
	// OnBoot is told about every boot of every device.
	OnBoot func(thing string, res BootResult, run dfu.Running)
	Logger *slog.Logger
}

// Fleet is a set of simulated devices provisioned on a local cloud.
type Fleet struct {
	devices []*Device
}

// NewFleet provisions each thing on the cloud (thing, certificate, policy
// attachment) and makes a factory-fresh device for it.
func NewFleet(cfg FleetConfig) (*Fleet, error) {
	ep := cfg.Cloud.Endpoints()
	f := &Fleet{}
	for _, th := range cfg.Things {
		creds, err := cfg.Cloud.ProvisionThing(th)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("sim: provisioning %s: %w", th, err)
		}
		cert, err := tls.X509KeyPair(creds.CertPEM, creds.KeyPEM)
		if err != nil {
			f.Close()
			return nil, err
		}
		dir := filepath.Join(cfg.Dir, th)
		if err := os.RemoveAll(dir); err != nil {
			f.Close()
			return nil, fmt.Errorf("sim: %w", err)
		}
		th := th
		d, err := OpenDevice(DeviceConfig{
			Dir: dir, Thing: th, Keys: cfg.Keys, Endpoint: ep.MQTT, Certificate: cert, RootCAs: cfg.Cloud.CA.Pool(), ServerName: "localhost",
			Agent: cfg.Agent, CheckpointBytes: cfg.CheckpointBytes, LinkRate: cfg.LinkRate, ModemVersion: cfg.ModemVersions[th], SelfTest: cfg.SelfTest, Logger: cfg.Logger,
			OnEvent: func(e agent.AppEvent) {
				if cfg.OnEvent != nil {
					cfg.OnEvent(th, e)
				}
			},
			OnBoot: func(res BootResult, run dfu.Running) {
				if cfg.OnBoot != nil {
					cfg.OnBoot(th, res, run)
				}
			},
		})
		if err != nil {
			f.Close()
			return nil, err
		}
		f.devices = append(f.devices, d)
		if err := d.Install(cfg.Factory); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// Devices returns the fleet's devices, in the order of the things.
func (f *Fleet) Devices() []*Device { return f.devices }

// Run runs every device until ctx ends, and returns nil then. If a device
// fails (it bricked, say), Run stops the others and returns the failures.
func (f *Fleet) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, d := range f.devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", d.Thing(), err))
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close closes every device.
func (f *Fleet) Close() error {
	var errs []error
	for _, d := range f.devices {
		errs = append(errs, d.Close())
	}
	return errors.Join(errs...)
}

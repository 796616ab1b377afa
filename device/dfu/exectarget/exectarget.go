// Package exectarget is the DFU target for a device updated by a tool of its
// own — SWUpdate, a vendor's installer, a container runtime — driven by
// commands the device file names: the image is downloaded (resumably) into a
// staging file, the install command installs it, the reboot command makes
// the device run it, and after the reboot the version command tells what
// runs, the health check checks it and the confirm command keeps it.
//
// Every command gets the job in its environment:
//
//	AWSFOTA_FILE          the downloaded file (install)
//	AWSFOTA_SIZE          its size in bytes (install)
//	AWSFOTA_SHA256        its SHA-256, hex (install)
//	AWSFOTA_JOB_ID        the job's id (install)
//	AWSFOTA_JOB_DOCUMENT  the job document, JSON (install)
//	AWSFOTA_FWVERSION     the version the job installs (install)
//
// and its output (stdout and stderr, the last 4 KiB) is carried into the
// job's report when it fails. The device runs the new image when the version
// command prints the job document's fwversion ("v" prefixes and surrounding
// space aside), so jobs for this target must carry fwversion.
//
// It imports the standard library, device/dfu, device/dfu/staging and
// device/command; it must never import cloud/* or sim/.
package exectarget

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/awsfota/awsfota/device/command"
	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/device/dfu/staging"
)

// Default timeouts of the commands that have none configured.
const (
	DefaultInstallTimeout = 30 * time.Minute
	DefaultVersionTimeout = 30 * time.Second
	DefaultConfirmTimeout = time.Minute
)

// Config names the commands.
type Config struct {
	// Staging is the file the image is downloaded into (required).
	Staging string
	// MaxSize bounds the images accepted (0: the filesystem's room).
	MaxSize int64
	// Install installs $AWSFOTA_FILE so that the device runs it after the
	// reboot (required). It must be safe to run again for the same file: a
	// restart during an install runs it again.
	Install command.Command
	// Version prints the version the device runs (required).
	Version command.Command
	// Confirm, when set, keeps the running version after its health check
	// passed (a bootloader's "mark good", SWUpdate's "ustate").
	Confirm command.Command
	// Compatible is the system this device is: jobs naming another
	// "compatible" are refused before anything is downloaded. Optional.
	Compatible string
}

// Target is the exec target: a dfu.Installer and the boot control the runner
// needs (Running, Confirm).
type Target struct {
	*staging.File
	cfg Config
}

var _ dfu.Installer = (*Target)(nil)

// New checks cfg and returns the target.
func New(cfg Config) (*Target, error) {
	switch {
	case cfg.Staging == "":
		return nil, errors.New("exectarget: a staging file is required")
	case cfg.Install.IsZero():
		return nil, errors.New("exectarget: the install command is required (\"install\": {\"command\": [...]})")
	case cfg.Version.IsZero():
		return nil, errors.New("exectarget: the version command is required (\"version\": {\"command\": [...]}): it tells, after the reboot, whether the new version runs")
	}
	return &Target{File: staging.New(cfg.Staging, cfg.MaxSize), cfg: cfg}, nil
}

// BootHash is the identity of a version, as Running and Install give it.
func BootHash(version string) []byte {
	h := sha256.Sum256([]byte("awsfota-exec-version\x00" + normalize(version)))
	return h[:]
}

func normalize(v string) string { return strings.TrimPrefix(strings.TrimSpace(v), "v") }

// Done installs the image with no job information; the runner calls Install.
func (t *Target) Done() (dfu.Image, error) {
	return t.Install(context.Background(), dfu.InstallRequest{})
}

// Kind is what the target installs: a file for the device's own install command, whose bootloader (if any) counts its own boot attempts: the agent never installs it again after a trial cut short.
func (t *Target) Kind() dfu.ImageType { return dfu.TypeFile }

// Install runs the install command on the complete staged file.
func (t *Target) Install(ctx context.Context, req dfu.InstallRequest) (dfu.Image, error) {
	size, sum, err := t.Finish()
	if err != nil {
		return dfu.Image{}, err
	}
	version := normalize(req.FWVersion)
	if version == "" {
		return dfu.Image{}, fmt.Errorf("%w: the job document has no fwversion, and the exec target needs it to tell after the reboot that the new version runs: create the job with --version", dfu.ErrInvalidImage)
	}
	if req.Progress != nil {
		req.Progress(0, "running the install command")
	}
	env := []string{
		"AWSFOTA_FILE=" + t.Path(),
		"AWSFOTA_SIZE=" + strconv.FormatInt(size, 10),
		"AWSFOTA_SHA256=" + hex.EncodeToString(sum),
		"AWSFOTA_JOB_ID=" + req.JobID,
		"AWSFOTA_JOB_DOCUMENT=" + string(req.Document),
		"AWSFOTA_FWVERSION=" + req.FWVersion,
	}
	if _, err := t.cfg.Install.Run(ctx, "the install command", DefaultInstallTimeout, env); err != nil {
		if ctx.Err() != nil {
			return dfu.Image{}, ctx.Err()
		}
		return dfu.Image{}, fmt.Errorf("%w: %w", dfu.ErrInstallFailed, err)
	}
	if req.Progress != nil {
		req.Progress(100, "installed")
	}
	return dfu.Image{Type: dfu.TypeFile, Size: size, SHA256: sum, Version: version, BootHash: BootHash(version)}, nil
}

// Schedule has nothing to do: the install command did it.
func (t *Target) Schedule(bool) error { return nil }

// Running runs the version command: the version the device runs. It is
// never reported confirmed, so that after the reboot the health check runs.
func (t *Target) Running() (dfu.Running, error) {
	out, err := t.cfg.Version.Run(context.Background(), "the version command", DefaultVersionTimeout, nil)
	if err != nil {
		return dfu.Running{Compatible: t.cfg.Compatible}, err
	}
	v, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	v = strings.TrimSpace(v)
	if v == "" {
		return dfu.Running{Compatible: t.cfg.Compatible}, fmt.Errorf("the version command (%s) printed nothing: it must print the running version", t.cfg.Version)
	}
	return dfu.Running{Version: normalize(v), BootHash: BootHash(v), Compatible: t.cfg.Compatible}, nil
}

// Confirm runs the confirm command, when there is one.
func (t *Target) Confirm() error {
	if t.cfg.Confirm.IsZero() {
		return nil
	}
	_, err := t.cfg.Confirm.Run(context.Background(), "the confirm command", DefaultConfirmTimeout, nil)
	return err
}

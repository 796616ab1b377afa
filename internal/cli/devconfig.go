package cli

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/device/command"
	"github.com/awsfota/awsfota/device/download"
	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/jobdoc"
	"github.com/awsfota/awsfota/mcuboot"
)

// deviceFile is DEVICE.json: what `awsfota device run` needs to act as a
// thing. `awsfota thing create` writes it. Paths are relative to the file.
type deviceFile struct {
	Thing      string `json:"thing"`
	Endpoint   string `json:"endpoint"`             // MQTT host:port
	ServerName string `json:"serverName,omitempty"` // name in the broker's certificate, if not the endpoint's host
	ALPN       bool   `json:"alpn,omitempty"`       // x-amzn-mqtt-ca (automatic on port 443)
	CertFile   string `json:"certFile"`
	KeyFile    string `json:"keyFile"`
	CAFile     string `json:"caFile,omitempty"` // broker CA; also trusted for HTTPS downloads. Empty: system roots
	Slots      *struct {
		Primary    string `json:"primary"`
		Secondary  string `json:"secondary"`
		Size       int64  `json:"size"`
		SectorSize int64  `json:"sectorSize"`
		WriteAlign int    `json:"writeAlign"`
	} `json:"slots,omitempty"`
	// TrustedKeys are the public keys (PEM) of the device's bootloader: with
	// any, only images signed by one of them are installed.
	TrustedKeys []string `json:"trustedKeys,omitempty"`
	// Target selects how images are installed: MCUboot slots (the default,
	// "slots" above), RAUC, or the device's own commands.
	Target   *targetSettings  `json:"target,omitempty"`
	Agent    agentSettings    `json:"agent,omitempty"`
	Download downloadSettings `json:"download,omitempty"`

	dir string
}

type agentSettings struct {
	ProgressPercent         int  `json:"progressPercent,omitempty"`
	ProgressIntervalSeconds int  `json:"progressIntervalSeconds,omitempty"`
	ReplyTimeoutSeconds     int  `json:"replyTimeoutSeconds,omitempty"`
	SelfTestTimeoutSeconds  int  `json:"selfTestTimeoutSeconds,omitempty"`
	MaxDocumentSize         int  `json:"maxDocumentSize,omitempty"`
	MaxHostLen              int  `json:"maxHostLen,omitempty"`
	MaxPathLen              int  `json:"maxPathLen,omitempty"`
	AllowDowngrade          bool `json:"allowDowngrade,omitempty"`
	// InstallAttempts is how many trial boots an image gets when resets
	// (power loss, watchdog) cut them short (agent.Config.InstallAttempts).
	InstallAttempts int `json:"installAttempts,omitempty"`
	// CancelDuringTrial is "finish" or "revert" (agent.Config.CancelDuringTrial).
	CancelDuringTrial string `json:"cancelDuringTrial,omitempty"`
}

// Target types.
const (
	targetMCUboot = "mcuboot"
	targetRAUC    = "rauc"
	targetExec    = "exec"
)

// targetSettings is DEVICE.json's "target": what installs images on a Linux
// device (see docs/linux.md).
type targetSettings struct {
	Type string `json:"type"` // mcuboot (default), rauc or exec
	// DBus is RAUC's D-Bus address; "" is the system bus (rauc).
	DBus string `json:"dbus,omitempty"`
	// Staging is the file images are downloaded into; default: staging/image
	// in the state directory.
	Staging string `json:"staging,omitempty"`
	// MaxSize bounds the images accepted (0: the filesystem's room).
	MaxSize int64 `json:"maxSize,omitempty"`
	// Install, Version and Confirm are the exec target's commands.
	Install command.Command `json:"install,omitzero"`
	Version command.Command `json:"version,omitzero"`
	Confirm command.Command `json:"confirm,omitzero"`
	// Compatible is the system an exec device is (RAUC devices ask RAUC).
	Compatible string `json:"compatible,omitempty"`
	// HealthCheck runs after the reboot into a new image; it must succeed
	// before the image is kept. Its timeout is the self-test's.
	HealthCheck command.Command `json:"healthCheck,omitzero"`
	// Reboot restarts the device (default: systemctl reboot).
	Reboot command.Command `json:"reboot,omitzero"`
	// RebootWaitSeconds is how long to wait, after the reboot command, to be
	// stopped by the shutdown (default 300); then the agent goes on in this
	// process and reports what runs. 0: go on at once (a reboot command that
	// restarts only an application).
	RebootWaitSeconds *int `json:"rebootWaitSeconds,omitempty"`
}

func (t *targetSettings) kind() string {
	if t == nil || t.Type == "" {
		return targetMCUboot
	}
	return t.Type
}

type downloadSettings struct {
	Retries            int `json:"retries,omitempty"`
	ReadTimeoutSeconds int `json:"readTimeoutSeconds,omitempty"`
	MaxRedirects       int `json:"maxRedirects,omitempty"`
	// MinBytesPerSecond is the device's floor on a download's rate over
	// MinRateWindowSeconds (0: deviceMinRate; negative: none).
	MinBytesPerSecond    int64 `json:"minBytesPerSecond,omitempty"`
	MinRateWindowSeconds int   `json:"minRateWindowSeconds,omitempty"`
}

// The device's floor on a download's rate, unless DEVICE.json sets one: a
// body that drips slower than this for a whole window is retried, and
// counts as a failed attempt, rather than holding the job until it times
// out. Far below any real link (NB-IoT carries kilobytes a second).
const (
	deviceMinRate       = 100
	deviceMinRateWindow = 5 * time.Minute
)

func readDeviceFile(path string) (*deviceFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f deviceFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.dir = filepath.Dir(path)
	switch {
	case f.Thing == "":
		return nil, fmt.Errorf("%s: \"thing\" is missing", path)
	case f.Endpoint == "":
		return nil, fmt.Errorf("%s: \"endpoint\" is missing (the MQTT host:port)", path)
	case f.CertFile == "" || f.KeyFile == "":
		return nil, fmt.Errorf("%s: \"certFile\" and \"keyFile\" are required", path)
	}
	if err := f.Target.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.Agent.InstallAttempts < 0 {
		return nil, fmt.Errorf("%s: agent.installAttempts is %d; give 1 or more (0 or absent: 3)", path, f.Agent.InstallAttempts)
	}
	if _, err := agent.ParseTrialCancel(f.Agent.CancelDuringTrial); err != nil {
		return nil, fmt.Errorf("%s: agent.cancelDuringTrial: %w", path, err)
	}
	return &f, nil
}

func (f *deviceFile) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(f.dir, p)
}

func (f *deviceFile) certificate() (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(f.path(f.CertFile), f.path(f.KeyFile))
	if err != nil {
		return c, fmt.Errorf("loading the device certificate: %w (check certFile and keyFile)", err)
	}
	return c, nil
}

func (f *deviceFile) roots() (*x509.CertPool, error) {
	if f.CAFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(f.path(f.CAFile))
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", f.path(f.CAFile))
	}
	return p, nil
}

// credentials loads the device's certificate, its trusted image keys and
// the CAs it trusts.
func (f *deviceFile) credentials() (tls.Certificate, []*mcuboot.PublicKey, *x509.CertPool, error) {
	cert, err := f.certificate()
	if err != nil {
		return cert, nil, nil, err
	}
	keys, err := f.keys()
	if err != nil {
		return cert, nil, nil, err
	}
	roots, err := f.roots()
	return cert, keys, roots, err
}

func (f *deviceFile) keys() ([]*mcuboot.PublicKey, error) {
	var out []*mcuboot.PublicKey
	for _, k := range f.TrustedKeys {
		b, err := os.ReadFile(f.path(k))
		if err != nil {
			return nil, fmt.Errorf("trustedKeys: %w", err)
		}
		pk, err := mcuboot.ParsePublicKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("trustedKeys: %s: %w", f.path(k), err)
		}
		out = append(out, pk)
	}
	return out, nil
}

func secs(n int) time.Duration { return time.Duration(n) * time.Second }

func (f *deviceFile) agentConfig() agent.Config {
	a := f.Agent
	lim := jobdoc.DefaultLimits()
	if a.MaxDocumentSize > 0 {
		lim.MaxDocumentSize = a.MaxDocumentSize
	}
	if a.MaxHostLen > 0 {
		lim.MaxHostLen = a.MaxHostLen
	}
	if a.MaxPathLen > 0 {
		lim.MaxPathLen = a.MaxPathLen
	}
	return agent.Config{Thing: f.Thing, Limits: lim, ProgressPercent: a.ProgressPercent,
		ProgressInterval: secs(a.ProgressIntervalSeconds), ReplyTimeout: secs(a.ReplyTimeoutSeconds),
		SelfTestTimeout: secs(a.SelfTestTimeoutSeconds), AllowDowngrade: a.AllowDowngrade,
		InstallAttempts: a.InstallAttempts, CancelDuringTrial: agent.TrialCancel(a.CancelDuringTrial)}
}

func (f *deviceFile) downloadConfig(roots *x509.CertPool) download.Config {
	d := f.Download
	minRate, window := d.MinBytesPerSecond, secs(d.MinRateWindowSeconds)
	if minRate == 0 {
		minRate = deviceMinRate
	}
	if window <= 0 {
		window = deviceMinRateWindow
	}
	return download.Config{RootCAs: roots, Retries: d.Retries, ReadTimeout: secs(d.ReadTimeoutSeconds),
		MaxRedirects: d.MaxRedirects, UserAgent: "awsfota/" + version(), MinRate: max(minRate, 0), RateWindow: window}
}

func (f *deviceFile) geometry() (flash.Geometry, error) {
	s := f.Slots
	if s == nil || s.Primary == "" || s.Secondary == "" || s.Size == 0 {
		return flash.Geometry{}, fmt.Errorf("the device file has no \"slots\" (primary, secondary, size, sectorSize, writeAlign): give them, or use --sim")
	}
	g, _ := f.slotGeometry()
	return g, nil
}

// slotGeometry returns the slots' geometry when the file gives their size.
func (f *deviceFile) slotGeometry() (flash.Geometry, bool) {
	s := f.Slots
	if s == nil || s.Size == 0 {
		return flash.Geometry{}, false
	}
	g := flash.Geometry{Size: s.Size, SectorSize: s.SectorSize, WriteAlign: s.WriteAlign}
	if g.SectorSize == 0 {
		g.SectorSize = 4096
	}
	if g.WriteAlign == 0 {
		g.WriteAlign = 4
	}
	return g, true
}

// check says what is wrong with a target's settings.
func (t *targetSettings) check() error {
	switch t.kind() {
	case targetMCUboot:
		return nil
	case targetRAUC:
		if !t.Install.IsZero() || !t.Version.IsZero() || !t.Confirm.IsZero() {
			return fmt.Errorf("\"target\": RAUC installs, tells the version and confirms by itself: drop \"install\", \"version\" and \"confirm\" (they are the exec target's)")
		}
	case targetExec:
		if t.Install.IsZero() || t.Version.IsZero() {
			return fmt.Errorf("\"target\": the exec target needs \"install\" and \"version\" commands (see docs/linux.md)")
		}
	default:
		return fmt.Errorf("\"target\": type %q: use \"mcuboot\" (the default), \"rauc\" or \"exec\"", t.Type)
	}
	return nil
}

// rebootWait is how long to wait to be stopped after the reboot command.
func (t *targetSettings) rebootWait() time.Duration {
	if t.RebootWaitSeconds == nil {
		return 5 * time.Minute
	}
	return max(secs(*t.RebootWaitSeconds), 0)
}

// reboot is the reboot command.
func (t *targetSettings) reboot() command.Command {
	if t.Reboot.IsZero() {
		return command.Command{Argv: []string{"systemctl", "reboot"}}
	}
	return t.Reboot
}

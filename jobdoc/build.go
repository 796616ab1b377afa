package jobdoc

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// Spec describes a firmware job document to write.
type Spec struct {
	Operation string // default OpAppFirmwareUpdate
	FWVersion string
	Size      int64
	SHA256    []byte
	URL       string
	// Component is "app" (default, not written), "modem" or "rauc".
	Component string
	// Compatible is the system the image is for (a RAUC bundle's).
	Compatible string
	// Base makes the document a delta's: the running image it applies to.
	Base *Base
	// StepTimeoutMinutes asks devices to set this step timeout.
	StepTimeoutMinutes int64
	// SeedLocation writes location as protocol/host/path, the form the seed's
	// devices read, instead of location.url. It needs a URL without a query.
	SeedLocation bool
}

type wireLocation struct {
	Protocol string `json:"protocol,omitempty"`
	Host     string `json:"host,omitempty"`
	Path     string `json:"path,omitempty"`
	URL      string `json:"url,omitempty"`
}

type wireBase struct {
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size,omitempty"`
	FWVersion string `json:"fwversion,omitempty"`
}

type wireOut struct {
	Operation string       `json:"operation"`
	FWVersion string       `json:"fwversion,omitempty"`
	Size      int64        `json:"size,omitempty"`
	SHA256    string       `json:"sha256,omitempty"`
	Component string       `json:"component,omitempty"`
	Compat    string       `json:"compatible,omitempty"`
	Base      *wireBase    `json:"base,omitempty"`
	StepTime  int64        `json:"stepTimeoutInMinutes,omitempty"`
	Location  wireLocation `json:"location"`
}

// Marshal writes the job document s describes.
func Marshal(s Spec) ([]byte, error) {
	out := wireOut{Operation: s.Operation, FWVersion: s.FWVersion, Size: s.Size, StepTime: s.StepTimeoutMinutes, Compat: s.Compatible}
	if out.Operation == "" {
		out.Operation = OpAppFirmwareUpdate
	}
	if len(s.SHA256) > 0 {
		if len(s.SHA256) != 32 {
			return nil, fmt.Errorf("jobdoc: SHA256 has %d bytes, want 32", len(s.SHA256))
		}
		out.SHA256 = hex.EncodeToString(s.SHA256)
	}
	if s.URL == "" {
		return nil, fmt.Errorf("jobdoc: the document needs the image URL")
	}
	if s.Component != "" && s.Component != ComponentApp {
		out.Component = s.Component
	}
	if b := s.Base; b != nil {
		if len(b.SHA256) != 32 {
			return nil, fmt.Errorf("jobdoc: the base's SHA256 has %d bytes, want 32", len(b.SHA256))
		}
		out.Base = &wireBase{SHA256: hex.EncodeToString(b.SHA256), Size: b.Size, FWVersion: b.FWVersion}
	}
	if s.SeedLocation {
		u, err := url.Parse(s.URL)
		if err != nil {
			return nil, fmt.Errorf("jobdoc: image URL: %w", err)
		}
		if u.RawQuery != "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("jobdoc: the seed's host/path form needs a plain http(s) URL without a query, got %s", redact(s.URL))
		}
		out.Location = wireLocation{Protocol: u.Scheme + ":", Host: u.Host, Path: strings.TrimPrefix(u.EscapedPath(), "/")}
	} else {
		out.Location = wireLocation{URL: s.URL}
	}
	return json.Marshal(out)
}

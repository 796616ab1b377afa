// Package jobdoc parses and validates FOTA job documents: the document a job
// carries to tell a device what to install and where to fetch it.
//
// Three forms are accepted:
//
//   - the seed's form (nRF Connect SDK aws_fota):
//     {"operation":"app_fw_update","fwversion":"v1.0.2","size":181124,
//     "location":{"protocol":"http:","host":"bucket.s3.amazonaws.com","path":"app_update.bin"}}
//   - the same with "location":{"url":"https://host/path?query"};
//   - AWS's OTA form, {"afr_ota":{"protocols":["HTTP"],"files":[{"update_data_url":..., "filesize":...}]}}.
//
// Our extensions ride along in the seed's form: "sha256" (hex digest of the
// whole file, checked before the image is scheduled), "size" (enforced, not
// ignored as the seed does), "fwversion" (the version the device must run
// afterwards), "component" (app, modem or rauc) and "compatible" (the system
// a RAUC bundle is built for). A document whose operation is not a firmware update is returned
// as a custom job for the application to handle.
//
// It imports only the standard library.
package jobdoc

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Kind says what a document asks the device to do.
type Kind int

// Document kinds.
const (
	// KindFirmware is a firmware update in the seed's form (or ours).
	KindFirmware Kind = iota + 1
	// KindAFROTA is an AWS OTA ("afr_ota") update over HTTP.
	KindAFROTA
	// KindCustom is any other operation: the application may handle it.
	KindCustom
)

func (k Kind) String() string {
	switch k {
	case KindFirmware:
		return "firmware"
	case KindAFROTA:
		return "afr_ota"
	case KindCustom:
		return "custom"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// OpAppFirmwareUpdate is the seed's operation name. A document without an
// operation but with a location is treated as one too, as the seed does.
const OpAppFirmwareUpdate = "app_fw_update"

// firmwareOps are the operations this package reads as firmware updates.
var firmwareOps = map[string]bool{OpAppFirmwareUpdate: true, "fw_update": true, "modem_fw_update": true}

// Document is a parsed, validated job document.
type Document struct {
	Kind      Kind
	Operation string // as written; "" when absent

	// URL is where the image is: built from location.protocol/host/path, or
	// location.url, or the afr_ota file's update_data_url.
	URL string
	// Size is the image size in bytes, 0 when the document does not say.
	Size int64
	// SHA256 is the expected digest of the whole file, nil when not given.
	SHA256 []byte
	// FWVersion is the version the device should run afterwards, "" if unknown.
	FWVersion string
	// Signature is afr_ota's "sig-sha256-ecdsa" (base64), kept for the caller.
	Signature string
	// Component is what the image updates: ComponentApp (the default),
	// ComponentModem, or ComponentRAUC (a RAUC bundle for a Linux device's
	// root filesystem).
	Component string
	// Compatible, when set, is the system the image is built for (a RAUC
	// bundle's compatible string): a device of another system refuses the job
	// before fetching anything.
	Compatible string
	// Base, when set, says the image is a delta that applies only to this
	// running image: the device checks it before downloading anything.
	Base *Base
	// StepTimeoutMinutes, when set, is sent by the device with each
	// IN_PROGRESS report as the execution's step timeout: the cloud times
	// the execution out if the device falls silent for that long.
	StepTimeoutMinutes int64

	// Raw is the document as received.
	Raw json.RawMessage
}

// Components a job may name.
const (
	ComponentApp   = "app"
	ComponentModem = "modem"
	ComponentRAUC  = "rauc"
)

// Base identifies the image a delta applies to.
type Base struct {
	SHA256    []byte // of the whole base image
	Size      int64
	FWVersion string // informational
}

// Limits bound what a document may hold; they mirror the seed's settings so a
// document a constrained device cannot store is refused up front.
type Limits struct {
	MaxDocumentSize int // bytes of JSON (AWS allows 32 KiB)
	MaxHostLen      int // the seed's CONFIG_AWS_FOTA_HOSTNAME_MAX_LEN
	MaxPathLen      int // the seed's CONFIG_AWS_FOTA_FILE_PATH_MAX_LEN (path and query)
}

// DefaultLimits returns AWS's 32 KiB document limit, the seed's 255-byte
// host, and a 2 KiB path and query: presigned S3 URLs carry a query of 600 to
// 1 500 bytes (the seed's 255-byte path cannot hold one). SeedLimits gives
// the seed's values for devices with the seed's buffers.
func DefaultLimits() Limits {
	return Limits{MaxDocumentSize: 32 * 1024, MaxHostLen: 255, MaxPathLen: 2048}
}

// SeedLimits returns the nRF Connect SDK aws_fota defaults: a 1350-byte
// MQTT payload buffer and 255-byte host and path.
func SeedLimits() Limits {
	return Limits{MaxDocumentSize: 1350, MaxHostLen: 255, MaxPathLen: 255}
}

// Sentinel errors; every error from Parse wraps exactly one of them.
var (
	// ErrInvalid: the document is not JSON, misses a required field or holds a
	// field of the wrong type or value.
	ErrInvalid = errors.New("invalid job document")
	// ErrTooLong: the document, its host or its path exceeds a Limit.
	ErrTooLong = errors.New("job document exceeds a configured limit")
	// ErrUnsupported: the document asks for something this device cannot do
	// (an afr_ota job without the HTTP protocol, a URL scheme other than http/https).
	ErrUnsupported = errors.New("unsupported job document")
)

// FieldError says which field of a document is wrong and why.
type FieldError struct {
	Field  string // JSON path, e.g. "location.host"
	Reason string
	Kind   error // ErrInvalid, ErrTooLong or ErrUnsupported
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%v: %s: %s", e.Kind, e.Field, e.Reason)
}

// Unwrap returns the sentinel.
func (e *FieldError) Unwrap() error { return e.Kind }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...), Kind: ErrInvalid}
}

// wire is the JSON shape of the seed's form plus our extensions.
type wire struct {
	Operation *string          `json:"operation"`
	FWVersion *json.RawMessage `json:"fwversion"`
	Size      *json.RawMessage `json:"size"`
	SHA256    *string          `json:"sha256"`
	Component *string          `json:"component"`
	Compat    *string          `json:"compatible"`
	StepTime  *json.RawMessage `json:"stepTimeoutInMinutes"`
	Base      *struct {
		SHA256    *string          `json:"sha256"`
		Size      *json.RawMessage `json:"size"`
		FWVersion *string          `json:"fwversion"`
	} `json:"base"`
	Location *struct {
		Protocol *string `json:"protocol"`
		Host     *string `json:"host"`
		Path     *string `json:"path"`
		URL      *string `json:"url"`
	} `json:"location"`
	AFROTA *json.RawMessage `json:"afr_ota"`
}

type afrOTA struct {
	Protocols []string `json:"protocols"`
	Files     []struct {
		FilePath      string `json:"filepath"`
		FileSize      *int64 `json:"filesize"`
		FileID        int    `json:"fileid"`
		CertFile      string `json:"certfile"`
		UpdateDataURL string `json:"update_data_url"`
		AuthScheme    string `json:"auth_scheme"`
		Signature     string `json:"sig-sha256-ecdsa"`
	} `json:"files"`
}

// Parse validates a job document against lim and returns what it asks for.
// Errors are *FieldError values naming the field at fault.
func Parse(b []byte, lim Limits) (*Document, error) {
	if lim.MaxDocumentSize > 0 && len(b) > lim.MaxDocumentSize {
		return nil, &FieldError{Field: "(document)", Kind: ErrTooLong,
			Reason: fmt.Sprintf("%d bytes; the limit is %d", len(b), lim.MaxDocumentSize)}
	}
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, invalid("(document)", "not a JSON object")
	}
	var w wire
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(&w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, invalid(te.Field, "is a JSON %s, want %s", te.Value, te.Type)
		}
		return nil, invalid("(document)", "not valid JSON: %v", err)
	}
	if dec.More() {
		return nil, invalid("(document)", "trailing data after the JSON object")
	}
	doc := &Document{Raw: append(json.RawMessage(nil), trimmed...)}
	if w.Operation != nil {
		doc.Operation = *w.Operation
	}

	switch {
	case w.AFROTA != nil:
		doc.Kind = KindAFROTA
		if err := parseAFR(*w.AFROTA, doc); err != nil {
			return nil, err
		}
	case doc.Operation == "" && w.Location == nil:
		return nil, invalid("operation", "missing, and the document has no location either")
	case doc.Operation != "" && !firmwareOps[doc.Operation]:
		doc.Kind = KindCustom
		return doc, nil
	default:
		doc.Kind = KindFirmware
		if err := parseFirmware(&w, doc); err != nil {
			return nil, err
		}
	}
	if err := checkURL(doc.URL, lim); err != nil {
		return nil, err
	}
	return doc, nil
}

func parseFirmware(w *wire, doc *Document) error {
	if w.FWVersion != nil {
		var s string
		if err := json.Unmarshal(*w.FWVersion, &s); err != nil {
			return invalid("fwversion", "must be a string such as \"1.0.2\"")
		}
		doc.FWVersion = strings.TrimSpace(s)
	}
	if w.Size != nil {
		n, err := parseSize(*w.Size)
		if err != nil {
			return invalid("size", "%v", err)
		}
		doc.Size = n
	}
	if w.SHA256 != nil {
		d, err := hex.DecodeString(*w.SHA256)
		if err != nil || len(d) != 32 {
			return invalid("sha256", "must be 64 hexadecimal digits, got %q", truncate(*w.SHA256, 80))
		}
		doc.SHA256 = d
	}
	if w.StepTime != nil {
		n, err := parseSize(*w.StepTime)
		if err != nil || n < 1 || n > 10080 {
			return invalid("stepTimeoutInMinutes", "must be a whole number of minutes from 1 to 10080")
		}
		doc.StepTimeoutMinutes = n
	}
	doc.Component = ComponentApp
	if doc.Operation == "modem_fw_update" {
		doc.Component = ComponentModem
	}
	if w.Component != nil {
		switch c := strings.ToLower(strings.TrimSpace(*w.Component)); c {
		case ComponentApp, ComponentModem, ComponentRAUC:
			doc.Component = c
		default:
			return &FieldError{Field: "component", Kind: ErrUnsupported,
				Reason: fmt.Sprintf("%q: awsfota devices update \"app\", \"modem\" or \"rauc\"", *w.Component)}
		}
	}
	if w.Compat != nil {
		c := strings.TrimSpace(*w.Compat)
		if c == "" || len(c) > 256 || strings.ContainsFunc(c, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return invalid("compatible", "must be the system's compatible string (1 to 256 printable characters), got %q", truncate(*w.Compat, 80))
		}
		doc.Compatible = c
	}
	if b := w.Base; b != nil {
		doc.Base = &Base{}
		if b.SHA256 == nil {
			return invalid("base.sha256", "missing: a delta's base is identified by its SHA-256")
		}
		d, err := hex.DecodeString(*b.SHA256)
		if err != nil || len(d) != 32 {
			return invalid("base.sha256", "must be 64 hexadecimal digits, got %q", truncate(*b.SHA256, 80))
		}
		doc.Base.SHA256 = d
		if b.Size != nil {
			n, err := parseSize(*b.Size)
			if err != nil {
				return invalid("base.size", "%v", err)
			}
			doc.Base.Size = n
		}
		if b.FWVersion != nil {
			doc.Base.FWVersion = *b.FWVersion
		}
	}
	loc := w.Location
	if loc == nil {
		return invalid("location", "missing: the document must say where the image is")
	}
	if loc.URL != nil {
		if loc.Host != nil || loc.Path != nil {
			return invalid("location", "give either url or host and path, not both")
		}
		doc.URL = strings.TrimSpace(*loc.URL)
		if doc.URL == "" {
			return invalid("location.url", "empty")
		}
		return nil
	}
	if loc.Host == nil || strings.TrimSpace(*loc.Host) == "" {
		return invalid("location.host", "missing: give location.host and location.path, or location.url")
	}
	if loc.Path == nil || strings.TrimSpace(*loc.Path) == "" {
		return invalid("location.path", "missing: give location.host and location.path, or location.url")
	}
	scheme := "http"
	if loc.Protocol != nil {
		p := strings.ToLower(strings.TrimSpace(*loc.Protocol))
		p = strings.TrimSuffix(strings.TrimSuffix(p, "//"), ":")
		switch {
		case p == "" || p == "http":
		case strings.HasPrefix(p, "https"): // the seed selects TLS for anything starting with https
			scheme = "https"
		default:
			return &FieldError{Field: "location.protocol", Kind: ErrUnsupported,
				Reason: fmt.Sprintf("%q: only http: and https: are supported", *loc.Protocol)}
		}
	}
	host := strings.TrimSpace(*loc.Host)
	// The seed's instructions say to copy the Object URL "without the https://
	// prefix"; people paste it anyway. Accept and drop a scheme here.
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	host = strings.TrimSuffix(host, "/")
	path := strings.TrimLeft(strings.TrimSpace(*loc.Path), "/")
	doc.URL = scheme + "://" + host + "/" + path
	return nil
}

func parseAFR(raw json.RawMessage, doc *Document) error {
	var a afrOTA
	if err := json.Unmarshal(raw, &a); err != nil {
		return invalid("afr_ota", "%v", err)
	}
	http := false
	for _, p := range a.Protocols {
		if strings.EqualFold(p, "HTTP") {
			http = true
		}
	}
	if !http {
		return &FieldError{Field: "afr_ota.protocols", Kind: ErrUnsupported,
			Reason: fmt.Sprintf("%q: this device downloads over HTTP only; create the OTA job with protocol HTTP", a.Protocols)}
	}
	if len(a.Files) == 0 {
		return invalid("afr_ota.files", "empty: the job names no file")
	}
	f := a.Files[0]
	if f.UpdateDataURL == "" {
		return invalid("afr_ota.files[0].update_data_url", "missing")
	}
	doc.URL = f.UpdateDataURL
	if f.FileSize != nil {
		if *f.FileSize < 0 {
			return invalid("afr_ota.files[0].filesize", "negative")
		}
		doc.Size = *f.FileSize
	}
	doc.Signature = f.Signature
	return nil
}

func parseSize(raw json.RawMessage) (int64, error) {
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return 0, err
	}
	switch x := v.(type) {
	case json.Number:
		n = x
	case string:
		n = json.Number(strings.TrimSpace(x))
	default:
		return 0, fmt.Errorf("must be a number of bytes, got %s", truncate(string(raw), 40))
	}
	i, err := n.Int64()
	if err != nil || i < 0 {
		return 0, fmt.Errorf("must be a non-negative whole number of bytes, got %s", truncate(string(n), 40))
	}
	return i, nil
}

func checkURL(raw string, lim Limits) error {
	u, err := url.Parse(raw)
	if err != nil {
		return invalid("location", "the image URL %q does not parse: %v", truncate(redact(raw), 120), err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return &FieldError{Field: "location", Kind: ErrUnsupported,
			Reason: fmt.Sprintf("URL scheme %q: only http and https are supported", u.Scheme)}
	}
	if u.Host == "" {
		return invalid("location", "the image URL %q has no host", truncate(redact(raw), 120))
	}
	if lim.MaxHostLen > 0 && len(u.Host) > lim.MaxHostLen {
		return &FieldError{Field: "location.host", Kind: ErrTooLong,
			Reason: fmt.Sprintf("host is %d bytes; this device allows %d (raise MaxHostLen)", len(u.Host), lim.MaxHostLen)}
	}
	p := u.EscapedPath()
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	if lim.MaxPathLen > 0 && len(p) > lim.MaxPathLen {
		return &FieldError{Field: "location.path", Kind: ErrTooLong,
			Reason: fmt.Sprintf("path and query are %d bytes; this device allows %d (raise MaxPathLen: presigned URLs need about 1500)", len(p), lim.MaxPathLen)}
	}
	return nil
}

// Redacted returns the document's URL without its query string, for logs
// and errors: presigned URLs carry credentials in the query.
func (d *Document) Redacted() string { return redact(d.URL) }

func redact(raw string) string {
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		return raw[:i] + "?…"
	}
	return raw
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

package jobdoc

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestParse(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		lim  *Limits
		kind Kind
		url  string
		size int64
		ver  string
		sha  bool
	}{
		{name: "seed", doc: `{"operation":"app_fw_update","fwversion":"v1.0.2","size":181124,"location":{"protocol":"http:","host":"bucket.s3.eu-central-1.amazonaws.com","path":"app_update.bin"}}`,
			kind: KindFirmware, url: "http://bucket.s3.eu-central-1.amazonaws.com/app_update.bin", size: 181124, ver: "v1.0.2"},
		{name: "seed https", doc: `{"operation":"app_fw_update","location":{"protocol":"https:","host":"h.example","path":"/a/b.bin"}}`,
			kind: KindFirmware, url: "https://h.example/a/b.bin"},
		{name: "seed https with slashes", doc: `{"location":{"protocol":"https://","host":"h.example","path":"b.bin"}}`,
			kind: KindFirmware, url: "https://h.example/b.bin"},
		{name: "seed no protocol", doc: `{"location":{"host":"h.example:8080","path":"b.bin"}}`,
			kind: KindFirmware, url: "http://h.example:8080/b.bin"},
		{name: "host pasted with scheme", doc: `{"location":{"protocol":"https:","host":"https://h.example/","path":"b.bin"}}`,
			kind: KindFirmware, url: "https://h.example/b.bin"},
		{name: "url form", doc: `{"operation":"app_fw_update","location":{"url":"https://h.example/fw.bin?X-Amz-Signature=abc"}}`,
			kind: KindFirmware, url: "https://h.example/fw.bin?X-Amz-Signature=abc"},
		{name: "extensions", doc: `{"operation":"app_fw_update","fwversion":"1.0.1","size":"1024","sha256":"` + digest + `","location":{"url":"http://127.0.0.1:4566/b/k"}}`,
			kind: KindFirmware, url: "http://127.0.0.1:4566/b/k", size: 1024, ver: "1.0.1", sha: true},
		{name: "custom", doc: `{"operation":"reboot","delay":5}`, kind: KindCustom},
		{name: "afr_ota", doc: `{"afr_ota":{"protocols":["MQTT","HTTP"],"streamname":"s","files":[{"filepath":"/fw","filesize":4096,"fileid":0,"certfile":"c","update_data_url":"https://b.s3.amazonaws.com/fw?sig=1","auth_scheme":"aws.s3.presigned","sig-sha256-ecdsa":"MEUCIQ=="}]}}`,
			kind: KindAFROTA, url: "https://b.s3.amazonaws.com/fw?sig=1", size: 4096},
		{name: "long presigned with raised limit", doc: `{"location":{"url":"https://h/` + strings.Repeat("q", 1400) + `"}}`,
			lim: &Limits{MaxHostLen: 255, MaxPathLen: 2048}, kind: KindFirmware, url: "https://h/" + strings.Repeat("q", 1400)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lim := DefaultLimits()
			if c.lim != nil {
				lim = *c.lim
			}
			d, err := Parse([]byte(c.doc), lim)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if d.Kind != c.kind || d.URL != c.url || d.Size != c.size || d.FWVersion != c.ver || (d.SHA256 != nil) != c.sha {
				t.Fatalf("got kind=%v url=%q size=%d ver=%q sha=%x", d.Kind, d.URL, d.Size, d.FWVersion, d.SHA256)
			}
			if !bytes.Equal(d.Raw, []byte(c.doc)) {
				t.Errorf("Raw not kept")
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, doc string
		lim       *Limits
		kind      error
		field     string
		msg       string
	}{
		{"empty", ``, nil, ErrInvalid, "(document)", "not a JSON object"},
		{"array", `[1]`, nil, ErrInvalid, "(document)", "not a JSON object"},
		{"broken", `{"location":`, nil, ErrInvalid, "(document)", "not valid JSON"},
		{"trailing", `{"location":{"url":"http://h/p"}} x`, nil, ErrInvalid, "(document)", "trailing"},
		{"nothing", `{}`, nil, ErrInvalid, "operation", "no location"},
		{"no location", `{"operation":"app_fw_update"}`, nil, ErrInvalid, "location", "where the image is"},
		{"no host", `{"location":{"path":"a"}}`, nil, ErrInvalid, "location.host", "missing"},
		{"no path", `{"location":{"host":"h"}}`, nil, ErrInvalid, "location.path", "missing"},
		{"both forms", `{"location":{"url":"http://h/p","host":"h"}}`, nil, ErrInvalid, "location", "not both"},
		{"empty url", `{"location":{"url":" "}}`, nil, ErrInvalid, "location.url", "empty"},
		{"host type", `{"location":{"host":5,"path":"a"}}`, nil, ErrInvalid, "location.host", "number"},
		{"ftp", `{"location":{"protocol":"ftp:","host":"h","path":"a"}}`, nil, ErrUnsupported, "location.protocol", "ftp"},
		{"url scheme", `{"location":{"url":"ftp://h/p"}}`, nil, ErrUnsupported, "location", "scheme"},
		{"url no host", `{"location":{"url":"http:///p"}}`, nil, ErrInvalid, "location", "no host"},
		{"bad size", `{"size":-1,"location":{"url":"http://h/p"}}`, nil, ErrInvalid, "size", "non-negative"},
		{"size float", `{"size":1.5,"location":{"url":"http://h/p"}}`, nil, ErrInvalid, "size", "whole number"},
		{"size bool", `{"size":true,"location":{"url":"http://h/p"}}`, nil, ErrInvalid, "size", "number of bytes"},
		{"bad sha", `{"sha256":"abc","location":{"url":"http://h/p"}}`, nil, ErrInvalid, "sha256", "64 hexadecimal"},
		{"fwversion number", `{"fwversion":1,"location":{"url":"http://h/p"}}`, nil, ErrInvalid, "fwversion", "string"},
		{"host too long", `{"location":{"host":"` + strings.Repeat("h", 256) + `","path":"a"}}`, nil, ErrTooLong, "location.host", "256 bytes"},
		{"path too long for the seed", `{"location":{"host":"h","path":"` + strings.Repeat("p", 255) + `"}}`, ptr(SeedLimits()), ErrTooLong, "location.path", "256 bytes"},
		{"presigned too long for the seed", `{"location":{"url":"https://h/p?` + strings.Repeat("q", 600) + `"}}`, ptr(SeedLimits()), ErrTooLong, "location.path", "raise MaxPathLen"},
		{"path too long", `{"location":{"url":"https://h/p?` + strings.Repeat("q", 2100) + `"}}`, nil, ErrTooLong, "location.path", "this device allows 2048"},
		{"document too large", `{"location":{"url":"http://h/p"},"x":"` + strings.Repeat("x", 100) + `"}`, &Limits{MaxDocumentSize: 64}, ErrTooLong, "(document)", "limit is 64"},
		{"afr mqtt only", `{"afr_ota":{"protocols":["MQTT"],"files":[{"update_data_url":"https://h/p"}]}}`, nil, ErrUnsupported, "afr_ota.protocols", "HTTP"},
		{"afr no files", `{"afr_ota":{"protocols":["HTTP"],"files":[]}}`, nil, ErrInvalid, "afr_ota.files", "empty"},
		{"afr no url", `{"afr_ota":{"protocols":["HTTP"],"files":[{"filesize":1}]}}`, nil, ErrInvalid, "afr_ota.files[0].update_data_url", "missing"},
		{"afr bad type", `{"afr_ota":{"protocols":"HTTP"}}`, nil, ErrInvalid, "afr_ota", "cannot unmarshal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lim := DefaultLimits()
			if c.lim != nil {
				lim = *c.lim
			}
			_, err := Parse([]byte(c.doc), lim)
			if !errors.Is(err, c.kind) {
				t.Fatalf("err = %v, want %v", err, c.kind)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("err = %#v, want field %q", err, c.field)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q lacks %q", err, c.msg)
			}
			if strings.Contains(err.Error(), "qqqqqqqqqq") {
				t.Errorf("error leaks the URL query: %q", err)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	sha := bytes.Repeat([]byte{0xab}, 32)
	for _, seed := range []bool{false, true} {
		b, err := Marshal(Spec{FWVersion: "1.0.1", Size: 4096, SHA256: sha, URL: "http://127.0.0.1:4566/fw/app.bin", SeedLocation: seed})
		if err != nil {
			t.Fatal(err)
		}
		if seed != bytes.Contains(b, []byte(`"host":"127.0.0.1:4566"`)) {
			t.Errorf("seed=%v document %s", seed, b)
		}
		d, err := Parse(b, DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		if d.Kind != KindFirmware || d.Operation != OpAppFirmwareUpdate || d.URL != "http://127.0.0.1:4566/fw/app.bin" ||
			d.Size != 4096 || !bytes.Equal(d.SHA256, sha) || d.FWVersion != "1.0.1" {
			t.Errorf("seed=%v parsed %+v", seed, d)
		}
	}
	if _, err := Marshal(Spec{URL: "https://h/p?sig=1", SeedLocation: true}); err == nil || strings.Contains(err.Error(), "sig=1") {
		t.Errorf("seed form with query: %v", err)
	}
	if _, err := Marshal(Spec{}); err == nil {
		t.Error("no URL accepted")
	}
	if _, err := Marshal(Spec{URL: "http://h/p", SHA256: []byte{1}}); err == nil {
		t.Error("short SHA256 accepted")
	}
}

func TestRedacted(t *testing.T) {
	d := &Document{URL: "https://h/p?X-Amz-Signature=secret"}
	if got := d.Redacted(); strings.Contains(got, "secret") || !strings.HasPrefix(got, "https://h/p") {
		t.Errorf("Redacted = %q", got)
	}
	if KindCustom.String() != "custom" || Kind(9).String() != "Kind(9)" {
		t.Error("Kind.String")
	}
}

func TestTestdataDocuments(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.json")
	if len(files) == 0 {
		t.Fatal("no testdata documents")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Parse(b, DefaultLimits())
		wantOK := !strings.HasPrefix(filepath.Base(f), "bad-")
		if (err == nil) != wantOK {
			t.Errorf("%s: err = %v, want ok=%v", f, err, wantOK)
		}
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b, DefaultLimits())
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error is not a *FieldError: %v", err)
			}
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLong) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if d.Kind != KindCustom && !strings.HasPrefix(d.URL, "http") {
			t.Fatalf("accepted document with URL %q", d.URL)
		}
		if d.Size < 0 {
			t.Fatalf("negative size %d", d.Size)
		}
	})
}

func TestComponentAndBase(t *testing.T) {
	base := bytes.Repeat([]byte{0xcd}, 32)
	b, err := Marshal(Spec{URL: "http://h/p.patch", Component: ComponentModem, Base: &Base{SHA256: base, Size: 1000, FWVersion: "1.3.1"}, FWVersion: "1.3.2"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(b, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if d.Component != ComponentModem || d.Base == nil || !bytes.Equal(d.Base.SHA256, base) || d.Base.Size != 1000 || d.Base.FWVersion != "1.3.1" {
		t.Fatalf("parsed %+v base %+v", d, d.Base)
	}
	d, _ = Parse([]byte(`{"operation":"modem_fw_update","location":{"url":"http://h/m.bin"}}`), DefaultLimits())
	if d.Component != ComponentModem {
		t.Fatalf("modem_fw_update: component %q", d.Component)
	}
	d, _ = Parse([]byte(`{"location":{"url":"http://h/a.bin"}}`), DefaultLimits())
	if d.Component != ComponentApp || d.Base != nil {
		t.Fatalf("default: %+v", d)
	}
	for doc, field := range map[string]string{
		`{"component":"gpu","location":{"url":"http://h/p"}}`:                            "component",
		`{"base":{"size":3},"location":{"url":"http://h/p"}}`:                            "base.sha256",
		`{"base":{"sha256":"zz"},"location":{"url":"http://h/p"}}`:                       "base.sha256",
		`{"base":{"sha256":"` + digest + `","size":-4},"location":{"url":"http://h/p"}}`: "base.size",
	} {
		_, err := Parse([]byte(doc), DefaultLimits())
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%s: %v, want field %s", doc, err, field)
		}
	}
	if _, err := Marshal(Spec{URL: "http://h/p", Base: &Base{SHA256: []byte{1}}}); err == nil {
		t.Fatal("short base hash accepted")
	}
}

func TestStepTimeout(t *testing.T) {
	b, _ := Marshal(Spec{URL: "http://h/p", StepTimeoutMinutes: 15})
	d, err := Parse(b, DefaultLimits())
	if err != nil || d.StepTimeoutMinutes != 15 {
		t.Fatalf("%+v %v", d, err)
	}
	for _, bad := range []string{`0`, `10081`, `"x"`, `1.5`} {
		if _, err := Parse([]byte(`{"stepTimeoutInMinutes":`+bad+`,"location":{"url":"http://h/p"}}`), DefaultLimits()); err == nil {
			t.Errorf("step timeout %s accepted", bad)
		}
	}
}

func ptr(l Limits) *Limits { return &l }

func TestDefaultLimitsHoldPresignedURLs(t *testing.T) {
	u := "https://bucket.s3.eu-west-1.amazonaws.com/firmware/app.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256&" + strings.Repeat("X-Amz-Security-Token=abc&", 50)
	if _, err := Parse([]byte(`{"location":{"url":"`+u+`"}}`), DefaultLimits()); err != nil {
		t.Fatalf("a %d-byte presigned URL refused: %v", len(u), err)
	}
	if SeedLimits().MaxPathLen != 255 || SeedLimits().MaxDocumentSize != 1350 {
		t.Fatal("seed limits")
	}
}

func TestRAUCComponentAndCompatible(t *testing.T) {
	b, err := os.ReadFile("testdata/rauc.json")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(b, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if d.Component != ComponentRAUC || d.Compatible != "acme-gateway-v2" || d.FWVersion != "2024.06.1" {
		t.Fatalf("parsed %+v", d)
	}
	out, err := Marshal(Spec{URL: "https://h/b.raucb", Component: ComponentRAUC, Compatible: "acme-gateway-v2", FWVersion: "1.1"})
	if err != nil {
		t.Fatal(err)
	}
	if d, err = Parse(out, DefaultLimits()); err != nil || d.Component != ComponentRAUC || d.Compatible != "acme-gateway-v2" {
		t.Fatalf("round trip %s: %+v %v", out, d, err)
	}
	for _, bad := range []string{`""`, `"  "`, `"a\u0001b"`, `"` + strings.Repeat("x", 257) + `"`, `7`} {
		_, err := Parse([]byte(`{"compatible":`+bad+`,"location":{"url":"http://h/p"}}`), DefaultLimits())
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "compatible" {
			t.Errorf("compatible %s: %v", bad, err)
		}
	}
}

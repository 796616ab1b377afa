package raucb

import (
	"fmt"
	"strconv"
	"strings"
)

// Manifest is what a bundle's manifest.raucm says (the fields awsfota uses).
type Manifest struct {
	Compatible  string // [update] compatible: the system the bundle is for
	Version     string // [update] version
	Description string // [update] description
	Build       string // [update] build
	// Format is [bundle] format: "plain" (the default) or "verity".
	Format string
	// VerityHash and VeritySalt (hex) and VeritySize are a verity bundle's
	// dm-verity root hash, salt and hash tree size.
	VerityHash, VeritySalt string
	VeritySize             int64
	Images                 []Image
}

// Image is one [image.<slotclass>] section.
type Image struct {
	SlotClass string
	Filename  string
	SHA256    string
	Size      int64
}

// MaxManifestSize bounds the manifests read.
const MaxManifestSize = 64 << 10

// ParseManifest reads a manifest (a GLib key file: [groups] of key=value
// lines, # comments).
func ParseManifest(b []byte) (Manifest, error) {
	var m Manifest
	if len(b) > MaxManifestSize {
		return m, fmt.Errorf("%w: the manifest has %d bytes, more than %d", ErrFormat, len(b), MaxManifestSize)
	}
	group := ""
	var img *Image
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			if !strings.HasSuffix(line, "]") || len(line) < 3 {
				return m, fmt.Errorf("%w: manifest line %d: %q is not a [group]", ErrFormat, i+1, truncate(line, 60))
			}
			group, img = line[1:len(line)-1], nil
			if class, ok := strings.CutPrefix(group, "image."); ok {
				m.Images = append(m.Images, Image{SlotClass: class})
				img = &m.Images[len(m.Images)-1]
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return m, fmt.Errorf("%w: manifest line %d: %q is not key=value", ErrFormat, i+1, truncate(line, 60))
		}
		k, v = strings.TrimSpace(k), unescape(strings.TrimSpace(v))
		var err error
		switch {
		case group == "update" && k == "compatible":
			m.Compatible = v
		case group == "update" && k == "version":
			m.Version = v
		case group == "update" && k == "description":
			m.Description = v
		case group == "update" && k == "build":
			m.Build = v
		case group == "bundle" && k == "format":
			m.Format = v
		case group == "bundle" && k == "verity-hash":
			m.VerityHash = v
		case group == "bundle" && k == "verity-salt":
			m.VeritySalt = v
		case group == "bundle" && k == "verity-size":
			m.VeritySize, err = strconv.ParseInt(v, 10, 64)
		case img != nil && k == "filename":
			img.Filename = v
		case img != nil && k == "sha256":
			img.SHA256 = v
		case img != nil && k == "size":
			img.Size, err = strconv.ParseInt(v, 10, 64)
		}
		if err != nil {
			return m, fmt.Errorf("%w: manifest line %d: %s=%q is not a number", ErrFormat, i+1, k, truncate(v, 40))
		}
	}
	if m.Format == "" {
		m.Format = "plain"
	}
	if m.Compatible == "" {
		return m, fmt.Errorf("%w: the manifest has no [update] compatible", ErrFormat)
	}
	return m, nil
}

// unescape undoes the key file escapes \s \n \t \r \\.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 's':
			b.WriteByte(' ')
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

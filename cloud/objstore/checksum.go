package objstore

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// The flexible checksums S3 accepts (x-amz-checksum-<algorithm>), each the
// base64 of the big-endian digest. The tables are built once and only read.
var (
	crc32cTable    = crc32.MakeTable(crc32.Castagnoli)
	crc64NVMETable = crc64.MakeTable(0x9a6c9329ac4bc9b5) // reflected NVMe polynomial, as the SDK uses
	checksumNew    = map[string]func() hash.Hash{
		"CRC32":     func() hash.Hash { return crc32.NewIEEE() },
		"CRC32C":    func() hash.Hash { return crc32.New(crc32cTable) },
		"CRC64NVME": func() hash.Hash { return crc64.New(crc64NVMETable) },
		"SHA1":      sha1.New,
		"SHA256":    sha256.New,
		"SHA512":    sha512.New,
	}
)

const checksumHeaderPrefix = "x-amz-checksum-"

// Headers with the checksum prefix that are not checksums.
var checksumNonValues = map[string]bool{"mode": true, "type": true, "algorithm": true}

func checksumHeader(alg string) string { return checksumHeaderPrefix + strings.ToLower(alg) }

// checksumAlgorithm returns the algorithm of a checksum header name, and
// whether the name is one (known or not).
func checksumAlgorithm(header string) (alg string, isChecksum bool) {
	lh := strings.ToLower(header)
	rest, ok := strings.CutPrefix(lh, checksumHeaderPrefix)
	if !ok || checksumNonValues[rest] {
		return "", false
	}
	return strings.ToUpper(rest), true
}

// validChecksum reports whether v is the base64 of a digest of alg's size.
func validChecksum(alg, v string) bool {
	newHash, ok := checksumNew[alg]
	if !ok {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(v)
	return err == nil && len(b) == newHash().Size()
}

// checksumSpec is what a request declares about its body's checksums.
type checksumSpec struct {
	// expect holds values sent as headers, by algorithm.
	expect map[string]string
	// trailing lists algorithms whose values follow the body as aws-chunked
	// trailers (x-amz-trailer).
	trailing []string
}

// algorithms returns every algorithm to compute, sorted.
func (c checksumSpec) algorithms() []string {
	var out []string
	for a := range c.expect {
		out = append(out, a)
	}
	for _, a := range c.trailing {
		if _, dup := c.expect[a]; !dup {
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out
}

// parseChecksumHeaders reads x-amz-checksum-* and x-amz-trailer.
func parseChecksumHeaders(h http.Header) (checksumSpec, error) {
	spec := checksumSpec{expect: map[string]string{}}
	for name, values := range h {
		alg, ok := checksumAlgorithm(name)
		if !ok {
			continue
		}
		if _, known := checksumNew[alg]; !known {
			return spec, badRequest("InvalidRequest", "The checksum algorithm of header %s is not supported; use CRC32, CRC32C, CRC64NVME, SHA1, SHA256 or SHA512.", strings.ToLower(name))
		}
		if len(values) != 1 || !validChecksum(alg, values[0]) {
			return spec, badRequest("InvalidRequest", "Value for %s header is invalid.", strings.ToLower(name))
		}
		spec.expect[alg] = values[0]
	}
	for _, v := range h.Values("X-Amz-Trailer") {
		for _, name := range strings.Split(v, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			alg, ok := checksumAlgorithm(name)
			if _, known := checksumNew[alg]; !ok || !known {
				return spec, badRequest("InvalidRequest", "The trailer %q of x-amz-trailer is not a supported checksum header.", clip(name))
			}
			spec.trailing = append(spec.trailing, alg)
		}
	}
	if len(spec.expect)+len(spec.trailing) > 1 {
		return spec, badRequest("InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.")
	}
	return spec, nil
}

// compositeChecksum is S3's checksum of a multipart object: the checksum of
// the concatenated binary part checksums, then "-" and the part count.
func compositeChecksum(alg string, parts []string) (string, bool) {
	newHash, ok := checksumNew[alg]
	if !ok || len(parts) == 0 {
		return "", false
	}
	h := newHash()
	for _, p := range parts {
		b, err := base64.StdEncoding.DecodeString(p)
		if err != nil || p == "" {
			return "", false
		}
		h.Write(b)
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil)) + "-" + strconv.Itoa(len(parts)), true
}

package objstore

import (
	"encoding/base64"
	"encoding/xml"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// listing is one page of a bucket listing.
type listing struct {
	objects   []*objectMeta
	prefixes  []string
	truncated bool
	// last is the last key or common prefix of the page: where the next
	// page starts.
	last string
}

// listParams selects a page. Keys are listed in byte order.
type listParams struct {
	prefix, delimiter string
	// after: only keys strictly greater are listed.
	after string
	// afterIsPrefix: after is a common prefix already returned, so every key
	// under it is skipped too.
	afterIsPrefix bool
	max           int
}

// list returns one page; s.mu must be held (read).
func (b *bucket) list(p listParams) listing {
	var out listing
	if p.max <= 0 {
		return out
	}
	i := sort.SearchStrings(b.keys, p.prefix)
	if j := sort.SearchStrings(b.keys, p.after); j > i {
		i = j
	}
	count := 0
	for ; i < len(b.keys); i++ {
		k := b.keys[i]
		if !strings.HasPrefix(k, p.prefix) {
			break // keys sharing a prefix are contiguous
		}
		if k <= p.after || (p.afterIsPrefix && strings.HasPrefix(k, p.after)) {
			continue
		}
		if p.delimiter != "" {
			if j := strings.Index(k[len(p.prefix):], p.delimiter); j >= 0 {
				cp := k[:len(p.prefix)+j+len(p.delimiter)]
				if len(out.prefixes) > 0 && out.prefixes[len(out.prefixes)-1] == cp {
					continue
				}
				if count == p.max {
					out.truncated = true
					break
				}
				out.prefixes = append(out.prefixes, cp)
				out.last = cp
				count++
				continue
			}
		}
		if count == p.max {
			out.truncated = true
			break
		}
		out.objects = append(out.objects, b.objects[k])
		out.last = k
		count++
	}
	return out
}

type listEntry struct {
	Key               string
	LastModified      string
	ETag              string
	Size              int64
	StorageClass      string
	ChecksumAlgorithm []string `xml:",omitempty"`
	ChecksumType      string   `xml:",omitempty"`
}

type commonPrefix struct {
	Prefix string
}

type listBucketResult struct {
	XMLName               xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListBucketResult"`
	Name                  string
	Prefix                string
	Marker                *string `xml:",omitempty"`
	NextMarker            string  `xml:",omitempty"`
	ContinuationToken     string  `xml:",omitempty"`
	NextContinuationToken string  `xml:",omitempty"`
	StartAfter            string  `xml:",omitempty"`
	KeyCount              *int    `xml:",omitempty"`
	MaxKeys               int
	Delimiter             string `xml:",omitempty"`
	EncodingType          string `xml:",omitempty"`
	IsTruncated           bool
	Contents              []listEntry
	CommonPrefixes        []commonPrefix
}

const maxListKeys = 1000

// listObjects answers ListObjectsV2 (list-type=2) and the original
// ListObjects.
func (h *handler) listObjects(rq *request) error {
	q := rq.query
	v2 := q.Get("list-type") == "2"
	if lt := q.Get("list-type"); lt != "" && !v2 {
		return badRequest("InvalidArgument", "Invalid list type %q; use 2.", clip(lt))
	}
	p := listParams{prefix: q.Get("prefix"), delimiter: q.Get("delimiter"), max: maxListKeys}
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return badRequest("InvalidArgument", "max-keys must be a non-negative integer.")
		}
		p.max = min(n, maxListKeys)
	}
	encoding := q.Get("encoding-type")
	if encoding != "" && encoding != "url" {
		return badRequest("InvalidArgument", "Invalid Encoding Method specified in Request; use url.")
	}
	res := listBucketResult{Name: rq.bucket, MaxKeys: p.max, EncodingType: encoding}
	if v2 {
		res.StartAfter = q.Get("start-after")
		p.after = res.StartAfter
		if tok := q.Get("continuation-token"); tok != "" {
			raw, err := base64.RawURLEncoding.DecodeString(tok)
			if err != nil || len(raw) == 0 {
				return badRequest("InvalidArgument", "The continuation token provided is incorrect.")
			}
			res.ContinuationToken = tok
			// A page ending with a common prefix marks it with a leading 'p'.
			p.after, p.afterIsPrefix = string(raw[1:]), raw[0] == 'p'
		}
	} else {
		marker := q.Get("marker")
		res.Marker = &marker
		p.after = marker
		// NextMarker may be a common prefix; skip the keys it stands for.
		p.afterIsPrefix = p.delimiter != "" && len(marker) > len(p.prefix) &&
			strings.HasPrefix(marker, p.prefix) && strings.HasSuffix(marker, p.delimiter) &&
			strings.Index(marker[len(p.prefix):], p.delimiter) == len(marker)-len(p.prefix)-len(p.delimiter)
	}

	h.s.mu.RLock()
	b, err := h.s.bucketLocked(rq.bucket)
	if err != nil {
		h.s.mu.RUnlock()
		return err
	}
	page := b.list(p)
	h.s.mu.RUnlock()

	enc := func(s string) string {
		if encoding == "url" {
			return s3Escape(s, false)
		}
		return s
	}
	res.Prefix, res.Delimiter = enc(p.prefix), enc(p.delimiter)
	if res.StartAfter != "" {
		res.StartAfter = enc(res.StartAfter)
	}
	res.IsTruncated = page.truncated
	for _, m := range page.objects {
		e := listEntry{Key: enc(m.Key), LastModified: m.LastModified.UTC().Format(s3Time), ETag: m.ETag, Size: m.Size, StorageClass: "STANDARD"}
		for alg := range m.Checksums {
			e.ChecksumAlgorithm = append(e.ChecksumAlgorithm, alg)
			e.ChecksumType = m.ChecksumType
		}
		res.Contents = append(res.Contents, e)
	}
	for _, cp := range page.prefixes {
		res.CommonPrefixes = append(res.CommonPrefixes, commonPrefix{Prefix: enc(cp)})
	}
	if v2 {
		n := len(page.objects) + len(page.prefixes)
		res.KeyCount = &n
		if page.truncated {
			kind := "k"
			if len(page.prefixes) > 0 && page.prefixes[len(page.prefixes)-1] == page.last {
				kind = "p"
			}
			res.NextContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(kind + page.last))
		}
	} else if page.truncated {
		res.NextMarker = enc(page.last)
	}
	return writeXML(rq, http.StatusOK, res)
}

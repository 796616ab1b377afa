package objstore

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/awsfota/awsfota/atomicfile"
)

// S3's multipart limits.
const (
	// MinPartSize is the smallest size of every part but the last.
	MinPartSize = 5 << 20
	// MaxParts is the highest part number.
	MaxParts = 10000
)

// uploadRecord is .uploads/<id>/upload.json.
type uploadRecord struct {
	Bucket            string            `json:"bucket"`
	Key               string            `json:"key"`
	ContentType       string            `json:"contentType"`
	UserMeta          map[string]string `json:"userMeta,omitempty"`
	ChecksumAlgorithm string            `json:"checksumAlgorithm,omitempty"`
	ChecksumType      string            `json:"checksumType,omitempty"`
	Initiated         time.Time         `json:"initiated"`
}

// partRecord is .uploads/<id>/p-NNNNN.json, written after its data file.
type partRecord struct {
	Number    int    `json:"number"`
	Size      int64  `json:"size"`
	MD5       string `json:"md5"`                 // hex
	Algorithm string `json:"algorithm,omitempty"` // the upload's checksum algorithm
	Checksum  string `json:"checksum,omitempty"`  // base64, by Algorithm
	Data      string `json:"data"`
}

func (p *partRecord) etag() string { return `"` + p.MD5 + `"` }

func partFile(n int) string { return fmt.Sprintf("p-%05d.json", n) }

// resolveChecksumType applies S3's defaults and rules to the checksum
// algorithm and type of CreateMultipartUpload.
func resolveChecksumType(alg, typ string) (string, error) {
	if alg == "" {
		if typ != "" {
			return "", badRequest("InvalidRequest", "x-amz-checksum-type requires x-amz-checksum-algorithm.")
		}
		return "", nil
	}
	if _, ok := checksumNew[alg]; !ok {
		return "", badRequest("InvalidRequest", "Checksum algorithm %q is not supported; use CRC32, CRC32C, CRC64NVME, SHA1, SHA256 or SHA512.", clip(alg))
	}
	fullOK := alg == "CRC32" || alg == "CRC32C" || alg == "CRC64NVME"
	switch typ {
	case "":
		if alg == "CRC64NVME" {
			return "FULL_OBJECT", nil
		}
		return "COMPOSITE", nil
	case "FULL_OBJECT":
		if !fullOK {
			return "", badRequest("InvalidRequest", "The FULL_OBJECT checksum type is not supported with %s; use COMPOSITE or a CRC algorithm.", alg)
		}
	case "COMPOSITE":
		if alg == "CRC64NVME" {
			return "", badRequest("InvalidRequest", "The COMPOSITE checksum type is not supported with CRC64NVME; use FULL_OBJECT.")
		}
	default:
		return "", badRequest("InvalidRequest", "x-amz-checksum-type must be FULL_OBJECT or COMPOSITE.")
	}
	return typ, nil
}

// createUpload starts a multipart upload and returns its ID.
func (s *Store) createUpload(bucketName, key string, rec uploadRecord) (string, error) {
	if err := validateKey(key); err != nil {
		return "", err
	}
	if err := s.checkBucket(bucketName); err != nil {
		return "", err
	}
	rec.Bucket, rec.Key, rec.Initiated = bucketName, key, s.now()
	id := randomHex(16)
	tmp, err := os.MkdirTemp(s.tmpDir(), "upload-*")
	if err == nil {
		err = writeJSONAtomic(filepath.Join(tmp, "upload.json"), rec)
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.uploadsDir(), id))
	}
	if err == nil {
		err = atomicfile.SyncDir(s.uploadsDir())
	}
	if err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("objstore: create multipart upload of %s/%s: %w", bucketName, key, err)
	}
	return id, nil
}

// loadUpload reads an upload's record, checking that it belongs to
// bucket/key; the ID is checked first so that it cannot name another path.
func (s *Store) loadUpload(id, bucketName, key string) (*uploadRecord, string, error) {
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return nil, "", fmt.Errorf("%w: %q", ErrNoSuchUpload, clip(id))
	}
	dir := filepath.Join(s.uploadsDir(), id)
	rec := &uploadRecord{}
	if err := readJSON(filepath.Join(dir, "upload.json"), rec); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("%w: %s", ErrNoSuchUpload, id)
		}
		return nil, "", fmt.Errorf("objstore: multipart upload %s: %w", id, err)
	}
	if rec.Bucket != bucketName || rec.Key != key {
		return nil, "", fmt.Errorf("%w: %s is not an upload of %s/%s", ErrNoSuchUpload, id, bucketName, clip(key))
	}
	return rec, dir, nil
}

// uploadPart stores part num of an upload, replacing an earlier upload of
// the same number.
func (s *Store) uploadPart(ctx context.Context, id, bucketName, key string, num int, body io.Reader, o putOptions) (*partRecord, error) {
	rec, dir, err := s.loadUpload(id, bucketName, key)
	if err != nil {
		return nil, err
	}
	if rec.ChecksumAlgorithm != "" {
		if algs := o.checksums.algorithms(); len(algs) > 0 && !contains(algs, rec.ChecksumAlgorithm) {
			return nil, badRequest("InvalidRequest", "Checksum Type mismatch occurred, expected checksum Type: %s, actual checksum Type: %s",
				strings.ToLower(rec.ChecksumAlgorithm), strings.ToLower(algs[0]))
		}
		o.extraAlgorithm = rec.ChecksumAlgorithm
	}
	if o.size > MaxPutSize {
		return nil, ErrEntityTooLarge
	}
	sp, err := s.spool(ctx, body, o, MaxPutSize)
	if err != nil {
		return nil, err
	}
	defer sp.discard()
	p := &partRecord{Number: num, Size: sp.size, MD5: hex.EncodeToString(sp.md5), Data: fmt.Sprintf("p-%05d-%s", num, randomHex(8))}
	if rec.ChecksumAlgorithm != "" {
		p.Algorithm, p.Checksum = rec.ChecksumAlgorithm, sp.sums[rec.ChecksumAlgorithm]
	}
	var old partRecord
	oldErr := readJSON(filepath.Join(dir, partFile(num)), &old)
	data := filepath.Join(dir, p.Data)
	err = os.Rename(sp.path, data)
	if err == nil {
		sp.path = ""
		err = atomicfile.SyncDir(dir)
	}
	if err == nil {
		err = writeJSONAtomic(filepath.Join(dir, partFile(num)), p)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s was completed or aborted during the part upload", ErrNoSuchUpload, id)
		}
		return nil, fmt.Errorf("objstore: upload part %d of %s: %w", num, id, err)
	}
	if oldErr == nil && old.Data != p.Data {
		os.Remove(filepath.Join(dir, old.Data))
	}
	return p, nil
}

// completedPart is one entry of a CompleteMultipartUpload request.
type completedPart struct {
	Number    int
	ETag      string
	Checksums map[string]string // by algorithm
}

type completeRequest struct {
	parts []completedPart
	// objectSize is x-amz-mp-object-size, -1 when absent.
	objectSize int64
	// checksums are the full-object checksums sent as headers.
	checksums map[string]string
}

// completeUpload assembles the listed parts into the object and removes the
// upload. The parts are copied into one file so that the object is served
// like any other.
func (s *Store) completeUpload(ctx context.Context, id, bucketName, key string, req completeRequest) (*objectMeta, error) {
	rec, dir, err := s.loadUpload(id, bucketName, key)
	if err != nil {
		return nil, err
	}
	if len(req.parts) == 0 {
		return nil, badRequest("MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema: it lists no part.")
	}
	for i, want := range req.parts {
		if want.Number < 1 || want.Number > MaxParts {
			return nil, badRequest("InvalidArgument", "Part number must be an integer between 1 and %d, inclusive.", MaxParts)
		}
		if i > 0 && want.Number <= req.parts[i-1].Number {
			return nil, badRequest("InvalidPartOrder", "The list of parts was not in ascending order. The parts list must be specified in order by part number.")
		}
	}
	parts := make([]*partRecord, len(req.parts))
	for i, want := range req.parts {
		p := &partRecord{}
		if err := readJSON(filepath.Join(dir, partFile(want.Number)), p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, badRequest("InvalidPart", "One or more of the specified parts could not be found: part %d was not uploaded.", want.Number)
			}
			return nil, fmt.Errorf("objstore: complete upload %s: %w", id, err)
		}
		if !strings.EqualFold(strings.Trim(want.ETag, `"`), p.MD5) {
			return nil, badRequest("InvalidPart", "One or more of the specified parts could not be found. The ETag of part %d does not match the part's entity tag.", want.Number)
		}
		for alg, v := range want.Checksums {
			if alg != rec.ChecksumAlgorithm || v != p.Checksum {
				return nil, badRequest("InvalidPart", "The %s checksum of part %d does not match the one computed when the part was uploaded.", alg, want.Number)
			}
		}
		if i < len(req.parts)-1 && p.Size < MinPartSize {
			return nil, badRequest("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size: part %d has %d bytes; every part but the last needs at least %d.", want.Number, p.Size, MinPartSize)
		}
		parts[i] = p
	}

	fullAlg := ""
	switch {
	case rec.ChecksumAlgorithm == "":
		fullAlg = "CRC64NVME" // S3's default checksum of new objects
	case rec.ChecksumType == "FULL_OBJECT":
		fullAlg = rec.ChecksumAlgorithm
	}
	sp, err := s.assemble(ctx, dir, parts, fullAlg)
	if err != nil {
		return nil, fmt.Errorf("objstore: complete upload %s: %w", id, err)
	}
	defer sp.discard()
	if req.objectSize >= 0 && req.objectSize != sp.size {
		return nil, badRequest("InvalidRequest", "The provided 'x-amz-mp-object-size' header value %d does not match what was computed: %d.", req.objectSize, sp.size)
	}
	for alg, v := range req.checksums {
		if got, ok := sp.sums[alg]; !ok || got != v {
			return nil, badRequest("BadDigest", "The %s you specified for the whole object did not match the calculated checksum.", alg)
		}
	}

	etag := md5.New()
	m := &objectMeta{
		Key:          key,
		Size:         sp.size,
		SHA256:       hex.EncodeToString(sp.sha256),
		LastModified: s.now().Truncate(time.Second),
		ContentType:  rec.ContentType,
		UserMeta:     rec.UserMeta,
		Checksums:    sp.sums,
		ChecksumType: "FULL_OBJECT",
	}
	var partSums []string
	for _, p := range parts {
		b, _ := hex.DecodeString(p.MD5)
		etag.Write(b)
		m.Parts = append(m.Parts, p.Size)
		partSums = append(partSums, p.Checksum)
	}
	m.ETag = fmt.Sprintf(`"%s-%d"`, hex.EncodeToString(etag.Sum(nil)), len(parts))
	if rec.ChecksumType == "COMPOSITE" {
		if v, ok := compositeChecksum(rec.ChecksumAlgorithm, partSums); ok {
			m.Checksums = map[string]string{rec.ChecksumAlgorithm: v}
			m.ChecksumType = "COMPOSITE"
		}
	}
	if m.ContentType == "" {
		m.ContentType = DefaultContentType
	}
	if err := s.commit(bucketName, m, sp); err != nil {
		return nil, err
	}
	s.removeUpload(dir)
	return m, nil
}

// assemble concatenates the parts' data into a temporary file, computing the
// SHA-256 and, when fullAlg is set, that full-object checksum.
func (s *Store) assemble(ctx context.Context, dir string, parts []*partRecord, fullAlg string) (*spooled, error) {
	f, err := os.CreateTemp(s.tmpDir(), "assemble-*")
	if err != nil {
		return nil, err
	}
	sp := &spooled{path: f.Name()}
	shah := sha256.New()
	writers := []io.Writer{f, shah}
	var full hash.Hash
	if fullAlg != "" {
		full = checksumNew[fullAlg]()
		writers = append(writers, full)
	}
	w := io.MultiWriter(writers...)
	buf := make([]byte, 64<<10)
	for _, p := range parts {
		if err = ctx.Err(); err != nil {
			break
		}
		var pf *os.File
		if pf, err = os.Open(filepath.Join(dir, p.Data)); err != nil {
			break
		}
		var n int64
		n, err = io.CopyBuffer(w, pf, buf)
		pf.Close()
		if err == nil && n != p.Size {
			err = fmt.Errorf("part %d holds %d bytes, its record says %d", p.Number, n, p.Size)
		}
		if err != nil {
			break
		}
		sp.size += n
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		sp.discard()
		return nil, err
	}
	sp.sha256 = shah.Sum(nil)
	sp.sums = map[string]string{}
	if full != nil {
		sp.sums[fullAlg] = base64.StdEncoding.EncodeToString(full.Sum(nil))
	}
	return sp, nil
}

// abortUpload discards an upload and its parts.
func (s *Store) abortUpload(id, bucketName, key string) error {
	_, dir, err := s.loadUpload(id, bucketName, key)
	if err != nil {
		return err
	}
	s.removeUpload(dir)
	return nil
}

// removeUpload moves an upload directory to the trash (one atomic step that
// makes later part uploads fail) and deletes it.
func (s *Store) removeUpload(dir string) {
	trash := filepath.Join(s.trashDir(), "upload-"+filepath.Base(dir)+"-"+randomHex(4))
	if err := os.Rename(dir, trash); err != nil {
		s.log.Error("objstore: removing a multipart upload", "dir", dir, "err", err)
		return
	}
	os.RemoveAll(trash)
}

// abortUploadsIn discards the uploads into a deleted bucket.
func (s *Store) abortUploadsIn(bucketName string) {
	entries, err := os.ReadDir(s.uploadsDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		dir := filepath.Join(s.uploadsDir(), e.Name())
		var rec uploadRecord
		if readJSON(filepath.Join(dir, "upload.json"), &rec) == nil && rec.Bucket == bucketName {
			s.removeUpload(dir)
		}
	}
}

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
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/awsfota/awsfota/atomicfile"
	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/cloud/sigv4"
)

// Config configures a Store.
type Config struct {
	// Dir holds the buckets; it is created if missing.
	Dir string
	// Region the store answers for; SigV4 scopes must name it. Default
	// "us-east-1".
	Region string
	// Credentials accepted in SigV4 signatures; the first one signs the URLs
	// of Store.Presign.
	Credentials []sigv4.Credentials
	// Clock for signature skew, presigned expiry and Last-Modified; default
	// clock.Real().
	Clock clock.Clock
	// BaseURL returns the scheme://host[:port] clients use to reach the store
	// (for the Location of a completed multipart upload); by default it is
	// derived from the request.
	BaseURL func(r *http.Request) string
	// Logger receives internal failures (disk errors); default: discarded.
	Logger *slog.Logger
}

// DefaultRegion is the region of a Config that names none.
const DefaultRegion = "us-east-1"

// MaxPutSize is the largest object a single PUT (or one part) may carry.
const MaxPutSize = 5 << 30

// DefaultContentType is what S3 records for an object uploaded without one.
const DefaultContentType = "binary/octet-stream"

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Bucket, Key string
	Size        int64
	// ETag is quoted, as S3 sends it: the hex MD5 of the bytes for a single
	// PUT, "<hex md5 of the part MD5s>-<parts>" for a multipart upload.
	ETag         string
	SHA256       [32]byte
	LastModified time.Time
	ContentType  string
}

// Store is an S3-compatible object store rooted at a directory. Its methods
// and its Handler are safe for concurrent use.
type Store struct {
	dir      string
	region   string
	creds    []sigv4.Credentials
	clock    clock.Clock
	baseURL  func(*http.Request) string
	log      *slog.Logger
	verifier *sigv4.Verifier

	mu      sync.RWMutex // guards closed, buckets and every bucket's index
	closed  bool
	buckets map[string]*bucket

	problems []LoadProblem // set by Open, then read-only
}

// LoadProblem is an object record Open could not load: the object is not
// served, and the bucket's unreferenced data files are kept (one may hold
// the object's bytes) until the record is repaired or removed.
type LoadProblem struct {
	Bucket string
	// File is the record's path, or the data file's for a missing one.
	File string
	// Key is the object's key when the record could be read.
	Key    string
	Reason string
}

func (p LoadProblem) String() string {
	key := ""
	if p.Key != "" {
		key = fmt.Sprintf(" (key %+q)", clip(p.Key))
	}
	return fmt.Sprintf("bucket %s: %s%s: %s", p.Bucket, p.File, key, p.Reason)
}

// LoadProblems lists the object records Open could not load, each with
// why; empty when every record loaded. A caller shows them to the user:
// the objects they describe are not served.
func (s *Store) LoadProblems() []LoadProblem {
	return append([]LoadProblem(nil), s.problems...)
}

type bucketRecord struct {
	Created    time.Time `json:"created"`
	PublicRead bool      `json:"publicRead"`
}

type bucket struct {
	name    string
	rec     bucketRecord
	objects map[string]*objectMeta
	keys    []string // sorted keys of objects
}

// objectMeta is an object's metadata record, the commit point of a write.
// Once committed a record is never modified, only replaced, so readers may
// keep a pointer to it.
type objectMeta struct {
	Key          string            `json:"key"`
	Size         int64             `json:"size"`
	ETag         string            `json:"etag"`
	SHA256       string            `json:"sha256"`
	LastModified time.Time         `json:"lastModified"`
	ContentType  string            `json:"contentType"`
	UserMeta     map[string]string `json:"userMeta,omitempty"`
	// Checksums by algorithm (base64; a composite one ends in "-<parts>").
	Checksums    map[string]string `json:"checksums,omitempty"`
	ChecksumType string            `json:"checksumType,omitempty"` // FULL_OBJECT or COMPOSITE
	Parts        []int64           `json:"parts,omitempty"`        // part sizes of a multipart upload
	Data         string            `json:"data"`                   // data file in the bucket directory
}

func (m *objectMeta) info(bucket string) ObjectInfo {
	info := ObjectInfo{Bucket: bucket, Key: m.Key, Size: m.Size, ETag: m.ETag, LastModified: m.LastModified, ContentType: m.ContentType}
	hex.Decode(info.SHA256[:], []byte(m.SHA256))
	return info
}

// partRange returns the byte range of part n (1-based) and the part count; a
// single-PUT object has one part.
func (m *objectMeta) partRange(n int) (start, length int64, ok bool) {
	if len(m.Parts) == 0 {
		return 0, m.Size, n == 1
	}
	if n < 1 || n > len(m.Parts) {
		return 0, 0, false
	}
	for _, p := range m.Parts[:n-1] {
		start += p
	}
	return start, m.Parts[n-1], true
}

// Open opens (creating if needed) the store in cfg.Dir, loads the bucket and
// object records and removes what interrupted writes left behind.
func Open(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("objstore: Config.Dir is empty; name the directory that holds the buckets")
	}
	for i, c := range cfg.Credentials {
		if c.AccessKeyID == "" || c.SecretAccessKey == "" {
			return nil, fmt.Errorf("objstore: credentials %d have an empty access key ID or secret", i)
		}
	}
	s := &Store{
		dir:     cfg.Dir,
		region:  cfg.Region,
		creds:   append([]sigv4.Credentials(nil), cfg.Credentials...),
		clock:   cfg.Clock,
		baseURL: cfg.BaseURL,
		log:     cfg.Logger,
		buckets: map[string]*bucket{},
	}
	if s.region == "" {
		s.region = DefaultRegion
	}
	if s.clock == nil {
		s.clock = clock.Real()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.verifier = &sigv4.Verifier{Region: s.region, Lookup: s.secretOf, Clock: s.clock}

	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("objstore: open: %w", err)
	}
	for _, d := range []string{s.tmpDir(), s.trashDir()} {
		if err := emptyDir(d); err != nil {
			return nil, fmt.Errorf("objstore: open: clearing %s: %w", d, err)
		}
	}
	if err := os.MkdirAll(s.uploadsDir(), 0o755); err != nil {
		return nil, fmt.Errorf("objstore: open: %w", err)
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("objstore: open: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := s.loadBucket(e.Name())
		if errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("objstore: ignoring a directory without bucket.json", "dir", filepath.Join(s.dir, e.Name()))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("objstore: open: bucket %s: %w", e.Name(), err)
		}
		s.buckets[b.name] = b
	}
	return s, nil
}

func (s *Store) tmpDir() string               { return filepath.Join(s.dir, ".tmp") }
func (s *Store) trashDir() string             { return filepath.Join(s.dir, ".trash") }
func (s *Store) uploadsDir() string           { return filepath.Join(s.dir, ".uploads") }
func (s *Store) bucketDir(name string) string { return filepath.Join(s.dir, name) }
func metaFile(key string) string              { return "o-" + keyID(key) + ".json" }
func (s *Store) now() time.Time               { return s.clock.Now().UTC() }
func (s *Store) secretOf(id string) (string, bool) {
	for _, c := range s.creds {
		if c.AccessKeyID == id {
			return c.SecretAccessKey, true
		}
	}
	return "", false
}

// loadBucket reads a bucket's records and deletes data files no record
// references (left by a crash between writing the data and committing it).
func (s *Store) loadBucket(name string) (*bucket, error) {
	dir := s.bucketDir(name)
	b := &bucket{name: name, objects: map[string]*objectMeta{}}
	if err := readJSON(filepath.Join(dir, "bucket.json"), &b.rec); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	referenced := map[string]bool{}
	damaged := false
	problem := func(file, key, reason string) {
		p := LoadProblem{Bucket: name, File: filepath.Join(dir, file), Key: key, Reason: reason}
		s.problems = append(s.problems, p)
		s.log.Error("objstore: an object record could not be loaded; the object is not served", "problem", p.String())
	}
	for _, e := range entries {
		n := e.Name()
		switch {
		case strings.Contains(n, ".tmp-"):
			os.Remove(filepath.Join(dir, n))
		case strings.HasPrefix(n, "o-") && strings.HasSuffix(n, ".json"):
			m := &objectMeta{}
			if err := readJSON(filepath.Join(dir, n), m); err != nil {
				problem(n, "", fmt.Sprintf("the record is unreadable (%v); unreferenced data files are kept", err))
				damaged = true
				continue
			}
			var why string
			switch {
			case metaFile(m.Key) != n:
				why = "the record's key does not hash to its file name (a key that is not UTF-8, stored by an older version, or an edited record)"
			case !strings.HasPrefix(m.Data, "d-") || strings.ContainsAny(m.Data, `/\`):
				why = fmt.Sprintf("the record names the data file %q, which is not in the bucket", m.Data)
			}
			if why != "" {
				problem(n, m.Key, why+"; unreferenced data files are kept")
				damaged = true
				continue
			}
			if _, err := os.Stat(filepath.Join(dir, m.Data)); err != nil {
				problem(n, m.Key, fmt.Sprintf("its data file %s is missing (%v)", m.Data, err))
				continue
			}
			referenced[m.Data] = true
			b.objects[m.Key] = m
			b.keys = append(b.keys, m.Key)
		}
	}
	if !damaged {
		// With every record read, an unreferenced data file is garbage.
		for _, e := range entries {
			if n := e.Name(); strings.HasPrefix(n, "d-") && !referenced[n] {
				os.Remove(filepath.Join(dir, n))
			}
		}
	}
	sort.Strings(b.keys)
	return b, nil
}

func (b *bucket) set(m *objectMeta) {
	if _, ok := b.objects[m.Key]; !ok {
		i := sort.SearchStrings(b.keys, m.Key)
		b.keys = append(b.keys, "")
		copy(b.keys[i+1:], b.keys[i:])
		b.keys[i] = m.Key
	}
	b.objects[m.Key] = m
}

func (b *bucket) remove(key string) {
	if _, ok := b.objects[key]; !ok {
		return
	}
	delete(b.objects, key)
	i := sort.SearchStrings(b.keys, key)
	b.keys = append(b.keys[:i], b.keys[i+1:]...)
}

// Close marks the store closed; later calls fail with ErrClosed. Objects
// already opened stay readable until their own Close.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// bucketLocked returns the named bucket; s.mu must be held.
func (s *Store) bucketLocked(name string) (*bucket, error) {
	if s.closed {
		return nil, ErrClosed
	}
	b := s.buckets[name]
	if b == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoSuchBucket, clip(name))
	}
	return b, nil
}

// CreateBucket creates an empty, private bucket. It fails with
// ErrInvalidBucketName (saying which rule the name breaks) or ErrBucketExists.
func (s *Store) CreateBucket(name string) error {
	if err := ValidateBucketName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if _, ok := s.buckets[name]; ok {
		return fmt.Errorf("%w: %s", ErrBucketExists, name)
	}
	rec := bucketRecord{Created: s.now().Truncate(time.Second)}
	// Build the bucket directory aside and rename it into place: a crash
	// leaves no bucket or a whole one.
	tmp, err := os.MkdirTemp(s.tmpDir(), "bucket-*")
	if err == nil {
		err = writeJSONAtomic(filepath.Join(tmp, "bucket.json"), rec)
	}
	if err == nil {
		err = os.Rename(tmp, s.bucketDir(name))
	}
	if err == nil {
		err = atomicfile.SyncDir(s.dir)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("objstore: create bucket %s: %w", name, err)
	}
	s.buckets[name] = &bucket{name: name, rec: rec, objects: map[string]*objectMeta{}}
	return nil
}

// DeleteBucket removes an empty bucket and any multipart upload still open
// in it. It fails with ErrNoSuchBucket or ErrBucketNotEmpty.
func (s *Store) DeleteBucket(name string) error {
	s.mu.Lock()
	b, err := s.bucketLocked(name)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	if len(b.objects) > 0 {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s holds %d objects", ErrBucketNotEmpty, name, len(b.objects))
	}
	trash := filepath.Join(s.trashDir(), name+"-"+randomHex(8))
	err = os.Rename(s.bucketDir(name), trash)
	if err == nil {
		delete(s.buckets, name)
		err = atomicfile.SyncDir(s.dir)
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("objstore: delete bucket %s: %w", name, err)
	}
	os.RemoveAll(trash)
	s.abortUploadsIn(name)
	return nil
}

// SetPublicRead makes the objects of a bucket readable without credentials
// (GET and HEAD only), as the seed's procedure does with a bucket policy, or
// private again.
func (s *Store) SetPublicRead(bucketName string, public bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.bucketLocked(bucketName)
	if err != nil {
		return err
	}
	rec := b.rec
	rec.PublicRead = public
	if err := writeJSONAtomic(filepath.Join(s.bucketDir(bucketName), "bucket.json"), rec); err != nil {
		return fmt.Errorf("objstore: set public read on %s: %w", bucketName, err)
	}
	b.rec = rec
	return nil
}

func (s *Store) isPublic(bucketName string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b := s.buckets[bucketName]
	return !s.closed && b != nil && b.rec.PublicRead
}

// BucketInfo describes a bucket.
type BucketInfo struct {
	Name       string
	Created    time.Time
	PublicRead bool
}

// Buckets lists the buckets by name.
func (s *Store) Buckets() ([]BucketInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	out := make([]BucketInfo, 0, len(s.buckets))
	for _, b := range s.buckets {
		out = append(out, BucketInfo{Name: b.name, Created: b.rec.Created, PublicRead: b.rec.PublicRead})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Put stores the bytes of r as bucket/key, replacing any object there, with
// content type DefaultContentType. The bytes are streamed to disk, never held
// in memory; the object becomes visible, atomically, only once all of r has
// been read and made durable. A CRC64NVME checksum is recorded as S3 does.
func (s *Store) Put(ctx context.Context, bucketName, key string, r io.Reader) (ObjectInfo, error) {
	m, err := s.put(ctx, bucketName, key, r, putOptions{size: -1})
	if err != nil {
		return ObjectInfo{}, err
	}
	return m.info(bucketName), nil
}

// putOptions is what an upload declares about its body.
type putOptions struct {
	contentType string
	userMeta    map[string]string
	size        int64  // declared size; -1 when unknown
	contentMD5  []byte // Content-MD5, decoded
	sha256Hex   string // X-Amz-Content-Sha256 when it is a hash
	checksums   checksumSpec
	trailers    func() map[string]string // aws-chunked trailers, read after the body
	// extraAlgorithm is computed even when the request sends no value for
	// it (the checksum algorithm of a multipart upload).
	extraAlgorithm string
}

func (s *Store) put(ctx context.Context, bucketName, key string, body io.Reader, o putOptions) (*objectMeta, error) {
	if err := ValidateBucketName(bucketName); err != nil {
		return nil, err
	}
	if err := validateKey(key); err != nil {
		return nil, err
	}
	if err := s.checkBucket(bucketName); err != nil {
		return nil, err
	}
	if o.size > MaxPutSize {
		return nil, ErrEntityTooLarge
	}
	sp, err := s.spool(ctx, body, o, MaxPutSize)
	if err != nil {
		return nil, err
	}
	defer sp.discard()
	m := &objectMeta{
		Key:          key,
		Size:         sp.size,
		ETag:         `"` + hex.EncodeToString(sp.md5) + `"`,
		SHA256:       hex.EncodeToString(sp.sha256),
		LastModified: s.now().Truncate(time.Second),
		ContentType:  o.contentType,
		UserMeta:     o.userMeta,
		Checksums:    sp.sums,
		ChecksumType: "FULL_OBJECT",
	}
	if m.ContentType == "" {
		m.ContentType = DefaultContentType
	}
	if err := s.commit(bucketName, m, sp); err != nil {
		return nil, err
	}
	return m, nil
}

func (s *Store) checkBucket(name string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, err := s.bucketLocked(name)
	return err
}

// spooled is a request body written to a temporary file.
type spooled struct {
	path        string
	size        int64
	md5, sha256 []byte
	sums        map[string]string // checksums by algorithm, base64
}

func (sp *spooled) discard() {
	if sp.path != "" {
		os.Remove(sp.path)
	}
}

// bodyReader reads a request body, stopping when ctx is done, and marks read
// failures as the client's (IncompleteBody) unless they already carry an S3
// answer.
type bodyReader struct {
	ctx context.Context
	r   io.Reader
}

func (b bodyReader) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		var ae *apiError
		if !errors.As(err, &ae) && !errors.Is(err, context.Canceled) {
			err = &apiError{status: http.StatusBadRequest, code: "IncompleteBody", msg: "reading the request body failed", err: err}
		}
	}
	return n, err
}

// spool streams body to a new file in .tmp while computing MD5, SHA-256 and
// the checksums o declares, fsyncs it, then checks every declared digest.
// The bytes are never all in memory.
func (s *Store) spool(ctx context.Context, body io.Reader, o putOptions, limit int64) (*spooled, error) {
	algs := o.checksums.algorithms()
	if o.extraAlgorithm != "" && !contains(algs, o.extraAlgorithm) {
		algs = append(algs, o.extraAlgorithm)
	}
	if len(algs) == 0 {
		algs = []string{"CRC64NVME"} // S3's default checksum of new objects
	}
	f, err := os.CreateTemp(s.tmpDir(), "body-*")
	if err != nil {
		return nil, fmt.Errorf("objstore: spooling the body: %w", err)
	}
	sp := &spooled{path: f.Name()}
	md5h, shah := md5.New(), sha256.New()
	hashes := map[string]hash.Hash{}
	writers := []io.Writer{f, md5h, shah}
	for _, a := range algs {
		h := checksumNew[a]()
		hashes[a] = h
		writers = append(writers, h)
	}
	var src io.Reader = bodyReader{ctx, body}
	if limit > 0 {
		src = io.LimitReader(src, limit+1)
	}
	sp.size, err = io.CopyBuffer(io.MultiWriter(writers...), src, make([]byte, 64<<10))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && limit > 0 && sp.size > limit {
		err = ErrEntityTooLarge
	}
	if err != nil {
		sp.discard()
		var ae *apiError
		if errors.As(err, &ae) || errors.Is(err, ErrEntityTooLarge) || errors.Is(err, context.Canceled) {
			return nil, err
		}
		return nil, fmt.Errorf("objstore: spooling the body: %w", err)
	}
	sp.md5, sp.sha256 = md5h.Sum(nil), shah.Sum(nil)
	sp.sums = map[string]string{}
	for a, h := range hashes {
		sp.sums[a] = base64.StdEncoding.EncodeToString(h.Sum(nil))
	}
	if err := o.check(sp); err != nil {
		sp.discard()
		return nil, err
	}
	return sp, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// check compares the spooled body with every digest the request declared.
func (o putOptions) check(sp *spooled) error {
	if o.size >= 0 && sp.size != o.size {
		return badRequest("IncompleteBody", "The body holds %d bytes where %d were declared.", sp.size, o.size)
	}
	if o.contentMD5 != nil && string(o.contentMD5) != string(sp.md5) {
		return badRequest("BadDigest", "The Content-MD5 you specified did not match what we received.")
	}
	if o.sha256Hex != "" && !strings.EqualFold(o.sha256Hex, hex.EncodeToString(sp.sha256)) {
		return badRequest("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
	}
	for alg, want := range o.checksums.expect {
		if sp.sums[alg] != want {
			return badRequest("BadDigest", "The %s you specified did not match the calculated checksum.", alg)
		}
	}
	if len(o.checksums.trailing) > 0 {
		var trailers map[string]string
		if o.trailers != nil {
			trailers = o.trailers()
		}
		for _, alg := range o.checksums.trailing {
			v, ok := trailers[checksumHeader(alg)]
			if !ok {
				return badRequest("MalformedTrailerError", "The request declares the trailer %s but its body does not carry it.", checksumHeader(alg))
			}
			if !validChecksum(alg, v) {
				return badRequest("InvalidRequest", "Value for %s trailing header is invalid.", checksumHeader(alg))
			}
			if sp.sums[alg] != v {
				return badRequest("BadDigest", "The %s you specified did not match the calculated checksum.", alg)
			}
		}
	}
	return nil
}

// commit makes a spooled object visible: data file renamed into the bucket
// directory and made durable first, then the metadata record (the commit
// point) written atomically; the replaced object's data is removed last.
func (s *Store) commit(bucketName string, m *objectMeta, sp *spooled) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.bucketLocked(bucketName)
	if err != nil {
		return err
	}
	dir := s.bucketDir(bucketName)
	m.Data = "d-" + keyID(m.Key) + "-" + randomHex(8)
	data := filepath.Join(dir, m.Data)
	if err := os.Rename(sp.path, data); err != nil {
		return fmt.Errorf("objstore: put %s/%s: %w", bucketName, m.Key, err)
	}
	sp.path = ""
	if err := atomicfile.SyncDir(dir); err != nil {
		os.Remove(data)
		return fmt.Errorf("objstore: put %s/%s: %w", bucketName, m.Key, err)
	}
	if err := writeJSONAtomic(filepath.Join(dir, metaFile(m.Key)), m); err != nil {
		// The record may or may not have replaced the old one; the next Open
		// collects whichever data file is unreferenced.
		return fmt.Errorf("objstore: put %s/%s: %w", bucketName, m.Key, err)
	}
	old := b.objects[m.Key]
	b.set(m)
	if old != nil {
		os.Remove(filepath.Join(dir, old.Data))
	}
	return nil
}

// Object is an open stored object. Reads see the object as it was when
// opened, even if it is replaced or deleted meanwhile. Close it when done.
type Object struct {
	*io.SectionReader
	f *os.File
}

// Close releases the object's file.
func (o *Object) Close() error { return o.f.Close() }

// content is what to serve the object from: its file itself when the
// object is the whole file, so that the copy to a plain TCP connection can
// be a sendfile(2); the section of the file otherwise.
func (o *Object) content() io.ReadSeeker {
	if st, err := o.f.Stat(); err == nil && st.Size() == o.Size() {
		if _, err := o.f.Seek(0, io.SeekStart); err == nil {
			return o.f
		}
	}
	return o.SectionReader
}

// Open opens an object for reading (io.ReadSeeker and io.ReaderAt). It
// fails with ErrNoSuchBucket or ErrNoSuchKey.
func (s *Store) Open(bucketName, key string) (*Object, ObjectInfo, error) {
	obj, m, err := s.open(bucketName, key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	return obj, m.info(bucketName), nil
}

func (s *Store) open(bucketName, key string) (*Object, *objectMeta, error) {
	// Hold the lock while opening the file: a concurrent overwrite removes
	// the old data file under the write lock.
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, err := s.metaLocked(bucketName, key)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(filepath.Join(s.bucketDir(bucketName), m.Data))
	if err != nil {
		return nil, nil, fmt.Errorf("objstore: open %s/%s: %w", bucketName, key, err)
	}
	return &Object{SectionReader: io.NewSectionReader(f, 0, m.Size), f: f}, m, nil
}

func (s *Store) metaLocked(bucketName, key string) (*objectMeta, error) {
	b, err := s.bucketLocked(bucketName)
	if err != nil {
		return nil, err
	}
	m := b.objects[key]
	if m == nil {
		return nil, fmt.Errorf("%w: %s/%s", ErrNoSuchKey, bucketName, clip(key))
	}
	return m, nil
}

// Stat describes an object. It fails with ErrNoSuchBucket or ErrNoSuchKey.
func (s *Store) Stat(bucketName, key string) (ObjectInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, err := s.metaLocked(bucketName, key)
	if err != nil {
		return ObjectInfo{}, err
	}
	return m.info(bucketName), nil
}

// Delete removes an object. It fails with ErrNoSuchBucket, or ErrNoSuchKey
// when there is nothing to delete (the HTTP API, like S3, answers 204 then).
func (s *Store) Delete(bucketName, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.metaLocked(bucketName, key)
	if err != nil {
		return err
	}
	dir := s.bucketDir(bucketName)
	if err := os.Remove(filepath.Join(dir, metaFile(key))); err != nil {
		return fmt.Errorf("objstore: delete %s/%s: %w", bucketName, key, err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		s.log.Error("objstore: delete not yet durable", "bucket", bucketName, "key", key, "err", err)
	}
	s.buckets[bucketName].remove(key)
	os.Remove(filepath.Join(dir, m.Data))
	return nil
}

// Presign returns a presigned GET URL for bucket/key, signed with the first
// configured credentials and valid for expires (at most 7 days). baseURL is
// how clients reach the store, e.g. "http://127.0.0.1:4566".
func (s *Store) Presign(baseURL, bucketName, key string, expires time.Duration) (string, error) {
	if len(s.creds) == 0 {
		return "", errors.New("objstore: presign: the store has no credentials to sign with")
	}
	if err := ValidateBucketName(bucketName); err != nil {
		return "", err
	}
	if err := validateKey(key); err != nil {
		return "", err
	}
	u, err := parseBaseURL(baseURL)
	if err != nil {
		return "", fmt.Errorf("objstore: presign: %w", err)
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/" + bucketName + "/" + key
	u.RawPath = ""
	signed, err := sigv4.Presign(s.creds[0], s.region, "s3", http.MethodGet, u.String(), s.now(), expires)
	if err != nil {
		return "", fmt.Errorf("objstore: presign %s/%s: %w", bucketName, key, err)
	}
	return signed, nil
}

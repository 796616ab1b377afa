package objstore

import (
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/awsfota/awsfota/cloud/sigv4"
)

// Handler returns the S3 REST API of the store, path style: GET / lists
// buckets, /bucket addresses a bucket and /bucket/key an object. Every
// request needs a SigV4 signature (header or presigned URL) whose scope
// service is "s3", except GET and HEAD of objects in a public bucket. The
// caller routes only S3 traffic here (see sigv4.ScopeService).
func (s *Store) Handler() http.Handler { return &handler{s: s} }

type handler struct{ s *Store }

// request is one request being served.
type request struct {
	w           http.ResponseWriter
	r           *http.Request
	id          string
	bucket, key string
	query       url.Values
	auth        *sigv4.Auth // nil for an anonymous request
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rq := &request{w: w, r: r, id: strings.ToUpper(randomHex(8))}
	w.Header().Set("X-Amz-Request-Id", rq.id)
	w.Header().Set("Server", "awsfota-objstore")
	path := strings.TrimPrefix(r.URL.Path, "/")
	rq.bucket, rq.key, _ = strings.Cut(path, "/")
	rq.query, _ = url.ParseQuery(r.URL.RawQuery) // keeps what parses; the signature covers the raw query
	// S3 refuses a key that is not UTF-8 whatever the operation, before it
	// looks at the signature.
	err := validateKeyEncoding(rq.key)
	if err == nil {
		err = h.authenticate(rq)
	}
	if err == nil {
		err = h.route(rq)
	}
	if err != nil {
		h.fail(rq, err)
	}
}

func (h *handler) authenticate(rq *request) error {
	if rq.r.Header.Get("Authorization") != "" && rq.r.Header.Get("X-Amz-Content-Sha256") == "" {
		// As S3 requires; it also keeps the verifier from buffering a body
		// to hash it.
		return badRequest("InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
	}
	a, err := h.s.verifier.Verify(rq.r)
	if err == nil {
		if a.Service != "s3" {
			return badRequest(sigv4.CodeAuthorizationHeaderMalformed,
				"The authorization header is malformed; incorrect service %q. This endpoint belongs to \"s3\".", clip(a.Service))
		}
		rq.auth = a
		return nil
	}
	var se *sigv4.Error
	if errors.As(err, &se) && se.Code == sigv4.CodeMissingAuthenticationToken {
		if h.anonymousAllowed(rq) {
			return nil
		}
		return newAPIError(http.StatusForbidden, "AccessDenied", "Access Denied")
	}
	return err
}

// anonymousAllowed: reads of objects in a public bucket, nothing else.
func (h *handler) anonymousAllowed(rq *request) bool {
	m := rq.r.Method
	return (m == http.MethodGet || m == http.MethodHead) && rq.bucket != "" && rq.key != "" &&
		!rq.query.Has("uploadId") && unsupportedSubresource(rq.query) == "" && h.s.isPublic(rq.bucket)
}

// Subresources of the S3 API this store does not implement; a request for
// one is answered 501 rather than mistaken for a plain object or bucket
// request.
var unsupportedSubresources = []string{
	"accelerate", "acl", "analytics", "attributes", "cors", "encryption", "intelligent-tiering",
	"inventory", "legal-hold", "lifecycle", "logging", "metrics", "notification", "object-lock",
	"ownershipControls", "policy", "policyStatus", "publicAccessBlock", "replication", "requestPayment",
	"restore", "retention", "select", "tagging", "torrent", "versioning", "versions", "website",
}

func unsupportedSubresource(q url.Values) string {
	for _, s := range unsupportedSubresources {
		if q.Has(s) {
			return s
		}
	}
	return ""
}

func notImplemented(what string) error {
	return newAPIError(http.StatusNotImplemented, "NotImplemented",
		"%s is not implemented by the awsfota local object store.", what)
}

func methodNotAllowed(rq *request) error {
	return newAPIError(http.StatusMethodNotAllowed, "MethodNotAllowed",
		"The specified method %s is not allowed against this resource.", rq.r.Method)
}

func (h *handler) route(rq *request) error {
	if sub := unsupportedSubresource(rq.query); sub != "" {
		return notImplemented("The ?" + sub + " subresource")
	}
	if v := rq.query.Get("versionId"); rq.query.Has("versionId") && v != "null" {
		return badRequest("InvalidArgument", "Invalid version id specified: this store does not version objects.")
	}
	m := rq.r.Method
	switch {
	case rq.bucket == "":
		if m == http.MethodGet {
			return h.listBuckets(rq)
		}
		return methodNotAllowed(rq)
	case rq.key == "":
		switch {
		case m == http.MethodPut:
			return h.createBucket(rq)
		case m == http.MethodHead:
			return h.headBucket(rq)
		case m == http.MethodDelete:
			return h.deleteBucket(rq)
		case m == http.MethodGet && rq.query.Has("location"):
			return h.bucketLocation(rq)
		case m == http.MethodGet && rq.query.Has("uploads"):
			return notImplemented("ListMultipartUploads")
		case m == http.MethodGet:
			return h.listObjects(rq)
		case m == http.MethodPost && rq.query.Has("delete"):
			return h.deleteObjects(rq)
		}
		return methodNotAllowed(rq)
	case rq.query.Has("uploadId"):
		switch m {
		case http.MethodPut:
			if rq.r.Header.Get("X-Amz-Copy-Source") != "" {
				return notImplemented("UploadPartCopy")
			}
			return h.uploadPart(rq)
		case http.MethodPost:
			return h.completeUpload(rq)
		case http.MethodDelete:
			return h.abortUpload(rq)
		case http.MethodGet:
			return notImplemented("ListParts")
		}
		return methodNotAllowed(rq)
	case rq.query.Has("uploads"):
		if m == http.MethodPost {
			return h.createUpload(rq)
		}
		return methodNotAllowed(rq)
	}
	switch m {
	case http.MethodPut:
		if rq.r.Header.Get("X-Amz-Copy-Source") != "" {
			return notImplemented("CopyObject")
		}
		return h.putObject(rq)
	case http.MethodGet, http.MethodHead:
		return h.getObject(rq)
	case http.MethodDelete:
		return h.deleteObject(rq)
	}
	return methodNotAllowed(rq)
}

// errorDocument is S3's XML error body.
type errorDocument struct {
	XMLName          xml.Name `xml:"Error"`
	Code             string
	Message          string
	Resource         string `xml:",omitempty"`
	RequestID        string `xml:"RequestId"`
	AWSAccessKeyID   string `xml:"AWSAccessKeyId,omitempty"`
	StringToSign     string `xml:",omitempty"`
	CanonicalRequest string `xml:",omitempty"`
}

func (h *handler) fail(rq *request, err error) {
	a := answerFor(err)
	if a.internal {
		h.s.log.Error("objstore: request failed", "method", rq.r.Method, "path", rq.r.URL.Path, "request_id", rq.id, "err", err)
	}
	writeError(rq.w, rq, a)
}

func writeError(w http.ResponseWriter, rq *request, a s3Answer) {
	// Drop what was set for the object: an error body must not be checked
	// against an object's checksum or taken for its content.
	hdr := w.Header()
	for k := range hdr {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-amz-checksum-") || strings.HasPrefix(lk, "x-amz-meta-") || strings.HasPrefix(lk, "x-amz-mp-") {
			hdr.Del(k)
		}
	}
	for _, k := range []string{"Content-Length", "ETag", "Last-Modified", "Accept-Ranges", "Content-Disposition", "Content-Encoding", "Content-Language", "Cache-Control", "Expires"} {
		hdr.Del(k)
	}
	if rq.r.Method == http.MethodHead {
		w.WriteHeader(a.status)
		return
	}
	doc := errorDocument{Code: a.code, Message: a.message, Resource: rq.r.URL.Path, RequestID: rq.id}
	if a.sig != nil && a.code == sigv4.CodeSignatureDoesNotMatch {
		doc.StringToSign, doc.CanonicalRequest = a.sig.StringToSign, a.sig.CanonicalRequest
	}
	hdr.Set("Content-Type", "application/xml")
	hdr.Del("X-Content-Type-Options")
	w.WriteHeader(a.status)
	body, _ := xml.Marshal(doc)
	io.WriteString(w, xml.Header)
	w.Write(body)
}

func writeXML(rq *request, status int, v any) error {
	body, err := xml.Marshal(v)
	if err != nil {
		return fmt.Errorf("objstore: encoding the response: %w", err)
	}
	rq.w.Header().Set("Content-Type", "application/xml")
	rq.w.WriteHeader(status)
	io.WriteString(rq.w, xml.Header)
	rq.w.Write(body)
	return nil
}

// s3Time formats times as S3's XML does.
const s3Time = "2006-01-02T15:04:05.000Z"

// ---- buckets ----

type listAllMyBucketsResult struct {
	XMLName xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListAllMyBucketsResult"`
	Owner   owner
	Buckets struct {
		Bucket []bucketEntry
	}
}

type owner struct {
	ID          string
	DisplayName string
}

var localOwner = owner{ID: "a1f07a10ca1c10d0a1f07a10ca1c10d0a1f07a10ca1c10d0a1f07a10ca1c10d0", DisplayName: "awsfota"}

type bucketEntry struct {
	Name         string
	CreationDate string
	BucketRegion string
}

func (h *handler) listBuckets(rq *request) error {
	buckets, err := h.s.Buckets()
	if err != nil {
		return err
	}
	var res listAllMyBucketsResult
	res.Owner = localOwner
	for _, b := range buckets {
		res.Buckets.Bucket = append(res.Buckets.Bucket, bucketEntry{Name: b.Name, CreationDate: b.Created.UTC().Format(s3Time), BucketRegion: h.s.region})
	}
	return writeXML(rq, http.StatusOK, res)
}

type createBucketConfiguration struct {
	LocationConstraint string
}

func (h *handler) createBucket(rq *request) error {
	body, err := io.ReadAll(io.LimitReader(rq.r.Body, 64<<10))
	if err != nil {
		return badRequest("IncompleteBody", "reading the request body failed: %v", err)
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		var cfg createBucketConfiguration
		if err := xml.Unmarshal(body, &cfg); err != nil {
			return badRequest("MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.")
		}
		if c := cfg.LocationConstraint; c != "" && c != h.s.region {
			return badRequest("IllegalLocationConstraintException",
				"The %s location constraint is incompatible for the region specific endpoint this request was sent to (%s).", clip(c), h.s.region)
		}
	}
	if err := h.s.CreateBucket(rq.bucket); err != nil {
		return err
	}
	rq.w.Header().Set("Location", "/"+rq.bucket)
	rq.w.WriteHeader(http.StatusOK)
	return nil
}

func (h *handler) headBucket(rq *request) error {
	if err := h.s.checkBucket(rq.bucket); err != nil {
		return err
	}
	rq.w.Header().Set("X-Amz-Bucket-Region", h.s.region)
	rq.w.WriteHeader(http.StatusOK)
	return nil
}

func (h *handler) deleteBucket(rq *request) error {
	if err := h.s.DeleteBucket(rq.bucket); err != nil {
		return err
	}
	rq.w.WriteHeader(http.StatusNoContent)
	return nil
}

type locationConstraint struct {
	XMLName xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ LocationConstraint"`
	Region  string   `xml:",chardata"`
}

func (h *handler) bucketLocation(rq *request) error {
	if err := h.s.checkBucket(rq.bucket); err != nil {
		return err
	}
	loc := h.s.region
	if loc == "us-east-1" {
		loc = "" // as S3 answers for us-east-1
	}
	return writeXML(rq, http.StatusOK, locationConstraint{Region: loc})
}

// ---- objects ----

// userMetadata collects x-amz-meta-* headers.
func userMetadata(h http.Header) (map[string]string, error) {
	var meta map[string]string
	total := 0
	for k, vs := range h {
		name, ok := strings.CutPrefix(strings.ToLower(k), "x-amz-meta-")
		if !ok {
			continue
		}
		if meta == nil {
			meta = map[string]string{}
		}
		v := strings.Join(vs, ",")
		meta[name] = v
		total += len(name) + len(v)
	}
	if total > 2048 {
		return nil, badRequest("MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size (2 KB).")
	}
	return meta, nil
}

// requestBody prepares the body of a PutObject or UploadPart for storing:
// it decodes aws-chunked framing and collects every digest the request
// declares (Content-MD5, X-Amz-Content-Sha256, x-amz-checksum-* headers and
// trailers) for spool to check.
func (h *handler) requestBody(rq *request) (io.Reader, putOptions, error) {
	r := rq.r
	o := putOptions{size: -1}
	spec, err := parseChecksumHeaders(r.Header)
	if err != nil {
		return nil, o, err
	}
	o.checksums = spec
	if v := r.Header.Get("Content-MD5"); v != "" {
		sum, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(sum) != 16 {
			return nil, o, badRequest("InvalidDigest", "The Content-MD5 you specified is not valid.")
		}
		o.contentMD5 = sum
	}
	payload := sigv4.UnsignedPayload
	if rq.auth != nil {
		payload = rq.auth.PayloadHash
	}
	chunked := strings.Contains(strings.ToLower(strings.Join(r.Header.Values("Content-Encoding"), ",")), "aws-chunked")
	switch payload {
	case sigv4.StreamingUnsignedPayloadTrailer, sigv4.StreamingPayload, sigv4.StreamingPayloadTrailer:
		decoded, err := strconv.ParseInt(r.Header.Get("X-Amz-Decoded-Content-Length"), 10, 64)
		if err != nil || decoded < 0 {
			return nil, o, newAPIError(http.StatusLengthRequired, "MissingContentLength",
				"An aws-chunked body needs the x-amz-decoded-content-length header.")
		}
		if decoded > MaxPutSize {
			return nil, o, ErrEntityTooLarge
		}
		var signer *sigv4.ChunkSigner
		if payload != sigv4.StreamingUnsignedPayloadTrailer {
			signer = rq.auth.ChunkSigner()
		}
		trailing := payload != sigv4.StreamingPayload
		if !trailing && len(spec.trailing) > 0 {
			return nil, o, badRequest("InvalidRequest", "x-amz-trailer needs the payload type %s.", sigv4.StreamingPayloadTrailer)
		}
		cr := newChunkedReader(r.Body, decoded, signer, trailing)
		o.size, o.trailers = decoded, cr.Trailers
		return cr, o, nil
	}
	if chunked {
		return nil, o, badRequest("InvalidRequest", "Content-Encoding aws-chunked needs x-amz-content-sha256 set to a STREAMING- payload type.")
	}
	if len(spec.trailing) > 0 {
		return nil, o, badRequest("InvalidRequest", "x-amz-trailer is only valid with an aws-chunked body.")
	}
	if r.ContentLength < 0 {
		return nil, o, newAPIError(http.StatusLengthRequired, "MissingContentLength", "You must provide the Content-Length HTTP header.")
	}
	if r.ContentLength > MaxPutSize {
		return nil, o, ErrEntityTooLarge
	}
	if payload != sigv4.UnsignedPayload {
		o.sha256Hex = payload
	}
	o.size = r.ContentLength
	return r.Body, o, nil
}

// setChecksumHeaders announces an object's checksums.
func setChecksumHeaders(hdr http.Header, sums map[string]string, typ string) {
	for alg, v := range sums {
		hdr.Set(checksumHeader(alg), v)
	}
	if len(sums) > 0 && typ != "" {
		hdr.Set("X-Amz-Checksum-Type", typ)
	}
}

func (h *handler) putObject(rq *request) error {
	body, o, err := h.requestBody(rq)
	if err != nil {
		return err
	}
	o.contentType = rq.r.Header.Get("Content-Type")
	if o.userMeta, err = userMetadata(rq.r.Header); err != nil {
		return err
	}
	m, err := h.s.put(rq.r.Context(), rq.bucket, rq.key, body, o)
	if err != nil {
		return err
	}
	rq.w.Header().Set("ETag", m.ETag)
	setChecksumHeaders(rq.w.Header(), m.Checksums, m.ChecksumType)
	rq.w.WriteHeader(http.StatusOK)
	return nil
}

// Query parameters of a signed GetObject that override response headers.
var responseOverrides = map[string]string{
	"response-content-type":        "Content-Type",
	"response-content-language":    "Content-Language",
	"response-expires":             "Expires",
	"response-cache-control":       "Cache-Control",
	"response-content-disposition": "Content-Disposition",
	"response-content-encoding":    "Content-Encoding",
}

func (h *handler) getObject(rq *request) error {
	r := rq.r
	partNumber := 0
	if v := rq.query.Get("partNumber"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxParts {
			return badRequest("InvalidArgument", "Part number must be an integer between 1 and %d, inclusive.", MaxParts)
		}
		if r.Header.Get("Range") != "" {
			return badRequest("InvalidRequest", "Cannot specify both Range header and partNumber query parameter.")
		}
		partNumber = n
	}
	obj, m, err := h.s.open(rq.bucket, rq.key)
	if err != nil {
		return err
	}
	defer obj.Close()

	hdr := rq.w.Header()
	hdr.Set("ETag", m.ETag)
	hdr.Set("Content-Type", m.ContentType)
	hdr.Set("Accept-Ranges", "bytes")
	names := make([]string, 0, len(m.UserMeta))
	for k := range m.UserMeta {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		hdr.Set("X-Amz-Meta-"+k, m.UserMeta[k])
	}
	if rq.auth != nil {
		for q, header := range responseOverrides {
			if v := rq.query.Get(q); v != "" {
				hdr.Set(header, v)
			}
		}
	}
	if partNumber > 0 {
		start, length, ok := m.partRange(partNumber)
		if !ok {
			return newAPIError(http.StatusRequestedRangeNotSatisfiable, "InvalidPartNumber", "The requested partnumber is not satisfiable.")
		}
		if len(m.Parts) > 0 {
			hdr.Set("X-Amz-Mp-Parts-Count", strconv.Itoa(len(m.Parts)))
		}
		if m.Size > 0 {
			// A part is a range; let ServeContent answer 206 with its
			// Content-Range and evaluate the preconditions.
			r = r.Clone(r.Context())
			r.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", start, start+length-1))
			r.Header.Del("If-Range")
		}
	} else if ignore, unsatisfiable := rangeRule(r.Header.Get("Range")); unsatisfiable {
		hdr.Set("Content-Range", fmt.Sprintf("bytes */%d", m.Size))
		return newAPIError(http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "The requested range is not satisfiable")
	} else if ignore {
		// S3 serves no multipart/byteranges: the whole object, 200.
		r = r.Clone(r.Context())
		r.Header.Del("Range")
	}
	if partNumber == 0 && r.Header.Get("Range") == "" && strings.EqualFold(r.Header.Get("X-Amz-Checksum-Mode"), "ENABLED") {
		// Checksums describe the whole object: only a whole-object answer
		// may carry them, or the SDK would check a range against them.
		setChecksumHeaders(hdr, m.Checksums, m.ChecksumType)
	}
	http.ServeContent(&serveWriter{ResponseWriter: rq.w, rq: rq}, r, "", m.LastModified, obj.content())
	return nil
}

// rangeRule says where S3 answers a Range header otherwise than
// http.ServeContent: it ignores a request for several ranges (200 with the
// whole object, not multipart/byteranges), and an empty suffix range
// ("bytes=-0") is unsatisfiable (416, where ServeContent answers 206 with
// an impossible Content-Range).
func rangeRule(h string) (ignore, unsatisfiable bool) {
	spec, ok := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !ok {
		return false, false
	}
	if strings.Contains(spec, ",") {
		return true, false
	}
	suffix, ok := strings.CutPrefix(strings.TrimSpace(spec), "-")
	if !ok || suffix == "" {
		return false, false
	}
	for _, c := range suffix {
		if c != '0' {
			return false, false
		}
	}
	return false, true
}

// serveWriter turns the plain-text errors of http.ServeContent (failed
// preconditions, unsatisfiable ranges) into S3 XML errors.
type serveWriter struct {
	http.ResponseWriter
	rq         *request
	suppressed bool
}

func (w *serveWriter) WriteHeader(code int) {
	switch code {
	case http.StatusPreconditionFailed:
		w.suppressed = true
		writeError(w.ResponseWriter, w.rq, s3Answer{status: code, code: "PreconditionFailed", message: "At least one of the pre-conditions you specified did not hold"})
	case http.StatusRequestedRangeNotSatisfiable:
		w.suppressed = true
		writeError(w.ResponseWriter, w.rq, s3Answer{status: code, code: "InvalidRange", message: "The requested range is not satisfiable"})
	default:
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *serveWriter) Write(p []byte) (int, error) {
	if w.suppressed {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

func (w *serveWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ReadFrom hands ServeContent's copy of the body to the connection's
// ReadFrom: sendfile(2) from the object's file over plain TCP, net/http's
// pooled buffer over TLS, instead of a new 32 KiB buffer per request (a
// fleet downloading at once would allocate one each).
func (w *serveWriter) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if w.suppressed || !ok {
		return io.Copy(writerOnly{w}, r)
	}
	return rf.ReadFrom(r)
}

// writerOnly hides a writer's ReadFrom from io.Copy.
type writerOnly struct{ io.Writer }

func (h *handler) deleteObject(rq *request) error {
	if err := h.s.Delete(rq.bucket, rq.key); err != nil && !errors.Is(err, ErrNoSuchKey) {
		return err
	}
	rq.w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteRequest is the body of DeleteObjects.
type deleteRequest struct {
	Quiet   bool
	Objects []struct {
		Key       string
		VersionID string `xml:"VersionId"`
	} `xml:"Object"`
}

type deleteResult struct {
	XMLName xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ DeleteResult"`
	Deleted []struct{ Key string }
	Error   []deleteError
}

type deleteError struct {
	Key, Code, Message string
}

const (
	maxDeleteKeys = 1000
	maxDeleteBody = 2 << 20 // 1000 keys of 1024 bytes, escaped, fit
)

// deleteObjects answers DeleteObjects (POST /bucket?delete), which the AWS
// CLI uses for "s3 rm --recursive". Like S3 it wants the body protected by
// Content-MD5 or a checksum; the body goes through the same checks as an
// upload's, spooled to disk.
func (h *handler) deleteObjects(rq *request) error {
	if err := h.s.checkBucket(rq.bucket); err != nil {
		return err
	}
	body, o, err := h.requestBody(rq)
	if err != nil {
		return err
	}
	if o.contentMD5 == nil && len(o.checksums.algorithms()) == 0 {
		return badRequest("InvalidRequest", "Missing required header for this request: Content-MD5 (or an x-amz-checksum- header).")
	}
	sp, err := h.s.spool(rq.r.Context(), body, o, maxDeleteBody)
	if errors.Is(err, ErrEntityTooLarge) {
		return badRequest("MalformedXML", "The DeleteObjects request body is larger than %d bytes.", maxDeleteBody)
	}
	if err != nil {
		return err
	}
	defer sp.discard()
	data, err := os.ReadFile(sp.path)
	if err != nil {
		return fmt.Errorf("objstore: delete objects: %w", err)
	}
	var req deleteRequest
	if xml.Unmarshal(data, &req) != nil || len(req.Objects) == 0 || len(req.Objects) > maxDeleteKeys {
		return badRequest("MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema (1 to %d Object elements).", maxDeleteKeys)
	}
	var res deleteResult
	for _, obj := range req.Objects {
		if obj.VersionID != "" && obj.VersionID != "null" {
			res.Error = append(res.Error, deleteError{obj.Key, "NoSuchVersion", "The specified version does not exist."})
			continue
		}
		switch err := h.s.Delete(rq.bucket, obj.Key); {
		case err == nil || errors.Is(err, ErrNoSuchKey):
			if !req.Quiet {
				res.Deleted = append(res.Deleted, struct{ Key string }{obj.Key})
			}
		default:
			a := answerFor(err)
			if a.internal {
				h.s.log.Error("objstore: delete objects", "bucket", rq.bucket, "key", obj.Key, "err", err)
			}
			res.Error = append(res.Error, deleteError{obj.Key, a.code, a.message})
		}
	}
	return writeXML(rq, http.StatusOK, res)
}

// ---- multipart ----

type initiateMultipartUploadResult struct {
	XMLName  xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ InitiateMultipartUploadResult"`
	Bucket   string
	Key      string
	UploadID string `xml:"UploadId"`
}

func (h *handler) createUpload(rq *request) error {
	alg := strings.ToUpper(rq.r.Header.Get("X-Amz-Checksum-Algorithm"))
	typ, err := resolveChecksumType(alg, strings.ToUpper(rq.r.Header.Get("X-Amz-Checksum-Type")))
	if err != nil {
		return err
	}
	meta, err := userMetadata(rq.r.Header)
	if err != nil {
		return err
	}
	id, err := h.s.createUpload(rq.bucket, rq.key, uploadRecord{
		ContentType: rq.r.Header.Get("Content-Type"), UserMeta: meta, ChecksumAlgorithm: alg, ChecksumType: typ,
	})
	if err != nil {
		return err
	}
	if alg != "" {
		rq.w.Header().Set("X-Amz-Checksum-Algorithm", alg)
		rq.w.Header().Set("X-Amz-Checksum-Type", typ)
	}
	return writeXML(rq, http.StatusOK, initiateMultipartUploadResult{Bucket: rq.bucket, Key: rq.key, UploadID: id})
}

func (h *handler) uploadPart(rq *request) error {
	n, err := strconv.Atoi(rq.query.Get("partNumber"))
	if err != nil || n < 1 || n > MaxParts {
		return badRequest("InvalidArgument", "Part number must be an integer between 1 and %d, inclusive.", MaxParts)
	}
	body, o, err := h.requestBody(rq)
	if err != nil {
		return err
	}
	p, err := h.s.uploadPart(rq.r.Context(), rq.query.Get("uploadId"), rq.bucket, rq.key, n, body, o)
	if err != nil {
		return err
	}
	rq.w.Header().Set("ETag", p.etag())
	if p.Checksum != "" {
		rq.w.Header().Set(checksumHeader(p.Algorithm), p.Checksum)
	}
	rq.w.WriteHeader(http.StatusOK)
	return nil
}

// completeMultipartUpload is the request body of CompleteMultipartUpload.
type completeMultipartUpload struct {
	Parts []struct {
		PartNumber        int
		ETag              string
		ChecksumCRC32     string
		ChecksumCRC32C    string
		ChecksumCRC64NVME string
		ChecksumSHA1      string
		ChecksumSHA256    string
		ChecksumSHA512    string
	} `xml:"Part"`
}

type completeMultipartUploadResult struct {
	XMLName           xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ CompleteMultipartUploadResult"`
	Location          string
	Bucket            string
	Key               string
	ETag              string
	ChecksumCRC32     string `xml:",omitempty"`
	ChecksumCRC32C    string `xml:",omitempty"`
	ChecksumCRC64NVME string `xml:",omitempty"`
	ChecksumSHA1      string `xml:",omitempty"`
	ChecksumSHA256    string `xml:",omitempty"`
	ChecksumSHA512    string `xml:",omitempty"`
	ChecksumType      string `xml:",omitempty"`
}

const maxCompleteBody = 8 << 20 // 10000 parts with every checksum fit easily

func (h *handler) completeUpload(rq *request) error {
	data, err := io.ReadAll(io.LimitReader(rq.r.Body, maxCompleteBody+1))
	if err != nil {
		return badRequest("IncompleteBody", "reading the request body failed: %v", err)
	}
	var body completeMultipartUpload
	if len(data) > maxCompleteBody || xml.Unmarshal(data, &body) != nil {
		return badRequest("MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.")
	}
	req := completeRequest{objectSize: -1, checksums: map[string]string{}}
	if v := rq.r.Header.Get("X-Amz-Mp-Object-Size"); v != "" {
		if req.objectSize, err = strconv.ParseInt(v, 10, 64); err != nil || req.objectSize < 0 {
			return badRequest("InvalidArgument", "x-amz-mp-object-size must be a non-negative integer.")
		}
	}
	spec, err := parseChecksumHeaders(rq.r.Header)
	if err != nil {
		return err
	}
	req.checksums = spec.expect
	for _, p := range body.Parts {
		cp := completedPart{Number: p.PartNumber, ETag: p.ETag, Checksums: map[string]string{}}
		for alg, v := range map[string]string{"CRC32": p.ChecksumCRC32, "CRC32C": p.ChecksumCRC32C, "CRC64NVME": p.ChecksumCRC64NVME,
			"SHA1": p.ChecksumSHA1, "SHA256": p.ChecksumSHA256, "SHA512": p.ChecksumSHA512} {
			if v != "" {
				cp.Checksums[alg] = v
			}
		}
		req.parts = append(req.parts, cp)
	}
	m, err := h.s.completeUpload(rq.r.Context(), rq.query.Get("uploadId"), rq.bucket, rq.key, req)
	if err != nil {
		return err
	}
	res := completeMultipartUploadResult{
		Location: h.s.base(rq.r) + "/" + rq.bucket + "/" + s3Escape(rq.key, false),
		Bucket:   rq.bucket, Key: rq.key, ETag: m.ETag, ChecksumType: m.ChecksumType,
	}
	for alg, v := range m.Checksums {
		switch alg {
		case "CRC32":
			res.ChecksumCRC32 = v
		case "CRC32C":
			res.ChecksumCRC32C = v
		case "CRC64NVME":
			res.ChecksumCRC64NVME = v
		case "SHA1":
			res.ChecksumSHA1 = v
		case "SHA256":
			res.ChecksumSHA256 = v
		case "SHA512":
			res.ChecksumSHA512 = v
		}
	}
	return writeXML(rq, http.StatusOK, res)
}

func (h *handler) abortUpload(rq *request) error {
	if err := h.s.abortUpload(rq.query.Get("uploadId"), rq.bucket, rq.key); err != nil {
		return err
	}
	rq.w.WriteHeader(http.StatusNoContent)
	return nil
}

// base is the scheme://host clients use to reach the store.
func (s *Store) base(r *http.Request) string {
	if s.baseURL != nil {
		return strings.TrimRight(s.baseURL(r), "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("base URL %q must be scheme://host[:port][/path]", raw)
	}
	return u, nil
}

// s3Escape percent-encodes every byte but the unreserved characters (and
// '/' unless escapeSlash), as S3 does for keys in URLs and for
// encoding-type=url listings.
func s3Escape(s string, escapeSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' || (c == '/' && !escapeSlash) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

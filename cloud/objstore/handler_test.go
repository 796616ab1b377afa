package objstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/awsfota/awsfota/cloud/sigv4"
)

// signedDo sends a request signed by sigv4.Sign (for cases no SDK call
// produces); mod runs after signing.
func (e *env) signedDo(method, path, body, service, payload string, header map[string]string, mod func(*http.Request)) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body == "" {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if err := sigv4.Sign(req, testCreds, testRegion, service, e.clock.Now(), payload); err != nil {
		e.t.Fatal(err)
	}
	if mod != nil {
		mod(req)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp, readAll(e.t, resp.Body)
}

func TestHandlerRefusals(t *testing.T) {
	e := newEnv(t, false)
	if err := e.store.CreateBucket("refusals"); err != nil {
		t.Fatal(err)
	}
	mustPut(t, e.store, "refusals", "obj", []byte("content"))
	cases := []struct {
		name, method, path, body, service, payload string
		header                                     map[string]string
		mod                                        func(*http.Request)
		status                                     int
		code                                       string
	}{
		{name: "ok control", method: "GET", path: "/refusals/obj", service: "s3", status: 200},
		{name: "no content sha256", method: "PUT", path: "/refusals/x", body: "abc", service: "s3",
			mod: func(r *http.Request) { r.Header.Del("X-Amz-Content-Sha256") }, status: 400, code: "InvalidRequest"},
		{name: "other service's signature", method: "GET", path: "/refusals/obj", service: "iot", payload: sigv4.UnsignedPayload,
			header: map[string]string{"X-Amz-Content-Sha256": sigv4.UnsignedPayload}, status: 400, code: "AuthorizationHeaderMalformed"},
		{name: "body does not match its hash", method: "PUT", path: "/refusals/x", body: "abc", service: "s3",
			payload: sigv4.EmptyPayloadHash, status: 400, code: "XAmzContentSHA256Mismatch"},
		{name: "unsigned payload accepted", method: "PUT", path: "/refusals/y", body: "abc", service: "s3", payload: sigv4.UnsignedPayload, status: 200},
		{name: "malformed content-md5", method: "PUT", path: "/refusals/x", body: "abc", service: "s3",
			header: map[string]string{"Content-MD5": "nope"}, status: 400, code: "InvalidDigest"},
		{name: "unknown checksum algorithm", method: "PUT", path: "/refusals/x", body: "abc", service: "s3",
			header: map[string]string{"X-Amz-Checksum-Md4": "AAAA"}, status: 400, code: "InvalidRequest"},
		{name: "malformed checksum", method: "PUT", path: "/refusals/x", body: "abc", service: "s3",
			header: map[string]string{"X-Amz-Checksum-Crc32": "not base64"}, status: 400, code: "InvalidRequest"},
		{name: "aws-chunked without streaming payload", method: "PUT", path: "/refusals/x", body: "abc", service: "s3",
			header: map[string]string{"Content-Encoding": "aws-chunked"}, status: 400, code: "InvalidRequest"},
		{name: "streaming without decoded length", method: "PUT", path: "/refusals/x", body: "0\r\n\r\n", service: "s3",
			payload: sigv4.StreamingUnsignedPayloadTrailer, header: map[string]string{"Content-Encoding": "aws-chunked"}, status: 411, code: "MissingContentLength"},
		{name: "metadata too large", method: "PUT", path: "/refusals/x", body: "abc", service: "s3",
			header: map[string]string{"X-Amz-Meta-Big": strings.Repeat("m", 3000)}, status: 400, code: "MetadataTooLarge"},
		{name: "acl", method: "GET", path: "/refusals/obj?acl", service: "s3", status: 501, code: "NotImplemented"},
		{name: "copy", method: "PUT", path: "/refusals/copy", service: "s3",
			header: map[string]string{"X-Amz-Copy-Source": "/refusals/obj"}, status: 501, code: "NotImplemented"},
		{name: "version", method: "GET", path: "/refusals/obj?versionId=3", service: "s3", status: 400, code: "InvalidArgument"},
		{name: "post to object", method: "POST", path: "/refusals/obj", service: "s3", status: 405, code: "MethodNotAllowed"},
		{name: "bad part number", method: "GET", path: "/refusals/obj?partNumber=0", service: "s3", status: 400, code: "InvalidArgument"},
		{name: "part past the end", method: "GET", path: "/refusals/obj?partNumber=2", service: "s3", status: 416, code: "InvalidPartNumber"},
		{name: "range with part", method: "GET", path: "/refusals/obj?partNumber=1", service: "s3",
			header: map[string]string{"Range": "bytes=0-1"}, status: 400, code: "InvalidRequest"},
		{name: "put key not UTF-8", method: "PUT", path: "/refusals/h%FF", body: "abc", service: "s3", status: 400, code: "InvalidURI"},
		{name: "get key not UTF-8", method: "GET", path: "/refusals/h%FF", service: "s3", status: 400, code: "InvalidURI"},
		{name: "upload key not UTF-8", method: "POST", path: "/refusals/%C3%28?uploads", service: "s3", status: 400, code: "InvalidURI"},
		{name: "empty suffix range", method: "GET", path: "/refusals/obj", service: "s3",
			header: map[string]string{"Range": "bytes=-0"}, status: 416, code: "InvalidRange"},
		{name: "unknown upload", method: "DELETE", path: "/refusals/obj?uploadId=0123456789abcdef0123456789abcdef", service: "s3", status: 404, code: "NoSuchUpload"},
		{name: "hostile upload id", method: "DELETE", path: "/refusals/obj?uploadId=..%2F..%2Fx", service: "s3", status: 404, code: "NoSuchUpload"},
		{name: "bad max-keys", method: "GET", path: "/refusals?list-type=2&max-keys=x", service: "s3", status: 400, code: "InvalidArgument"},
		{name: "bad continuation token", method: "GET", path: "/refusals?list-type=2&continuation-token=%21", service: "s3", status: 400, code: "InvalidArgument"},
		{name: "other location constraint", method: "PUT", path: "/new-bucket", body: "<CreateBucketConfiguration><LocationConstraint>us-west-2</LocationConstraint></CreateBucketConfiguration>",
			service: "s3", status: 400, code: "IllegalLocationConstraintException"},
		{name: "date changed after signing", method: "GET", path: "/refusals/obj", service: "s3",
			mod: func(r *http.Request) { r.Header.Set("X-Amz-Date", "20000101T000000Z") }, status: 400, code: "AuthorizationHeaderMalformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.signedDo(tc.method, tc.path, tc.body, tc.service, tc.payload, tc.header, tc.mod)
			if resp.StatusCode != tc.status || errorCodeOf(body) != tc.code {
				t.Fatalf("%s %s: %s %s", tc.method, tc.path, resp.Status, body)
			}
		})
	}
	if info, err := e.store.Stat("refusals", "obj"); err != nil || info.Size != 7 {
		t.Errorf("object changed by refused requests: %+v %v", info, err)
	}
	if _, err := e.store.Stat("refusals", "x"); !errors.Is(err, ErrNoSuchKey) {
		t.Errorf("a refused upload was stored: %v", err)
	}
}

// TestSDKMultipartRules drives the multipart calls one by one with the SDK
// and checks S3's rules: part order, minimum size, ETags, abort.
func TestSDKMultipartRules(t *testing.T) {
	e := newEnv(t, true)
	c := e.client(testCreds)
	cx := ctx(t)
	if err := e.store.CreateBucket("parts"); err != nil {
		t.Fatal(err)
	}
	create := func() *string {
		out, err := c.CreateMultipartUpload(cx, &s3.CreateMultipartUploadInput{Bucket: aws.String("parts"), Key: aws.String("obj"),
			ContentType: aws.String("application/x-fw"), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c, ChecksumType: types.ChecksumTypeFullObject})
		if err != nil {
			t.Fatalf("CreateMultipartUpload: %v", err)
		}
		return out.UploadId
	}
	upload := func(id *string, n int32, data []byte) types.CompletedPart {
		out, err := c.UploadPart(cx, &s3.UploadPartInput{Bucket: aws.String("parts"), Key: aws.String("obj"), UploadId: id,
			PartNumber: aws.Int32(n), Body: bytes.NewReader(data), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
		if err != nil {
			t.Fatalf("UploadPart %d: %v", n, err)
		}
		return types.CompletedPart{PartNumber: aws.Int32(n), ETag: out.ETag, ChecksumCRC32C: out.ChecksumCRC32C}
	}
	complete := func(id *string, parts ...types.CompletedPart) (*s3.CompleteMultipartUploadOutput, error) {
		return c.CompleteMultipartUpload(cx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("parts"), Key: aws.String("obj"), UploadId: id,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	}
	p1, p2 := randomBytes(21, MinPartSize), randomBytes(22, 1000)

	id := create()
	a, b := upload(id, 1, p1), upload(id, 2, p2)
	small := upload(id, 3, []byte("tiny"))
	_, err := complete(id, b, a)
	wantAPIError(t, err, "InvalidPartOrder")
	_, err = complete(id, a, b, small)
	wantAPIError(t, err, "EntityTooSmall")
	bad := a
	bad.ETag = aws.String(`"00000000000000000000000000000000"`)
	_, err = complete(id, bad, b)
	wantAPIError(t, err, "InvalidPart")
	_, err = complete(id, a, types.CompletedPart{PartNumber: aws.Int32(7), ETag: b.ETag})
	wantAPIError(t, err, "InvalidPart")
	_, err = complete(id)
	wantAPIError(t, err, "MalformedXML")
	a = upload(id, 1, p1) // re-uploading a part replaces it
	out, err := complete(id, a, b)
	if err != nil {
		t.Fatalf("CompleteMultipartUpload: %v", err)
	}
	whole := append(append([]byte(nil), p1...), p2...)
	if !strings.HasSuffix(aws.ToString(out.ETag), `-2"`) || out.ChecksumType != types.ChecksumTypeFullObject || out.ChecksumCRC32C == nil ||
		!strings.HasSuffix(aws.ToString(out.Location), "/parts/obj") {
		t.Errorf("CompleteMultipartUpload output %+v", out)
	}
	got, err := c.GetObject(cx, &s3.GetObjectInput{Bucket: aws.String("parts"), Key: aws.String("obj")})
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, got.Body)
	got.Body.Close()
	// The full-object CRC32C was validated by the SDK while reading.
	if !bytes.Equal(body, whole) || aws.ToString(got.ContentType) != "application/x-fw" || aws.ToString(got.ChecksumCRC32C) != aws.ToString(out.ChecksumCRC32C) {
		t.Errorf("GetObject after multipart: %d bytes, %s", len(body), aws.ToString(got.ContentType))
	}
	// Part 2 alone, as the transfer manager fetches parts.
	part, err := c.GetObject(cx, &s3.GetObjectInput{Bucket: aws.String("parts"), Key: aws.String("obj"), PartNumber: aws.Int32(2)})
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, part.Body); !bytes.Equal(b, p2) || aws.ToInt32(part.PartsCount) != 2 {
		t.Errorf("part 2: %d bytes, PartsCount %d, Content-Range %s", len(b), aws.ToInt32(part.PartsCount), aws.ToString(part.ContentRange))
	}
	part.Body.Close()
	_, err = complete(id, a, b)
	wantAPIError(t, err, "NoSuchUpload")

	id = create()
	upload(id, 1, p2)
	if _, err := c.AbortMultipartUpload(cx, &s3.AbortMultipartUploadInput{Bucket: aws.String("parts"), Key: aws.String("obj"), UploadId: id}); err != nil {
		t.Fatalf("AbortMultipartUpload: %v", err)
	}
	_, err = c.UploadPart(cx, &s3.UploadPartInput{Bucket: aws.String("parts"), Key: aws.String("obj"), UploadId: id, PartNumber: aws.Int32(2), Body: bytes.NewReader(p2)})
	wantAPIError(t, err, "NoSuchUpload")
	_, err = c.CreateMultipartUpload(cx, &s3.CreateMultipartUploadInput{Bucket: aws.String("parts"), Key: aws.String("k"),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256, ChecksumType: types.ChecksumTypeFullObject})
	wantAPIError(t, err, "InvalidRequest")

	// An upload left open when its bucket goes is discarded with it.
	id = create()
	if err := e.store.Delete("parts", "obj"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteBucket(cx, &s3.DeleteBucketInput{Bucket: aws.String("parts")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.loadUpload(aws.ToString(id), "parts", "obj"); !errors.Is(err, ErrNoSuchUpload) {
		t.Errorf("upload survived its bucket: %v", err)
	}
}

// TestSDKSmallAndEmptyObjects covers what the bigger tests do not: an empty
// object, an object stored through the Go API (default CRC64NVME checksum,
// validated by the SDK on read), DeleteObjects, and single-part and empty
// objects through the transfer manager.
func TestSDKSmallAndEmptyObjects(t *testing.T) {
	e := newEnv(t, true)
	c := e.client(testCreds)
	cx := ctx(t)
	if err := e.store.CreateBucket("small"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutObject(cx, &s3.PutObjectInput{Bucket: aws.String("small"), Key: aws.String("empty"), Body: bytes.NewReader(nil)}); err != nil {
		t.Fatalf("PutObject empty: %v", err)
	}
	got, err := c.GetObject(cx, &s3.GetObjectInput{Bucket: aws.String("small"), Key: aws.String("empty")})
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, got.Body); len(b) != 0 || aws.ToString(got.ETag) != quotedMD5(nil) {
		t.Errorf("empty object: %d bytes, ETag %s", len(b), aws.ToString(got.ETag))
	}
	got.Body.Close()

	data := randomBytes(5, 300_000)
	mustPut(t, e.store, "small", "go-api.bin", data)
	mustPut(t, e.store, "small", "copy-1", data)
	got, err = c.GetObject(cx, &s3.GetObjectInput{Bucket: aws.String("small"), Key: aws.String("go-api.bin")})
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, got.Body); !bytes.Equal(b, data) || got.ChecksumCRC64NVME == nil {
		t.Errorf("Go API object through the SDK: %d bytes, CRC64NVME %v", len(b), got.ChecksumCRC64NVME)
	}
	got.Body.Close()

	// DeleteObjects: existing and missing keys are all reported deleted.
	del, err := c.DeleteObjects(cx, &s3.DeleteObjectsInput{Bucket: aws.String("small"), Delete: &types.Delete{Objects: []types.ObjectIdentifier{
		{Key: aws.String("copy-1")}, {Key: aws.String("never-there")}, {Key: aws.String("versioned"), VersionId: aws.String("v7")}}}})
	if err != nil || len(del.Deleted) != 2 || len(del.Errors) != 1 || aws.ToString(del.Errors[0].Code) != "NoSuchVersion" {
		t.Fatalf("DeleteObjects: %+v %v", del, err)
	}

	tm := transfermanager.New(c)
	var buf writerAt
	if _, err := tm.DownloadObject(cx, &transfermanager.DownloadObjectInput{Bucket: aws.String("small"), Key: aws.String("go-api.bin"), WriterAt: &buf}); err != nil {
		t.Fatalf("DownloadObject: %v", err)
	}
	if !bytes.Equal(buf.b, data) {
		t.Errorf("DownloadObject of a single-part object: %d bytes", len(buf.b))
	}
	if _, err := tm.DownloadObject(cx, &transfermanager.DownloadObjectInput{Bucket: aws.String("small"), Key: aws.String("empty"), WriterAt: &writerAt{}}); err != nil {
		t.Fatalf("DownloadObject of an empty object: %v", err)
	}
}

// writerAt is an in-memory io.WriterAt for small downloads.
type writerAt struct{ b []byte }

func (w *writerAt) WriteAt(p []byte, off int64) (int, error) {
	if end := int(off) + len(p); end > len(w.b) {
		w.b = append(w.b, make([]byte, end-len(w.b))...)
	}
	return copy(w.b[off:], p), nil
}

var _ io.WriterAt = (*writerAt)(nil)

// TestGetAllocatesNoBodyBuffer: serving a 256 KiB object allocates far less
// than a copy buffer per request (ServeContent's copy reaches the
// connection's ReadFrom: sendfile over plain TCP), with or without a Range.
func TestGetAllocatesNoBodyBuffer(t *testing.T) {
	if raceEnabled {
		// The race detector makes sync.Pool drop what it pools at random
		// (net/http's and io.Discard's buffers among them), so allocations
		// say nothing there; the plain run (go test ./...) measures them.
		t.Skip("allocation counts are meaningless under the race detector")
	}
	e := newEnv(t, false)
	if err := e.store.CreateBucket("firmware"); err != nil {
		t.Fatal(err)
	}
	if err := e.store.SetPublicRead("firmware", true); err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("firmware"), 32<<10)
	if _, err := e.store.Put(context.Background(), "firmware", "app.bin", bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	get := func(rng string) {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/firmware/app.bin", nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if want := map[string]int64{"": int64(len(body)), "bytes=4096-": int64(len(body) - 4096)}[rng]; n != want {
			t.Fatalf("GET with Range %q: %d bytes, status %s; want %d", rng, n, resp.Status, want)
		}
	}
	for _, rng := range []string{"", "bytes=4096-"} {
		get(rng) // warm the connection and the pools
		const n = 20
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range n {
			get(rng)
		}
		runtime.ReadMemStats(&after)
		// Client and server together; a copy buffer alone would be 32 KiB.
		if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 24<<10 {
			t.Errorf("GET (Range %q) of a 256 KiB object allocates %d bytes per request; want no body-sized or copy buffer (< 24 KiB)", rng, per)
		}
	}
}

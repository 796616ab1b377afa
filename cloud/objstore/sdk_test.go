package objstore

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/awsfota/awsfota/cloud/sigv4"
)

// wantAPIError checks the S3 error code the SDK decoded.
func wantAPIError(t *testing.T, err error, code string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v, want API error %s", err, code)
	}
	if ae.ErrorCode() != code {
		t.Fatalf("error code %s (%v), want %s", ae.ErrorCode(), err, code)
	}
}

func wantStatus(t *testing.T, err error, status int) {
	t.Helper()
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != status {
		t.Fatalf("error %v, want HTTP status %d", err, status)
	}
}

func quotedMD5(b []byte) string {
	s := md5.Sum(b)
	return `"` + hex.EncodeToString(s[:]) + `"`
}

// TestSDKObjectLifecycle drives the handler with the official S3 client only,
// over plain HTTP and over TLS (where the SDK switches to aws-chunked bodies
// with a trailing checksum).
func TestSDKObjectLifecycle(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[useTLS], func(t *testing.T) {
			testSDKObjectLifecycle(t, useTLS)
		})
	}
}

func testSDKObjectLifecycle(t *testing.T, useTLS bool) {
	e := newEnv(t, useTLS)
	c := e.client(testCreds)
	cx := ctx(t)
	const bucket = "fota-images"

	if _, err := c.CreateBucket(cx, &s3.CreateBucketInput{Bucket: aws.String(bucket),
		CreateBucketConfiguration: &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(testRegion)}}); err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	_, err := c.CreateBucket(cx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *types.BucketAlreadyOwnedByYou
	if !errors.As(err, &owned) {
		t.Fatalf("second CreateBucket: %v, want BucketAlreadyOwnedByYou", err)
	}
	_, err = c.CreateBucket(cx, &s3.CreateBucketInput{Bucket: aws.String("no_underscores")})
	wantAPIError(t, err, "InvalidBucketName")
	if _, err := c.HeadBucket(cx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("HeadBucket: %v", err)
	}
	_, err = c.HeadBucket(cx, &s3.HeadBucketInput{Bucket: aws.String("missing-bucket")})
	wantStatus(t, err, http.StatusNotFound)
	lb, err := c.ListBuckets(cx, &s3.ListBucketsInput{})
	if err != nil || len(lb.Buckets) != 1 || aws.ToString(lb.Buckets[0].Name) != bucket {
		t.Fatalf("ListBuckets: %+v, %v", lb, err)
	}

	// A small object and one of a few MiB.
	small := []byte("hello, firmware")
	put, err := c.PutObject(cx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("notes/hello.txt"),
		Body: bytes.NewReader(small), ContentType: aws.String("text/plain"), Metadata: map[string]string{"version": "1.2.3"}})
	if err != nil {
		t.Fatalf("PutObject small: %v", err)
	}
	if aws.ToString(put.ETag) != quotedMD5(small) {
		t.Errorf("ETag %s, want %s", aws.ToString(put.ETag), quotedMD5(small))
	}
	if put.ChecksumCRC32 == nil {
		t.Errorf("PutObject did not echo the CRC32 the SDK sent")
	}
	big := randomBytes(1, 3<<20+7)
	if _, err := c.PutObject(cx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("images/app v2+ü.bin"), Body: bytes.NewReader(big)}); err != nil {
		t.Fatalf("PutObject big: %v", err)
	}
	info, err := e.store.Stat(bucket, "images/app v2+ü.bin")
	if err != nil || info.Size != int64(len(big)) || info.SHA256 != sum256(big) || info.ETag != quotedMD5(big) {
		t.Fatalf("Stat after SDK put: %+v, %v", info, err)
	}

	// The SDK's wire behaviour: what PutObject sent.
	var puts []wireRecord
	for _, w := range e.records() {
		if w.method == http.MethodPut && strings.HasPrefix(w.path, "/"+bucket+"/") {
			puts = append(puts, w)
		}
	}
	if len(puts) != 2 {
		t.Fatalf("saw %d object PUTs", len(puts))
	}
	for _, w := range puts {
		payload := w.header.Get("X-Amz-Content-Sha256")
		if useTLS {
			if payload != sigv4.StreamingUnsignedPayloadTrailer || w.header.Get("Content-Encoding") != "aws-chunked" ||
				w.header.Get("X-Amz-Trailer") != "x-amz-checksum-crc32" || w.header.Get("X-Amz-Decoded-Content-Length") == "" {
				t.Errorf("over TLS the SDK sent %v", w.header)
			}
		} else if len(payload) != 64 || w.header.Get("X-Amz-Checksum-Crc32") == "" || w.header.Get("Content-Encoding") != "" {
			t.Errorf("over HTTP the SDK sent %v", w.header)
		}
	}

	// GetObject: whole (the SDK validates the checksum it asked for), range,
	// conditions.
	got, err := c.GetObject(cx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("images/app v2+ü.bin")})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	body := readAll(t, got.Body)
	got.Body.Close()
	if !bytes.Equal(body, big) || aws.ToString(got.ETag) != quotedMD5(big) || aws.ToInt64(got.ContentLength) != int64(len(big)) {
		t.Fatalf("GetObject returned %d bytes, ETag %s", len(body), aws.ToString(got.ETag))
	}
	if got.ChecksumCRC32 == nil {
		t.Errorf("GetObject with checksum mode did not return the stored CRC32")
	}
	rng, err := c.GetObject(cx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("images/app v2+ü.bin"), Range: aws.String("bytes=100-199")})
	if err != nil {
		t.Fatalf("GetObject range: %v", err)
	}
	part := readAll(t, rng.Body)
	rng.Body.Close()
	if !bytes.Equal(part, big[100:200]) || aws.ToString(rng.ContentRange) != fmt.Sprintf("bytes 100-199/%d", len(big)) {
		t.Fatalf("range: %d bytes, Content-Range %s", len(part), aws.ToString(rng.ContentRange))
	}
	tail, err := c.GetObject(cx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("notes/hello.txt"), Range: aws.String("bytes=-5")})
	if err != nil {
		t.Fatalf("GetObject suffix range: %v", err)
	}
	if b := readAll(t, tail.Body); string(b) != "mware" {
		t.Errorf("suffix range %q", b)
	}
	tail.Body.Close()
	_, err = c.GetObject(cx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("notes/hello.txt"), Range: aws.String("bytes=999-")})
	wantAPIError(t, err, "InvalidRange")
	_, err = c.GetObject(cx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("notes/hello.txt"), IfMatch: aws.String(`"0000"`)})
	wantAPIError(t, err, "PreconditionFailed")
	_, err = c.GetObject(cx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("notes/hello.txt"), IfNoneMatch: put.ETag})
	wantStatus(t, err, http.StatusNotModified)
	ok, err := c.GetObject(cx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("notes/hello.txt"), IfMatch: put.ETag})
	if err != nil {
		t.Fatalf("GetObject If-Match: %v", err)
	}
	ok.Body.Close()

	head, err := c.HeadObject(cx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("notes/hello.txt")})
	if err != nil {
		t.Fatalf("HeadObject: %v", err)
	}
	if aws.ToInt64(head.ContentLength) != int64(len(small)) || aws.ToString(head.ContentType) != "text/plain" ||
		head.Metadata["version"] != "1.2.3" || aws.ToString(head.ETag) != quotedMD5(small) || head.LastModified == nil {
		t.Errorf("HeadObject %+v", head)
	}

	// Listing with prefix, delimiter and pagination.
	for _, k := range []string{"images/sub/c.bin", "images/b.bin", "logs/2026/01.txt", "logs/2026/02.txt", "top.bin"} {
		if _, err := c.PutObject(cx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(k), Body: strings.NewReader(k)}); err != nil {
			t.Fatalf("PutObject %s: %v", k, err)
		}
	}
	all := []string{"images/app v2+ü.bin", "images/b.bin", "images/sub/c.bin", "logs/2026/01.txt", "logs/2026/02.txt", "notes/hello.txt", "top.bin"}
	sort.Strings(all)
	lo, err := c.ListObjectsV2(cx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("images/"), Delimiter: aws.String("/")})
	if err != nil {
		t.Fatalf("ListObjectsV2: %v", err)
	}
	if keys := objectKeys(lo.Contents); strings.Join(keys, ",") != "images/app v2+ü.bin,images/b.bin" ||
		len(lo.CommonPrefixes) != 1 || aws.ToString(lo.CommonPrefixes[0].Prefix) != "images/sub/" {
		t.Errorf("prefix+delimiter listing: %v %v", keys, lo.CommonPrefixes)
	}
	top, err := c.ListObjectsV2(cx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Delimiter: aws.String("/")})
	if err != nil {
		t.Fatal(err)
	}
	if keys, prefixes := objectKeys(top.Contents), commonPrefixes(top.CommonPrefixes); strings.Join(keys, ",") != "top.bin" ||
		strings.Join(prefixes, ",") != "images/,logs/,notes/" {
		t.Errorf("root listing: %v %v", keys, prefixes)
	}
	for _, pageSize := range []int32{1, 2, 3, 1000} {
		var keys []string
		pages := 0
		p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), MaxKeys: aws.Int32(pageSize)})
		for p.HasMorePages() {
			page, err := p.NextPage(cx)
			if err != nil {
				t.Fatalf("page: %v", err)
			}
			pages++
			keys = append(keys, objectKeys(page.Contents)...)
		}
		if strings.Join(keys, "|") != strings.Join(all, "|") || pages != (len(all)+int(pageSize)-1)/int(pageSize) {
			t.Errorf("paginated by %d: %d pages, %v", pageSize, pages, keys)
		}
	}
	var prefixes []string
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Delimiter: aws.String("/"), MaxKeys: aws.Int32(1)})
	for p.HasMorePages() {
		page, err := p.NextPage(cx)
		if err != nil {
			t.Fatal(err)
		}
		prefixes = append(prefixes, commonPrefixes(page.CommonPrefixes)...)
		prefixes = append(prefixes, objectKeys(page.Contents)...)
	}
	if strings.Join(prefixes, ",") != "images/,logs/,notes/,top.bin" {
		t.Errorf("delimited pages: %v", prefixes)
	}
	after, err := c.ListObjectsV2(cx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), StartAfter: aws.String("logs/2026/01.txt")})
	if err != nil || strings.Join(objectKeys(after.Contents), ",") != "logs/2026/02.txt,notes/hello.txt,top.bin" {
		t.Errorf("StartAfter: %v %v", objectKeys(after.Contents), err)
	}
	// The original ListObjects, paged by NextMarker, common prefixes included.
	var v1 []string
	marker := ""
	for i := 0; i < 20; i++ {
		page, err := c.ListObjects(cx, &s3.ListObjectsInput{Bucket: aws.String(bucket), Delimiter: aws.String("/"), MaxKeys: aws.Int32(2), Marker: aws.String(marker)})
		if err != nil {
			t.Fatalf("ListObjects: %v", err)
		}
		v1 = append(v1, commonPrefixes(page.CommonPrefixes)...)
		v1 = append(v1, objectKeys(page.Contents)...)
		if !aws.ToBool(page.IsTruncated) {
			break
		}
		marker = aws.ToString(page.NextMarker)
	}
	if strings.Join(v1, ",") != "images/,logs/,notes/,top.bin" {
		t.Errorf("ListObjects pages: %v", v1)
	}
	encoded, err := c.ListObjectsV2(cx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("images/app"), EncodingType: types.EncodingTypeUrl})
	if err != nil || len(encoded.Contents) != 1 || aws.ToString(encoded.Contents[0].Key) != "images/app%20v2%2B%C3%BC.bin" {
		t.Errorf("encoding-type=url: %+v %v", encoded.Contents, err)
	}

	// Errors.
	_, err = c.GetObject(cx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("missing.bin")})
	var nsk *types.NoSuchKey
	if !errors.As(err, &nsk) {
		t.Errorf("GetObject of a missing key: %v", err)
	}
	_, err = c.HeadObject(cx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("missing.bin")})
	wantStatus(t, err, http.StatusNotFound)
	_, err = c.GetObject(cx, &s3.GetObjectInput{Bucket: aws.String("missing-bucket"), Key: aws.String("k")})
	wantAPIError(t, err, "NoSuchBucket")
	_, err = c.PutObject(cx, &s3.PutObjectInput{Bucket: aws.String("missing-bucket"), Key: aws.String("k"), Body: strings.NewReader("x")})
	wantAPIError(t, err, "NoSuchBucket")
	_, err = c.ListObjectsV2(cx, &s3.ListObjectsV2Input{Bucket: aws.String("missing-bucket")})
	wantAPIError(t, err, "NoSuchBucket")
	_, err = e.client(sigv4.Credentials{AccessKeyID: testCreds.AccessKeyID, SecretAccessKey: "wrong"}).
		GetObject(cx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("top.bin")})
	wantAPIError(t, err, "SignatureDoesNotMatch")
	_, err = e.client(sigv4.Credentials{AccessKeyID: "AKIAUNKNOWN", SecretAccessKey: "x"}).
		ListBuckets(cx, &s3.ListBucketsInput{})
	wantAPIError(t, err, "InvalidAccessKeyId")
	_, err = c.PutObject(cx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("bad-md5"), Body: strings.NewReader("abc"),
		ContentMD5: aws.String(base64.StdEncoding.EncodeToString(make([]byte, 16)))})
	wantAPIError(t, err, "BadDigest")
	_, err = c.PutObject(cx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("bad-crc"), Body: strings.NewReader("abc"),
		ChecksumCRC32: aws.String("AAAAAA==")})
	wantAPIError(t, err, "BadDigest")
	if _, err := e.store.Stat(bucket, "bad-crc"); !errors.Is(err, ErrNoSuchKey) {
		t.Errorf("an upload with a bad checksum was stored: %v", err)
	}
	_, err = c.DeleteBucket(cx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)})
	wantAPIError(t, err, "BucketNotEmpty")

	// Delete everything, then the bucket.
	for _, k := range all {
		if _, err := c.DeleteObject(cx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(k)}); err != nil {
			t.Fatalf("DeleteObject %s: %v", k, err)
		}
	}
	if _, err := c.DeleteObject(cx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("never-existed")}); err != nil {
		t.Errorf("DeleteObject of a missing key (S3 answers 204): %v", err)
	}
	_, err = c.GetObject(cx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("top.bin")})
	if !errors.As(err, &nsk) {
		t.Errorf("GetObject after delete: %v", err)
	}
	if _, err := c.DeleteBucket(cx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("DeleteBucket: %v", err)
	}
	_, err = c.HeadBucket(cx, &s3.HeadBucketInput{Bucket: aws.String(bucket)})
	wantStatus(t, err, http.StatusNotFound)
}

func objectKeys(objs []types.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, aws.ToString(o.Key))
	}
	return out
}

func commonPrefixes(cps []types.CommonPrefix) []string {
	var out []string
	for _, p := range cps {
		out = append(out, aws.ToString(p.Prefix))
	}
	return out
}

// TestSDKChecksumAlgorithms puts with every flexible checksum the SDK offers
// and reads the checksum back with checksum mode (the SDK validates it).
func TestSDKChecksumAlgorithms(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		e := newEnv(t, useTLS)
		c := e.client(testCreds)
		cx := ctx(t)
		if err := e.store.CreateBucket("sums"); err != nil {
			t.Fatal(err)
		}
		data := randomBytes(7, 70_000)
		for _, alg := range []types.ChecksumAlgorithm{types.ChecksumAlgorithmCrc32, types.ChecksumAlgorithmCrc32c,
			types.ChecksumAlgorithmCrc64nvme, types.ChecksumAlgorithmSha1, types.ChecksumAlgorithmSha256} {
			key := "obj-" + string(alg)
			put, err := c.PutObject(cx, &s3.PutObjectInput{Bucket: aws.String("sums"), Key: aws.String(key), Body: bytes.NewReader(data), ChecksumAlgorithm: alg})
			if err != nil {
				t.Fatalf("tls=%v PutObject %s: %v", useTLS, alg, err)
			}
			got, err := c.GetObject(cx, &s3.GetObjectInput{Bucket: aws.String("sums"), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled})
			if err != nil {
				t.Fatalf("GetObject %s: %v", alg, err)
			}
			body := readAll(t, got.Body)
			got.Body.Close()
			pick := func(o1, o2, o3, o4, o5 *string) string {
				return aws.ToString(map[types.ChecksumAlgorithm]*string{types.ChecksumAlgorithmCrc32: o1, types.ChecksumAlgorithmCrc32c: o2,
					types.ChecksumAlgorithmCrc64nvme: o3, types.ChecksumAlgorithmSha1: o4, types.ChecksumAlgorithmSha256: o5}[alg])
			}
			sent := pick(put.ChecksumCRC32, put.ChecksumCRC32C, put.ChecksumCRC64NVME, put.ChecksumSHA1, put.ChecksumSHA256)
			back := pick(got.ChecksumCRC32, got.ChecksumCRC32C, got.ChecksumCRC64NVME, got.ChecksumSHA1, got.ChecksumSHA256)
			if !bytes.Equal(body, data) || sent == "" || sent != back {
				t.Errorf("tls=%v %s: body ok=%v, put checksum %q, get checksum %q", useTLS, alg, bytes.Equal(body, data), sent, back)
			}
		}
	}
}

// TestTransferManagerMultipart uploads 21 MiB with 5 MiB parts through the
// transfer manager (multipart, parts as aws-chunked with CRC32 trailers over
// TLS), then downloads it back both by parts and by ranges.
func TestTransferManagerMultipart(t *testing.T) {
	e := newEnv(t, true)
	c := e.client(testCreds)
	cx := ctx(t)
	if err := e.store.CreateBucket("big-images"); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(42, 21<<20+12345)
	tm := transfermanager.New(c, func(o *transfermanager.Options) {
		o.PartSizeBytes = MinPartSize
		o.Concurrency = 3
	})
	up, err := tm.UploadObject(cx, &transfermanager.UploadObjectInput{
		Bucket: aws.String("big-images"), Key: aws.String("modem/fw-delta.bin"), Body: bytes.NewReader(data)})
	if err != nil {
		t.Fatalf("UploadObject: %v", err)
	}
	const parts = 5 // 4 × 5 MiB + the rest
	if etag := aws.ToString(up.ETag); !strings.HasSuffix(etag, fmt.Sprintf(`-%d"`, parts)) {
		t.Errorf("multipart ETag %s", etag)
	}
	var sawCreate, sawComplete bool
	uploads := 0
	for _, w := range e.records() {
		switch {
		case w.method == http.MethodPost && w.query == "uploads=" || w.method == http.MethodPost && strings.HasPrefix(w.query, "uploads"):
			sawCreate = true
		case w.method == http.MethodPut && strings.Contains(w.query, "uploadId="):
			uploads++
			if w.header.Get("X-Amz-Content-Sha256") != sigv4.StreamingUnsignedPayloadTrailer {
				t.Errorf("UploadPart sent payload %q", w.header.Get("X-Amz-Content-Sha256"))
			}
		case w.method == http.MethodPost && strings.Contains(w.query, "uploadId="):
			sawComplete = true
		}
	}
	if !sawCreate || uploads != parts || !sawComplete {
		t.Fatalf("wire: create=%v parts=%d complete=%v", sawCreate, uploads, sawComplete)
	}
	info, err := e.store.Stat("big-images", "modem/fw-delta.bin")
	if err != nil || info.Size != int64(len(data)) || info.SHA256 != sum256(data) {
		t.Fatalf("Stat: %+v %v", info, err)
	}
	head, err := c.HeadObject(cx, &s3.HeadObjectInput{Bucket: aws.String("big-images"), Key: aws.String("modem/fw-delta.bin"), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil || !strings.HasSuffix(aws.ToString(head.ChecksumCRC32), fmt.Sprintf("-%d", parts)) || head.ChecksumType != types.ChecksumTypeComposite {
		t.Errorf("HeadObject of the multipart object: %+v %v", head, err)
	}

	for _, typ := range []tmtypes.GetObjectType{tmtypes.GetObjectParts, tmtypes.GetObjectRanges} {
		f, err := os.Create(filepath.Join(t.TempDir(), "download"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = tm.DownloadObject(cx, &transfermanager.DownloadObjectInput{Bucket: aws.String("big-images"), Key: aws.String("modem/fw-delta.bin"), WriterAt: f},
			func(o *transfermanager.Options) { o.GetObjectType = typ; o.PartSizeBytes = MinPartSize })
		f.Close()
		if err != nil {
			t.Fatalf("DownloadObject (%s): %v", typ, err)
		}
		back, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if sum256(back) != sum256(data) {
			t.Fatalf("DownloadObject (%s): %d bytes, SHA-256 differs", typ, len(back))
		}
	}
}

package objstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/awsfota/awsfota/cloud/sigv4"
)

var chunkTime = time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)

const chunkSeed = "0000000000000000000000000000000000000000000000000000000000000000"

func testChunkSigner() *sigv4.ChunkSigner {
	return sigv4.NewChunkSigner(testCreds, testRegion, "s3", chunkTime, chunkSeed)
}

// encodeChunks builds an aws-chunked body: each chunk, the final one, the
// trailers ("name:value") and, when signed, every signature.
func encodeChunks(chunks []string, signer *sigv4.ChunkSigner, trailers ...string) string {
	var b strings.Builder
	ext := func(data string) string {
		if signer == nil {
			return ""
		}
		return ";chunk-signature=" + signer.Next(sha256.Sum256([]byte(data)))
	}
	for _, c := range chunks {
		fmt.Fprintf(&b, "%x%s\r\n%s\r\n", len(c), ext(c), c)
	}
	b.WriteString("0" + ext("") + "\r\n")
	var canonical strings.Builder
	for _, t := range trailers {
		b.WriteString(t + "\r\n")
		canonical.WriteString(t + "\n")
	}
	if signer != nil && len(trailers) > 0 {
		b.WriteString("x-amz-trailer-signature:" + signer.Trailer(sha256.Sum256([]byte(canonical.String()))) + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

func crc32Of(s string) string {
	return base64.StdEncoding.EncodeToString(beUint32(crc32.ChecksumIEEE([]byte(s))))
}

func beUint32(v uint32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }

func decode(body string, decoded int64, signer *sigv4.ChunkSigner, trailing bool) (string, map[string]string, error) {
	cr := newChunkedReader(strings.NewReader(body), decoded, signer, trailing)
	out, err := io.ReadAll(cr)
	return string(out), cr.Trailers(), err
}

func TestChunkedReader(t *testing.T) {
	sdkBody := encodeChunks([]string{"hello world"}, nil, "x-amz-checksum-crc32:"+crc32Of("hello world"))
	cases := []struct {
		name     string
		body     string
		decoded  int64
		trailing bool
		want     string
		code     string // expected S3 error code, "" for success
	}{
		{name: "sdk shape", body: sdkBody, decoded: 11, trailing: true, want: "hello world"},
		{name: "many chunks", body: encodeChunks([]string{"ab", "cde", strings.Repeat("f", 70000)}, nil), decoded: 70005, want: "abcde" + strings.Repeat("f", 70000)},
		{name: "empty", body: "0\r\n\r\n", decoded: 0, trailing: true, want: ""},
		{name: "unknown length", body: encodeChunks([]string{"xyz"}, nil), decoded: -1, want: "xyz"},
		{name: "no CRLF after trailers", body: strings.TrimSuffix(sdkBody, "\r\n"), decoded: 11, trailing: true, want: "hello world"},
		{name: "upper-case hex", body: "A\r\n0123456789\r\n0\r\n\r\n", decoded: 10, want: "0123456789"},
		{name: "bad size", body: "zz\r\nab\r\n0\r\n\r\n", decoded: -1, code: "IncompleteBody"},
		{name: "empty size", body: "\r\nab\r\n0\r\n\r\n", decoded: -1, code: "IncompleteBody"},
		{name: "huge size", body: "fffffffffffffffff\r\n", decoded: -1, code: "IncompleteBody"},
		{name: "more than declared", body: encodeChunks([]string{"abcdef"}, nil), decoded: 5, code: "IncompleteBody"},
		{name: "less than declared", body: encodeChunks([]string{"abc"}, nil), decoded: 5, code: "IncompleteBody"},
		{name: "size too small", body: "2\r\nabc\r\n0\r\n\r\n", decoded: -1, code: "IncompleteBody"},
		{name: "LF only", body: "3\nabc\n0\n\n", decoded: -1, code: "IncompleteBody"},
		{name: "truncated data", body: "10\r\nabc", decoded: -1, code: "IncompleteBody"},
		{name: "truncated header", body: "3\r\nabc\r\n", decoded: -1, code: "IncompleteBody"},
		{name: "no final CRLF", body: "3\r\nabc\r\n0\r\n", decoded: -1, code: "IncompleteBody"},
		{name: "trailers not declared", body: sdkBody, decoded: 11, trailing: false, code: "IncompleteBody"},
		{name: "garbage after", body: encodeChunks([]string{"abc"}, nil) + "x", decoded: 3, code: "IncompleteBody"},
		{name: "long line", body: strings.Repeat("1", 5000) + "\r\n", decoded: -1, code: "IncompleteBody"},
		{name: "bad trailer", body: "0\r\nno-colon\r\n\r\n", decoded: 0, trailing: true, code: "IncompleteBody"},
		{name: "duplicate trailer", body: "0\r\na:1\r\na:2\r\n\r\n", decoded: 0, trailing: true, code: "IncompleteBody"},
		{name: "too many trailers", body: "0\r\n" + strings.Repeat("a:1\r\n", 20) + "\r\n", decoded: 0, trailing: true, code: "IncompleteBody"},
		{name: "unsigned trailer signature", body: "0\r\nx-amz-trailer-signature:00\r\n\r\n", decoded: 0, trailing: true, code: "IncompleteBody"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, trailers, err := decode(tc.body, tc.decoded, nil, tc.trailing)
			if tc.code == "" {
				if err != nil || got != tc.want {
					t.Fatalf("decoded %q, %v; want %q", clip(got), err, clip(tc.want))
				}
				return
			}
			var ae *apiError
			if !errors.As(err, &ae) || ae.code != tc.code {
				t.Fatalf("error %v, want code %s", err, tc.code)
			}
			_ = trailers
		})
	}
	_, trailers, err := decode(sdkBody, 11, nil, true)
	if err != nil || trailers["x-amz-checksum-crc32"] != crc32Of("hello world") {
		t.Errorf("trailers %v, %v", trailers, err)
	}
}

func TestSignedChunkedReader(t *testing.T) {
	data := []string{strings.Repeat("a", 65536), strings.Repeat("b", 1024)}
	all := strings.Join(data, "")
	body := encodeChunks(data, testChunkSigner())
	if got, _, err := decode(body, int64(len(all)), testChunkSigner(), false); err != nil || got != all {
		t.Fatalf("signed body: %v", err)
	}
	trailer := "x-amz-checksum-crc32:" + crc32Of(all)
	withTrailer := encodeChunks(data, testChunkSigner(), trailer)
	if _, tr, err := decode(withTrailer, int64(len(all)), testChunkSigner(), true); err != nil || tr["x-amz-checksum-crc32"] != crc32Of(all) {
		t.Fatalf("signed trailer body: %v %v", tr, err)
	}
	bad := []struct {
		name, body string
		trailing   bool
		code       string
	}{
		{"data changed", strings.Replace(body, "bbbb", "bbbc", 1), false, "SignatureDoesNotMatch"},
		{"chunks swapped", swapFirstChunks(body, len(data[0]), len(data[1])), false, "SignatureDoesNotMatch"},
		{"other seed", encodeChunks(data, sigv4.NewChunkSigner(testCreds, testRegion, "s3", chunkTime, strings.Repeat("1", 64))), false, "SignatureDoesNotMatch"},
		{"signature gone", strings.Replace(body, ";chunk-signature=", ";x=", 1), false, "IncompleteBody"},
		{"unsigned chunks", encodeChunks(data, nil), false, "IncompleteBody"},
		{"trailer changed", strings.Replace(withTrailer, crc32Of(all), crc32Of("other"), 1), true, "SignatureDoesNotMatch"},
		{"trailer unsigned", strings.Replace(withTrailer, "x-amz-trailer-signature:", "x-amz-other:", 1), true, "IncompleteBody"},
	}
	for _, tc := range bad {
		_, _, err := decode(tc.body, int64(len(all)), testChunkSigner(), tc.trailing)
		var ae *apiError
		if !errors.As(err, &ae) || ae.code != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
}

// swapFirstChunks exchanges the first two chunks of an encoded body, with
// their signatures.
func swapFirstChunks(body string, len0, len1 int) string {
	i := strings.Index(body, "\r\n") + 2 + len0 + 2
	rest := body[i:]
	j := strings.Index(rest, "\r\n") + 2 + len1 + 2
	return rest[:j] + body[:i] + rest[j:]
}

// signedChunkedPut sends a STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER)
// upload as a client that signs its chunks would (the Go SDK does not).
func (e *env) signedChunkedPut(path string, chunks []string, trailer string, corrupt func(string) string) (*http.Response, []byte) {
	e.t.Helper()
	payload := sigv4.StreamingPayload
	var trailers []string
	if trailer != "" {
		payload = sigv4.StreamingPayloadTrailer
		trailers = []string{trailer}
	}
	total := 0
	for _, c := range chunks {
		total += len(c)
	}
	// The encoded length does not depend on the signatures' values.
	encodedLen := len(encodeChunks(chunks, testChunkSigner(), trailers...))
	req, err := http.NewRequest(http.MethodPut, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.ContentLength = int64(encodedLen)
	req.Header.Set("Content-Encoding", "aws-chunked")
	req.Header.Set("X-Amz-Decoded-Content-Length", fmt.Sprint(total))
	if trailer != "" {
		name, _, _ := strings.Cut(trailer, ":")
		req.Header.Set("X-Amz-Trailer", name)
	}
	now := e.clock.Now()
	if err := sigv4.Sign(req, testCreds, testRegion, "s3", now, payload); err != nil {
		e.t.Fatal(err)
	}
	_, seed, _ := strings.Cut(req.Header.Get("Authorization"), "Signature=")
	body := encodeChunks(chunks, sigv4.NewChunkSigner(testCreds, testRegion, "s3", now, seed), trailers...)
	if corrupt != nil {
		body = corrupt(body)
	}
	req.Body = io.NopCloser(strings.NewReader(body))
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp, readAll(e.t, resp.Body)
}

func TestSignedChunkedUpload(t *testing.T) {
	e := newEnv(t, false)
	if err := e.store.CreateBucket("chunky"); err != nil {
		t.Fatal(err)
	}
	data := string(randomBytes(11, 200_000))
	chunks := []string{data[:65536], data[65536:131072], data[131072:]}

	resp, body := e.signedChunkedPut("/chunky/signed.bin", chunks, "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("signed upload: %s %s", resp.Status, body)
	}
	if info, err := e.store.Stat("chunky", "signed.bin"); err != nil || info.SHA256 != sum256([]byte(data)) {
		t.Fatalf("stored %+v %v", info, err)
	}

	crc32c := base64.StdEncoding.EncodeToString(beUint32(crc32.Checksum([]byte(data), crc32.MakeTable(crc32.Castagnoli))))
	resp, body = e.signedChunkedPut("/chunky/trailer.bin", chunks, "x-amz-checksum-crc32c:"+crc32c, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Checksum-Crc32c") != crc32c {
		t.Fatalf("signed upload with trailer: %s %v %s", resp.Status, resp.Header, body)
	}

	resp, body = e.signedChunkedPut("/chunky/tampered.bin", chunks, "", func(b string) string {
		i := strings.Index(b, "\r\n") + 2 + 1000
		return b[:i] + string(b[i]^1) + b[i+1:]
	})
	if resp.StatusCode != http.StatusForbidden || errorCodeOf(body) != "SignatureDoesNotMatch" {
		t.Errorf("tampered chunk: %s %s", resp.Status, body)
	}
	resp, body = e.signedChunkedPut("/chunky/badsum.bin", chunks, "x-amz-checksum-crc32c:AAAAAA==", nil)
	if resp.StatusCode != http.StatusBadRequest || errorCodeOf(body) != "BadDigest" {
		t.Errorf("wrong trailing checksum: %s %s", resp.Status, body)
	}
	for _, k := range []string{"tampered.bin", "badsum.bin"} {
		if _, err := e.store.Stat("chunky", k); !errors.Is(err, ErrNoSuchKey) {
			t.Errorf("%s was stored: %v", k, err)
		}
	}
}

// FuzzChunkedReader feeds hostile bodies to the aws-chunked decoder in each
// mode: it must return errors, never panic, never hang, and never allocate
// in proportion to the sizes it is told.
func FuzzChunkedReader(f *testing.F) {
	f.Add([]byte(encodeChunks([]string{"hello world"}, nil, "x-amz-checksum-crc32:"+crc32Of("hello world"))), uint8(2), int64(11))
	f.Add([]byte(encodeChunks([]string{"abc", "defg"}, testChunkSigner())), uint8(1), int64(7))
	f.Add([]byte(encodeChunks([]string{"abc"}, testChunkSigner(), "x-amz-checksum-crc32:"+crc32Of("abc"))), uint8(3), int64(3))
	f.Add([]byte("7fffffffffffffff\r\n"), uint8(0), int64(-1))
	f.Add([]byte("0\r\n"+strings.Repeat("a:b\r\n", 10)+"\r\n"), uint8(2), int64(0))
	f.Fuzz(func(t *testing.T, body []byte, mode uint8, declared int64) {
		var signer *sigv4.ChunkSigner
		if mode&1 != 0 {
			signer = testChunkSigner()
		}
		if declared < 0 {
			declared = -1
		}
		cr := newChunkedReader(bytes.NewReader(body), declared, signer, mode&2 != 0)
		n, err := io.Copy(io.Discard, cr)
		if n > int64(len(body)) {
			t.Fatalf("decoded %d bytes from a %d-byte body", n, len(body))
		}
		if err == nil && declared >= 0 && n != declared {
			t.Fatalf("decoded %d bytes, declared %d, no error", n, declared)
		}
		var ae *apiError
		if err != nil && !errors.As(err, &ae) {
			t.Fatalf("error %T %v is not an S3 error", err, err)
		}
	})
}

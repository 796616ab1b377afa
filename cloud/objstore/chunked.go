package objstore

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/awsfota/awsfota/cloud/sigv4"
)

// The aws-chunked content encoding (Content-Encoding: aws-chunked) frames a
// body as
//
//	<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n ... 0[;chunk-signature=<sig>]\r\n
//	[<trailer name>:<value>\r\n ... [x-amz-trailer-signature:<sig>\r\n]]\r\n
//
// Chunk signatures are present for STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER)
// and chain from the request signature; trailers are present for the
// *-TRAILER payload types. aws-sdk-go-v2 sends the unsigned form with a
// trailing x-amz-checksum-crc32 (one chunk for a body of known length).

const (
	maxChunkLine    = 1024 // "<16 hex digits>;chunk-signature=<64 hex>" is 98 bytes
	maxTrailerLines = 8
	chunkBufSize    = 32 << 10
)

func malformedChunk(format string, args ...any) *apiError {
	return badRequest("IncompleteBody", "The aws-chunked request body is malformed: "+format, args...)
}

// chunkedReader decodes an aws-chunked body, verifying chunk signatures when
// it has a signer. Data is returned before the signature of its chunk is
// checked (a chunk may be gigabytes long); the error at the chunk's end
// arrives before io.EOF, so a consumer that commits only after a clean EOF
// never commits unverified bytes. After io.EOF, Trailers holds the trailing
// headers. It never allocates in proportion to sizes it reads.
type chunkedReader struct {
	br       *bufio.Reader
	signer   *sigv4.ChunkSigner // nil for unsigned chunks
	trailing bool               // trailers may follow the final chunk
	// remaining is how many decoded bytes may still come (from
	// x-amz-decoded-content-length); negative when unknown.
	remaining int64
	chunkLeft int64
	chunkSig  string
	chunkHash hash.Hash
	trailers  map[string]string
	err       error
}

func newChunkedReader(r io.Reader, decodedLen int64, signer *sigv4.ChunkSigner, trailing bool) *chunkedReader {
	c := &chunkedReader{br: bufio.NewReaderSize(r, chunkBufSize), signer: signer, trailing: trailing, remaining: decodedLen}
	if signer != nil {
		c.chunkHash = sha256.New()
	}
	return c
}

// Trailers returns the trailing headers, by lower-case name, once Read has
// returned io.EOF.
func (c *chunkedReader) Trailers() map[string]string { return c.trailers }

func (c *chunkedReader) Read(p []byte) (int, error) {
	for c.err == nil && c.chunkLeft == 0 {
		c.err = c.nextChunk()
	}
	if c.err != nil {
		return 0, c.err
	}
	if int64(len(p)) > c.chunkLeft {
		p = p[:c.chunkLeft]
	}
	n, err := c.br.Read(p)
	c.chunkLeft -= int64(n)
	if c.chunkHash != nil {
		c.chunkHash.Write(p[:n])
	}
	switch {
	case err == io.EOF:
		c.err = malformedChunk("the body ends inside a chunk")
	case err != nil:
		c.err = err
	case c.chunkLeft == 0:
		c.err = c.endChunk()
	}
	if c.err != nil && n > 0 {
		return n, nil // report the data now, the error on the next call
	}
	return n, c.err
}

// readLine reads one CRLF-terminated line, without the CRLF.
func (c *chunkedReader) readLine() ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull) || len(line) > maxChunkLine:
		return nil, malformedChunk("a chunk header or trailer line is longer than %d bytes", maxChunkLine)
	case err == io.EOF:
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, malformedChunk("a line does not end with CRLF")
	}
	return line[:len(line)-2], nil
}

func (c *chunkedReader) nextChunk() error {
	line, err := c.readLine()
	if err != nil {
		if err == io.ErrUnexpectedEOF {
			return malformedChunk("the body ends before the final chunk")
		}
		return err
	}
	sizeText, ext, hasExt := bytes.Cut(line, []byte(";"))
	if len(sizeText) == 0 || len(sizeText) > 16 {
		return malformedChunk("bad chunk size %q", clip(string(sizeText)))
	}
	size, err := strconv.ParseUint(string(sizeText), 16, 64)
	if err != nil || size > 1<<62 {
		return malformedChunk("bad chunk size %q", clip(string(sizeText)))
	}
	if c.signer != nil {
		sig, ok := bytes.CutPrefix(ext, []byte("chunk-signature="))
		if !hasExt || !ok || len(sig) != 64 {
			return malformedChunk("a chunk lacks its chunk-signature")
		}
		c.chunkSig = string(sig)
	}
	if c.remaining >= 0 && int64(size) > c.remaining {
		return malformedChunk("the chunks hold more than the %d bytes of x-amz-decoded-content-length", c.remaining)
	}
	if size > 0 {
		c.chunkLeft = int64(size)
		if c.remaining >= 0 {
			c.remaining -= int64(size)
		}
		return nil
	}
	// The final chunk.
	if c.signer != nil {
		if err := c.checkChunkSignature(); err != nil {
			return err
		}
	}
	if err := c.readTrailers(); err != nil {
		return err
	}
	if c.remaining > 0 {
		return badRequest("IncompleteBody", "The aws-chunked body holds fewer bytes than x-amz-decoded-content-length says (%d missing).", c.remaining)
	}
	if _, err := c.br.ReadByte(); err != io.EOF {
		if err == nil {
			return malformedChunk("data follows the final chunk")
		}
		return err
	}
	return io.EOF
}

// endChunk consumes the CRLF after a chunk's data and checks its signature.
func (c *chunkedReader) endChunk() error {
	var crlf [2]byte
	if _, err := io.ReadFull(c.br, crlf[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return malformedChunk("the body ends after a chunk's data")
		}
		return err
	}
	if crlf != [2]byte{'\r', '\n'} {
		return malformedChunk("a chunk's data is not followed by CRLF (its size is wrong)")
	}
	if c.signer != nil {
		return c.checkChunkSignature()
	}
	return nil
}

func (c *chunkedReader) checkChunkSignature() error {
	var sum [32]byte
	c.chunkHash.Sum(sum[:0])
	c.chunkHash.Reset()
	if !hmac.Equal([]byte(c.signer.Next(sum)), []byte(c.chunkSig)) {
		return newAPIError(http.StatusForbidden, "SignatureDoesNotMatch",
			"The chunk signature we calculated does not match the chunk-signature you provided. Check your key and signing method.")
	}
	return nil
}

func (c *chunkedReader) readTrailers() error {
	c.trailers = map[string]string{}
	var canonical strings.Builder
	signed := false
	for n := 0; ; n++ {
		line, err := c.readLine()
		if err == io.ErrUnexpectedEOF && n > 0 {
			break // some clients omit the last CRLF after the trailers
		}
		if err != nil {
			if err == io.ErrUnexpectedEOF {
				return malformedChunk("the body ends without the CRLF after the final chunk")
			}
			return err
		}
		if len(line) == 0 {
			break
		}
		if !c.trailing {
			return malformedChunk("trailing headers follow the final chunk, but the payload type declares none")
		}
		if signed {
			return malformedChunk("trailing headers follow x-amz-trailer-signature")
		}
		if n >= maxTrailerLines {
			return malformedChunk("more than %d trailing headers", maxTrailerLines)
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return malformedChunk("a trailing header is not of the form name:value")
		}
		lname := strings.ToLower(strings.TrimSpace(string(name)))
		v := strings.TrimSpace(string(value))
		if lname == "x-amz-trailer-signature" {
			if c.signer == nil {
				return malformedChunk("x-amz-trailer-signature in an unsigned body")
			}
			sum := sha256.Sum256([]byte(canonical.String()))
			if !hmac.Equal([]byte(c.signer.Trailer(sum)), []byte(v)) {
				return newAPIError(http.StatusForbidden, "SignatureDoesNotMatch",
					"The trailer signature we calculated does not match the x-amz-trailer-signature you provided.")
			}
			signed = true
			continue
		}
		if _, dup := c.trailers[lname]; dup {
			return malformedChunk("the trailing header %s appears twice", clip(lname))
		}
		c.trailers[lname] = v
		canonical.WriteString(lname + ":" + v + "\n")
	}
	if c.signer != nil && len(c.trailers) > 0 && !signed {
		return malformedChunk("signed trailing headers lack x-amz-trailer-signature")
	}
	return nil
}

package objstore

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// MaxKeyLen is S3's limit on an object key, in bytes.
const MaxKeyLen = 1024

// ValidateBucketName checks name against S3's rules for general purpose
// buckets and says which rule it breaks. The error wraps ErrInvalidBucketName.
func ValidateBucketName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidBucketName, clip(name), why)
	}
	if len(name) < 3 || len(name) > 63 {
		return bad("a bucket name must be 3 to 63 characters long")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return bad("only lower-case letters, digits, '.' and '-' are allowed")
		}
	}
	if !isAlnum(name[0]) || !isAlnum(name[len(name)-1]) {
		return bad("a bucket name must begin and end with a letter or a digit")
	}
	if strings.Contains(name, "..") {
		return bad("a bucket name must not contain two adjacent periods")
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return bad("a bucket name must not look like an IP address")
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(name, p) {
			return bad("the prefix " + p + " is reserved")
		}
	}
	for _, s := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(name, s) {
			return bad("the suffix " + s + " is reserved")
		}
	}
	return nil
}

func isAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

func validateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: the key is empty", ErrInvalidKey)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: the key is %d bytes long; the maximum is %d", ErrInvalidKey, len(key), MaxKeyLen)
	}
	return validateKeyEncoding(key)
}

// validateKeyEncoding refuses a key that is not UTF-8, as S3 does (400
// InvalidURI, for every operation on such a key): S3 keys are Unicode, and
// the store's JSON records could not hold the key's bytes.
func validateKeyEncoding(key string) error {
	if utf8.ValidString(key) {
		return nil
	}
	return &apiError{status: http.StatusBadRequest, code: "InvalidURI", msg: "Couldn't parse the specified URI.",
		err: fmt.Errorf("%w: the key %+q is not valid UTF-8", ErrInvalidKey, clip(key))}
}

// keyID names an object's files: keys may hold any bytes, including '/' and
// "..", and be longer than a file name may be.
func keyID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

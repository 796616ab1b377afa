package download

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// errBadContentRange is wrapped by every error of ParseContentRange.
var errBadContentRange = errors.New("malformed Content-Range")

// ParseContentRange parses the value of a Content-Range response header
// (RFC 9110 §14.4) for the "bytes" unit. It accepts the three forms a server
// may send:
//
//	bytes FIRST-LAST/TOTAL   a range of a representation of known size
//	bytes FIRST-LAST/*       a range of a representation of unknown size
//	bytes */TOTAL            the answer of a 416: nothing sent, the size is TOTAL
//
// A part that is absent is returned as -1: first and last are -1 for the
// "*/TOTAL" form, total is -1 for the "/*" form. The unit is matched without
// regard to case. It returns an error, which names the header and says what
// is wrong, when the value has any other shape, when a number does not fit in
// an int64, when FIRST > LAST, or when LAST >= TOTAL.
func ParseContentRange(s string) (first, last, total int64, err error) {
	fail := func(why string) (int64, int64, int64, error) {
		return -1, -1, -1, fmt.Errorf("%w %s: %s", errBadContentRange, quoteShort(s), why)
	}
	v := strings.Trim(s, " \t")
	unit, rest, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return fail(`want "bytes FIRST-LAST/TOTAL", "bytes FIRST-LAST/*" or "bytes */TOTAL"`)
	}
	rest = strings.TrimLeft(rest, " ")
	rng, size, ok := strings.Cut(rest, "/")
	if !ok {
		return fail(`missing "/" before the total size`)
	}
	total = -1
	if size != "*" {
		if total, ok = parseDigits(size); !ok {
			return fail("total size is not a non-negative integer")
		}
	}
	if rng == "*" {
		if total < 0 {
			return fail(`"*/*" gives neither a range nor a size`)
		}
		return -1, -1, total, nil
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return fail(`range must be "FIRST-LAST"`)
	}
	if first, ok = parseDigits(a); !ok {
		return fail("first byte position is not a non-negative integer")
	}
	if last, ok = parseDigits(b); !ok {
		return fail("last byte position is not a non-negative integer")
	}
	if first > last {
		return fail("first byte position is after the last")
	}
	if total >= 0 && last >= total {
		return fail("last byte position is not inside the total size")
	}
	return first, last, total, nil
}

// parseDigits parses a non-empty string of ASCII digits (no sign, no spaces).
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// quoteShort quotes s for an error message, cut to a readable length.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

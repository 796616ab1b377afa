package download_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/awsfota/awsfota/device/download"
)

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in                 string
		first, last, total int64
		ok                 bool
	}{
		{"bytes 0-0/1", 0, 0, 1, true},
		{"bytes 0-499/1234", 0, 499, 1234, true},
		{"bytes 500-1233/1234", 500, 1233, 1234, true},
		{"bytes 42-42/*", 42, 42, -1, true},
		{"bytes 0-9223372036854775806/9223372036854775807", 0, 9223372036854775806, 9223372036854775807, true},
		{"bytes */1234", -1, -1, 1234, true},
		{"bytes */0", -1, -1, 0, true},
		{"BYTES 1-2/3", 1, 2, 3, true},
		{"Bytes */7", -1, -1, 7, true},
		{"  bytes 1-2/3  ", 1, 2, 3, true},
		{"bytes  1-2/3", 1, 2, 3, true},
		{"bytes 007-008/009", 7, 8, 9, true},

		{"", 0, 0, 0, false},
		{"bytes", 0, 0, 0, false},
		{"bytes ", 0, 0, 0, false},
		{"bytes=0-1/2", 0, 0, 0, false},
		{"items 0-1/2", 0, 0, 0, false},
		{"bytes */*", 0, 0, 0, false},
		{"bytes 0-1", 0, 0, 0, false},
		{"bytes 0-1/", 0, 0, 0, false},
		{"bytes -1/2", 0, 0, 0, false},
		{"bytes 1-/2", 0, 0, 0, false},
		{"bytes 5-4/10", 0, 0, 0, false},
		{"bytes 0-10/10", 0, 0, 0, false},
		{"bytes 0-1/-2", 0, 0, 0, false},
		{"bytes +0-1/2", 0, 0, 0, false},
		{"bytes 0-+1/2", 0, 0, 0, false},
		{"bytes 0 -1/2", 0, 0, 0, false},
		{"bytes 0-1 /2", 0, 0, 0, false},
		{"bytes 0x1-2/3", 0, 0, 0, false},
		{"bytes 0-1/2, 3-4/5", 0, 0, 0, false},
		{"bytes 0-9223372036854775808/*", 0, 0, 0, false},
		{"bytes 1-2/99999999999999999999", 0, 0, 0, false},
		{"bytes *-1/2", 0, 0, 0, false},
		{"bytes */", 0, 0, 0, false},
		{"bytes 1-2-3/4", 0, 0, 0, false},
		{"bytes\t1-2/3", 0, 0, 0, false},
		{"bytes ½-1/2", 0, 0, 0, false},
	}
	for _, tt := range tests {
		first, last, total, err := download.ParseContentRange(tt.in)
		if !tt.ok {
			if err == nil {
				t.Errorf("ParseContentRange(%q) = %d, %d, %d; want an error", tt.in, first, last, total)
			} else if !strings.Contains(err.Error(), "Content-Range") {
				t.Errorf("ParseContentRange(%q) error %q does not name the header", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseContentRange(%q): %v", tt.in, err)
			continue
		}
		if first != tt.first || last != tt.last || total != tt.total {
			t.Errorf("ParseContentRange(%q) = %d, %d, %d; want %d, %d, %d", tt.in, first, last, total, tt.first, tt.last, tt.total)
		}
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-499/1234", "bytes 5-5/*", "bytes */10", "bytes 9-1/2", "garbage", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		first, last, total, err := download.ParseContentRange(s)
		if err != nil {
			if first != -1 || last != -1 || total != -1 {
				t.Fatalf("error with values %d %d %d", first, last, total)
			}
			return
		}
		var again string
		switch {
		case first < 0:
			if last != -1 || total < 0 {
				t.Fatalf("%q: unsatisfied form gave %d %d %d", s, first, last, total)
			}
			again = fmt.Sprintf("bytes */%d", total)
		case first > last:
			t.Fatalf("%q: first %d > last %d", s, first, last)
		case total >= 0 && last >= total:
			t.Fatalf("%q: last %d >= total %d", s, last, total)
		case total < 0:
			again = fmt.Sprintf("bytes %d-%d/*", first, last)
		default:
			again = fmt.Sprintf("bytes %d-%d/%d", first, last, total)
		}
		f2, l2, t2, err := download.ParseContentRange(again)
		if err != nil || f2 != first || l2 != last || t2 != total {
			t.Fatalf("%q → %q does not parse back: %d %d %d %v", s, again, f2, l2, t2, err)
		}
	})
}

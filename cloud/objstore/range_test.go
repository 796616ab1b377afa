package objstore

import "testing"

func TestRangeRule(t *testing.T) {
	cases := []struct {
		h                     string
		ignore, unsatisfiable bool
	}{
		{"", false, false},
		{"bytes=0-9", false, false},
		{"bytes=-5", false, false},
		{"bytes=10-", false, false},
		{"bytes=-0", false, true},
		{"bytes=-000", false, true},
		{" bytes= -0 ", false, true},
		{"bytes=-", false, false}, // malformed: ServeContent's answer
		{"bytes=-10", false, false},
		{"bytes=0-0", false, false},
		{"bytes=0-1,5-6", true, false},
		{"bytes=-0,-0", true, false},
		{"bytes=0-1,", true, false},
		{"items=0-1,5-6", false, false},
		{"bytes=-0x", false, false},
	}
	for _, c := range cases {
		ignore, unsat := rangeRule(c.h)
		if ignore != c.ignore || unsat != c.unsatisfiable {
			t.Errorf("rangeRule(%q) = %v, %v; want %v, %v", c.h, ignore, unsat, c.ignore, c.unsatisfiable)
		}
	}
}

func FuzzRangeRule(f *testing.F) {
	for _, s := range []string{"bytes=-0", "bytes=0-1,2-3", "bytes=5-", "bytes=-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		ignore, unsat := rangeRule(h)
		if ignore && unsat {
			t.Fatalf("rangeRule(%q): both ignored and unsatisfiable", h)
		}
	})
}

package registry

import (
	"errors"
	"strings"
	"testing"
)

func TestQuery(t *testing.T) {
	things := []QueryThing{
		{Name: "dev-1", ID: "id-1", Attributes: map[string]string{"model": "nrf9160", "rev": "3", "site": "lab one"}, Groups: []string{"fleet"}},
		{Name: "dev-2", ID: "id-2", Attributes: map[string]string{"model": "nrf9160", "rev": "10"}},
		{Name: "gw-1", ID: "id-3", Attributes: map[string]string{"model": "nrf5340", "rev": "b"}, Groups: []string{"fleet", "gateways"}},
	}
	for _, c := range []struct {
		q, want string // the names matched, in order
	}{
		{"thingName:dev-1", "dev-1"},
		{"thingName:dev-*", "dev-1,dev-2"},
		{"thingName:?w-1", "gw-1"},
		{"thingName:*", "dev-1,dev-2,gw-1"},
		{"thingId:id-2", "dev-2"},
		{"thingTypeName:sensor", ""},
		{"attributes.model:nrf9160", "dev-1,dev-2"},
		{"attributes.model:nrf9160 AND attributes.rev>5", "dev-2"},
		{"attributes.model:nrf9160 attributes.rev<5", "dev-1"},
		{"attributes.rev>=3", "dev-1,dev-2,gw-1"}, // b > 3 by text
		{"attributes.rev<=3", "dev-1"},
		{"attributes.rev:[3 TO 10]", "dev-1,dev-2"},
		{"attributes.rev:{3 TO 10]", "dev-2"},
		{"attributes.rev:{3 TO 10}", ""},
		{`attributes.site:"lab one"`, "dev-1"},
		{"attributes.missing:*", ""},
		{"NOT attributes.missing:x", "dev-1,dev-2,gw-1"},
		{"thingGroupNames:fleet", "dev-1,gw-1"},
		{"thingGroupNames:gateways OR thingName:dev-2", "dev-2,gw-1"},
		{"NOT thingGroupNames:fleet", "dev-2"},
		{"(thingName:dev-1 OR thingName:dev-2) AND NOT attributes.rev:10", "dev-1"},
		{"thingName:dev-1 OR thingName:dev-2 AND attributes.rev:10", "dev-1,dev-2"}, // AND binds tighter
		{"NOT (thingName:dev-1 OR thingName:gw-1)", "dev-2"},
		{"  thingName:gw-1  ", "gw-1"},
	} {
		q, err := ParseQuery(c.q)
		if err != nil {
			t.Errorf("%q: %v", c.q, err)
			continue
		}
		var got []string
		for _, th := range things {
			if q.Match(th) {
				got = append(got, th.Name)
			}
		}
		if strings.Join(got, ",") != c.want {
			t.Errorf("%q matched %v, want %s", c.q, got, c.want)
		}
	}
}

func TestQueryErrors(t *testing.T) {
	for _, c := range []struct{ q, err string }{
		{"", "empty"},
		{"   ", "empty"},
		{"shadow.reported.v:1", "not in the local cloud's query subset"},
		{"connectivity.connected:true", "not in the local cloud's query subset"},
		{"attributes.:x", "not in the local cloud's query subset"},
		{"thingName", "expected :"},
		{"thingName:", "value is missing"},
		{"(thingName:a", "not closed"},
		{"thingName:a)", "unexpected"},
		{`thingName:"a`, "quoted value is not closed"},
		{"attributes.r:[1 2]", "[LOW TO HIGH]"},
		{"attributes.r:[1 TO 2", "ends with ]"},
		{"thingName:a AND", "missing at the end"},
		{"NOT", "missing at the end"},
		{"OR thingName:a", `field "OR"`},
		{"thingName:a AND :b", "expected a field"},
		{strings.Repeat("(", 40) + "thingName:a" + strings.Repeat(")", 40), "nested more than"},
		{strings.Repeat("x", MaxQueryLen+1), "at most 1000"},
	} {
		_, err := ParseQuery(c.q)
		if !errors.Is(err, ErrInvalidQuery) || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: %v, want an error saying %q", c.q, err, c.err)
		}
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"thingName:dev-*", "attributes.model:nrf9160 AND attributes.rev>5", `attributes.site:"lab \"one\""`,
		"(thingName:a OR thingName:b) AND NOT thingGroupNames:g", "attributes.rev:{3 TO 10]", "NOT NOT thingId:x", "((", "a:b:c"} {
		f.Add(s)
	}
	th := QueryThing{Name: "dev-1", ID: "i", Attributes: map[string]string{"model": "nrf9160", "rev": "3"}, Groups: []string{"g"}}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseQuery(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidQuery) || q != nil {
				t.Fatalf("%q: %v", s, err)
			}
			return
		}
		q.Match(th)
		q.Match(QueryThing{})
		if q.String() != s {
			t.Fatal("the query text changed")
		}
	})
}

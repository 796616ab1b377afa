package broker

import (
	"strings"
	"testing"
)

func TestWildcardMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true}, {"*", "anything/at/all", true},
		{"a*", "a", true}, {"a*", "ab/c", true}, {"a*", "b", false},
		{"*b", "ab", true}, {"*b", "abc", false},
		{"a?c", "abc", true}, {"a?c", "ac", false}, {"a?c", "a/c", true},
		{"a*b*c", "a123b456c", true}, {"a*b*c", "a123c", false},
		{"abc", "abc", true}, {"abc", "abcd", false}, {"", "", true}, {"", "x", false},
		{"a\x00*c", "a*c", true}, {"a\x00*c", "abc", false}, {"a\x00?", "a?", true}, {"a\x00?", "ab", false},
		{"$aws/things/+/#", "$aws/things/+/#", true}, {"$aws/things/+/#", "$aws/things/dev/#", false},
	} {
		if got := wildcardMatch(c.pattern, c.s); got != c.want {
			t.Errorf("wildcardMatch(%q, %q) = %v", c.pattern, c.s, got)
		}
	}
}

func TestDefaultPolicy(t *testing.T) {
	p := DefaultPolicy()
	me := Principal{ClientID: "dev-1", ThingName: "dev-1", Region: "us-east-1", AccountID: "000000000000"}
	for _, c := range []struct {
		action, name string
		want         bool
	}{
		{ActionConnect, "dev-1", true},
		{ActionConnect, "dev-2", false},
		{ActionPublish, "$aws/things/dev-1/jobs/get", true},
		{ActionPublish, "$aws/things/dev-1/jobs/fw-1/update", true},
		{ActionPublish, "$aws/things/dev-2/jobs/get", false},
		{ActionPublish, "$aws/things/dev-10/jobs/get", false},
		{ActionPublish, "$aws/things/dev-1", false},
		{ActionPublish, "telemetry", false},
		{ActionReceive, "$aws/things/dev-1/jobs/notify-next", true},
		{ActionReceive, "$aws/things/dev-2/jobs/notify-next", false},
		{ActionReceive, "$aws/events/job/j/completed", false},
		// Subscription filters are matched as written: a wildcard in the
		// thing's place could match another thing's topics, so it is refused.
		{ActionSubscribe, "$aws/things/dev-1/jobs/notify-next", true},
		{ActionSubscribe, "$aws/things/dev-1/#", true},
		{ActionSubscribe, "$aws/things/dev-1/jobs/+/get/+", true},
		{ActionSubscribe, "$aws/things/+/jobs/#", false},
		{ActionSubscribe, "$aws/things/#", false},
		{ActionSubscribe, "$aws/things/+/#", false},
		{ActionSubscribe, "#", false},
		{ActionSubscribe, "+/things/dev-1/jobs/notify", false},
		{ActionSubscribe, "$aws/things/dev-1", false},
		{ActionSubscribe, "$aws/things/dev-10/jobs/#", false},
		{ActionSubscribe, "$share/g/$aws/things/dev-1/jobs/notify", false},
		{ActionSubscribe, "$aws/things/dev-2/jobs/notify", false},
	} {
		if got := p.Allowed(me, c.action, c.name); got != c.want {
			t.Errorf("%s %s: %v", c.action, c.name, got)
		}
	}
}

func TestCustomPolicy(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"iot:*","Resource":["arn:aws:iot:*:*:topic/fleet/${iot:ClientId}/*","arn:aws:iot:*:*:topicfilter/fleet/*"]},
		{"Effect":"Allow","Action":"iot:Receive","Resource":"arn:aws:iot:eu-west-1:*:topic/fleet/?/news"},
		{"Effect":"Deny","Action":["iot:Publish"],"Resource":"arn:aws:iot:*:*:topic/fleet/*/secret"},
		{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/x/${iot:Connection.Thing.Attributes[kind]}"}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	me := Principal{ClientID: "d1", ThingName: "d1", Region: "eu-west-1", AccountID: "1"}
	for _, c := range []struct {
		action, name string
		want         bool
	}{
		{ActionPublish, "fleet/d1/data", true},
		{ActionPublish, "fleet/d1/secret", false}, // Deny wins
		{ActionPublish, "fleet/d2/data", false},
		{ActionSubscribe, "fleet/+/news", true},
		{ActionReceive, "fleet/a/news", true},
		{ActionReceive, "fleet/ab/news", false},
		{ActionPublish, "x/", false}, // an unsupported variable matches nothing
	} {
		if got := p.Allowed(me, c.action, c.name); got != c.want {
			t.Errorf("%s %s: %v", c.action, c.name, got)
		}
	}
	if p.Allowed(Principal{ClientID: "d1", ThingName: "d1", Region: "us-east-1", AccountID: "1"}, ActionReceive, "fleet/a/news") {
		t.Error("the region in the ARN was ignored")
	}
	for _, bad := range []string{
		`[]`, `{"Statement":[]}`, `{"Statement":[{"Effect":"Maybe","Action":"iot:*","Resource":"*"}]}`,
		`{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`,
		`{"Statement":[{"Effect":"Allow","Resource":"*"}]}`, `{"Statement":[{"Effect":"Allow","Action":7,"Resource":"*"}]}`,
	} {
		if _, err := ParsePolicy([]byte(bad)); err == nil || !strings.Contains(err.Error(), "polic") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Policy is an AWS IoT policy document, evaluated as AWS IoT Core evaluates
// the policies attached to a certificate: an explicit Deny wins, else an
// Allow grants, else the action is denied.
//
// Resources are ARNs matched with IAM's wildcards (* any run of
// characters, ? one character) after the policy variables
// ${iot:Connection.Thing.ThingName} and ${iot:ClientId} are replaced. MQTT
// wildcards are not wildcards here: a subscription is checked by matching
// its filter, as written, against the topicfilter/ resources, so the filter
// $aws/things/+/jobs/# does not match topicfilter/$aws/things/dev-1/* — a
// thing may subscribe only to filters that cannot match another thing's
// topics. Conditions are not supported.
type Policy struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// Statement is one statement of a policy.
type Statement struct {
	Effect   string  `json:"Effect"`
	Action   strList `json:"Action"`
	Resource strList `json:"Resource"`
}

// strList is a JSON string or list of strings.
type strList []string

func (s *strList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = strList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("must be a string or a list of strings")
	}
	*s = many
	return nil
}

// Policy actions the broker checks.
const (
	ActionConnect   = "iot:Connect"
	ActionPublish   = "iot:Publish"
	ActionSubscribe = "iot:Subscribe"
	ActionReceive   = "iot:Receive"
)

// DefaultPolicyJSON is the policy the broker applies unless configured
// otherwise: the usual AWS IoT device policy, which confines each thing to
// its own $aws/things/<thing>/ topics.
const DefaultPolicyJSON = `{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": "arn:aws:iot:*:*:topic/$aws/things/${iot:Connection.Thing.ThingName}/*"},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": "arn:aws:iot:*:*:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/*"}
  ]
}`

// DefaultPolicy returns the parsed DefaultPolicyJSON.
func DefaultPolicy() *Policy {
	p, err := ParsePolicy([]byte(DefaultPolicyJSON))
	if err != nil {
		panic(err)
	}
	return p
}

// ParsePolicy reads an AWS IoT policy document. Errors say which statement
// is wrong.
func ParsePolicy(b []byte) (*Policy, error) {
	var p Policy
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("broker: the policy is not an AWS IoT policy document: %w", err)
	}
	if len(p.Statement) == 0 {
		return nil, errors.New("broker: the policy has no Statement")
	}
	for i, s := range p.Statement {
		if s.Effect != "Allow" && s.Effect != "Deny" {
			return nil, fmt.Errorf("broker: policy statement %d: Effect %q must be Allow or Deny", i, s.Effect)
		}
		if len(s.Action) == 0 || len(s.Resource) == 0 {
			return nil, fmt.Errorf("broker: policy statement %d needs an Action and a Resource", i)
		}
		for _, a := range s.Action {
			if a != "*" && !strings.HasPrefix(a, "iot:") {
				return nil, fmt.Errorf("broker: policy statement %d: action %q is not an iot: action", i, a)
			}
		}
	}
	return &p, nil
}

// Principal is who a policy is evaluated for.
type Principal struct {
	ClientID  string
	ThingName string // the thing the certificate is attached to and connects as
	Region    string
	AccountID string
}

// resource returns the ARN of a resource: kind is client, topic or
// topicfilter.
func (pr Principal) resource(kind, name string) string {
	return "arn:aws:iot:" + pr.Region + ":" + pr.AccountID + ":" + kind + "/" + name
}

// literalWildcards escapes the wildcard characters of a substituted value
// (built once: a Replacer is safe for concurrent use, and building one for
// each check cost a tenth of the broker's CPU in a connection storm).
var literalWildcards = strings.NewReplacer("*", "\x00*", "?", "\x00?")

// substitute replaces the policy variables in a resource pattern; ok is false
// when one cannot be resolved (the pattern then matches nothing).
func (pr Principal) substitute(pattern string) (string, bool) {
	var b strings.Builder
	for {
		i := strings.Index(pattern, "${")
		if i < 0 {
			b.WriteString(pattern)
			return b.String(), true
		}
		j := strings.IndexByte(pattern[i:], '}')
		if j < 0 {
			return "", false
		}
		b.WriteString(pattern[:i])
		var v string
		switch pattern[i+2 : i+j] {
		case "iot:Connection.Thing.ThingName":
			v = pr.ThingName
		case "iot:ClientId":
			v = pr.ClientID
		default:
			return "", false
		}
		if v == "" {
			return "", false
		}
		// The value is literal: escape the wildcard characters it holds.
		b.WriteString(literalWildcards.Replace(v))
		pattern = pattern[i+j+1:]
	}
}

// Allowed evaluates the policy for action (ActionPublish, ...) on the
// resource of that action: the client id for iot:Connect, the topic name for
// iot:Publish and iot:Receive, the topic filter for iot:Subscribe.
func (p *Policy) Allowed(pr Principal, action, name string) bool {
	kind := "topic"
	switch action {
	case ActionConnect:
		kind = "client"
	case ActionSubscribe:
		kind = "topicfilter"
	}
	arn := pr.resource(kind, name)
	allowed := false
	for _, s := range p.Statement {
		if !matchAny(s.Action, action) {
			continue
		}
		hit := false
		for _, r := range s.Resource {
			if pat, ok := pr.substitute(r); ok && wildcardMatch(pat, arn) {
				hit = true
				break
			}
		}
		if !hit {
			continue
		}
		if s.Effect == "Deny" {
			return false
		}
		allowed = true
	}
	return allowed
}

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if wildcardMatch(p, s) {
			return true
		}
	}
	return false
}

// wildcardMatch matches s against an IAM pattern: * is any run of
// characters (slashes included), ? one character; "\x00*" and "\x00?" are
// literal (from substituted variables).
func wildcardMatch(pattern, s string) bool {
	// Iterative matching with backtracking to the last star.
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		if pi < len(pattern) {
			c := pattern[pi]
			switch {
			case c == 0 && pi+1 < len(pattern):
				if pattern[pi+1] == s[si] {
					pi, si = pi+2, si+1
					continue
				}
			case c == '*':
				star, mark = pi, si
				pi++
				continue
			case c == '?' || c == s[si]:
				pi, si = pi+1, si+1
				continue
			}
		}
		if star < 0 {
			return false
		}
		pi, mark = star+1, mark+1
		si = mark
	}
	for pi < len(pattern) && pattern[pi] == '*' {
		pi++
	}
	return pi == len(pattern)
}

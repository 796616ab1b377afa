package registry

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// The fleet-indexing query subset dynamic thing groups use (and that
// SearchIndex would use), evaluated against the registry:
//
//	thingName:dev-*            a field and a value; * and ? are wildcards
//	attributes.model:nrf9160   a thing attribute
//	thingGroupNames:fleet      a static group the thing was added to
//	thingId:…  thingTypeName:… (no thing has a type here: never matches)
//	attributes.rev>2  attributes.rev<=5   comparisons (numeric when both
//	                           sides are numbers, else by text)
//	attributes.rev:[2 TO 5]    inclusive range; {2 TO 5} exclusive
//	"quoted value"             a value with spaces or special characters
//	a AND b, a OR b, NOT a, a b (AND), ( … )   NOT binds tightest, then
//	                           AND, then OR
//
// Not in the subset (refused with ErrInvalidQuery): shadow.*,
// connectivity.*, deviceDefender.*, thingGroupIds and the other indexed
// fields, fuzzy and proximity operators, boosts.

// ErrInvalidQuery: a query string the local cloud cannot read (AWS's
// InvalidQueryException).
var ErrInvalidQuery = errors.New("invalid query")

// MaxQueryLen is AWS's limit on a queryString.
const MaxQueryLen = 1000

// maxQueryDepth bounds nesting, so that a hostile query cannot exhaust the
// stack.
const maxQueryDepth = 32

// Query is a parsed query.
type Query struct {
	root node
	src  string
}

// String returns the query as it was given.
func (q *Query) String() string { return q.src }

// QueryThing is what a query is matched against.
type QueryThing struct {
	Name       string
	ID         string
	Attributes map[string]string
	// Groups are the static thing groups the thing was added to.
	Groups []string
}

// Match reports whether a thing matches the query.
func (q *Query) Match(t QueryThing) bool { return q.root.match(t) }

type node interface{ match(QueryThing) bool }

type (
	andNode  []node
	orNode   []node
	notNode  struct{ n node }
	termNode struct {
		field string // thingName, thingId, thingTypeName, thingGroupNames, or attributes.NAME
		op    string // ":" (equality or wildcard), "<", "<=", ">", ">=", "range"
		value string
		// range
		lo, hi         string
		loIncl, hiIncl bool
	}
)

func (a andNode) match(t QueryThing) bool {
	for _, n := range a {
		if !n.match(t) {
			return false
		}
	}
	return true
}

func (o orNode) match(t QueryThing) bool {
	for _, n := range o {
		if n.match(t) {
			return true
		}
	}
	return false
}

func (n notNode) match(t QueryThing) bool { return !n.n.match(t) }

func (n *termNode) match(t QueryThing) bool {
	var values []string
	switch {
	case n.field == "thingName":
		values = []string{t.Name}
	case n.field == "thingId":
		values = []string{t.ID}
	case n.field == "thingTypeName":
		// No thing has a type in the local cloud.
	case n.field == "thingGroupNames":
		values = t.Groups
	default:
		if v, ok := t.Attributes[strings.TrimPrefix(n.field, "attributes.")]; ok {
			values = []string{v}
		}
	}
	return slices.ContainsFunc(values, n.matchValue)
}

func (n *termNode) matchValue(v string) bool {
	switch n.op {
	case ":":
		if strings.ContainsAny(n.value, "*?") {
			ok, _ := path.Match(escapeGlob(n.value), v)
			return ok
		}
		return v == n.value
	case "<":
		return compare(v, n.value) < 0
	case "<=":
		return compare(v, n.value) <= 0
	case ">":
		return compare(v, n.value) > 0
	case ">=":
		return compare(v, n.value) >= 0
	case "range":
		lo, hi := compare(v, n.lo), compare(v, n.hi)
		return (lo > 0 || lo == 0 && n.loIncl) && (hi < 0 || hi == 0 && n.hiIncl)
	}
	return false
}

// escapeGlob keeps * and ? as wildcards and makes every other character
// path.Match knows literal.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '\\', '[', ']':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// compare orders two values: as numbers when both are, else as text.
func compare(a, b string) int {
	x, err1 := strconv.ParseFloat(a, 64)
	y, err2 := strconv.ParseFloat(b, 64)
	if err1 == nil && err2 == nil {
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	}
	return strings.Compare(a, b)
}

// ParseQuery reads a query string of the subset above. Errors wrap
// ErrInvalidQuery and say where the query went wrong.
func ParseQuery(s string) (*Query, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%w: the query string is empty: use e.g. attributes.model:nrf9160", ErrInvalidQuery)
	}
	if len(s) > MaxQueryLen {
		return nil, fmt.Errorf("%w: the query string has %d characters; at most %d are allowed", ErrInvalidQuery, len(s), MaxQueryLen)
	}
	p := &parser{s: s}
	n, err := p.or(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i < len(p.s) {
		return nil, p.fail("unexpected %q", p.rest())
	}
	return &Query{root: n, src: s}, nil
}

type parser struct {
	s string
	i int
}

func (p *parser) fail(format string, args ...any) error {
	return fmt.Errorf("%w: %q at character %d: %s", ErrInvalidQuery, p.s, p.i+1, fmt.Sprintf(format, args...))
}

func (p *parser) rest() string {
	r := p.s[p.i:]
	if len(r) > 20 {
		r = r[:20] + "…"
	}
	return r
}

func (p *parser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

// keyword consumes a keyword followed by a space or a parenthesis.
func (p *parser) keyword(k string) bool {
	p.space()
	if !strings.HasPrefix(p.s[p.i:], k) {
		return false
	}
	j := p.i + len(k)
	if j < len(p.s) && p.s[j] != ' ' && p.s[j] != '\t' && p.s[j] != '(' && p.s[j] != '\n' && p.s[j] != '\r' {
		return false
	}
	p.i = j
	return true
}

func (p *parser) or(depth int) (node, error) {
	l, err := p.list(depth, "OR", false, p.and)
	if err != nil || len(l) == 1 {
		return one(l), err
	}
	return orNode(l), nil
}

func (p *parser) and(depth int) (node, error) {
	l, err := p.list(depth, "AND", true, p.unary)
	if err != nil || len(l) == 1 {
		return one(l), err
	}
	return andNode(l), nil
}

// list reads sub (sep sub)*; with implicit, terms side by side are joined
// too (a b is a AND b) until the end, OR or a closing parenthesis.
func (p *parser) list(depth int, sep string, implicit bool, sub func(int) (node, error)) ([]node, error) {
	var out []node
	for {
		n, err := sub(depth)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
		if p.keyword(sep) {
			continue
		}
		p.space()
		if !implicit || p.i >= len(p.s) || p.s[p.i] == ')' || p.atKeyword("OR") {
			return out, nil
		}
	}
}

func one(l []node) node {
	if len(l) == 0 {
		return nil
	}
	return l[0]
}

func (p *parser) atKeyword(k string) bool {
	save := p.i
	ok := p.keyword(k)
	p.i = save
	return ok
}

func (p *parser) unary(depth int) (node, error) {
	if depth > maxQueryDepth {
		return nil, p.fail("nested more than %d deep", maxQueryDepth)
	}
	if p.keyword("NOT") {
		n, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return notNode{n}, nil
	}
	p.space()
	if p.i < len(p.s) && p.s[p.i] == '(' {
		p.i++
		n, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != ')' {
			return nil, p.fail("a ( is not closed")
		}
		p.i++
		return n, nil
	}
	return p.term()
}

func isFieldChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
}

func (p *parser) term() (node, error) {
	start := p.i
	for p.i < len(p.s) && isFieldChar(p.s[p.i]) {
		p.i++
	}
	field := p.s[start:p.i]
	if field == "" {
		if p.i >= len(p.s) {
			return nil, p.fail("a term is missing at the end")
		}
		return nil, p.fail("expected a field (thingName, attributes.NAME, thingGroupNames, ...), found %q", p.rest())
	}
	switch {
	case field == "thingName" || field == "thingId" || field == "thingTypeName" || field == "thingGroupNames":
	case strings.HasPrefix(field, "attributes.") && len(field) > len("attributes."):
	default:
		p.i = start
		return nil, p.fail("field %q is not in the local cloud's query subset: use thingName, thingId, thingTypeName, thingGroupNames or attributes.NAME", field)
	}
	n := &termNode{field: field}
	switch {
	case strings.HasPrefix(p.s[p.i:], "<="), strings.HasPrefix(p.s[p.i:], ">="):
		n.op = p.s[p.i : p.i+2]
		p.i += 2
	case strings.HasPrefix(p.s[p.i:], "<"), strings.HasPrefix(p.s[p.i:], ">"):
		n.op = p.s[p.i : p.i+1]
		p.i++
	case strings.HasPrefix(p.s[p.i:], ":"):
		n.op = ":"
		p.i++
	default:
		return nil, p.fail("expected :, <, <=, > or >= after %s", field)
	}
	if n.op == ":" && p.i < len(p.s) && (p.s[p.i] == '[' || p.s[p.i] == '{') {
		return p.rangeValue(n)
	}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	n.value = v
	return n, nil
}

func (p *parser) rangeValue(n *termNode) (node, error) {
	n.op = "range"
	n.loIncl = p.s[p.i] == '['
	p.i++
	p.space()
	lo, err := p.value()
	if err != nil {
		return nil, err
	}
	if !p.keyword("TO") {
		return nil, p.fail("a range is written [LOW TO HIGH]")
	}
	p.space()
	hi, err := p.value()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i >= len(p.s) || (p.s[p.i] != ']' && p.s[p.i] != '}') {
		return nil, p.fail("a range ends with ] or }")
	}
	n.hiIncl = p.s[p.i] == ']'
	p.i++
	n.lo, n.hi = lo, hi
	return n, nil
}

// value reads a quoted string or a bare word (up to a space, a parenthesis
// or a range's end).
func (p *parser) value() (string, error) {
	if p.i < len(p.s) && p.s[p.i] == '"' {
		var b strings.Builder
		for p.i++; p.i < len(p.s); p.i++ {
			c := p.s[p.i]
			switch {
			case c == '\\' && p.i+1 < len(p.s):
				p.i++
				b.WriteByte(p.s[p.i])
			case c == '"':
				p.i++
				return b.String(), nil
			default:
				b.WriteByte(c)
			}
		}
		return "", p.fail("a quoted value is not closed")
	}
	start := p.i
	for p.i < len(p.s) && !strings.ContainsRune(" \t\r\n()[]{}\"", rune(p.s[p.i])) {
		p.i++
	}
	if p.i == start {
		return "", p.fail("a value is missing")
	}
	return p.s[start:p.i], nil
}

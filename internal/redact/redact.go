package redact

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
)

// rule is one pattern: a regular expression and the template that replaces a match (groups
// named in it keep labels such as "MRN:" in place). Go's regexp engine is linear but not fast
// (a few MB/s with captures), so each built-in rule first finds cheaply where it could match —
// a label, an "@", a run of nine or more digits — and runs the expression only there.
type rule struct {
	name  string
	re    *regexp.Regexp
	repl  string
	spans func(s string) [][2]int // where the rule could match; nil: anywhere
}

// labelWindow is how far after a label its value may end.
const labelWindow = 64

// labelled returns a spans function giving, for each occurrence of a label (ASCII
// case-insensitively), the label and the labelWindow bytes after it.
func labelled(labels ...string) func(string) [][2]int {
	return func(s string) [][2]int {
		var out [][2]int
		for _, l := range labels {
			for from := 0; ; {
				i := indexFold(s[from:], l)
				if i < 0 {
					break
				}
				i += from
				out = append(out, [2]int{max(i-1, 0), min(i+len(l)+labelWindow, len(s))})
				from = i + len(l)
			}
		}
		if len(out) < 2 {
			return out
		}
		// Sort and merge overlapping windows.
		slices.SortFunc(out, func(a, b [2]int) int { return a[0] - b[0] })
		merged := out[:1]
		for _, w := range out[1:] {
			if last := &merged[len(merged)-1]; w[0] <= last[1] {
				last[1] = max(last[1], w[1])
			} else {
				merged = append(merged, w)
			}
		}
		return merged
	}
}

// indexFold is strings.Index, ASCII case-insensitively, for a lowercase ASCII sub.
func indexFold(s, sub string) int {
	first := string([]byte{sub[0], sub[0] - 'a' + 'A'})
	for from := 0; ; {
		i := strings.IndexAny(s[from:], first)
		if i < 0 {
			return -1
		}
		i += from
		if i+len(sub) > len(s) {
			return -1
		}
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
		from = i + 1
	}
}

// runs returns the maximal runs of bytes for which in is true that hold at least minDigits digits
// (or, with minDigits 0, contain the byte must), widened by one byte on each side so that word
// boundaries are seen as in the whole string.
func runs(s string, in func(byte) bool, minDigits int, must byte) [][2]int {
	if minDigits == 0 && strings.IndexByte(s, must) < 0 || minDigits > 0 && !strings.ContainsAny(s, "0123456789") {
		return nil
	}
	var out [][2]int
	for i := 0; i < len(s); {
		if !in(s[i]) {
			i++
			continue
		}
		j, digits, has := i, 0, false
		for ; j < len(s) && in(s[j]); j++ {
			if '0' <= s[j] && s[j] <= '9' {
				digits++
			}
			has = has || s[j] == must
		}
		if (minDigits > 0 && digits >= minDigits) || (minDigits == 0 && has) {
			out = append(out, [2]int{max(i-1, 0), min(j+1, len(s))})
		}
		i = j
	}
	return out
}

func numberish(c byte) bool {
	return '0' <= c && c <= '9' || c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '+'
}

func emailish(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._%+-@", c) >= 0
}

// builtin patterns, in the order they are applied: e-mail first (addresses may hold digits), then
// the labelled MRN and SSN, then bare SSNs and phone numbers.
var builtins = map[string][]rule{
	configv1.PatternEmail: {{
		re:    regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}`),
		spans: func(s string) [][2]int { return runs(s, emailish, 0, '@') },
	}},
	configv1.PatternMRN: {{
		// A number (optionally with a short letter prefix) after an MRN label.
		re:    regexp.MustCompile(`(?i)(\b(?:MRN|medical\s+record(?:\s+(?:number|no\.?|#))?)\s*(?:[:#=]|is)?\s*)[A-Z]{0,3}-?\d{5,12}\b`),
		repl:  "${1}",
		spans: labelled("mrn", "medical"),
	}},
	configv1.PatternSSN: {
		// Nine bare digits only after an SSN label; unlabelled they are too often something else.
		{re: regexp.MustCompile(`(?i)(\b(?:SSN|social\s+security(?:\s+(?:number|no\.?|#))?)\s*[:#=]?\s*)\d{9}\b`), repl: "${1}", spans: labelled("ssn", "social")},
		{re: regexp.MustCompile(`\b\d{3}[- ]\d{2}[- ]\d{4}\b`), spans: func(s string) [][2]int { return runs(s, numberish, 9, 0) }},
	},
	configv1.PatternPhone: {{
		// North American numbers: optional +1, area code with or without parentheses,
		// separators optional.
		re:    regexp.MustCompile(`(?:\+?\b1[\s.\-]?)?(?:\(\d{3}\)\s?|\b\d{3}[\s.\-]?)\d{3}[\s.\-]?\d{4}\b`),
		spans: func(s string) [][2]int { return runs(s, numberish, 10, 0) },
	}},
}

var builtinOrder = []string{configv1.PatternEmail, configv1.PatternMRN, configv1.PatternSSN, configv1.PatternPhone}

// Redactor masks configured patterns. The zero value and a nil *Redactor mask nothing. It is safe
// for concurrent use.
type Redactor struct {
	rules []rule
	paths [][]string
}

// New compiles a defaulted, validated redaction configuration. A disabled configuration gives a
// Redactor that masks nothing. JSON and Value mask the strings at or below paths, dot-separated,
// where "*" matches any one key or array element and "**" any number of them, such as
// "params.message.parts.*.text"; with no paths, every string. (String masks all it is given.)
func New(c configv1.Redaction, paths ...string) (*Redactor, error) {
	r := &Redactor{}
	if c.Disabled {
		return r, nil
	}
	for _, name := range builtinOrder {
		if !slices.Contains(c.Patterns, name) {
			continue
		}
		for _, b := range builtins[name] {
			b.name = name
			b.repl += "[REDACTED:" + name + "]"
			r.rules = append(r.rules, b)
		}
	}
	for _, p := range c.Patterns {
		if _, ok := builtins[p]; !ok {
			return nil, fmt.Errorf("redact: unknown pattern %q", p)
		}
	}
	for _, cp := range c.Custom {
		re, err := regexp.Compile(cp.Regex)
		if err != nil {
			return nil, fmt.Errorf("redact: pattern %q: %w", cp.Name, err)
		}
		if re.MatchString("") {
			return nil, fmt.Errorf("redact: pattern %q matches the empty string", cp.Name)
		}
		// "$" in the replacement is literal: the name is not a template.
		r.rules = append(r.rules, rule{name: cp.Name, re: re, repl: strings.ReplaceAll("[REDACTED:"+cp.Name+"]", "$", "$$")})
	}
	if len(paths) == 0 {
		paths = []string{"**"}
	}
	for _, f := range paths {
		if f == "" || slices.Contains(strings.Split(f, "."), "") {
			return nil, fmt.Errorf(`redact: path %q: must be dot-separated keys, "*" or "**"`, f)
		}
		// Consecutive "**" mean the same as one; collapsing them keeps matching polynomial.
		segs := slices.CompactFunc(strings.Split(f, "."), func(a, b string) bool { return a == "**" && b == "**" })
		r.paths = append(r.paths, segs)
	}
	return r, nil
}

// String returns s with every configured pattern masked.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	for i := range r.rules {
		ru := &r.rules[i]
		if ru.spans == nil {
			s = ru.re.ReplaceAllString(s, ru.repl)
			continue
		}
		spans := mergeSpans(ru.spans(s))
		if len(spans) == 0 {
			continue
		}
		var b strings.Builder
		last := 0
		for _, sp := range spans {
			b.WriteString(s[last:sp[0]])
			b.WriteString(ru.re.ReplaceAllString(s[sp[0]:sp[1]], ru.repl))
			last = sp[1]
		}
		b.WriteString(s[last:])
		s = b.String()
	}
	return s
}

// mergeSpans orders candidate windows and joins the ones that overlap or touch, so that each
// byte is examined once and the windows cut s into ordered, disjoint pieces. Found by the fuzzer:
// two "@" windows of "@ @" overlapped.
func mergeSpans(spans [][2]int) [][2]int {
	if len(spans) < 2 {
		return spans
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	out := spans[:1]
	for _, sp := range spans[1:] {
		if last := &out[len(out)-1]; sp[0] <= last[1] {
			last[1] = max(last[1], sp[1])
			continue
		}
		out = append(out, sp)
	}
	return out
}

// JSON returns data with the string values at the configured paths masked. Numbers keep their
// text; keys are re-ordered (sorted) and the output is compact. Object keys are not masked.
func (r *Redactor) JSON(data []byte) ([]byte, error) {
	if r == nil || len(r.rules) == 0 {
		return data, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("redact: %w", err)
	}
	v = r.Value(v)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("redact: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Value masks, in place where it can, the strings of a decoded JSON value (map[string]any,
// []any, string, and scalars) that lie at or below a configured path, and returns it.
func (r *Redactor) Value(v any) any {
	if r == nil || len(r.rules) == 0 {
		return v
	}
	path := make([]string, 0, 16)
	return r.walk(v, path)
}

func (r *Redactor) walk(v any, path []string) any {
	switch t := v.(type) {
	case string:
		if r.covered(path) {
			return r.String(t)
		}
		return t
	case map[string]any:
		for k, e := range t {
			t[k] = r.walk(e, append(path, k))
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = r.walk(e, append(path, strconv.Itoa(i)))
		}
		return t
	}
	return v
}

// covered reports whether some configured path matches path or a prefix of it.
func (r *Redactor) covered(path []string) bool {
	for _, p := range r.paths {
		if matchPrefix(p, path) {
			return true
		}
	}
	return false
}

// matchPrefix reports whether pattern matches a prefix of path, where "*" matches one segment
// and "**" any number, including none.
func matchPrefix(pattern, path []string) bool {
	if len(pattern) == 0 {
		return true
	}
	if pattern[0] == "**" {
		for i := 0; i <= len(path); i++ {
			if matchPrefix(pattern[1:], path[i:]) {
				return true
			}
		}
		return false
	}
	if len(path) == 0 {
		return false
	}
	return (pattern[0] == "*" || pattern[0] == path[0]) && matchPrefix(pattern[1:], path[1:])
}

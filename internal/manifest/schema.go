package manifest

import (
	"encoding"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// check walks a decoded JSON value v against the Go type t, as the strict decoder will read it,
// and returns every problem it finds, each naming its field: unknown fields (with the closest
// known name as a hint), values of the wrong type, and durations that do not parse. It removes
// what it reports from v, so that the rest can still be decoded and validated, and adds the paths
// it removed to *removed.
//
// The decoder itself stops at the first such problem and, for a duration, does not say which
// field it was: this walk is what lets a manifest's errors be reported all at once.
func check(path *field.Path, v any, t reflect.Type, removed *[]string) (errs []error, drop bool) {
	if v == nil {
		return nil, false // null is the zero value of any type
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		s, ok := v.(string)
		if !ok {
			return []error{fmt.Errorf("%s: %s is not a duration, such as 30s or 2m", path, describe(v))}, true
		}
		if _, err := time.ParseDuration(s); err != nil {
			return []error{fmt.Errorf("%s: %q is not a duration, such as 30s or 2m", path, s)}, true
		}
		return nil, false
	case reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler):
		return nil, false // quantities, timestamps, raw fields: the decoder's own rules
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return []error{fmt.Errorf("%s: %s is not a mapping", orRoot(path), describe(v))}, true
		}
		fields := jsonFields(t)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			child := path.Child(k)
			ft, known := fields[k]
			if !known {
				msg := fmt.Sprintf("unknown field %q", child.String())
				if hint := closest(k, fields); hint != "" {
					msg += fmt.Sprintf(" (did you mean %s?)", hint)
				}
				errs = append(errs, fmt.Errorf("%s", msg))
				delete(m, k)
				*removed = append(*removed, child.String())
				continue
			}
			e, bad := check(child, m[k], ft, removed)
			errs = append(errs, e...)
			if bad {
				delete(m, k)
				*removed = append(*removed, child.String())
			}
		}
		return errs, false
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return []error{fmt.Errorf("%s: %s is not a mapping", path, describe(v))}, true
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			e, bad := check(path.Key(k), m[k], t.Elem(), removed)
			errs = append(errs, e...)
			if bad {
				delete(m, k)
				*removed = append(*removed, path.Key(k).String())
			}
		}
		return errs, false
	case reflect.Slice, reflect.Array:
		l, ok := v.([]any)
		if !ok {
			return []error{fmt.Errorf("%s: %s is not a list", path, describe(v))}, true
		}
		for i, x := range l {
			e, bad := check(path.Index(i), x, t.Elem(), removed)
			errs = append(errs, e...)
			drop = drop || bad // the whole list goes: removing one item would renumber the others
		}
		return errs, drop
	case reflect.String:
		if _, ok := v.(string); !ok {
			return []error{fmt.Errorf("%s: %s is not a string (quote it)", path, describe(v))}, true
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return []error{fmt.Errorf("%s: %s is not true or false", path, describe(v))}, true
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		i, err := n.Int64()
		if !ok || err != nil {
			return []error{fmt.Errorf("%s: %s is not an integer", path, describe(v))}, true
		}
		if reflect.Zero(t).OverflowInt(i) {
			return []error{fmt.Errorf("%s: %d is out of range", path, i)}, true
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		i, err := strconv.ParseUint(string(n), 10, 64)
		if !ok || err != nil {
			return []error{fmt.Errorf("%s: %s is not a non-negative integer", path, describe(v))}, true
		}
		if reflect.Zero(t).OverflowUint(i) {
			return []error{fmt.Errorf("%s: %d is out of range", path, i)}, true
		}
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		f, err := n.Float64()
		if !ok || err != nil || math.IsInf(f, 0) {
			return []error{fmt.Errorf("%s: %s is not a number", path, describe(v))}, true
		}
	}
	return nil, false
}

var (
	durationType    = reflect.TypeFor[metav1.Duration]()
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func orRoot(p *field.Path) string {
	if s := p.String(); p != nil && s != "" {
		return s
	}
	return "the document"
}

// describe words a decoded JSON value for an error: `the string "three"`, `a list`.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case json.Number:
		return string(v)
	case bool:
		return strconv.FormatBool(v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprint(v)
}

// jsonFields maps the JSON names of t's fields, inline structs included, to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" && opts == "" {
			continue
		}
		if f.Anonymous && name == "" || slices.Contains(strings.Split(opts, ","), "inline") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			for k, v := range jsonFields(ft) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// closest returns the known field name nearest to k, if it is near enough to be a typo: the
// same name in another case, or within an edit distance of about a third of its length.
func closest(k string, fields map[string]reflect.Type) string {
	best, bestD := "", math.MaxInt
	for name := range fields {
		if strings.EqualFold(name, k) {
			return name
		}
		if d := editDistance(strings.ToLower(k), strings.ToLower(name)); d < bestD || d == bestD && name < best {
			best, bestD = name, d
		}
	}
	if bestD <= max(1, min(len(k), len(best))/3) {
		return best
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

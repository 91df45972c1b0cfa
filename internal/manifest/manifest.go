package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/agentplane/agentplane/api/v1alpha1"
)

// MaxFileSize bounds one manifest file; manifests are small, and a huge file is a mistake.
const MaxFileSize = 4 << 20

// Error is the problems with one document of one manifest file. Its message has a line per
// problem, each naming the file, the document and the field.
type Error struct {
	File     string // path of the file
	Document int    // 1-based index of the YAML document in the file; 0 for the whole file
	Errs     []error
}

func (e *Error) Error() string {
	where := e.File
	if e.Document > 0 {
		where = fmt.Sprintf("%s (document %d)", e.File, e.Document)
	}
	lines := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		lines[i] = where + ": " + err.Error()
	}
	return strings.Join(lines, "\n")
}

func (e *Error) Unwrap() []error { return e.Errs }

// Load reads every Agent in the given files and directories (a directory contributes its *.yaml and
// *.yml files, not recursively, in name order). It returns defaulted, validated agents in the order
// found, or every error found, joined. Each agent is annotated with its file's directory
// (v1alpha1.AnnotationManifestDir), and its working directory and program must be found on
// this machine (ResolvePaths): Load reads manifests for embedded mode.
func Load(paths ...string) ([]v1alpha1.Agent, error) {
	if len(paths) == 0 {
		return nil, errors.New("no manifest files given")
	}
	files, err := Files(paths...)
	if err != nil {
		return nil, err
	}

	var (
		agents []v1alpha1.Agent
		errs   []error
		seen   = map[string]string{}
	)
	for _, f := range files {
		data, err := readFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got, err := decode(f, data)
		if err != nil {
			errs = append(errs, err)
		}
		dir, err := filepath.Abs(filepath.Dir(f))
		if err != nil {
			errs = append(errs, &Error{File: f, Errs: []error{err}})
			continue
		}
		for _, d := range got {
			a := d.agent
			// Its relative paths are relative to this file, wherever up or apply runs.
			if a.Annotations == nil {
				a.Annotations = map[string]string{}
			}
			a.Annotations[v1alpha1.AnnotationManifestDir] = dir
			if _, fe := ResolvePaths(&a, dir); len(fe) > 0 {
				errs = append(errs, &Error{File: f, Document: d.doc, Errs: asErrors(fe)})
				continue
			}
			if prev, dup := seen[a.Name]; dup {
				errs = append(errs, &Error{File: f, Errs: []error{
					field.Duplicate(field.NewPath("metadata", "name"), a.Name+" (also defined in "+prev+")"),
				}})
				continue
			}
			seen[a.Name] = f
			agents = append(agents, a)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(agents) == 0 {
		return nil, fmt.Errorf("%s: no agents defined", strings.Join(paths, ", "))
	}
	return agents, nil
}

// Files expands paths into manifest files: a file stands for itself, a directory for its *.yaml
// and *.yml files (not recursively), in name order. A directory without any is an error.
func Files(paths ...string) ([]string, error) {
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		n := len(files)
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
		if len(files) == n {
			return nil, fmt.Errorf("%s: no *.yaml or *.yml files in this directory", p)
		}
	}
	return files, nil
}

func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &Error{File: name, Errs: []error{err}}
	}
	if n > MaxFileSize {
		return nil, &Error{File: name, Errs: []error{fmt.Errorf("file is larger than %d bytes", MaxFileSize)}}
	}
	return buf.Bytes(), nil
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// Decode decodes, defaults and validates every Agent in one YAML stream. name is used in errors.
// Agents that decode cleanly are returned even when others in the same stream do not.
// Decode looks at nothing but data: paths are checked by ResolvePaths.
func Decode(name string, data []byte) ([]v1alpha1.Agent, error) {
	docs, err := decode(name, data)
	agents := make([]v1alpha1.Agent, len(docs))
	for i, d := range docs {
		agents[i] = d.agent
	}
	return agents, err
}

// docAgent is an agent and the 1-based index of its document.
type docAgent struct {
	agent v1alpha1.Agent
	doc   int
}

func decode(name string, data []byte) ([]docAgent, error) {
	var (
		agents []docAgent
		errs   []error
	)
	for i, doc := range docSeparator.Split(string(data), -1) {
		if isBlank(doc) {
			continue
		}
		a, err := decodeOne([]byte(doc))
		if err != nil {
			errs = append(errs, &Error{File: name, Document: i + 1, Errs: err})
			continue
		}
		agents = append(agents, docAgent{*a, i + 1})
	}
	return agents, errors.Join(errs...)
}

func decodeOne(doc []byte) (*v1alpha1.Agent, []error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, []error{fmt.Errorf("invalid YAML: %w", trimYAMLErr(err))}
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &head); err != nil {
		return nil, []error{fmt.Errorf("a manifest must be a YAML mapping with apiVersion and kind: %w", err)}
	}
	if head.Kind != v1alpha1.KindAgent || head.APIVersion != v1alpha1.GroupVersion.String() {
		return nil, []error{fmt.Errorf("apiVersion %q, kind %q is not supported: expected apiVersion %s, kind %s",
			head.APIVersion, head.Kind, v1alpha1.GroupVersion, v1alpha1.KindAgent)}
	}
	// First every problem the schema shows, each with its field; the rest is then decoded and
	// validated, so that one run reports all of a document's errors.
	var raw any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, []error{fmt.Errorf("invalid YAML: %w", err)}
	}
	var removed []string
	errs, _ := check(nil, raw, reflect.TypeFor[v1alpha1.Agent](), &removed)
	errs = append(errs, explicitZeros(raw, &removed)...)
	if len(removed) > 0 {
		if js, err = json.Marshal(raw); err != nil {
			return nil, append(errs, err)
		}
	}
	var a v1alpha1.Agent
	strict, err := sigsjson.UnmarshalStrict(js, &a, sigsjson.DisallowUnknownFields)
	if err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			err = fmt.Errorf("%s: Invalid value: a %s, but must be %s", te.Field, te.Value, jsonKind(te.Type))
		}
		return nil, append(errs, err)
	}
	errs = append(errs, strict...)
	if a.Status.ObservedGeneration != 0 || len(a.Status.Conditions) > 0 || a.Status.Replicas != 0 {
		errs = append(errs, field.Forbidden(field.NewPath("status"), "status is written by agentplane, not by manifests"))
	}
	a.SetDefaults()
	for _, e := range a.Validate() {
		if !underAny(e.Field, removed) { // already reported, as what it was
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &a, nil
}

// zeroDefault is an integer field that SetDefaults fills when it is 0. An explicit 0 there is
// refused rather than silently replaced: it is not what the author asked for.
type zeroDefault struct {
	path []string
	def  int32
}

var zeroDefaulted = zeroDefaults()

func zeroDefaults() []zeroDefault {
	out := []zeroDefault{{[]string{"spec", "maxConcurrency"}, v1alpha1.DefaultMaxConcurrency}}
	for _, p := range []string{"startup", "readiness", "liveness"} {
		period, failures := v1alpha1.DefaultPeriodSeconds, v1alpha1.DefaultFailureThreshold
		if p == "startup" {
			period, failures = v1alpha1.DefaultStartupPeriodSeconds, v1alpha1.DefaultStartupFailureThreshold
		}
		out = append(out,
			zeroDefault{[]string{"spec", "probes", p, "periodSeconds"}, period},
			zeroDefault{[]string{"spec", "probes", p, "timeoutSeconds"}, v1alpha1.DefaultTimeoutSeconds},
			zeroDefault{[]string{"spec", "probes", p, "failureThreshold"}, failures})
	}
	return out
}

// explicitZeros reports (and removes) each field of zeroDefaulted given as 0 in raw.
func explicitZeros(raw any, removed *[]string) []error {
	var errs []error
	for _, z := range zeroDefaulted {
		m, ok := raw.(map[string]any)
		for _, k := range z.path[:len(z.path)-1] {
			if !ok {
				break
			}
			m, ok = m[k].(map[string]any)
		}
		if !ok {
			continue
		}
		last := z.path[len(z.path)-1]
		if n, isNum := m[last].(json.Number); isNum && n == "0" {
			p := strings.Join(z.path, ".")
			errs = append(errs, fmt.Errorf("%s: 0 is not allowed: it must be at least 1 (leave the field out for the default, %d)", p, z.def))
			delete(m, last)
			*removed = append(*removed, p)
		}
	}
	return errs
}

// underAny reports whether the field path p is one of paths or inside one of them.
func underAny(p string, paths []string) bool {
	for _, r := range paths {
		if p == r || strings.HasPrefix(p, r+".") || strings.HasPrefix(p, r+"[") {
			return true
		}
	}
	return false
}

func asErrors(fe field.ErrorList) []error {
	out := make([]error, len(fe))
	for i, e := range fe {
		out[i] = e
	}
	return out
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Bool:
		return "true or false"
	}
	return t.String()
}

func isBlank(doc string) bool {
	for line := range strings.Lines(doc) {
		t := strings.TrimSpace(line)
		if t != "" && !strings.HasPrefix(t, "#") {
			return false
		}
	}
	return true
}

func trimYAMLErr(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), "error converting YAML to JSON: "))
}

// Sort orders agents by name, the order listings use.
func Sort(agents []v1alpha1.Agent) {
	slices.SortFunc(agents, func(a, b v1alpha1.Agent) int { return strings.Compare(a.Name, b.Name) })
}

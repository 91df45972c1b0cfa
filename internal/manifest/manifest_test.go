package manifest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/agentplane/agentplane/api/v1alpha1"
)

const good = `apiVersion: agentplane.io/v1alpha1
kind: Agent
metadata:
  name: triage
spec:
  replicas: 3
  maxConcurrency: 2
  command: [agentplane, simagent]
  args: ["--latency", "100ms"]
  env:
  - name: MODEL
    value: small
  placement:
    site: clinic-a
`

func TestDecodeDefaults(t *testing.T) {
	agents, err := Decode("good.yaml", []byte(good+"---\n# only a comment\n---\n"+strings.Replace(good, "triage", "sched", 1)))
	if err != nil {
		t.Fatalf("Decode() error = %v", err)
	}
	if len(agents) != 2 {
		t.Fatalf("Decode() = %d agents, want 2", len(agents))
	}
	a := agents[0]
	if a.Name != "triage" || a.DesiredReplicas() != 3 || a.Spec.MaxConcurrency != 2 || a.Spec.State != v1alpha1.Stateless {
		t.Errorf("decoded %+v", a.Spec)
	}
	if p := a.Spec.Probes.Readiness; p.Path != v1alpha1.DefaultProbePath || p.PeriodSeconds != v1alpha1.DefaultPeriodSeconds {
		t.Errorf("readiness probe defaults = %+v", p)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // each must appear in the error
	}{
		{"unknown field", strings.Replace(good, "replicas: 3", "replicas: 3\n  replicass: 2", 1), []string{"bad.yaml (document 1)", `unknown field "spec.replicass" (did you mean replicas?)`}},
		{"unknown field, other case", strings.Replace(good, "maxConcurrency: 2", "maxconcurrency: 2", 1), []string{`unknown field "spec.maxconcurrency" (did you mean maxConcurrency?)`}},
		{"unknown field, typo", strings.Replace(good, "maxConcurrency: 2", "maxConcurency: 2", 1), []string{`unknown field "spec.maxConcurency" (did you mean maxConcurrency?)`}},
		{"unknown field, nested", strings.Replace(good, "site: clinic-a", "sites: clinic-a", 1), []string{`unknown field "spec.placement.sites" (did you mean site?)`}},
		{"unknown field, no hint", strings.Replace(good, "replicas: 3", "replicas: 3\n  colour: blue", 1), []string{`bad.yaml (document 1): unknown field "spec.colour"`}},
		{"wrong type", strings.Replace(good, "replicas: 3", `replicas: "three"`, 1), []string{"bad.yaml (document 1): spec.replicas: \"three\" is not an integer"}},
		{"wrong type in a list", strings.Replace(good, "[agentplane, simagent]", "[agentplane, 3]", 1), []string{"spec.command[1]: 3 is not a string"}},
		{"duration", strings.Replace(good, "maxConcurrency: 2", "maxConcurrency: 2\n  taskTimeout: 2 minutes", 1), []string{`bad.yaml (document 1): spec.taskTimeout: "2 minutes" is not a duration, such as 30s or 2m`}},
		{"duration as a number", strings.Replace(good, "maxConcurrency: 2", "maxConcurrency: 2\n  taskTimeout: 5", 1), []string{`spec.taskTimeout: 5 is not a duration`}},
		{"nested duration", strings.Replace(good, "maxConcurrency: 2", "maxConcurrency: 2\n  autoscaling: {maxReplicas: 3, scaleDownDelay: soon}", 1), []string{`spec.autoscaling.scaleDownDelay: "soon" is not a duration`}},
		{"explicit zero concurrency", strings.Replace(good, "maxConcurrency: 2", "maxConcurrency: 0", 1), []string{"spec.maxConcurrency: 0 is not allowed", "leave the field out for the default, 4"}},
		{"explicit zero probe", strings.Replace(good, "replicas: 3", "replicas: 3\n  probes: {readiness: {periodSeconds: 0}}", 1), []string{"spec.probes.readiness.periodSeconds: 0 is not allowed"}},
		{"negative replicas", strings.Replace(good, "replicas: 3", "replicas: -1", 1), []string{"spec.replicas", "between 0 and"}},
		{"zero concurrency", strings.Replace(good, "maxConcurrency: 2", "maxConcurrency: -2", 1), []string{"spec.maxConcurrency", "at least 1"}},
		{"bad name", strings.Replace(good, "name: triage", "name: Front_Desk", 1), []string{"metadata.name", "Front_Desk"}},
		{"missing name", strings.Replace(good, "name: triage", "labels: {}", 1), []string{"metadata.name: Required"}},
		{"bad state", strings.Replace(good, "replicas: 3", "replicas: 3\n  state: sometimes", 1), []string{"spec.state", "stateless", "stateful"}},
		{"stateful without memory", strings.Replace(good, "replicas: 3", "replicas: 3\n  state: stateful", 1), []string{"spec.memory: Required"}},
		{"no command", strings.Replace(good, "  command: [agentplane, simagent]\n", "", 1), []string{"spec.command: Required"}},
		{"reserved env", strings.Replace(good, "name: MODEL", "name: PORT", 1), []string{"spec.env[0].name", "set by agentplane"}},
		{"duplicate key", strings.Replace(good, "replicas: 3", "replicas: 3\n  replicas: 4", 1), []string{"invalid YAML", "replicas"}},
		{"wrong kind", strings.Replace(good, "kind: Agent", "kind: Deployment", 1), []string{`kind "Deployment" is not supported`}},
		{"wrong version", strings.Replace(good, "v1alpha1", "v2", 1), []string{`apiVersion "agentplane.io/v2"`}},
		{"not a mapping", "- a\n- b\n", []string{"YAML mapping"}},
		{"bad probe path", strings.Replace(good, "replicas: 3", "replicas: 3\n  probes: {liveness: {path: health}}", 1), []string{"spec.probes.liveness.path", `start with "/"`}},
		{"site outside allowed", strings.Replace(good, "site: clinic-a", "site: clinic-a\n    allowedSites: [hub]", 1), []string{"spec.placement.site", "allowedSites"}},
		{"status set", good + "status:\n  replicas: 2\n", []string{"status"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode("bad.yaml", []byte(tt.doc))
			if err == nil {
				t.Fatalf("Decode() error = nil, want one mentioning %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Decode() error = %q, want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "did you mean") && !strings.Contains(strings.Join(tt.want, " "), "did you mean") {
				t.Errorf("Decode() error = %q: a hint where no known field is near", err)
			}
		})
	}
}

// TestDecodeReportsEveryError checks that one run reports every problem of a document, each on
// its own line naming the file, the document and the field, and of every document of a file.
func TestDecodeReportsEveryError(t *testing.T) {
	bad := strings.NewReplacer(
		"replicas: 3", "replicas: -1\n  maxConcurency: 2\n  taskTimeout: 2 minutes",
		"maxConcurrency: 2", "maxConcurrency: 0",
		"[agentplane, simagent]", "[agentplane, 7]",
	).Replace(good)
	_, err := Decode("agents.yaml", []byte(good+"---\n"+bad+"---\n"+strings.Replace(good, "replicas: 3", "replicas: three", 1)))
	if err == nil {
		t.Fatal("Decode() error = nil")
	}
	want := []string{
		`agents.yaml (document 2): unknown field "spec.maxConcurency" (did you mean maxConcurrency?)`,
		`agents.yaml (document 2): spec.taskTimeout: "2 minutes" is not a duration, such as 30s or 2m`,
		`agents.yaml (document 2): spec.maxConcurrency: 0 is not allowed: it must be at least 1 (leave the field out for the default, 4)`,
		`agents.yaml (document 2): spec.command[1]: 7 is not a string (quote it)`,
		`agents.yaml (document 2): spec.replicas: Invalid value: -1: must be between 0 and 1000`,
		`agents.yaml (document 3): spec.replicas: "three" is not an integer`,
	}
	lines := strings.Split(err.Error(), "\n")
	for _, w := range want {
		if !slices.Contains(lines, w) {
			t.Errorf("no line %q in the error:\n%s", w, err)
		}
	}
	if len(lines) != len(want) {
		t.Errorf("the error has %d lines, want %d (a removed field is not reported again, as Required):\n%s", len(lines), len(want), err)
	}
}

func TestLoadDirAndDuplicates(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", good)
	write("b.yml", strings.Replace(good, "triage", "sched", 1))
	write("notes.txt", "not a manifest")
	agents, err := Load(dir)
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	if len(agents) != 2 || agents[0].Name != "triage" || agents[1].Name != "sched" {
		t.Fatalf("Load() = %v", agents)
	}

	write("c.yaml", good)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "c.yaml") || !strings.Contains(err.Error(), "also defined in") {
		t.Fatalf("Load() with a duplicate name: error = %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("Load() of a missing file: error = nil")
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no *.yaml") {
		t.Fatalf("Load() of an empty dir: error = %v", err)
	}
}

func TestLoadExamples(t *testing.T) {
	agents, err := Load("../../examples/clinic")
	if err != nil {
		t.Fatalf("the shipped examples must load: %v", err)
	}
	if len(agents) < 3 {
		t.Fatalf("examples/clinic has %d agents, want at least 3", len(agents))
	}
}

// FuzzDecode checks that no input panics the decoder, and that whatever decodes survives
// marshal → decode unchanged.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(good + "---\n" + good))
	f.Add([]byte("apiVersion: agentplane.io/v1alpha1\nkind: Agent\nmetadata: {name: x}\nspec: {command: [a], state: stateful, memory: {size: 1Gi}}\n"))
	f.Add([]byte(strings.Replace(good, "maxConcurrency: 2", "maxConcurency: 0\n  taskTimeout: 2 minutes\n  probes: {startup: {periodSeconds: 0}}", 1)))
	f.Add([]byte(strings.Replace(good, "[agentplane, simagent]", "[agentplane, {a: 1}]", 1)))
	f.Add([]byte("{}"))
	f.Add([]byte("---\n---\n- [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		agents, err := Decode("fuzz.yaml", data)
		if err != nil {
			return
		}
		for _, a := range agents {
			out, err := yaml.Marshal(a)
			if err != nil {
				t.Fatalf("Marshal(%+v) error = %v", a, err)
			}
			again, err := Decode("again.yaml", out)
			if err != nil {
				t.Fatalf("re-decoding a decoded agent failed: %v\n%s", err, out)
			}
			if len(again) != 1 {
				t.Fatalf("re-decoding gave %d agents", len(again))
			}
			b, _ := yaml.Marshal(again[0])
			if string(b) != string(out) {
				t.Fatalf("round trip changed the agent:\n%s\n---\n%s", out, b)
			}
		}
	})
}

func TestTaskTimeout(t *testing.T) {
	agents, err := Decode("t.yaml", []byte(strings.Replace(good, "maxConcurrency: 2", "maxConcurrency: 2\n  taskTimeout: 90s", 1)))
	if err != nil || agents[0].Spec.TaskTimeout == nil || agents[0].Spec.TaskTimeout.Duration != 90*time.Second {
		t.Fatalf("taskTimeout: %v %+v", err, agents)
	}
	for _, bad := range []string{"0s", "-5s", "soon"} {
		if _, err := Decode("t.yaml", []byte(strings.Replace(good, "maxConcurrency: 2", "maxConcurrency: 2\n  taskTimeout: "+bad, 1))); err == nil {
			t.Errorf("taskTimeout %q accepted", bad)
		}
	}
}

// TestLoadResolvesPathsAgainstTheManifest loads a manifest from another working directory: its
// relative command and working directory are relative to the manifest's directory, which is
// also the default working directory.
func TestLoadResolvesPathsAgainstTheManifest(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"bin", "data"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "agent"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	m := strings.Replace(good, "[agentplane, simagent]", "[./bin/agent]\n  workingDir: data", 1) + "---\n" +
		strings.Replace(strings.Replace(good, "triage", "sched", 1), "[agentplane, simagent]", "[sh, -c, 'exit 0']", 1)
	if err := os.WriteFile(filepath.Join(dir, "agents.yaml"), []byte(m), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())

	agents, err := Load(filepath.Join(dir, "agents.yaml"))
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	for i, want := range []Paths{
		{Dir: filepath.Join(dir, "data"), Program: filepath.Join(dir, "bin", "agent")},
		{Dir: dir, Program: lookPath(t, "sh")},
	} {
		a := agents[i]
		if got := a.Annotations[v1alpha1.AnnotationManifestDir]; got != dir {
			t.Errorf("%s: manifest directory %q, want %q", a.Name, got, dir)
		}
		if p, errs := ResolvePaths(&a, "/elsewhere"); len(errs) > 0 || p != want {
			t.Errorf("%s: ResolvePaths() = %+v, %v; want %+v", a.Name, p, errs, want)
		}
	}
}

func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skip(err)
	}
	abs, _ := filepath.Abs(p)
	return abs
}

// TestLoadRefusesWhatCannotRun: a program that is not there or cannot run, or a working
// directory that is not there, is an error at load, naming the file, the document and the field,
// not a replica restarted for ever.
func TestLoadRefusesWhatCannotRun(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	docs := []string{
		good,
		strings.Replace(good, "[agentplane, simagent]", "[no-such-program-here]", 1),
		strings.Replace(good, "[agentplane, simagent]", "[./missing.sh]", 1),
		strings.Replace(good, "[agentplane, simagent]", "[./notes.txt]", 1),
		strings.Replace(good, "[agentplane, simagent]", "[./]", 1),
		strings.Replace(good, "[agentplane, simagent]", "[agentplane]\n  workingDir: nowhere", 1),
	}
	for i := 1; i < len(docs); i++ {
		docs[i] = strings.Replace(docs[i], "name: triage", fmt.Sprintf("name: a%d", i), 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "agents.yaml"), []byte(strings.Join(docs, "---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(filepath.Join(dir, "agents.yaml"))
	if err == nil {
		t.Fatal("Load() error = nil")
	}
	f := filepath.Join(dir, "agents.yaml")
	for _, want := range []string{
		f + ` (document 2): spec.command[0]: Invalid value: "no-such-program-here": no such program in $PATH`,
		f + ` (document 3): spec.command[0]: Invalid value: "./missing.sh": no such file: ` + filepath.Join(dir, "missing.sh") + ` (a relative command is relative to the manifest's directory, ` + dir + `)`,
		f + ` (document 4): spec.command[0]: Invalid value: "./notes.txt": ` + filepath.Join(dir, "notes.txt") + ` is not executable (chmod +x)`,
		f + ` (document 6): spec.workingDir: Invalid value: "nowhere": no such directory: ` + filepath.Join(dir, "nowhere"),
	} {
		if !strings.Contains(err.Error(), want+"\n") && !strings.HasSuffix(err.Error(), want) {
			t.Errorf("error lacks the line %q:\n%s", want, err)
		}
	}
	if !strings.Contains(err.Error(), f+` (document 5): spec.command[0]: Invalid value: "./": `+dir+" is a directory") {
		t.Errorf("error lacks the directory as a command:\n%s", err)
	}
	if strings.Contains(err.Error(), "document 1") {
		t.Errorf("the good document is reported:\n%s", err)
	}
}

package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/manifest"
	"github.com/agentplane/agentplane/internal/supervisor"
)

// testExe is this test binary. With AGENTPLANE_CLI_TEST_MAIN=1 it runs the agentplane command
// line instead of the tests, so that agents of the tests can run "agentplane simagent".
var testExe string

func TestMain(m *testing.M) {
	if os.Getenv("AGENTPLANE_CLI_TEST_MAIN") == "1" {
		ctx, stop := SignalContext()
		code := Main(ctx, os.Args[1:], Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
		stop()
		os.Exit(code)
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testExe = exe
	os.Exit(m.Run())
}

// agentYAML is the manifest of a simulated agent run by this test binary.
func agentYAML(name string, replicas int, extra string) string {
	return fmt.Sprintf(`apiVersion: agentplane.io/v1alpha1
kind: Agent
metadata:
  name: %s
spec:
  replicas: %d
  command: [agentplane, simagent]
  args: [--latency, 10ms]
  env:
    - {name: AGENTPLANE_CLI_TEST_MAIN, value: "1"}
    - {name: GORACE, value: atexit_sleep_ms=0}
%s`, name, replicas, extra)
}

// adminEnv is a running Supervisor with the admin handler in front of it, and the gateway's
// GET /api/v1/replicas, which `agentplane logs` uses.
type adminEnv struct {
	t       *testing.T
	sup     *supervisor.Supervisor
	h       *adminHandler
	srv     *httptest.Server
	dataDir string
}

func startAdmin(t *testing.T, manifests string) *adminEnv {
	t.Helper()
	return startAdminIn(t, "", manifests)
}

// startAdminIn is startAdmin with the agents read as if from a manifest file in dir (when not
// empty): applying a file from there changes nothing else about them.
func startAdminIn(t *testing.T, dir, manifests string) *adminEnv {
	t.Helper()
	agents, err := manifest.Decode("test", []byte(manifests))
	if err != nil {
		t.Fatal(err)
	}
	for i := range agents {
		if dir != "" {
			agents[i].Annotations = map[string]string{v1alpha1.AnnotationManifestDir: dir}
		}
	}
	dataDir := t.TempDir()
	sup, err := supervisor.New(agents, supervisor.Options{
		DataDir: dataDir, Executable: testExe, Grace: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
		Backoff: supervisor.Backoff{Initial: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("the supervisor did not stop")
		}
	})
	env := &adminEnv{t: t, sup: sup, dataDir: dataDir}
	env.h = newAdminHandler(sup, dataDir, func(paths ...string) ([]v1alpha1.Agent, error) {
		if len(paths) > 0 {
			return nil, fmt.Errorf("unexpected paths %q", paths)
		}
		return manifest.Decode("up", []byte(manifests))
	})
	env.h.poll = 20 * time.Millisecond
	mux := http.NewServeMux()
	mux.Handle("/api/v1/", env.h)
	mux.HandleFunc("GET /api/v1/replicas", func(w http.ResponseWriter, r *http.Request) {
		out := []gateway.ReplicaStatus{}
		for _, a := range sup.Snapshot() {
			for _, e := range a.Endpoints {
				out = append(out, gateway.ReplicaStatus{Endpoint: e})
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"replicas": out})
	})
	env.srv = httptest.NewServer(mux)
	t.Cleanup(env.srv.Close)
	return env
}

// waitFor waits until cond holds for the supervisor's snapshot.
func (e *adminEnv) waitFor(what string, cond func([]discovery.Agent) bool) {
	e.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		ch := e.sup.Changed()
		if cond(e.sup.Snapshot()) {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			b, _ := json.MarshalIndent(e.sup.Snapshot(), "", "  ")
			e.t.Fatalf("timed out waiting for %s:\n%s", what, b)
		}
	}
}

func readyReplicas(agent string, n int) func([]discovery.Agent) bool {
	return func(snap []discovery.Agent) bool {
		a, ok := discovery.Lookup(snap, agent)
		return ok && len(a.Endpoints) == n && a.ReadyCount() == n
	}
}

func (e *adminEnv) post(path, contentType, body string) (int, string) {
	e.t.Helper()
	res, err := http.Post(e.srv.URL+path, contentType, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func (e *adminEnv) get(path string) (int, string) {
	e.t.Helper()
	res, err := http.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func decodeDiff(t *testing.T, body string) supervisor.Diff {
	t.Helper()
	var d supervisor.Diff
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("not a Diff: %v\n%s", err, body)
	}
	return d
}

func TestAdminApply(t *testing.T) {
	t.Parallel()
	env := startAdmin(t, agentYAML("echo", 1, ""))
	env.waitFor("echo ready", readyReplicas("echo", 1))

	code, body := env.post("/api/v1/apply", "application/yaml", agentYAML("echo", 2, ""))
	if d := decodeDiff(t, body); code != http.StatusOK || fmt.Sprint(d.Scaled) != "[{echo 1 2}]" {
		t.Fatalf("scale up: %d %s", code, body)
	}
	env.waitFor("2 ready", readyReplicas("echo", 2))

	// Without prune, agents not in the body stay.
	code, body = env.post("/api/v1/apply", "application/x-yaml; charset=utf-8", agentYAML("other", 1, ""))
	if d := decodeDiff(t, body); code != http.StatusOK || fmt.Sprint(d.Added) != "[other]" || fmt.Sprint(d.Unchanged) != "[echo]" {
		t.Fatalf("add: %d %s", code, body)
	}
	// With prune, they go.
	code, body = env.post("/api/v1/apply?prune=true", "application/yaml", agentYAML("other", 1, ""))
	if d := decodeDiff(t, body); code != http.StatusOK || fmt.Sprint(d.Removed) != "[echo]" {
		t.Fatalf("prune: %d %s", code, body)
	}
	if _, ok := discovery.Lookup(env.sup.Snapshot(), "echo"); ok {
		t.Error("echo still runs after a prune")
	}
	// Reload applies the manifests up was started with, as the whole set.
	code, body = env.post("/api/v1/apply?reload=true", "application/yaml", "")
	if d := decodeDiff(t, body); code != http.StatusOK || fmt.Sprint(d.Added) != "[echo]" || fmt.Sprint(d.Removed) != "[other]" {
		t.Fatalf("reload: %d %s", code, body)
	}

	for _, tc := range []struct {
		name, path, ct, body string
		code                 int
		want                 string
	}{
		{"form", "/api/v1/apply", "text/plain", agentYAML("echo", 3, ""), http.StatusUnsupportedMediaType, "application/yaml"},
		{"no content type", "/api/v1/apply", "", agentYAML("echo", 3, ""), http.StatusUnsupportedMediaType, "application/yaml"},
		{"unknown field", "/api/v1/apply", "application/yaml", agentYAML("echo", 3, "  replicaz: 2\n"), http.StatusBadRequest, `unknown field \"spec.replicaz\"`},
		{"invalid value", "/api/v1/apply", "application/yaml", agentYAML("echo", -3, ""), http.StatusBadRequest, "spec.replicas"},
		{"empty", "/api/v1/apply", "application/yaml", "# nothing\n", http.StatusBadRequest, "no agents"},
		{"duplicate", "/api/v1/apply", "application/yaml", agentYAML("echo", 3, "") + "---\n" + agentYAML("echo", 2, ""), http.StatusBadRequest, "defined twice"},
		{"too large", "/api/v1/apply", "application/yaml", strings.Repeat("#", adminMaxApplyBytes+1), http.StatusRequestEntityTooLarge, "larger than"},
		{"bad prune", "/api/v1/apply?prune=maybe", "application/yaml", agentYAML("echo", 3, ""), http.StatusBadRequest, "prune"},
		{"reload with a body", "/api/v1/apply?reload=true", "application/yaml", agentYAML("echo", 3, ""), http.StatusBadRequest, "no manifests"},
	} {
		code, body := env.post(tc.path, tc.ct, tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s; want %d with %q", tc.name, code, body, tc.code, tc.want)
		}
	}
	if a, _ := env.sup.Agent("echo"); *a.Spec.Replicas != 1 {
		t.Errorf("a refused apply changed echo: %d replicas", *a.Spec.Replicas)
	}
	if code, _ := env.get("/api/v1/apply"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /api/v1/apply: %d", code)
	}
}

func TestAdminRefusesWhatIsNotLocal(t *testing.T) {
	t.Parallel()
	h := newAdminHandler(nil, t.TempDir(), nil)
	for _, tc := range []struct {
		name, remote, host, origin, fetchSite string
		code                                  int
	}{
		{"loopback v4", "127.0.0.1:5000", "127.0.0.1:8080", "", "", http.StatusNotFound},
		{"loopback v6", "[::1]:5000", "[::1]:8080", "", "", http.StatusNotFound},
		{"localhost", "127.0.0.1:5000", "localhost:8080", "http://localhost:8080", "same-origin", http.StatusNotFound},
		{"remote caller", "192.0.2.7:5000", "127.0.0.1:8080", "", "", http.StatusForbidden},
		{"rebound name", "127.0.0.1:5000", "evil.example:8080", "", "", http.StatusForbidden},
		{"other origin", "127.0.0.1:5000", "127.0.0.1:8080", "http://evil.example", "", http.StatusForbidden},
		{"cross-site", "127.0.0.1:5000", "127.0.0.1:8080", "", "cross-site", http.StatusForbidden},
	} {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/logs/x-0", nil)
		r.RemoteAddr, r.Host = tc.remote, tc.host
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if tc.fetchSite != "" {
			r.Header.Set("Sec-Fetch-Site", tc.fetchSite)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		// 404: allowed through, and there is no log of x-0.
		if w.Code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body, tc.code)
		}
	}
}

func TestAdminLogs(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	h := newAdminHandler(nil, dataDir, nil)
	h.poll = 10 * time.Millisecond
	srv := httptest.NewServer(h)
	defer srv.Close()
	path := filepath.Join(dataDir, "logs", "triage", "triage-1.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("one\ntwo\nthree\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A file next to the logs directory, which no request may reach.
	if err := os.WriteFile(filepath.Join(dataDir, "secret-0.log"), []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	get := func(p string) (int, string) {
		res, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/api/v1/logs/triage-1", 200, "one\ntwo\nthree\n"},
		{"/api/v1/logs/triage-1?tail=2", 200, "two\nthree\n"},
		{"/api/v1/logs/triage-1?tail=0", 200, ""},
		{"/api/v1/logs/triage-1?tail=10", 200, "one\ntwo\nthree\n"},
		{"/api/v1/logs/triage-2", 404, "no log for replica triage-2"},
		{"/api/v1/logs/triage-1?tail=-1", 400, "tail"},
		{"/api/v1/logs/triage-1?tail=x", 400, "tail"},
		{"/api/v1/logs/triage-1?follow=perhaps", 400, "follow"},
		{"/api/v1/logs/triage", 400, "not a replica name"},
		{"/api/v1/logs/triage-01", 400, "not a replica name"},
		{"/api/v1/logs/Triage-1", 400, "not a replica name"},
		{"/api/v1/logs/..%2Fsecret-0", 400, "not a replica name"},
		{"/api/v1/logs/triage%2F..%2F..%2Fsecret-0", 400, "not a replica name"},
		{"/api/v1/logs/.-0", 400, "not a replica name"},
	} {
		code, body := get(tc.path)
		if code != tc.code || (code == 200 && body != tc.want) || (code != 200 && !strings.Contains(body, tc.want)) {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, code, body, tc.code, tc.want)
		}
		if strings.Contains(body, "secret") && !strings.Contains(body, "not a replica name") {
			t.Errorf("GET %s reached outside the logs directory: %q", tc.path, body)
		}
	}
	// A symlink in the logs directory is not followed.
	if err := os.Symlink(filepath.Join(dataDir, "secret-0.log"), filepath.Join(dataDir, "logs", "triage", "triage-9.log")); err != nil {
		t.Fatal(err)
	}
	if code, body := get("/api/v1/logs/triage-9"); code == 200 || strings.Contains(body, "secret\n") {
		t.Errorf("a symlinked log was served: %d %q", code, body)
	}

	t.Run("follow", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/logs/triage-1?tail=1&follow=true", nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		lines := bufio.NewReader(res.Body)
		readLine := func() string {
			t.Helper()
			got := make(chan string, 1)
			go func() { l, _ := lines.ReadString('\n'); got <- l }()
			select {
			case l := <-got:
				return l
			case <-time.After(10 * time.Second):
				t.Fatal("no line within 10s")
				return ""
			}
		}
		if l := readLine(); l != "three\n" {
			t.Fatalf("first line %q", l)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fmt.Fprintln(f, "four")
		if l := readLine(); l != "four\n" {
			t.Fatalf("appended line %q", l)
		}
		fmt.Fprintln(f, "five")
		if l := readLine(); l != "five\n" {
			t.Fatalf("appended line %q", l)
		}
		// stopFollowing ends the stream, for a gateway that drains.
		h.stopFollowing()
		done := make(chan error, 1)
		go func() { _, err := io.ReadAll(lines); done <- err }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stream did not end cleanly: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the followed stream did not end after stopFollowing")
		}
	})
}

func TestTailOffset(t *testing.T) {
	for _, tc := range []struct {
		data string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\nb\nc\n", 0, ""},
		{"a\nb\nc\n", 1, "c\n"},
		{"a\nb\nc\n", 3, "a\nb\nc\n"},
		{"a\nb\nc\n", 4, "a\nb\nc\n"},
		{"a\nb\nc", 1, "c"},
		{"a\nb\nc", 2, "b\nc"},
		{"\n\n\n", 2, "\n\n"},
		{strings.Repeat("x", 100<<10) + "\nlast\n", 1, "last\n"},
		{"first\n" + strings.Repeat("y\n", 40<<10), 40 << 10, strings.Repeat("y\n", 40<<10)},
	} {
		r := strings.NewReader(tc.data)
		off, err := tailOffset(r, int64(len(tc.data)), tc.n)
		if err != nil || tc.data[off:] != tc.want {
			got := tc.data[off:]
			if len(got) > 40 {
				got = got[:40] + "..."
			}
			t.Errorf("tail %d of %.20q: %q, %v", tc.n, tc.data, got, err)
		}
	}
}

func TestAdminDescribe(t *testing.T) {
	t.Parallel()
	env := startAdmin(t, agentYAML("echo", 2, "  description: echoes\n"))
	env.waitFor("ready", readyReplicas("echo", 2))

	code, body := env.get("/api/v1/agents/echo")
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	var d AgentDescription
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	a := d.Agent
	if a.Name != "echo" || a.Spec.Description != "echoes" || a.Spec.MaxConcurrency != v1alpha1.DefaultMaxConcurrency ||
		a.Spec.Probes == nil || a.Spec.Probes.Readiness.PeriodSeconds != v1alpha1.DefaultPeriodSeconds {
		t.Errorf("spec not as applied and defaulted: %+v", a.Spec)
	}
	if a.Status.Replicas != 2 || a.Status.ReadyReplicas != 2 || len(d.Replicas) != 2 || d.Replicas[1].Name != "echo-1" {
		t.Errorf("status %+v, replicas %+v", a.Status, d.Replicas)
	}
	conds := map[string]string{}
	for _, c := range a.Status.Conditions {
		conds[c.Type] = string(c.Status) + "/" + c.Reason
	}
	if want := "map[Available:True/ReplicaAvailable Degraded:False/AsExpected Progressing:False/Complete Ready:True/AllReplicasReady]"; fmt.Sprint(conds) != want {
		t.Errorf("conditions %v, want %s", conds, want)
	}

	if code, body := env.get("/api/v1/agents/nope"); code != http.StatusNotFound || !strings.Contains(body, `no agent \"nope\"`) {
		t.Errorf("unknown agent: %d %s", code, body)
	}
	if code, _ := env.get("/api/v1/agents/Not_An_Agent"); code != http.StatusBadRequest {
		t.Errorf("invalid name: %d", code)
	}
}

func TestAgentStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ep := func(name, state string, ready bool) discovery.Endpoint {
		return discovery.Endpoint{Name: name, State: state, Ready: ready, Since: now.Add(-time.Minute)}
	}
	for _, tc := range []struct {
		name     string
		a        discovery.Agent
		outdated []string
		want     string // Ready Available Progressing Degraded
	}{
		{"all ready", discovery.Agent{Desired: 2, Endpoints: []discovery.Endpoint{ep("a-0", "Running", true), ep("a-1", "Running", true)}}, nil,
			"True/AllReplicasReady True/ReplicaAvailable False/Complete False/AsExpected"},
		{"starting", discovery.Agent{Desired: 2, Endpoints: []discovery.Endpoint{ep("a-0", "Running", true), ep("a-1", "Starting", false)}}, nil,
			"False/ReplicasNotReady True/ReplicaAvailable True/ReplicasChanging False/AsExpected"},
		{"surge of a rolling update", discovery.Agent{Desired: 1, Endpoints: []discovery.Endpoint{ep("a-0", "Terminating", false), ep("a-0", "Running", true)}}, nil,
			"True/AllReplicasReady True/ReplicaAvailable True/ReplicasChanging False/AsExpected"},
		{"crash loop", discovery.Agent{Desired: 1, Endpoints: []discovery.Endpoint{ep("a-0", "CrashLoopBackOff", false)}}, nil,
			"False/ReplicasNotReady False/NoReplicaReady False/Complete True/CrashLoopBackOff"},
		{"failing readiness", discovery.Agent{Desired: 2, Endpoints: []discovery.Endpoint{ep("a-0", "Running", false), ep("a-1", "Running", true)}}, nil,
			"False/ReplicasNotReady True/ReplicaAvailable False/Complete True/ReadinessFailing"},
		{"scaled to zero", discovery.Agent{Desired: 0, Endpoints: []discovery.Endpoint{}}, nil,
			"True/AllReplicasReady False/ScaledToZero False/Complete False/AsExpected"},
		{"stalled rolling update", discovery.Agent{Desired: 1, Endpoints: []discovery.Endpoint{ep("a-0", "Running", true)}}, []string{"a-0"},
			"True/AllReplicasReady True/ReplicaAvailable False/RolloutStalled False/AsExpected"},
	} {
		st := agentStatus(tc.a, tc.outdated, now)
		var got []string
		for _, c := range st.Conditions {
			got = append(got, string(c.Status)+"/"+c.Reason)
			if !c.LastTransitionTime.Time.Equal(now.Add(-time.Minute)) && len(tc.a.Endpoints) > 0 {
				t.Errorf("%s: %s transition time %v", tc.name, c.Type, c.LastTransitionTime)
			}
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%s: %s\nwant %s", tc.name, strings.Join(got, " "), tc.want)
		}
	}
}

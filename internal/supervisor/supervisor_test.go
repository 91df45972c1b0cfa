package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/testutil"
)

// probeUnit makes a probe's periodSeconds this long in tests, so that the default startup
// probe polls every 25ms.
const probeUnit = 25 * time.Millisecond

// testAgent is a defaulted, valid agent that runs the helper agent in mode.
func testAgent(t *testing.T, name string, replicas int32, mode string) v1alpha1.Agent {
	t.Helper()
	a := v1alpha1.Agent{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindAgent},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.AgentSpec{
			Replicas: &replicas,
			Command:  []string{testExe},
			Env: []v1alpha1.EnvVar{
				{Name: "SUPERVISOR_TEST_AGENT", Value: mode},
				// Under -race, the helper would otherwise sleep 1s when it exits.
				{Name: "GORACE", Value: "atexit_sleep_ms=0"},
			},
		},
	}
	a.SetDefaults()
	if errs := a.Validate(); len(errs) > 0 {
		t.Fatalf("invalid test agent: %v", errs)
	}
	return a
}

// harness runs a Supervisor for one test.
type harness struct {
	t    *testing.T
	s    *Supervisor
	stop context.CancelFunc
	done chan error
}

func startSupervisor(t *testing.T, agents []v1alpha1.Agent, opts Options) *harness {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.Backoff == (Backoff{}) {
		opts.Backoff = Backoff{Initial: 50 * time.Millisecond, Max: time.Second}
	}
	if opts.Grace == 0 {
		opts.Grace = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	s, err := New(agents, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.probeUnit = probeUnit
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, s: s, stop: cancel, done: make(chan error, 1)}
	go func() { h.done <- s.Start(ctx) }()
	t.Cleanup(func() {
		if err := h.shutdown(30 * time.Second); err != nil {
			t.Error(err)
		}
	})
	return h
}

// shutdown cancels Start and waits for it to return.
func (h *harness) shutdown(limit time.Duration) error {
	h.stop()
	select {
	case err := <-h.done:
		h.done <- err // let a later call see it too
		return err
	case <-time.After(limit):
		return fmt.Errorf("Start did not return within %v of the cancellation", limit)
	}
}

// waitFor waits until cond holds for a snapshot, and returns that snapshot.
func (h *harness) waitFor(what string, limit time.Duration, cond func([]discovery.Agent) bool) []discovery.Agent {
	h.t.Helper()
	deadline := time.After(limit)
	for {
		ch := h.s.Changed()
		snap := h.s.Snapshot()
		if cond(snap) {
			return snap
		}
		select {
		case <-ch:
		case <-deadline:
			h.t.Fatalf("timed out after %v waiting for %s; last snapshot:\n%s", limit, what, dump(h.s.Snapshot()))
		}
	}
}

func dump(agents []discovery.Agent) string {
	b, _ := json.MarshalIndent(agents, "", "  ")
	return string(b)
}

func allReady(snap []discovery.Agent) bool {
	for _, a := range snap {
		if a.ReadyCount() != len(a.Endpoints) {
			return false
		}
	}
	return true
}

// gone reports whether no process has pid any more (a zombie counts as gone: it is only
// waiting for a parent that is not ours to reap it).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	_, err := procStartTime(pid)
	return err != nil
}

func waitGone(t *testing.T, pid int, limit time.Duration) {
	t.Helper()
	testutil.Eventually(t, limit, 10*time.Millisecond, func() error { return testutil.Check(gone(pid), "process %d still exists", pid) })
}

func TestReplicasBecomeReadyAndStopCleanly(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	h := startSupervisor(t, []v1alpha1.Agent{
		testAgent(t, "triage", 2, "ok"),
		testAgent(t, "billing", 1, "ok"),
	}, Options{DataDir: dataDir})

	snap := h.waitFor("all replicas ready", 20*time.Second, allReady)
	if len(snap) != 2 || snap[0].Name != "billing" || snap[1].Name != "triage" {
		t.Fatalf("snapshot not sorted by agent name:\n%s", dump(snap))
	}
	urls := map[string]bool{}
	var pids []int
	for _, a := range snap {
		if a.Desired != len(a.Endpoints) || a.MaxConcurrency != int(v1alpha1.DefaultMaxConcurrency) || a.State != "stateless" {
			t.Errorf("agent %s: unexpected fields:\n%s", a.Name, dump(snap))
		}
		for i, e := range a.Endpoints {
			if e.Index != i || e.Name != fmt.Sprintf("%s-%d", a.Name, i) || e.Agent != a.Name {
				t.Errorf("endpoint %d of %s is named %q index %d", i, a.Name, e.Name, e.Index)
			}
			if e.State != discovery.StateRunning || e.PID <= 0 || e.Restarts != 0 {
				t.Errorf("endpoint %s: state %s pid %d restarts %d", e.Name, e.State, e.PID, e.Restarts)
			}
			if !strings.HasPrefix(e.URL, "http://127.0.0.1:") || urls[e.URL] {
				t.Errorf("endpoint %s: URL %q not a fresh local port", e.Name, e.URL)
			}
			urls[e.URL] = true
			pids = append(pids, e.PID)
			if want := filepath.Join(dataDir, "logs", a.Name, e.Name+".log"); e.LogPath != want {
				t.Errorf("endpoint %s: LogPath %q, want %q", e.Name, e.LogPath, want)
			}
			var pf pidFile
			b, err := os.ReadFile(filepath.Join(dataDir, "run", fmt.Sprintf("%s.%d.pid", e.Name, e.PID)))
			if err != nil || json.Unmarshal(b, &pf) != nil || pf.PID != e.PID || pf.Owner != os.Getpid() {
				t.Errorf("pid file of %s: %s (%v)", e.Name, b, err)
			}
		}
	}

	if err := h.shutdown(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			t.Errorf("process %d survived the shutdown", pid)
		}
	}
	for _, a := range h.s.Snapshot() {
		for _, e := range a.Endpoints {
			if e.State != discovery.StateStopped || e.Ready || e.PID != 0 || e.LastExit != "exit status 0" {
				t.Errorf("after shutdown: %s state %s ready %v pid %d lastExit %q", e.Name, e.State, e.Ready, e.PID, e.LastExit)
			}
			log, err := os.ReadFile(e.LogPath)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{
				"--- agentplane: start " + e.Name + " attempt 1 at ",
				"helper agent " + e.Name + " mode ok",
				"helper agent drained",
			} {
				if !strings.Contains(string(log), want) {
					t.Errorf("log of %s lacks %q:\n%s", e.Name, want, log)
				}
			}
			if left, _ := filepath.Glob(filepath.Join(dataDir, "run", e.Name+".*.pid")); len(left) > 0 {
				t.Errorf("pid file of %s left behind: %v", e.Name, left)
			}
		}
	}
}

func TestKilledReplicaIsRestarted(t *testing.T) {
	t.Parallel()
	h := startSupervisor(t, []v1alpha1.Agent{testAgent(t, "triage", 1, "ok")}, Options{})
	first := h.waitFor("ready", 20*time.Second, allReady)[0].Endpoints[0]

	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	h.waitFor("not ready", 5*time.Second, func(s []discovery.Agent) bool { return !s[0].Endpoints[0].Ready })
	if d := time.Since(killed); d > time.Second {
		t.Errorf("Ready stayed true %v after the process died", d)
	}

	snap := h.waitFor("ready again", 20*time.Second, func(s []discovery.Agent) bool {
		e := s[0].Endpoints[0]
		return e.Ready && e.Restarts == 1
	})
	e := snap[0].Endpoints[0]
	if e.LastExit != "signal: killed" || e.PID == first.PID || e.State != discovery.StateRunning {
		t.Errorf("after restart: %+v", e)
	}
	log, _ := os.ReadFile(e.LogPath)
	if !strings.Contains(string(log), "--- agentplane: start triage-0 attempt 2 at ") {
		t.Errorf("log lacks the second start:\n%s", log)
	}
}

// A stateful agent's replica keeps a memory directory of its own across restarts, as a
// StatefulSet's pod keeps its volume claim; a stateless agent gets none.
func TestStatefulReplicaKeepsItsMemory(t *testing.T) {
	t.Parallel()
	notes := testAgent(t, "notes", 2, "ok")
	notes.Spec.State = v1alpha1.Stateful
	notes.Spec.Memory = &v1alpha1.MemorySpec{Size: "1Mi"}
	triage := testAgent(t, "triage", 1, "ok")
	dataDir := t.TempDir()
	h := startSupervisor(t, []v1alpha1.Agent{notes, triage}, Options{DataDir: dataDir})
	snap := h.waitFor("ready", 20*time.Second, allReady)
	var first discovery.Endpoint
	for _, a := range snap {
		if a.Name == "notes" {
			first = a.Endpoints[0]
		}
	}
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.waitFor("notes-0 restarted", 20*time.Second, func(s []discovery.Agent) bool {
		for _, a := range s {
			if a.Name == "notes" {
				return a.Endpoints[0].Ready && a.Endpoints[0].Restarts == 1
			}
		}
		return false
	})
	memory := filepath.Join(dataDir, "memory", "notes")
	for replica, want := range map[string]int{"notes-0": 2, "notes-1": 1} {
		b, err := os.ReadFile(filepath.Join(memory, replica, "starts"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(string(b), "pid "); got != want {
			t.Errorf("%s remembers %d starts, want %d:\n%s", replica, got, want, b)
		}
		if fi, err := os.Stat(filepath.Join(memory, replica)); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s memory directory: %v %v, want mode 0700", replica, fi.Mode(), err)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "memory", "triage")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a stateless agent got a memory directory: %v", err)
	}
}

func TestCrashLoopBacksOff(t *testing.T) {
	t.Parallel()
	h := startSupervisor(t, []v1alpha1.Agent{testAgent(t, "crasher", 1, "crash")}, Options{
		Backoff: Backoff{Initial: 50 * time.Millisecond, Max: 10 * time.Second},
	})
	delays := map[int]time.Duration{} // restarts -> announced delay
	h.waitFor("four crashes", 20*time.Second, func(s []discovery.Agent) bool {
		e := s[0].Endpoints[0]
		if e.Ready {
			t.Errorf("a crashing replica is ready: %+v", e)
		}
		if e.State == discovery.StateCrashLoopBackOff {
			delays[e.Restarts] = e.NextStart.Sub(e.Since)
			if e.LastExit != "exit status 3" {
				t.Errorf("LastExit %q, want exit status 3", e.LastExit)
			}
		}
		return e.Restarts >= 4 && e.State == discovery.StateCrashLoopBackOff
	})
	for n := 1; n <= 4; n++ {
		want := 50 * time.Millisecond << (n - 1)
		if got, ok := delays[n]; ok && (got < want-5*time.Millisecond || got > want+5*time.Millisecond) {
			t.Errorf("delay after crash %d = %v, want about %v", n, got, want)
		}
	}
	if len(delays) < 2 {
		t.Errorf("saw too few CrashLoopBackOff states: %v", delays)
	}
}

func TestShutdownKillsAfterGrace(t *testing.T) {
	t.Parallel()
	const grace = 300 * time.Millisecond
	h := startSupervisor(t, []v1alpha1.Agent{testAgent(t, "stubborn", 1, "ignoreterm")}, Options{Grace: grace})
	e := h.waitFor("ready", 20*time.Second, allReady)[0].Endpoints[0]

	ch := h.s.Changed()
	stopped := time.Now()
	h.stop()
	<-ch
	// The first change after the cancellation withdraws the replica, while its process runs.
	first := h.s.Snapshot()[0].Endpoints[0]
	if first.Ready || first.State != discovery.StateTerminating {
		t.Errorf("first change after cancel: %+v", first)
	}
	if gone(e.PID) {
		t.Errorf("process %d was gone before Terminating was published", e.PID)
	}

	if err := h.shutdown(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(stopped); d < grace {
		t.Errorf("Start returned after %v, before the grace period of %v", d, grace)
	}
	if !errors.Is(syscall.Kill(e.PID, 0), syscall.ESRCH) {
		t.Errorf("process %d survived", e.PID)
	}
	if got := h.s.Snapshot()[0].Endpoints[0]; got.LastExit != "signal: killed" || got.State != discovery.StateStopped {
		t.Errorf("after shutdown: %+v", got)
	}
}

// The whole process group goes: a child the agent started dies with it, whether the agent
// crashed or was stopped.
func TestProcessGroupIsKilled(t *testing.T) {
	t.Parallel()
	h := startSupervisor(t, []v1alpha1.Agent{testAgent(t, "family", 1, "family")}, Options{})
	childOf := func(e discovery.Endpoint) int {
		t.Helper()
		log, _ := os.ReadFile(e.LogPath)
		m := regexp.MustCompile(`child pid (\d+)`).FindAllStringSubmatch(string(log), -1)
		if len(m) == 0 {
			t.Fatalf("no child pid in the log:\n%s", log)
		}
		pid, _ := strconv.Atoi(m[len(m)-1][1])
		return pid
	}

	e := h.waitFor("ready", 20*time.Second, allReady)[0].Endpoints[0]
	child := childOf(e)
	if gone(child) {
		t.Fatalf("child %d is not running", child)
	}
	// Kill the agent alone: its child is orphaned, and the supervisor must clean it up.
	if err := syscall.Kill(e.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, child, 5*time.Second)

	e = h.waitFor("ready again", 20*time.Second, func(s []discovery.Agent) bool {
		return s[0].Endpoints[0].Ready && s[0].Endpoints[0].Restarts == 1
	})[0].Endpoints[0]
	child = childOf(e)
	if err := h.shutdown(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitGone(t, child, 5*time.Second)
}

func TestProbes(t *testing.T) {
	t.Parallel()
	fast := func(path string, failures int32) *v1alpha1.Probe {
		return &v1alpha1.Probe{Path: path, PeriodSeconds: 1, TimeoutSeconds: 2, FailureThreshold: failures}
	}
	card := v1alpha1.DefaultProbePath

	t.Run("readiness", func(t *testing.T) {
		t.Parallel()
		a := testAgent(t, "flaky", 1, "unready")
		a.Spec.Probes = &v1alpha1.Probes{Startup: fast("/livez", 100), Readiness: fast(card, 2), Liveness: fast("/livez", 2)}
		h := startSupervisor(t, []v1alpha1.Agent{a}, Options{})
		h.waitFor("running", 20*time.Second, func(s []discovery.Agent) bool {
			return s[0].Endpoints[0].State == discovery.StateRunning
		})
		e := h.waitFor("not ready", 5*time.Second, func(s []discovery.Agent) bool { return !s[0].Endpoints[0].Ready })[0].Endpoints[0]
		if e.State != discovery.StateRunning || e.Restarts != 0 {
			t.Errorf("an unready replica must keep running: %+v", e)
		}
	})
	t.Run("liveness", func(t *testing.T) {
		t.Parallel()
		a := testAgent(t, "hung", 1, "unready")
		a.Spec.Probes = &v1alpha1.Probes{Startup: fast("/livez", 100), Readiness: fast("/livez", 2), Liveness: fast(card, 2)}
		h := startSupervisor(t, []v1alpha1.Agent{a}, Options{})
		e := h.waitFor("restart", 20*time.Second, func(s []discovery.Agent) bool { return s[0].Endpoints[0].Restarts >= 1 })[0].Endpoints[0]
		if e.LastExit != "liveness probe failed" {
			t.Errorf("LastExit %q, want liveness probe failed", e.LastExit)
		}
	})
	t.Run("startup", func(t *testing.T) {
		t.Parallel()
		a := testAgent(t, "late", 1, "unready")
		a.Spec.Probes = &v1alpha1.Probes{Startup: fast(card, 10)}
		a.SetDefaults()
		h := startSupervisor(t, []v1alpha1.Agent{a}, Options{})
		e := h.waitFor("restart", 20*time.Second, func(s []discovery.Agent) bool { return s[0].Endpoints[0].Restarts >= 1 })[0].Endpoints[0]
		if e.LastExit != "startup probe failed" {
			t.Errorf("LastExit %q, want startup probe failed", e.LastExit)
		}
	})
	t.Run("slow start", func(t *testing.T) {
		t.Parallel()
		h := startSupervisor(t, []v1alpha1.Agent{testAgent(t, "slow", 1, "slowstart")}, Options{})
		h.waitFor("starting", 20*time.Second, func(s []discovery.Agent) bool {
			e := s[0].Endpoints[0]
			return e.State == discovery.StateStarting && e.PID > 0 && !e.Ready
		})
		e := h.waitFor("ready", 20*time.Second, allReady)[0].Endpoints[0]
		if e.Restarts != 0 {
			t.Errorf("a slow start must not be a crash: %+v", e)
		}
	})
}

func TestAgentplaneCommandRunsExecutable(t *testing.T) {
	t.Parallel()
	a := testAgent(t, "self", 1, "ok")
	a.Spec.Command = []string{"agentplane"}
	a.Spec.Args = []string{"serve-agent"}
	h := startSupervisor(t, []v1alpha1.Agent{a}, Options{Executable: testExe})
	h.waitFor("ready", 20*time.Second, allReady)
}

// recordingLauncher records what it is asked to start and starts nothing.
type recordingLauncher chan ProcessSpec

func (l recordingLauncher) Launch(_ context.Context, spec ProcessSpec) (Process, error) {
	select {
	case l <- spec:
	default:
	}
	return nil, errors.New("not starting anything in this test")
}

func TestProcessSpec(t *testing.T) {
	t.Setenv("SUPERVISOR_TEST_SECRET", "hunter2")
	a := testAgent(t, "self", 1, "ok")
	a.Spec.Command = []string{"agentplane", "agent"}
	a.Spec.Args = []string{"--flag"}
	a.Spec.Env = append(a.Spec.Env, v1alpha1.EnvVar{Name: "MODEL", Value: "small"})
	launched := make(recordingLauncher, 1)
	h := startSupervisor(t, []v1alpha1.Agent{a}, Options{Executable: "/opt/agentplane", Launcher: launched})

	var spec ProcessSpec
	select {
	case spec = <-launched:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing launched")
	}
	if spec.Path != "/opt/agentplane" || !slices.Equal(spec.Args, []string{"/opt/agentplane", "agent", "--flag"}) {
		t.Errorf("Path %q Args %q", spec.Path, spec.Args)
	}
	env := map[string]string{}
	for _, kv := range spec.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	if env["MODEL"] != "small" || env["AGENTPLANE_AGENT"] != "self" || env["AGENTPLANE_REPLICA"] != "0" || env["PORT"] == "" ||
		env["AGENTPLANE_LISTEN_HOST"] != "127.0.0.1" {
		t.Errorf("env lacks what the replica needs: %q", spec.Env)
	}
	if _, ok := env["SUPERVISOR_TEST_SECRET"]; ok {
		t.Errorf("env leaks the supervisor's environment: %q", spec.Env)
	}
	if path, ok := os.LookupEnv("PATH"); ok && env["PATH"] != path {
		t.Errorf("PATH not inherited: %q", spec.Env)
	}
	e := h.waitFor("crash loop", 10*time.Second, func(s []discovery.Agent) bool {
		return s[0].Endpoints[0].State == discovery.StateCrashLoopBackOff
	})[0].Endpoints[0]
	if !strings.HasPrefix(e.LastExit, "start failed: ") || e.Reason != discovery.ReasonStartFailed || e.Message != e.LastExit {
		t.Errorf("LastExit %q, reason %q, message %q", e.LastExit, e.Reason, e.Message)
	}
	if wd, _ := os.Getwd(); spec.Dir != wd {
		t.Errorf("Dir %q: an agent not read from a file runs in the supervisor's working directory, %q", spec.Dir, wd)
	}
}

// TestPathsAreTheManifests: an agent read from a file runs its relative command from the file's
// directory, in its working directory relative to it; a program that is not there is refused by
// New and Apply, which then change nothing.
func TestPathsAreTheManifests(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "work"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := testAgent(t, "local", 1, "ok")
	a.Annotations = map[string]string{v1alpha1.AnnotationManifestDir: dir}
	a.Spec.Command, a.Spec.Args, a.Spec.WorkingDir = []string{"./run.sh"}, []string{"x"}, "work"
	launched := make(recordingLauncher, 1)
	h := startSupervisor(t, []v1alpha1.Agent{a}, Options{Launcher: launched})
	var spec ProcessSpec
	select {
	case spec = <-launched:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing launched")
	}
	if spec.Path != filepath.Join(dir, "run.sh") || spec.Dir != filepath.Join(dir, "work") || !slices.Equal(spec.Args, []string{"./run.sh", "x"}) {
		t.Errorf("Path %q, Dir %q, Args %q", spec.Path, spec.Dir, spec.Args)
	}

	missing := a.DeepCopy()
	missing.Name = "missing"
	missing.Spec.Command = []string{"./not-there.sh"}
	_, err := h.s.Apply(t.Context(), []v1alpha1.Agent{a, *missing})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `agent "missing": spec.command[0]: Invalid value: "./not-there.sh": no such file: `+filepath.Join(dir, "not-there.sh")) {
		t.Errorf("Apply() error = %v, want ErrInvalid naming the field and the file", err)
	}
	if _, ok := h.s.Agent("missing"); ok {
		t.Error("Apply with an invalid agent added it")
	}
	if _, err := New([]v1alpha1.Agent{*missing}, Options{DataDir: t.TempDir()}); !errors.Is(err, ErrInvalid) {
		t.Errorf("New() error = %v, want ErrInvalid", err)
	}
}

func TestNew(t *testing.T) {
	ok := testAgent(t, "a", 2, "ok")
	if _, err := New([]v1alpha1.Agent{ok}, Options{}); err == nil {
		t.Error("New without DataDir: no error")
	}
	if _, err := New([]v1alpha1.Agent{ok, ok}, Options{DataDir: t.TempDir()}); err == nil {
		t.Error("New with a duplicate agent: no error")
	}
	imageOnly := testAgent(t, "k8s", 1, "ok")
	imageOnly.Spec.Command, imageOnly.Spec.Image = nil, "example.com/agent:1"
	if _, err := New([]v1alpha1.Agent{imageOnly}, Options{DataDir: t.TempDir()}); err == nil {
		t.Error("New with an agent without command: no error")
	}

	placed := testAgent(t, "placed", 0, "ok")
	placed.Spec.Placement = &v1alpha1.Placement{Site: "eu1", AllowedSites: []string{"eu1", "eu2"}}
	s, err := New([]v1alpha1.Agent{ok, placed}, Options{DataDir: "/data"})
	if err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	if len(snap) != 2 || len(snap[0].Endpoints) != 2 || snap[1].Endpoints == nil || len(snap[1].Endpoints) != 0 {
		t.Fatalf("snapshot before Start:\n%s", dump(snap))
	}
	if e := snap[0].Endpoints[1]; e.State != discovery.StatePending || e.Name != "a-1" || e.LogPath != "/data/logs/a/a-1.log" {
		t.Errorf("pending endpoint: %+v", e)
	}
	if !slices.Equal(snap[1].AllowedSites, []string{"eu1", "eu2"}) {
		t.Errorf("AllowedSites %q", snap[1].AllowedSites)
	}
}

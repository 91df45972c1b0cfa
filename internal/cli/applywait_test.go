package cli

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/discovery"
)

func TestWaitFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"true", defaultApplyWait, false},
		{"false", 0, false},
		{"90s", 90 * time.Second, false},
		{"2m", 2 * time.Minute, false},
		{"0s", 0, true},
		{"-1m", 0, true},
		{"soon", 0, true},
	} {
		w := waitFlag{d: time.Hour}
		err := w.Set(tc.in)
		if (err != nil) != tc.wantErr || (err == nil && w.d != tc.want) {
			t.Errorf("--wait=%s: %v, %v; want %v (error %v)", tc.in, w.d, err, tc.want, tc.wantErr)
		}
	}
	// --wait alone is --wait=true; without it, apply waits too.
	cmd := newApplyCommand(Streams{})
	if err := cmd.Flags().Parse([]string{"--wait"}); err != nil {
		t.Fatal(err)
	}
	if got := cmd.Flags().Lookup("wait").Value.String(); got != defaultApplyWait.String() {
		t.Errorf("--wait gives %s", got)
	}
	if got := newApplyCommand(Streams{}).Flags().Lookup("wait").Value.String(); got != defaultApplyWait.String() {
		t.Errorf("apply waits %s by default", got)
	}
}

// rolledOut and notReady read the status that GET /api/v1/agents/{name} computes.
func TestRolledOutAndNotReady(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	ep := func(i int, state string, ready bool) discovery.Endpoint {
		return discovery.Endpoint{Agent: "a", Name: fmt.Sprintf("a-%d", i), Index: i, State: state, Ready: ready, Since: now.Add(-12 * time.Second)}
	}
	view := func(a discovery.Agent, outdated ...string) agentView {
		v := agentView{}
		v.Agent.Status = agentStatus(a, outdated, now)
		for _, e := range a.Endpoints {
			v.Replicas = append(v.Replicas, replicaView{Endpoint: e})
		}
		return v
	}
	crash := ep(1, discovery.StateCrashLoopBackOff, false)
	crash.Restarts, crash.LastExit, crash.NextStart = 3, "exit status 1", now.Add(2*time.Second)
	withReason := replicaView{Endpoint: ep(0, discovery.StateStarting, false), Reason: "startup probe: connection refused", Message: "listening on :1"}

	for _, tc := range []struct {
		name     string
		v        agentView
		done     bool
		progress string
		notReady []string
	}{
		{"all ready", view(discovery.Agent{Desired: 2, Endpoints: []discovery.Endpoint{ep(0, discovery.StateRunning, true), ep(1, discovery.StateRunning, true)}}),
			true, "2/2 replicas ready", nil},
		{"autoscaled to zero", view(discovery.Agent{Desired: 0, Autoscaled: true}), true, "0/0 replicas ready", nil},
		{"starting", view(discovery.Agent{Desired: 2, Endpoints: []discovery.Endpoint{ep(0, discovery.StateRunning, true), ep(1, discovery.StateStarting, false)}}),
			false, "1/2 replicas ready; starting a-1", []string{"a-1: Starting for 12s"}},
		{"crash-looping", view(discovery.Agent{Desired: 2, Endpoints: []discovery.Endpoint{ep(0, discovery.StateRunning, true), crash}}),
			false, "1/2 replicas ready", []string{"a-1: CrashLoopBackOff for 12s, restarted 3 times, last exit: exit status 1, next start in 2s"}},
		{"failing readiness", view(discovery.Agent{Desired: 1, Endpoints: []discovery.Endpoint{ep(0, discovery.StateRunning, false)}}),
			false, "0/1 replicas ready", []string{"a-0: Running but not ready (failing its readiness probe) for 12s"}},
		{"an old spec left", view(discovery.Agent{Desired: 1, Endpoints: []discovery.Endpoint{ep(0, discovery.StateRunning, true)}}, "a-0"),
			false, "1/1 replicas ready; a rolling update stopped; a-0 run an older spec: apply again to resume", nil},
		{"surplus stopping", view(discovery.Agent{Desired: 1, Endpoints: []discovery.Endpoint{ep(0, discovery.StateRunning, true), ep(1, discovery.StateTerminating, false)}}),
			false, "1/1 replicas ready; stopping a-1", nil},
		{"the supervisor's reason", agentView{Agent: view(discovery.Agent{Desired: 1}).Agent, Replicas: []replicaView{withReason}},
			false, "0/1 replicas ready; 0 replicas, 1 desired", []string{"a-0: Starting for 12s; startup probe: connection refused; listening on :1"}},
		{"no status", agentView{}, false, "no status yet", nil},
	} {
		done, progress := rolledOut(tc.v)
		if done != tc.done || progress != tc.progress {
			t.Errorf("%s: rolledOut = %v %q, want %v %q", tc.name, done, progress, tc.done, tc.progress)
		}
		if got := notReady(tc.v, now); strings.Join(got, "\n") != strings.Join(tc.notReady, "\n") {
			t.Errorf("%s: notReady = %q, want %q", tc.name, got, tc.notReady)
		}
	}
}

// apply waits until a new agent is ready, fails within --wait naming the replica of an agent
// that cannot start and why, and with --wait=false returns without waiting.
func TestApplyWait(t *testing.T) {
	t.Parallel()
	env := startAdmin(t, agentYAML("echo", 1, ""))
	env.waitFor("echo ready", readyReplicas("echo", 1))
	dir := t.TempDir()
	gw := "--gateway=" + env.srv.URL
	apply := func(args ...string) (string, string, int) {
		return runCLI(t.Context(), t, newApplyCommand, append(args, gw)...)
	}

	// A new agent is ready the moment apply returns.
	fresh := writeFile(t, filepath.Join(dir, "fresh.yaml"), agentYAML("fresh", 2, ""))
	if out, errs, code := apply("-f", fresh); code != 0 || out != "agent/echo unchanged\nagent/fresh created\n" {
		t.Fatalf("apply a new agent: %d %q %q", code, out, errs)
	}
	if !readyReplicas("fresh", 2)(env.sup.Snapshot()) {
		t.Fatalf("apply returned before fresh was ready: %+v", env.sup.Snapshot())
	}

	// An agent whose command exits 1: apply says which replica and why, within its --wait.
	broken := func(name string) string {
		return writeFile(t, filepath.Join(dir, name+".yaml"), fmt.Sprintf(`apiVersion: agentplane.io/v1alpha1
kind: Agent
metadata:
  name: %s
spec:
  command: [sh, -c, "echo cannot load the model >&2; exit 1"]
`, name))
	}
	start := time.Now()
	out, errs, code := apply("-f", broken("broken"), "--wait=2s")
	took := time.Since(start)
	if code != 1 || !strings.Contains(out, "agent/broken created\n") {
		t.Fatalf("apply a broken agent: %d %q %q", code, out, errs)
	}
	for _, want := range []string{"agent/broken is not ready after 2s: 0/1 replicas ready", "\n  broken-0: ", "last exit: exit status 1", "agentplane logs broken-0", "the change is applied"} {
		if !strings.Contains(errs, want) {
			t.Errorf("apply of a broken agent does not say %q:\n%s", want, errs)
		}
	}
	if took > 10*time.Second {
		t.Errorf("apply --wait=2s took %s", took)
	}

	// --wait=false returns once the change is applied: the agent is there, and not ready.
	if out, errs, code := apply("-f", broken("broken2"), "--wait=false", "-o", "json"); code != 0 || !strings.Contains(out, `"action": "created"`) {
		t.Fatalf("apply --wait=false: %d %q %q", code, out, errs)
	}
	if a, ok := discovery.Lookup(env.sup.Snapshot(), "broken2"); !ok || a.ReadyCount() != 0 {
		t.Errorf("broken2 after apply --wait=false: %+v", a)
	}
}

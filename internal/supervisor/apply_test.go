package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/discovery"
)

// withVersion returns a with HELPER_VERSION set, which the helper agent prints when it starts.
func withVersion(a v1alpha1.Agent, version string) v1alpha1.Agent {
	a = *a.DeepCopy()
	a.Spec.Env = append(a.Spec.Env, v1alpha1.EnvVar{Name: "HELPER_VERSION", Value: version})
	return a
}

func scaled(a v1alpha1.Agent, n int32) v1alpha1.Agent {
	a = *a.DeepCopy()
	a.Spec.Replicas = &n
	return a
}

func agentOf(t *testing.T, snap []discovery.Agent, name string) discovery.Agent {
	t.Helper()
	a, ok := discovery.Lookup(snap, name)
	if !ok {
		t.Fatalf("agent %s not in the snapshot:\n%s", name, dump(snap))
	}
	return a
}

// steady reports whether agent name has exactly n endpoints, named name-0 to name-(n-1), all
// ready.
func steady(name string, n int) func([]discovery.Agent) bool {
	return func(snap []discovery.Agent) bool {
		a, ok := discovery.Lookup(snap, name)
		if !ok || a.Desired != n || len(a.Endpoints) != n {
			return false
		}
		for i, e := range a.Endpoints {
			if !e.Ready || e.Name != replicaName(name, i) || e.Index != i {
				return false
			}
		}
		return true
	}
}

// watcher records every snapshot it sees until stopped.
type watcher struct {
	mu    sync.Mutex
	snaps [][]discovery.Agent
	stop  chan struct{}
	done  chan struct{}
}

func watch(s *Supervisor) *watcher {
	w := &watcher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			ch := s.Changed()
			w.mu.Lock()
			w.snaps = append(w.snaps, s.Snapshot())
			w.mu.Unlock()
			select {
			case <-ch:
			case <-w.stop:
				return
			}
		}
	}()
	return w
}

func (w *watcher) finish() [][]discovery.Agent {
	close(w.stop)
	<-w.done
	return w.snaps
}

func pids(a discovery.Agent) map[string]int {
	out := map[string]int{}
	for _, e := range a.Endpoints {
		out[e.Name] = e.PID
	}
	return out
}

func TestApplyScalesUp(t *testing.T) {
	t.Parallel()
	a := testAgent(t, "triage", 1, "ok")
	h := startSupervisor(t, []v1alpha1.Agent{a}, Options{})
	before := agentOf(t, h.waitFor("1 ready", 20*time.Second, steady("triage", 1)), "triage").Endpoints[0]

	diff, err := h.s.Apply(t.Context(), []v1alpha1.Agent{scaled(a, 3)})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Scale{{Agent: "triage", From: 1, To: 3}}; !slices.Equal(diff.Scaled, want) || len(diff.Rolled)+len(diff.Added)+len(diff.Removed) > 0 {
		t.Errorf("diff %+v, want only scaled %+v", diff, want)
	}
	after := agentOf(t, h.waitFor("3 ready", 20*time.Second, steady("triage", 3)), "triage")
	if e := after.Endpoints[0]; e.PID != before.PID || e.Restarts != 0 {
		t.Errorf("triage-0 was restarted by a scale-up: before %+v, after %+v", before, e)
	}
	if got := h.s.Agents(); len(got) != 1 || *got[0].Spec.Replicas != 3 {
		t.Errorf("Agents() after scale-up: %+v", got)
	}
}

// Scaling down withdraws the highest-index replicas first, then drains them: a request in
// flight on one of them completes.
func TestApplyScaleDownDrains(t *testing.T) {
	t.Parallel()
	a := testAgent(t, "triage", 3, "ok")
	h := startSupervisor(t, []v1alpha1.Agent{a}, Options{})
	before := agentOf(t, h.waitFor("3 ready", 20*time.Second, steady("triage", 3)), "triage")

	// A slow request on triage-2, which the scale-down removes.
	res, err := http.Get(before.Endpoints[2].URL + "/slow?ms=1500")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(res.Body)
		body <- string(b)
	}()

	w := watch(h.s)
	diff, err := h.s.Apply(t.Context(), []v1alpha1.Agent{scaled(a, 1)})
	snaps := w.finish()
	if err != nil {
		t.Fatal(err)
	}
	if want := []Scale{{Agent: "triage", From: 3, To: 1}}; !slices.Equal(diff.Scaled, want) {
		t.Errorf("diff %+v, want scaled %+v", diff, want)
	}
	select {
	case b := <-body:
		if b != "done" {
			t.Errorf("the request in flight on triage-2 got %q, want done", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight on triage-2 did not complete")
	}

	// Apply returns once the removed replicas are gone.
	after := agentOf(t, h.s.Snapshot(), "triage")
	if !steady("triage", 1)(h.s.Snapshot()) || after.Endpoints[0].PID != before.Endpoints[0].PID {
		t.Errorf("after scale-down:\n%s", dump(h.s.Snapshot()))
	}
	for _, e := range before.Endpoints[1:] {
		if !gone(e.PID) {
			t.Errorf("%s (pid %d) still runs", e.Name, e.PID)
		}
		log, _ := os.ReadFile(e.LogPath)
		if !strings.Contains(string(log), "helper agent drained") {
			t.Errorf("%s did not drain gracefully:\n%s", e.Name, log)
		}
	}
	// Every observed snapshot: the removed replicas are either ready and Running (before) or
	// Terminating and not ready; triage-0 stays ready throughout.
	sawTerminating := false
	for _, snap := range snaps {
		for _, e := range agentOf(t, snap, "triage").Endpoints {
			switch {
			case e.Index == 0 && !e.Ready:
				t.Errorf("triage-0 not ready during the scale-down:\n%s", dump(snap))
			case e.Index > 0 && e.State == discovery.StateTerminating:
				sawTerminating = true
				if e.Ready {
					t.Errorf("%s is Terminating but ready", e.Name)
				}
			case e.Index > 0 && e.State != discovery.StateRunning:
				t.Errorf("%s in state %s during the scale-down", e.Name, e.State)
			}
		}
	}
	if !sawTerminating {
		t.Error("no snapshot showed the removed replicas Terminating")
	}
}

// A change of env rolls the replicas one at a time, with the names kept and never fewer ready
// replicas than desired.
func TestApplyRollingUpdate(t *testing.T) {
	t.Parallel()
	const n = 3
	a := withVersion(testAgent(t, "triage", n, "ok"), "1")
	h := startSupervisor(t, []v1alpha1.Agent{a}, Options{})
	before := pids(agentOf(t, h.waitFor("3 ready", 20*time.Second, steady("triage", n)), "triage"))

	w := watch(h.s)
	diff, err := h.s.Apply(t.Context(), []v1alpha1.Agent{withVersion(testAgent(t, "triage", n, "ok"), "2")})
	snaps := w.finish()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(diff.Rolled, []string{"triage"}) || len(diff.Scaled) > 0 {
		t.Errorf("diff %+v, want rolled triage", diff)
	}
	surged := false
	for _, snap := range snaps {
		ag := agentOf(t, snap, "triage")
		if ag.ReadyCount() < n {
			t.Errorf("%d of %d replicas ready during the rolling update:\n%s", ag.ReadyCount(), n, dump(snap))
		}
		if len(ag.Endpoints) > n+1 {
			t.Errorf("%d endpoints during the rolling update, more than a surge of one:\n%s", len(ag.Endpoints), dump(snap))
		}
		surged = surged || len(ag.Endpoints) == n+1
	}
	if !surged {
		t.Error("no snapshot showed a surge replica")
	}

	snap := h.s.Snapshot()
	if !steady("triage", n)(snap) {
		t.Fatalf("after the rolling update:\n%s", dump(snap))
	}
	for _, e := range agentOf(t, snap, "triage").Endpoints {
		if e.PID == before[e.Name] || !gone(before[e.Name]) {
			t.Errorf("%s: pid %d before, %d after; the old one gone: %v", e.Name, before[e.Name], e.PID, gone(before[e.Name]))
		}
		log, _ := os.ReadFile(e.LogPath)
		for _, want := range []string{`mode ok pid ` + fmt.Sprint(before[e.Name]) + ` version "1"`, `mode ok pid ` + fmt.Sprint(e.PID) + ` version "2"`} {
			if !strings.Contains(string(log), want) {
				t.Errorf("log of %s lacks %q:\n%s", e.Name, want, log)
			}
		}
	}
	if got := h.s.Outdated("triage"); len(got) != 0 {
		t.Errorf("Outdated after the rolling update: %q", got)
	}
	if got, _ := h.s.Agent("triage"); got.Spec.Env[len(got.Spec.Env)-1].Value != "2" {
		t.Errorf("Agent() after the update: %+v", got.Spec.Env)
	}
}

// A new spec whose replicas never become ready stops the update at the first replica; the old
// replicas keep serving.
func TestApplyRollingUpdateThatFails(t *testing.T) {
	t.Parallel()
	const n = 2
	a := testAgent(t, "triage", n, "ok")
	h := startSupervisor(t, []v1alpha1.Agent{a}, Options{})
	before := pids(agentOf(t, h.waitFor("ready", 20*time.Second, steady("triage", n)), "triage"))

	w := watch(h.s)
	_, err := h.s.Apply(t.Context(), []v1alpha1.Agent{testAgent(t, "triage", n, "crash")})
	snaps := w.finish()
	if err == nil || !strings.Contains(err.Error(), "triage-0") {
		t.Fatalf("Apply of a crashing spec: %v", err)
	}
	for _, snap := range snaps {
		if ag := agentOf(t, snap, "triage"); ag.ReadyCount() < n {
			t.Errorf("%d of %d ready during the failed update:\n%s", ag.ReadyCount(), n, dump(snap))
		}
	}
	if snap := h.s.Snapshot(); !steady("triage", n)(snap) || !maps(pids(agentOf(t, snap, "triage")), before) {
		t.Errorf("after the failed update the old replicas must run on:\n%s", dump(snap))
	}
	if got := h.s.Outdated("triage"); !slices.Equal(got, []string{"triage-0", "triage-1"}) {
		t.Errorf("Outdated = %q, want both replicas", got)
	}
}

func maps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestApplyAddsRemovesAndUpdatesInPlace(t *testing.T) {
	t.Parallel()
	triage, billing := testAgent(t, "triage", 1, "ok"), testAgent(t, "billing", 2, "ok")
	h := startSupervisor(t, []v1alpha1.Agent{triage, billing}, Options{})
	snap := h.waitFor("ready", 20*time.Second, allReady)
	triagePID, billingPIDs := agentOf(t, snap, "triage").Endpoints[0].PID, pids(agentOf(t, snap, "billing"))

	described := *triage.DeepCopy()
	described.Spec.Description = "now with a description"
	diff, err := h.s.Apply(t.Context(), []v1alpha1.Agent{described, testAgent(t, "radiology", 1, "ok")})
	if err != nil {
		t.Fatal(err)
	}
	want := Diff{Added: []string{"radiology"}, Removed: []string{"billing"}, Updated: []string{"triage"}}
	if fmt.Sprint(diff) != fmt.Sprint(want) {
		t.Errorf("diff %+v, want %+v", diff, want)
	}
	snap = h.s.Snapshot()
	if _, ok := discovery.Lookup(snap, "billing"); ok {
		t.Errorf("billing still in the snapshot after Apply returned:\n%s", dump(snap))
	}
	for name, pid := range billingPIDs {
		if !gone(pid) {
			t.Errorf("%s (pid %d) survived the removal", name, pid)
		}
	}
	if tr := agentOf(t, snap, "triage"); tr.Description != "now with a description" || tr.Endpoints[0].PID != triagePID {
		t.Errorf("triage after an in-place update:\n%s", dump(snap))
	}
	h.waitFor("radiology ready", 20*time.Second, steady("radiology", 1))
	if names := agentNames(h.s.Agents()); !slices.Equal(names, []string{"radiology", "triage"}) {
		t.Errorf("Agents() = %q", names)
	}

	// Applying the same again changes nothing.
	diff, err = h.s.Apply(t.Context(), []v1alpha1.Agent{described, testAgent(t, "radiology", 1, "ok")})
	if err != nil || diff.Changed() || !slices.Equal(diff.Unchanged, []string{"radiology", "triage"}) {
		t.Errorf("second Apply: %+v, %v", diff, err)
	}
}

func agentNames(agents []v1alpha1.Agent) []string {
	var out []string
	for _, a := range agents {
		out = append(out, a.Name)
	}
	return out
}

func TestApplyRejectsInvalidAgentsWholesale(t *testing.T) {
	t.Parallel()
	a := testAgent(t, "triage", 1, "ok")
	h := startSupervisor(t, []v1alpha1.Agent{a}, Options{})
	snap := h.waitFor("ready", 20*time.Second, allReady)

	noCommand := testAgent(t, "k8s", 1, "ok")
	noCommand.Spec.Command, noCommand.Spec.Image = nil, "example.com/agent:1"
	badName := testAgent(t, "radiology", 1, "ok")
	badName.Name = "Not_A_Name"
	for name, agents := range map[string][]v1alpha1.Agent{
		"no command": {scaled(a, 3), noCommand},
		"bad name":   {scaled(a, 3), badName},
		"duplicate":  {scaled(a, 3), a},
		"negative":   {scaled(a, -1)},
	} {
		diff, err := h.s.Apply(t.Context(), agents)
		if !errors.Is(err, ErrInvalid) || diff.Changed() {
			t.Errorf("%s: Apply = %+v, %v; want ErrInvalid", name, diff, err)
		}
	}
	if got := h.s.Snapshot(); dump(got) != dump(snap) {
		t.Errorf("a rejected Apply changed the snapshot:\n%s", dump(got))
	}
	if got := h.s.Agents(); len(got) != 1 || *got[0].Spec.Replicas != 1 {
		t.Errorf("a rejected Apply changed the agents: %+v", got)
	}
}

// Concurrent calls are serialized: every one is applied whole, one after the other.
func TestApplyConcurrentCalls(t *testing.T) {
	t.Parallel()
	a := testAgent(t, "triage", 1, "ok")
	h := startSupervisor(t, []v1alpha1.Agent{a}, Options{})
	h.waitFor("ready", 20*time.Second, allReady)
	var wg sync.WaitGroup
	for _, n := range []int32{3, 2, 4} {
		wg.Go(func() {
			if _, err := h.s.Apply(t.Context(), []v1alpha1.Agent{scaled(a, n)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	n := *h.s.Agents()[0].Spec.Replicas
	h.waitFor(fmt.Sprintf("%d ready", n), 20*time.Second, steady("triage", int(n)))
}

func TestApplyBeforeStartAndAfterStop(t *testing.T) {
	t.Parallel()
	a := testAgent(t, "triage", 1, "ok")
	s, err := New([]v1alpha1.Agent{a}, Options{DataDir: t.TempDir(), Grace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s.probeUnit = probeUnit
	if _, err := s.Apply(t.Context(), []v1alpha1.Agent{withVersion(scaled(a, 2), "2"), testAgent(t, "billing", 1, "ok")}); err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	if len(snap) != 2 || len(snap[1].Endpoints) != 2 || snap[1].Endpoints[1].State != discovery.StatePending {
		t.Fatalf("before Start:\n%s", dump(snap))
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	h := &harness{t: t, s: s, stop: cancel, done: done}
	t.Cleanup(func() { _ = h.shutdown(30 * time.Second) })
	h.waitFor("ready", 20*time.Second, allReady)
	log, _ := os.ReadFile(snap[1].Endpoints[0].LogPath)
	if !strings.Contains(string(log), `version "2"`) {
		t.Errorf("triage-0 does not run the spec applied before Start:\n%s", log)
	}

	if err := h.shutdown(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(t.Context(), []v1alpha1.Agent{a}); !errors.Is(err, ErrStopped) {
		t.Errorf("Apply after Start returned: %v, want ErrStopped", err)
	}
}

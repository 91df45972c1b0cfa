package supervisor

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/discovery"
)

func autoscaled(a v1alpha1.Agent, minReplicas, maxReplicas int32) v1alpha1.Agent {
	a = *a.DeepCopy()
	a.Spec.Replicas = ptr.To[int32](0) // the starting point
	a.Spec.Autoscaling = &v1alpha1.Autoscaling{MinReplicas: ptr.To(minReplicas), MaxReplicas: maxReplicas}
	return a
}

// An agent that scales on task load starts at minReplicas (0 here), is scaled by Scale within
// its bounds, keeps its count across an Apply, and each replica scaled away is drained before
// it is stopped.
func TestScaleAutoscaledAgent(t *testing.T) {
	t.Parallel()
	a := autoscaled(testAgent(t, "triage", 1, "ok"), 0, 3)
	var (
		mu      sync.Mutex
		drained []string
	)
	release := make(chan struct{})
	h := startSupervisor(t, []v1alpha1.Agent{a}, Options{Drain: func(ctx context.Context, url string) {
		mu.Lock()
		drained = append(drained, url)
		mu.Unlock()
		select { // the gateway still has a task on it
		case <-release:
		case <-ctx.Done():
		}
	}})
	snap := h.waitFor("at zero", 10*time.Second, steady("triage", 0))
	if ag := agentOf(t, snap, "triage"); !ag.Autoscaled || ag.MinReplicas != 0 || ag.MaxReplicas != 3 {
		t.Errorf("snapshot of an autoscaled agent: %+v", ag)
	}

	diff, err := h.s.Scale(t.Context(), "triage", 5, "test")
	if err != nil {
		t.Fatal(err)
	}
	if want := []Scale{{Agent: "triage", From: 0, To: 3}}; !slices.Equal(diff.Scaled, want) {
		t.Errorf("Scale to 5 (max 3): diff %+v, want %+v", diff, want)
	}
	up := agentOf(t, h.waitFor("3 ready", 20*time.Second, steady("triage", 3)), "triage")

	// A user's Apply of the same manifest keeps the autoscaler's count.
	if diff, err := h.s.Apply(t.Context(), []v1alpha1.Agent{a}); err != nil || len(diff.Scaled) > 0 {
		t.Fatalf("re-Apply: %+v, %v; want no scaling", diff, err)
	}

	// Scaling down waits for the drain of the replica removed, which stays Terminating, not
	// ready, and running until then.
	done := make(chan error, 1)
	go func() {
		_, err := h.s.Scale(context.Background(), "triage", 2, "test")
		done <- err
	}()
	h.waitFor("triage-2 terminating", 10*time.Second, func(snap []discovery.Agent) bool {
		ag, _ := discovery.Lookup(snap, "triage")
		return len(ag.Endpoints) == 3 && ag.Endpoints[2].State == discovery.StateTerminating && !ag.Endpoints[2].Ready
	})
	time.Sleep(300 * time.Millisecond)
	if gone(up.Endpoints[2].PID) {
		t.Fatal("triage-2 was stopped before its drain ended")
	}
	select {
	case err := <-done:
		t.Fatalf("Scale returned (%v) before the drain ended", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.waitFor("2 ready", 10*time.Second, steady("triage", 2))
	mu.Lock()
	if want := []string{up.Endpoints[2].URL}; !slices.Equal(drained, want) {
		t.Errorf("drained %v, want %v", drained, want)
	}
	mu.Unlock()

	if _, err := h.s.Scale(t.Context(), "nobody", 1, "test"); !errors.Is(err, ErrUnknownAgent) {
		t.Errorf("Scale of an unknown agent: %v", err)
	}
	// Without autoscaling, the manifest's replicas rule again, and Scale is refused.
	fixed := scaled(testAgent(t, "triage", 1, "ok"), 1)
	if _, err := h.s.Apply(t.Context(), []v1alpha1.Agent{fixed}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("1 ready", 10*time.Second, steady("triage", 1))
	if _, err := h.s.Scale(t.Context(), "triage", 2, "test"); err == nil {
		t.Error("Scale of an agent that does not autoscale succeeded")
	}
}

package autoscale

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/agentplane/agentplane/api/v1alpha1"
)

func TestSpecOf(t *testing.T) {
	a := &v1alpha1.Agent{}
	if _, ok := SpecOf(a); ok {
		t.Error("an agent without spec.autoscaling scales on task load")
	}
	a.Spec.Autoscaling = &v1alpha1.Autoscaling{MaxReplicas: 4, TargetCPUUtilizationPercentage: ptr.To[int32](70)}
	if _, ok := SpecOf(a); ok {
		t.Error("a CPU autoscaler scales on task load")
	}
	a.Spec.Autoscaling = &v1alpha1.Autoscaling{MaxReplicas: 4}
	s, ok := SpecOf(a)
	want := Spec{MinReplicas: 1, MaxReplicas: 4, Slots: 4, TargetLoad: DefaultTargetLoad, ScaleDownDelay: DefaultScaleDownDelay, ScaleToZeroAfter: DefaultScaleDownDelay}
	if !ok || s != want {
		t.Errorf("defaults: SpecOf = %+v, %v; want %+v", s, ok, want)
	}
	a.Spec.MaxConcurrency = 8
	a.Spec.Autoscaling = &v1alpha1.Autoscaling{MinReplicas: ptr.To[int32](0), MaxReplicas: 4, TargetLoad: ptr.To(0.5),
		ScaleDownDelay: &metav1.Duration{Duration: time.Minute}, ScaleToZeroAfter: &metav1.Duration{Duration: 10 * time.Minute}}
	s, _ = SpecOf(a)
	want = Spec{MinReplicas: 0, MaxReplicas: 4, Slots: 8, TargetLoad: 0.5, ScaleDownDelay: time.Minute, ScaleToZeroAfter: 10 * time.Minute}
	if s != want {
		t.Errorf("SpecOf = %+v; want %+v", s, want)
	}
}

func TestHistoryKeepsTheLongestWindow(t *testing.T) {
	spec := Spec{MaxReplicas: 2, ScaleDownDelay: time.Minute, ScaleToZeroAfter: 3 * time.Minute}
	var h History
	t0 := time.Unix(1000, 0)
	for i := range 600 {
		h.Add(Sample{At: t0.Add(time.Duration(i) * time.Second), InFlight: i}, spec)
	}
	got := h.Samples()
	if first, last := got[0].At, got[len(got)-1].At; last.Sub(first) != 6*time.Minute {
		t.Errorf("History spans %v (%d samples), want twice the 3m window", last.Sub(first), len(got))
	}
}

// Sampled as a runtime does, about once a second and never on the dot, through a History: the
// agent still reaches zero once scaleToZeroAfter (longer than scaleDownDelay) has passed idle.
func TestJitteredSamplesReachZero(t *testing.T) {
	spec := Spec{MinReplicas: 0, MaxReplicas: 4, Slots: 4, ScaleDownDelay: 3 * time.Second, ScaleToZeroAfter: 4 * time.Second}
	var h History
	now := time.Unix(1000, 0)
	current, lastTask := 0, time.Time{}
	for i := range 40 {
		now = now.Add(time.Second + time.Duration(i%3)*70*time.Millisecond)
		demand := 0
		if i >= 5 && i < 10 {
			demand, lastTask = 30, now
		}
		h.Add(Sample{At: now, InFlight: min(demand, current*4), Queued: demand - min(demand, current*4)}, spec)
		current = Desired(h.Samples(), current, spec, now).Replicas
		if i == 5 && current != 4 {
			t.Fatalf("the first busy sample gave %d replicas, want 4", current)
		}
		if current == 0 && !lastTask.IsZero() {
			if idle := now.Sub(lastTask); idle < spec.ScaleToZeroAfter || idle > spec.ScaleToZeroAfter+2*time.Second {
				t.Fatalf("zero %v after the last task, want %v", idle, spec.ScaleToZeroAfter)
			}
			return
		}
	}
	t.Fatalf("never back to zero; %d replicas", current)
}

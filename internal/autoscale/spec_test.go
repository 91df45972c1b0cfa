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
	if first, last := got[0].At, got[len(got)-1].At; last.Sub(first) > 3*time.Minute+time.Second || last.Sub(first) < 3*time.Minute {
		t.Errorf("History spans %v (%d samples), want the 3m window", last.Sub(first), len(got))
	}
}

package autoscale

import (
	"github.com/agentplane/agentplane/api/v1alpha1"
)

// SpecOf is the task-based autoscaling of an Agent, defaulted; false when the agent does not
// scale on task load (no spec.autoscaling, or a CPU autoscaler).
func SpecOf(a *v1alpha1.Agent) (Spec, bool) {
	as := a.Spec.Autoscaling
	if !as.TaskBased() {
		return Spec{}, false
	}
	s := Spec{MinReplicas: 1, MaxReplicas: int(as.MaxReplicas), Slots: int(a.Spec.MaxConcurrency)}
	if s.Slots <= 0 {
		s.Slots = int(v1alpha1.DefaultMaxConcurrency)
	}
	if as.MinReplicas != nil {
		s.MinReplicas = int(*as.MinReplicas)
	}
	if as.TargetLoad != nil {
		s.TargetLoad = *as.TargetLoad
	}
	if as.ScaleDownDelay != nil {
		s.ScaleDownDelay = as.ScaleDownDelay.Duration
	}
	if as.ScaleToZeroAfter != nil {
		s.ScaleToZeroAfter = as.ScaleToZeroAfter.Duration
	}
	return s.withDefaults(), true
}

// History is an agent's recent demand samples, as many as Desired looks at. It is not safe
// for concurrent use.
type History struct {
	samples []Sample
}

// Add records a sample, and forgets those Desired would ignore at its time.
func (h *History) Add(x Sample, spec Spec) {
	s := spec.withDefaults()
	cut := x.At.Add(-2 * max(s.ScaleDownDelay, s.ScaleToZeroAfter))
	i := 0
	for i < len(h.samples) && h.samples[i].At.Before(cut) {
		i++
	}
	h.samples = append(h.samples[i:], x)
}

// Samples are the recorded samples, oldest first; the caller must not keep them past the next
// Add.
func (h *History) Samples() []Sample { return h.samples }

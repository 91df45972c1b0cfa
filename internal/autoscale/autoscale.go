// Package autoscale decides how many replicas an agent should have from its task demand: tasks
// in flight plus tasks queued, against its slots (replicas × maxConcurrency). It is one pure
// function of (samples of demand, current replicas, spec, now), so that embedded mode and the
// operator decide alike and tests replay recorded load shapes with a fake clock.
//
// Like the HorizontalPodAutoscaler it scales up at once on the latest sample, scales down only
// to the highest recommendation over a stabilization window (ScaleDownDelay), and ignores
// changes within a tolerance of the target, so that steady load near the target does not flap.
// Unlike it, it scales to zero after ScaleToZeroAfter without demand, and back from zero on the
// first queued task.
package autoscale

import (
	"fmt"
	"math"
	"time"
)

// Defaults for Spec.
const (
	DefaultTargetLoad     = 0.7
	DefaultScaleDownDelay = 5 * time.Minute
	// Tolerance is the relative distance from the target within which no change is made.
	Tolerance = 0.1
)

// Spec is an agent's autoscaling: the fields of spec.autoscaling, and its maxConcurrency.
type Spec struct {
	MinReplicas int // 0 allows scaling to zero
	MaxReplicas int
	// Slots is the tasks one replica runs at once (maxConcurrency); at least 1.
	Slots int
	// TargetLoad is the fraction of the slots the autoscaler aims to keep busy, counting
	// queued tasks as demand; default DefaultTargetLoad.
	TargetLoad float64
	// ScaleDownDelay is how long load must stay low before replicas are removed; default
	// DefaultScaleDownDelay.
	ScaleDownDelay time.Duration
	// ScaleToZeroAfter is how long an agent must have no demand before it goes to zero, when
	// MinReplicas is 0; default ScaleDownDelay.
	ScaleToZeroAfter time.Duration
}

func (s Spec) withDefaults() Spec {
	if s.TargetLoad <= 0 || s.TargetLoad > 1 {
		s.TargetLoad = DefaultTargetLoad
	}
	if s.ScaleDownDelay <= 0 {
		s.ScaleDownDelay = DefaultScaleDownDelay
	}
	if s.ScaleToZeroAfter <= 0 {
		s.ScaleToZeroAfter = s.ScaleDownDelay
	}
	s.Slots = max(s.Slots, 1)
	s.MinReplicas = max(s.MinReplicas, 0)
	s.MaxReplicas = max(s.MaxReplicas, s.MinReplicas, 1)
	return s
}

// Sample is the agent's demand at one time: tasks running on its replicas and tasks waiting for
// a slot.
type Sample struct {
	At       time.Time
	InFlight int
	Queued   int
}

// Demand is the tasks that want a slot.
func (s Sample) Demand() int { return s.InFlight + s.Queued }

// Decision is how many replicas the agent should have, and why, in words for events, the
// dashboard and `agentplane describe`.
type Decision struct {
	Replicas int
	Reason   string
}

// Desired decides the replicas of an agent that has current replicas, from samples (in any
// order; those older than twice the longest window are ignored) at now.
func Desired(samples []Sample, current int, spec Spec, now time.Time) Decision {
	s := spec.withDefaults()
	window := max(s.ScaleDownDelay, s.ScaleToZeroAfter)
	var latest *Sample
	var recent []Sample
	oldest := now
	for i := range samples {
		x := samples[i]
		// Samples up to twice the window back show that the window is covered; only those
		// within each window count for its decision.
		if x.At.After(now) || now.Sub(x.At) > 2*window {
			continue
		}
		recent = append(recent, x)
		if latest == nil || x.At.After(latest.At) {
			latest = &samples[i]
		}
		if x.At.Before(oldest) {
			oldest = x.At
		}
	}
	clamp := func(n int) int { return min(max(n, s.MinReplicas), s.MaxReplicas) }
	if latest == nil {
		// Nothing known: keep what there is, within the bounds.
		n := clamp(current)
		return Decision{n, reason(current, n, "no demand samples yet; keeping the current replicas within the bounds")}
	}
	demand := latest.Demand()
	load := func(replicas int) float64 {
		if replicas == 0 {
			return math.Inf(1)
		}
		return float64(demand) / float64(replicas*s.Slots)
	}
	want := s.replicasFor(demand)

	// From zero: the first task asks for a replica at once.
	if current == 0 {
		n := clamp(want)
		return Decision{n, reason(current, n, fmt.Sprintf("%s waiting and no replica", tasks(demand)))}
	}
	// Up: at once, unless within the tolerance.
	if want > current {
		if load(current)/s.TargetLoad <= 1+Tolerance {
			return Decision{clamp(current), reason(current, clamp(current), fmt.Sprintf("load %.2f within %.0f%% of target %.2f", load(current), Tolerance*100, s.TargetLoad))}
		}
		n := clamp(want)
		return Decision{n, reason(current, n, fmt.Sprintf("load %.2f over target %.2f", load(current), s.TargetLoad))}
	}
	// To zero: no demand for ScaleToZeroAfter, known over the whole of it.
	if s.MinReplicas == 0 && now.Sub(oldest) >= s.ScaleToZeroAfter && idleSince(recent, now.Add(-s.ScaleToZeroAfter)) {
		return Decision{0, reason(current, 0, fmt.Sprintf("no task for %s", s.ScaleToZeroAfter))}
	}
	// Down: to the highest recommendation over the delay, known over the whole of it.
	if now.Sub(oldest) < s.ScaleDownDelay {
		n := clamp(current)
		return Decision{n, reason(current, n, fmt.Sprintf("load %.2f; less than %s of samples to scale down on", load(current), s.ScaleDownDelay))}
	}
	highest := 0
	for _, x := range recent {
		if now.Sub(x.At) <= s.ScaleDownDelay {
			highest = max(highest, s.replicasFor(x.Demand()))
		}
	}
	n := clamp(max(highest, 1))
	if n < current && load(current)/s.TargetLoad >= 1-Tolerance {
		n = clamp(current)
	}
	if n < current {
		return Decision{n, reason(current, n, fmt.Sprintf("load %.2f under target %.2f for %s", load(current), s.TargetLoad, s.ScaleDownDelay))}
	}
	n = clamp(current)
	return Decision{n, reason(current, n, fmt.Sprintf("load %.2f, target %.2f", load(current), s.TargetLoad))}
}

// replicasFor is the replicas that run demand at the target load: at least one for any demand.
func (s Spec) replicasFor(demand int) int {
	if demand <= 0 {
		return 0
	}
	return int(math.Ceil(float64(demand) / (float64(s.Slots) * s.TargetLoad)))
}

// idleSince reports whether no sample at or after t had demand.
func idleSince(samples []Sample, t time.Time) bool {
	for _, x := range samples {
		if !x.At.Before(t) && x.Demand() > 0 {
			return false
		}
	}
	return true
}

// tasks is "1 task" or "n tasks".
func tasks(n int) string {
	if n == 1 {
		return "1 task"
	}
	return fmt.Sprintf("%d tasks", n)
}

func reason(from, to int, why string) string {
	if from == to {
		return fmt.Sprintf("kept %d: %s", to, why)
	}
	return fmt.Sprintf("scaled %d→%d: %s", from, to, why)
}

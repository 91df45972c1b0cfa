package autoscale

import (
	"math"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)

const step = 15 * time.Second

// replay runs the autoscaler on a recorded demand shape, one sample every step, starting at
// start replicas; it returns the replicas after each step and the reasons of the changes.
func replay(spec Spec, start int, demand []int) (replicas []int, changes []string) {
	var samples []Sample
	current := start
	for i, d := range demand {
		now := t0.Add(time.Duration(i) * step)
		samples = append(samples, Sample{At: now, InFlight: min(d, current*max(spec.Slots, 1)), Queued: d - min(d, current*max(spec.Slots, 1))})
		dec := Desired(samples, current, spec, now)
		if dec.Replicas != current {
			changes = append(changes, dec.Reason)
		}
		current = dec.Replicas
		replicas = append(replicas, current)
	}
	return replicas, changes
}

func repeat(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func steps(d time.Duration) int { return int(d / step) }

func maxOf(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// reversals counts how often the replicas changed direction (up then down, or down then up).
func reversals(xs []int) int {
	n, dir := 0, 0
	for i := 1; i < len(xs); i++ {
		d := xs[i] - xs[i-1]
		if d == 0 {
			continue
		}
		if dir != 0 && (d > 0) != (dir > 0) {
			n++
		}
		dir = d
	}
	return n
}

func TestBurstScalesUpAtOnceAndBackToZeroAfterTheDelay(t *testing.T) {
	spec := Spec{MinReplicas: 0, MaxReplicas: 4, Slots: 4, ScaleDownDelay: 2 * time.Minute, ScaleToZeroAfter: 3 * time.Minute}
	// Idle, then 200 tasks that drain over 5 minutes, then idle.
	var demand []int
	demand = append(demand, repeat(0, steps(4*time.Minute))...)
	burstAt := len(demand)
	for left := 200; left > 0; left -= 10 {
		demand = append(demand, left)
	}
	lastDemand := len(demand) - 1
	demand = append(demand, repeat(0, steps(10*time.Minute))...)
	got, changes := replay(spec, 0, demand)
	if got[burstAt-1] != 0 {
		t.Fatalf("at rest: %d replicas, want 0", got[burstAt-1])
	}
	if got[burstAt] != 4 {
		t.Fatalf("the burst's first sample gave %d replicas, want the maximum 4 at once", got[burstAt])
	}
	if maxOf(got) != 4 {
		t.Fatalf("peak %d replicas, over the maximum 4", maxOf(got))
	}
	zeroAt := -1
	for i := lastDemand; i < len(got); i++ {
		if got[i] == 0 {
			zeroAt = i
			break
		}
	}
	idle := time.Duration(zeroAt-lastDemand) * step
	if zeroAt < 0 || idle < spec.ScaleToZeroAfter || idle > spec.ScaleToZeroAfter+2*step {
		t.Fatalf("back to zero %s after the last task (at step %d), want after %s: %v", idle, zeroAt, spec.ScaleToZeroAfter, got)
	}
	if !strings.HasPrefix(changes[0], "scaled 0→4: 200 tasks waiting") {
		t.Errorf("first change: %q", changes[0])
	}
	if last := changes[len(changes)-1]; !strings.Contains(last, "→0: no task for 3m0s") {
		t.Errorf("last change: %q", last)
	}
}

func TestRampFollowsDemandUpwardWithoutGoingDown(t *testing.T) {
	spec := Spec{MinReplicas: 1, MaxReplicas: 10, Slots: 2}
	var demand []int
	for i := range 60 {
		demand = append(demand, i/3) // one more task every 45 s
	}
	got, _ := replay(spec, 1, demand)
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			t.Fatalf("went down during a ramp at step %d: %v", i, got)
		}
	}
	// 19 tasks at the end need ceil(19/(2×0.7)) = 14 replicas: capped at 10.
	if got[len(got)-1] != 10 {
		t.Fatalf("end of ramp: %d replicas, want the maximum 10: %v", got[len(got)-1], got)
	}
}

func TestDiurnalLoadFollowsWithoutFlapping(t *testing.T) {
	spec := Spec{MinReplicas: 1, MaxReplicas: 20, Slots: 4}
	// Two "days" compressed to 2 hours each, demand 2..42 tasks.
	var demand []int
	n := steps(4 * time.Hour)
	for i := range n {
		demand = append(demand, int(22+20*math.Sin(2*math.Pi*float64(i)/float64(steps(2*time.Hour)))))
	}
	got, changes := replay(spec, 1, demand)
	if maxOf(got) < 14 || maxOf(got) > 16 {
		t.Errorf("peak %d replicas for 42 tasks of 4 slots at 0.7, want about 15", maxOf(got))
	}
	// Two peaks and two troughs: the direction changes about four times, not on every wiggle.
	if r := reversals(got); r > 5 {
		t.Errorf("%d reversals over two days: flapping: %v", r, got)
	}
	if len(changes) > 80 {
		t.Errorf("%d changes over two days", len(changes))
	}
}

func TestSteadyLoadNearTheTargetDoesNotOscillate(t *testing.T) {
	spec := Spec{MinReplicas: 1, MaxReplicas: 10, Slots: 4}
	// 3 replicas × 4 slots × 0.7 = 8.4 tasks: demand wavers between 7 and 9.
	var demand []int
	for i := range steps(time.Hour) {
		demand = append(demand, []int{8, 9, 7, 8, 9, 8, 7}[i%7])
	}
	got, changes := replay(spec, 3, demand)
	if len(changes) != 0 {
		t.Fatalf("steady load near the target changed the replicas: %v", changes)
	}
	if got[len(got)-1] != 3 {
		t.Fatalf("ended at %d replicas", got[len(got)-1])
	}
	// Noise around a level that needs 4: up once, and no way back down and up again.
	for i := range demand {
		demand[i] = []int{10, 12, 9, 11, 12, 10, 9}[i%7]
	}
	got, _ = replay(spec, 3, demand)
	if r := reversals(got); r != 0 {
		t.Fatalf("%d reversals under noisy steady load: %v", r, got)
	}
}

func TestBounds(t *testing.T) {
	spec := Spec{MinReplicas: 2, MaxReplicas: 5, Slots: 1, ScaleDownDelay: time.Minute}
	got, _ := replay(spec, 2, repeat(1000, 4))
	if got[0] != 5 {
		t.Fatalf("huge demand gave %d replicas, want the maximum 5", got[0])
	}
	got, _ = replay(spec, 5, repeat(0, steps(30*time.Minute)))
	if got[len(got)-1] != 2 || maxOf(got) > 5 {
		t.Fatalf("no demand with minReplicas 2: %v", got)
	}
	if got[steps(time.Minute)-1] != 5 {
		t.Fatalf("scaled down before the delay: %v", got)
	}
}

func TestDecisionsAtTheEdges(t *testing.T) {
	spec := Spec{MinReplicas: 0, MaxReplicas: 3, Slots: 2}
	for _, tc := range []struct {
		name    string
		samples []Sample
		current int
		want    int
	}{
		{"no samples keeps the current within bounds", nil, 7, 3},
		{"the first queued task at zero asks for a replica", []Sample{{At: t0, Queued: 1}}, 0, 1},
		{"idle at zero stays at zero", []Sample{{At: t0}}, 0, 0},
		{"samples from the future are ignored", []Sample{{At: t0.Add(time.Hour), Queued: 50}}, 1, 1},
		{"too short a history does not scale down", []Sample{{At: t0.Add(-time.Minute)}, {At: t0}}, 2, 2},
		{"stale samples are ignored", []Sample{{At: t0.Add(-time.Hour), Queued: 50}}, 1, 1},
	} {
		if got := Desired(tc.samples, tc.current, spec, t0); got.Replicas != tc.want || got.Reason == "" {
			t.Errorf("%s: Desired = %+v, want %d", tc.name, got, tc.want)
		}
	}
}

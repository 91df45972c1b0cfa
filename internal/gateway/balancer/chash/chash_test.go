package chash

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/agentplane/agentplane/internal/gateway/balancer"
)

func replicas(n, capacity int) []balancer.Candidate {
	cs := make([]balancer.Candidate, n)
	for i := range cs {
		cs[i] = balancer.Candidate{Key: fmt.Sprintf("http://127.0.0.1:%d", 40000+i), Capacity: capacity}
	}
	return cs
}

// sim places and completes tasks of keys drawn by key, and reports the share of placements on
// each key's preferred replica. check runs after every placement on replica i.
func sim(t *testing.T, p *Picker, cs []balancer.Candidate, steps, target int, rnd *rand.Rand, key func() string, check func(i, total int)) float64 {
	t.Helper()
	type task struct{ replica int }
	var inflight []task
	sticky, placed := 0, 0
	for range steps {
		if len(inflight) < target && rnd.IntN(4) != 0 || len(inflight) == 0 {
			k := key()
			i, ok := p.PickKey(k, cs)
			if !ok {
				t.Fatal("PickKey found no replica")
			}
			if i == Preferred(k, cs) {
				sticky++
			}
			placed++
			cs[i].InFlight++
			inflight = append(inflight, task{i})
			check(i, len(inflight))
			continue
		}
		j := rnd.IntN(len(inflight))
		cs[inflight[j].replica].InFlight--
		inflight[j] = inflight[len(inflight)-1]
		inflight = inflight[:len(inflight)-1]
	}
	return float64(sticky) / float64(placed)
}

func TestBoundHoldsUnderSkew(t *testing.T) {
	for _, c := range []float64{1.1, 1.25, 2} {
		p := New(c)
		rnd := rand.New(rand.NewPCG(1, 2))
		cs := replicas(8, 1000) // capacity out of the way: only the bound limits
		// Zipf-skewed contexts: a few conversations are very busy, which plain hashing would
		// pile onto their replicas.
		zipf := rand.NewZipf(rand.New(rand.NewPCG(3, 4)), 1.3, 1, 500)
		key := func() string { return fmt.Sprintf("ctx-%d", zipf.Uint64()) }
		sim(t, p, cs, 50_000, 120, rnd, key, func(i, total int) {
			// The paper's bound, checked on every placement: the replica that takes the task
			// holds at most ⌈c·average⌉ tasks afterwards. (Tasks are not moved when others
			// finish, so a replica may sit above a bound that shrank until its own tasks end.)
			bound := int(math.Ceil(c * float64(total) / float64(len(cs))))
			if cs[i].InFlight > bound {
				t.Fatalf("c=%v: replica %s took a task to %d of %d, over ⌈c·avg⌉ = %d", c, cs[i].Key, cs[i].InFlight, total, bound)
			}
		})
	}
}

func TestSkewWouldBreakPlainHashing(t *testing.T) {
	// The same traffic as TestBoundHoldsUnderSkew with no effective bound piles far more onto
	// one replica, so that test's bound is doing the work.
	rnd := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rand.New(rand.NewPCG(3, 4)), 1.3, 1, 500)
	key := func() string { return fmt.Sprintf("ctx-%d", zipf.Uint64()) }
	cs := replicas(8, 1000)
	peak := 0
	sim(t, New(1000), cs, 50_000, 120, rnd, key, func(i, _ int) { peak = max(peak, cs[i].InFlight) })
	if bound := int(math.Ceil(2 * 120.0 / 8)); peak <= bound {
		t.Fatalf("plain hashing peaked at %d tasks on a replica, not above %d: the skew is too weak to test the bound", peak, bound)
	}
}

func TestStickyWhenBalanced(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	key := func() string { return fmt.Sprintf("ctx-%d", rnd.IntN(2000)) }
	share := sim(t, New(1.25), replicas(8, 1000), 50_000, 80, rnd, key, func(int, int) {})
	t.Logf("c=1.25: %.1f%% of tasks on their context's replica", 100*share)
	if share < 0.85 {
		t.Fatalf("only %.1f%% of tasks went to their context's replica with uniform traffic; want ≥ 85%%", 100*share)
	}
	// A loose bound never moves a context.
	share = sim(t, New(100), replicas(8, 1000), 10_000, 80, rnd, key, func(int, int) {})
	if share != 1 {
		t.Fatalf("c=100: %.3f of tasks on their context's replica, want all", share)
	}
}

func TestRemovingAReplicaMovesOnlyItsKeys(t *testing.T) {
	p := New(1.25)
	cs := replicas(10, 4)
	removed := cs[3].Key
	rest := append(append([]balancer.Candidate{}, cs[:3]...), cs[4:]...)
	moved := map[string]int{}
	n := 0
	for k := range 20_000 {
		key := fmt.Sprintf("ctx-%d", k)
		i, _ := p.PickKey(key, cs)
		j, _ := p.PickKey(key, rest)
		before, after := cs[i].Key, rest[j].Key
		if before != removed && before != after {
			t.Fatalf("key %s moved from %s to %s although only %s was removed", key, before, after, removed)
		}
		if before == removed {
			moved[after]++
			n++
		}
	}
	// The removed replica's keys spread over all the others, not onto one neighbour.
	if len(moved) != len(rest) {
		t.Fatalf("moved keys went to %d replicas, want all %d", len(moved), len(rest))
	}
	for r, m := range moved {
		if share := float64(m) / float64(n); share < 0.05 || share > 0.2 {
			t.Errorf("replica %s got %.1f%% of the moved keys; want about 11%%", r, 100*share)
		}
	}
}

func TestOverloadedReplicaSpillsAndComesBack(t *testing.T) {
	p := New(1.25)
	cs := replicas(4, 100)
	key := "ctx-hot"
	home := Preferred(key, cs)
	cs[home].InFlight = 5 // total 5, bound ⌈1.25·6/4⌉ = 2: home is over it
	i, ok := p.PickKey(key, cs)
	if !ok || i == home {
		t.Fatalf("PickKey = %d, %v; want another replica while %d is over the bound", i, ok, home)
	}
	for i := range cs {
		cs[i].InFlight = 1 // total 4, bound ⌈1.25·5/4⌉ = 2: everyone has room
	}
	if i, _ := p.PickKey(key, cs); i != home {
		t.Fatalf("back under the bound: PickKey = %d, want home %d", i, home)
	}
}

func TestBoundFollowsCapacity(t *testing.T) {
	p := New(1)
	// 10 tasks, capacities 8 and 2: bounds ⌈11·8/10⌉ = 9 and ⌈11·2/10⌉ = 3.
	if b := p.Bound(10, 8, 10); b != 9 {
		t.Fatalf("Bound big = %d, want 9", b)
	}
	if b := p.Bound(10, 2, 10); b != 3 {
		t.Fatalf("Bound small = %d, want 3", b)
	}
	if _, ok := p.PickKey("k", nil); ok {
		t.Fatal("PickKey(nil) ok")
	}
	if New(0).balance != DefaultBalance {
		t.Fatal("c < 1 must mean the default")
	}
}

package policies

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/agentplane/agentplane/internal/gateway/balancer"
)

func TestDefaultRegistersTheNamedPolicies(t *testing.T) {
	r := Default(Options{})
	if got := r.Names(); !slices.Equal(got, []string{CHash, P2C}) {
		t.Fatalf("Names = %v", got)
	}
	for _, state := range []string{"stateful", "stateless", ""} {
		if _, ok := r.Get(NameFor(state)); !ok {
			t.Fatalf("no policy for state %q", state)
		}
	}
	if NameFor("stateful") != CHash || NameFor("stateless") != P2C {
		t.Fatal("NameFor maps states to the wrong policies")
	}
	if err := Register(r, Options{}); err == nil {
		t.Fatal("registering the names twice succeeded")
	}
}

// TestResidencyIsNeverViolated places many tasks on random fleets (sites, readiness, ejection,
// load) with random residency rules, through both policies, and checks that every placement is
// in an allowed site and every refusal happened only when no allowed replica could serve.
func TestResidencyIsNeverViolated(t *testing.T) {
	sites := []string{"a", "b", "c", ""}
	rnd := rand.New(rand.NewPCG(11, 12))
	r := Default(Options{Site: "b"})
	refusedResidency, refusedDown := 0, 0
	for n := range 20_000 {
		cands := make([]balancer.Candidate, 1+rnd.IntN(6))
		for i := range cands {
			cands[i] = balancer.Candidate{Key: fmt.Sprint("r", i), Site: sites[rnd.IntN(len(sites))],
				Ready: rnd.IntN(3) != 0, Ejected: rnd.IntN(4) == 0, Capacity: 2, InFlight: rnd.IntN(2)}
		}
		var allowed []string
		for _, s := range sites[:3] {
			if rnd.IntN(2) == 0 {
				allowed = append(allowed, s)
			}
		}
		req := balancer.Request{AllowedSites: allowed}
		if n%2 == 0 {
			req.AffinityKey = fmt.Sprint("ctx-", rnd.IntN(50))
		}
		pol, _ := r.Get([]string{P2C, CHash}[n%2])
		i, err := pol.Pick(req, cands)
		inRule := func(c balancer.Candidate) bool {
			return len(allowed) == 0 || slices.Contains(allowed, c.Site) && c.Site != ""
		}
		if err == nil {
			if c := cands[i]; !inRule(c) || !c.Ready || c.InFlight >= c.Capacity {
				t.Fatalf("placed on %+v with allowed sites %v", c, allowed)
			}
			continue
		}
		serving := slices.ContainsFunc(cands, func(c balancer.Candidate) bool { return inRule(c) && c.Ready && c.InFlight < c.Capacity })
		if serving {
			t.Fatalf("refused (%v) although an allowed replica could serve: %+v, allowed %v", err, cands, allowed)
		}
		switch {
		case errors.Is(err, balancer.ErrResidency):
			refusedResidency++
		case errors.Is(err, balancer.ErrUnavailable):
			refusedDown++
		}
	}
	if refusedResidency == 0 || refusedDown == 0 {
		t.Fatalf("the random fleets never exercised a refusal (residency %d, down %d)", refusedResidency, refusedDown)
	}
}

func TestResidencyRefusesWhenTheAllowedSiteIsDown(t *testing.T) {
	cands := []balancer.Candidate{
		{Key: "eu-1", Site: "eu", Ready: false, Capacity: 4},
		{Key: "eu-2", Site: "eu", Ready: true, Ejected: true, Capacity: 4, InFlight: 4},
		{Key: "us-1", Site: "us", Ready: true, Capacity: 4},
		{Key: "us-2", Site: "us", Ready: true, Capacity: 4},
	}
	for _, name := range []string{P2C, CHash} {
		pol, _ := Default(Options{Site: "us"}).Get(name)
		// eu-2 is full: saturated, so the task waits for it rather than going to us.
		if _, err := pol.Pick(balancer.Request{AllowedSites: []string{"eu"}, AffinityKey: "c"}, cands); !errors.Is(err, balancer.ErrSaturated) {
			t.Fatalf("%s: allowed replica full: err = %v, want ErrSaturated", name, err)
		}
		down := slices.Clone(cands)
		down[1].Ready = false
		if _, err := pol.Pick(balancer.Request{AllowedSites: []string{"eu"}, AffinityKey: "c"}, down); !errors.Is(err, balancer.ErrUnavailable) {
			t.Fatalf("%s: allowed site down: err = %v, want ErrUnavailable (and never a us replica)", name, err)
		}
		if _, err := pol.Pick(balancer.Request{AllowedSites: []string{"apac"}}, cands); !errors.Is(err, balancer.ErrResidency) {
			t.Fatalf("%s: no replica in the allowed site: err = %v, want ErrResidency", name, err)
		}
	}
}

func TestLocalSiteFirstSpillWhenSaturated(t *testing.T) {
	pol, _ := Default(Options{Site: "here", Seed: 3}).Get(P2C)
	cands := []balancer.Candidate{
		{Key: "here-1", Site: "here", Ready: true, Capacity: 2, InFlight: 1},
		{Key: "there-1", Site: "there", Ready: true, Capacity: 2},
		{Key: "there-2", Site: "there", Ready: true, Capacity: 2},
		{Key: "there-3", Site: "there", Ready: true, Capacity: 2},
	}
	for range 500 {
		// The remote replicas are idle and there are more of them; the local one still wins.
		if i, err := pol.Pick(balancer.Request{}, cands); err != nil || cands[i].Key != "here-1" {
			t.Fatalf("Pick = %v, %v; want the local replica while it has room", i, err)
		}
	}
	cands[0].InFlight = 2 // local full: spill
	if i, err := pol.Pick(balancer.Request{}, cands); err != nil || cands[i].Site != "there" {
		t.Fatalf("local saturated: Pick = %v, %v; want a remote replica", i, err)
	}
	cands[0].InFlight, cands[0].Ready = 0, false // local down: spill
	if i, err := pol.Pick(balancer.Request{}, cands); err != nil || cands[i].Site != "there" {
		t.Fatalf("local down: Pick = %v, %v; want a remote replica", i, err)
	}
}

func TestP2CPolicyPicksTheLeastExpectedDelay(t *testing.T) {
	pol, _ := Default(Options{}).Get(P2C)
	pick := func(cands []balancer.Candidate) string {
		t.Helper()
		i, err := pol.Pick(balancer.Request{}, cands)
		if err != nil {
			t.Fatal(err)
		}
		return cands[i].Key
	}
	cands := []balancer.Candidate{
		{Key: "slow", Ready: true, Capacity: 4, InFlight: 1, Latency: 1000e6},
		{Key: "fast", Ready: true, Capacity: 4, InFlight: 1, Latency: 200e6},
	}
	for range 200 {
		if got := pick(cands); got != "fast" {
			t.Fatal("picked the slower of two equally loaded replicas")
		}
	}
	// Idle but 5× slower: a task still finishes sooner on the fast one with 3 of 4 slots
	// taken (200 ms × 1.75 < 1000 ms).
	cands[0].InFlight, cands[1].InFlight = 0, 3
	for range 200 {
		if got := pick(cands); got != "fast" {
			t.Fatal("an idle replica 5× slower beat a busy fast one")
		}
	}
	// Only 25% slower and idle: it beats the fast one with half its slots taken
	// (250 ms < 200 ms × 1.5).
	cands[0].Latency, cands[1].InFlight = 250e6, 2
	for range 200 {
		if got := pick(cands); got != "slow" {
			t.Fatal("load did not outweigh a small latency difference")
		}
	}
}

func TestP2CPolicyCountsUnmeasuredReplicasAtTheMedian(t *testing.T) {
	pol, _ := Default(Options{Seed: 5}).Get(P2C)
	cands := []balancer.Candidate{
		{Key: "a", Ready: true, Capacity: 4, InFlight: 2, Latency: 100e6},
		{Key: "b", Ready: true, Capacity: 4, InFlight: 2, Latency: 300e6},
		{Key: "c", Ready: true, Capacity: 4, InFlight: 2, Latency: 400e6},
		{Key: "new", Ready: true, Capacity: 4},
	}
	// new counts at the median, 300 ms, idle: dearer than a (100 ms × 1.5), cheaper than b and
	// c (× 1.5); with a full it gets the task, and so is measured.
	seen := map[string]int{}
	for range 200 {
		i, _ := pol.Pick(balancer.Request{}, cands)
		seen[cands[i].Key]++
	}
	if seen["a"] != 200 {
		t.Fatalf("picks %v; want all on a", seen)
	}
	cands[0].InFlight = 4
	for range 200 {
		if i, _ := pol.Pick(balancer.Request{}, cands); cands[i].Key != "new" {
			t.Fatalf("picked %s; want the unmeasured idle replica over busier, slower ones", cands[i].Key)
		}
	}
	// Nothing measured: the least loaded, ties at random.
	for i := range cands {
		cands[i].Latency, cands[i].InFlight = 0, 1
	}
	cands[2].InFlight = 0
	for range 200 {
		if i, _ := pol.Pick(balancer.Request{}, cands); cands[i].Key != "c" {
			t.Fatal("with no latency known, the least loaded replica was not picked")
		}
	}
	cands[2].InFlight = 1
	seen = map[string]int{}
	for range 4000 {
		i, _ := pol.Pick(balancer.Request{}, cands)
		seen[cands[i].Key]++
	}
	for _, c := range cands {
		if n := seen[c.Key]; n < 800 || n > 1200 {
			t.Fatalf("ties broken unevenly: %v", seen)
		}
	}
}

// TestP2CPolicyNeverMissesTheFastReplica: with one fast replica among four, two random
// samples miss it half the time; a full scan of so few never does.
func TestP2CPolicyNeverMissesTheFastReplica(t *testing.T) {
	pol, _ := Default(Options{Seed: 9}).Get(P2C)
	cands := []balancer.Candidate{
		{Key: "slow-1", Ready: true, Capacity: 8, Latency: 800e6},
		{Key: "slow-2", Ready: true, Capacity: 8, Latency: 800e6},
		{Key: "fast", Ready: true, Capacity: 8, InFlight: 4, Latency: 200e6},
		{Key: "slow-3", Ready: true, Capacity: 8, Latency: 800e6},
	}
	for range 500 {
		if i, _ := pol.Pick(balancer.Request{}, cands); cands[i].Key != "fast" {
			t.Fatalf("picked %s over the fast replica", cands[i].Key)
		}
	}
	// Beyond ScanUpTo it samples two: still never the worst.
	sampled, _ := Default(Options{Seed: 9, ScanUpTo: 2}).Get(P2C)
	missed := 0
	for range 2000 {
		i, _ := sampled.Pick(balancer.Request{}, cands)
		if cands[i].Key != "fast" {
			missed++
		}
	}
	if missed < 700 || missed > 1300 {
		t.Fatalf("sampling two of four missed the fast replica %d times in 2000; want about half", missed)
	}
}

func TestP2CPolicyKeepsAConversationOnItsWarmReplica(t *testing.T) {
	pol, _ := Default(Options{}).Get(P2C)
	cands := []balancer.Candidate{
		{Key: "warm", Ready: true, Capacity: 8, InFlight: 4, Latency: 200e6},
		{Key: "idle", Ready: true, Capacity: 8, Latency: 200e6},
	}
	req := balancer.Request{Warm: "warm"}
	// 200 ms × 1.5 = 300 ms against 200 ms: within 2×, so it stays.
	for range 100 {
		if i, _ := pol.Pick(req, cands); cands[i].Key != "warm" {
			t.Fatal("a conversation left its warm replica for one only somewhat less busy")
		}
	}
	// 500 ms × 1.5 = 750 ms: more than 2× the idle one's 200 ms; it moves.
	cands[0].Latency = 500e6
	if i, _ := pol.Pick(req, cands); cands[i].Key != "idle" {
		t.Fatal("a conversation stayed on a replica far busier than another")
	}
	// Full: the capacity filter drops it, whatever the preference.
	cands[0].InFlight = 8
	if i, _ := pol.Pick(req, cands); cands[i].Key != "idle" {
		t.Fatal("a conversation went to a full replica")
	}
	// Off.
	cands[0].Latency = 200e6
	off, _ := Default(Options{Warm: -1}).Get(P2C)
	if i, _ := off.Pick(req, cands); cands[i].Key != "idle" {
		t.Fatal("Warm < 0 still preferred the warm replica")
	}
	// A warm replica gone from the candidates (stopped) is simply not there.
	if i, err := pol.Pick(balancer.Request{Warm: "gone"}, cands); err != nil || cands[i].Key != "idle" {
		t.Fatalf("Pick with an unknown warm replica = %v, %v", i, err)
	}
}

func TestCHashPolicyKeepsContextsAndSkipsEjected(t *testing.T) {
	pol, _ := Default(Options{}).Get(CHash)
	cands := []balancer.Candidate{}
	for i := range 5 {
		cands = append(cands, balancer.Candidate{Key: fmt.Sprint("r", i), Ready: true, Capacity: 8})
	}
	home := map[string]string{}
	for k := range 200 {
		key := fmt.Sprint("ctx-", k)
		i, err := pol.Pick(balancer.Request{AffinityKey: key}, cands)
		if err != nil {
			t.Fatal(err)
		}
		home[key] = cands[i].Key
		if j, _ := pol.Pick(balancer.Request{AffinityKey: key}, cands); cands[j].Key != home[key] {
			t.Fatalf("context %s moved from %s to %s with nothing changed", key, home[key], cands[j].Key)
		}
	}
	cands[2].Ejected = true
	for key, h := range home {
		i, _ := pol.Pick(balancer.Request{AffinityKey: key}, cands)
		if got := cands[i].Key; (h == "r2") == (got == h) {
			t.Fatalf("r2 ejected: context %s (home %s) went to %s", key, h, got)
		}
	}
}

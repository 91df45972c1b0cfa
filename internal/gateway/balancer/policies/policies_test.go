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

func TestP2CPolicyPrefersTheFasterOfEquallyLoaded(t *testing.T) {
	pol, _ := Default(Options{}).Get(P2C)
	cands := []balancer.Candidate{
		{Key: "slow", Ready: true, Capacity: 4, InFlight: 1, Latency: 1000e6},
		{Key: "fast", Ready: true, Capacity: 4, InFlight: 1, Latency: 200e6},
	}
	for range 200 {
		if i, _ := pol.Pick(balancer.Request{}, cands); cands[i].Key != "fast" {
			t.Fatal("picked the slower of two equally loaded replicas")
		}
	}
	// One task less on the slow replica outweighs its latency.
	cands[0].InFlight = 0
	for range 200 {
		if i, _ := pol.Pick(balancer.Request{}, cands); cands[i].Key != "slow" {
			t.Fatal("latency outweighed a whole task of load")
		}
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

package policies

import (
	"errors"

	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/gateway/balancer"
	"github.com/agentplane/agentplane/internal/gateway/balancer/chash"
	"github.com/agentplane/agentplane/internal/gateway/balancer/filter"
	"github.com/agentplane/agentplane/internal/gateway/balancer/scorer"
)

// Names of the policies Register builds.
const (
	// P2C is for stateless agents: the better of two random replicas by load, then latency.
	P2C = "p2c"
	// CHash is for stateful agents: bounded-load consistent hashing on the contextId, and P2C
	// for tasks that have no contextId yet.
	CHash = "chash"
)

// Defaults for Options.
const (
	DefaultLatencyWeight = 0.1
)

// Options configure the named policies.
type Options struct {
	// Site is the gateway's own site; its replicas are preferred. Empty prefers none.
	Site string
	// Balance is the bound factor c of CHash (each replica ≤ ⌈c × average⌉); 0 means 1.25.
	Balance float64
	// LatencyWeight is the Latency scorer's weight next to Load's 1; 0 means 0.1, negative
	// turns it off.
	LatencyWeight float64
	// Seed seeds the random choices of P2C.
	Seed uint64
}

// Register adds the policies P2C and CHash to r.
func Register(r *balancer.Registry, o Options) error {
	return errors.Join(r.Register(newP2C(o)), r.Register(newCHash(o)))
}

// Default returns a registry holding the policies Register builds.
func Default(o Options) *balancer.Registry {
	r := balancer.NewRegistry()
	if err := Register(r, o); err != nil {
		panic(err) // names are constants: a duplicate is a programming error
	}
	return r
}

// NameFor returns the policy for an agent of the given discovery.Agent state.
func NameFor(state string) string {
	if state == discovery.AgentStateful {
		return CHash
	}
	return P2C
}

// filters are the filters of every named policy: hard rules, health, capacity, preference.
func filters(o Options) []balancer.Filter {
	return []balancer.Filter{filter.Residency{}, filter.Ready{}, filter.NotEjected{}, filter.Capacity{}, filter.PreferSite{Site: o.Site}}
}

func scorers(o Options) []balancer.Weighted {
	ws := []balancer.Weighted{{Scorer: scorer.Load{}, Weight: 1}}
	switch w := o.LatencyWeight; {
	case w == 0:
		ws = append(ws, balancer.Weighted{Scorer: scorer.Latency{}, Weight: DefaultLatencyWeight})
	case w > 0:
		ws = append(ws, balancer.Weighted{Scorer: scorer.Latency{}, Weight: w})
	}
	return ws
}

func newP2C(o Options) *balancer.Policy {
	return &balancer.Policy{Name: P2C, Filters: filters(o), Scorers: scorers(o), Picker: balancer.NewP2C(o.Seed)}
}

func newCHash(o Options) *balancer.Policy {
	return &balancer.Policy{Name: CHash, Filters: filters(o), Scorers: scorers(o), Picker: balancer.NewP2C(o.Seed + 1),
		Affinity: chash.New(o.Balance)}
}

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
	// P2C is for stateless agents: the replica where a task is expected to finish soonest
	// (latency stretched by load; among up to ScanUpTo replicas all are compared, beyond that
	// the better of two random ones, hence the name), keeping a conversation on the replica
	// that served its previous turn while that one is nearly as good.
	P2C = "p2c"
	// CHash is for stateful agents: bounded-load consistent hashing on the contextId, and P2C
	// for tasks that have no contextId yet.
	CHash = "chash"
)

// Defaults for Options.
const (
	// DefaultWarm is Options.Warm's default: a conversation's next task stays on the replica
	// that served the previous one while that replica's expected delay is within 2× the best's.
	// A model server that holds the conversation's context prefills it several times faster
	// (bench/README.md, "Model"), which outweighs a somewhat busier replica; and task durations
	// are heavy-tailed, so equal replicas' measured latencies often differ by half, which must
	// not move conversations.
	DefaultWarm = 0.5
)

// Options configure the named policies.
type Options struct {
	// Site is the gateway's own site; its replicas are preferred. Empty prefers none.
	Site string
	// Balance is the bound factor c of CHash (each replica ≤ ⌈c × average⌉); 0 means 1.25.
	Balance float64
	// Warm is the policies' Policy.Warm: how close to the best the replica that served a
	// conversation's previous task must be to get its next one. 0 means DefaultWarm, negative
	// turns the preference off.
	Warm float64
	// ScanUpTo is how many replicas are all compared before the picker samples two instead; 0
	// means balancer.DefaultScanUpTo.
	ScanUpTo int
	// Seed seeds the pickers' random choices (ties, samples).
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

// scorers rate by expected delay alone: it already weighs load against speed.
func scorers() []balancer.Weighted {
	return []balancer.Weighted{{Scorer: scorer.Delay{}, Weight: 1}}
}

func warm(o Options) float64 {
	switch {
	case o.Warm == 0:
		return DefaultWarm
	case o.Warm < 0:
		return 0
	}
	return min(o.Warm, 1)
}

func newP2C(o Options) *balancer.Policy {
	return &balancer.Policy{Name: P2C, Filters: filters(o), Scorers: scorers(), Picker: balancer.NewBest(o.Seed, o.ScanUpTo),
		Warm: warm(o)}
}

func newCHash(o Options) *balancer.Policy {
	return &balancer.Policy{Name: CHash, Filters: filters(o), Scorers: scorers(), Picker: balancer.NewBest(o.Seed+1, o.ScanUpTo),
		Affinity: chash.New(o.Balance)}
}

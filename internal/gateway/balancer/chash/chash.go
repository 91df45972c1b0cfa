package chash

import (
	"hash/fnv"

	"github.com/agentplane/agentplane/internal/gateway/balancer"
)

// DefaultBalance is the load bound factor c: no replica takes more than ⌈c × average⌉ tasks.
const DefaultBalance = 1.25

// Picker is consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam, 2018) on
// rendezvous hashing: every replica gets a pseudo-random weight per key, hash(key, replica), and
// a key goes to the replica with the highest weight among those whose load after placing it
// stays within ⌈c × (total+1) × own capacity / total capacity⌉ — with equal capacities,
// ⌈c × (total+1) / n⌉, the paper's bound. So a key stays on its replica while that replica is
// offered and not over the bound; a replica that disappears moves only its own keys, each to
// its own next choice (not all to one ring neighbour, which is how the ring variant cascades).
type Picker struct {
	balance float64
}

var _ balancer.KeyPicker = (*Picker)(nil)

// New returns a Picker with bound factor c; c below 1 means DefaultBalance.
func New(c float64) *Picker {
	if c < 1 {
		c = DefaultBalance
	}
	return &Picker{balance: c}
}

// Bound returns the most tasks a replica of capacity capacity may have after one more task is
// placed, when the candidates hold total tasks and totalCapacity slots.
func (p *Picker) Bound(total, capacity, totalCapacity int) int {
	x := p.balance * float64(total+1) * float64(capacity) / float64(totalCapacity)
	b := int(x)
	if float64(b) < x {
		b++
	}
	return b
}

// PickKey implements balancer.KeyPicker.
func (p *Picker) PickKey(key string, cands []balancer.Candidate) (int, bool) {
	if len(cands) == 0 {
		return 0, false
	}
	total, totalCap := 0, 0
	for _, c := range cands {
		total += c.InFlight
		totalCap += max(c.Capacity, 1)
	}
	hk := hash64(key)
	best, bestW := -1, uint64(0)
	for i, c := range cands {
		if c.InFlight+1 > p.Bound(total, max(c.Capacity, 1), totalCap) {
			continue
		}
		if w := Weight(hk, c.Key); best < 0 || w > bestW {
			best, bestW = i, w
		}
	}
	// Σ bounds ≥ c × (total+1) ≥ total+1, so some replica is always under its bound.
	return best, best >= 0
}

// Preferred returns the index of the replica key goes to when no replica is over its bound.
func Preferred(key string, cands []balancer.Candidate) int {
	hk := hash64(key)
	best, bestW := -1, uint64(0)
	for i, c := range cands {
		if w := Weight(hk, c.Key); best < 0 || w > bestW {
			best, bestW = i, w
		}
	}
	return best
}

// Weight is the rendezvous weight of the replica called replica for a key whose hash is hk.
func Weight(hk uint64, replica string) uint64 { return mix(hk ^ hash64(replica)) }

func hash64(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

// mix is splitmix64's finalizer: it spreads FNV's weak low bits over the whole word.
func mix(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

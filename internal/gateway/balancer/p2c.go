package balancer

import (
	"math/rand/v2"
	"sync"
)

// P2C is the power-of-two-choices picker: it samples two distinct candidates at random and takes
// the better one: higher Score, then less load relative to capacity, then lower Latency, then
// either at random. With two random samples the most loaded replica is never chosen while
// another has room, yet no global scan or shared ordering is needed, so many gateways can pick
// at once without herding onto the same replica.
type P2C struct {
	mu  sync.Mutex
	rnd *rand.Rand
}

var _ Picker = (*P2C)(nil)

// NewP2C returns a P2C picker seeded with seed.
func NewP2C(seed uint64) *P2C {
	return &P2C{rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Pick implements Picker.
func (p *P2C) Pick(cands []Candidate) (int, bool) {
	switch len(cands) {
	case 0:
		return 0, false
	case 1:
		return 0, true
	}
	p.mu.Lock()
	i := p.rnd.IntN(len(cands))
	j := p.rnd.IntN(len(cands) - 1)
	flip := p.rnd.IntN(2) == 0
	p.mu.Unlock()
	if j >= i {
		j++
	}
	switch {
	case better(cands[i], cands[j]):
		return i, true
	case better(cands[j], cands[i]):
		return j, true
	case flip:
		return i, true
	default:
		return j, true
	}
}

// better orders candidates: higher Score, then less relative load, then lower latency when both
// are known. An unknown latency (a new or restarted replica) is no worse than a known one, or a
// restarted replica would never get a task to be measured by.
func better(a, b Candidate) bool {
	switch {
	case a.Score != b.Score:
		return a.Score > b.Score
	case lessLoaded(a, b):
		return true
	case lessLoaded(b, a):
		return false
	}
	return a.Latency > 0 && b.Latency > 0 && a.Latency < b.Latency
}

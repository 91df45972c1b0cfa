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

// DefaultScanUpTo is how many candidates Best compares all of before it samples two instead.
const DefaultScanUpTo = 16

// Best picks the candidate with the highest Score, a random one among equals, when there are at
// most scanUpTo candidates; with more it samples two and takes the better, as P2C does. Agents
// have few replicas, and a full scan of a handful costs less than the task's bookkeeping; it
// never misses the one fast replica that two random samples skip half the time with four. The
// random tie-break keeps gateways that see the same loads from all choosing the same replica.
type Best struct {
	scanUpTo int
	p2c      *P2C
}

var _ Picker = (*Best)(nil)

// NewBest returns a Best picker seeded with seed; scanUpTo below 1 means DefaultScanUpTo.
func NewBest(seed uint64, scanUpTo int) *Best {
	if scanUpTo < 1 {
		scanUpTo = DefaultScanUpTo
	}
	return &Best{scanUpTo: scanUpTo, p2c: NewP2C(seed)}
}

// Pick implements Picker.
func (b *Best) Pick(cands []Candidate) (int, bool) {
	if len(cands) == 0 {
		return 0, false
	}
	if len(cands) > b.scanUpTo {
		return b.p2c.Pick(cands)
	}
	best, ties := 0, 1
	for i := 1; i < len(cands); i++ {
		switch {
		case better(cands[i], cands[best]):
			best, ties = i, 1
		case !better(cands[best], cands[i]):
			// Equal: reservoir sampling keeps each of the ties with probability 1/ties.
			ties++
			if b.p2c.intN(ties) == 0 {
				best = i
			}
		}
	}
	return best, true
}

func (p *P2C) intN(n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rnd.IntN(n)
}

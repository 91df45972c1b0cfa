package balancer

import (
	"math/rand/v2"
	"sync"
)

// Candidate is an eligible replica as a Picker sees it.
type Candidate struct {
	// Key identifies the replica in the Tracker (its URL).
	Key string
	// InFlight is how many tasks the replica is working on now.
	InFlight int
	// Capacity is the replica's maxConcurrency; at least 1.
	Capacity int
}

// load is in-flight work relative to capacity, compared without division:
// a.InFlight/a.Capacity < b.InFlight/b.Capacity  ⇔  a.InFlight*b.Capacity < b.InFlight*a.Capacity.
func less(a, b Candidate) bool {
	return a.InFlight*max(b.Capacity, 1) < b.InFlight*max(a.Capacity, 1)
}

// Picker chooses one of the candidates, returning its index, or false when there are none.
// Implementations must be safe for concurrent use.
type Picker interface {
	Pick(cands []Candidate) (int, bool)
}

// PickerFunc adapts a function to a Picker.
type PickerFunc func(cands []Candidate) (int, bool)

// Pick calls f.
func (f PickerFunc) Pick(cands []Candidate) (int, bool) { return f(cands) }

// P2C is the power-of-two-choices picker: it samples two distinct candidates at random and takes
// the one with less load relative to capacity (either on a tie). With two random samples the
// most loaded replica is never chosen while another has room, yet no global scan or shared
// ordering is needed, so many gateways can pick at once without herding onto the same replica.
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
	case less(cands[i], cands[j]):
		return i, true
	case less(cands[j], cands[i]):
		return j, true
	case flip:
		return i, true
	default:
		return j, true
	}
}

// Tracker counts tasks in flight per replica key. It is safe for concurrent use.
type Tracker struct {
	mu sync.Mutex
	n  map[string]int
}

// NewTracker returns an empty Tracker.
func NewTracker() *Tracker { return &Tracker{n: map[string]int{}} }

// Acquire counts one more task on key and returns the function that releases it. The release
// function may be called more than once; only the first call counts.
func (t *Tracker) Acquire(key string) (release func()) {
	t.mu.Lock()
	t.n[key]++
	t.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			if t.n[key]--; t.n[key] <= 0 {
				delete(t.n, key)
			}
			t.mu.Unlock()
		})
	}
}

// InFlight returns the tasks in flight on key.
func (t *Tracker) InFlight(key string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n[key]
}

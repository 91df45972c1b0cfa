package balancer

import (
	"math"
	"slices"
	"sync"
	"time"
)

// DefaultDecay is the EWMA's time constant: an observation's weight halves about every 0.7×.
const DefaultDecay = 3 * time.Second

// MinWeight is the least weight a new observation gets, however soon it follows the last one.
const MinWeight = 0.1

// EWMA keeps a time-decayed moving average of task durations per replica key, fed by the
// gateway with every task that ends. A new observation d at time t moves the average v to
// v·(1−a) + d·a with a = 1 − exp(−(t−t_prev)/decay), at least MinWeight, so the average
// follows the replica's recent speed whatever the request rate, and tasks that end together
// all count. A value not refreshed for 2×decay is no longer current (Value), and after 10×decay
// not even a guess (Last), so that a replica that was slow once and then got no traffic is
// tried again. It also keeps each key's last RecentTasks durations for Median, a measure of
// speed that a few very long tasks do not move. Safe for concurrent use.
type EWMA struct {
	decay time.Duration

	mu sync.Mutex
	m  map[string]*ewmaEntry
}

type ewmaEntry struct {
	v      float64 // nanoseconds
	last   time.Time
	recent [RecentTasks]time.Duration // a ring of the last durations, next at n % RecentTasks
	n      int                        // observations
}

// RecentTasks is how many of a key's last task durations Median reads.
const RecentTasks = 32

// NewEWMA returns an EWMA with the given time constant; 0 means DefaultDecay.
func NewEWMA(decay time.Duration) *EWMA {
	if decay <= 0 {
		decay = DefaultDecay
	}
	return &EWMA{decay: decay, m: map[string]*ewmaEntry{}}
}

// Observe adds a task of duration d that ended at now on key.
func (e *EWMA) Observe(key string, d time.Duration, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	en := e.m[key]
	if en == nil {
		en = &ewmaEntry{}
		e.m[key] = en
	}
	en.recent[en.n%RecentTasks] = d
	en.n++
	if en.n == 1 || now.Sub(en.last) >= 2*e.decay {
		en.v, en.last = float64(d), now
		return
	}
	a := max(1-math.Exp(-float64(max(now.Sub(en.last), 0))/float64(e.decay)), MinWeight)
	en.v = en.v*(1-a) + float64(d)*a
	if now.After(en.last) {
		en.last = now
	}
}

// Value returns the average for key at now, and false when key has no recent observation.
func (e *EWMA) Value(key string, now time.Time) (time.Duration, bool) {
	return e.within(key, now, 2*e.decay)
}

// Last returns the average for key if it was observed within the last 10×decay, however
// stale for Value, and false otherwise. A replica's speed outlasts the window in which Value
// trusts its average: while it gets no tasks (the balancer prefers faster ones), what it was
// when it last finished tasks is a better guess than nothing; after 10×decay it is tried anew.
func (e *EWMA) Last(key string, now time.Time) (time.Duration, bool) {
	return e.within(key, now, 10*e.decay)
}

// Median returns the median of key's last RecentTasks task durations (fewer when fewer
// ended) if it has at least atLeast of them and was observed within the last 10×decay, as
// Last. With heavy-tailed durations (an LLM's answers run from a few tokens to thousands) the
// averages of replicas of one speed differ by chance several times over; their medians do not.
func (e *EWMA) Median(key string, now time.Time, atLeast int) (time.Duration, bool) {
	e.mu.Lock()
	en := e.m[key]
	if en == nil || en.n < max(atLeast, 1) || now.Sub(en.last) >= 10*e.decay {
		e.mu.Unlock()
		return 0, false
	}
	var buf [RecentTasks]time.Duration
	ds := buf[:copy(buf[:], en.recent[:min(en.n, RecentTasks)])]
	e.mu.Unlock()
	slices.Sort(ds)
	return ds[len(ds)/2], true
}

// within returns the average for key if it was last observed less than age before now.
func (e *EWMA) within(key string, now time.Time, age time.Duration) (time.Duration, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	en := e.m[key]
	if en == nil || now.Sub(en.last) >= age {
		return 0, false
	}
	return time.Duration(en.v), true
}

// Retain forgets every key for which keep returns false (replicas that are gone).
func (e *EWMA) Retain(keep func(key string) bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k := range e.m {
		if !keep(k) {
			delete(e.m, k)
		}
	}
}

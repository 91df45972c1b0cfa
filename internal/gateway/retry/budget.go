// Package retry holds the gateway's retry budget: how many re-dispatches it may add on top of
// the requests clients send, so that a failing agent does not turn into a retry storm.
package retry

import (
	"sync"
	"time"
)

// Budget allows retries up to Ratio of recent requests, plus MinPerSecond so that a quiet agent
// can still fail over. It is a token bucket per agent: each request deposits Ratio tokens, each
// retry takes one, the floor refills at MinPerSecond, and the balance is capped at Max so that a
// long quiet spell does not bank a storm. Decisions take now.
type Budget struct {
	Ratio        float64
	MinPerSecond float64
	Max          float64

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// Defaults: retries add at most half again to the load, with at least 10 per second per agent,
// and at most 1000 banked. Agent tasks are few and long, and a replica that dies takes all of
// its in-flight tasks with it, a third of the load with three replicas: the budget must let
// those fail over at once, yet stop a storm when every replica fails.
const (
	DefaultRatio        = 0.5
	DefaultMinPerSecond = 10
	DefaultMax          = 1000
)

// NewBudget returns a Budget; zero values take the defaults.
func NewBudget(ratio, minPerSecond, max float64) *Budget {
	if ratio <= 0 {
		ratio = DefaultRatio
	}
	if minPerSecond <= 0 {
		minPerSecond = DefaultMinPerSecond
	}
	if max <= 0 {
		max = DefaultMax
	}
	return &Budget{Ratio: ratio, MinPerSecond: minPerSecond, Max: max, buckets: map[string]*bucket{}}
}

func (b *Budget) get(key string, now time.Time) *bucket {
	k := b.buckets[key]
	if k == nil {
		k = &bucket{tokens: b.MinPerSecond, last: now}
		b.buckets[key] = k
	}
	if dt := now.Sub(k.last).Seconds(); dt > 0 {
		k.tokens = min(b.Max, k.tokens+dt*b.MinPerSecond)
		k.last = now
	}
	return k
}

// Request records a first attempt for key (an agent).
func (b *Budget) Request(key string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.get(key, now)
	k.tokens = min(b.Max, k.tokens+b.Ratio)
}

// Retry reports whether one more attempt for key is within budget, and spends it if so.
func (b *Budget) Retry(key string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.get(key, now)
	if k.tokens < 1 {
		return false
	}
	k.tokens--
	return true
}

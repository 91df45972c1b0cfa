package balancer

import "sync"

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
	return t.releaser(key)
}

// TryAcquire counts one more task on key if fewer than capacity (at least 1) are in flight
// there, atomically, so that concurrent picks never put more than capacity tasks on a replica.
// ok is false when the replica is full; release is then nil.
func (t *Tracker) TryAcquire(key string, capacity int) (release func(), ok bool) {
	t.mu.Lock()
	if t.n[key] >= max(capacity, 1) {
		t.mu.Unlock()
		return nil, false
	}
	t.n[key]++
	t.mu.Unlock()
	return t.releaser(key), true
}

func (t *Tracker) releaser(key string) func() {
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

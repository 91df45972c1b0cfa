// Package health keeps the gateway's own view of replica health, a circuit breaker per
// replica: a replica whose connection was refused, or that failed twice in a row, is ejected
// (open) for a while, with a backoff that grows while it keeps failing; when the time is up the
// next task tries it (half-open), and a success, or a successful active probe, closes it. Readiness from probes comes from discovery; this
// package only adds what the gateway learns from the requests themselves, which it notices in
// well under a millisecond instead of a probe period.
package health

import (
	"sync"
	"time"
)

// Defaults for Ejector.
const (
	DefaultBaseEjection = time.Second
	DefaultMaxEjection  = 30 * time.Second
)

// Ejector tracks ejected replicas by key (the replica's URL). The zero value is not usable; use
// NewEjector. Decisions take now so that they are tested at fixed instants.
type Ejector struct {
	base, max time.Duration

	mu sync.Mutex
	m  map[string]*ejection
}

type ejection struct {
	until time.Time
	count int // ejections in a row without a success between them
	fails int // failures in a row since the last success or ejection
}

// NewEjector returns an Ejector; zero durations take the defaults.
func NewEjector(base, max time.Duration) *Ejector {
	if base <= 0 {
		base = DefaultBaseEjection
	}
	if max < base {
		max = max0(DefaultMaxEjection, base)
	}
	return &Ejector{base: base, max: max, m: map[string]*ejection{}}
}

func max0(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// Eject takes key out of rotation from now on and returns for how long: base, doubling with each
// ejection in a row, capped at max.
func (e *Ejector) Eject(key string, now time.Time) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	ej := e.m[key]
	if ej == nil {
		ej = &ejection{}
		e.m[key] = ej
	}
	ej.fails = 0
	if now.Before(ej.until) {
		// Already out: the failures of requests that were in flight together are one event.
		return ej.until.Sub(now)
	}
	d := e.base
	for i := 0; i < ej.count && d < e.max; i++ {
		d *= 2
	}
	d = min(d, e.max)
	ej.count++
	ej.until = now.Add(d)
	return d
}

// Fail records a failure that one occurrence does not prove, such as a slow answer or a 503:
// key is ejected (as by Eject) once threshold failures happen in a row without a success. It
// returns the ejection's length, or 0 when key stays in rotation.
func (e *Ejector) Fail(key string, now time.Time, threshold int) time.Duration {
	e.mu.Lock()
	ej := e.m[key]
	if ej == nil {
		ej = &ejection{}
		e.m[key] = ej
	}
	ej.fails++
	n := ej.fails
	e.mu.Unlock()
	if n < threshold {
		return 0
	}
	return e.Eject(key, now)
}

// Ejected reports whether key is out of rotation at now.
func (e *Ejector) Ejected(key string, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	ej := e.m[key]
	return ej != nil && now.Before(ej.until)
}

// Succeeded records that key served a request: its failure count and backoff start over. A
// success while key is ejected is ignored: it comes from a request sent before the ejection, and
// says nothing about whether the cause has gone (Readmit is for proof that it has).
func (e *Ejector) Succeeded(key string, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ej := e.m[key]; ej != nil && !now.Before(ej.until) {
		delete(e.m, key)
	}
}

// Readmit puts key back into rotation at once and forgets its failures, as when an active
// probe shows it healthy again.
func (e *Ejector) Readmit(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}

// EjectedKeys lists the keys out of rotation at now.
func (e *Ejector) EjectedKeys(now time.Time) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var keys []string
	for k, ej := range e.m {
		if now.Before(ej.until) {
			keys = append(keys, k)
		}
	}
	return keys
}

// Retain forgets every key for which keep returns false, so that replicas that are gone do not
// accumulate.
func (e *Ejector) Retain(keep func(key string) bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k := range e.m {
		if !keep(k) {
			delete(e.m, k)
		}
	}
}

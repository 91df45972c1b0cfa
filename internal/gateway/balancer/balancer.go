package balancer

import (
	"errors"
	"time"
)

// Candidate is a replica as the policy stages see it. The caller fills it from discovery and
// its own trackers; Policy fills Score.
type Candidate struct {
	// Key identifies the replica in the Tracker (its URL).
	Key string
	// InFlight is how many tasks the replica is working on now.
	InFlight int
	// Capacity is the replica's maxConcurrency; below 1 counts as 1.
	Capacity int

	// Site and Zone place the replica; empty when not known.
	Site, Zone string
	// Ready is the replica's readiness from discovery (its probes). A replica that is not ready
	// is never picked.
	Ready bool
	// Ejected is true while the gateway's passive health check keeps the replica out of rotation.
	Ejected bool
	// Latency is the replica's recent task duration (an EWMA); 0 when not known yet.
	Latency time.Duration

	// Score is the weighted sum of the policy's scorers, higher is better. Policy sets it
	// before the picker runs; a caller's value is ignored.
	Score float64

	pos int // index in the slice given to Policy.Pick
}

// capacity is Capacity, at least 1.
func (c Candidate) capacity() int { return max(c.Capacity, 1) }

// lessLoaded reports whether a has less load relative to capacity than b, compared without
// division: a.InFlight/a.Cap < b.InFlight/b.Cap ⇔ a.InFlight*b.Cap < b.InFlight*a.Cap.
func lessLoaded(a, b Candidate) bool {
	return a.InFlight*b.capacity() < b.InFlight*a.capacity()
}

// Request is what the stages know about the task being placed.
type Request struct {
	// AffinityKey keeps related tasks on one replica: the A2A contextId of a stateful agent.
	// Empty when there is none.
	AffinityKey string
	// AllowedSites, when not empty, is the agent's data-residency rule: only replicas in these
	// sites may serve, whatever else happens.
	AllowedSites []string
	// Warm is the Key of the replica that served this conversation's previous task, for an
	// agent without affinity (a stateless agent's contextId): it likely still holds the
	// conversation's context in its cache, so it is preferred while it is nearly as good as the
	// best (Policy.Warm). Empty when not known.
	Warm string
}

// Filter drops the candidates that must not or should not serve req. It returns the remaining
// ones and may reuse the backing array of cands. Implementations must be safe for concurrent use.
type Filter interface {
	Filter(req *Request, cands []Candidate) []Candidate
}

// FilterFunc adapts a function to a Filter.
type FilterFunc func(req *Request, cands []Candidate) []Candidate

// Filter calls f.
func (f FilterFunc) Filter(req *Request, cands []Candidate) []Candidate { return f(req, cands) }

// Refuser is implemented by filters that say why nothing is left when they drop every
// candidate. Policy.Pick returns that error, wrapped; a filter that is not a Refuser refuses
// with ErrUnavailable.
type Refuser interface {
	Refusal() error
}

// Scorer rates the candidates for req: it writes one score per candidate into scores, in [0, 1],
// higher is better. Scores outside [0, 1] are clamped. Implementations must be safe for
// concurrent use.
type Scorer interface {
	Score(req *Request, cands []Candidate, scores []float64)
}

// ScorerFunc adapts a function to a Scorer.
type ScorerFunc func(req *Request, cands []Candidate, scores []float64)

// Score calls f.
func (f ScorerFunc) Score(req *Request, cands []Candidate, scores []float64) { f(req, cands, scores) }

// Weighted is a Scorer with its weight in a Policy.
type Weighted struct {
	Scorer Scorer
	Weight float64
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

// KeyPicker chooses a candidate for a request with an affinity key, so that requests with the
// same key go to the same replica while it can take them. Implementations must be safe for
// concurrent use.
type KeyPicker interface {
	PickKey(key string, cands []Candidate) (int, bool)
}

// Why Policy.Pick found no replica. Every error it returns matches exactly one of them with
// errors.Is.
var (
	// ErrUnavailable: no replica is ready (none exists, all are down or starting). Refuse with
	// 503 and Retry-After.
	ErrUnavailable = errors.New("no ready replica")
	// ErrResidency: no replica is in a site the agent's residency rule allows. The task must be
	// refused; it is never sent anywhere else.
	ErrResidency = errors.New("no replica in an allowed site")
	// ErrSaturated: every eligible replica is at its maxConcurrency. The task should wait in the
	// admission queue for a slot.
	ErrSaturated = errors.New("every eligible replica is at capacity")
)

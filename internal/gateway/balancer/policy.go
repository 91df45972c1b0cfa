package balancer

import (
	"errors"
	"fmt"
	"slices"
)

// Policy places a task on a replica in three stages: its filters drop the candidates that must
// not (residency, readiness, capacity) or should not (remote sites while local ones have room)
// serve; its scorers rate the rest; its picker chooses among them. A Policy is immutable once
// built and safe for concurrent use.
type Policy struct {
	// Name is how the policy is registered and selected, such as "p2c".
	Name string
	// Filters run in order; each sees what the previous one left.
	Filters []Filter
	// Scorers are summed, each times its weight, into Candidate.Score.
	Scorers []Weighted
	// Picker chooses for requests without an affinity key, or when Affinity is nil. Required.
	Picker Picker
	// Affinity, when set, chooses for requests with an affinity key.
	Affinity KeyPicker
	// Warm, in (0, 1], is how good the replica a request names in Request.Warm must be to be
	// chosen over the picker's choice: its Score at least Warm times the best Score. 0 turns
	// the preference off. It applies only to requests without an affinity key.
	Warm float64
}

// NoReplicaError is the error of a Policy.Pick that found no replica. It matches ErrUnavailable,
// ErrResidency or ErrSaturated with errors.Is.
type NoReplicaError struct {
	// Policy is the policy's name.
	Policy string
	// Stage names the filter (its Go type) that left nothing, or "picker".
	Stage string
	// Candidates is how many replicas were offered.
	Candidates int
	// Err is the reason.
	Err error
}

func (e *NoReplicaError) Error() string {
	return fmt.Sprintf("%v (policy %s, %d replica(s) offered, none left after %s)", e.Err, e.Policy, e.Candidates, e.Stage)
}

// Unwrap returns the reason.
func (e *NoReplicaError) Unwrap() error { return e.Err }

// Pick runs the stages over cands and returns the index in cands of the chosen replica, or a
// *NoReplicaError. cands is not modified.
func (p *Policy) Pick(req Request, cands []Candidate) (int, error) {
	if len(cands) == 0 {
		return -1, &NoReplicaError{Policy: p.Name, Stage: "discovery", Err: ErrUnavailable}
	}
	cs := make([]Candidate, len(cands))
	for i, c := range cands {
		c.pos, c.Score = i, 0
		cs[i] = c
	}
	for _, f := range p.Filters {
		if cs = f.Filter(&req, cs); len(cs) == 0 {
			reason := ErrUnavailable
			if r, ok := f.(Refuser); ok {
				reason = r.Refusal()
			}
			return -1, &NoReplicaError{Policy: p.Name, Stage: fmt.Sprintf("%T", f), Candidates: len(cands), Err: reason}
		}
	}
	if len(p.Scorers) > 0 {
		scores := make([]float64, len(cs))
		for _, w := range p.Scorers {
			clear(scores)
			w.Scorer.Score(&req, cs, scores)
			for i, s := range scores {
				cs[i].Score += w.Weight * min(max(s, 0), 1)
			}
		}
	}
	var i int
	var ok bool
	if w, found := p.warm(&req, cs); found {
		return cs[w].pos, nil
	}
	if req.AffinityKey != "" && p.Affinity != nil {
		i, ok = p.Affinity.PickKey(req.AffinityKey, cs)
	} else {
		i, ok = p.Picker.Pick(cs)
	}
	if !ok || i < 0 || i >= len(cs) {
		return -1, &NoReplicaError{Policy: p.Name, Stage: "picker", Candidates: len(cands), Err: ErrUnavailable}
	}
	return cs[i].pos, nil
}

// warm returns the index in cs of the replica req.Warm names when the policy prefers it: it
// passed the filters and its Score is within the policy's tolerance of the best.
func (p *Policy) warm(req *Request, cs []Candidate) (int, bool) {
	if p.Warm <= 0 || req.Warm == "" || req.AffinityKey != "" {
		return 0, false
	}
	w, best := -1, 0.0
	for i, c := range cs {
		if c.Key == req.Warm {
			w = i
		}
		best = max(best, c.Score)
	}
	if w < 0 || cs[w].Score < p.Warm*best {
		return 0, false
	}
	return w, true
}

// Registry holds policies by name. Fill it once at startup (policies.Register does), then only
// read it: Get is safe for concurrent use, Register is not.
type Registry struct {
	m map[string]*Policy
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{m: map[string]*Policy{}} }

// Register adds p. It fails on an empty or duplicate name or a policy without a picker.
func (r *Registry) Register(p *Policy) error {
	switch {
	case p == nil || p.Name == "":
		return errors.New("balancer: a policy needs a name")
	case p.Picker == nil:
		return fmt.Errorf("balancer: policy %q has no picker", p.Name)
	case r.m[p.Name] != nil:
		return fmt.Errorf("balancer: policy %q registered twice", p.Name)
	}
	r.m[p.Name] = p
	return nil
}

// Get returns the policy called name.
func (r *Registry) Get(name string) (*Policy, bool) {
	p, ok := r.m[name]
	return p, ok
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.m))
	for n := range r.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

package filter

import (
	"slices"

	"github.com/agentplane/agentplane/internal/gateway/balancer"
)

// keep returns the candidates for which ok is true, reusing the backing array of cands.
func keep(cands []balancer.Candidate, ok func(c *balancer.Candidate) bool) []balancer.Candidate {
	out := cands[:0]
	for i := range cands {
		if ok(&cands[i]) {
			out = append(out, cands[i])
		}
	}
	return out
}

// prefer returns the candidates for which ok is true if there are any, and all of them otherwise.
func prefer(cands []balancer.Candidate, ok func(c *balancer.Candidate) bool) []balancer.Candidate {
	if !slices.ContainsFunc(cands, func(c balancer.Candidate) bool { return ok(&c) }) {
		return cands
	}
	return keep(cands, ok)
}

// Residency keeps only the replicas in the request's AllowedSites (all of them when the rule is
// empty). It is a hard rule: when no replica is left the task is refused with
// balancer.ErrResidency, never sent to another site, even if every allowed replica is down.
// A replica whose site is not known is outside every rule.
type Residency struct{}

var (
	_ balancer.Filter  = Residency{}
	_ balancer.Refuser = Residency{}
)

// Filter implements balancer.Filter.
func (Residency) Filter(req *balancer.Request, cands []balancer.Candidate) []balancer.Candidate {
	if len(req.AllowedSites) == 0 {
		return cands
	}
	return keep(cands, func(c *balancer.Candidate) bool { return c.Site != "" && slices.Contains(req.AllowedSites, c.Site) })
}

// Refusal implements balancer.Refuser.
func (Residency) Refusal() error { return balancer.ErrResidency }

// Ready keeps the replicas that discovery reports ready; with none left the task is refused
// with balancer.ErrUnavailable.
type Ready struct{}

var (
	_ balancer.Filter  = Ready{}
	_ balancer.Refuser = Ready{}
)

// Filter implements balancer.Filter.
func (Ready) Filter(_ *balancer.Request, cands []balancer.Candidate) []balancer.Candidate {
	return keep(cands, func(c *balancer.Candidate) bool { return c.Ready })
}

// Refusal implements balancer.Refuser.
func (Ready) Refusal() error { return balancer.ErrUnavailable }

// NotEjected drops the replicas that the gateway's passive health check has ejected, unless
// every candidate is ejected: then it keeps them all, since a replica that may have recovered
// is better than refusing the task outright.
type NotEjected struct{}

var _ balancer.Filter = NotEjected{}

// Filter implements balancer.Filter.
func (NotEjected) Filter(_ *balancer.Request, cands []balancer.Candidate) []balancer.Candidate {
	return prefer(cands, func(c *balancer.Candidate) bool { return !c.Ejected })
}

// Capacity drops the replicas that are at their maxConcurrency. With none left the task is
// refused with balancer.ErrSaturated: the caller queues it until a slot frees.
type Capacity struct{}

var (
	_ balancer.Filter  = Capacity{}
	_ balancer.Refuser = Capacity{}
)

// Filter implements balancer.Filter.
func (Capacity) Filter(_ *balancer.Request, cands []balancer.Candidate) []balancer.Candidate {
	return keep(cands, func(c *balancer.Candidate) bool { return c.InFlight < max(c.Capacity, 1) })
}

// Refusal implements balancer.Refuser.
func (Capacity) Refusal() error { return balancer.ErrSaturated }

// PreferSite keeps the replicas in Site, the gateway's own, if any are left; otherwise all of
// them. Placed after Capacity it sends tasks to other sites only when the local replicas are
// saturated or down. An empty Site prefers nothing.
type PreferSite struct {
	Site string
}

var _ balancer.Filter = PreferSite{}

// Filter implements balancer.Filter.
func (f PreferSite) Filter(_ *balancer.Request, cands []balancer.Candidate) []balancer.Candidate {
	if f.Site == "" {
		return cands
	}
	return prefer(cands, func(c *balancer.Candidate) bool { return c.Site == f.Site })
}

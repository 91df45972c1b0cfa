package gateway

import (
	"slices"
	"time"

	"github.com/agentplane/agentplane/internal/discovery"
)

// Latency outliers: a replica whose recent task duration is far above its peers' is ejected
// like a failing one, so that a slow replica (a sick GPU, a noisy neighbour) stops taking new
// tasks while the others have room. It needs at least outlierMinPeers replicas with recent
// durations, so that one agent's heavy tail is not mistaken for a sick replica.
const (
	outlierFactor   = 5 // times the median of the agent's replicas
	outlierMinPeers = 3
)

// checkOutlier ejects ep when its latency is an outlier among agent's replicas.
func (g *Gateway) checkOutlier(agent discovery.Agent, ep discovery.Endpoint, now time.Time) {
	own, ok := g.latency.Value(ep.URL, now)
	if !ok {
		return
	}
	var all []time.Duration
	for _, e := range agent.Endpoints {
		if v, ok := g.latency.Value(e.URL, now); ok && e.Ready {
			all = append(all, v)
		}
	}
	if len(all) < outlierMinPeers {
		return
	}
	slices.Sort(all)
	median := all[len(all)/2]
	if median <= 0 || own < outlierFactor*median || g.ejector.Ejected(ep.URL, now) {
		return
	}
	d := g.ejector.Eject(ep.URL, now)
	g.opts.Metrics.Ejection(agent.Name, ep.Name)
	g.log.Warn("replica ejected as a latency outlier", "agent", agent.Name, "replica", ep.Name,
		"latency", own.Round(time.Millisecond), "median", median.Round(time.Millisecond), "for", d)
}

package gateway

import (
	"context"
	"errors"

	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/telemetry"
)

// snapshot is what the metrics' gauges read at scrape time.
func (g *Gateway) snapshot() telemetry.Snapshot {
	now := g.opts.Now()
	var s telemetry.Snapshot
	for _, a := range g.opts.Source.Snapshot() {
		for _, e := range a.Endpoints {
			s.Replicas = append(s.Replicas, telemetry.ReplicaSample{
				Agent: a.Name, Replica: e.Name, Site: e.Site, Zone: e.Zone, State: e.State, Ready: e.Ready,
				Ejected: e.URL != "" && g.ejector.Ejected(e.URL, now), InFlight: g.tracker.InFlight(e.URL), Capacity: a.MaxConcurrency,
			})
		}
		st := g.queue.Stats(a.Name)
		s.Queues = append(s.Queues, telemetry.QueueSample{Agent: a.Name, Depth: st.Depth, OldestWait: st.OldestWait})
	}
	return s
}

// noteRestarts counts replica restarts seen between two snapshots of the source.
func (g *Gateway) noteRestarts(prev map[string]int, agents []discovery.Agent) map[string]int {
	now := map[string]int{}
	for _, a := range agents {
		for _, e := range a.Endpoints {
			key := a.Name + "/" + e.Name
			now[key] = e.Restarts
			if p, seen := prev[key]; seen {
				for range max(e.Restarts-p, 0) {
					g.opts.Metrics.ReplicaRestart(a.Name, e.Name)
				}
			}
		}
	}
	return now
}

// dispatchResult names how one attempt ended, for metrics and re-dispatch reasons.
func dispatchResult(err error) string {
	var st *upstreamStatusError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, errHung):
		return "hung"
	case errors.Is(err, errCard):
		return "card_error"
	case errors.As(err, &st):
		return "upstream_5xx"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case neverSent(err):
		return "refused"
	}
	return "dropped"
}

// taskEnded reports a task that reached a final state to the metrics.
func (g *Gateway) taskEnded(ctx context.Context, t *store.Task) {
	g.opts.Metrics.TaskFinished(ctx, t.Agent, t.Method, string(t.State), t.UpdatedAt.Sub(t.CreatedAt))
}

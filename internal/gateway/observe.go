package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/telemetry"
)

// queues counts the tasks waiting for a replica slot, per agent, for the queue-depth gauges.
type queues struct {
	mu      sync.Mutex
	waiting map[string]map[*time.Time]struct{}
}

func newQueues() *queues { return &queues{waiting: map[string]map[*time.Time]struct{}{}} }

// enter records a task starting to wait and returns the function that ends its wait.
func (q *queues) enter(agent string, now time.Time) func() {
	start := &now
	q.mu.Lock()
	if q.waiting[agent] == nil {
		q.waiting[agent] = map[*time.Time]struct{}{}
	}
	q.waiting[agent][start] = struct{}{}
	q.mu.Unlock()
	return func() {
		q.mu.Lock()
		delete(q.waiting[agent], start)
		q.mu.Unlock()
	}
}

// depth returns how many tasks of agent wait, and since when the oldest does.
func (q *queues) depth(agent string, now time.Time) (int, time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var oldest time.Duration
	for t := range q.waiting[agent] {
		oldest = max(oldest, now.Sub(*t))
	}
	return len(q.waiting[agent]), oldest
}

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
		n, oldest := g.queues.depth(a.Name, now)
		s.Queues = append(s.Queues, telemetry.QueueSample{Agent: a.Name, Depth: n, OldestWait: oldest})
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

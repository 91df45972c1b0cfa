package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/fleet"
	"github.com/agentplane/agentplane/internal/store"
)

// adminAPI serves the gateway's own admin endpoints (GET /api/v1/agents, replicas, tasks and
// audit), for `agentplane get` and the dashboard.
type adminAPI struct {
	source discovery.Source
	pool   *pool
	recent *recentTasks
	// journal is read for one task's record (GET /api/v1/tasks/{id}).
	journal store.Journal
	log     *slog.Logger
	fleet   *fleet.Fleet
	// stopping is closed when the gateway starts to drain: long polls answer then.
	stopping <-chan struct{}
}

// FleetStatus is the answer of GET /api/v1/fleet: the live gateways of the fleet as this one
// sees them, itself first. Without a fleet, Members is empty.
type FleetStatus struct {
	Self    string         `json:"self,omitempty"`
	Site    string         `json:"site,omitempty"`
	Journal string         `json:"journal,omitempty"`
	Members []fleet.Member `json:"members"`
}

func (a *adminAPI) fleetStatus(w http.ResponseWriter, _ *http.Request) {
	out := FleetStatus{Members: []fleet.Member{}}
	if f := a.fleet; f != nil {
		out = FleetStatus{Self: f.ID(), Site: f.Site(), Journal: f.Journal(), Members: f.Members()}
	}
	writeJSON(w, http.StatusOK, out)
}

// AgentStatus is one entry of GET /api/v1/agents.
type AgentStatus struct {
	Name           string   `json:"name"`
	Description    string   `json:"description,omitempty"`
	State          string   `json:"state"`
	Desired        int      `json:"desired"`
	Ready          int      `json:"ready"`
	MaxConcurrency int      `json:"maxConcurrency"`
	InFlight       int      `json:"inFlight"`
	Queued         int      `json:"queued"`
	Restarts       int      `json:"restarts"`
	Sites          []string `json:"sites,omitempty"`
	// Autoscaling is set for an agent that scales on task load.
	Autoscaling *AutoscalingStatus `json:"autoscaling,omitempty"`
}

// AutoscalingStatus is an autoscaled agent's bounds, and why it last scaled.
type AutoscalingStatus struct {
	MinReplicas int       `json:"minReplicas"`
	MaxReplicas int       `json:"maxReplicas"`
	Reason      string    `json:"reason,omitempty"`
	ScaledAt    time.Time `json:"scaledAt,omitzero"`
}

// ReplicaStatus is one entry of GET /api/v1/replicas.
type ReplicaStatus struct {
	discovery.Endpoint
	InFlight int  `json:"inFlight"`
	Ejected  bool `json:"ejected"`
}

func (a *adminAPI) agents(w http.ResponseWriter, _ *http.Request) {
	out := []AgentStatus{}
	for _, ag := range a.source.Snapshot() {
		s := AgentStatus{Name: ag.Name, Description: ag.Description, State: ag.State, Desired: ag.Desired,
			Ready: ag.ReadyCount(), MaxConcurrency: ag.MaxConcurrency}
		s.Queued = a.pool.queue.Depth(ag.Name)
		if ag.Autoscaled {
			s.Autoscaling = &AutoscalingStatus{MinReplicas: ag.MinReplicas, MaxReplicas: ag.MaxReplicas, Reason: ag.ScaleReason, ScaledAt: ag.ScaledAt}
		}
		for _, e := range ag.Endpoints {
			s.InFlight += a.pool.tracker.InFlight(e.URL)
			s.Restarts += e.Restarts
			if e.Site != "" && !slices.Contains(s.Sites, e.Site) {
				s.Sites = append(s.Sites, e.Site)
			}
		}
		out = append(out, s)
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": out})
}

func (a *adminAPI) replicas(w http.ResponseWriter, r *http.Request) {
	agent := r.URL.Query().Get("agent")
	now := a.pool.now()
	out := []ReplicaStatus{}
	for _, ag := range a.source.Snapshot() {
		if agent != "" && ag.Name != agent {
			continue
		}
		for _, e := range ag.Endpoints {
			out = append(out, ReplicaStatus{Endpoint: e, InFlight: a.pool.tracker.InFlight(e.URL),
				Ejected: a.pool.ejected(e.URL, now)})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"replicas": out})
}

// serveAudit lists the latest audit records, newest first, for admins.
func (a *adminAPI) audit(w http.ResponseWriter, r *http.Request, rd auditReader) {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be a number from 1 to 1000"})
			return
		}
		limit = n
	}
	recs, err := rd.Recent(r.Context(), limit)
	if err != nil {
		a.log.Error("reading the audit log", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "the audit log cannot be read"})
		return
	}
	if recs == nil {
		recs = []audit.Record{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": recs})
}

// auditReader is an audit sink that can list its latest records (audit.Writer can).
type auditReader interface {
	Recent(ctx context.Context, n int) ([]audit.Record, error)
}

// Demand is an agent's task demand at this gateway's site: tasks running on its replicas here,
// and tasks waiting in the admission queue for one.
type Demand struct {
	InFlight int
	Queued   int
}

// Demand is the demand of each agent of the gateway's own site, by name: what an autoscaler
// scales on.
func (g *Gateway) Demand() map[string]Demand {
	out := map[string]Demand{}
	for name, l := range g.tasks.pool.fleetLoad(g.local) {
		out[name] = Demand{InFlight: l.InFlight, Queued: l.Queued}
	}
	return out
}

// InFlight is the number of tasks the gateway has running on the replica at url.
func (g *Gateway) InFlight(url string) int { return g.tasks.pool.tracker.InFlight(url) }

// maxAutoscaleWait bounds GET /api/v1/autoscale/wait's timeout.
const maxAutoscaleWait = 30 * time.Second

// autoscaleWait answers, as a long poll, when a task of an autoscaled agent finds no ready
// replica ({"waiting": true}), or after ?timeout= (default and at most 30s: {"waiting": false}).
// An autoscaler outside the gateway (the Kubernetes operator) polls demand every few seconds and
// waits here in between, so that a task for an agent at zero replicas asks for one at once.
func (a *adminAPI) autoscaleWait(w http.ResponseWriter, r *http.Request) {
	timeout := maxAutoscaleWait
	if v := r.URL.Query().Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("timeout %q: want a positive duration such as 20s", v)})
			return
		}
		timeout = min(d, maxAutoscaleWait)
	}
	changed := a.pool.waitingChanged()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-changed:
		writeJSON(w, http.StatusOK, map[string]bool{"waiting": true})
	case <-t.C:
		writeJSON(w, http.StatusOK, map[string]bool{"waiting": false})
	case <-a.stopping:
		writeJSON(w, http.StatusOK, map[string]bool{"waiting": false})
	case <-r.Context().Done():
	}
}

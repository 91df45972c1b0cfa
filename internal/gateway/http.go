package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/telemetry"
	"github.com/agentplane/agentplane/internal/ui"
)

func (g *Gateway) routesMux() http.Handler {
	mux := http.NewServeMux()
	admin := g.requireAdmin
	mux.HandleFunc("POST /agents/{name}", g.serveRPC)
	mux.HandleFunc("POST /agents/{name}/{$}", g.serveRPC)
	mux.HandleFunc("GET /agents/{name}/.well-known/agent-card.json", g.serveCard)
	mux.HandleFunc("GET /agents/{name}/.well-known/agent.json", g.serveCard) // A2A v0.2/v0.3 path
	mux.HandleFunc("GET /agents", g.serveAgentList)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok\n") })
	mux.HandleFunc("GET /readyz", g.serveReady)
	mux.HandleFunc("GET /api/v1/agents", admin(g.serveAdminAgents))
	mux.HandleFunc("GET /api/v1/replicas", admin(g.serveAdminReplicas))
	mux.HandleFunc("GET /api/v1/tasks", admin(g.serveAdminTasks))
	if h := g.opts.Admin; h != nil {
		mux.HandleFunc("POST /api/v1/apply", admin(h.ServeHTTP))
		mux.HandleFunc("GET /api/v1/logs/{replica}", admin(h.ServeHTTP))
		mux.HandleFunc("GET /api/v1/agents/{name}", admin(h.ServeHTTP))
	}
	if rd, ok := g.opts.Audit.(auditReader); ok {
		mux.HandleFunc("GET /api/v1/audit", admin(func(w http.ResponseWriter, r *http.Request) { g.serveAudit(w, r, rd) }))
	}
	if g.opts.Metrics != nil {
		mux.Handle("GET /metrics", admin(g.opts.Metrics.Handler().ServeHTTP))
	}
	mux.Handle("GET /ui/", ui.Handler())
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	return telemetry.HTTPMiddleware(g.limitConcurrency(mux))
}

func writeText(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(s))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// serveReady answers 200 when the gateway is not draining and every agent that should have
// replicas has at least one ready; otherwise 503 with the reasons.
func (g *Gateway) serveReady(w http.ResponseWriter, _ *http.Request) {
	if g.draining.Load() {
		writeText(w, http.StatusServiceUnavailable, "draining\n")
		return
	}
	if g.auditBroken.Load() {
		writeText(w, http.StatusServiceUnavailable, "the audit log cannot be written\n")
		return
	}
	var notReady []string
	for _, a := range g.opts.Source.Snapshot() {
		if a.Desired > 0 && a.ReadyCount() == 0 {
			notReady = append(notReady, a.Name)
		}
	}
	if len(notReady) > 0 {
		writeText(w, http.StatusServiceUnavailable, "no ready replica: "+strings.Join(notReady, ", ")+"\n")
		return
	}
	writeText(w, http.StatusOK, "ok\n")
}

// AgentSummary is one entry of GET /agents.
type AgentSummary struct {
	Name          string `json:"name"`
	Description   string `json:"description,omitempty"`
	URL           string `json:"url"`
	CardURL       string `json:"cardUrl"`
	ReadyReplicas int    `json:"readyReplicas"`
	Replicas      int    `json:"replicas"`
}

func (g *Gateway) serveAgentList(w http.ResponseWriter, r *http.Request) {
	s, ok := g.authenticate(w, r)
	if !ok {
		return
	}
	base := g.baseURL(r)
	out := []AgentSummary{}
	for _, a := range g.opts.Source.Snapshot() {
		if g.opts.Auth != nil && !g.opts.Auth.Authorizer.CanCall(s, a.Name) {
			continue // callers see only the agents they may call
		}
		u := base + "/agents/" + a.Name
		out = append(out, AgentSummary{
			Name: a.Name, Description: a.Description, URL: u, CardURL: u + "/.well-known/agent-card.json",
			ReadyReplicas: a.ReadyCount(), Replicas: a.Desired,
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": out})
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
}

// ReplicaStatus is one entry of GET /api/v1/replicas.
type ReplicaStatus struct {
	discovery.Endpoint
	InFlight int  `json:"inFlight"`
	Ejected  bool `json:"ejected"`
}

func (g *Gateway) serveAdminAgents(w http.ResponseWriter, _ *http.Request) {
	out := []AgentStatus{}
	for _, a := range g.opts.Source.Snapshot() {
		s := AgentStatus{Name: a.Name, Description: a.Description, State: a.State, Desired: a.Desired,
			Ready: a.ReadyCount(), MaxConcurrency: a.MaxConcurrency}
		s.Queued = g.queue.Depth(a.Name)
		for _, e := range a.Endpoints {
			s.InFlight += g.tracker.InFlight(e.URL)
			s.Restarts += e.Restarts
			if e.Site != "" && !slices.Contains(s.Sites, e.Site) {
				s.Sites = append(s.Sites, e.Site)
			}
		}
		out = append(out, s)
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": out})
}

func (g *Gateway) serveAdminReplicas(w http.ResponseWriter, r *http.Request) {
	agent := r.URL.Query().Get("agent")
	now := g.opts.Now()
	out := []ReplicaStatus{}
	for _, a := range g.opts.Source.Snapshot() {
		if agent != "" && a.Name != agent {
			continue
		}
		for _, e := range a.Endpoints {
			out = append(out, ReplicaStatus{Endpoint: e, InFlight: g.tracker.InFlight(e.URL),
				Ejected: e.URL != "" && g.ejector.Ejected(e.URL, now)})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"replicas": out})
}

// baseURL is the gateway's external base URL for links in answers.
func (g *Gateway) baseURL(r *http.Request) string {
	if g.opts.AdvertiseURL != "" {
		return strings.TrimSuffix(g.opts.AdvertiseURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// limitConcurrency answers 503 beyond MaxConcurrentRequests requests at once, so that a flood
// cannot exhaust memory or file descriptors; health checks are always served.
func (g *Gateway) limitConcurrency(next http.Handler) http.Handler {
	sem := make(chan struct{}, g.opts.MaxConcurrentRequests)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
			next.ServeHTTP(w, r)
		default:
			w.Header().Set("Retry-After", "1")
			writeText(w, http.StatusServiceUnavailable, "too many requests in flight\n")
		}
	})
}

// auditReader is an audit sink that can list its latest records (audit.Writer can).
type auditReader interface {
	Recent(ctx context.Context, n int) ([]audit.Record, error)
}

// serveAudit lists the latest audit records, newest first, for admins.
func (g *Gateway) serveAudit(w http.ResponseWriter, r *http.Request, rd auditReader) {
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
		g.log.Error("reading the audit log", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "the audit log cannot be read"})
		return
	}
	if recs == nil {
		recs = []audit.Record{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": recs})
}

package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/telemetry"
	"github.com/agentplane/agentplane/internal/ui"
)

func (g *Gateway) routes() http.Handler {
	mux := http.NewServeMux()
	admin := g.requireAdmin
	api := &adminAPI{source: g.opts.Source, pool: g.tasks.pool, recent: g.tasks.journal.recent, log: g.log}
	mux.HandleFunc("POST /agents/{name}", g.serveRPC)
	mux.HandleFunc("POST /agents/{name}/{$}", g.serveRPC)
	mux.HandleFunc("GET /agents/{name}/.well-known/agent-card.json", g.serveCard)
	mux.HandleFunc("GET /agents/{name}/.well-known/agent.json", g.serveCard) // A2A v0.2/v0.3 path
	mux.HandleFunc("GET /agents", g.serveAgentList)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok\n") })
	mux.HandleFunc("GET /readyz", g.serveReady)
	mux.HandleFunc("GET /api/v1/agents", admin(api.agents))
	mux.HandleFunc("GET /api/v1/replicas", admin(api.replicas))
	mux.HandleFunc("GET /api/v1/tasks", admin(api.tasks))
	if h := g.opts.Admin; h != nil {
		mux.HandleFunc("POST /api/v1/apply", admin(h.ServeHTTP))
		mux.HandleFunc("GET /api/v1/logs/{replica}", admin(h.ServeHTTP))
		mux.HandleFunc("GET /api/v1/agents/{name}", admin(h.ServeHTTP))
	}
	if rd, ok := g.opts.Audit.(auditReader); ok {
		mux.HandleFunc("GET /api/v1/audit", admin(func(w http.ResponseWriter, r *http.Request) { api.audit(w, r, rd) }))
	}
	if g.opts.Metrics != nil {
		mux.Handle("GET /metrics", admin(g.opts.Metrics.Handler().ServeHTTP))
	}
	mux.Handle("GET /ui/", ui.Handler())
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	return telemetry.HTTPMiddleware(limitConcurrency(g.opts.MaxConcurrentRequests, mux))
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
	if g.tasks.journal.broken.Load() {
		writeText(w, http.StatusServiceUnavailable, "the task journal cannot be written\n")
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

// auditReader is an audit sink that can list its latest records (audit.Writer can).
type auditReader interface {
	Recent(ctx context.Context, n int) ([]audit.Record, error)
}

// limitConcurrency answers 503 beyond MaxConcurrentRequests requests at once, so that a flood
// cannot exhaust memory or file descriptors; health checks are always served.
func limitConcurrency(n int, next http.Handler) http.Handler {
	sem := make(chan struct{}, n)
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

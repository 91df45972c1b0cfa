package gateway

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"

	"github.com/agentplane/agentplane/internal/telemetry"
	"github.com/agentplane/agentplane/internal/ui"
)

func (g *Gateway) routes() http.Handler {
	mux := http.NewServeMux()
	api := &adminAPI{source: g.opts.Source, pool: g.tasks.pool, recent: g.tasks.journal.recent, journal: g.tasks.journal.store, log: g.log, fleet: g.opts.Fleet, stopping: g.drainStarted}
	// Every call is audited (A2A calls by serveRPC itself); probes and the static dashboard are
	// not: they carry nothing of anyone's and come every few seconds.
	audited := func(pattern string, h http.HandlerFunc) { mux.HandleFunc(pattern, g.audited(h)) }
	admin := func(pattern string, h http.HandlerFunc) { audited(pattern, g.requireAdmin(h)) }
	mux.HandleFunc("POST /agents/{name}", g.serveRPC)
	mux.HandleFunc("POST /agents/{name}/{$}", g.serveRPC)
	mux.HandleFunc("/agents/{name}/{rest...}", g.serveREST) // the HTTP+JSON binding, every verb: 405 is its own
	audited("GET /agents/{name}/.well-known/agent-card.json", g.serveCard)
	audited("GET /agents/{name}/.well-known/agent.json", g.serveCard) // A2A v0.2/v0.3 path
	audited("GET /agents/{name}/"+OriginalCardPath, g.serveOriginalCard)
	// A client given an agent's URL without its trailing slash, that resolves the card's path
	// relative to it, asks here: say what to do instead.
	noAgent := func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "an agent's URL is " + g.baseURL(r) +
			"/agents/<name>/, with its trailing slash: its card is at /agents/<name>/.well-known/agent-card.json; GET /agents lists the agents"})
	}
	mux.HandleFunc("GET /agents/.well-known/agent-card.json", noAgent)
	mux.HandleFunc("GET /agents/.well-known/agent.json", noAgent)
	audited("GET /agents", g.serveAgentList)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok\n") })
	mux.HandleFunc("GET /readyz", g.serveReady)
	admin("GET /api/v1/agents", api.agents)
	admin("GET /api/v1/replicas", api.replicas)
	admin("GET /api/v1/tasks", api.tasks)
	admin("GET /api/v1/tasks/{id}", api.task)
	admin("GET /api/v1/fleet", api.fleetStatus)
	admin("GET /api/v1/autoscale/wait", api.autoscaleWait)
	if h := g.opts.Admin; h != nil {
		admin("POST /api/v1/apply", h.ServeHTTP)
		admin("GET /api/v1/logs/{replica}", h.ServeHTTP)
		admin("GET /api/v1/agents/{name}", h.ServeHTTP)
	}
	if rd, ok := g.opts.Audit.(auditReader); ok {
		admin("GET /api/v1/audit", func(w http.ResponseWriter, r *http.Request) { api.audit(w, r, rd) })
	}
	if g.opts.Metrics != nil {
		admin("GET /metrics", g.opts.Metrics.Handler().ServeHTTP)
	}
	mux.Handle("GET /ui/", ui.Handler())
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	return telemetry.HTTPMiddleware(limitConcurrency(g.opts.MaxConcurrentRequests, g.routeHosts(mux)))
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
func (g *Gateway) serveReady(w http.ResponseWriter, r *http.Request) {
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
		if a.Desired > 0 && a.ReadyCount() == 0 && !a.Autoscaled { // an autoscaled agent's tasks wait while it starts one
			notReady = append(notReady, a.Name)
		}
	}
	if len(notReady) > 0 {
		// Which agents are down is for admins: anyone else could probe agent names.
		if g.opts.Auth != nil && !isAdmin(g.opts.Auth, g.opts.AdminGroup, r) {
			writeText(w, http.StatusServiceUnavailable, "not ready\n")
			return
		}
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
	out := []AgentSummary{}
	for _, a := range g.opts.Source.Snapshot() {
		if g.opts.Auth != nil && !g.opts.Auth.Authorizer.CanCall(s, a.Name) {
			continue // callers see only the agents they may call
		}
		u := g.agentURL(r, a.Name)
		out = append(out, AgentSummary{
			Name: a.Name, Description: a.Description, URL: u, CardURL: u + ".well-known/agent-card.json",
			ReadyReplicas: a.ReadyCount(), Replicas: a.Desired,
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": out})
}

// baseURL is the gateway's external base URL for links in answers (agent cards, GET /agents):
// the configured advertise URL, else the address the request came in on. The request's Host is
// used only when it names that same listener (its address, or a loopback name and its port):
// an unchecked Host would let a caller put any origin into a card that clients cache.
func (g *Gateway) baseURL(r *http.Request) string {
	if g.opts.AdvertiseURL != "" {
		return strings.TrimSuffix(g.opts.AdvertiseURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + listenerHost(r)
}

// listenerHost is r's Host when it names the listener the request came in on, else that
// listener's address.
func listenerHost(r *http.Request) string {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return "localhost"
	}
	addr := local.String()
	if r.Host == addr {
		return r.Host
	}
	_, port, _ := net.SplitHostPort(addr)
	if h, p, err := net.SplitHostPort(r.Host); err == nil && p == port {
		if ip := net.ParseIP(strings.Trim(h, "[]")); h == "localhost" || (ip != nil && ip.IsLoopback()) {
			return r.Host
		}
	}
	return addr
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

package gateway

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// originKey keys the origin of an agent's own host (AgentHosts) in a request's context.
type originKey struct{}

// hostAgent returns the agent whose own host r came to, if it did.
func (g *Gateway) hostAgent(r *http.Request) (string, bool) {
	h := g.opts.AgentHosts
	if h.Domain == "" && len(h.Hosts) == 0 {
		return "", false
	}
	host := strings.ToLower(r.Host)
	if name, _, err := net.SplitHostPort(host); err == nil {
		host = name
	}
	host = strings.TrimSuffix(host, ".")
	if agent, ok := h.Hosts[host]; ok {
		return agent, true
	}
	if h.Domain == "" {
		return "", false
	}
	label, ok := strings.CutSuffix(host, "."+strings.ToLower(h.Domain))
	if !ok || len(validation.IsDNS1123Label(label)) > 0 {
		return "", false
	}
	return label, true
}

// routeHosts serves a request to an agent's own host as a request to the agent's path under
// /agents/{name}: "/" is its JSON-RPC endpoint, /.well-known/agent-card.json its card. Health
// checks stay the gateway's.
func (g *Gateway) routeHosts(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		agent, ok := g.hostAgent(r)
		if !ok || r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		if u, err := url.Parse(g.opts.AdvertiseURL); err == nil && u.Scheme != "" {
			scheme = u.Scheme // TLS ends in front of the gateway
		}
		// The Host is one the operator configured, so it may go into cards as it is.
		r2 := r.WithContext(context.WithValue(r.Context(), originKey{}, scheme+"://"+r.Host))
		u := *r.URL
		u.Path, u.RawPath = "/agents/"+agent+r.URL.Path, ""
		r2.URL = &u
		next.ServeHTTP(w, r2)
	})
}

// agentURL is the URL clients call agent at: its own origin when the request came there,
// else its path on the gateway. It ends with a slash, so that clients that resolve the card's
// path relative to it (".well-known/agent-card.json", as the JavaScript SDK does) find it.
func (g *Gateway) agentURL(r *http.Request, agent string) string {
	if origin, ok := r.Context().Value(originKey{}).(string); ok {
		return origin + "/"
	}
	return g.baseURL(r) + "/agents/" + agent + "/"
}

package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/agentplane/agentplane/internal/discovery"
)

// rewriteCard returns the card with every JSON-RPC interface pointing at the gateway's URL for
// the agent and every other interface removed, since the gateway serves only JSON-RPC.
func rewriteCard(raw []byte, agentURL string, a discovery.Agent) ([]byte, error) {
	var card map[string]any
	if err := json.Unmarshal(raw, &card); err != nil {
		return nil, err
	}
	if ifaces, ok := card["supportedInterfaces"].([]any); ok {
		var kept []any
		seen := map[string]bool{}
		for _, v := range ifaces {
			i, ok := v.(map[string]any)
			if !ok {
				continue
			}
			binding, _ := i["protocolBinding"].(string)
			version, _ := i["protocolVersion"].(string)
			if !strings.EqualFold(binding, "JSONRPC") || seen[version] {
				continue
			}
			seen[version] = true
			i["url"] = agentURL
			delete(i, "tenant")
			kept = append(kept, i)
		}
		card["supportedInterfaces"] = kept
	}
	if _, ok := card["url"]; ok {
		card["url"] = agentURL
		card["preferredTransport"] = "JSONRPC"
		var kept []any
		if extra, ok := card["additionalInterfaces"].([]any); ok {
			for _, v := range extra {
				if i, ok := v.(map[string]any); ok && strings.EqualFold(fmt.Sprint(i["transport"]), "JSONRPC") {
					i["url"] = agentURL
					kept = append(kept, i)
					break
				}
			}
		}
		if kept == nil {
			delete(card, "additionalInterfaces")
		} else {
			card["additionalInterfaces"] = kept
		}
	}
	// The gateway sends push notifications itself, whatever the agent does.
	caps, _ := card["capabilities"].(map[string]any)
	if caps == nil {
		caps = map[string]any{}
	}
	caps["pushNotifications"] = true
	card["capabilities"] = caps
	if d, _ := card["description"].(string); d == "" && a.Description != "" {
		card["description"] = a.Description
	}
	return json.MarshalIndent(card, "", "  ")
}

func (g *Gateway) serveCard(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s, ok := g.authenticate(w, r)
	if !ok {
		return
	}
	if g.opts.Auth != nil && !g.opts.Auth.Authorizer.CanCall(s, name) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "not allowed"})
		return
	}
	agent, ok := discovery.Lookup(g.opts.Source.Snapshot(), name)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no agent %q behind this gateway; GET /agents lists them", name)})
		return
	}
	now := g.opts.Now()
	var lastErr error
	for _, e := range agent.Endpoints {
		if !e.Ready || e.URL == "" || g.tasks.pool.ejected(e.URL, now) {
			continue
		}
		entry, err := g.tasks.client.Cards().Get(r.Context(), e.URL)
		if err != nil {
			lastErr = err
			continue
		}
		out, err := rewriteCard(entry.Raw, g.baseURL(r)+"/agents/"+agent.Name, agent)
		if err != nil {
			lastErr = err
			continue
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = w.Write(out)
		return
	}
	msg := fmt.Sprintf("agent %q has no ready replica to read its card from", name)
	if lastErr != nil {
		g.log.Warn("agent card unavailable", "agent", name, "err", lastErr)
	}
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": msg})
}

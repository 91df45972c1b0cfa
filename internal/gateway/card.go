package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"

	"github.com/agentplane/agentplane/internal/discovery"
)

// rewriteCard returns the card with every JSON-RPC interface pointing at the gateway's URL for
// the agent and every other interface removed, since the gateway serves JSON-RPC and, for A2A
// v1.0, the HTTP+JSON binding it translates to JSON-RPC (rest.go), whatever the agent speaks.
// When that changes the card, the agent's signatures no longer hold and are removed (changed is
// true); otherwise the card is returned as the agent signed it, byte for byte.
func rewriteCard(raw []byte, agentURL string, a discovery.Agent) (out []byte, changed bool, err error) {
	var orig, card map[string]any
	if err := json.Unmarshal(raw, &orig); err != nil {
		return nil, false, err
	}
	_ = json.Unmarshal(raw, &card) // a second copy to edit
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
		for _, i := range kept {
			if v, _ := i.(map[string]any)["protocolVersion"].(string); v == "1" || strings.HasPrefix(v, "1.") {
				kept = append(kept, map[string]any{"url": agentURL, "protocolBinding": "HTTP+JSON", "protocolVersion": v})
				break
			}
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
	if reflect.DeepEqual(orig, card) {
		return raw, false, nil
	}
	delete(card, "signatures")
	out, err = json.MarshalIndent(card, "", "  ")
	return out, true, err
}

// OriginalCardPath is where, under an agent's URL, the gateway serves the card as the agent
// signed it, when it had to rewrite the card it serves at the well-known path.
const OriginalCardPath = ".well-known/agent-card.original.json"

// serveCard serves the agent's card as the gateway serves the agent: its URLs the gateway's.
func (g *Gateway) serveCard(w http.ResponseWriter, r *http.Request) {
	agent, raw, ok := g.readCard(w, r)
	if !ok {
		return
	}
	agentURL := g.agentURL(r, agent.Name)
	out, changed, err := rewriteCard(raw, agentURL, agent)
	if err != nil {
		g.log.Warn("agent card unreadable", "agent", agent.Name, "err", err)
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": fmt.Sprintf("agent %q serves a card that is not a JSON object", agent.Name)})
		return
	}
	if changed && signed(raw) {
		// The agent's signatures do not cover the gateway's URLs: the card as signed is beside.
		w.Header().Set("Link", "<"+agentURL+OriginalCardPath+`>; rel="alternate"; type="application/json"`)
		w.Header().Set(HeaderCard, "rewritten")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=60")
	_, _ = w.Write(out)
}

// HeaderCard says, on a card the gateway had to rewrite, that it did: the agent's signatures
// were removed, and the Link header names the card as the agent signed it.
const HeaderCard = "X-Agentplane-Card"

// serveOriginalCard serves a signed agent card as the agent signed it, for clients that verify
// the agent's signatures; its URLs are the replica's, not for calling.
func (g *Gateway) serveOriginalCard(w http.ResponseWriter, r *http.Request) {
	agent, raw, ok := g.readCard(w, r)
	if !ok {
		return
	}
	if !signed(raw) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("agent %q does not sign its card: the card to use is %s", agent.Name, g.agentURL(r, agent.Name)+".well-known/agent-card.json")})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=60")
	_, _ = w.Write(raw)
}

// signed reports whether a card carries JWS signatures.
func signed(raw []byte) bool {
	var c struct {
		Signatures []json.RawMessage `json:"signatures"`
	}
	return json.Unmarshal(raw, &c) == nil && len(c.Signatures) > 0
}

// readCard authenticates and authorizes a card request and reads the agent's card from a ready
// replica, answering itself when it cannot.
func (g *Gateway) readCard(w http.ResponseWriter, r *http.Request) (discovery.Agent, []byte, bool) {
	name := r.PathValue("name")
	s, ok := g.authenticate(w, r)
	if !ok {
		return discovery.Agent{}, nil, false
	}
	if g.opts.Auth != nil && !g.opts.Auth.Authorizer.CanCall(s, name) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "not allowed"})
		return discovery.Agent{}, nil, false
	}
	agent, ok := discovery.Lookup(g.opts.Source.Snapshot(), name)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no agent %q behind this gateway; GET /agents lists them", name)})
		return discovery.Agent{}, nil, false
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
		return agent, entry.Raw, true
	}
	msg := fmt.Sprintf("agent %q has no ready replica to read its card from", name)
	if lastErr != nil {
		g.log.Warn("agent card unavailable", "agent", name, "err", lastErr)
	}
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": msg})
	return discovery.Agent{}, nil, false
}

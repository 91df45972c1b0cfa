package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/discovery"
)

const (
	cardPath   = "/.well-known/agent-card.json"
	cardMaxAge = 5 * time.Minute
	maxCard    = 1 << 20
)

// errCard wraps failures to read a replica's card: the task was not sent.
var errCard = errors.New("agent card unavailable")

// errDialectUnsupported means a replica's card lists no JSON-RPC interface for a dialect.
var errDialectUnsupported = errors.New("dialect not supported by the agent")

// cardCache holds each replica's agent card, keyed by the replica's base URL, and what the gateway
// needs from it: the JSON-RPC URL of each A2A dialect.
type cardCache struct {
	client *http.Client
	flight singleflight.Group

	mu      sync.Mutex
	entries map[string]*cardEntry
}

type cardEntry struct {
	fetched time.Time
	raw     []byte
	rpc     map[a2a.Dialect]string
}

func (c *cardCache) get(ctx context.Context, base string) (*cardEntry, error) {
	c.mu.Lock()
	e := c.entries[base]
	c.mu.Unlock()
	if e != nil && time.Since(e.fetched) < cardMaxAge {
		return e, nil
	}
	// Concurrent first requests to a replica share one fetch.
	v, err, _ := c.flight.Do(base, func() (any, error) { return c.fetch(context.WithoutCancel(ctx), base) })
	if err != nil {
		return nil, err
	}
	return v.(*cardEntry), nil
}

func (c *cardCache) fetch(ctx context.Context, base string) (*cardEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, cardTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+cardPath, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("agent card: HTTP %d", resp.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxCard+1))
	if err != nil {
		return nil, fmt.Errorf("agent card: %w", err)
	}
	if len(raw) > maxCard {
		return nil, fmt.Errorf("agent card is larger than %d bytes", maxCard)
	}
	rpc, err := parseInterfaces(raw, base)
	if err != nil {
		return nil, err
	}
	e := &cardEntry{fetched: time.Now(), raw: raw, rpc: rpc}
	c.mu.Lock()
	c.entries[base] = e
	c.mu.Unlock()
	return e, nil
}

// rpcURL is where a replica takes JSON-RPC requests of a dialect.
func (c *cardCache) rpcURL(ctx context.Context, base string, d a2a.Dialect) (string, error) {
	e, err := c.get(ctx, base)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errCard, err)
	}
	u, ok := e.rpc[d]
	if !ok {
		return "", fmt.Errorf("%w: the agent card lists no JSON-RPC interface for A2A %s", errDialectUnsupported, d)
	}
	return u, nil
}

func (c *cardCache) retain(keep func(string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if !keep(k) {
			delete(c.entries, k)
		}
	}
}

// cardInterfaces covers both card shapes: v1.0 supportedInterfaces, and v0.3 url,
// preferredTransport, protocolVersion and additionalInterfaces.
type cardInterfaces struct {
	SupportedInterfaces []struct {
		URL             string `json:"url"`
		ProtocolBinding string `json:"protocolBinding"`
		ProtocolVersion string `json:"protocolVersion"`
	} `json:"supportedInterfaces"`
	URL                  string `json:"url"`
	PreferredTransport   string `json:"preferredTransport"`
	ProtocolVersion      string `json:"protocolVersion"`
	AdditionalInterfaces []struct {
		URL       string `json:"url"`
		Transport string `json:"transport"`
	} `json:"additionalInterfaces"`
}

func dialectOf(version string) (a2a.Dialect, bool) {
	switch {
	case version == "" || strings.HasPrefix(version, "0.3"):
		return a2a.V03, true
	case version == "1" || strings.HasPrefix(version, "1."):
		return a2a.V1, true
	}
	return "", false
}

func parseInterfaces(raw []byte, base string) (map[a2a.Dialect]string, error) {
	var c cardInterfaces
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("agent card is not valid JSON: %w", err)
	}
	rpc := map[a2a.Dialect]string{}
	for _, i := range c.SupportedInterfaces {
		if !strings.EqualFold(i.ProtocolBinding, "JSONRPC") || i.URL == "" {
			continue
		}
		if d, ok := dialectOf(i.ProtocolVersion); ok {
			if _, dup := rpc[d]; !dup {
				rpc[d] = i.URL
			}
		}
	}
	if len(c.SupportedInterfaces) == 0 && c.URL != "" {
		d, ok := dialectOf(c.ProtocolVersion)
		if !ok {
			d = a2a.V03
		}
		if c.PreferredTransport == "" || strings.EqualFold(c.PreferredTransport, "JSONRPC") {
			rpc[d] = c.URL
		} else {
			for _, i := range c.AdditionalInterfaces {
				if strings.EqualFold(i.Transport, "JSONRPC") && i.URL != "" {
					rpc[d] = i.URL
					break
				}
			}
		}
	}
	if len(rpc) == 0 {
		return nil, errors.New("agent card lists no JSON-RPC interface")
	}
	for d, u := range rpc {
		r, err := onReplica(u, base)
		if err != nil {
			return nil, err
		}
		rpc[d] = r
	}
	return rpc, nil
}

// onReplica moves a URL from a replica's card onto the replica's own address (base): the path
// and query stay, the scheme and host are base's. An agent in a pod, a container or behind NAT
// often advertises an address the gateway cannot reach (its own 127.0.0.1, a container name),
// and the gateway must only ever send a task to the replica it chose, never to another host a
// card names.
func onReplica(cardURL, base string) (string, error) {
	b, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("replica URL %q: %w", base, err)
	}
	u, err := url.Parse(cardURL)
	if err != nil {
		return "", fmt.Errorf("agent card URL %q: %w", cardURL, err)
	}
	if u.Scheme != "" && u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("agent card URL %q: not http or https", cardURL)
	}
	out := *b
	out.Path, out.RawPath, out.RawQuery, out.Fragment = u.Path, u.RawPath, u.RawQuery, ""
	if out.Path == "" {
		out.Path = "/"
	}
	return out.String(), nil
}

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
		if !e.Ready || e.URL == "" || g.ejector.Ejected(e.URL, now) {
			continue
		}
		entry, err := g.cards.get(r.Context(), e.URL)
		if err != nil {
			lastErr = err
			continue
		}
		out, err := rewriteCard(entry.raw, g.baseURL(r)+"/agents/"+agent.Name, agent)
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

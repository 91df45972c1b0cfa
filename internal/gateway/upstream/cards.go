package upstream

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
)

const (
	CardPath   = "/.well-known/agent-card.json"
	cardMaxAge = 5 * time.Minute
	maxCard    = 1 << 20
)

// Cards holds each replica's agent card, keyed by the replica's base URL, and what the gateway
// needs from it: the JSON-RPC URL of each A2A dialect. Entries are read again after cardMaxAge.
type Cards struct {
	client *http.Client
	now    func() time.Time
	flight singleflight.Group

	mu      sync.Mutex
	entries map[string]*Card
}

// Card is a replica's agent card as read, and its JSON-RPC URL per dialect.
type Card struct {
	fetched time.Time
	// Raw is the card as the replica served it.
	Raw []byte
	rpc map[a2a.Dialect]string
}

// Get returns the card of the replica at base, reading it when it is not cached or too old.
func (c *Cards) Get(ctx context.Context, base string) (*Card, error) {
	c.mu.Lock()
	e := c.entries[base]
	c.mu.Unlock()
	if e != nil && c.now().Sub(e.fetched) < cardMaxAge {
		return e, nil
	}
	// Concurrent first requests to a replica share one fetch.
	v, err, _ := c.flight.Do(base, func() (any, error) { return c.fetch(context.WithoutCancel(ctx), base) })
	if err != nil {
		return nil, err
	}
	return v.(*Card), nil
}

func (c *Cards) fetch(ctx context.Context, base string) (*Card, error) {
	ctx, cancel := context.WithTimeout(ctx, CardTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+CardPath, nil)
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
	e := &Card{fetched: c.now(), Raw: raw, rpc: rpc}
	c.mu.Lock()
	c.entries[base] = e
	c.mu.Unlock()
	return e, nil
}

// rpcURL is where a replica takes JSON-RPC requests of a dialect.
func (c *Cards) rpcURL(ctx context.Context, base string, d a2a.Dialect) (string, error) {
	e, err := c.Get(ctx, base)
	if err != nil {
		return "", &DialError{Err: fmt.Errorf("agent card unavailable: %w", err)}
	}
	u, ok := e.rpc[d]
	if !ok {
		return "", fmt.Errorf("%w: the agent card lists no JSON-RPC interface for A2A %s", ErrDialectUnsupported, d)
	}
	return u, nil
}

// Retain forgets the cards of replicas for which keep is false.
func (c *Cards) Retain(keep func(string) bool) {
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

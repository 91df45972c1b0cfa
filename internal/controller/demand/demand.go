// Package demand asks the gateways how many tasks each agent has in flight and waiting, for the
// operator's task-based autoscaler. Each gateway answers for itself (GET /api/v1/agents); the
// demand of an agent is the sum over the gateways that serve its namespace.
//
// A gateway that does not answer keeps its last answer for a while (Poller.KeepFor), so that one
// slow poll does not read as a drop in demand; past that, the demand is incomplete and the
// caller must not scale down on it. It does not decide replicas: that is package autoscale.
package demand

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Gateway is one gateway to ask: its base URL, and the namespace whose Agents it serves (agent
// names in its answers are names in that namespace).
type Gateway struct {
	URL       string
	Namespace string
}

// Source lists the gateways to ask.
type Source interface {
	Gateways(ctx context.Context) ([]Gateway, error)
}

// SourceFunc adapts a function to a Source.
type SourceFunc func(ctx context.Context) ([]Gateway, error)

// Gateways implements Source.
func (f SourceFunc) Gateways(ctx context.Context) ([]Gateway, error) { return f(ctx) }

// Static is a fixed list of gateways, all serving namespace.
func Static(namespace string, urls ...string) Source {
	gws := make([]Gateway, 0, len(urls))
	for _, u := range urls {
		gws = append(gws, Gateway{URL: u, Namespace: namespace})
	}
	return SourceFunc(func(context.Context) ([]Gateway, error) { return slices.Clone(gws), nil })
}

// GatewayAppName is the app.kubernetes.io/name label of the gateway's Service, which the
// EndpointSlice controller copies onto its slices.
const GatewayAppName = "agentplane-gateway"

// EndpointSlices finds the gateways from the EndpointSlices of the gateway's Service: one
// gateway per ready endpoint, at its first address and the port named "http" (else the first
// port).
type EndpointSlices struct {
	// Reader lists EndpointSlices; the operator's cache.
	Reader client.Reader
	// Namespace of the gateway's Service.
	Namespace string
	// Serves is the namespace whose Agents the gateways serve.
	Serves string
	// Scheme of the gateways' URLs; default "http".
	Scheme string
}

var _ Source = (*EndpointSlices)(nil)

// Gateways implements Source.
func (s *EndpointSlices) Gateways(ctx context.Context) ([]Gateway, error) {
	var list discoveryv1.EndpointSliceList
	if err := s.Reader.List(ctx, &list, client.InNamespace(s.Namespace),
		client.MatchingLabels{"app.kubernetes.io/name": GatewayAppName}); err != nil {
		return nil, fmt.Errorf("gateway endpoint slices: %w", err)
	}
	var out []Gateway
	for _, sl := range list.Items {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var port int32
		for _, p := range sl.Ports {
			if p.Port != nil && (port == 0 || p.Name != nil && *p.Name == "http") {
				port = *p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, ep := range sl.Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			terminating := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
			if !ready || terminating || len(ep.Addresses) == 0 {
				continue
			}
			u := cmp.Or(s.Scheme, "http") + "://" + net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(port)))
			out = append(out, Gateway{URL: u, Namespace: s.Serves})
		}
	}
	slices.SortFunc(out, func(a, b Gateway) int { return cmp.Compare(a.URL, b.URL) })
	return slices.CompactFunc(out, func(a, b Gateway) bool { return a.URL == b.URL }), nil
}

// Tasks is an agent's demand: tasks running on its replicas and tasks waiting for a slot.
type Tasks struct {
	InFlight int
	Queued   int
}

// Poller asks gateways for their demand. It is not safe for concurrent use: one autoscaler
// loop owns it.
type Poller struct {
	// Client makes the requests; default a client with no overall timeout (each request has
	// Timeout).
	Client *http.Client
	// Token, when set, is sent as "Authorization: Bearer <token>", for gateways whose admin API
	// needs authentication. It is never logged.
	Token string
	// Timeout bounds one gateway's answer; default 1s.
	Timeout time.Duration
	// KeepFor is how long a gateway's last answer stands in for answers it fails to give;
	// default 10s.
	KeepFor time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger

	last   map[string]answer // by gateway URL
	failed map[string]bool   // gateways whose last poll failed, to log state changes only
}

type answer struct {
	at    time.Time
	tasks map[string]Tasks // by agent name
}

// Poll asks each of gateways (all serving one namespace) for its demand at now and returns the
// sum per agent name. complete is false when some gateway's demand is not known (no answer now
// nor within KeepFor) or there is no gateway to ask: the caller must not scale down on it.
// Gateways are asked in parallel; Poll returns when all have answered or timed out.
func (p *Poller) Poll(ctx context.Context, gateways []Gateway, now time.Time) (sum map[string]Tasks, complete bool) {
	if p.last == nil {
		p.last, p.failed = map[string]answer{}, map[string]bool{}
	}
	type result struct {
		tasks map[string]Tasks
		err   error
	}
	results := make([]result, len(gateways))
	var wg sync.WaitGroup
	for i, g := range gateways {
		wg.Go(func() {
			t, err := p.fetch(ctx, g.URL)
			results[i] = result{t, err}
		})
	}
	wg.Wait()

	sum = map[string]Tasks{}
	complete = len(gateways) > 0
	for i, g := range gateways {
		r := results[i]
		if r.err == nil {
			if p.failed[g.URL] {
				p.logger().InfoContext(ctx, "gateway answers again", "gateway", g.URL)
			}
			p.failed[g.URL] = false
			p.last[g.URL] = answer{at: now, tasks: r.tasks}
		} else if !p.failed[g.URL] {
			p.failed[g.URL] = true
			p.logger().WarnContext(ctx, "gateway does not answer; keeping its last demand for a while and not scaling down on missing data",
				"gateway", g.URL, "err", r.err.Error(), "keepFor", p.keepFor().String())
		}
		a, ok := p.last[g.URL]
		if !ok || now.Sub(a.at) > p.keepFor() {
			complete = false
			continue
		}
		for name, t := range a.tasks {
			s := sum[name]
			s.InFlight += t.InFlight
			s.Queued += t.Queued
			sum[name] = s
		}
	}
	// Forget gateways that are gone.
	for u := range p.last {
		if !slices.ContainsFunc(gateways, func(g Gateway) bool { return g.URL == u }) {
			delete(p.last, u)
			delete(p.failed, u)
		}
	}
	return sum, complete
}

// errStatus is a gateway's answer other than 200.
var errStatus = errors.New("unexpected status")

// maxAnswer bounds the body read from one gateway.
const maxAnswer = 4 << 20

func (p *Poller) fetch(ctx context.Context, base string) (map[string]Tasks, error) {
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(p.Timeout, time.Second))
	defer cancel()
	var body struct {
		Agents []struct {
			Name     string `json:"name"`
			InFlight int    `json:"inFlight"`
			Queued   int    `json:"queued"`
		} `json:"agents"`
	}
	if err := p.getJSON(ctx, base+"/api/v1/agents", &body); err != nil {
		return nil, err
	}
	out := make(map[string]Tasks, len(body.Agents))
	for _, a := range body.Agents {
		out[a.Name] = Tasks{InFlight: max(a.InFlight, 0), Queued: max(a.Queued, 0)}
	}
	return out, nil
}

// getJSON GETs url from a gateway, with the token if any, and decodes its 200 answer into v.
func (p *Poller) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if p.Token != "" {
		req.Header.Set("Authorization", "Bearer "+p.Token)
	}
	c := p.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
		return fmt.Errorf("%w %d", errStatus, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(v); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

func (p *Poller) keepFor() time.Duration { return cmp.Or(p.KeepFor, 10*time.Second) }

func (p *Poller) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

// Wait asks the gateway at base to answer as soon as a task of an autoscaled agent waits for a
// replica there (GET /api/v1/autoscale/wait, a long poll of at most wait): true when one does,
// false when wait passed first. It does not touch the Poller's state, so it may run beside Poll.
func (p *Poller) Wait(ctx context.Context, base string, wait time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, wait+cmp.Or(p.Timeout, time.Second))
	defer cancel()
	var body struct {
		Waiting bool `json:"waiting"`
	}
	if err := p.getJSON(ctx, base+"/api/v1/autoscale/wait?timeout="+wait.String(), &body); err != nil {
		return false, err
	}
	return body.Waiting, nil
}

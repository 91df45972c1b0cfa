package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/fleet"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/tasks"
)

// DefaultSpillAfter is how long a task may expect to wait for a local replica before it spills
// to a peer gateway that has room.
const DefaultSpillAfter = time.Second

// peerName is the endpoint name of a peer gateway: "gw:<id>".
func peerName(id string) string { return "gw:" + id }

// fleetSource is the gateway's view of the agents: its own replicas (the local source), and, when
// it may spill, each peer gateway that serves an agent as one more endpoint of it, at the peer's
// site with the peer's free slots as capacity. Agents only peers serve are listed too, so that
// this gateway takes their tasks and forwards them.
type fleetSource struct {
	local discovery.Source
	fleet *fleet.Fleet
	spill bool // peers are endpoints (a fleet key is set)

	// seen remembers the agents peers served, so that a task for one of them while no peer
	// serves it is refused for what it is (its residency, no ready replica), not as unknown.
	mu   sync.Mutex
	seen map[string]fleet.Load
}

func (s *fleetSource) Snapshot() []discovery.Agent {
	agents := s.local.Snapshot()
	if !s.spill {
		return agents
	}
	out := make([]discovery.Agent, 0, len(agents))
	seen := map[string]bool{}
	for _, a := range agents {
		seen[a.Name] = true
		a.Endpoints = append(slices.Clone(a.Endpoints), s.peers(a.Name)...)
		out = append(out, a)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]fleet.Load{}
	}
	maps.Copy(s.seen, s.fleet.Agents())
	for _, name := range slices.Sorted(maps.Keys(s.seen)) {
		if seen[name] {
			continue
		}
		l := s.seen[name]
		out = append(out, discovery.Agent{Name: name, State: l.State, MaxConcurrency: max(l.MaxConcurrency, 1),
			AllowedSites: slices.Clone(l.AllowedSites), Endpoints: s.peers(name)})
	}
	return out
}

// peers are the peer gateways serving agent, as endpoints.
func (s *fleetSource) peers(agent string) []discovery.Endpoint {
	var eps []discovery.Endpoint
	for _, m := range s.fleet.Peers(agent) {
		l := m.Agents[agent]
		ep := peerEndpoint(m, agent)
		ep.Ready, ep.Capacity = l.Ready > 0, max(l.Free(), 0)
		eps = append(eps, ep)
	}
	return eps
}

// peerEndpoint is gateway m of the fleet as an endpoint of agent: its A2A URL for the agent, at
// its site.
func peerEndpoint(m fleet.Member, agent string) discovery.Endpoint {
	return discovery.Endpoint{Agent: agent, Name: peerName(m.ID), URL: strings.TrimSuffix(m.URL, "/") + "/agents/" + agent,
		Site: m.Site, Gateway: true, State: discovery.StateRunning}
}

// Changed wakes on a change of the local agents or of the fleet.
func (s *fleetSource) Changed() <-chan struct{} {
	ch := make(chan struct{})
	local, peers := s.local.Changed(), s.fleet.Changed()
	go func() {
		select {
		case <-local:
		case <-peers:
		}
		close(ch)
	}()
	return ch
}

// fleetLoad is what this gateway reports of each agent it runs in its heartbeat: its own
// replicas only, never its peers.
func (p *pool) fleetLoad(local discovery.Source) map[string]fleet.Load {
	now := p.now()
	out := map[string]fleet.Load{}
	for _, a := range local.Snapshot() {
		c := p.localCapacity(a, now)
		l := fleet.Load{State: a.State, MaxConcurrency: a.MaxConcurrency, AllowedSites: a.AllowedSites,
			Ready: c.ready, Slots: c.slots, Queued: p.queue.Depth(a.Name)}
		if c.timed {
			l.LatencyMs = float64(c.latency.Microseconds()) / 1000
		}
		for _, e := range a.Endpoints {
			if !e.Gateway && e.URL != "" {
				l.InFlight += p.tracker.InFlight(e.URL)
			}
		}
		out[a.Name] = l
	}
	return out
}

// fleetToken signs the token a task carries to a peer gateway: the original caller, this
// gateway as origin.
func (d *dispatcher) fleetToken(t *store.Task) (string, error) {
	if d.signer == nil {
		return "", errors.New("no fleet key: this gateway forwards no task")
	}
	return d.signer.Sign(fleet.Claims{Origin: d.journal.self, OriginSite: d.site, Subject: t.Subject, Tenant: t.Tenant,
		Groups: t.Groups, Agent: t.Agent, Task: t.ID})
}

// send sends a request for t in dialect dl to ep: a replica, or a peer gateway with a fleet
// token.
func (d *dispatcher) send(ctx context.Context, t *store.Task, ep discovery.Endpoint, dl a2a.Dialect, body []byte, stream bool, hdr http.Header) (*http.Response, error) {
	if !ep.Gateway {
		return d.client.Send(ctx, ep.URL, dl, body, stream, hdr)
	}
	token, err := d.fleetToken(t)
	if err != nil {
		return nil, err
	}
	return d.client.SendPeer(ctx, ep.URL, body, stream, hdr, token)
}

// ownerGateway is the live peer gateway that runs t, as an endpoint, when t runs elsewhere in
// the fleet and this gateway may reach it (a fleet key is set).
func (d *dispatcher) ownerGateway(t *store.Task) (discovery.Endpoint, bool) {
	if d.fleet == nil || d.signer == nil || t.Owner == "" || t.Owner == d.journal.self || tasks.Settled(t.State) {
		return discovery.Endpoint{}, false
	}
	for _, m := range d.fleet.Members() {
		if m.ID == t.Owner && m.URL != "" {
			ep := peerEndpoint(m, t.Agent)
			ep.Ready = true
			return ep, true
		}
	}
	return discovery.Endpoint{}, false
}

// fleetCaller authenticates a task forwarded by a peer gateway: the token names the original
// caller, whom this gateway then authorizes, rate-limits and audits as its own. It returns
// false (having answered 401) for a token that is not the fleet's, or when this gateway has no
// fleet key.
func (g *Gateway) fleetCaller(w http.ResponseWriter, r *http.Request) (*auth.Subject, *fleet.Claims, bool) {
	token := r.Header.Get(fleet.Header)
	var (
		c   *fleet.Claims
		err = errors.New("this gateway takes no tasks from other gateways (no fleet key)")
	)
	if g.opts.FleetSigner != nil {
		c, err = g.opts.FleetSigner.Verify(token)
	}
	if err == nil && c.Agent != r.PathValue("name") {
		err = fmt.Errorf("%w: the token is for agent %q", fleet.ErrInvalidToken, c.Agent)
	}
	if err != nil {
		g.log.Warn("forwarded task refused", "reason", err.Error(), "remote", r.RemoteAddr)
		rpcError(w, http.StatusUnauthorized, nil, errFleetRefusal)
		return nil, nil, false
	}
	return &auth.Subject{Name: c.Subject, Tenant: c.Tenant, Groups: c.Groups, Kind: "fleet"}, c, true
}

// errFleetRefusal is what a gateway hears when its fleet token is refused. The reason is in
// the refusing gateway's log, not in the answer.
var errFleetRefusal = a2a.Errorf(a2a.CodeInvalidRequest, "the fleet token was refused: the gateways of a fleet must share one fleet key")

// claimInterval is how often a gateway of a fleet looks for tasks no live gateway owns, besides
// when it learns that one left.
const claimInterval = 30 * time.Second

// claimOrphans takes over the unfinished tasks of gateways that left the fleet, until ctx ends:
// when one leaves, once this gateway has heard the whole fleet after starting, and every
// claimInterval.
func (d *dispatcher) claimOrphans(ctx context.Context, f *fleet.Fleet) {
	settle := time.NewTimer(f.SettleTime() + f.Interval()) // the first look, once Settled holds
	defer settle.Stop()
	tick := time.NewTicker(claimInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-f.Left():
			d.log.Info("claiming the tasks of a gateway that left", "gateway", id)
		case <-settle.C:
		case <-tick.C:
		}
		if !f.Settled() {
			continue
		}
		n, err := d.claim(ctx, f)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("looking for tasks to claim failed", "err", err)
		}
		if n > 0 {
			d.log.Info("claimed unfinished tasks of gateways that left the fleet", "tasks", n)
		}
	}
}

// claim takes every unfinished task whose owner is not alive, by compare-and-set, and queues it
// here (a blocking or streaming task lost its client with its gateway: its client reads the
// result by task id, from any gateway of the journal). A task another gateway claims first is
// left to it.
func (d *dispatcher) claim(ctx context.Context, f *fleet.Fleet) (int, error) {
	pending, err := d.journal.store.Pending(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range pending {
		if tasks.Settled(t.State) || t.Owner == d.journal.self || f.Alive(t.Owner) || ctx.Err() != nil {
			continue
		}
		prev := t.Owner
		if err := d.requeue(ctx, t, "taken over from gateway "+prev+", which left the fleet"); err != nil {
			if !errors.Is(err, store.ErrConflict) {
				d.log.Warn("claiming a task failed", "task", t.ID, "owner", prev, "err", err)
			}
			continue
		}
		d.metrics.Redispatch(t.Agent, "gateway_lost")
		n++
	}
	return n, nil
}

// residencyRefusal refuses a task of an agent whose allowed sites exclude this gateway's site:
// its request may not be journaled here. The error names the sites, and the gateways of the
// fleet at them, where the caller may send it.
func (g *Gateway) residencyRefusal(a discovery.Agent) error {
	site := g.opts.Site
	if site == "" || len(a.AllowedSites) == 0 || slices.Contains(a.AllowedSites, site) {
		return nil
	}
	msg := fmt.Sprintf("agent %q may only run, and have its tasks recorded, at sites %v; this gateway is at site %q", a.Name, a.AllowedSites, site)
	if f := g.opts.Fleet; f != nil {
		var there []string
		for _, m := range f.Members() {
			if slices.Contains(a.AllowedSites, m.Site) && m.URL != "" {
				there = append(there, m.URL)
			}
		}
		if len(there) > 0 {
			msg += fmt.Sprintf(": send it to a gateway there (%s)", strings.Join(there, ", "))
		}
	}
	return &refusedError{status: http.StatusServiceUnavailable, err: a2a.Errorf(CodeResidency, "%s", msg)}
}

package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"k8s.io/utils/lru"

	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/gateway/admission"
	"github.com/agentplane/agentplane/internal/gateway/balancer"
	"github.com/agentplane/agentplane/internal/gateway/balancer/policies"
	"github.com/agentplane/agentplane/internal/gateway/balancer/scorer"
	"github.com/agentplane/agentplane/internal/gateway/health"
	"github.com/agentplane/agentplane/internal/gateway/upstream"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/telemetry"
)

// warmConversations is how many conversations the gateway remembers the replica of (pool.warm):
// about 100 bytes each, so some 6 MiB at most.
const warmConversations = 1 << 16

// errNoReplica means no replica of the agent was ready to take a task.
var errNoReplica = errors.New("no ready replica")

// pool is the gateway's view of the replicas: which are ready, ejected, loaded and how fast, and
// the admission queue in front of them. It hands out replica slots and learns from how
// dispatches end; it sends nothing itself but probes.
type pool struct {
	source   discovery.Source
	policies *balancer.Registry
	latency  *balancer.EWMA
	queue    *admission.Queue
	tracker  *balancer.Tracker
	ejector  *health.Ejector
	client   *upstream.Client
	metrics  *telemetry.Metrics
	log      *slog.Logger
	now      func() time.Time
	// queueTimeout bounds how long a task waits in the admission queue for a slot.
	queueTimeout time.Duration
	// spillAfter is the expected wait for a local replica beyond which a task goes to a peer
	// gateway with room; negative never spills. Peers are endpoints only when the source lists
	// them (a fleet with a key).
	spillAfter time.Duration
	// scaleUp is Options.ScaleUp; nil when nothing scales agents.
	scaleUp func(agent string)
	// warm remembers, for the conversations of agents without affinity (stateless), which
	// replica took each one's latest task: agent + "\x00" + contextId → replica URL, the most
	// recent warmConversations. The policy prefers that replica for the next task while it is
	// nearly as good as the best (balancer.Policy.Warm), since it likely holds the
	// conversation's context in its cache. Safe for concurrent use.
	warm *lru.Cache
	// waiting is closed, and replaced, when a task of an autoscaled agent finds no ready
	// replica: GET /api/v1/autoscale/wait answers then. Guarded by waitingMu.
	waitingMu sync.Mutex
	waiting   chan struct{}
}

// waitingChanged returns a channel closed the next time a task of an autoscaled agent finds no
// ready replica.
func (p *pool) waitingChanged() <-chan struct{} {
	p.waitingMu.Lock()
	defer p.waitingMu.Unlock()
	if p.waiting == nil {
		p.waiting = make(chan struct{})
	}
	return p.waiting
}

// taskWaits tells autoscalers that a task of agent waits for a replica.
func (p *pool) taskWaits(agent string) {
	if p.scaleUp != nil {
		p.scaleUp(agent)
	}
	p.waitingMu.Lock()
	if p.waiting != nil {
		close(p.waiting)
		p.waiting = nil
	}
	p.waitingMu.Unlock()
}

// slot is a replica slot granted to a task; release must be called when the task leaves it,
// and gives the slot to the task waiting for it, if any.
type slot struct {
	agent   discovery.Agent
	ep      discovery.Endpoint
	release func()
}

// taskRef is what admission and balancing need to know of a task.
type taskRef struct {
	agent, tenant, contextID string
	priority                 admission.Priority
	// local keeps the task on this gateway's replicas: it was forwarded here by a peer (one hop
	// at most), or it is not a task.
	local bool
}

func refOf(t *store.Task) taskRef {
	p, err := admission.ParsePriority(t.Priority)
	if err != nil {
		p = admission.Normal
	}
	return taskRef{agent: t.Agent, tenant: t.Tenant, contextID: t.ContextID, priority: p, local: t.Origin != ""}
}

// acquire gets a replica slot for a task. When every eligible replica is at capacity the task
// waits in the agent's admission queue (urgent, then normal, then batch; round robin across
// tenants; FIFO within a tenant) until a slot frees for it, ctx ends or the queue timeout passes.
// Replicas in tried are avoided while another one has room.
func (p *pool) acquire(ctx context.Context, t taskRef, tried map[string]bool) (slot, error) {
	return p.admit(ctx, t, func(agent discovery.Agent) (discovery.Endpoint, func(), error) {
		ep, rel, err := p.pick(agent, tried, t.contextID, false)
		if err != nil && !t.local && p.spillable(agent, err) {
			// The site cannot take the task soon enough: a peer gateway with room may.
			if pep, prel, perr := p.pick(agent, tried, t.contextID, true); perr == nil {
				return pep, prel, nil
			} else if errors.Is(err, balancer.ErrUnavailable) && errors.Is(perr, balancer.ErrSaturated) {
				err = perr // no replica here, peers busy: wait for either
			}
		}
		if len(tried) > 0 && errors.Is(err, balancer.ErrUnavailable) && comesBack(agent) {
			// A retry of an accepted task finds no replica ready: they are restarting, or
			// failing their probes under load. It waits in the queue for one to be ready (up to
			// the queue timeout) rather than failing now.
			return discovery.Endpoint{}, nil, balancer.ErrSaturated
		}
		return ep, rel, err
	})
}

// comesBack reports whether an agent has no ready replica now but is expected to have one
// again: it wants replicas, or has some that are not ready yet. (A replica that is ready but
// ejected has failed: tasks get a prompt error rather than wait for it.)
func comesBack(agent discovery.Agent) bool {
	if agent.ReadyCount() > 0 {
		return false
	}
	if agent.Desired > 0 || agent.Autoscaled {
		return true
	}
	return slices.ContainsFunc(agent.Endpoints, func(e discovery.Endpoint) bool { return !e.Gateway })
}

// acquireOn gets a slot on one replica, the one that holds a task's state (a continuation),
// waiting in the admission queue while it is at capacity: a replica never gets more than its
// maxConcurrency, continuations included.
func (p *pool) acquireOn(ctx context.Context, t taskRef, url string) (slot, error) {
	return p.admit(ctx, t, func(agent discovery.Agent) (discovery.Endpoint, func(), error) {
		ep, ok := endpoint(agent, url)
		if !ok || !ep.Ready {
			return discovery.Endpoint{}, nil, errNoReplica
		}
		limit := max(agent.MaxConcurrency, 1)
		if ep.Gateway {
			limit = maxPeerContinuations // the peer gateway queues them itself
		}
		rel, ok := p.tracker.TryAcquire(url, limit)
		if !ok {
			return discovery.Endpoint{}, nil, balancer.ErrSaturated
		}
		return ep, rel, nil
	})
}

// maxPeerContinuations bounds the continuations sent at once to a peer gateway that holds
// their tasks.
const maxPeerContinuations = 1 << 16

func (p *pool) admit(ctx context.Context, t taskRef, pick func(discovery.Agent) (discovery.Endpoint, func(), error)) (slot, error) {
	var s slot
	try := func() (func(), error) {
		agent, ok := discovery.Lookup(p.source.Snapshot(), t.agent)
		if !ok {
			return nil, errAgentRemoved
		}
		ep, rel, err := pick(agent)
		if errors.Is(err, balancer.ErrSaturated) {
			return nil, admission.ErrNoSlot
		}
		if agent.Autoscaled && errors.Is(err, balancer.ErrUnavailable) {
			// An autoscaled agent at zero, or whose replicas are starting: the task waits,
			// durably journaled, while the autoscaler brings one up.
			p.taskWaits(agent.Name)
			return nil, admission.ErrNoSlot
		}
		if err != nil {
			return nil, err
		}
		s.agent, s.ep = agent, ep
		return rel, nil
	}
	start := p.now()
	qctx, span := telemetry.StartQueue(ctx)
	release, err := p.queue.Acquire(qctx, admission.Request{Agent: t.agent, Tenant: t.tenant, Priority: t.priority,
		Deadline: start.Add(p.queueTimeout)}, try)
	telemetry.End(span, err)
	if err == nil {
		p.metrics.QueueWait(ctx, t.agent, p.now().Sub(start))
	}
	var refused *admission.RefusedError
	switch {
	case errors.As(err, &refused):
		reason := "deadline"
		switch {
		case errors.Is(err, admission.ErrQueueFull):
			reason = "queue_full"
		case errors.Is(err, admission.ErrExpectedWait):
			reason = "expected_wait"
		}
		p.metrics.QueueRefused(t.agent, reason)
		return s, err
	case errors.Is(err, balancer.ErrUnavailable):
		return s, errNoReplica
	case err != nil:
		return s, err
	}
	s.release = release // frees the replica slot and hands it to the best waiter
	return s, nil
}

// errAgentRemoved means the agent of a waiting task is no longer served.
var errAgentRemoved = errors.New("the agent was removed")

// spillable reports whether a task the site's replicas could not take (err) may go to a peer
// gateway: when none of them is ready, or when the wait they promise is longer than spillAfter
// (never for a stateful agent with a ready replica here: its conversations live here).
func (p *pool) spillable(agent discovery.Agent, err error) bool {
	if p.spillAfter < 0 {
		return false
	}
	if errors.Is(err, balancer.ErrUnavailable) || errors.Is(err, balancer.ErrResidency) {
		return true
	}
	if !errors.Is(err, balancer.ErrSaturated) || agent.State == discovery.AgentStateful {
		return false
	}
	return p.expectedWait(agent) > p.spillAfter
}

// expectedWait is how long a task arriving now would wait for one of the site's replicas: the
// tasks ahead of it in the queue, served by every ready replica slot at the replicas' recent task
// duration. Unknown (0) until a task has been timed.
func (p *pool) expectedWait(agent discovery.Agent) time.Duration {
	c := p.localCapacity(agent, p.now())
	if c.slots == 0 || !c.timed {
		return 0
	}
	ahead := p.queue.Waiting(agent.Name) + 1 // under the queue's lock: Stats would wait for it
	return time.Duration(float64(c.latency) * float64(ahead) / float64(c.slots))
}

// capacity is what an agent's replicas at this site can take: the ready ones that are not
// ejected, their slots, and their mean recent task duration (timed: known for one at least).
type capacity struct {
	ready, slots int
	latency      time.Duration
	timed        bool
}

// localCapacity is the capacity of agent's replicas, peer gateways left out.
func (p *pool) localCapacity(agent discovery.Agent, now time.Time) capacity {
	var c capacity
	var sum time.Duration
	var timed int
	for _, e := range agent.Endpoints {
		if e.Gateway || e.URL == "" || !e.Ready || p.ejected(e.URL, now) {
			continue
		}
		c.ready++
		c.slots += max(agent.MaxConcurrency, 1)
		if v, ok := p.latency.Value(e.URL, now); ok {
			sum += v
			timed++
		}
	}
	if timed > 0 {
		c.latency, c.timed = sum/time.Duration(timed), true
	}
	return c
}

// pick chooses a replica for a task with the agent's balancing policy (filters: residency,
// ready, not ejected, capacity, own site first; then load and latency scores; then power of two
// choices, or bounded-load consistent hashing on contextID for stateful agents) and counts the
// task on it at once, so that concurrent picks never exceed a replica's capacity. With peers it
// chooses among peer gateways instead of replicas.
func (p *pool) pick(agent discovery.Agent, tried map[string]bool, contextID string, peers bool) (discovery.Endpoint, func(), error) {
	ep, rel, err := p.pickAmong(agent, tried, contextID, peers)
	if len(tried) > 0 && err != nil {
		// Every untried replica is busy, not ready or out of the allowed sites: a replica that
		// failed this task once but is ready and not ejected is better than waiting, or failing.
		if rep, rrel, rerr := p.pickAmong(agent, nil, contextID, peers); rerr == nil {
			if !tried[rep.URL] || !p.ejected(rep.URL, p.now()) {
				return rep, rrel, nil
			}
			rrel() // the balancer's panic mode took an ejected replica this task failed on
		}
	}
	return ep, rel, err
}

func (p *pool) pickAmong(agent discovery.Agent, tried map[string]bool, contextID string, peers bool) (discovery.Endpoint, func(), error) {
	now := p.now()
	cands := make([]balancer.Candidate, 0, len(agent.Endpoints))
	eps := make([]discovery.Endpoint, 0, len(agent.Endpoints))
	fresh := make([]bool, 0, len(agent.Endpoints)) // latency measured recently, not a last guess
	for _, e := range agent.Endpoints {
		if e.URL == "" || tried[e.URL] || e.Gateway != peers {
			continue
		}
		lat, ok := p.latency.Value(e.URL, now)
		if !ok {
			// No task finished on it lately (the balancer prefers faster replicas): its last
			// measure is a better guess of its speed than the median of the others.
			lat, _ = p.latency.Last(e.URL, now)
		}
		fresh = append(fresh, ok)
		cands = append(cands, balancer.Candidate{Key: e.URL, InFlight: p.tracker.InFlight(e.URL), Capacity: capacityOf(agent, e),
			Site: e.Site, Zone: e.Zone, Ready: e.Ready, Ejected: p.ejector.Ejected(e.URL, now), Latency: lat})
		eps = append(eps, e)
	}
	pol, ok := p.policies.Get(policies.NameFor(agent.State))
	if !ok {
		return discovery.Endpoint{}, nil, fmt.Errorf("no balancing policy for %s agents", agent.State)
	}
	req := balancer.Request{AllowedSites: agent.AllowedSites}
	warmKey := ""
	switch {
	case agent.State == discovery.AgentStateful:
		req.AffinityKey = contextID
	case contextID != "" && p.warm != nil:
		warmKey = agent.Name + "\x00" + contextID
		if v, ok := p.warm.Get(warmKey); ok {
			req.Warm = v.(string)
		}
	}
	for range 3 {
		i, err := pol.Pick(req, cands)
		if errors.Is(err, balancer.ErrUnavailable) && readyOutside(agent) {
			// Replicas are ready, but none where the agent's data may go: say so.
			return discovery.Endpoint{}, nil, &balancer.NoReplicaError{Policy: pol.Name, Stage: "residency", Candidates: len(cands), Err: balancer.ErrResidency}
		}
		if err != nil {
			return discovery.Endpoint{}, nil, err
		}
		if !peers && agent.State != discovery.AgentStateful && p.holdForFaster(agent.Name, cands, fresh, i, now) {
			return discovery.Endpoint{}, nil, &balancer.NoReplicaError{Policy: pol.Name, Stage: "hold for a faster replica", Candidates: len(cands), Err: balancer.ErrSaturated}
		}
		if rel, ok := p.tracker.TryAcquire(cands[i].Key, cands[i].Capacity); ok {
			if warmKey != "" && req.Warm != cands[i].Key {
				p.warm.Add(warmKey, cands[i].Key)
			}
			return eps[i], rel, nil
		}
		cands[i].InFlight = cands[i].Capacity // taken meanwhile by a concurrent pick
	}
	return discovery.Endpoint{}, nil, &balancer.NoReplicaError{Policy: pol.Name, Stage: "capacity", Candidates: len(cands), Err: balancer.ErrSaturated}
}

// holdSpeedup is how much faster a full replica must be than the free one the balancer chose
// for a task to wait for it, by the median of their recent task durations: a pool of another
// kind (a GPU pool beside a CPU one), not a replica of the same kind that looks faster by
// chance (waiting for it would idle a good replica). Medians, not the averages the balancer
// scores with: with heavy-tailed durations, such as an LLM's answers of a few to thousands of
// tokens, the averages of equal replicas differ 3× by chance, and holding on them cost
// conversations on equal replicas 2× in p99 time to first token in the bench.
const holdSpeedup = 3

// holdMinTasks is how many recent task durations a replica needs before its median counts.
const holdMinTasks = 4

// holdForFaster reports whether a task does better waiting for a slot on the agent's full
// replicas that are much faster than cands[chosen] (holdSpeedup) than starting on
// cands[chosen] now: the slow-server problem. Waiting costs the tasks ahead of it in the queue
// and itself over the rate the faster replicas free slots (their slots over their task
// duration), then their task duration; starting now costs the chosen replica's expected delay
// (scorer.Cost, as the balancer's Delay scorer counts it). The task waits when that is no
// later. Only replicas measured recently count, so that a task never waits for replicas that
// stopped finishing tasks (hung): their measure goes stale, and the next pick takes the free
// replica.
func (p *pool) holdForFaster(agent string, cands []balancer.Candidate, fresh []bool, chosen int, t time.Time) bool {
	c := cands[chosen]
	if c.Latency <= 0 {
		return false
	}
	var slots int
	var sum float64
	var median time.Duration // the chosen one's, read once a full replica may count
	known := false
	for i, o := range cands {
		if i == chosen || !fresh[i] || !o.Ready || o.Ejected || o.Site != c.Site || o.InFlight < max(o.Capacity, 1) {
			continue
		}
		if !known {
			if median, known = p.latency.Median(c.Key, t, holdMinTasks); !known {
				return false
			}
		}
		if m, ok := p.latency.Median(o.Key, t, holdMinTasks); !ok || m*holdSpeedup > median {
			continue
		}
		slots += max(o.Capacity, 1)
		sum += float64(o.Latency) * float64(max(o.Capacity, 1))
	}
	if slots == 0 {
		return false
	}
	lat := sum / float64(slots) // their task duration, weighted by their slots
	wait := float64(p.queue.Waiting(agent)+1) * lat / float64(slots)
	return wait+lat <= scorer.Cost(c.Latency, c)
}

// capacityOf is how many tasks endpoint e takes at once: a peer gateway's free slots, or the
// agent's maxConcurrency.
func capacityOf(agent discovery.Agent, e discovery.Endpoint) int {
	if e.Gateway {
		return e.Capacity
	}
	return max(agent.MaxConcurrency, 1)
}

// readyOutside reports whether an agent with a residency rule has ready replicas outside it.
func readyOutside(agent discovery.Agent) bool {
	if len(agent.AllowedSites) == 0 {
		return false
	}
	for _, e := range agent.Endpoints {
		if e.Ready && !slices.Contains(agent.AllowedSites, e.Site) {
			return true
		}
	}
	return false
}

// endpoint finds the replica that has url, if it is still there.
func endpoint(agent discovery.Agent, url string) (discovery.Endpoint, bool) {
	for _, e := range agent.Endpoints {
		if url != "" && e.URL == url {
			return e, true
		}
	}
	return discovery.Endpoint{}, false
}

// ejectAfter is how many slow or 5xx answers in a row eject a replica.
const ejectAfter = 2

// failed records a replica failure: a replica that could not be reached or dropped the
// connection leaves rotation at once; one that hung or answered 502/503/504 after ejectAfter
// such failures in a row, since one slow task does not make a replica sick.
func (p *pool) failed(ep discovery.Endpoint, err error) {
	now := p.now()
	out := p.ejected(ep.URL, now)
	var d time.Duration
	switch {
	case upstream.EjectNow(err):
		d = p.ejector.Eject(ep.URL, now)
	case upstream.Retryable(err):
		d = p.ejector.Fail(ep.URL, now, ejectAfter)
	}
	switch {
	case d == 0:
		p.log.Info("replica failed a request", "agent", ep.Agent, "replica", ep.Name, "err", err)
	case out:
		// Already ejected: the failures of the tasks that were in flight on it are one event,
		// logged once.
		p.log.Debug("ejected replica failed a request", "agent", ep.Agent, "replica", ep.Name, "err", err)
	default:
		p.metrics.Ejection(ep.Agent, ep.Name)
		p.log.Warn("replica ejected", "agent", ep.Agent, "replica", ep.Name, "for", d, "err", err)
	}
}

// succeeded records a dispatch that ended well after took.
func (p *pool) succeeded(agent discovery.Agent, ep discovery.Endpoint, took time.Duration) {
	now := p.now()
	p.ejector.Succeeded(ep.URL, now)
	p.latency.Observe(ep.URL, took, now)
	p.checkOutlier(agent, ep, now)
}

// Latency outliers: a replica whose recent task duration is far above its peers' is ejected
// like a failing one, so that a slow replica (a sick GPU, a noisy neighbour) stops taking new
// tasks while the others have room. It needs at least outlierMinPeers replicas with recent
// durations, so that one agent's heavy tail is not mistaken for a sick replica.
const (
	outlierFactor   = 5 // times the median of the agent's replicas
	outlierMinPeers = 3
)

// checkOutlier ejects ep when its latency is an outlier among agent's replicas.
func (p *pool) checkOutlier(agent discovery.Agent, ep discovery.Endpoint, now time.Time) {
	own, ok := p.latency.Value(ep.URL, now)
	if !ok || ep.Gateway {
		return
	}
	var all []time.Duration
	for _, e := range agent.Endpoints {
		// Replicas only: a peer gateway's latency (another site, its own queue) says nothing of
		// whether a replica here is sick.
		if v, ok := p.latency.Value(e.URL, now); ok && e.Ready && !e.Gateway {
			all = append(all, v)
		}
	}
	if len(all) < outlierMinPeers {
		return
	}
	slices.Sort(all)
	median := all[len(all)/2]
	if median <= 0 || own < outlierFactor*median || p.ejector.Ejected(ep.URL, now) {
		return
	}
	d := p.ejector.Eject(ep.URL, now)
	p.metrics.Ejection(agent.Name, ep.Name)
	p.log.Warn("replica ejected as a latency outlier", "agent", agent.Name, "replica", ep.Name,
		"latency", own.Round(time.Millisecond), "median", median.Round(time.Millisecond), "for", d)
}

// probeInterval is how often ejected replicas are probed.
const probeInterval = time.Second

// Start keeps the pool current until ctx ends: it prunes the state of replicas that are gone
// and wakes waiting tasks whenever the source changes, counts restarts, and probes every
// ejected replica's card, putting it back into rotation as soon as it answers rather than when
// its ejection runs out. Replicas in rotation are not probed: tasks are the gateway's probes,
// and readiness comes from discovery.
func (p *pool) Start(ctx context.Context) error {
	done := make(chan struct{})
	go func() { defer close(done); p.probeEjected(ctx) }()
	p.watch(ctx)
	<-done
	return nil
}

func (p *pool) watch(ctx context.Context) {
	var restarts map[string]int
	for {
		ch := p.source.Changed()
		live := map[string]bool{}
		agents := p.source.Snapshot()
		restarts = p.noteRestarts(restarts, agents)
		for _, a := range agents {
			p.queue.Notify(a.Name) // a replica may have become ready: waiting tasks try again
			for _, e := range a.Endpoints {
				if e.URL != "" {
					live[e.URL] = true
				}
			}
		}
		keep := func(k string) bool { return live[k] }
		p.ejector.Retain(keep)
		p.client.Cards().Retain(keep)
		p.latency.Retain(keep)
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-time.After(time.Minute):
		}
	}
}

// noteRestarts counts replica restarts seen between two snapshots of the source.
func (p *pool) noteRestarts(prev map[string]int, agents []discovery.Agent) map[string]int {
	now := map[string]int{}
	for _, a := range agents {
		for _, e := range a.Endpoints {
			key := a.Name + "/" + e.Name
			now[key] = e.Restarts
			if n, seen := prev[key]; seen {
				for range max(e.Restarts-n, 0) {
					p.metrics.ReplicaRestart(a.Name, e.Name)
				}
			}
		}
	}
	return now
}

func (p *pool) probeEjected(ctx context.Context) {
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, url := range p.ejector.EjectedKeys(p.now()) {
			if p.client.Probe(ctx, url) {
				p.ejector.Readmit(url)
				p.log.Info("ejected replica answers its probe again; back in rotation", "url", url)
				for _, a := range p.source.Snapshot() {
					p.queue.Notify(a.Name)
				}
			}
		}
	}
}

// snapshot is what the metrics' gauges read at scrape time.
func (p *pool) snapshot() telemetry.Snapshot {
	now := p.now()
	var s telemetry.Snapshot
	for _, a := range p.source.Snapshot() {
		for _, e := range a.Endpoints {
			s.Replicas = append(s.Replicas, telemetry.ReplicaSample{
				Agent: a.Name, Replica: e.Name, Site: e.Site, Zone: e.Zone, State: e.State, Ready: e.Ready,
				Ejected: p.ejected(e.URL, now), InFlight: p.tracker.InFlight(e.URL), Capacity: a.MaxConcurrency,
			})
		}
		st := p.queue.Stats(a.Name)
		s.Queues = append(s.Queues, telemetry.QueueSample{Agent: a.Name, Depth: st.Depth, OldestWait: st.OldestWait})
		s.Agents = append(s.Agents, telemetry.AgentSample{Agent: a.Name, Desired: a.Desired, Autoscaled: a.Autoscaled})
	}
	return s
}

// ejected reports whether the replica at url is out of rotation.
func (p *pool) ejected(url string, now time.Time) bool {
	return url != "" && p.ejector.Ejected(url, now)
}

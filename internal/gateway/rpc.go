package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"syscall"
	"time"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/gateway/admission"
	"github.com/agentplane/agentplane/internal/gateway/balancer"
	"github.com/agentplane/agentplane/internal/gateway/balancer/policies"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/telemetry"
)

// HeaderReplica names the replica that answered, for operators and tests.
const HeaderReplica = "X-Agentplane-Replica"

// forwardedHeaders are the request headers passed on to agents. Credentials are not: the gateway
// authenticates callers, agents trust the gateway.
var forwardedHeaders = []string{"A2A-Version", "A2A-Extensions", "X-A2A-Extensions", "Traceparent", "Tracestate", "X-Request-Id"}

// upstreamStatusError is an HTTP status from a replica that another replica may not give.
type upstreamStatusError struct{ code int }

func (e *upstreamStatusError) Error() string { return fmt.Sprintf("replica answered HTTP %d", e.code) }

// errHung means a replica did not finish a task within the per-attempt deadline.
var errHung = errors.New("replica did not finish the task within the task timeout")

// rpcError writes a JSON-RPC error with an HTTP status.
func (g *Gateway) rpcError(w http.ResponseWriter, status int, id json.RawMessage, e *a2a.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	_, _ = w.Write(a2a.ErrorResponse(id, e))
}

// call carries the request of one JSON-RPC exchange to the gateway's handlers, and what they
// learn about it for the audit record.
type call struct {
	w       http.ResponseWriter
	r       *http.Request
	subject *auth.Subject
	agent   discovery.Agent
	req     *a2a.Request
	taskID  string // the gateway task id the call created or named
	replica string // the replica that last served it
}

// serveRPC is the A2A front door: authenticate → limits → parse → authorize → rate limit →
// the method's handler; every call, refused or not, leaves an audit record before the response
// completes.
func (g *Gateway) serveRPC(w http.ResponseWriter, r *http.Request) {
	start := g.opts.Now()
	name := r.PathValue("name")
	sw := &statusRecorder{ResponseWriter: w}
	ctx, span := telemetry.StartTask(r.Context(), name, "", "")
	r = r.WithContext(ctx)
	c := &call{w: sw, r: r, subject: anonymous}
	outcome := "refused"
	defer func() {
		var failure error
		if outcome != "ok" && outcome != "ok-journal" && outcome != "queued" {
			failure = errors.New(outcome)
		}
		telemetry.End(span, failure)
		if c.agent.Name != "" { // only agents that exist become label values
			g.opts.Metrics.Request(ctx, c.agent.Name, c.req.Method, outcome, g.opts.Now().Sub(start))
		}
		rec := audit.Record{Subject: c.subject.Name, Tenant: c.subject.Tenant, Agent: name, TaskID: c.taskID,
			Outcome: outcome, HTTPStatus: sw.status, LatencyMs: g.opts.Now().Sub(start).Milliseconds(), Replica: c.replica}
		if c.req != nil {
			rec.Method = c.req.Method
		}
		for _, ep := range c.agent.Endpoints {
			if ep.Name == c.replica {
				rec.Site = ep.Site
			}
		}
		g.audit(r, rec)
		g.log.LogAttrs(r.Context(), slog.LevelDebug, "request",
			slog.String("agent", name), slog.String("method", rec.Method), slog.String("subject", rec.Subject),
			slog.String("outcome", outcome), slog.Int("status", sw.status), slog.Duration("duration", g.opts.Now().Sub(start)))
	}()

	s, ok := g.authenticate(sw, r)
	if !ok {
		outcome = "unauthenticated"
		return
	}
	c.subject = s
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			g.rpcError(sw, http.StatusUnsupportedMediaType, nil, a2a.Errorf(a2a.CodeInvalidRequest, "Content-Type must be application/json, not %q", ct))
			outcome = "bad-request"
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(sw, r.Body, g.opts.MaxBodyBytes))
	if err != nil {
		outcome = "bad-request"
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			g.rpcError(sw, http.StatusRequestEntityTooLarge, nil, a2a.Errorf(a2a.CodeRequestTooLarge, "request body is larger than the gateway's limit of %d bytes", g.opts.MaxBodyBytes))
			return
		}
		g.rpcError(sw, http.StatusBadRequest, nil, a2a.Errorf(a2a.CodeInvalidRequest, "reading the request body failed: %v", err))
		return
	}
	req, perr := a2a.ParseRequestLimit(body, g.opts.MaxJSONDepth)
	if perr != nil {
		g.rpcError(sw, http.StatusOK, a2a.ErrorID(body), perr)
		outcome = "bad-request"
		return
	}
	c.req = req
	span.SetName(req.Method + " " + name)
	// Authorization comes before the agent is looked up, so that a caller cannot probe which
	// agents exist.
	if refusal, ok := g.authorize(sw, req.ID, s, name); !ok {
		outcome = refusal
		return
	}
	agent, ok := discovery.Lookup(g.opts.Source.Snapshot(), name)
	if !ok {
		g.rpcError(sw, http.StatusNotFound, req.ID, a2a.Errorf(a2a.CodeAgentNotFound, "no agent %q behind this gateway; GET /agents lists them", name))
		outcome = "agent-not-found"
		return
	}
	c.agent = agent
	switch {
	case req.Info.NewTask():
		outcome = g.serveSend(c)
	case req.Info.TaskScoped():
		outcome = g.serveTaskOp(c)
	default:
		outcome = g.serveOther(c, body)
	}
}

// serveOther forwards methods the gateway does not track (ListTasks, push notification configs,
// the extended card) to one ready replica, unchanged.
func (g *Gateway) serveOther(c *call, body []byte) string {
	sl, err := g.acquire(c.r.Context(), taskRef{agent: c.agent.Name, tenant: c.subject.Tenant, priority: admission.Normal}, nil)
	ep, release := sl.ep, sl.release
	if err != nil {
		g.rpcError(c.w, http.StatusServiceUnavailable, c.req.ID, a2a.Errorf(a2a.CodeAgentUnavailable, "agent %q: %v", c.agent.Name, err))
		return "unavailable"
	}
	defer release()
	c.replica = ep.Name
	ctx, cancel := context.WithTimeout(c.r.Context(), g.opts.TaskTimeout)
	defer cancel()
	resp, err := g.send(ctx, ep, c.req.Info.Dialect, body, false, c.r.Header)
	if err != nil {
		g.failed(ep, err)
		g.rpcError(c.w, http.StatusBadGateway, c.req.ID, a2a.Errorf(a2a.CodeAgentUnavailable, "replica %s did not answer: %v", ep.Name, err))
		return "unavailable"
	}
	defer resp.Body.Close()
	out, err := readBody(resp)
	if err != nil {
		g.rpcError(c.w, http.StatusBadGateway, c.req.ID, a2a.Errorf(a2a.CodeAgentUnavailable, "replica %s: %v", ep.Name, err))
		return "unavailable"
	}
	writeResponse(c.w, resp, ep, out)
	return "ok"
}

// send posts one JSON-RPC body to a replica, at the URL its card gives for the dialect. A 502,
// 503 or 504 answer is returned as an upstreamStatusError, since another replica may do better.
func (g *Gateway) send(ctx context.Context, ep discovery.Endpoint, d a2a.Dialect, body []byte, stream bool, in http.Header) (*http.Response, error) {
	target, err := g.cards.rpcURL(ctx, ep.URL, d)
	if err != nil {
		return nil, err
	}
	up, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	up.Header.Set("Content-Type", "application/json")
	if stream {
		up.Header.Set("Accept", "text/event-stream")
	} else {
		up.Header.Set("Accept", "application/json")
	}
	for _, h := range forwardedHeaders {
		if v := in.Values(h); len(v) > 0 {
			up.Header[h] = v
		}
	}
	telemetry.Inject(ctx, up.Header) // with tracing on, the agent's parent is this dispatch
	resp, err := g.client.Do(up)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return nil, &upstreamStatusError{code: resp.StatusCode}
	}
	return resp, nil
}

func readBody(resp *http.Response) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, err
	}
	if len(out) > maxResponseBytes {
		return nil, fmt.Errorf("answer is larger than %d bytes", maxResponseBytes)
	}
	return out, nil
}

// writeResponse relays a replica's non-streaming answer.
func writeResponse(w http.ResponseWriter, resp *http.Response, ep discovery.Endpoint, body []byte) {
	h := w.Header()
	for _, k := range []string{"Content-Type", "A2A-Version", "A2A-Extensions", "X-A2A-Extensions"} {
		if v := resp.Header.Values(k); len(v) > 0 {
			h[k] = v
		}
	}
	h.Set(HeaderReplica, ep.Name)
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

// failed records a replica failure. A replica that refused or dropped the connection is ejected
// at once; one that hung past the task timeout or answered 502/503/504 is ejected after
// ejectAfter such failures in a row, since one slow task does not make a replica sick.
func (g *Gateway) failed(ep discovery.Endpoint, err error) {
	var st *upstreamStatusError
	var d time.Duration
	switch {
	case connectionFailure(err) || errors.Is(err, errCard):
		d = g.ejector.Eject(ep.URL, g.opts.Now())
	case errors.Is(err, errHung) || errors.As(err, &st):
		d = g.ejector.Fail(ep.URL, g.opts.Now(), ejectAfter)
	}
	if d == 0 {
		g.log.Info("replica failed a request", "agent", ep.Agent, "replica", ep.Name, "err", err)
		return
	}
	g.opts.Metrics.Ejection(ep.Agent, ep.Name)
	g.log.Warn("replica ejected", "agent", ep.Agent, "replica", ep.Name, "for", d, "err", err)
}

// ejectAfter is how many slow or 5xx answers in a row eject a replica.
const ejectAfter = 2

// connectionFailure reports whether err means the replica could not be reached or dropped the
// connection, as opposed to answering badly.
func connectionFailure(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// pick chooses a replica for a task with the agent's balancing policy (filters: residency,
// ready, not ejected, capacity, own site first; then load and latency scores; then power of two
// choices, or bounded-load consistent hashing on contextID for stateful agents) and counts the
// task on it at once, so that concurrent picks never exceed a replica's capacity. Replicas in
// tried are avoided while another one has room. release must be called when the task leaves.
func (g *Gateway) pick(agent discovery.Agent, tried map[string]bool, contextID string) (discovery.Endpoint, func(), error) {
	ep, rel, err := g.pickAmong(agent, tried, contextID)
	if errors.Is(err, balancer.ErrSaturated) && len(tried) > 0 {
		// Every untried replica is busy: a replica that failed this task once but is not ejected
		// is better than waiting.
		ep, rel, err = g.pickAmong(agent, nil, contextID)
	}
	return ep, rel, err
}

func (g *Gateway) pickAmong(agent discovery.Agent, tried map[string]bool, contextID string) (discovery.Endpoint, func(), error) {
	now := g.opts.Now()
	capacity := max(agent.MaxConcurrency, 1)
	cands := make([]balancer.Candidate, 0, len(agent.Endpoints))
	eps := make([]discovery.Endpoint, 0, len(agent.Endpoints))
	for _, e := range agent.Endpoints {
		if e.URL == "" || tried[e.URL] {
			continue
		}
		lat, _ := g.latency.Value(e.URL, now)
		cands = append(cands, balancer.Candidate{Key: e.URL, InFlight: g.tracker.InFlight(e.URL), Capacity: capacity,
			Site: e.Site, Zone: e.Zone, Ready: e.Ready, Ejected: g.ejector.Ejected(e.URL, now), Latency: lat})
		eps = append(eps, e)
	}
	pol, ok := g.policies.Get(policies.NameFor(agent.State))
	if !ok {
		return discovery.Endpoint{}, nil, fmt.Errorf("no balancing policy for %s agents", agent.State)
	}
	req := balancer.Request{AllowedSites: agent.AllowedSites}
	if agent.State == discovery.AgentStateful {
		req.AffinityKey = contextID
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
		if rel, ok := g.tracker.TryAcquire(cands[i].Key, capacity); ok {
			return eps[i], rel, nil
		}
		cands[i].InFlight = cands[i].Capacity // taken meanwhile by a concurrent pick
	}
	return discovery.Endpoint{}, nil, &balancer.NoReplicaError{Policy: pol.Name, Stage: "capacity", Candidates: len(cands), Err: balancer.ErrSaturated}
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

// slot is a replica slot granted to a task.
type slot struct {
	agent   discovery.Agent
	ep      discovery.Endpoint
	release func()
}

// acquire gets a replica slot for a task. When every eligible replica is at capacity the task
// waits in the agent's admission queue (urgent, then normal, then batch; round robin across
// tenants; FIFO within a tenant) until a slot frees for it, ctx ends or the queue timeout passes.
func (g *Gateway) acquire(ctx context.Context, t taskRef, tried map[string]bool) (slot, error) {
	var s slot
	try := func() (func(), error) {
		agent, ok := discovery.Lookup(g.opts.Source.Snapshot(), t.agent)
		if !ok {
			return nil, fmt.Errorf("agent %q was removed", t.agent)
		}
		ep, rel, err := g.pick(agent, tried, t.contextID)
		if errors.Is(err, balancer.ErrSaturated) {
			return nil, admission.ErrNoSlot
		}
		if err != nil {
			return nil, err
		}
		s.agent, s.ep = agent, ep
		return rel, nil
	}
	start := g.opts.Now()
	release, err := g.queue.Acquire(ctx, admission.Request{Agent: t.agent, Tenant: t.tenant, Priority: t.priority,
		Deadline: start.Add(g.opts.QueueTimeout)}, try)
	if waited := g.opts.Now().Sub(start); err == nil {
		g.opts.Metrics.QueueWait(ctx, t.agent, waited)
	}
	var refused *admission.RefusedError
	switch {
	case errors.As(err, &refused):
		reason := "deadline"
		if errors.Is(err, admission.ErrQueueFull) {
			reason = "queue_full"
		}
		g.opts.Metrics.QueueRefused(t.agent, reason)
		return s, err
	case errors.Is(err, balancer.ErrUnavailable):
		return s, errNoReplica
	case err != nil:
		return s, err
	}
	s.release = release
	return s, nil
}

// taskRef is what admission and balancing need to know of a task.
type taskRef struct {
	agent, tenant, contextID string
	priority                 admission.Priority
}

func refOf(t *store.Task) taskRef {
	p, err := admission.ParsePriority(t.Priority)
	if err != nil {
		p = admission.Normal
	}
	return taskRef{agent: t.Agent, tenant: t.Tenant, contextID: t.ContextID, priority: p}
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

// watch prunes per-replica state of replicas that are gone, whenever the source changes.
func (g *Gateway) watch(ctx context.Context) {
	var restarts map[string]int
	for {
		ch := g.opts.Source.Changed()
		live := map[string]bool{}
		agents := g.opts.Source.Snapshot()
		restarts = g.noteRestarts(restarts, agents)
		for _, a := range agents {
			g.queue.Notify(a.Name) // a replica may have become ready: waiting tasks try again
			for _, e := range a.Endpoints {
				if e.URL != "" {
					live[e.URL] = true
				}
			}
		}
		keep := func(k string) bool { return live[k] }
		g.ejector.Retain(keep)
		g.cards.retain(keep)
		g.latency.Retain(keep)
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-time.After(time.Minute):
		}
	}
}

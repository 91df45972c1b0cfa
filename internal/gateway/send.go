package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/gateway/admission"
	"github.com/agentplane/agentplane/internal/gateway/balancer"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/telemetry"
)

// Metadata keys the gateway adds to events it writes itself.
const (
	MetaRedispatched = "agentplane.io/redispatched"
	MetaAttempt      = "agentplane.io/attempt"
	MetaReplica      = "agentplane.io/replica"
)

// errNoReplica means no replica of the agent was ready to take a task.
var errNoReplica = errors.New("no ready replica")

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// serveSend accepts a new message: it journals a task with a gateway task id, then runs it on a
// replica (blocking or streaming), or queues it when the client asked not to wait.
func (g *Gateway) serveSend(c *call) string {
	d := c.req.Info.Dialect
	mi, err := a2a.ParseMessageInfo(c.req.Params, d)
	if err != nil {
		g.rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeInvalidParams, "%v", err))
		return "invalid"
	}
	if mi.TaskID != "" {
		return g.serveContinue(c, mi)
	}
	streaming := c.req.Info.Kind == a2a.KindStream
	async := !mi.Blocking && !streaming
	// The gateway fixes the contextId before the first dispatch, so that a re-dispatched task
	// keeps its conversation.
	contextID := mi.ContextID
	if contextID == "" {
		contextID = newID()
	}
	var blocking *bool
	if async {
		yes := true
		blocking = &yes // the gateway's own consumer waits for the result
	}
	params, err := a2a.EditSend(c.req.Params, d, contextID, "", blocking)
	if err != nil {
		g.rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeInvalidParams, "%v", err))
		return "invalid"
	}
	body, err := c.req.WithParams(params)
	if err != nil {
		g.rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeInternalError, "%v", err))
		return "internal"
	}
	prio, err := g.priority(c, mi)
	if err != nil {
		g.rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeInvalidParams, "%v", err))
		return "invalid"
	}
	now := g.opts.Now()
	t := &store.Task{Priority: prio.String(),
		ID: newID(), Agent: c.agent.Name, Subject: c.subject.Name, Tenant: c.subject.Tenant,
		ContextID: contextID, MessageID: mi.MessageID,
		Method: c.req.Method, Dialect: string(d), Async: async, Request: body, Trace: telemetry.TraceCarrier(c.r.Context()),
		State: store.StateAccepted, CreatedAt: now, UpdatedAt: now,
	}
	if err := g.journal.Create(c.r.Context(), t); err != nil {
		g.log.Error("task journal write failed; refusing the task", "agent", c.agent.Name, "err", err)
		g.rpcError(c.w, http.StatusServiceUnavailable, c.req.ID, a2a.Errorf(a2a.CodeAgentUnavailable, "the gateway cannot record the task right now; try again"))
		return "journal-error"
	}
	g.recent.note(t)
	c.taskID = t.ID
	telemetry.SetTaskID(c.r.Context(), t.ID)
	g.opts.Metrics.TaskStarted(t.Agent, t.Method)
	g.budget.Request(c.agent.Name, now)

	switch {
	case async:
		if err := g.journal.Enqueue(c.r.Context(), t.ID); err != nil {
			g.log.Error("queueing an async task failed", "task", t.ID, "err", err)
			g.finish(context.WithoutCancel(c.r.Context()), t, store.StateRejected, "the gateway could not queue the task", nil)
			g.rpcError(c.w, http.StatusServiceUnavailable, c.req.ID, a2a.Errorf(a2a.CodeAgentUnavailable, "the gateway cannot queue the task right now; try again"))
			return "journal-error"
		}
		task := a2a.TaskObject(d, t.ID, t.ContextID, a2a.StateSubmitted, "", nil)
		c.w.Header().Set("Content-Type", "application/json")
		_, _ = c.w.Write(a2a.Result(c.req.ID, a2a.SendResult(d, task)))
		return "queued"
	case streaming:
		return g.runStream(c, t)
	default:
		return g.runBlocking(c, t)
	}
}

// runBlocking runs a task to its answer and writes it. The task keeps running if the client
// leaves, so that its result is journaled for GetTask.
func (g *Gateway) runBlocking(c *call, t *store.Task) string {
	ctx, cancel := g.taskContext(c.r.Context())
	defer cancel()
	out, ep, err := g.execute(ctx, t, c.r.Header)
	c.replica = ep.Name
	if err != nil {
		g.rpcErrorFor(c.w, c.req.ID, err)
		return "failed"
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set(HeaderReplica, ep.Name)
	_, _ = c.w.Write(out)
	return "ok"
}

// taskContext is the context tasks run in: not cancelled when the client leaves, but when the
// gateway stops for good.
func (g *Gateway) taskContext(ctx context.Context) (context.Context, context.CancelFunc) {
	tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(g.hardStop, cancel)
	return tctx, func() { stop(); cancel() }
}

// execute sends a journaled task to replicas until one answers, re-dispatching it with the same
// messageId when a replica fails before answering (refused, dropped, hung past the task
// timeout, 502/503/504), within MaxAttempts and the agent's retry budget. It returns the
// answer with the gateway's task id in place of the replica's.
func (g *Gateway) execute(ctx context.Context, t *store.Task, hdr http.Header) ([]byte, discovery.Endpoint, error) {
	tried := map[string]bool{}
	var (
		lastErr      error
		lastErrCause error // the last attempt's own error, unwrapped, for the re-dispatch reason
		last         discovery.Endpoint
		free         bool // the last attempt never reached the agent, so retrying costs it nothing
	)
	for attempt := 0; attempt < g.opts.MaxAttempts; attempt++ {
		if attempt > 0 && !free && !g.budget.Retry(t.Agent, g.opts.Now()) {
			lastErr = fmt.Errorf("retry budget of agent %q exhausted (last error: %w)", t.Agent, lastErr)
			break
		}
		sl, err := g.acquire(ctx, refOf(t), tried)
		if err != nil {
			if refusal := g.refusal(ctx, t, err); refusal != nil {
				return nil, last, refusal
			}
			if lastErr == nil || ctx.Err() != nil {
				lastErr = err
			}
			break
		}
		ep, release := sl.ep, sl.release
		tried[ep.URL] = true
		last = ep
		if err := g.dispatched(ctx, t, ep); err != nil {
			release()
			return nil, ep, err
		}
		if attempt > 0 {
			g.opts.Metrics.Redispatch(t.Agent, dispatchResult(lastErrCause))
		}
		dctx, span := telemetry.StartDispatch(ctx, ep.Name, attempt+1)
		began := g.opts.Now()
		actx, cancel := context.WithTimeout(dctx, g.taskTimeout(sl.agent))
		resp, err := g.send(actx, ep, a2a.Dialect(t.Dialect), t.Request, false, hdr)
		var out []byte
		if err == nil {
			out, err = readBody(resp)
			resp.Body.Close()
		}
		hung := errors.Is(actx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
		cancel()
		release()
		if hung {
			err = errHung
		}
		lastErrCause = err
		took := g.opts.Now().Sub(began)
		g.opts.Metrics.Dispatch(dctx, t.Agent, ep.Name, dispatchResult(err), took)
		telemetry.End(span, err)
		if err == nil {
			g.latency.Observe(ep.URL, took, g.opts.Now())
			g.checkOutlier(sl.agent, ep, g.opts.Now())
		}
		if err == nil {
			g.ejector.Succeeded(ep.URL, g.opts.Now())
			return g.complete(ctx, t, ep, out), ep, nil
		}
		if errors.Is(err, errDialectUnsupported) {
			return nil, ep, g.unsupported(ctx, t)
		}
		if ctx.Err() != nil {
			return nil, ep, ctx.Err()
		}
		if hung {
			err = errHung
		}
		free = neverSent(err)
		g.failed(ep, err)
		lastErr = fmt.Errorf("replica %s: %w", ep.Name, err)
	}
	if ctx.Err() != nil {
		return nil, last, ctx.Err() // the gateway is stopping: the task stays in the journal
	}
	if errors.Is(lastErr, errNoReplica) && t.Async {
		return nil, last, lastErr // stays queued until a replica is ready
	}
	reason := fmt.Sprintf("no replica could run the task after %d attempt(s): %v", len(tried), lastErr)
	g.finish(ctx, t, store.StateFailed, reason, nil)
	return nil, last, a2a.Errorf(a2a.CodeAgentUnavailable, "agent %q: %s", t.Agent, reason)
}

// refusedError is a task the gateway refuses before any replica saw it: its queue is full or
// its wait for a slot passed the deadline (retry later), or no allowed site can serve it.
type refusedError struct {
	status     int
	retryAfter time.Duration
	err        *a2a.Error
}

func (e *refusedError) Error() string { return e.err.Message }

// refusal turns an admission or residency refusal into a rejected task; other errors give nil.
func (g *Gateway) refusal(ctx context.Context, t *store.Task, err error) *refusedError {
	var ref *admission.RefusedError
	switch {
	case errors.As(err, &ref):
		status := http.StatusServiceUnavailable
		if errors.Is(err, admission.ErrQueueFull) {
			status = http.StatusTooManyRequests
		}
		msg := fmt.Sprintf("agent %q is at capacity: %v", t.Agent, ref.Reason)
		g.finish(ctx, t, store.StateRejected, msg, nil)
		return &refusedError{status: status, retryAfter: ref.RetryAfter, err: a2a.Errorf(CodeAtCapacity, "%s; retry after %v", msg, ref.RetryAfter.Round(time.Second))}
	case errors.Is(err, balancer.ErrResidency):
		msg := fmt.Sprintf("agent %q has no ready replica in its allowed sites %v; the task is not sent elsewhere", t.Agent, g.allowedSites(t.Agent))
		g.finish(ctx, t, store.StateRejected, msg, nil)
		return &refusedError{status: http.StatusServiceUnavailable, err: a2a.Errorf(CodeResidency, "%s", msg)}
	}
	return nil
}

func (g *Gateway) allowedSites(agent string) []string {
	a, _ := discovery.Lookup(g.opts.Source.Snapshot(), agent)
	return a.AllowedSites
}

// rpcErrorFor answers a failed task with the right status and code.
func (g *Gateway) rpcErrorFor(w http.ResponseWriter, id json.RawMessage, err error) {
	var ref *refusedError
	if errors.As(err, &ref) {
		if ref.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64(max(time.Second, ref.retryAfter+time.Second-1)/time.Second), 10))
		}
		g.rpcError(w, ref.status, id, ref.err)
		return
	}
	var ae *a2a.Error
	if !errors.As(err, &ae) {
		ae = a2a.Errorf(a2a.CodeAgentUnavailable, "%v", err)
	}
	status := http.StatusOK
	if ae.Code == a2a.CodeAgentUnavailable {
		status = http.StatusServiceUnavailable
	}
	g.rpcError(w, status, id, ae)
}

// JSON-RPC codes of refusals before dispatch.
const (
	CodeAtCapacity = -32055 // every replica busy and the queue full or the wait too long
	CodeResidency  = -32056 // no replica in an allowed site
)

// taskTimeout is how long one dispatch of agent's tasks may take: its spec.taskTimeout, or the
// gateway's default.
func (g *Gateway) taskTimeout(agent discovery.Agent) time.Duration {
	if agent.TaskTimeout > 0 {
		return agent.TaskTimeout
	}
	return g.opts.TaskTimeout
}

// neverSent reports whether err means the request could not have reached the agent: the
// connection was refused, or the replica's card could not be read.
func neverSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, errCard)
}

// MetaPriority is the request metadata key that asks for a priority class: urgent, normal or
// batch. The gateway lowers it to the highest class the caller's policy allows.
const MetaPriority = "agentplane.io/priority"

// priority is the class a send asks for in params.metadata or params.message.metadata, capped
// by what the subject may use.
func (g *Gateway) priority(c *call, mi a2a.MessageInfo) (admission.Priority, error) {
	asked := mi.Metadata[MetaPriority]
	p := admission.Normal
	if asked != "" {
		var err error
		if p, err = admission.ParsePriority(asked); err != nil {
			return p, fmt.Errorf("metadata %q: %w", MetaPriority, err)
		}
	}
	if g.opts.Auth != nil {
		limit, ok := g.opts.Auth.Authorizer.MaxPriority(c.subject, c.agent.Name)
		if lp, err := admission.ParsePriority(string(limit)); ok && err == nil && p > lp {
			p = lp
		}
	}
	return p, nil
}

// unsupported rejects a task whose dialect the agent does not speak.
func (g *Gateway) unsupported(ctx context.Context, t *store.Task) *a2a.Error {
	g.finish(ctx, t, store.StateRejected, "the agent does not speak A2A "+t.Dialect, nil)
	return a2a.Errorf(a2a.CodeUnsupportedOp, "agent %q does not speak A2A %s; use the other dialect's method names", t.Agent, t.Dialect)
}

// complete records a replica's answer to a send and returns it with ids rewritten.
func (g *Gateway) complete(ctx context.Context, t *store.Task, ep discovery.Endpoint, out []byte) []byte {
	var resp a2a.Response
	if err := json.Unmarshal(out, &resp); err != nil {
		g.finish(ctx, t, store.StateFailed, "the agent answered with invalid JSON", nil)
		return a2a.ErrorResponse(requestID(t), a2a.Errorf(a2a.CodeInvalidAgentResponse, "replica %s answered with invalid JSON", ep.Name))
	}
	if resp.Error != nil {
		g.finish(ctx, t, store.StateRejected, "the agent refused the message: "+g.opts.Redact(resp.Error.Message), nil)
		return out
	}
	sum := a2a.Summarize(resp.Result)
	if in, o, ok := a2a.Usage(resp.Result); ok {
		g.chargeTokens(t, in, o)
	}
	out = a2a.ReplaceID(out, sum.TaskID, t.ID)
	var result json.RawMessage
	if sum.IsTask {
		result = a2a.ReplaceID(sum.Task, sum.TaskID, t.ID)
	}
	state := journalState(sum.State)
	if sum.TaskID == "" { // the agent answered with a plain message: the exchange is complete
		state = store.StateCompleted
	}
	g.save(ctx, t, func(t *store.Task) {
		t.UpstreamID = sum.TaskID
		t.State = state
		if result != nil {
			t.Result = result
		}
	})
	return out
}

// requestID is the JSON-RPC id of a journaled task's original request.
func requestID(t *store.Task) json.RawMessage {
	var env struct {
		ID json.RawMessage `json:"id"`
	}
	_ = json.Unmarshal(t.Request, &env)
	return env.ID
}

// runStream runs a streaming task, relaying the replica's events. If the replica fails before
// the task ends, the task is re-dispatched to another replica and the stream continues on the
// same client connection, after a status update that says so.
func (g *Gateway) runStream(c *call, t *store.Task) string {
	ctx, cancelTask := g.taskContext(c.r.Context())
	defer cancelTask()
	sw := newSSEWriter(c.w)
	tried := map[string]bool{}
	var (
		lastErr   error
		lastCause error
		prev      string
		free      bool
	)
	for attempt := 0; attempt < g.opts.MaxAttempts; attempt++ {
		if attempt > 0 && !free && !g.budget.Retry(t.Agent, g.opts.Now()) {
			lastErr = fmt.Errorf("retry budget of agent %q exhausted (last error: %w)", t.Agent, lastErr)
			break
		}
		sl, err := g.acquire(ctx, refOf(t), tried)
		if err != nil {
			if refusal := g.refusal(ctx, t, err); refusal != nil && !sw.started {
				g.rpcErrorFor(c.w, c.req.ID, refusal)
				return "refused"
			}
			if lastErr == nil || ctx.Err() != nil {
				lastErr = err
			}
			break
		}
		ep, release := sl.ep, sl.release
		tried[ep.URL] = true
		if err := g.dispatched(ctx, t, ep); err != nil {
			release()
			return "ended"
		}
		dctx, span := telemetry.StartDispatch(ctx, ep.Name, attempt+1)
		actx, cancel := context.WithTimeout(dctx, g.taskTimeout(sl.agent))
		c.replica = ep.Name
		if attempt > 0 {
			g.opts.Metrics.Redispatch(t.Agent, dispatchResult(lastCause))
		}
		began := g.opts.Now()
		done, err := g.streamAttempt(actx, c, sw, t, ep, attempt, prev, lastErr)
		hung := errors.Is(actx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
		cancel()
		release()
		result := err
		if hung {
			result = errHung
		}
		lastCause = result
		g.opts.Metrics.Dispatch(dctx, t.Agent, ep.Name, dispatchResult(result), g.opts.Now().Sub(began))
		telemetry.End(span, result)
		if done {
			g.ejector.Succeeded(ep.URL, g.opts.Now())
			return "ok"
		}
		if errors.Is(err, errDialectUnsupported) && !sw.started {
			g.rpcError(c.w, http.StatusOK, c.req.ID, g.unsupported(ctx, t))
			return "unsupported"
		}
		if errors.Is(err, errClientGone) {
			return "client-gone"
		}
		if ctx.Err() != nil {
			return "gateway-stopped"
		}
		if hung {
			err = errHung
		}
		free = neverSent(err) && !sw.started
		g.failed(ep, err)
		lastErr = fmt.Errorf("replica %s: %w", ep.Name, err)
		prev = ep.Name
	}
	reason := fmt.Sprintf("no replica could run the task after %d attempt(s): %v", len(tried), lastErr)
	g.finish(ctx, t, store.StateFailed, reason, nil)
	e := a2a.Errorf(a2a.CodeAgentUnavailable, "agent %q: %s", t.Agent, reason)
	if sw.started {
		_ = sw.event(a2a.ErrorResponse(c.req.ID, e))
	} else {
		g.rpcError(c.w, http.StatusServiceUnavailable, c.req.ID, e)
	}
	return "unavailable"
}

// streamAttempt runs one dispatch of a streaming task. done reports that the task reached the
// end of its stream (a terminal or interrupted state, or an error the agent sent).
func (g *Gateway) streamAttempt(ctx context.Context, c *call, sw *sseWriter, t *store.Task, ep discovery.Endpoint, attempt int, prev string, prevErr error) (done bool, err error) {
	d := a2a.Dialect(t.Dialect)
	resp, err := g.send(ctx, ep, d, t.Request, true, c.r.Header)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		// A JSON answer to a streaming call: an error, or an agent that does not stream.
		out, err := readBody(resp)
		if err != nil {
			return false, err
		}
		out = g.complete(ctx, t, ep, out)
		if sw.started {
			return true, sw.event(out)
		}
		writeResponse(c.w, resp, ep, out)
		return true, nil
	}
	if err := sw.start(ep.Name); err != nil {
		return false, err
	}
	if attempt > 0 && sw.events > 0 {
		msg := fmt.Sprintf("re-dispatched to replica %s after replica %s failed", ep.Name, prev)
		if prevErr != nil {
			msg += ": " + prevErr.Error()
		}
		ev := a2a.StatusEvent(d, c.req.ID, t.ID, t.ContextID, a2a.StateWorking, msg,
			map[string]any{MetaRedispatched: true, MetaAttempt: attempt + 1, MetaReplica: ep.Name})
		if err := sw.event(ev); err != nil {
			return false, err
		}
	}
	rd := newSSEReader(resp.Body, g.opts.MaxSSELineBytes)
	var final a2a.State
	for {
		ev, err := rd.next()
		if err != nil {
			if final != a2a.StateUnknown {
				g.finishStream(ctx, t, ep, final)
				return true, nil
			}
			if err == io.EOF {
				err = errStreamCut
			}
			return false, err
		}
		if ev.comment && len(ev.data) == 0 {
			if err := sw.comment(); err != nil {
				return false, err
			}
			continue
		}
		var r a2a.Response
		if json.Unmarshal(ev.data, &r) != nil {
			continue // not JSON-RPC: nothing a client could use
		}
		if r.Error != nil {
			g.finish(ctx, t, store.StateFailed, "the agent sent an error: "+g.opts.Redact(r.Error.Message), nil)
			return true, sw.event(ev.data)
		}
		sum := a2a.Summarize(r.Result)
		if sum.TaskID != "" && sum.TaskID != t.UpstreamID {
			g.save(ctx, t, func(t *store.Task) { t.UpstreamID = sum.TaskID })
		}
		if err := sw.event(a2a.ReplaceID(ev.data, t.UpstreamID, t.ID)); err != nil {
			return false, err
		}
		if sum.State.Terminal() || sum.Final || sum.State == a2a.StateInputRequired || sum.State == a2a.StateAuthRequired {
			final = sum.State
			if in, o, ok := a2a.Usage(r.Result); ok {
				g.chargeTokens(t, in, o)
			}
		}
	}
}

// finishStream records the end of a streamed task, with the full task read back from the
// replica (best effort) so that GetTask can answer after the replica is gone.
func (g *Gateway) finishStream(ctx context.Context, t *store.Task, ep discovery.Endpoint, st a2a.State) {
	var result json.RawMessage
	if t.UpstreamID != "" {
		if task, err := g.fetchTask(ctx, ep, t); err == nil {
			result = task
		}
	}
	g.finish(ctx, t, journalState(st), "", result)
}

// fetchTask reads a task from the replica that holds it, with the gateway's id in place of the
// replica's.
func (g *Gateway) fetchTask(ctx context.Context, ep discovery.Endpoint, t *store.Task) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, cardTimeout)
	defer cancel()
	method := "GetTask"
	if a2a.Dialect(t.Dialect) == a2a.V03 {
		method = "tasks/get"
	}
	body, _ := json.Marshal(map[string]any{"jsonrpc": a2a.Version, "id": 1, "method": method, "params": map[string]string{"id": t.UpstreamID}})
	resp, err := g.send(ctx, ep, a2a.Dialect(t.Dialect), body, false, http.Header{})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := readBody(resp)
	if err != nil {
		return nil, err
	}
	var r a2a.Response
	if err := json.Unmarshal(out, &r); err != nil || r.Error != nil || len(r.Result) == 0 {
		return nil, fmt.Errorf("GetTask on replica %s failed", ep.Name)
	}
	return a2a.ReplaceID(r.Result, t.UpstreamID, t.ID), nil
}

var errStreamCut = errors.New("the replica's event stream ended before the task did")

// journalState maps a wire state to the journal's.
func journalState(s a2a.State) store.TaskState {
	switch s {
	case a2a.StateCompleted:
		return store.StateCompleted
	case a2a.StateFailed:
		return store.StateFailed
	case a2a.StateCanceled:
		return store.StateCanceled
	case a2a.StateRejected:
		return store.StateRejected
	case a2a.StateInputRequired, a2a.StateAuthRequired:
		return store.StateInputReq
	}
	return store.StateDispatched
}

// wireState maps the journal's state to the wire's.
func wireState(s store.TaskState) a2a.State {
	switch s {
	case store.StateAccepted:
		return a2a.StateSubmitted
	case store.StateDispatched:
		return a2a.StateWorking
	case store.StateInputReq:
		return a2a.StateInputRequired
	}
	return a2a.State(s)
}

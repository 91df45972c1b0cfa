package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"time"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/fleet"
	"github.com/agentplane/agentplane/internal/gateway/admission"
	"github.com/agentplane/agentplane/internal/gateway/balancer"
	"github.com/agentplane/agentplane/internal/gateway/retry"
	"github.com/agentplane/agentplane/internal/gateway/upstream"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/tasks"
	"github.com/agentplane/agentplane/internal/telemetry"
)

// Metadata keys the gateway adds to events it writes itself.
const (
	MetaRedispatched = "agentplane.io/redispatched"
	MetaAttempt      = "agentplane.io/attempt"
	MetaReplica      = "agentplane.io/replica"
)

// dispatcher owns every task from its acceptance to its end. It runs one attempt loop for all
// of them — retry budget → admission slot → pick → send → classify → journal → retry or end —
// and hands what the agent says to the task's sink: blocking, streaming and queued tasks differ
// only in how the answer reaches the client. A task keeps running when its client leaves, and
// its end is always journaled.
type dispatcher struct {
	pool    *pool
	journal *journal
	client  *upstream.Client
	budget  *retry.Budget
	metrics *telemetry.Metrics
	log     *slog.Logger
	now     func() time.Time
	redact  func(string) string
	// charge charges the tokens an agent reported for a task to its subject.
	charge func(t *store.Task, in, out int64)

	maxAttempts  int
	taskTimeout  time.Duration // one dispatch, unless the agent sets its own
	queueTimeout time.Duration
	maxSSELine   int
	maxJSONDepth int
	asyncWorkers int
	// hardStop ends every task still running when the gateway's drain deadline passes.
	hardStop context.Context
	// signer signs the tokens of tasks forwarded to peer gateways; nil forwards none. site is
	// this gateway's.
	signer *fleet.Signer
	site   string
	fleet  *fleet.Fleet // nil outside a fleet
}

// taskContext is the context a task runs in: not canceled when its client leaves, only when the
// gateway stops for good.
func (d *dispatcher) taskContext(ctx context.Context) (context.Context, context.CancelFunc) {
	tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(d.hardStop, cancel)
	return tctx, func() { stop(); cancel() }
}

// run sends a journaled task to replicas until one answers, re-dispatching it with the same
// messageId when a replica fails in a way another may not (see upstream.Retryable), within
// maxAttempts and the agent's retry budget. Attempts that never reached a replica cost no
// budget.
func (d *dispatcher) run(ctx context.Context, t *store.Task, sk sink, hdr http.Header) outcome {
	tried := map[string]bool{}
	var lastErr error
	free := false
	n := 0 // attempts made
	for ; n < d.maxAttempts; n++ {
		if n > 0 && !free && !d.budget.Retry(t.Agent, d.now()) {
			lastErr = fmt.Errorf("retry budget of agent %q exhausted (last error: %w)", t.Agent, lastErr)
			break
		}
		sl, err := d.pool.acquire(ctx, refOf(t), tried)
		if err != nil {
			return d.notAdmitted(ctx, t, sk, err, lastErr, n)
		}
		tried[sl.ep.URL] = true
		change := tasks.Dispatch(tasks.Dispatcher, tasks.Replica{Name: sl.ep.Name, URL: sl.ep.URL, Restarts: sl.ep.Restarts})
		err = d.attempt(ctx, t, sl, change, sk, hdr, t.Request, n, lastErr)
		switch {
		case err == nil:
			return outcomeOK
		case ctx.Err() != nil:
			return outcomeStopped // the gateway is stopping: the task stays in the journal
		case !upstream.Retryable(err):
			return d.giveUp(ctx, t, sk, sl.ep, err)
		}
		d.pool.failed(sl.ep, err)
		free = upstream.NeverSent(err) && sk.events() == 0
		lastErr = fmt.Errorf("replica %s: %w", sl.ep.Name, err)
	}
	reason := fmt.Sprintf("no replica could run the task after %d attempt(s): %v", n, lastErr)
	return d.fail(ctx, t, sk, tasks.Exhausted, reason)
}

// attempt runs one dispatch of t on the slot's replica: it journals change (a dispatch, or a
// continuation), sends body, and relays the answer to sk. It returns nil when the agent
// answered (whatever it said), or why it did not, typed by package upstream.
func (d *dispatcher) attempt(ctx context.Context, t *store.Task, sl slot, change tasks.Change, sk sink, hdr http.Header, body []byte, n int, prevErr error) error {
	defer sl.release()
	if err := d.journal.apply(ctx, t, change); err != nil {
		return err
	}
	if n > 0 {
		d.metrics.Redispatch(t.Agent, string(upstream.ResultOf(prevErr)))
	}
	dctx, span := telemetry.StartDispatch(ctx, sl.ep.Name, n+1)
	actx, cancel := context.WithTimeout(dctx, d.timeout(sl.agent))
	began := d.now()
	err := d.exchange(actx, t, sl.ep, sk, hdr, body, n, prevErr)
	if err != nil && errors.Is(actx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		err = upstream.ErrHung
	}
	cancel()
	took := d.now().Sub(began)
	d.metrics.Dispatch(dctx, t.Agent, sl.ep.Name, string(upstream.ResultOf(err)), took)
	telemetry.End(span, err)
	if err == nil {
		d.pool.succeeded(sl.agent, sl.ep, took)
	}
	return err
}

// timeout is how long one dispatch of agent's tasks may take: its spec.taskTimeout, or the
// gateway's default.
func (d *dispatcher) timeout(agent discovery.Agent) time.Duration {
	if agent.TaskTimeout > 0 {
		return agent.TaskTimeout
	}
	return d.taskTimeout
}

// exchange sends body to ep and relays the answer, a JSON-RPC answer or an event stream.
func (d *dispatcher) exchange(ctx context.Context, t *store.Task, ep discovery.Endpoint, sk sink, hdr http.Header, body []byte, n int, prevErr error) error {
	resp, err := d.send(ctx, t, ep, a2a.Dialect(t.Dialect), body, sk.streaming(), hdr)
	if err != nil {
		return err
	}
	if !isEventStream(resp) {
		out, err := upstream.ReadAnswer(resp)
		if err != nil {
			return err
		}
		d.answer(ctx, t, ep, resp, out, sk)
		return nil
	}
	defer resp.Body.Close()
	if n > 0 && sk.events() > 0 {
		msg := fmt.Sprintf("re-dispatched to replica %s after the previous replica failed", ep.Name)
		if prevErr != nil {
			msg = fmt.Sprintf("re-dispatched to replica %s after %v", ep.Name, prevErr)
		}
		sk.event(ep, a2a.StatusEvent(a2a.Dialect(t.Dialect), requestID(t), t.ID, t.ContextID, a2a.StateWorking, msg,
			map[string]any{MetaRedispatched: true, MetaAttempt: n + 1, MetaReplica: ep.Name}))
	}
	return d.relay(ctx, t, ep, resp.Body, sk)
}

func isEventStream(resp *http.Response) bool {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return mt == "text/event-stream"
}

// answer journals a replica's complete answer and relays it with the gateway's task id.
func (d *dispatcher) answer(ctx context.Context, t *store.Task, ep discovery.Endpoint, resp *http.Response, out []byte, sk sink) {
	var r a2a.Response
	if err := json.Unmarshal(out, &r); err != nil {
		if resp.StatusCode >= 400 && resp.StatusCode < 500 {
			// The agent refused the request outright (413 for a body larger than it takes, say).
			msg := fmt.Sprintf("replica %s refused the request: HTTP %d %s", ep.Name, resp.StatusCode, http.StatusText(resp.StatusCode))
			d.journal.end(ctx, t, tasks.AgentError, msg)
			sk.fail(a2a.Errorf(a2a.CodeInvalidAgentResponse, "%s", msg))
			return
		}
		d.journal.end(ctx, t, tasks.InvalidAnswer, "the agent answered with invalid JSON")
		sk.fail(a2a.Errorf(a2a.CodeInvalidAgentResponse, "replica %s answered with invalid JSON", ep.Name))
		return
	}
	if r.Error != nil {
		d.journal.end(ctx, t, tasks.AgentError, "the agent refused the message: "+d.redact(r.Error.Message))
		sk.answer(ep, resp.Header, resp.StatusCode, a2a.ReplaceID(out, t.UpstreamID, t.ID))
		return
	}
	sum, used := a2a.SummarizeWithUsage(r.Result)
	if used.OK {
		d.charge(t, used.In, used.Out)
	}
	var result json.RawMessage
	if sum.IsTask {
		result = a2a.ReplaceID(sum.Task, sum.TaskID, t.ID)
	}
	d.journal.settle(ctx, t, tasks.Answer(sum.TaskID, sum.State, result))
	sk.answer(ep, resp.Header, resp.StatusCode, a2a.ReplaceID(out, sum.TaskID, t.ID))
}

// relay passes a replica's event stream to sk, journaling the agent's id for the task as soon
// as it is known (a client may re-subscribe) and the task's state when the stream ends.
func (d *dispatcher) relay(ctx context.Context, t *store.Task, ep discovery.Endpoint, body io.Reader, sk sink) error {
	rd := newSSEReader(body, d.maxSSELine)
	var final a2a.State
	for {
		ev, err := rd.next()
		if err != nil {
			return d.streamEnded(ctx, t, ep, final, err)
		}
		if ev.comment && len(ev.data) == 0 {
			sk.comment()
			continue
		}
		var r a2a.Response
		if json.Unmarshal(ev.data, &r) != nil {
			continue // not JSON-RPC: nothing a client could use
		}
		if r.Error != nil {
			d.journal.end(ctx, t, tasks.AgentError, "the agent sent an error: "+d.redact(r.Error.Message))
			sk.event(ep, a2a.ReplaceID(ev.data, t.UpstreamID, t.ID))
			return nil
		}
		sum := a2a.Summarize(r.Result)
		if sum.TaskID != "" && sum.TaskID != t.UpstreamID {
			d.journal.settle(ctx, t, tasks.Answer(sum.TaskID, a2a.StateWorking, nil))
		}
		sk.event(ep, a2a.ReplaceID(ev.data, sum.TaskID, t.ID))
		if sum.State.Terminal() || sum.Final || sum.State == a2a.StateInputRequired || sum.State == a2a.StateAuthRequired {
			final = sum.State
			if in, o, ok := a2a.Usage(r.Result); ok {
				d.charge(t, in, o)
			}
		}
	}
}

// streamEnded decides what the end of a replica's stream means: the task's end when the agent
// sent its final event, otherwise a broken answer that another replica may complete.
func (d *dispatcher) streamEnded(ctx context.Context, t *store.Task, ep discovery.Endpoint, final a2a.State, err error) error {
	switch {
	case final != a2a.StateUnknown:
		var result json.RawMessage
		if t.UpstreamID != "" {
			result, _ = d.fetchTask(ctx, ep, t) // best effort: GetTask answers from it after the replica is gone
		}
		d.journal.settle(ctx, t, tasks.Answer(t.UpstreamID, final, result))
		return nil
	case errors.Is(err, io.EOF):
		return &upstream.ResponseError{Err: upstream.ErrStreamCut}
	case errors.Is(err, errLineTooLong), ctx.Err() != nil:
		return err
	}
	return &upstream.ResponseError{Err: err}
}

// fetchTask reads a task from the replica that holds it, with the gateway's id in place of the
// replica's.
func (d *dispatcher) fetchTask(ctx context.Context, ep discovery.Endpoint, t *store.Task) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, upstream.CardTimeout)
	defer cancel()
	method := "GetTask"
	if a2a.Dialect(t.Dialect) == a2a.V03 {
		method = "tasks/get"
	}
	body, _ := json.Marshal(map[string]any{"jsonrpc": a2a.Version, "id": 1, "method": method, "params": map[string]string{"id": t.UpstreamID}})
	resp, err := d.send(ctx, t, ep, a2a.Dialect(t.Dialect), body, false, http.Header{})
	if err != nil {
		return nil, err
	}
	out, err := upstream.ReadAnswer(resp)
	if err != nil {
		return nil, err
	}
	var r a2a.Response
	if err := json.Unmarshal(out, &r); err != nil || r.Error != nil || len(r.Result) == 0 {
		return nil, fmt.Errorf("GetTask on replica %s failed", ep.Name)
	}
	return a2a.ReplaceID(r.Result, t.UpstreamID, t.ID), nil
}

// notAdmitted ends or leaves a task that got no replica slot: refused (queue full, deadline,
// residency), the gateway stopping, a queued task waiting for a replica, or no replica at all.
func (d *dispatcher) notAdmitted(ctx context.Context, t *store.Task, sk sink, err, lastErr error, attempts int) outcome {
	var ref *admission.RefusedError
	switch {
	case ctx.Err() != nil:
		return outcomeStopped
	case errors.As(err, &ref):
		status := http.StatusServiceUnavailable
		if errors.Is(err, admission.ErrQueueFull) {
			status = http.StatusTooManyRequests
		}
		msg := fmt.Sprintf("agent %q is at capacity: %v", t.Agent, ref.Reason)
		d.journal.end(ctx, t, tasks.AtCapacity, msg)
		sk.fail(&refusedError{status: status, retryAfter: ref.RetryAfter,
			err: a2a.Errorf(CodeAtCapacity, "%s; retry after %v", msg, ref.RetryAfter.Round(time.Second))})
		return outcomeRefused
	case errors.Is(err, balancer.ErrResidency):
		a, _ := discovery.Lookup(d.pool.source.Snapshot(), t.Agent)
		msg := fmt.Sprintf("agent %q has no ready replica in its allowed sites %v; the task is not sent elsewhere", t.Agent, a.AllowedSites)
		d.journal.end(ctx, t, tasks.Residency, msg)
		sk.fail(&refusedError{status: http.StatusServiceUnavailable, err: a2a.Errorf(CodeResidency, "%s", msg)})
		return outcomeRefused
	case errors.Is(err, errAgentRemoved):
		return d.fail(ctx, t, sk, tasks.AgentRemoved, fmt.Sprintf("agent %q was removed", t.Agent))
	case t.Async && lastErr == nil && errors.Is(err, errNoReplica):
		return outcomeRequeue // stays queued until a replica is ready
	}
	if lastErr == nil || ctx.Err() != nil {
		lastErr = err
	}
	return d.fail(ctx, t, sk, tasks.Exhausted, fmt.Sprintf("no replica could run the task after %d attempt(s): %v", attempts, lastErr))
}

// giveUp ends a task whose attempt failed in a way no other replica can mend.
func (d *dispatcher) giveUp(ctx context.Context, t *store.Task, sk sink, ep discovery.Endpoint, err error) outcome {
	switch {
	case errors.Is(err, tasks.ErrEnded):
		// Ended meanwhile, by its client or another gateway: the journal has its end.
		sk.answer(discovery.Endpoint{}, nil, http.StatusOK, a2a.Result(requestID(t), a2a.SendResult(a2a.Dialect(t.Dialect), taskView(t))))
		return outcomeJournal
	case errors.Is(err, errJournal):
		sk.fail(errJournalRefusal)
		return outcomeJournalError
	case errors.Is(err, upstream.ErrDialectUnsupported):
		d.journal.end(ctx, t, tasks.Unsupported, "the agent does not speak A2A "+t.Dialect)
		sk.fail(a2a.Errorf(a2a.CodeUnsupportedOp, "agent %q does not speak A2A %s; use the other dialect's method names", t.Agent, t.Dialect))
		return outcomeUnsupported
	}
	d.journal.end(ctx, t, tasks.InvalidAnswer, fmt.Sprintf("replica %s: %v", ep.Name, err))
	sk.fail(a2a.Errorf(a2a.CodeInvalidAgentResponse, "replica %s: %v", ep.Name, err))
	return outcomeFailed
}

// errJournalRefusal is what a client hears when its task cannot be journaled.
var errJournalRefusal = &refusedError{status: http.StatusServiceUnavailable, retryAfter: time.Second,
	err: a2a.Errorf(a2a.CodeInternalError, "the gateway cannot record the task right now; try again")}

// fail ends t with e and tells its client.
func (d *dispatcher) fail(ctx context.Context, t *store.Task, sk sink, e tasks.Ending, reason string) outcome {
	d.journal.end(ctx, t, e, reason)
	sk.fail(a2a.Errorf(a2a.CodeAgentUnavailable, "agent %q: %s", t.Agent, reason))
	return outcomeFailed
}

// requestID is the JSON-RPC id of a journaled task's original request.
func requestID(t *store.Task) json.RawMessage {
	var env struct {
		ID json.RawMessage `json:"id"`
	}
	_ = json.Unmarshal(t.Request, &env)
	return env.ID
}

// taskView is the task as the journal knows it, in the task's dialect: its last known object
// from the agent when it has ended, or a minimal one with the state and reason.
func taskView(t *store.Task) json.RawMessage {
	if len(t.Result) > 0 && t.State.Terminal() {
		return t.Result
	}
	return a2a.TaskObject(a2a.Dialect(t.Dialect), t.ID, t.ContextID, tasks.WireState(t.State), t.Reason,
		map[string]any{MetaReplica: t.Replica, MetaAttempt: t.Attempts})
}

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

	"github.com/google/uuid"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/fleet"
	"github.com/agentplane/agentplane/internal/gateway/admission"
	"github.com/agentplane/agentplane/internal/gateway/upstream"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/tasks"
	"github.com/agentplane/agentplane/internal/telemetry"
)

// HeaderReplica names the replica that answered, for operators and tests.
const HeaderReplica = "X-Agentplane-Replica"

// MetaPriority is the request metadata key that asks for a priority class: urgent, normal or
// batch. The gateway lowers it to the highest class the caller's policy allows.
const MetaPriority = "agentplane.io/priority"

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// call is one A2A exchange as a JSON-RPC request, whatever binding it came in, and what the
// gateway learns about it for the audit record.
type call struct {
	w       http.ResponseWriter // takes JSON-RPC answers; the binding shapes what the client gets
	status  *statusRecorder     // what the client got, for the audit record
	binding binding
	r       *http.Request
	subject *auth.Subject
	agent   discovery.Agent
	req     *a2a.Request
	taskID  string // the gateway task id the call created or named
	replica string // the replica that last served it
	origin  string // the peer gateway that forwarded the call, if one did
}

// A binding is one way A2A calls arrive over HTTP. Whatever the binding, a call is read into one
// JSON-RPC request and goes down the same path, which answers in JSON-RPC; the binding's writer
// turns that answer into the binding's own.
type binding interface {
	// route names the binding in audit records.
	route() string
	// read reads and parses an authenticated call's request, answering itself (and returning
	// how the call ended) when it stops there.
	read(g *Gateway, c *call) (*a2a.Request, outcome)
	// writer wraps the client's writer; done completes the answer once the call has ended.
	writer(w http.ResponseWriter) (bw http.ResponseWriter, done func())
}

// serveRPC is the A2A JSON-RPC front door.
func (g *Gateway) serveRPC(w http.ResponseWriter, r *http.Request) { g.serveCall(w, r, jsonRPC{}) }

// serveCall serves one A2A call of binding b: authenticate → limits → parse → authorize → rate
// limit → the method's handler; every call, refused or not, leaves an audit record before the
// response completes.
func (g *Gateway) serveCall(w http.ResponseWriter, r *http.Request, b binding) {
	start := g.opts.Now()
	ctx, span := telemetry.StartTask(r.Context(), r.PathValue("name"), "", "")
	rec := &statusRecorder{ResponseWriter: w}
	bw, done := b.writer(rec)
	c := &call{w: bw, status: rec, binding: b, r: r.WithContext(ctx), subject: anonymous}
	o := g.readCall(c, span.SetName)
	if o == "" {
		o = g.route(c)
	}
	done()
	var failure error
	if !o.succeeded() {
		failure = errors.New(string(o))
	}
	telemetry.End(span, failure)
	g.record(c, o, g.opts.Now().Sub(start))
}

// readCall authenticates, reads, parses and authorizes a call, answering itself (and returning
// how the call ended) when it stops there.
func (g *Gateway) readCall(c *call, name func(string)) outcome {
	w, r := c.w, c.r
	var s *auth.Subject
	if r.Header.Get(fleet.Header) != "" {
		fs, claims, ok := g.fleetCaller(w, r)
		if !ok {
			return outcomeUnauthenticated
		}
		s, c.origin = fs, claims.Origin
	} else {
		as, ok := g.authenticate(w, r)
		if !ok {
			return outcomeUnauthenticated
		}
		s = as
	}
	c.subject = s
	req, o := c.binding.read(g, c)
	if o != "" {
		return o
	}
	c.req = req
	agent := r.PathValue("name")
	name(req.Method + " " + agent)
	// Authorization comes before the agent is looked up, so that a caller cannot probe which
	// agents exist.
	if refusal, ok := g.authorize(w, req.ID, s, agent); !ok {
		return refusal
	}
	a, ok := discovery.Lookup(g.opts.Source.Snapshot(), agent)
	if !ok {
		rpcError(w, http.StatusNotFound, req.ID, a2a.Errorf(a2a.CodeAgentNotFound, "no agent %q behind this gateway; GET /agents lists them", agent))
		return outcomeAgentNotFound
	}
	c.agent = a
	return ""
}

// jsonRPC is the JSON-RPC binding: the body is the request, the answer is the response.
type jsonRPC struct{}

func (jsonRPC) route() string { return "a2a" }

func (jsonRPC) writer(w http.ResponseWriter) (http.ResponseWriter, func()) { return w, func() {} }

func (jsonRPC) read(g *Gateway, c *call) (*a2a.Request, outcome) {
	if o := requireJSON(c.w, c.r); o != "" {
		return nil, o
	}
	body, o := g.readBody(c)
	if o != "" {
		return nil, o
	}
	req, perr := a2a.ParseRequestLimit(body, g.opts.MaxJSONDepth)
	if perr != nil {
		rpcError(c.w, http.StatusOK, a2a.ErrorID(body), perr)
		return nil, outcomeBadRequest
	}
	return req, ""
}

// requireJSON refuses a request without exactly one Content-Type, application/json: a missing
// one is how a web page posts cross-origin without a preflight (fetch of a Blob), so it is
// refused like any other.
func requireJSON(w http.ResponseWriter, r *http.Request) outcome {
	if cts := r.Header.Values("Content-Type"); len(cts) != 1 {
		rpcError(w, http.StatusUnsupportedMediaType, nil, a2a.Errorf(a2a.CodeInvalidRequest, "exactly one Content-Type: application/json header is required, got %d", len(cts)))
		return outcomeBadRequest
	} else if mt, _, err := mime.ParseMediaType(cts[0]); err != nil || mt != "application/json" {
		rpcError(w, http.StatusUnsupportedMediaType, nil, a2a.Errorf(a2a.CodeInvalidRequest, "Content-Type must be application/json, not %q", cts[0]))
		return outcomeBadRequest
	}
	return ""
}

// readBody reads the request body up to the gateway's limit.
func (g *Gateway) readBody(c *call) ([]byte, outcome) {
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, g.opts.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			rpcError(c.w, http.StatusRequestEntityTooLarge, nil, a2a.Errorf(a2a.CodeRequestTooLarge, "request body is larger than the gateway's limit of %d bytes", g.opts.MaxBodyBytes))
			return nil, outcomeTooLarge
		}
		rpcError(c.w, http.StatusBadRequest, nil, a2a.Errorf(a2a.CodeInvalidRequest, "reading the request body failed: %v", err))
		return nil, outcomeBadRequest
	}
	return body, ""
}

// route hands a parsed, authorized call to its method's handler.
func (g *Gateway) route(c *call) outcome {
	switch {
	case c.req.Info.NewTask():
		return g.serveSend(c)
	case c.req.Info.TaskScoped():
		return g.serveTaskOp(c)
	case c.req.Info.Kind == a2a.KindList:
		return g.serveList(c)
	case c.req.Info.PushConfig():
		return g.servePushConfig(c)
	}
	return g.serveOther(c)
}

// record writes the audit record, the metrics and the debug log line of a call.
func (g *Gateway) record(c *call, o outcome, took time.Duration) {
	status := c.status.status
	method := ""
	if c.req != nil {
		method = c.req.Method
	}
	if c.agent.Name != "" { // only agents that exist become label values
		g.opts.Metrics.Request(c.r.Context(), c.agent.Name, method, string(o), took)
	}
	// Only what the gateway knows goes into the audit as is: the name of an agent that exists,
	// the id of a task it found. Anything else the caller wrote there is redacted.
	agent := c.agent.Name
	if agent == "" {
		agent = g.opts.Redact(c.r.PathValue("name"))
	}
	rec := audit.Record{Subject: c.subject.Name, Tenant: c.subject.Tenant, Agent: agent, TaskID: c.taskID, Route: c.binding.route(),
		Method: method, Outcome: string(o), HTTPStatus: status, LatencyMs: took.Milliseconds(), Replica: c.replica, Via: c.origin}
	for _, ep := range c.agent.Endpoints {
		if ep.Name == c.replica {
			rec.Site = ep.Site
		}
	}
	g.audit(c.r, rec)
	g.log.LogAttrs(c.r.Context(), slog.LevelDebug, "request",
		slog.String("agent", rec.Agent), slog.String("method", method), slog.String("subject", rec.Subject),
		slog.String("outcome", string(o)), slog.Int("status", status), slog.Duration("duration", took))
}

// serveSend accepts a new message: it journals a task with a gateway task id, then runs it on a
// replica (blocking or streaming), or queues it when the client asked not to wait.
func (g *Gateway) serveSend(c *call) outcome {
	push, ok := g.takeSendPush(c)
	if !ok {
		return outcomeInvalid
	}
	mi, err := a2a.ParseMessageInfo(c.req.Params, c.req.Info.Dialect)
	if err != nil {
		rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeInvalidParams, "%v", err))
		return outcomeInvalid
	}
	if mi.TaskID != "" {
		t, ok := g.lookupTask(c, mi.TaskID)
		if !ok {
			return outcomeTaskNotFound
		}
		if push != nil {
			if o, ok := g.addPush(c, t, *push); !ok {
				return o
			}
		}
		return g.serveTask(c, t, func(ctx context.Context, sk sink) outcome { return g.tasks.continueTask(ctx, t, c.req, sk, c.r.Header) })
	}
	if refusal := g.residencyRefusal(c.agent); refusal != nil {
		rpcErrorFor(c.w, c.req.ID, refusal)
		return outcomeRefused
	}
	t, err := g.newTask(c, mi)
	if err != nil {
		rpcErrorFor(c.w, c.req.ID, err)
		return outcomeInvalid
	}
	if push != nil {
		t.Push = []store.PushConfig{*push}
	}
	if err := g.tasks.journal.create(c.r.Context(), t); err != nil {
		var tooBig *store.TooLargeError
		if errors.As(err, &tooBig) {
			rpcError(c.w, http.StatusRequestEntityTooLarge, c.req.ID, a2a.Errorf(a2a.CodeRequestTooLarge,
				"the task's %s is %d bytes; the task journal keeps at most %d, and the gateway runs no task it cannot journal", tooBig.Field, tooBig.Size, tooBig.Limit))
			return outcomeTooLarge
		}
		g.log.Error("task journal write failed; refusing the task", "agent", c.agent.Name, "err", err)
		rpcErrorFor(c.w, c.req.ID, errJournalRefusal)
		return outcomeJournalError
	}
	c.taskID = t.ID
	telemetry.SetTaskID(c.r.Context(), t.ID)
	g.tasks.budget.Request(c.agent.Name, t.CreatedAt)
	if t.Async {
		if err := g.tasks.journal.store.Enqueue(c.r.Context(), t.ID); err != nil {
			g.log.Error("queueing an async task failed", "task", t.ID, "err", err)
			g.tasks.journal.end(c.r.Context(), t, tasks.Exhausted, "the gateway could not queue the task")
			rpcErrorFor(c.w, c.req.ID, errJournalRefusal)
			return outcomeJournalError
		}
		task := a2a.TaskObject(a2a.Dialect(t.Dialect), t.ID, t.ContextID, a2a.StateSubmitted, "", nil)
		writeAnswer(c.w, nil, http.StatusOK, discovery.Endpoint{}, a2a.Result(c.req.ID, a2a.SendResult(a2a.Dialect(t.Dialect), task)))
		return outcomeQueued
	}
	return g.serveTask(c, t, func(ctx context.Context, sk sink) outcome { return g.tasks.run(ctx, t, sk, c.r.Header) })
}

// serveTask runs a task handler in the task's own context (it outlives the client) with the
// sink the call's method asks for.
func (g *Gateway) serveTask(c *call, t *store.Task, run func(context.Context, sink) outcome) outcome {
	ctx, cancel := g.tasks.taskContext(c.r.Context())
	defer cancel()
	var sk sink = &blockingSink{w: c.w, id: c.req.ID, replica: &c.replica}
	if c.req.Info.Kind == a2a.KindStream {
		sk = newStreamSink(c.w, c.req.ID, &c.replica)
	}
	c.replica = t.Replica
	return run(ctx, sk)
}

// newTask builds the journal record of a new message: the gateway fixes its contextId before
// the first dispatch (so that a re-dispatched task keeps its conversation), and a queued task is
// sent as a blocking request, since the gateway's own consumer waits for its result.
func (g *Gateway) newTask(c *call, mi a2a.MessageInfo) (*store.Task, error) {
	d := c.req.Info.Dialect
	streaming := c.req.Info.Kind == a2a.KindStream
	async := !mi.Blocking && !streaming
	contextID := mi.ContextID
	if contextID == "" {
		contextID = newID()
	}
	var blocking *bool
	if async {
		yes := true
		blocking = &yes
	}
	params, err := a2a.EditSend(c.req.Params, d, contextID, "", blocking)
	if err != nil {
		return nil, a2a.Errorf(a2a.CodeInvalidParams, "%v", err)
	}
	body, err := c.req.WithParams(params)
	if err != nil {
		return nil, a2a.Errorf(a2a.CodeInternalError, "%v", err)
	}
	prio, err := priorityOf(g.opts.Auth, c.subject, c.agent.Name, mi)
	if err != nil {
		return nil, a2a.Errorf(a2a.CodeInvalidParams, "%v", err)
	}
	now := g.opts.Now()
	return &store.Task{Priority: prio.String(),
		ID: newID(), Agent: c.agent.Name, Subject: c.subject.Name, Tenant: c.subject.Tenant, Groups: c.subject.Groups,
		ContextID: contextID, MessageID: mi.MessageID, Origin: c.origin,
		Method: c.req.Method, Dialect: string(d), Async: async, Request: body, Trace: telemetry.TraceCarrier(c.r.Context()),
		State: store.StateAccepted, CreatedAt: now, UpdatedAt: now,
	}, nil
}

// priority is the class a send asks for in params.metadata or params.message.metadata, capped
// by what the subject may use.
func priorityOf(a *auth.Stack, s *auth.Subject, agent string, mi a2a.MessageInfo) (admission.Priority, error) {
	asked := mi.Metadata[MetaPriority]
	p := admission.Normal
	if asked != "" {
		var err error
		if p, err = admission.ParsePriority(asked); err != nil {
			return p, fmt.Errorf("metadata %q: %w", MetaPriority, err)
		}
	}
	if a != nil {
		limit, ok := a.Authorizer.MaxPriority(s, agent)
		if lp, err := admission.ParsePriority(string(limit)); ok && err == nil && p > lp {
			p = lp
		}
	}
	return p, nil
}

// maxTaskID bounds a task id the gateway looks up; its own ids are UUIDs.
const maxTaskID = 128

// lookupTask finds a task of this agent by its gateway id, answering TaskNotFound itself when
// there is none (another subject's task answers exactly as one that does not exist).
func (g *Gateway) lookupTask(c *call, id string) (*store.Task, bool) {
	if len(id) > maxTaskID {
		rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeTaskNotFound, "task not found on agent %q: no task id is longer than %d characters", c.agent.Name, maxTaskID))
		return nil, false
	}
	t, err := g.tasks.journal.store.Get(c.r.Context(), id)
	if err == nil && t.Agent == c.agent.Name && canSee(g.opts.Auth, c.subject, t) {
		c.taskID, c.replica = t.ID, t.Replica
		return t, true
	}
	c.taskID = g.opts.Redact(id) // the caller's text, not a task of the gateway's
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		g.log.Error("task journal read failed", "err", err)
		rpcError(c.w, http.StatusServiceUnavailable, c.req.ID, a2a.Errorf(a2a.CodeInternalError, "the task journal is unavailable; try again"))
		return nil, false
	}
	rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeTaskNotFound, "task %q not found on agent %q", id, c.agent.Name))
	return nil, false
}

// serveTaskOp answers GetTask, CancelTask and SubscribeToTask for a gateway task id: from the
// replica that holds the task while it lives, from the journal otherwise.
func (g *Gateway) serveTaskOp(c *call) outcome {
	id, _ := c.req.TaskID() // checked by ParseRequest
	t, ok := g.lookupTask(c, id)
	if !ok {
		return outcomeTaskNotFound
	}
	switch c.req.Info.Kind {
	case a2a.KindGetTask:
		if ep, ok := g.tasks.owner(t); ok && !t.State.Terminal() {
			if out, err := g.tasks.forward(c.r.Context(), t, ep, t.UpstreamID, c.req, c.r.Header); err == nil {
				writeAnswer(c.w, nil, http.StatusOK, ep, out)
				c.replica = ep.Name
				return outcomeOK
			}
		}
		writeAnswer(c.w, nil, http.StatusOK, discovery.Endpoint{}, a2a.Result(c.req.ID, taskView(t)))
		return outcomeJournal
	case a2a.KindCancel:
		if t.State.Terminal() {
			rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeTaskNotCancelable, "task %q is already %s", id, tasks.WireState(t.State)))
			return outcomeNotCancelable
		}
		out, ep := g.tasks.cancel(c.r.Context(), t, c.req, c.r.Header, c.origin != "")
		writeAnswer(c.w, nil, http.StatusOK, ep, out)
		if ep.Name == "" {
			return outcomeJournal
		}
		return outcomeOK
	}
	sk := newStreamSink(c.w, c.req.ID, &c.replica)
	return g.tasks.subscribe(c.r.Context(), t, c.req, sk, c.r.Header)
}

// serveOther forwards methods the gateway does not track (ListTasks, the extended card) to one
// ready replica.
func (g *Gateway) serveOther(c *call) outcome {
	sl, err := g.tasks.pool.acquire(c.r.Context(), taskRef{agent: c.agent.Name, tenant: c.subject.Tenant, priority: admission.Normal, local: true}, nil)
	if err != nil {
		rpcError(c.w, http.StatusServiceUnavailable, c.req.ID, a2a.Errorf(a2a.CodeAgentUnavailable, "agent %q: %v", c.agent.Name, err))
		return outcomeUnavailable
	}
	defer sl.release()
	c.replica = sl.ep.Name
	ctx, cancel := context.WithTimeout(c.r.Context(), g.tasks.timeout(sl.agent))
	defer cancel()
	// The replica gets the request as the gateway read it, re-encoded, never the client's bytes.
	body, err := c.req.Marshal()
	if err != nil {
		rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeInternalError, "%v", err))
		return outcomeFailed
	}
	resp, err := g.tasks.client.Send(ctx, sl.ep.URL, c.req.Info.Dialect, body, false, c.r.Header)
	var out []byte
	if err == nil {
		out, err = upstream.ReadAnswer(resp)
	}
	if err != nil {
		g.tasks.pool.failed(sl.ep, err)
		rpcError(c.w, http.StatusBadGateway, c.req.ID, a2a.Errorf(a2a.CodeAgentUnavailable, "replica %s did not answer: %v", sl.ep.Name, err))
		return outcomeUnavailable
	}
	if c.req.Info.Kind == a2a.KindCard {
		out = g.rewriteExtendedCard(c, out)
	}
	writeAnswer(c.w, resp.Header, resp.StatusCode, sl.ep, out)
	return outcomeOK
}

// rewriteExtendedCard points the URLs of the extended card in an agent's answer at the gateway,
// as those of its public card are.
func (g *Gateway) rewriteExtendedCard(c *call, answer []byte) []byte {
	var r a2a.Response
	if json.Unmarshal(answer, &r) != nil || r.Error != nil || len(r.Result) == 0 {
		return answer
	}
	card, _, err := rewriteCard(r.Result, g.agentURL(c.r, c.agent.Name), c.agent)
	if err != nil {
		return answer
	}
	return a2a.Result(c.req.ID, card)
}

package gateway

import (
	"bufio"
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
	"strconv"
	"syscall"
	"time"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/gateway/balancer"
)

// maxSSELine bounds one line of an agent's event stream.
const maxSSELine = 4 << 20

// HeaderReplica names the replica that answered, for operators and tests.
const HeaderReplica = "X-Agentplane-Replica"

// forwardedHeaders are the request headers passed on to agents. Credentials are not: the gateway
// authenticates callers, agents trust the gateway.
var forwardedHeaders = []string{"A2A-Version", "A2A-Extensions", "X-A2A-Extensions", "Traceparent", "Tracestate", "X-Request-Id"}

// upstreamStatusError is an HTTP status from a replica that another replica may not give.
type upstreamStatusError struct{ code int }

func (e *upstreamStatusError) Error() string { return fmt.Sprintf("replica answered HTTP %d", e.code) }

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

func (g *Gateway) serveRPC(w http.ResponseWriter, r *http.Request) {
	start := g.opts.Now()
	name := r.PathValue("name")
	agent, ok := discovery.Lookup(g.opts.Source.Snapshot(), name)
	if !ok {
		g.rpcError(w, http.StatusNotFound, nil, a2a.Errorf(a2a.CodeAgentNotFound, "no agent %q behind this gateway; GET /agents lists them", name))
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			g.rpcError(w, http.StatusUnsupportedMediaType, nil, a2a.Errorf(a2a.CodeInvalidRequest, "Content-Type must be application/json, not %q", ct))
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.opts.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			g.rpcError(w, http.StatusRequestEntityTooLarge, nil, a2a.Errorf(a2a.CodeRequestTooLarge, "request body is larger than the gateway's limit of %d bytes", g.opts.MaxBodyBytes))
			return
		}
		g.rpcError(w, http.StatusBadRequest, nil, a2a.Errorf(a2a.CodeInvalidRequest, "reading the request body failed: %v", err))
		return
	}
	req, perr := a2a.ParseRequest(body)
	if perr != nil {
		g.rpcError(w, http.StatusOK, a2a.ErrorID(body), perr)
		return
	}
	outcome := "ok"
	var replica string
	if req.Info.TaskScoped() {
		replica, outcome = g.forwardToOwner(w, r, agent, req, body)
	} else {
		replica, outcome = g.dispatch(w, r, agent, req, body)
	}
	g.log.LogAttrs(r.Context(), slog.LevelDebug, "request",
		slog.String("agent", agent.Name), slog.String("method", req.Method), slog.String("replica", replica),
		slog.String("outcome", outcome), slog.Duration("duration", g.opts.Now().Sub(start)))
}

// dispatch sends a request that is not about an existing task to the best ready replica, and on
// to another one when a replica fails before answering, up to MaxAttempts replicas. Retrying a
// SendMessage whose request may have reached the failed replica makes delivery at-least-once; the
// same messageId goes with every attempt so that agents can de-duplicate.
func (g *Gateway) dispatch(w http.ResponseWriter, r *http.Request, agent discovery.Agent, req *a2a.Request, body []byte) (string, string) {
	ctx, cancel := context.WithTimeout(r.Context(), g.opts.TaskTimeout)
	defer cancel()
	tried := map[string]bool{}
	var lastErr error
	var lastReplica string
	for range g.opts.MaxAttempts {
		ep, release, ok := g.pick(agent, tried)
		if !ok {
			break
		}
		tried[ep.URL] = true
		lastReplica = ep.Name
		wrote, err := g.forwardTo(ctx, w, r, agent, req, body, ep)
		release()
		if errors.Is(err, errDialectUnsupported) {
			g.rpcError(w, http.StatusOK, req.ID, a2a.Errorf(a2a.CodeUnsupportedOp, "agent %q does not speak A2A %s; use the other dialect's method names", agent.Name, req.Info.Dialect))
			return ep.Name, "unsupported"
		}
		if err == nil {
			g.ejector.Succeeded(ep.URL)
			return ep.Name, "ok"
		}
		if wrote || ctx.Err() != nil {
			return ep.Name, g.abandoned(ctx, r, err)
		}
		lastErr = err
		g.failed(ep, err)
	}
	if ctx.Err() != nil {
		return lastReplica, g.abandoned(ctx, r, ctx.Err())
	}
	msg := fmt.Sprintf("agent %q has no ready replica", agent.Name)
	if len(tried) > 0 {
		msg = fmt.Sprintf("agent %q: %d replica(s) tried, none answered (last error: %v)", agent.Name, len(tried), lastErr)
	}
	g.rpcError(w, http.StatusServiceUnavailable, req.ID, a2a.Errorf(a2a.CodeAgentUnavailable, "%s", msg))
	return lastReplica, "unavailable"
}

// abandoned classifies a request that ended because its client left or its deadline passed.
func (g *Gateway) abandoned(ctx context.Context, r *http.Request, err error) string {
	if r.Context().Err() != nil {
		return "client-gone"
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "timeout"
	}
	g.log.Warn("request failed after the response started", "err", err)
	return "failed-mid-response"
}

// failed records a replica failure: a replica that refused or dropped the connection is ejected.
func (g *Gateway) failed(ep discovery.Endpoint, err error) {
	if !connectionFailure(err) {
		g.log.Info("replica failed a request", "agent", ep.Agent, "replica", ep.Name, "err", err)
		return
	}
	d := g.ejector.Eject(ep.URL, g.opts.Now())
	g.log.Warn("replica ejected", "agent", ep.Agent, "replica", ep.Name, "for", d, "err", err)
}

// connectionFailure reports whether err means the replica could not be reached or dropped the
// connection, as opposed to answering badly.
func connectionFailure(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// pick chooses a ready replica not tried yet and counts the task on it at once, so that
// concurrent picks see each other; the caller calls release when the task leaves the replica.
// Ejected replicas are used only when nothing else is left, since a possibly-recovered replica
// is better than refusing the task outright.
func (g *Gateway) pick(agent discovery.Agent, tried map[string]bool) (ep discovery.Endpoint, release func(), ok bool) {
	now := g.opts.Now()
	var eps, ejected []discovery.Endpoint
	for _, e := range agent.Endpoints {
		if !e.Ready || e.URL == "" || tried[e.URL] {
			continue
		}
		if g.ejector.Ejected(e.URL, now) {
			ejected = append(ejected, e)
			continue
		}
		eps = append(eps, e)
	}
	if len(eps) == 0 {
		eps = ejected
	}
	cands := make([]balancer.Candidate, len(eps))
	for i, e := range eps {
		cands[i] = balancer.Candidate{Key: e.URL, InFlight: g.tracker.InFlight(e.URL), Capacity: agent.MaxConcurrency}
	}
	i, ok := g.picker.Pick(cands)
	if !ok {
		return discovery.Endpoint{}, nil, false
	}
	return eps[i], g.tracker.Acquire(eps[i].URL), true
}

// forwardToOwner sends GetTask, CancelTask and SubscribeToTask to the replica that holds the task.
func (g *Gateway) forwardToOwner(w http.ResponseWriter, r *http.Request, agent discovery.Agent, req *a2a.Request, body []byte) (string, string) {
	taskID, _ := req.TaskID() // checked by ParseRequest
	rt, ok := g.routes.get(agent.Name, taskID)
	if !ok {
		g.rpcError(w, http.StatusOK, req.ID, a2a.Errorf(a2a.CodeTaskNotFound, "task %q not found on agent %q", taskID, agent.Name))
		return "", "task-not-found"
	}
	var ep discovery.Endpoint
	for _, e := range agent.Endpoints {
		if e.URL == rt.URL {
			ep, ok = e, true
			break
		}
	}
	if !ok || ep.URL == "" {
		g.rpcError(w, http.StatusOK, req.ID, a2a.Errorf(a2a.CodeTaskNotFound,
			"task %q was held by replica %s, which has since restarted or gone away", taskID, rt.Replica))
		return rt.Replica, "task-lost"
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.opts.TaskTimeout)
	defer cancel()
	release := g.tracker.Acquire(ep.URL)
	wrote, err := g.forwardTo(ctx, w, r, agent, req, body, ep)
	release()
	switch {
	case errors.Is(err, errDialectUnsupported):
		g.rpcError(w, http.StatusOK, req.ID, a2a.Errorf(a2a.CodeUnsupportedOp, "agent %q does not speak A2A %s", agent.Name, req.Info.Dialect))
		return ep.Name, "unsupported"
	case err == nil:
		return ep.Name, "ok"
	case wrote || ctx.Err() != nil:
		return ep.Name, g.abandoned(ctx, r, err)
	}
	g.failed(ep, err)
	g.rpcError(w, http.StatusBadGateway, req.ID, a2a.Errorf(a2a.CodeAgentUnavailable, "replica %s that holds task %q did not answer: %v", ep.Name, taskID, err))
	return ep.Name, "unavailable"
}

// forwardTo sends one request to one replica, at the JSON-RPC URL its card gives for the
// request's dialect, and relays the answer. wrote reports whether any of the answer reached the
// client; only when it did not may the caller try another replica.
func (g *Gateway) forwardTo(ctx context.Context, w http.ResponseWriter, r *http.Request, agent discovery.Agent, req *a2a.Request, body []byte, ep discovery.Endpoint) (wrote bool, err error) {
	target, err := g.cards.rpcURL(ctx, ep.URL, req.Info.Dialect)
	if err != nil {
		return false, err
	}
	up, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	up.Header.Set("Content-Type", "application/json")
	if req.Info.Streaming() {
		up.Header.Set("Accept", "text/event-stream")
	} else {
		up.Header.Set("Accept", "application/json")
	}
	for _, h := range forwardedHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			up.Header[h] = v
		}
	}
	resp, err := g.client.Do(up)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return false, &upstreamStatusError{code: resp.StatusCode}
	}

	h := w.Header()
	for _, k := range []string{"Content-Type", "A2A-Version", "A2A-Extensions", "X-A2A-Extensions"} {
		if v := resp.Header.Values(k); len(v) > 0 {
			h[k] = v
		}
	}
	h.Set(HeaderReplica, ep.Name)
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "text/event-stream" {
		return g.relayStream(ctx, w, resp, agent, ep, req)
	}

	out, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		h.Del(HeaderReplica)
		return false, err
	}
	if len(out) > maxResponseBytes {
		g.rpcError(w, http.StatusBadGateway, req.ID, a2a.Errorf(a2a.CodeInvalidAgentResponse, "replica %s answered with more than %d bytes", ep.Name, maxResponseBytes))
		return true, nil
	}
	g.remember(agent, ep, out)
	h.Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(resp.StatusCode)
	_, err = w.Write(out)
	return true, err
}

// remember records the replica that holds the task a JSON-RPC response is about, and reports
// whether the response named one.
func (g *Gateway) remember(agent discovery.Agent, ep discovery.Endpoint, payload []byte) bool {
	var resp a2a.Response
	if json.Unmarshal(payload, &resp) != nil || len(resp.Result) == 0 {
		return false
	}
	id := a2a.ResultTaskID(resp.Result)
	if id != "" {
		g.routes.put(agent.Name, id, route{Replica: ep.Name, URL: ep.URL})
	}
	return id != ""
}

// relayStream copies a server-sent event stream to the client event by event, flushing at each
// event's end, and remembers the task it is about. If the replica fails mid-stream, the client
// gets a final event with a JSON-RPC error rather than a silently cut stream.
func (g *Gateway) relayStream(ctx context.Context, w http.ResponseWriter, resp *http.Response, agent discovery.Agent, ep discovery.Endpoint, req *a2a.Request) (bool, error) {
	rc := http.NewResponseController(w)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(resp.StatusCode)
	if err := rc.Flush(); err != nil {
		return true, err
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	known := false
	var line []byte
	for {
		var err error
		line, err = readLine(br, line[:0])
		if len(line) > 0 {
			if !known && bytes.HasPrefix(line, []byte("data:")) {
				known = g.remember(agent, ep, bytes.TrimSpace(line[len("data:"):]))
			}
			if _, werr := w.Write(line); werr != nil {
				return true, werr // the client went away
			}
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				if werr := rc.Flush(); werr != nil {
					return true, werr
				}
			}
		}
		if err == io.EOF {
			return true, rc.Flush()
		}
		if err != nil {
			if ctx.Err() == nil {
				e := a2a.Errorf(a2a.CodeAgentUnavailable, "replica %s failed during the stream: %v", ep.Name, err)
				_, _ = fmt.Fprintf(w, "data: %s\n\n", a2a.ErrorResponse(req.ID, e))
				_ = rc.Flush()
			}
			return true, err
		}
	}
}

var errLineTooLong = errors.New("event stream line too long")

// readLine appends one line, with its ending, to buf. It refuses lines over maxSSELine.
func readLine(br *bufio.Reader, buf []byte) ([]byte, error) {
	for {
		frag, err := br.ReadSlice('\n')
		buf = append(buf, frag...)
		if len(buf) > maxSSELine {
			return nil, errLineTooLong
		}
		if err != bufio.ErrBufferFull {
			return buf, err
		}
	}
}

// watch prunes per-replica state of replicas that are gone, whenever the source changes.
func (g *Gateway) watch(ctx context.Context) {
	for {
		ch := g.opts.Source.Changed()
		live := map[string]bool{}
		for _, a := range g.opts.Source.Snapshot() {
			for _, e := range a.Endpoints {
				if e.URL != "" {
					live[e.URL] = true
				}
			}
		}
		keep := func(k string) bool { return live[k] }
		g.ejector.Retain(keep)
		g.cards.retain(keep)
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-time.After(time.Minute):
		}
	}
}

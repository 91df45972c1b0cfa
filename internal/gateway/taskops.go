package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/store"
)

// lookupTask finds a task of this agent by its gateway id, answering TaskNotFound itself when
// there is none.
func (g *Gateway) lookupTask(c *call, id string) (*store.Task, bool) {
	c.taskID = id
	t, err := g.journal.Get(c.r.Context(), id)
	// Another subject's task answers exactly as a task that does not exist.
	if err == nil && t.Agent == c.agent.Name && g.canSee(c.subject, t) {
		c.replica = t.Replica
		return t, true
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		g.log.Error("task journal read failed", "err", err)
		g.rpcError(c.w, http.StatusServiceUnavailable, c.req.ID, a2a.Errorf(a2a.CodeInternalError, "the task journal is unavailable; try again"))
		return nil, false
	}
	g.rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeTaskNotFound, "task %q not found on agent %q", id, c.agent.Name))
	return nil, false
}

// owner is the replica that holds t, while it is still there and ready.
func (g *Gateway) owner(c *call, t *store.Task) (discovery.Endpoint, bool) {
	if t.UpstreamID == "" {
		return discovery.Endpoint{}, false
	}
	ep, ok := endpoint(c.agent, t.ReplicaURL)
	if !ok || !ep.Ready {
		return ep, false
	}
	// A restarted stateless replica is a new process at the same address: the task's state went
	// with the old one. A stateful agent may have kept it in its memory volume; it answers itself.
	if c.agent.State != discovery.AgentStateful && ep.Restarts > t.ReplicaRestarts {
		return ep, false
	}
	return ep, true
}

// serveTaskOp answers GetTask, CancelTask and SubscribeToTask for a gateway task id: from the
// replica that holds the task while it lives, from the journal otherwise.
func (g *Gateway) serveTaskOp(c *call) string {
	id, _ := c.req.TaskID() // checked by ParseRequest
	t, ok := g.lookupTask(c, id)
	if !ok {
		return "task-not-found"
	}
	switch c.req.Info.Kind {
	case a2a.KindGetTask:
		if !t.State.Terminal() {
			if ep, ok := g.owner(c, t); ok {
				if out, err := g.forwardTaskOp(c, t, ep); err == nil {
					g.writeJSONRPC(c.w, ep, out)
					return "ok"
				}
			}
		}
		g.writeJSONRPC(c.w, discovery.Endpoint{}, a2a.Result(c.req.ID, taskView(t)))
		return "ok-journal"

	case a2a.KindCancel:
		if t.State.Terminal() {
			g.rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeTaskNotCancelable, "task %q is already %s", id, wireState(t.State)))
			return "not-cancelable"
		}
		if ep, ok := g.owner(c, t); ok {
			out, err := g.forwardTaskOp(c, t, ep)
			if err == nil {
				var r a2a.Response
				if json.Unmarshal(out, &r) == nil && r.Error == nil {
					if sum := a2a.Summarize(r.Result); sum.State.Terminal() {
						g.finish(c.r.Context(), t, journalState(sum.State), "canceled by the client", r.Result)
					}
				}
				g.writeJSONRPC(c.w, ep, out)
				return "ok"
			}
		}
		// Not running anywhere the gateway can reach (queued, or its replica is gone): the
		// journal is the task, and canceling it there is final.
		g.finish(c.r.Context(), t, store.StateCanceled, "canceled by the client", nil)
		g.writeJSONRPC(c.w, discovery.Endpoint{}, a2a.Result(c.req.ID, taskView(t)))
		return "ok-journal"

	default: // SubscribeToTask
		if !t.State.Terminal() {
			if ep, ok := g.owner(c, t); ok {
				if err := g.relaySubscription(c, t, ep); err == nil {
					return "ok"
				}
			}
		}
		sw := newSSEWriter(c.w)
		if err := sw.start(t.Replica); err == nil {
			_ = sw.event(a2a.Result(c.req.ID, taskView(t)))
		}
		return "ok-journal"
	}
}

// forwardTaskOp sends the request to the replica with the replica's task id, and returns the
// answer with the gateway's id.
func (g *Gateway) forwardTaskOp(c *call, t *store.Task, ep discovery.Endpoint) ([]byte, error) {
	params, err := a2a.WithParamID(c.req.Params, t.UpstreamID)
	if err != nil {
		return nil, err
	}
	body, err := c.req.WithParams(params)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(c.r.Context(), cardTimeout*5)
	defer cancel()
	resp, err := g.send(ctx, ep, c.req.Info.Dialect, body, false, c.r.Header)
	if err != nil {
		g.failed(ep, err)
		return nil, err
	}
	defer resp.Body.Close()
	out, err := readBody(resp)
	if err != nil {
		return nil, err
	}
	return a2a.ReplaceID(out, t.UpstreamID, t.ID), nil
}

// relaySubscription re-attaches to a running task's stream on its replica.
func (g *Gateway) relaySubscription(c *call, t *store.Task, ep discovery.Endpoint) error {
	params, err := a2a.WithParamID(c.req.Params, t.UpstreamID)
	if err != nil {
		return err
	}
	body, err := c.req.WithParams(params)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.r.Context(), g.opts.TaskTimeout)
	defer cancel()
	resp, err := g.send(ctx, ep, c.req.Info.Dialect, body, true, c.r.Header)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		out, err := readBody(resp)
		if err != nil {
			return err
		}
		writeResponse(c.w, resp, ep, a2a.ReplaceID(out, t.UpstreamID, t.ID))
		return nil
	}
	sw := newSSEWriter(c.w)
	if err := sw.start(ep.Name); err != nil {
		return nil
	}
	rd := newSSEReader(resp.Body, g.opts.MaxSSELineBytes)
	for {
		ev, err := rd.next()
		if err != nil {
			return nil // the client has what the replica sent; it may subscribe again
		}
		if ev.comment && len(ev.data) == 0 {
			_ = sw.comment()
			continue
		}
		if sw.event(a2a.ReplaceID(ev.data, t.UpstreamID, t.ID)) != nil {
			return nil
		}
	}
}

// serveContinue sends a message that continues an existing task (for example an answer to
// input-required) to the replica that holds it.
func (g *Gateway) serveContinue(c *call, mi a2a.MessageInfo) string {
	t, ok := g.lookupTask(c, mi.TaskID)
	if !ok {
		return "task-not-found"
	}
	ep, alive := g.owner(c, t)
	if !alive {
		g.rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeTaskNotFound,
			"task %q cannot be continued: the replica that held its state (%s) is gone or has restarted; start a new task in the same context", t.ID, t.Replica))
		return "task-lost"
	}
	params, err := a2a.EditSend(c.req.Params, c.req.Info.Dialect, "", t.UpstreamID, nil)
	if err != nil {
		g.rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeInvalidParams, "%v", err))
		return "invalid"
	}
	body, err := c.req.WithParams(params)
	if err != nil {
		g.rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeInternalError, "%v", err))
		return "internal"
	}
	release := g.tracker.Acquire(ep.URL)
	defer func() { release(); g.queue.Notify(t.Agent) }()
	tctx, cancelTask := g.taskContext(c.r.Context())
	defer cancelTask()
	ctx, cancel := context.WithTimeout(tctx, g.opts.TaskTimeout)
	defer cancel()
	streaming := c.req.Info.Kind == a2a.KindStream
	resp, err := g.send(ctx, ep, c.req.Info.Dialect, body, streaming, c.r.Header)
	if err != nil {
		g.failed(ep, err)
		g.rpcError(c.w, http.StatusBadGateway, c.req.ID, a2a.Errorf(a2a.CodeAgentUnavailable, "replica %s that holds task %q did not answer: %v", ep.Name, t.ID, err))
		return "unavailable"
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
		sw := newSSEWriter(c.w)
		if sw.start(ep.Name) != nil {
			return "client-gone"
		}
		rd := newSSEReader(resp.Body, g.opts.MaxSSELineBytes)
		for {
			ev, err := rd.next()
			if err != nil {
				return "ok"
			}
			if len(ev.data) > 0 {
				var r a2a.Response
				if json.Unmarshal(ev.data, &r) == nil && r.Error == nil {
					if sum := a2a.Summarize(r.Result); sum.State != a2a.StateUnknown {
						g.finish(ctx, t, journalState(sum.State), "", nil)
					}
				}
				if sw.event(a2a.ReplaceID(ev.data, t.UpstreamID, t.ID)) != nil {
					return "client-gone"
				}
			}
		}
	}
	out, err := readBody(resp)
	if err != nil {
		g.rpcError(c.w, http.StatusBadGateway, c.req.ID, a2a.Errorf(a2a.CodeAgentUnavailable, "replica %s: %v", ep.Name, err))
		return "unavailable"
	}
	var r a2a.Response
	if json.Unmarshal(out, &r) == nil && r.Error == nil {
		sum := a2a.Summarize(r.Result)
		var result json.RawMessage
		if sum.IsTask {
			result = a2a.ReplaceID(sum.Task, t.UpstreamID, t.ID)
		}
		if sum.State != a2a.StateUnknown {
			g.finish(ctx, t, journalState(sum.State), "", result)
		}
	}
	writeResponse(c.w, resp, ep, a2a.ReplaceID(out, t.UpstreamID, t.ID))
	return "ok"
}

// writeJSONRPC writes a JSON-RPC answer.
func (g *Gateway) writeJSONRPC(w http.ResponseWriter, ep discovery.Endpoint, out []byte) {
	w.Header().Set("Content-Type", "application/json")
	if ep.Name != "" {
		w.Header().Set(HeaderReplica, ep.Name)
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(out)))
	_, _ = w.Write(out)
}

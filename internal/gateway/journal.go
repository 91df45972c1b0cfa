package gateway

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/telemetry"
	"go.opentelemetry.io/otel/trace"
)

// errTaskEnded means a task reached a terminal state elsewhere (canceled by its client, say)
// while the gateway was about to change it.
var errTaskEnded = errors.New("task already ended")

// save applies change to t and writes it to the journal with compare-and-set. On a conflict it
// re-reads the task and applies change again, unless the task has ended meanwhile, in which case
// t becomes the stored task and errTaskEnded is returned. Journal outages are logged and do not
// stop the task: the task still runs, but a gateway crash before the next write would lose this
// change.
func (g *Gateway) save(ctx context.Context, t *store.Task, change func(*store.Task)) error {
	ctx = context.WithoutCancel(ctx)
	for range 5 {
		wasFinal := t.State.Terminal() || t.State == store.StateInputReq
		change(t)
		t.UpdatedAt = g.opts.Now()
		err := g.journal.Update(ctx, t)
		if err == nil {
			g.recent.note(t)
			if !wasFinal && (t.State.Terminal() || t.State == store.StateInputReq) {
				g.taskEnded(ctx, t)
			}
			return nil
		}
		if !errors.Is(err, store.ErrConflict) {
			g.log.Error("task journal update failed", "task", t.ID, "err", err)
			return nil
		}
		fresh, gerr := g.journal.Get(ctx, t.ID)
		if gerr != nil {
			g.log.Error("task journal read failed", "task", t.ID, "err", gerr)
			return nil
		}
		*t = *fresh
		if t.State.Terminal() {
			return errTaskEnded
		}
	}
	g.log.Error("task journal update kept conflicting", "task", t.ID)
	return nil
}

// dispatched records that t is being sent to ep. A blocking send is recorded in the journal only
// when it ends: until then its client is connected and waiting, and after a gateway crash an
// accepted task and a dispatched one are recovered the same way, so the write would buy
// nothing. Queued tasks are claimed with it (compare-and-set), and streams record where they
// run, since a client may re-subscribe to them.
func (g *Gateway) dispatched(ctx context.Context, t *store.Task, ep discovery.Endpoint) error {
	change := func(t *store.Task) {
		t.Replica, t.ReplicaURL, t.ReplicaRestarts, t.UpstreamID = ep.Name, ep.URL, ep.Restarts, ""
		t.Attempts++
		t.State = store.StateDispatched
	}
	if m, _ := a2a.LookupMethod(t.Method); m.Kind == a2a.KindSend && !t.Async {
		change(t)
		t.UpdatedAt = g.opts.Now()
		g.recent.note(t)
		return nil
	}
	return g.save(ctx, t, change)
}

// finish records a terminal (or final-for-now) state with a reason and, when known, the task.
func (g *Gateway) finish(ctx context.Context, t *store.Task, st store.TaskState, reason string, result json.RawMessage) {
	_ = g.save(ctx, t, func(t *store.Task) {
		t.State = st
		if reason != "" {
			t.Reason = reason
		}
		if result != nil {
			t.Result = result
		}
	})
}

// taskView is the task as the journal knows it, in the task's dialect: its last known object
// from the agent when there is one, or a minimal one with the state and reason.
func taskView(t *store.Task) json.RawMessage {
	if len(t.Result) > 0 && t.State.Terminal() {
		return t.Result
	}
	return a2a.TaskObject(a2a.Dialect(t.Dialect), t.ID, t.ContextID, wireState(t.State), t.Reason,
		map[string]any{MetaReplica: t.Replica, MetaAttempt: t.Attempts})
}

// consumeAsync dispatches queued tasks until ctx ends.
func (g *Gateway) consumeAsync(ctx context.Context) error {
	return g.journal.Consume(ctx, g.opts.AsyncConcurrency, func(qctx context.Context, id string) error {
		// A task taken from the queue runs to its end even while the gateway drains; only the
		// drain deadline stops it, and then it stays queued for the next run.
		ctx, cancel := g.taskContext(qctx)
		defer cancel()
		t, err := g.journal.Get(ctx, id)
		if err == nil {
			// The task's trace continues from the request that queued it.
			var span trace.Span
			ctx, span = telemetry.StartTask(telemetry.ContextFromCarrier(ctx, t.Trace), t.Agent, t.Method, t.ID)
			defer telemetry.End(span, nil)
		}
		if errors.Is(err, store.ErrNotFound) {
			return nil // expired from the journal: nothing left to do
		}
		if err != nil {
			return err
		}
		if t.State.Terminal() {
			return nil
		}
		if !t.Async {
			// A blocking task recovered after a restart: its client is gone, run it to its end.
			if err := g.save(ctx, t, func(t *store.Task) { t.Async = true }); err != nil {
				return nil
			}
		}
		_, _, err = g.execute(ctx, t, nil)
		if errors.Is(err, errNoReplica) {
			if g.opts.Now().Sub(t.CreatedAt) > g.opts.QueueTimeout {
				g.finish(ctx, t, store.StateFailed, "no replica became ready within the queue timeout", nil)
				return nil
			}
			return err // delivered again later
		}
		if ctx.Err() != nil {
			return ctx.Err() // the gateway is stopping: leave it queued
		}
		return nil
	})
}

// recover re-queues every task that was in flight when the gateway last stopped. Blocking and
// streaming tasks lost their client with the gateway; they are turned into queued tasks so that
// they still end, and their result waits in the journal for GetTask.
func (g *Gateway) recover(ctx context.Context) error {
	pending, err := g.journal.Pending(ctx)
	if err != nil {
		return err
	}
	for _, t := range pending {
		if !t.Async {
			req, perr := a2a.ParseRequestLimit(t.Request, g.opts.MaxJSONDepth)
			if perr != nil {
				g.finish(ctx, t, store.StateFailed, "the journaled request could not be read again", nil)
				continue
			}
			yes := true
			var resend []byte
			params, err := a2a.EditSend(req.Params, req.Info.Dialect, "", "", &yes)
			if err == nil {
				req.Method = blockingMethod(req.Info)
				resend, err = req.WithParams(params)
			}
			if err != nil {
				g.finish(ctx, t, store.StateFailed, "the journaled request could not be re-sent", nil)
				continue
			}
			if g.save(ctx, t, func(t *store.Task) {
				t.Async, t.Request = true, resend
				t.Reason = "re-dispatched after a gateway restart"
			}) != nil {
				continue
			}
		}
		if err := g.journal.Enqueue(ctx, t.ID); err != nil {
			return err
		}
	}
	if len(pending) > 0 {
		g.log.Info("re-queued tasks left in flight by the last run", "tasks", len(pending))
	}
	return nil
}

// blockingMethod is the non-streaming send of a dialect.
func blockingMethod(m a2a.Method) string {
	if m.Dialect == a2a.V03 {
		return "message/send"
	}
	return "SendMessage"
}

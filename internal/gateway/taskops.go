package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/gateway/upstream"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/tasks"
)

// owner is the replica that holds t, while it is still there and ready and still knows the task.
func (d *dispatcher) owner(t *store.Task) (discovery.Endpoint, bool) {
	if t.UpstreamID == "" {
		return discovery.Endpoint{}, false
	}
	agent, ok := discovery.Lookup(d.pool.source.Snapshot(), t.Agent)
	if !ok {
		return discovery.Endpoint{}, false
	}
	ep, ok := endpoint(agent, t.ReplicaURL)
	if !ok || !ep.Ready {
		return ep, false
	}
	// A restarted stateless replica is a new process at the same address: the task's state went
	// with the old one. A stateful agent may have kept it in its memory volume; it answers itself.
	if agent.State != discovery.AgentStateful && ep.Restarts > t.ReplicaRestarts {
		return ep, false
	}
	return ep, true
}

// continueTask sends the client's answer to an input-required task to the replica that holds
// its state, waiting for a slot there like any task (a replica never gets more than its
// maxConcurrency). It is not re-dispatched: no other replica knows the task.
func (d *dispatcher) continueTask(ctx context.Context, t *store.Task, req *a2a.Request, sk sink, hdr http.Header) outcome {
	if t.State != store.StateInputReq {
		sk.fail(a2a.Errorf(a2a.CodeInvalidParams, "task %q is %s; only a task that asks for input takes another message",
			t.ID, tasks.WireState(t.State).Wire(a2a.Dialect(t.Dialect))))
		return outcomeInvalid
	}
	if _, ok := d.owner(t); !ok {
		sk.fail(a2a.Errorf(a2a.CodeTaskNotFound, "task %q cannot be continued: the replica that held its state (%s) is gone or has restarted; start a new task in the same context", t.ID, t.Replica))
		return outcomeTaskLost
	}
	params, err := a2a.EditSend(req.Params, req.Info.Dialect, "", t.UpstreamID, nil)
	if err != nil {
		sk.fail(a2a.Errorf(a2a.CodeInvalidParams, "%v", err))
		return outcomeInvalid
	}
	body, err := req.WithParams(params)
	if err != nil {
		sk.fail(a2a.Errorf(a2a.CodeInternalError, "%v", err))
		return outcomeFailed
	}
	sl, err := d.pool.acquireOn(ctx, refOf(t), t.ReplicaURL)
	if err != nil {
		sk.fail(a2a.Errorf(a2a.CodeAgentUnavailable, "replica %s that holds task %q has no free slot: %v", t.Replica, t.ID, err))
		return outcomeUnavailable
	}
	err = d.attempt(ctx, t, sl, tasks.Continue(), sk, hdr, body, 0, nil)
	switch {
	case err == nil:
		return outcomeOK
	case errors.Is(err, tasks.ErrEnded), errors.Is(err, tasks.ErrNotAllowed), errors.Is(err, errJournal):
		return d.giveUp(ctx, t, sk, sl.ep, err)
	}
	d.pool.failed(sl.ep, err)
	sk.fail(a2a.Errorf(a2a.CodeAgentUnavailable, "replica %s that holds task %q did not answer: %v", sl.ep.Name, t.ID, err))
	return outcomeUnavailable
}

// forward sends a task-scoped request (GetTask, CancelTask) to ep, which knows t as remoteID:
// the replica that holds it (t.UpstreamID), or the gateway of the fleet that runs it (t.ID, one
// journal). It returns the answer with the gateway's id, and marks ep failed when it cannot be
// reached.
func (d *dispatcher) forward(ctx context.Context, t *store.Task, ep discovery.Endpoint, remoteID string, req *a2a.Request, hdr http.Header) ([]byte, error) {
	body, err := withReplicaID(req, remoteID)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*upstream.CardTimeout)
	defer cancel()
	resp, err := d.send(ctx, t, ep, req.Info.Dialect, body, false, hdr)
	if err != nil {
		d.pool.failed(ep, err)
		return nil, err
	}
	out, err := upstream.ReadAnswer(resp)
	if err != nil {
		return nil, err
	}
	return a2a.ReplaceID(out, remoteID, t.ID), nil
}

// withReplicaID is a task-scoped request re-encoded with the replica's id for the task in place
// of the gateway's.
func withReplicaID(req *a2a.Request, upstreamID string) ([]byte, error) {
	params, err := a2a.WithParamID(req.Params, upstreamID)
	if err != nil {
		return nil, err
	}
	return req.WithParams(params)
}

// cancel cancels t: on the replica that runs it when there is one, in the journal otherwise
// (queued, or its replica is gone), where canceling is final.
func (d *dispatcher) cancel(ctx context.Context, t *store.Task, req *a2a.Request, hdr http.Header, forwarded bool) (json.RawMessage, discovery.Endpoint) {
	if ep, ok := d.ownerGateway(t); ok && !forwarded {
		// Another gateway of the fleet runs it: it cancels it on the replica that holds it.
		out, err := d.forward(ctx, t, ep, t.ID, req, hdr)
		if err == nil {
			return out, ep
		}
		d.log.Info("forwarding a cancellation to the gateway that runs the task failed; canceling it in the journal", "task", t.ID, "gateway", t.Owner, "err", err)
	}
	if ep, ok := d.owner(t); ok {
		if out, err := d.forward(ctx, t, ep, t.UpstreamID, req, hdr); err == nil {
			var r a2a.Response
			if json.Unmarshal(out, &r) == nil && r.Error == nil {
				if sum := a2a.Summarize(r.Result); sum.State.Terminal() {
					d.journal.settle(ctx, t, tasks.End(tasks.Client, tasks.CanceledByClient, "canceled by the client", r.Result))
				}
			}
			return out, ep
		}
	}
	d.journal.settle(ctx, t, tasks.End(tasks.Client, tasks.CanceledByClient, "canceled by the client", nil))
	return a2a.Result(req.ID, taskView(t)), discovery.Endpoint{}
}

// subscribe streams t's events to sk until it settles: relayed from the replica that runs it
// while the gateway can reach it there, then from the journal (a queued task in flight, a task
// whose replica died and that is being re-dispatched, a task run by another gateway).
func (d *dispatcher) subscribe(ctx context.Context, t *store.Task, req *a2a.Request, sk sink, hdr http.Header) outcome {
	ctx, cancel := context.WithTimeout(ctx, d.queueTimeout+time.Duration(d.maxAttempts)*d.taskTimeout)
	defer cancel()
	if ep, ok := d.owner(t); ok && !tasks.Settled(t.State) {
		if err := d.relaySubscription(ctx, t, ep, req, sk, hdr); err == nil {
			return outcomeOK
		}
		if fresh, err := d.journal.store.Get(ctx, t.ID); err == nil {
			*t = *fresh
		}
	}
	d.watchJournal(ctx, t, req.ID, sk)
	return outcomeJournal
}

func (d *dispatcher) relaySubscription(ctx context.Context, t *store.Task, ep discovery.Endpoint, req *a2a.Request, sk sink, hdr http.Header) error {
	body, err := withReplicaID(req, t.UpstreamID)
	if err != nil {
		return err
	}
	resp, err := d.send(ctx, t, ep, req.Info.Dialect, body, true, hdr)
	if err != nil {
		return err
	}
	if !isEventStream(resp) {
		out, err := upstream.ReadAnswer(resp)
		if err != nil {
			return err
		}
		sk.answer(ep, resp.Header, resp.StatusCode, a2a.ReplaceID(out, t.UpstreamID, t.ID))
		return nil
	}
	defer resp.Body.Close()
	return d.relay(ctx, t, ep, resp.Body, sk)
}

// watchInterval is how often a subscription reads a task it waits for from the journal, for
// changes made where this gateway cannot see them happen.
const watchInterval = time.Second

// watchJournal sends t as the journal has it, then a status event at each change of state,
// and the task itself when it settles.
func (d *dispatcher) watchJournal(ctx context.Context, t *store.Task, id json.RawMessage, sk sink) {
	sk.event(discovery.Endpoint{Name: t.Replica}, a2a.Result(id, a2a.SendResult(a2a.Dialect(t.Dialect), taskView(t))))
	poll := time.NewTicker(watchInterval)
	defer poll.Stop()
	last, idle := t.State, 0
	for !tasks.Settled(last) {
		select {
		case <-ctx.Done():
			return
		case <-d.journal.watch.wait(t.ID):
		case <-poll.C:
			if idle++; idle%15 == 0 {
				sk.comment()
			}
		}
		fresh, err := d.journal.store.Get(ctx, t.ID)
		if err != nil || fresh.State == last {
			continue
		}
		last = fresh.State
		ep := discovery.Endpoint{Name: fresh.Replica}
		if tasks.Settled(last) {
			sk.event(ep, a2a.Result(id, a2a.SendResult(a2a.Dialect(fresh.Dialect), taskView(fresh))))
			return
		}
		sk.event(ep, a2a.StatusEvent(a2a.Dialect(fresh.Dialect), id, fresh.ID, fresh.ContextID, tasks.WireState(last), fresh.Reason,
			map[string]any{MetaReplica: fresh.Replica, MetaAttempt: fresh.Attempts}))
	}
}

// Start runs queued tasks until ctx ends; tasks taken from the queue run to their end even
// while the gateway drains (only hardStop ends them, and then they stay queued).
func (d *dispatcher) Start(ctx context.Context) error {
	err := d.journal.store.Consume(ctx, d.asyncWorkers, d.runQueued)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// errRequeue asks the queue to deliver a task again later.
var errRequeue = errors.New("task left queued")

func (d *dispatcher) runQueued(qctx context.Context, id string) error {
	ctx, cancel := d.taskContext(qctx)
	defer cancel()
	t, err := d.journal.store.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil // expired from the journal: nothing left to do
	}
	if err != nil {
		return err
	}
	if tasks.Settled(t.State) || d.journal.ownedElsewhere(t) {
		return nil // ended, or run by a live gateway of the fleet (which claims it if it dies)
	}
	ctx, span := startQueuedTask(ctx, t)
	defer span()
	switch d.run(ctx, t, noClient{}, nil) {
	case outcomeRequeue:
		if d.now().Sub(t.CreatedAt) > d.queueTimeout {
			d.journal.end(ctx, t, tasks.QueueTimeout, "no replica became ready within the queue timeout")
			return nil
		}
		return errRequeue
	case outcomeJournalError:
		return errRequeue
	}
	return ctx.Err() // the gateway is stopping: leave it queued
}

// recover re-queues every task this gateway left in flight when it last stopped (in a fleet:
// the tasks it owns; those of other gateways are theirs, or claimed once their owner is known
// to be gone). Blocking and streaming tasks lost their client with the gateway; they become
// queued tasks, so that they still end, and their result waits in the journal for GetTask.
func (d *dispatcher) recover(ctx context.Context) error {
	pending, err := d.journal.store.Pending(ctx)
	if err != nil {
		return err
	}
	n := 0
	for _, t := range pending {
		if tasks.Settled(t.State) || (t.Owner != "" && t.Owner != d.journal.self) {
			continue
		}
		if err := d.requeue(ctx, t, "re-dispatched after a gateway restart"); err != nil {
			if errors.Is(err, errQueue) {
				return err
			}
			d.log.Error("recovering a task failed", "task", t.ID, "err", err)
			continue
		}
		n++
	}
	if n > 0 {
		d.log.Info("re-queued tasks left in flight by the last run", "tasks", n)
	}
	return nil
}

// errQueue wraps a failure to queue a task.
var errQueue = errors.New("queueing the task failed")

// requeue journals t, by compare-and-set, as a queued task of this gateway with reason (a
// blocking or streaming task, whose client is gone, becomes one sent as a blocking request, so
// that the gateway's consumer gets the result), then queues it. It returns store.ErrConflict
// when t changed meanwhile (another gateway claimed it first).
func (d *dispatcher) requeue(ctx context.Context, t *store.Task, reason string) error {
	if !t.Async {
		resend, err := d.asQueued(t)
		if err != nil {
			return d.journal.apply(ctx, t, tasks.End(tasks.Recovery, tasks.Unrecoverable, "the journaled request could not be sent again", nil))
		}
		t.Async, t.Request = true, resend
	}
	t.Owner, t.Reason = d.journal.self, reason
	if err := d.journal.store.Update(ctx, t); err != nil {
		return err
	}
	if err := d.journal.store.Enqueue(ctx, t.ID); err != nil {
		return fmt.Errorf("%w: %w", errQueue, err)
	}
	return nil
}

// asQueued is the request of a blocking or streaming task re-encoded as a blocking send.
func (d *dispatcher) asQueued(t *store.Task) ([]byte, error) {
	req, perr := a2a.ParseRequestLimit(t.Request, d.maxJSONDepth)
	if perr != nil {
		return nil, perr
	}
	yes := true
	params, err := a2a.EditSend(req.Params, req.Info.Dialect, "", "", &yes)
	if err != nil {
		return nil, err
	}
	req.Method = blockingMethod(req.Info)
	return req.WithParams(params)
}

// blockingMethod is the non-streaming send of a dialect.
func blockingMethod(m a2a.Method) string {
	if m.Dialect == a2a.V03 {
		return "message/send"
	}
	return "SendMessage"
}

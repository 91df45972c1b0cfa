package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/tasks"
	"github.com/agentplane/agentplane/internal/telemetry"
)

// journal applies the task state machine's changes and writes them to the store. Its errors are
// errors: a write that fails after its retries is returned to the caller (which refuses the task
// or leaves it for recovery) and marks the gateway unhealthy until a later write succeeds.
type journal struct {
	store   store.Journal
	now     func() time.Time
	log     *slog.Logger
	metrics *telemetry.Metrics
	recent  *recentTasks
	watch   *watchers
	// broken is set while journal writes fail; /readyz reports it.
	broken atomic.Bool
	// backoff is the wait before each retry of a failed write (not of a conflict).
	backoff []time.Duration
	// self is this gateway's id in its fleet, the owner of the tasks it runs; empty outside a
	// fleet. alive reports whether another gateway still holds its leases.
	self  string
	alive func(id string) bool
}

// errOwnedElsewhere means another live gateway has dispatched the task: it runs it.
var errOwnedElsewhere = errors.New("another gateway of the fleet runs the task")

// ownedElsewhere reports whether t is being run by another gateway that holds its lease.
func (j *journal) ownedElsewhere(t *store.Task) bool {
	return t.Owner != j.self && t.State == store.StateDispatched && j.alive != nil && j.alive(t.Owner)
}

// errJournal wraps a journal write that failed for good.
var errJournal = errors.New("the task journal cannot be written")

// create writes a new task: the write that makes it exist.
func (j *journal) create(ctx context.Context, t *store.Task) error {
	t.Owner = j.self
	err := j.retry(ctx, func() error { return j.store.Create(ctx, t) })
	if err != nil {
		return err
	}
	j.recent.note(t)
	j.metrics.TaskStarted(t.Agent, t.Method)
	return nil
}

// apply makes change c to t and journals it when the state machine says so, with
// compare-and-set: on a conflict it re-reads the task and applies c again, unless the task has
// ended meanwhile (canceled by its client, finished by another gateway), in which case t becomes
// the stored task and tasks.ErrEnded is returned. A change the state machine forbids returns
// its error and writes nothing.
func (j *journal) apply(ctx context.Context, t *store.Task, c tasks.Change) error {
	ctx = context.WithoutCancel(ctx) // the record of what happened outlives the request
	for range 10 {
		was := t.State
		wasSettled := tasks.Settled(was)
		next := *t
		if err := tasks.Apply(&next, c, j.now()); err != nil {
			return err
		}
		if c.Kind == tasks.KindDispatch || c.Kind == tasks.KindContinue {
			next.Owner = j.self // whoever sends the task to an agent owns it
		}
		if !tasks.Journaled(&next, c) {
			*t = next
			j.noted(t, wasSettled)
			return nil
		}
		err := j.retry(ctx, func() error { return j.store.Update(ctx, &next) })
		if err == nil {
			*t = next
			j.noted(t, wasSettled)
			j.queuePush(ctx, t, was)
			return nil
		}
		if errors.Is(err, store.ErrTooLarge) && c.Kind != tasks.KindDispatch && len(next.Result) > 0 {
			// The agent's answer is larger than the journal keeps: record the state without it.
			c = c.WithoutResult("the agent's answer is larger than the task journal keeps; only its state is recorded")
			continue
		}
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
		fresh, gerr := j.store.Get(ctx, t.ID)
		if gerr != nil {
			return fmt.Errorf("%w: re-reading task after a conflict: %w", errJournal, gerr)
		}
		*t = *fresh
		if c.Kind == tasks.KindDispatch && j.ownedElsewhere(t) {
			return errOwnedElsewhere
		}
	}
	return fmt.Errorf("%w: task %s kept changing concurrently", errJournal, t.ID)
}

// retry runs a journal write, retrying failures other than conflicts, existence and size with
// backoff. It reports the journal broken while writes fail.
func (j *journal) retry(ctx context.Context, write func() error) error {
	var err error
	for i := 0; ; i++ {
		err = write()
		if err == nil || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrTooLarge) {
			if err == nil && j.broken.CompareAndSwap(true, false) {
				j.log.Info("task journal writes succeed again")
			}
			return err
		}
		if i >= len(j.backoff) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(j.backoff[i]):
		}
	}
	if !j.broken.Swap(true) {
		j.log.Error("task journal write failed; the gateway reports itself not ready", "err", err)
	}
	return fmt.Errorf("%w: %w", errJournal, err)
}

// noted updates what the gateway shows of t and wakes its watchers.
func (j *journal) noted(t *store.Task, wasSettled bool) {
	j.recent.note(t)
	j.watch.notify(t.ID)
	if !wasSettled && tasks.Settled(t.State) {
		j.metrics.TaskFinished(context.Background(), t.Agent, t.Method, string(t.State), t.UpdatedAt.Sub(t.CreatedAt))
	}
}

// settle journals a change that records what has already happened (the agent's answer, a
// cancellation, an end the gateway decided). A task that has ended meanwhile keeps its end. A
// write that fails is logged, not returned: the caller goes on (the client still gets its
// answer), the task stays unfinished in the journal and recovery runs it again (at least once).
func (j *journal) settle(ctx context.Context, t *store.Task, c tasks.Change) {
	if err := j.apply(ctx, t, c); err != nil && !errors.Is(err, tasks.ErrEnded) {
		j.log.Error("journaling a task's change failed", "task", t.ID, "change", c.Kind.String(), "err", err)
	}
}

// end ends t for a reason the gateway decides; see settle.
func (j *journal) end(ctx context.Context, t *store.Task, e tasks.Ending, reason string) {
	j.settle(ctx, t, tasks.End(tasks.Dispatcher, e, reason, nil))
}

// watchers wakes those who wait for a task to change (SubscribeToTask on a task the gateway
// cannot relay from its replica).
type watchers struct {
	mu sync.Mutex
	by map[string]chan struct{}
}

// wait returns a channel closed at the task's next change through this gateway.
func (w *watchers) wait(id string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.by == nil {
		w.by = map[string]chan struct{}{}
	}
	ch, ok := w.by[id]
	if !ok {
		ch = make(chan struct{})
		w.by[id] = ch
	}
	return ch
}

func (w *watchers) notify(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.by[id]; ok {
		close(ch)
		delete(w.by, id)
	}
}

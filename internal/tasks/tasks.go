package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/store"
)

// Actor is who asks for a change.
type Actor int

// Actors.
const (
	// Dispatcher is the part of the gateway that owns the task and runs it.
	Dispatcher Actor = iota
	// Client is the caller who sent the task: it may cancel it and continue it.
	Client
	// Recovery re-dispatches what a previous run (or a dead gateway) left unfinished.
	Recovery
)

func (a Actor) String() string {
	switch a {
	case Dispatcher:
		return "dispatcher"
	case Client:
		return "client"
	case Recovery:
		return "recovery"
	}
	return fmt.Sprintf("Actor(%d)", int(a))
}

// Kind is what a change does.
type Kind int

// Kinds of change.
const (
	KindDispatch Kind = iota + 1 // the task goes to a replica
	KindAnswer                   // the agent said where the task is
	KindEnd                      // the task ends, for a reason the gateway decides
	KindContinue                 // the client answers an input-required task
)

func (k Kind) String() string {
	switch k {
	case KindDispatch:
		return "dispatch"
	case KindAnswer:
		return "answer"
	case KindEnd:
		return "end"
	case KindContinue:
		return "continue"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Replica is where a task is dispatched.
type Replica struct {
	Name, URL string
	// Restarts is the replica's restart count at dispatch: a stateless replica that restarted
	// since no longer knows the task.
	Restarts int
}

// Change is one step of a task's life. Make one with Dispatch, Answer, End or Continue.
type Change struct {
	Kind Kind
	By   Actor

	replica    Replica
	upstreamID string
	state      a2a.State
	ending     Ending
	reason     string
	result     json.RawMessage
}

// Dispatch sends the task to a replica (again, after a failure).
func Dispatch(by Actor, r Replica) Change { return Change{Kind: KindDispatch, By: by, replica: r} }

// Answer records what the agent said of the task: its own id for it (empty when it answered
// with a plain message), its state, and its task object when it sent one.
func Answer(upstreamID string, st a2a.State, result json.RawMessage) Change {
	return Change{Kind: KindAnswer, By: Dispatcher, upstreamID: upstreamID, state: st, result: result}
}

// End ends the task for a reason e, with a human-readable reason and the last task object when
// one is known.
func End(by Actor, e Ending, reason string, result json.RawMessage) Change {
	return Change{Kind: KindEnd, By: by, ending: e, reason: reason, result: result}
}

// WithoutResult is c without the task object it carries, with reason instead: for an answer
// too large to journal.
func (c Change) WithoutResult(reason string) Change {
	c.result, c.reason = nil, reason
	return c
}

// Continue sends the client's answer to an input-required task.
func Continue() Change { return Change{Kind: KindContinue, By: Client} }

// Errors of Apply; match with errors.Is.
var (
	// ErrEnded: the task is terminal and never changes again.
	ErrEnded = errors.New("the task has already ended")
	// ErrNotAllowed: the change is not a transition of the state machine, or not one this actor
	// may make.
	ErrNotAllowed = errors.New("change not allowed")
)

// Next is the state a change leads to from the task's state, or an error when the state
// machine does not allow it. started tells whether the agent had already taken the task (it
// reported an id for it), which decides between rejected and failed for some endings.
func Next(from store.TaskState, c Change, started bool) (store.TaskState, error) {
	if from.Terminal() {
		return from, ErrEnded
	}
	if !allowedBy(c) {
		return from, fmt.Errorf("%w: the %s may not %s a task", ErrNotAllowed, c.By, c.Kind)
	}
	switch c.Kind {
	case KindDispatch:
		if from == store.StateInputReq {
			return from, fmt.Errorf("%w: an input-required task is continued, not re-dispatched", ErrNotAllowed)
		}
		return store.StateDispatched, nil
	case KindContinue:
		if from != store.StateInputReq {
			return from, fmt.Errorf("%w: only an input-required task can be continued, this one is %s", ErrNotAllowed, from)
		}
		return store.StateDispatched, nil
	case KindAnswer:
		if from == store.StateAccepted {
			return from, fmt.Errorf("%w: an answer for a task that was never dispatched", ErrNotAllowed)
		}
		return AnswerState(c.upstreamID, c.state), nil
	case KindEnd:
		return c.ending.State(started), nil
	}
	return from, fmt.Errorf("%w: unknown change %v", ErrNotAllowed, c.Kind)
}

// allowedBy says which actor may make which kind of change.
func allowedBy(c Change) bool {
	switch c.By {
	case Dispatcher:
		return c.Kind != KindContinue
	case Client:
		return c.Kind == KindContinue || (c.Kind == KindEnd && c.ending == CanceledByClient)
	case Recovery:
		return c.Kind == KindDispatch || (c.Kind == KindEnd && c.ending == Unrecoverable)
	}
	return false
}

// AnswerState is the journal state of an agent's answer: its final states end the task,
// input-required and auth-required wait for the client, anything else is still working. An
// answer with no task id is a plain message: the exchange is complete.
func AnswerState(upstreamID string, st a2a.State) store.TaskState {
	if upstreamID == "" && !st.Terminal() && st != a2a.StateInputRequired && st != a2a.StateAuthRequired {
		return store.StateCompleted
	}
	switch st {
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

// WireState is the A2A state of a journal state.
func WireState(s store.TaskState) a2a.State {
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

// Settled reports whether a task waits for nobody but its client: it ended, or it needs the
// client's input.
func Settled(s store.TaskState) bool { return s.Terminal() || s == store.StateInputReq }

// Apply makes change c to t at now, or returns why it may not: ErrEnded for a task that has
// ended, ErrNotAllowed for a change the state machine forbids. t is unchanged on error.
func Apply(t *store.Task, c Change, now time.Time) error {
	next, err := Next(t.State, c, t.UpstreamID != "")
	if err != nil {
		return err
	}
	switch c.Kind {
	case KindDispatch:
		t.Replica, t.ReplicaURL, t.ReplicaRestarts = c.replica.Name, c.replica.URL, c.replica.Restarts
		t.UpstreamID = ""
		t.Attempts++
	case KindAnswer:
		if c.upstreamID != "" {
			t.UpstreamID = c.upstreamID
		}
	}
	if c.reason != "" {
		t.Reason = c.reason
	}
	if c.result != nil {
		t.Result = c.result
	}
	t.State = next
	t.UpdatedAt = now
	return nil
}

// Journaled reports whether change c to t must be written to the journal before the task goes
// on. Everything is, except the dispatch of a blocking send: its client is connected and waits,
// and after a crash an accepted task and a dispatched one are recovered the same way, so the
// write would buy nothing; the next write (the answer) records the replica too.
func Journaled(t *store.Task, c Change) bool {
	if c.Kind == KindDispatch || c.Kind == KindContinue {
		m, _ := a2a.LookupMethod(t.Method)
		return m.Kind != a2a.KindSend || t.Async
	}
	return true
}

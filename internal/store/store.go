package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// TaskState is where a task is in its life. The terminal states are Completed, Failed, Canceled
// and Rejected.
type TaskState string

// Task states.
const (
	StateAccepted   TaskState = "accepted"   // journaled, not yet sent to a replica
	StateDispatched TaskState = "dispatched" // sent to Replica; the agent is working on it
	StateInputReq   TaskState = "input-required"
	StateCompleted  TaskState = "completed"
	StateFailed     TaskState = "failed"
	StateCanceled   TaskState = "canceled"
	StateRejected   TaskState = "rejected"
)

// Terminal reports whether no further change is expected.
func (s TaskState) Terminal() bool {
	switch s {
	case StateCompleted, StateFailed, StateCanceled, StateRejected:
		return true
	}
	return false
}

// Task is one journaled task.
type Task struct {
	ID      string `json:"id"` // the gateway task id clients see
	Agent   string `json:"agent"`
	Subject string `json:"subject,omitempty"` // who asked
	Tenant  string `json:"tenant,omitempty"`
	// Groups of the subject when it asked, so that a gateway the task is forwarded to
	// authorizes it as the gateway that accepted it did.
	Groups []string `json:"groups,omitempty"`
	// Owner is the id of the gateway that runs the task; empty for a gateway outside a fleet.
	// Its lease on the task holds while it sends fleet heartbeats (package fleet); when they
	// stop, another gateway of the journal claims the task by compare-and-set on Revision.
	Owner string `json:"owner,omitempty"`
	// Origin is, for a task another gateway forwarded here, that gateway's id: such a task runs
	// on this gateway's own replicas only (one hop).
	Origin     string `json:"origin,omitempty"`
	ContextID  string `json:"contextId,omitempty"`
	MessageID  string `json:"messageId,omitempty"`
	Method     string `json:"method"`  // the JSON-RPC method of the original request
	Dialect    string `json:"dialect"` // "1.0" or "0.3"
	Async      bool   `json:"async,omitempty"`
	Priority   string `json:"priority,omitempty"`   // urgent, normal (default) or batch
	Request    []byte `json:"request"`              // the original JSON-RPC request, for re-dispatch
	Replica    string `json:"replica,omitempty"`    // endpoint name now holding the task
	ReplicaURL string `json:"replicaUrl,omitempty"` // its URL at dispatch time
	// ReplicaRestarts is the replica's restart count at dispatch time: a stateless replica that
	// restarted since (same name and address, a new process) no longer knows the task.
	ReplicaRestarts int       `json:"replicaRestarts,omitempty"`
	UpstreamID      string    `json:"upstreamId,omitempty"` // the task id on that replica
	Attempts        int       `json:"attempts"`             // dispatches so far
	State           TaskState `json:"state"`
	Reason          string    `json:"reason,omitempty"` // why it failed, was rejected or re-dispatched
	Result          []byte    `json:"result,omitempty"` // last known A2A task object (JSON), in the task's dialect
	// Trace carries the W3C trace context of the request that created the task, so that a
	// queued task's dispatch joins the client's trace.
	Trace map[string]string `json:"trace,omitempty"`
	// Push are the client's push notification configs: where the gateway POSTs the task when
	// its state changes. They hold credentials: never log them or show them outside the A2A
	// push config methods.
	Push      []PushConfig `json:"push,omitempty"`
	CreatedAt time.Time    `json:"createdAt"`
	UpdatedAt time.Time    `json:"updatedAt"`

	// Revision is the journal's revision of this record, set by Get, Create and Update; Update
	// succeeds only if it still matches.
	Revision uint64 `json:"-"`

	// blobs names where the JetStream journal keeps Request and Result of this revision when
	// they are stored apart from the record, so that Update can keep an unchanged request
	// without writing it again.
	blobs taskBlobs
}

// Errors the journal returns; match with errors.Is.
var (
	ErrNotFound = errors.New("task not found")
	ErrExists   = errors.New("task already exists")
	ErrConflict = errors.New("task was changed concurrently")
	// ErrTooLarge means a task is larger than the journal's Limits; the error is a
	// *TooLargeError that names the field, its size and the limit.
	ErrTooLarge = errors.New("task too large for the journal")
)

// TooLargeError is the error Create and Update return for a task over the journal's Limits.
// errors.Is(err, ErrTooLarge) matches it.
type TooLargeError struct {
	Field string // "request", "result", or "record" (every other field together)
	Size  int64  // bytes
	Limit int64  // bytes
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s of %d bytes is larger than the journal's limit of %d bytes", e.Field, e.Size, e.Limit)
}

// Unwrap makes errors.Is(err, ErrTooLarge) true.
func (e *TooLargeError) Unwrap() error { return ErrTooLarge }

// Defaults for Limits: the gateway's default request body limit, and the largest answer it
// relays.
const (
	DefaultMaxRequestBytes = 8 << 20
	DefaultMaxResultBytes  = 64 << 20
	// MaxRecordBytes bounds everything in a task but Request and Result (ids, reason, trace).
	MaxRecordBytes = 512 << 10
)

// Limits bound what one task may hold. Every journal stores any task within its limits, whatever
// the server's largest message; a task over them is refused with ErrTooLarge.
type Limits struct {
	// MaxRequestBytes bounds Task.Request. Default DefaultMaxRequestBytes (8 MiB); set it to
	// the gateway's request body limit when that is raised.
	MaxRequestBytes int64
	// MaxResultBytes bounds Task.Result. Default DefaultMaxResultBytes (64 MiB).
	MaxResultBytes int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxRequestBytes <= 0 {
		l.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if l.MaxResultBytes <= 0 {
		l.MaxResultBytes = DefaultMaxResultBytes
	}
	return l
}

// check refuses a task whose request or result is over the limits.
func (l Limits) check(t *Task) error {
	if n := int64(len(t.Request)); n > l.MaxRequestBytes {
		return &TooLargeError{Field: "request", Size: n, Limit: l.MaxRequestBytes}
	}
	if n := int64(len(t.Result)); n > l.MaxResultBytes {
		return &TooLargeError{Field: "result", Size: n, Limit: l.MaxResultBytes}
	}
	return nil
}

// checkRest refuses a task whose fields other than Request and Result take more than limit
// bytes as JSON.
func checkRest(t *Task, limit int) error {
	rest := *t
	rest.Request, rest.Result = nil, nil
	data, err := json.Marshal(&rest)
	if err != nil {
		return fmt.Errorf("encode task: %w", err)
	}
	if len(data) > limit {
		return &TooLargeError{Field: "record", Size: int64(len(data)), Limit: int64(limit)}
	}
	return nil
}

// LimitsOf returns the limits of j, and false if j does not tell them. Both journals in this
// package do (JetStream.Limits, Memory.Limits).
func LimitsOf(j Journal) (Limits, bool) {
	l, ok := j.(interface{ Limits() Limits })
	if !ok {
		return Limits{}, false
	}
	return l.Limits(), true
}

// Journal stores tasks durably and queues asynchronous ones.
//
// Every error is a failed operation: nothing was stored (or, for Get and Pending, nothing
// could be read), and the caller must not answer as if it had been.
//
// Size: a journal stores any task within its Limits (see LimitsOf), and refuses a larger one
// with ErrTooLarge (a *TooLargeError) without storing anything. The gateway should check a
// request body against Limits.MaxRequestBytes before it creates the task, and answer 413 with
// the limit in the message when Create returns ErrTooLarge (never 503: a retry cannot
// succeed). It should relay answers no larger than Limits.MaxResultBytes, so that the final
// Update can hold them; an Update refused with ErrTooLarge leaves the stored task as it was.
type Journal interface {
	// Create stores a new task. It fails with ErrExists if the id is taken, and with
	// ErrTooLarge if the task is over the journal's limits.
	Create(ctx context.Context, t *Task) error
	// Get returns the task with id, or ErrNotFound.
	Get(ctx context.Context, id string) (*Task, error)
	// Update stores t if the stored revision still equals t.Revision, and sets t.Revision to the
	// new one; otherwise it returns ErrConflict and the caller re-reads and retries. It fails
	// with ErrTooLarge, storing nothing, if t is over the journal's limits.
	Update(ctx context.Context, t *Task) error
	// Pending returns every task not in a terminal state, for recovery after a restart.
	Pending(ctx context.Context) ([]*Task, error)
	// List returns an Entry for every task of agent the journal holds, in no order.
	List(ctx context.Context, agent string) ([]Entry, error)

	// Notify durably queues a push notification for task id at revision rev (see Notice).
	// Notifying the same id and revision again while the first is waiting may do nothing.
	Notify(ctx context.Context, id string, rev uint64) error
	// ConsumeNotifications calls handle for each queued notice, with at most max calls at once
	// and never two for one task at once within the process, until ctx ends. A notice is
	// removed when handle returns nil; when handle returns an error, or the process dies before
	// it returns, it is delivered again later: after the delay of a *RetryError, or after a
	// short backoff.
	ConsumeNotifications(ctx context.Context, max int, handle func(ctx context.Context, n Notice) error) error

	// Enqueue durably queues task id for asynchronous dispatch.
	Enqueue(ctx context.Context, id string) error
	// Consume calls handle for each queued id, with at most max calls at once, until ctx ends.
	// An id is removed from the queue when handle returns nil; when handle returns an error, or
	// the process dies before it returns, the id is delivered again later.
	Consume(ctx context.Context, max int, handle func(ctx context.Context, id string) error) error
}

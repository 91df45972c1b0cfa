package store

import (
	"context"
	"errors"
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
	ID         string `json:"id"` // the gateway task id clients see
	Agent      string `json:"agent"`
	Subject    string `json:"subject,omitempty"` // who asked
	Tenant     string `json:"tenant,omitempty"`
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
	Trace     map[string]string `json:"trace,omitempty"`
	CreatedAt time.Time         `json:"createdAt"`
	UpdatedAt time.Time         `json:"updatedAt"`

	// Revision is the journal's revision of this record, set by Get, Create and Update; Update
	// succeeds only if it still matches.
	Revision uint64 `json:"-"`
}

// Errors the journal returns; match with errors.Is.
var (
	ErrNotFound = errors.New("task not found")
	ErrExists   = errors.New("task already exists")
	ErrConflict = errors.New("task was changed concurrently")
)

// Journal stores tasks durably and queues asynchronous ones.
type Journal interface {
	// Create stores a new task. It fails with ErrExists if the id is taken.
	Create(ctx context.Context, t *Task) error
	// Get returns the task with id, or ErrNotFound.
	Get(ctx context.Context, id string) (*Task, error)
	// Update stores t if the stored revision still equals t.Revision, and sets t.Revision to the
	// new one; otherwise it returns ErrConflict and the caller re-reads and retries.
	Update(ctx context.Context, t *Task) error
	// Pending returns every task not in a terminal state, for recovery after a restart.
	Pending(ctx context.Context) ([]*Task, error)

	// Enqueue durably queues task id for asynchronous dispatch.
	Enqueue(ctx context.Context, id string) error
	// Consume calls handle for each queued id, with at most max calls at once, until ctx ends.
	// An id is removed from the queue when handle returns nil; when handle returns an error, or
	// the process dies before it returns, the id is delivered again later.
	Consume(ctx context.Context, max int, handle func(ctx context.Context, id string) error) error
}

package tasks

import (
	"fmt"

	"github.com/agentplane/agentplane/internal/store"
)

// Ending is why the gateway ends a task. Each maps to one journal state (State), the same for
// blocking, streaming and queued tasks; this is the one place that decides it.
type Ending int

// Endings.
const (
	// AgentError: the agent answered with a JSON-RPC error. Before the agent took the task (it
	// reported no id for it) the task was never started: rejected. After, it failed.
	AgentError Ending = iota + 1
	// InvalidAnswer: the agent's answer was not JSON-RPC.
	InvalidAnswer
	// Unsupported: the agent does not speak the request's A2A dialect.
	Unsupported
	// AtCapacity: every replica was busy and the queue full, or the wait passed its deadline.
	AtCapacity
	// Residency: no replica in a site the agent's data may go to.
	Residency
	// Exhausted: no replica could run the task within the attempts and the retry budget.
	Exhausted
	// QueueTimeout: a queued task found no ready replica within the queue timeout.
	QueueTimeout
	// CanceledByClient: the client canceled the task.
	CanceledByClient
	// Unrecoverable: a task left by an earlier run whose request cannot be sent again.
	Unrecoverable
	// AgentRemoved: the agent was removed while the task waited for a replica.
	AgentRemoved
)

var endingNames = map[Ending]string{
	AgentError: "agent_error", InvalidAnswer: "invalid_answer", Unsupported: "unsupported",
	AtCapacity: "at_capacity", Residency: "residency", Exhausted: "exhausted",
	QueueTimeout: "queue_timeout", CanceledByClient: "canceled", Unrecoverable: "unrecoverable",
	AgentRemoved: "agent_removed",
}

func (e Ending) String() string {
	if s, ok := endingNames[e]; ok {
		return s
	}
	return fmt.Sprintf("Ending(%d)", int(e))
}

// State is the terminal journal state of ending e. started reports whether the agent had
// taken the task before it ended.
func (e Ending) State(started bool) store.TaskState {
	switch e {
	case AgentError:
		if started {
			return store.StateFailed
		}
		return store.StateRejected
	case Unsupported, AtCapacity, Residency:
		return store.StateRejected
	case CanceledByClient:
		return store.StateCanceled
	}
	return store.StateFailed // InvalidAnswer, Exhausted, QueueTimeout, Unrecoverable, AgentRemoved
}

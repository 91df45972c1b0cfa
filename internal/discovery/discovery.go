// Package discovery is the seam between whatever runs agent replicas and the gateway that routes
// tasks to them. In embedded mode the supervisor is the Source; on Kubernetes it will be
// EndpointSlices and Pods. The gateway never needs to know which.
//
// It holds data types and one interface only; it does not probe, balance or start anything.
package discovery

import "time"

// Replica states, in the words of Kubernetes' container states so that operators read them the
// same way in both runtimes.
const (
	StatePending          = "Pending"          // not started yet
	StateStarting         = "Starting"         // process running, startup probe not passed yet
	StateRunning          = "Running"          // started; Ready says whether it takes tasks
	StateCrashLoopBackOff = "CrashLoopBackOff" // exited; waiting Backoff before the next start
	StateTerminating      = "Terminating"      // being stopped; takes no new tasks
	StateStopped          = "Stopped"          // stopped for good
)

// Why a replica is not ready (Endpoint.Reason).
const (
	ReasonStartFailed           = "StartFailed"           // its process could not be started
	ReasonStartupProbeFailing   = "StartupProbeFailing"   // started, does not answer its startup probe yet
	ReasonStartupProbeFailed    = "StartupProbeFailed"    // killed: no answer to its startup probe in time
	ReasonReadinessProbeFailing = "ReadinessProbeFailing" // running, fails its readiness probe
	ReasonLivenessProbeFailed   = "LivenessProbeFailed"   // killed: failed its liveness probe
	ReasonExited                = "Exited"                // its process exited
)

// Endpoint is one replica of an agent as the gateway and the admin API see it.
type Endpoint struct {
	// Agent is the agent's name.
	Agent string `json:"agent"`
	// Name is stable across restarts, such as "triage-0". While a replica is replaced by a
	// rolling update, its old and new process are both listed under its name for a moment, with
	// different URLs: per-replica state is keyed by URL.
	Name string `json:"name"`
	// Index is the replica's ordinal, 0-based.
	Index int `json:"index"`
	// URL is the base URL of the replica, such as http://127.0.0.1:41234. It may change when
	// the replica restarts, so per-replica health state is keyed by URL.
	URL string `json:"url,omitempty"`
	// Ready is true when the replica should receive tasks.
	Ready bool `json:"ready"`
	// State is one of the State* constants.
	State string `json:"state"`
	// Site and Zone place the replica.
	Site string `json:"site,omitempty"`
	// Gateway marks another gateway of the fleet that serves the agent at its own site: tasks
	// spill there when this site cannot take them (see package fleet).
	Gateway bool `json:"gateway,omitempty"`
	// Capacity, when set, is how many tasks the endpoint takes at once in place of the agent's
	// maxConcurrency: a peer gateway's free slots.
	Capacity int    `json:"capacity,omitempty"`
	Zone     string `json:"zone,omitempty"`
	// PID of the replica's process in embedded mode; 0 when not running or not known.
	PID int `json:"pid,omitempty"`
	// Restarts counts how often the replica was restarted.
	Restarts int `json:"restarts"`
	// LastExit describes the last exit, such as "exit status 2" or "signal: killed".
	LastExit string `json:"lastExit,omitempty"`
	// Reason says in a word (one of the Reason* constants) why the replica is not ready, or
	// why its last run ended; Message says it in a sentence, such as the probe's last error.
	// Both are empty once the replica is ready.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// StderrTail is the last lines (at most 10, each cut to 512 bytes, each ended by a
	// newline) the replica's last run wrote to stderr, kept with Reason while it is not ready:
	// why it could not start is usually there. (A string, not a list, so that an Endpoint
	// stays comparable.)
	StderrTail string `json:"stderrTail,omitempty"`
	// Since is when the replica entered its current State.
	Since time.Time `json:"since"`
	// NextStart is when a replica in CrashLoopBackOff will be started again.
	NextStart time.Time `json:"nextStart,omitzero"`
	// LogPath is the replica's log file in embedded mode.
	LogPath string `json:"logPath,omitempty"`
}

// Agent.State values: the Agent's spec.state (api/v1alpha1 Stateless, Stateful).
const (
	AgentStateless = "stateless"
	AgentStateful  = "stateful"
)

// Agent is an agent with its replicas.
type Agent struct {
	Name           string `json:"name"`
	Description    string `json:"description,omitempty"`
	State          string `json:"state"` // AgentStateless or AgentStateful
	MaxConcurrency int    `json:"maxConcurrency"`
	// Desired is the number of replicas asked for.
	Desired int `json:"desired"`
	// Autoscaled agents follow their task demand (spec.autoscaling on task load): a task for
	// one with no ready replica waits in the gateway's admission queue, up to the queue timeout,
	// while a replica starts, instead of failing at once.
	Autoscaled bool `json:"autoscaled,omitempty"`
	// MinReplicas and MaxReplicas bound an autoscaled agent's replicas.
	MinReplicas int `json:"minReplicas,omitempty"`
	MaxReplicas int `json:"maxReplicas,omitempty"`
	// ScaleReason says why the autoscaler last changed Desired, at ScaledAt, such as
	// "scaled 2→5: load 1.40 over target 0.70".
	ScaleReason string    `json:"scaleReason,omitempty"`
	ScaledAt    time.Time `json:"scaledAt,omitzero"`
	// TaskTimeout bounds one dispatch of a task to a replica; 0 means the gateway's default.
	TaskTimeout time.Duration `json:"taskTimeout,omitempty"`
	// AllowedSites, when not empty, is the data-residency rule: only these sites may serve.
	AllowedSites []string   `json:"allowedSites,omitempty"`
	Endpoints    []Endpoint `json:"replicas"`
}

// ReadyCount is how many replicas are ready (peer gateways are not replicas).
func (a *Agent) ReadyCount() int {
	n := 0
	for _, e := range a.Endpoints {
		if e.Ready && !e.Gateway {
			n++
		}
	}
	return n
}

// Source tells which agents exist and where their replicas are.
//
// Snapshot returns a consistent, immutable view: callers must not modify it. It must be cheap
// (an atomic load), as the gateway calls it on every request. Changed returns a channel that is closed at the next change after the
// call, so watchers loop: ch := s.Changed(); use s.Snapshot(); <-ch.
type Source interface {
	Snapshot() []Agent
	Changed() <-chan struct{}
}

// Lookup returns the agent called name from a snapshot.
func Lookup(agents []Agent, name string) (Agent, bool) {
	for _, a := range agents {
		if a.Name == name {
			return a, true
		}
	}
	return Agent{}, false
}

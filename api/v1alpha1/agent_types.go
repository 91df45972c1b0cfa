package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AgentState says whether replicas of an agent keep conversation state.
// +kubebuilder:validation:Enum=stateless;stateful
type AgentState string

const (
	// Stateless agents keep nothing between tasks; any replica can serve any task.
	Stateless AgentState = "stateless"
	// Stateful agents keep conversation memory; a contextId sticks to one replica,
	// and the replica's memory lives on a volume that survives restarts.
	Stateful AgentState = "stateful"
)

// AgentSpec declares what an agent is and how it runs.
// +kubebuilder:validation:XValidation:rule="self.state != 'stateful' || has(self.memory)",message="stateful agents need spec.memory"
type AgentSpec struct {
	// Description is shown in listings and, when the agent's own card has none, in its card.
	// +optional
	Description string `json:"description,omitempty"`

	// Replicas is the number of replicas to run. Defaults to 1.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// MaxConcurrency is how many tasks one replica works on at once. The gateway never sends a
	// replica more than this. Defaults to 4.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=4
	// +optional
	MaxConcurrency int32 `json:"maxConcurrency,omitempty"`

	// Image is the container image that runs the agent on Kubernetes. Embedded mode ignores it.
	// +optional
	Image string `json:"image,omitempty"`

	// Command is the program and its leading arguments. In embedded mode it is run as a local
	// process; a first element of "agentplane" means this very binary. On Kubernetes it overrides
	// the image's entrypoint.
	// +optional
	Command []string `json:"command,omitempty"`

	// Args are appended to Command.
	// +optional
	Args []string `json:"args,omitempty"`

	// Env holds extra environment variables for each replica.
	// +listType=map
	// +listMapKey=name
	// +optional
	Env []EnvVar `json:"env,omitempty"`

	// State is stateless (any replica serves any task) or stateful (conversations stick to a
	// replica and its memory volume). Defaults to stateless.
	// +kubebuilder:default=stateless
	// +optional
	State AgentState `json:"state,omitempty"`

	// Memory is the persistent memory of a stateful agent.
	// +optional
	Memory *MemorySpec `json:"memory,omitempty"`

	// Probes tell when a replica is started, ready for tasks and still alive.
	// +optional
	Probes *Probes `json:"probes,omitempty"`

	// Placement says where replicas may run and where task data may go.
	// +optional
	Placement *Placement `json:"placement,omitempty"`
}

// EnvVar is one environment variable.
type EnvVar struct {
	// Name of the variable.
	// +required
	Name string `json:"name"`
	// Value of the variable.
	// +optional
	Value string `json:"value,omitempty"`
}

// MemorySpec is the persistent memory of a stateful agent.
type MemorySpec struct {
	// Size of the memory volume, as a Kubernetes quantity such as "1Gi".
	// +kubebuilder:validation:Pattern=`^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$`
	// +required
	Size string `json:"size"`
}

// Probes configure health checking of replicas. Each probe GETs an HTTP path on the replica.
type Probes struct {
	// Startup gates the other probes until the replica first answers.
	// +optional
	Startup *Probe `json:"startup,omitempty"`
	// Readiness decides whether the gateway sends the replica tasks.
	// +optional
	Readiness *Probe `json:"readiness,omitempty"`
	// Liveness restarts a replica that stops answering.
	// +optional
	Liveness *Probe `json:"liveness,omitempty"`
}

// Probe is one HTTP health check.
type Probe struct {
	// Path to GET. Defaults to the agent card, /.well-known/agent-card.json.
	// +optional
	Path string `json:"path,omitempty"`
	// PeriodSeconds between checks.
	// +kubebuilder:validation:Minimum=1
	// +optional
	PeriodSeconds int32 `json:"periodSeconds,omitempty"`
	// TimeoutSeconds for one check.
	// +kubebuilder:validation:Minimum=1
	// +optional
	TimeoutSeconds int32 `json:"timeoutSeconds,omitempty"`
	// FailureThreshold is how many failures in a row count as failed.
	// +kubebuilder:validation:Minimum=1
	// +optional
	FailureThreshold int32 `json:"failureThreshold,omitempty"`
}

// Placement says where replicas run and where task data may go.
type Placement struct {
	// Site is where replicas run in embedded mode (a hospital, a clinic). On Kubernetes replicas
	// take their site from their node's labels.
	// +optional
	Site string `json:"site,omitempty"`
	// Zones to spread replicas over.
	// +optional
	Zones []string `json:"zones,omitempty"`
	// AllowedSites, when set, is the only set of sites that may serve this agent's tasks
	// (data residency). The gateway refuses a task rather than route it elsewhere.
	// +optional
	AllowedSites []string `json:"allowedSites,omitempty"`
}

// Condition types of an Agent.
const (
	// ConditionReady is true when every desired replica is ready.
	ConditionReady = "Ready"
	// ConditionAvailable is true when at least one replica is ready, so tasks are served.
	ConditionAvailable = "Available"
	// ConditionProgressing is true while replicas are being started or replaced.
	ConditionProgressing = "Progressing"
	// ConditionDegraded is true when some replica is crash-looping or failing probes.
	ConditionDegraded = "Degraded"
)

// AgentStatus is the observed state of an Agent.
type AgentStatus struct {
	// ObservedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Replicas is the number of replicas that exist.
	// +optional
	Replicas int32 `json:"replicas"`
	// ReadyReplicas is the number of replicas that pass readiness.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`
	// Conditions: Ready, Available, Progressing, Degraded.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Agent is an AI agent run with fault tolerance and load balancing.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ag
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.spec.replicas`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.spec.state`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Agent struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec AgentSpec `json:"spec"`
	// +optional
	Status AgentStatus `json:"status,omitempty"`
}

// AgentList is a list of Agents.
// +kubebuilder:object:root=true
type AgentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Agent `json:"items"`
}

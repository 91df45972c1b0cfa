package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
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
// +kubebuilder:validation:XValidation:rule="self.state == 'stateful' || !has(self.memory)",message="only stateful agents have spec.memory"
// +kubebuilder:validation:XValidation:rule="has(self.image) && size(self.image) > 0",message="spec.image is required on Kubernetes"
// +kubebuilder:validation:XValidation:rule="!has(self.minAvailable) || has(self.autoscaling) || !has(self.replicas) || self.replicas == 0 || self.minAvailable < self.replicas",message="spec.minAvailable must be less than spec.replicas, or no replica could ever be evicted"
// +kubebuilder:validation:XValidation:rule="!has(self.minAvailable) || !has(self.autoscaling) || self.minAvailable < (has(self.autoscaling.minReplicas) ? self.autoscaling.minReplicas : 1)",message="spec.minAvailable must be less than spec.autoscaling.minReplicas, or no replica could ever be evicted"
type AgentSpec struct {
	// Description is shown in listings and, when the agent's own card has none, in its card.
	// +optional
	Description string `json:"description,omitempty"`

	// Replicas is the number of replicas to run. Defaults to 1. Under spec.autoscaling it is
	// only where the agent starts (within the bounds); the autoscaler decides from then on.
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

	// TaskTimeout bounds one dispatch of a task to a replica, streaming included; waiting in the
	// gateway's queue does not count. A replica that takes longer is taken for hung: it is
	// ejected and the task goes to another replica. Defaults to the gateway's --task-timeout.
	// +optional
	TaskTimeout *metav1.Duration `json:"taskTimeout,omitempty"`

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

	// WorkingDir is the directory replicas run in, in embedded mode: relative to the directory
	// of the manifest file, which is the default. A relative command path (one with a slash,
	// such as ./bin/agent) is relative to the manifest's directory too, whatever WorkingDir
	// says. Kubernetes ignores it: a replica runs in its image's working directory, and a path
	// on the machine that holds the manifest means nothing inside a container.
	// +optional
	WorkingDir string `json:"workingDir,omitempty"`

	// Env holds extra environment variables for each replica.
	// +kubebuilder:validation:MaxItems=256
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

	// Port the agent listens on inside its container, passed to it as $PORT. Kubernetes only:
	// embedded mode picks a free port per replica. Defaults to 8080.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// ImagePullPolicy of the agent's container: Always, IfNotPresent or Never. Kubernetes only.
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// Resources are the CPU, memory and GPUs one replica requests. Kubernetes only.
	// +optional
	Resources *Resources `json:"resources,omitempty"`

	// Autoscaling, when set, scales the replicas between its bounds, on task load (the default)
	// or on CPU; spec.replicas is then only the starting point.
	// +optional
	Autoscaling *Autoscaling `json:"autoscaling,omitempty"`

	// MinAvailable is how many replicas voluntary disruptions (node drains, upgrades) must leave
	// running. Must be less than the replicas. When unset, one replica at a time may be disrupted.
	// Kubernetes only.
	// +kubebuilder:validation:Minimum=0
	// +optional
	MinAvailable *int32 `json:"minAvailable,omitempty"`

	// Security of the agent's pods. Kubernetes only.
	// +optional
	Security *Security `json:"security,omitempty"`

	// Network says who may reach the replicas. Kubernetes only.
	// +optional
	Network *Network `json:"network,omitempty"`
}

// Resources are what one replica needs.
type Resources struct {
	// Requests are the CPU and memory reserved for a replica, such as {cpu: 500m, memory: 1Gi}.
	// +optional
	Requests corev1.ResourceList `json:"requests,omitempty"`
	// Limits cap a replica's CPU and memory.
	// +optional
	Limits corev1.ResourceList `json:"limits,omitempty"`
	// GPUs is the number of whole GPUs a replica gets. They are requested as GPUResource and the
	// replica tolerates nodes tainted for that resource.
	// +kubebuilder:validation:Minimum=0
	// +optional
	GPUs int32 `json:"gpus,omitempty"`
	// GPUResource is the extended resource that counts GPUs. Defaults to nvidia.com/gpu.
	// +optional
	GPUResource corev1.ResourceName `json:"gpuResource,omitempty"`
}

// Autoscaling scales an agent between bounds. By default it scales on task load: tasks in flight
// plus tasks queued at the gateways, against the agent's slots (replicas × maxConcurrency), in
// embedded mode and on Kubernetes alike, down to zero when minReplicas is 0. With
// targetCPUUtilizationPercentage it makes a CPU HorizontalPodAutoscaler instead (Kubernetes only).
// +kubebuilder:validation:XValidation:rule="!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",message="minReplicas must not exceed maxReplicas"
// +kubebuilder:validation:XValidation:rule="!has(self.targetCPUUtilizationPercentage) || !(has(self.targetLoad) || has(self.scaleToZeroAfter) || has(self.scaleDownDelay))",message="targetCPUUtilizationPercentage scales on CPU with a HorizontalPodAutoscaler; targetLoad, scaleDownDelay and scaleToZeroAfter are for task-based scaling: set one or the other"
// +kubebuilder:validation:XValidation:rule="!has(self.targetCPUUtilizationPercentage) || !has(self.minReplicas) || self.minReplicas >= 1",message="minReplicas 0 needs task-based scaling: a CPU autoscaler cannot scale from zero"
type Autoscaling struct {
	// MinReplicas is the fewest replicas. 0 lets an idle agent go to zero replicas after
	// scaleToZeroAfter; its next task waits in the gateway's queue while a replica starts.
	// Defaults to 1.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1
	// +optional
	MinReplicas *int32 `json:"minReplicas,omitempty"`
	// MaxReplicas is the most replicas.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +required
	MaxReplicas int32 `json:"maxReplicas"`
	// TargetLoad is the fraction of the agent's slots (replicas × maxConcurrency) the autoscaler
	// aims to keep busy, counting queued tasks as demand: 0.7 with 10 tasks wanting a slot and
	// maxConcurrency 4 asks for 4 replicas. Defaults to 0.7.
	// +kubebuilder:validation:Minimum=0.05
	// +kubebuilder:validation:Maximum=1
	// +optional
	TargetLoad *float64 `json:"targetLoad,omitempty"`
	// ScaleDownDelay is how long load must stay low before replicas are removed: the autoscaler
	// removes replicas only down to the most it wanted over this window. Scaling up is at once.
	// Defaults to 5m.
	// +optional
	ScaleDownDelay *metav1.Duration `json:"scaleDownDelay,omitempty"`
	// ScaleToZeroAfter is how long an agent must have had no task before it goes to zero
	// replicas, when minReplicas is 0. Defaults to scaleDownDelay.
	// +optional
	ScaleToZeroAfter *metav1.Duration `json:"scaleToZeroAfter,omitempty"`
	// TargetCPUUtilizationPercentage, when set, scales on CPU instead of task load: a
	// HorizontalPodAutoscaler aims for this average CPU use, relative to the CPU request.
	// Needs resources.requests.cpu; Kubernetes only (embedded mode scales on task load).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	TargetCPUUtilizationPercentage *int32 `json:"targetCPUUtilizationPercentage,omitempty"`
}

// TaskBased reports whether the agent scales on task load (the default) rather than on CPU.
func (a *Autoscaling) TaskBased() bool { return a != nil && a.TargetCPUUtilizationPercentage == nil }

// Security of an agent's pods. Whatever is set here, pods run as a non-root user with a
// read-only root filesystem, no privilege escalation, no capabilities and the runtime's default
// seccomp profile.
type Security struct {
	// AutomountServiceAccountToken mounts a Kubernetes API token into the replicas. Off unless
	// the agent itself calls the Kubernetes API.
	// +optional
	AutomountServiceAccountToken bool `json:"automountServiceAccountToken,omitempty"`
	// RunAsUser is the user id the agent runs as. Defaults to 65532 (the "nonroot" user of
	// distroless images).
	// +kubebuilder:validation:Minimum=1
	// +optional
	RunAsUser *int64 `json:"runAsUser,omitempty"`
}

// Network says who may reach an agent's replicas.
type Network struct {
	// GatewayNamespace is the namespace of the agentplane gateway, the only pods (labelled
	// app.kubernetes.io/name=agentplane-gateway) admitted to the replicas' port. Defaults to the
	// operator's setting, which defaults to the operator's own namespace.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	GatewayNamespace string `json:"gatewayNamespace,omitempty"`
}

// EnvVar is one environment variable.
type EnvVar struct {
	// Name of the variable.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="!(self in ['PORT', 'AGENTPLANE_AGENT', 'AGENTPLANE_REPLICA'])",message="PORT, AGENTPLANE_AGENT and AGENTPLANE_REPLICA are set by agentplane for each replica"
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
	// StorageClassName of the memory volume's claim on Kubernetes; the cluster default when empty.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`
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
	// Zones to spread replicas over. On Kubernetes replicas then run only on nodes of these zones
	// (label topology.kubernetes.io/zone) and are spread evenly over them, at most one apart; a
	// replica that cannot keep the spread stays Pending. Without zones, replicas are spread over
	// whatever zones the nodes have on a best-effort basis.
	// +optional
	Zones []string `json:"zones,omitempty"`
	// AllowedSites, when set, is the only set of sites that may serve this agent's tasks
	// (data residency). The gateway refuses a task rather than route it elsewhere.
	// +optional
	AllowedSites []string `json:"allowedSites,omitempty"`
	// NodeSelector restricts replicas to nodes with these labels. Kubernetes only.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Tolerations let replicas run on tainted nodes. Kubernetes only.
	// +listType=atomic
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
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
	// Autoscaling is the task-based autoscaler's last decision, kept here so that it outlives
	// an operator restart. Unset unless spec.autoscaling scales on task load.
	// +optional
	Autoscaling *AutoscalingStatus `json:"autoscaling,omitempty"`
}

// AutoscalingStatus is the task-based autoscaler's last decision: the replicas the workload is
// set to, and why.
type AutoscalingStatus struct {
	// DesiredReplicas is how many replicas the autoscaler asks for.
	// +kubebuilder:validation:Minimum=0
	// +required
	DesiredReplicas int32 `json:"desiredReplicas"`
	// Reason is the decision in words, such as "scaled 2→5: load 1.40 over target 0.70".
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Reason string `json:"reason,omitempty"`
	// LastScaleTime is when DesiredReplicas last changed.
	// +optional
	LastScaleTime *metav1.Time `json:"lastScaleTime,omitempty"`
}

// Agent is an AI agent run with fault tolerance and load balancing.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ag
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.spec.replicas`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.spec.state`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Autoscaled",type=integer,JSONPath=`.status.autoscaling.desiredReplicas`,priority=1
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.spec.image`,priority=1
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

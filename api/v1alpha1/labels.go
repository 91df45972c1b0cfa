package v1alpha1

// Well-known labels shared by the operator, the gateway's Kubernetes discovery and the install
// manifests.
const (
	// LabelAgent names the Agent that a pod, Service or EndpointSlice belongs to. The operator
	// selects an agent's pods by it.
	LabelAgent = "agentplane.io/agent"
	// LabelSite on a node names the site (a hospital, a clinic) that replicas on it serve from.
	LabelSite = "agentplane.io/site"
	// GatewayAppName is the app.kubernetes.io/name label of gateway pods: the only pods an
	// agent's NetworkPolicy admits.
	GatewayAppName = "agentplane-gateway"
)

// AnnotationManifestDir is set by embedded mode on an agent read from a manifest file: the
// file's absolute directory, against which the agent's relative paths (spec.workingDir, a
// relative spec.command[0]) are resolved. An agent without it (sent to the admin API as YAML)
// keeps the directory of the agent of the same name it replaces, if any, or gets the working
// directory of agentplane up.
const AnnotationManifestDir = "agentplane.io/manifest-dir"

// EnvMemoryDir tells a replica of a stateful agent where its memory is: the mount of its volume
// claim on Kubernetes, a directory per replica under the data directory in embedded mode. What is
// written there outlives the replica's process.
const EnvMemoryDir = "AGENTPLANE_MEMORY_DIR"

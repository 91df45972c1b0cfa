// Package v1alpha1 holds the Agent API, group agentplane.io, version v1alpha1.
//
// The same types serve both runtimes: on Kubernetes they are a custom resource reconciled by the
// operator; in embedded mode they are read from YAML files by internal/manifest and run by the
// supervisor.
// +kubebuilder:object:generate=true
// +groupName=agentplane.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of these types.
var GroupVersion = schema.GroupVersion{Group: "agentplane.io", Version: "v1alpha1"}

var (
	// SchemeBuilder registers the types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds the types of this group and version to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// Kind names.
const (
	KindAgent = "Agent"
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &Agent{}, &AgentList{})
	// The list and create/update/delete options of the group, for API clients.
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

package controller

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/controller/demand"
)

// NewScheme returns a scheme with the built-in kinds and the agentplane API.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err) // static registration; cannot fail
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// CacheOptions limit the operator's informers to the objects it writes (labelled
// app.kubernetes.io/managed-by=agentplane-operator), so that it does not hold every pod and
// Deployment of the cluster in memory, and to the gateway's EndpointSlices (for the
// autoscaler). namespaces, when not empty, limits it to those namespaces, and to
// gatewayNamespace for the gateway's EndpointSlices.
func CacheOptions(gatewayNamespace string, namespaces ...string) cache.Options {
	ours := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy})}
	opts := cache.Options{ByObject: map[client.Object]cache.ByObject{}}
	for _, o := range []client.Object{
		&appsv1.Deployment{}, &appsv1.StatefulSet{}, &corev1.Service{}, &corev1.ServiceAccount{},
		&corev1.Pod{}, &policyv1.PodDisruptionBudget{}, &autoscalingv2.HorizontalPodAutoscaler{},
		&networkingv1.NetworkPolicy{},
	} {
		opts.ByObject[o] = ours
	}
	gateways := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{"app.kubernetes.io/name": demand.GatewayAppName})}
	if len(namespaces) > 0 && gatewayNamespace != "" {
		gateways.Namespaces = map[string]cache.Config{gatewayNamespace: {}}
	}
	opts.ByObject[&discoveryv1.EndpointSlice{}] = gateways
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

// Setup registers the Agent reconciler with mgr.
func Setup(mgr ctrl.Manager, opts Options) error {
	registerMetrics()
	r := &AgentReconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder(FieldOwner),
		Options:  opts,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("agent controller: %w", err)
	}
	return nil
}

package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/autoscale"
)

// Task-based autoscaling, the reconciler's half: the decision lives in status.autoscaling (so
// that it outlives an operator restart), the Autoscaler writes it from the gateways' demand, and
// the reconciler sets the workload's replicas to it. A change of the decision is what triggers
// the reconcile (scaleDecided), and each change is told with a Scaled event and a gauge.

var (
	desiredReplicasGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "agentplane_autoscaler_desired_replicas",
		Help: "Replicas the task-based autoscaler asks for, per Agent.",
	}, []string{"namespace", "agent"})
	demandGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "agentplane_autoscaler_tasks",
		Help: "Tasks of an Agent at the gateways at the autoscaler's last poll, by state (in_flight, queued).",
	}, []string{"namespace", "agent", "state"})
	registerOnce sync.Once
)

// registerMetrics adds the autoscaler's metrics to controller-runtime's registry, which the
// operator's metrics endpoint serves.
func registerMetrics() {
	registerOnce.Do(func() {
		metrics.Registry.MustRegister(desiredReplicasGauge, demandGauge)
	})
}

func forgetMetrics(namespace, name string) {
	l := prometheus.Labels{"namespace": namespace, "agent": name}
	desiredReplicasGauge.DeletePartialMatch(l)
	demandGauge.DeletePartialMatch(l)
}

// scaleDecision is a's status.autoscaling as the reconciler leaves it: nil unless a scales on
// task load; the decision kept within the bounds; or, when task-based autoscaling is switched
// on, the replicas to start from — those running (a workload of a's exists), else spec.replicas,
// within the bounds.
func (r *AgentReconciler) scaleDecision(ctx context.Context, a *v1alpha1.Agent, now time.Time) (*v1alpha1.AutoscalingStatus, error) {
	spec, ok := autoscale.SpecOf(a)
	if !ok {
		forgetMetrics(a.Namespace, a.Name)
		return nil, nil
	}
	clamp := func(n int32) int32 { return min(max(n, int32(spec.MinReplicas)), int32(spec.MaxReplicas)) }
	bounds := fmt.Sprintf("[%d, %d]", spec.MinReplicas, spec.MaxReplicas)
	if cur := a.Status.Autoscaling; cur != nil {
		n := clamp(cur.DesiredReplicas)
		if n == cur.DesiredReplicas {
			desiredReplicasGauge.WithLabelValues(a.Namespace, a.Name).Set(float64(n))
			return cur.DeepCopy(), nil
		}
		return decided(cur, n, fmt.Sprintf("scaled %d→%d: within the bounds %s", cur.DesiredReplicas, n, bounds), now), nil
	}
	from, why := int32(a.DesiredReplicas()), "spec.replicas"
	var obj client.Object = &appsv1.Deployment{}
	if stateful(a) {
		obj = &appsv1.StatefulSet{}
	}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: a.Namespace, Name: a.Name}, obj); client.IgnoreNotFound(err) != nil {
		return nil, err
	} else if err == nil && metav1.IsControlledBy(obj, a) {
		switch o := obj.(type) {
		case *appsv1.Deployment:
			from = ptrOr(o.Spec.Replicas, 1)
		case *appsv1.StatefulSet:
			from = ptrOr(o.Spec.Replicas, 1)
		}
		why = "the running replicas"
	}
	n := clamp(from)
	return decided(nil, n, fmt.Sprintf("task-based autoscaling on: starting from %s (%d) within the bounds %s", why, from, bounds), now), nil
}

// maxReason bounds status.autoscaling.reason (the CRD's maxLength) and the event's note.
const maxReason = 1000

// decided is the status.autoscaling that records replicas and why, after prev.
func decided(prev *v1alpha1.AutoscalingStatus, replicas int32, reason string, now time.Time) *v1alpha1.AutoscalingStatus {
	st := &v1alpha1.AutoscalingStatus{DesiredReplicas: replicas, Reason: truncate(reason, maxReason)}
	if prev == nil || prev.DesiredReplicas != replicas {
		t := metav1.NewTime(now)
		st.LastScaleTime = &t
	} else {
		st.LastScaleTime = prev.LastScaleTime.DeepCopy()
	}
	return st
}

// scaledEvent tells of a change of the decision from before to after: a Scaled event, and the
// gauge.
func (r *AgentReconciler) scaledEvent(agent *v1alpha1.Agent, before, after *v1alpha1.AutoscalingStatus) {
	if after == nil {
		return
	}
	desiredReplicasGauge.WithLabelValues(agent.Namespace, agent.Name).Set(float64(after.DesiredReplicas))
	if before == nil || before.DesiredReplicas != after.DesiredReplicas {
		r.event(agent, corev1.EventTypeNormal, "Scaled", "Scale", "%s", after.Reason)
	}
}

// recordDecision writes d as agent's status.autoscaling, unless the Agent changed since it was
// read (a conflict: the caller decides again on a fresh copy), and tells of it.
func (r *AgentReconciler) recordDecision(ctx context.Context, agent *v1alpha1.Agent, d autoscale.Decision, now time.Time) error {
	before := agent.Status.Autoscaling
	a := agent.DeepCopy()
	a.Status.Autoscaling = decided(before, int32(d.Replicas), d.Reason, now)
	patch := client.MergeFromWithOptions(agent, client.MergeFromWithOptimisticLock{})
	if err := r.Client.Status().Patch(ctx, a, patch, client.FieldOwner(FieldOwner)); err != nil {
		return fmt.Errorf("record autoscaling decision: %w", err)
	}
	r.scaledEvent(a, before, a.Status.Autoscaling)
	return nil
}

// scaleDecided passes updates of an Agent that change the autoscaler's decision, which the
// generation does not count (it is status).
var scaleDecided = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*v1alpha1.Agent)
		n, ok2 := e.ObjectNew.(*v1alpha1.Agent)
		if !ok1 || !ok2 {
			return false
		}
		return desiredOf(o) != desiredOf(n)
	},
}

func desiredOf(a *v1alpha1.Agent) int32 {
	if a.Status.Autoscaling == nil {
		return -1
	}
	return a.Status.Autoscaling.DesiredReplicas
}

package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crcontroller "sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/agentplane/agentplane/api/v1alpha1"
)

// Permissions of the operator, least privilege: it writes only with server-side apply (create and
// patch) and deletes only what it replaces; it never updates objects with a full PUT.
//
// +kubebuilder:rbac:groups=agentplane.io,resources=agents,verbs=get;list;watch
// +kubebuilder:rbac:groups=agentplane.io,resources=agents/status,verbs=get;patch
// +kubebuilder:rbac:groups=agentplane.io,resources=agents/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=services;serviceaccounts,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// EventRecorder records events about an Agent; controller-runtime's recorder (events.k8s.io/v1)
// satisfies it.
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// AgentReconciler reconciles Agents.
type AgentReconciler struct {
	Client   client.Client
	Recorder EventRecorder
	Options  Options
}

var _ reconcile.Reconciler = (*AgentReconciler)(nil)

// statusConflictRetry is how soon a status write that lost a race with another write of the
// Agent is tried again.
const statusConflictRetry = 200 * time.Millisecond

// errRejected wraps an apply the API server refused as invalid: retrying cannot help until the
// Agent changes, so it is reported in the status and not requeued.
var errRejected = errors.New("rejected by the API server")

// Reconcile brings the objects of one Agent in line with its spec and updates its status.
func (r *AgentReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	var agent v1alpha1.Agent
	if err := r.Client.Get(ctx, req.NamespacedName, &agent); err != nil {
		if apierrors.IsNotFound(err) {
			forgetMetrics(req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !agent.DeletionTimestamp.IsZero() {
		forgetMetrics(agent.Namespace, agent.Name)
		return ctrl.Result{}, nil // owner references let the garbage collector remove the rest
	}
	a := agent.DeepCopy()
	a.SetDefaults() // nested defaults (probes) that the CRD schema does not apply
	as, err := r.scaleDecision(ctx, a, time.Now())
	if err != nil {
		return ctrl.Result{}, err
	}
	a.Status.Autoscaling = as

	applyErr := r.apply(ctx, a)
	if applyErr != nil && !errors.Is(applyErr, errRejected) {
		r.event(&agent, corev1.EventTypeWarning, "ApplyFailed", "Apply", "%s", truncate(applyErr.Error(), 900))
		return ctrl.Result{}, applyErr
	}
	if applyErr != nil {
		logger.Info("agent objects rejected", "error", applyErr.Error())
		r.event(&agent, corev1.EventTypeWarning, "Rejected", "Apply", "%s", truncate(applyErr.Error(), 900)) // notes are limited to 1 kB
	}

	obs, err := r.observe(ctx, a)
	if err != nil {
		return ctrl.Result{}, err
	}
	status := computeStatus(a, obs, applyErr)
	if err := r.updateStatus(ctx, &agent, status); apierrors.IsConflict(err) {
		// The cached Agent lags the operator's own last write: not a failure. The write's watch
		// event brings a fresh copy; the requeue is a backstop.
		logger.V(1).Info("agent status changed meanwhile; trying again", "error", err.Error())
		return ctrl.Result{RequeueAfter: statusConflictRetry}, nil
	} else if err != nil {
		return ctrl.Result{}, err
	}
	if applyErr != nil {
		return ctrl.Result{}, reconcile.TerminalError(applyErr)
	}
	return ctrl.Result{}, nil
}

// apply writes every object of a, and removes the ones a no longer needs.
func (r *AgentReconciler) apply(ctx context.Context, a *v1alpha1.Agent) error {
	if err := r.ssa(ctx, buildServiceAccount(a)); err != nil {
		return fmt.Errorf("service account: %w", err)
	}
	if err := r.replaceService(ctx, a); err != nil {
		return err
	}
	if err := r.ssa(ctx, buildService(a)); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if err := r.applyWorkload(ctx, a); err != nil {
		return err
	}
	if err := r.ssa(ctx, buildPDB(a)); err != nil {
		return fmt.Errorf("pod disruption budget: %w", err)
	}
	if cpuAutoscaled(a) {
		if err := r.ssa(ctx, buildHPA(a)); err != nil {
			return fmt.Errorf("horizontal pod autoscaler: %w", err)
		}
	} else if err := r.deleteOwned(ctx, a, &autoscalingv2.HorizontalPodAutoscaler{}); err != nil {
		return err
	}
	if err := r.ssa(ctx, buildNetworkPolicy(a, gatewayNamespace(a, r.Options))); err != nil {
		return fmt.Errorf("network policy: %w", err)
	}
	return nil
}

// applyWorkload writes the Deployment or StatefulSet and deletes the other kind, so that switching
// spec.state replaces one with the other.
func (r *AgentReconciler) applyWorkload(ctx context.Context, a *v1alpha1.Agent) error {
	if stateful(a) {
		if err := r.deleteOwned(ctx, a, &appsv1.Deployment{}); err != nil {
			return err
		}
		if err := r.handOverReplicas(ctx, a, &appsv1.StatefulSet{}); err != nil {
			return err
		}
		if err := r.ssa(ctx, buildStatefulSet(a)); err != nil {
			return fmt.Errorf("stateful set: %w", err)
		}
		return nil
	}
	if err := r.deleteOwned(ctx, a, &appsv1.StatefulSet{}); err != nil {
		return err
	}
	if err := r.handOverReplicas(ctx, a, &appsv1.Deployment{}); err != nil {
		return err
	}
	if err := r.ssa(ctx, buildDeployment(a)); err != nil {
		return fmt.Errorf("deployment: %w", err)
	}
	return nil
}

// handoverOwner is the field manager that holds a workload's replicas between the operator
// letting go of them and the autoscaler first writing them.
const handoverOwner = "agentplane-operator-handover"

// handOverReplicas keeps the replica count when CPU autoscaling is switched on. The operator
// stops applying spec.replicas then; server-side apply would remove a field its only owner stops
// applying, resetting the workload to one replica until the autoscaler acts. So the current count
// is first applied under a second field manager, which the autoscaler displaces when it scales.
// (Task-based autoscaling needs none of this: the operator keeps applying the replicas itself.)
func (r *AgentReconciler) handOverReplicas(ctx context.Context, a *v1alpha1.Agent, obj client.Object) error {
	if !cpuAutoscaled(a) {
		return nil
	}
	key := types.NamespacedName{Namespace: a.Namespace, Name: a.Name}
	if err := r.Client.Get(ctx, key, obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(obj, a) || !ownsField(obj.GetManagedFields(), FieldOwner, "f:spec", "f:replicas") {
		return nil
	}
	var replicas int32
	var ac runtime.ApplyConfiguration
	switch o := obj.(type) {
	case *appsv1.Deployment:
		replicas = ptrOr(o.Spec.Replicas, 1)
		ac = appsv1ac.Deployment(a.Name, a.Namespace).WithSpec(appsv1ac.DeploymentSpec().WithReplicas(replicas))
	case *appsv1.StatefulSet:
		replicas = ptrOr(o.Spec.Replicas, 1)
		ac = appsv1ac.StatefulSet(a.Name, a.Namespace).WithSpec(appsv1ac.StatefulSetSpec().WithReplicas(replicas))
	default:
		return fmt.Errorf("hand over replicas: unexpected %T", obj)
	}
	if err := r.Client.Apply(ctx, ac, client.FieldOwner(handoverOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("hand over replicas to the autoscaler: %w", err)
	}
	return nil
}

// ownsField reports whether manager applied the field at path (in managedFields notation).
func ownsField(entries []metav1.ManagedFieldsEntry, manager string, path ...string) bool {
	for _, e := range entries {
		if e.Manager != manager || e.Operation != metav1.ManagedFieldsOperationApply || e.FieldsV1 == nil {
			continue
		}
		var m map[string]any
		if json.Unmarshal(e.FieldsV1.GetRawBytes(), &m) != nil {
			continue
		}
		found := true
		for _, p := range path {
			next, ok := m[p].(map[string]any)
			if !ok {
				found = false
				break
			}
			m = next
		}
		if found {
			return true
		}
	}
	return false
}

// replaceService deletes a Service whose clusterIP cannot be changed in place: a stateless
// agent's has an address, a stateful agent's is headless.
func (r *AgentReconciler) replaceService(ctx context.Context, a *v1alpha1.Agent) error {
	var svc corev1.Service
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: a.Namespace, Name: a.Name}, &svc); err != nil {
		return client.IgnoreNotFound(err)
	}
	headless := svc.Spec.ClusterIP == corev1.ClusterIPNone
	if headless == stateful(a) || !metav1.IsControlledBy(&svc, a) {
		return nil
	}
	if err := r.Client.Delete(ctx, &svc, client.Preconditions{UID: &svc.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("replace service: %w", err)
	}
	r.event(a, corev1.EventTypeNormal, "Replaced", "Delete", "Service %s recreated as %s", a.Name, map[bool]string{true: "headless", false: "ClusterIP"}[stateful(a)])
	return nil
}

// deleteOwned deletes the object of obj's kind named after a, if a controls it.
func (r *AgentReconciler) deleteOwned(ctx context.Context, a *v1alpha1.Agent, obj client.Object) error {
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: a.Namespace, Name: a.Name}, obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(obj, a) || !obj.GetDeletionTimestamp().IsZero() {
		return nil
	}
	uid := obj.GetUID()
	err := r.Client.Delete(ctx, obj, client.Preconditions{UID: &uid}, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete %T: %w", obj, err)
	}
	r.event(a, corev1.EventTypeNormal, "Deleted", "Delete", "%s %s is no longer needed", kindOf(obj), a.Name)
	return nil
}

// ssa applies ac with the operator's field owner, taking over fields another manager set. An
// object the API server refuses as invalid is errRejected.
func (r *AgentReconciler) ssa(ctx context.Context, ac runtime.ApplyConfiguration) error {
	err := r.Client.Apply(ctx, ac, client.FieldOwner(FieldOwner), client.ForceOwnership)
	if apierrors.IsInvalid(err) {
		return fmt.Errorf("%w: %v", errRejected, err)
	}
	return err
}

// observation is what the operator reads back to compute status.
type observation struct {
	// found is false when the workload does not exist (yet).
	found bool
	// generation and observedGeneration of the workload.
	generation, observedGeneration    int64
	desired, replicas, ready, updated int32
	// failing names a replica that is crash-looping or cannot pull its image, with the reason.
	failing string
	// stalled is the workload's own word that its rollout is stuck.
	stalled string
}

func (r *AgentReconciler) observe(ctx context.Context, a *v1alpha1.Agent) (observation, error) {
	var obs observation
	key := types.NamespacedName{Namespace: a.Namespace, Name: a.Name}
	if stateful(a) {
		var sts appsv1.StatefulSet
		if err := r.Client.Get(ctx, key, &sts); err != nil {
			return obs, client.IgnoreNotFound(err)
		}
		if metav1.IsControlledBy(&sts, a) {
			obs.found = true
			obs.generation, obs.observedGeneration = sts.Generation, sts.Status.ObservedGeneration
			obs.desired = ptrOr(sts.Spec.Replicas, 1)
			obs.replicas, obs.ready, obs.updated = sts.Status.Replicas, sts.Status.ReadyReplicas, sts.Status.UpdatedReplicas
		}
	} else {
		var dep appsv1.Deployment
		if err := r.Client.Get(ctx, key, &dep); err != nil {
			return obs, client.IgnoreNotFound(err)
		}
		if metav1.IsControlledBy(&dep, a) {
			obs.found = true
			obs.generation, obs.observedGeneration = dep.Generation, dep.Status.ObservedGeneration
			obs.desired = ptrOr(dep.Spec.Replicas, 1)
			obs.replicas, obs.ready, obs.updated = dep.Status.Replicas, dep.Status.ReadyReplicas, dep.Status.UpdatedReplicas
			for _, c := range dep.Status.Conditions {
				if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse {
					obs.stalled = c.Reason + ": " + c.Message
				}
				if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
					obs.stalled = c.Reason + ": " + c.Message
				}
			}
		}
	}
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(a.Namespace), client.MatchingLabels(selectorLabels(a))); err != nil {
		return obs, err
	}
	for i := range pods.Items {
		if reason := failingReason(&pods.Items[i]); reason != "" {
			obs.failing = pods.Items[i].Name + ": " + reason
			break
		}
	}
	return obs, nil
}

// failingReason is why a pod's agent container cannot run, or "" when it can (or is just
// starting).
func failingReason(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return ""
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Waiting == nil {
			continue
		}
		switch cs.State.Waiting.Reason {
		case "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
			"CreateContainerConfigError", "CreateContainerError", "RunContainerError":
			return cs.State.Waiting.Reason
		}
	}
	return ""
}

// computeStatus derives the Agent's status from what was observed. applyErr, when not nil, is
// why the objects could not be written.
func computeStatus(a *v1alpha1.Agent, obs observation, applyErr error) v1alpha1.AgentStatus {
	st := v1alpha1.AgentStatus{
		ObservedGeneration: a.Generation,
		Replicas:           obs.replicas,
		ReadyReplicas:      obs.ready,
		Autoscaling:        a.Status.Autoscaling.DeepCopy(),
	}
	desired := obs.desired
	if !cpuAutoscaled(a) || !obs.found {
		desired = workloadReplicas(a)
	}
	cond := func(t string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: a.Generation,
		})
	}
	rolledOut := obs.found && obs.observedGeneration >= obs.generation &&
		obs.updated >= desired && obs.replicas == desired
	ready := rolledOut && obs.ready >= desired
	progressing := !rolledOut || obs.ready < desired
	readyMsg := fmt.Sprintf("%d of %d replicas ready", obs.ready, desired)
	var rejected string
	if applyErr != nil {
		rejected = truncate(applyErr.Error(), 512) // API errors quote whole objects
	}

	switch {
	case applyErr != nil:
		cond(v1alpha1.ConditionReady, false, "Rejected", rejected)
	case ready:
		cond(v1alpha1.ConditionReady, true, "ReplicasReady", readyMsg)
	default:
		cond(v1alpha1.ConditionReady, false, "ReplicasNotReady", readyMsg)
	}
	switch {
	case obs.ready > 0 || (obs.found && desired == 0):
		cond(v1alpha1.ConditionAvailable, true, "ReplicasAvailable", readyMsg)
	default:
		cond(v1alpha1.ConditionAvailable, false, "NoReplicaReady", readyMsg)
	}
	switch {
	case applyErr != nil:
		cond(v1alpha1.ConditionProgressing, false, "Rejected", rejected)
	case obs.stalled != "":
		cond(v1alpha1.ConditionProgressing, false, "RolloutStalled", obs.stalled)
	case progressing:
		cond(v1alpha1.ConditionProgressing, true, "RollingOut", readyMsg)
	default:
		cond(v1alpha1.ConditionProgressing, false, "RolledOut", readyMsg)
	}
	switch {
	case applyErr != nil:
		cond(v1alpha1.ConditionDegraded, true, "Rejected", rejected)
	case obs.failing != "":
		cond(v1alpha1.ConditionDegraded, true, "ReplicaFailing", obs.failing)
	case obs.stalled != "":
		cond(v1alpha1.ConditionDegraded, true, "RolloutStalled", obs.stalled)
	default:
		cond(v1alpha1.ConditionDegraded, false, "AsExpected", "no replica is failing")
	}
	return st
}

// updateStatus writes status if it changed, keeping each condition's lastTransitionTime when
// its status did not change, and records an event when Ready flips.
func (r *AgentReconciler) updateStatus(ctx context.Context, agent *v1alpha1.Agent, st v1alpha1.AgentStatus) error {
	merged := agent.Status.DeepCopy()
	merged.ObservedGeneration, merged.Replicas, merged.ReadyReplicas = st.ObservedGeneration, st.Replicas, st.ReadyReplicas
	merged.Autoscaling = st.Autoscaling
	for _, c := range st.Conditions {
		meta.SetStatusCondition(&merged.Conditions, c)
	}
	if equalStatus(&agent.Status, merged) {
		return nil
	}
	before := agent.Status.Autoscaling.DeepCopy()
	wasReady := meta.IsStatusConditionTrue(agent.Status.Conditions, v1alpha1.ConditionReady)
	isReady := meta.IsStatusConditionTrue(merged.Conditions, v1alpha1.ConditionReady)
	patch := client.MergeFromWithOptions(agent.DeepCopy(), client.MergeFromWithOptimisticLock{})
	agent.Status = *merged
	if err := r.Client.Status().Patch(ctx, agent, patch, client.FieldOwner(FieldOwner)); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	r.scaledEvent(agent, before, merged.Autoscaling)
	if wasReady != isReady {
		c := meta.FindStatusCondition(merged.Conditions, v1alpha1.ConditionReady)
		typ := corev1.EventTypeNormal
		if !isReady {
			typ = corev1.EventTypeWarning
		}
		r.event(agent, typ, map[bool]string{true: "Ready", false: "NotReady"}[isReady], "Status", "%s", c.Message)
	}
	return nil
}

func equalStatus(a, b *v1alpha1.AgentStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || a.Replicas != b.Replicas || a.ReadyReplicas != b.ReadyReplicas ||
		len(a.Conditions) != len(b.Conditions) || !equality.Semantic.DeepEqual(a.Autoscaling, b.Autoscaling) {
		return false
	}
	for _, c := range a.Conditions {
		o := meta.FindStatusCondition(b.Conditions, c.Type)
		if o == nil || o.Status != c.Status || o.Reason != c.Reason || o.Message != c.Message || o.ObservedGeneration != c.ObservedGeneration {
			return false
		}
	}
	return true
}

func (r *AgentReconciler) event(obj runtime.Object, typ, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(obj, nil, typ, reason, action, note, args...)
	}
}

// SetupWithManager registers the reconciler: it runs on changes to Agents, to the objects they
// own, and to their pods (for the Degraded condition).
func (r *AgentReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Agent{}, builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, scaleDecided))).
		Owns(&appsv1.Deployment{}).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&autoscalingv2.HorizontalPodAutoscaler{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(podToAgent)).
		Named("agent").
		WithOptions(crcontroller.Options{MaxConcurrentReconciles: max(r.Options.MaxConcurrentReconciles, 1)}).
		Complete(r)
}

// podToAgent maps a pod to the Agent named by its LabelAgent label.
func podToAgent(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[LabelAgent]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func kindOf(obj client.Object) string {
	switch obj.(type) {
	case *appsv1.Deployment:
		return "Deployment"
	case *appsv1.StatefulSet:
		return "StatefulSet"
	case *autoscalingv2.HorizontalPodAutoscaler:
		return "HorizontalPodAutoscaler"
	default:
		return fmt.Sprintf("%T", obj)
	}
}

func ptrOr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

func itoa(i int32) string { return strconv.Itoa(int(i)) }

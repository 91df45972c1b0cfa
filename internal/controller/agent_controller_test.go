package controller_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/controller"
)

const image = "registry.example/triage:1.0"

func newAgent(ns, name string, mutate ...func(*v1alpha1.Agent)) *v1alpha1.Agent {
	a := &v1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.AgentSpec{
			Image:    image,
			Replicas: ptr.To[int32](3),
			Args:     []string{"simagent", "--latency", "200ms"},
			Env:      []v1alpha1.EnvVar{{Name: "MODEL", Value: "small"}},
		},
	}
	for _, m := range mutate {
		m(a)
	}
	return a
}

func reconciler() (*controller.AgentReconciler, *eventLog) {
	ev := &eventLog{}
	return &controller.AgentReconciler{Client: env.Client, Recorder: ev, Options: controller.Options{GatewayNamespace: "agentplane-system"}}, ev
}

// reconcileOnce runs one reconcile of a and fails t on error.
func reconcileOnce(t *testing.T, r *controller.AgentReconciler, a *v1alpha1.Agent) {
	t.Helper()
	if _, err := r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(a)}); err != nil {
		t.Fatalf("reconcile %s: %v", a.Name, err)
	}
}

func get[T client.Object](t *testing.T, ns, name string, obj T) T {
	t.Helper()
	if err := env.Client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: name}, obj); err != nil {
		t.Fatalf("get %T %s/%s: %v", obj, ns, name, err)
	}
	return obj
}

func notFound(t *testing.T, ns, name string, obj client.Object) {
	t.Helper()
	err := env.Client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: name}, obj)
	if !apierrors.IsNotFound(err) {
		t.Fatalf("%T %s/%s: want NotFound, got err=%v", obj, ns, name, err)
	}
}

// ownedBy fails t unless obj has a controller owner reference to a.
func ownedBy(t *testing.T, obj client.Object, a *v1alpha1.Agent) {
	t.Helper()
	ref := metav1.GetControllerOf(obj)
	if ref == nil || ref.UID != a.UID || ref.Kind != "Agent" || ref.APIVersion != v1alpha1.GroupVersion.String() ||
		ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Errorf("%T %s: controller owner reference = %+v, want Agent %s (uid %s) blocking deletion", obj, obj.GetName(), ref, a.Name, a.UID)
	}
}

func TestCreateStatelessAgentWritesHardenedObjects(t *testing.T) {
	ns := env.Namespace(t)
	r, events := reconciler()
	a := newAgent(ns, "triage", func(a *v1alpha1.Agent) {
		a.Spec.Port = 9000
		a.Spec.Probes = &v1alpha1.Probes{Readiness: &v1alpha1.Probe{Path: "/ready", PeriodSeconds: 2}}
		a.Spec.Resources = &v1alpha1.Resources{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
			GPUs:     1,
		}
		a.Spec.Placement = &v1alpha1.Placement{
			Zones:        []string{"zone-b", "zone-a"},
			NodeSelector: map[string]string{"pool": "gpu"},
			Tolerations:  []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "agents", Effect: corev1.TaintEffectNoSchedule}},
		}
	})
	if err := env.Client.Create(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)

	dep := get(t, ns, "triage", &appsv1.Deployment{})
	ownedBy(t, dep, a)
	if got := ptr.Deref(dep.Spec.Replicas, -1); got != 3 {
		t.Errorf("deployment replicas = %d, want 3", got)
	}
	if got := dep.Spec.Selector.MatchLabels; len(got) != 1 || got[controller.LabelAgent] != "triage" {
		t.Errorf("selector = %v, want only %s=triage", got, controller.LabelAgent)
	}
	pod := dep.Spec.Template.Spec
	if pod.ServiceAccountName != "triage" || pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("pod service account %q automount %v, want triage and false", pod.ServiceAccountName, pod.AutomountServiceAccountToken)
	}
	psc := pod.SecurityContext
	if psc == nil || !ptr.Deref(psc.RunAsNonRoot, false) || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault ||
		ptr.Deref(psc.RunAsUser, 0) != v1alpha1.DefaultRunAsUser {
		t.Errorf("pod security context = %+v, want non-root %d with RuntimeDefault seccomp", psc, v1alpha1.DefaultRunAsUser)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("containers = %d, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != image || !slices.Equal(c.Args, a.Spec.Args) {
		t.Errorf("container image %q args %v", c.Image, c.Args)
	}
	sc := c.SecurityContext
	if sc == nil || ptr.Deref(sc.AllowPrivilegeEscalation, true) || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) ||
		!ptr.Deref(sc.RunAsNonRoot, false) || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context = %+v, want no escalation, read-only root, non-root, drop ALL", sc)
	}
	vars := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		vars[e.Name] = e
	}
	if vars["PORT"].Value != "9000" || vars["AGENTPLANE_AGENT"].Value != "triage" || vars["MODEL"].Value != "small" ||
		vars["AGENTPLANE_LISTEN_HOST"].Value != "0.0.0.0" {
		t.Errorf("env = %+v", c.Env)
	}
	if f := vars["AGENTPLANE_REPLICA"].ValueFrom; f == nil || f.FieldRef == nil || f.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("AGENTPLANE_REPLICA = %+v, want the pod name from the downward API", vars["AGENTPLANE_REPLICA"])
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9000 || c.Ports[0].Name != "a2a" {
		t.Errorf("ports = %+v, want a2a 9000", c.Ports)
	}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.StrVal != "a2a" {
			t.Errorf("%s probe = %+v, want an HTTP GET on port a2a", name, p)
		}
	}
	if c.ReadinessProbe.HTTPGet.Path != "/ready" || c.ReadinessProbe.PeriodSeconds != 2 || c.ReadinessProbe.FailureThreshold != v1alpha1.DefaultFailureThreshold {
		t.Errorf("readiness probe = %+v, want /ready every 2s, defaults otherwise", c.ReadinessProbe)
	}
	if c.LivenessProbe.HTTPGet.Path != v1alpha1.DefaultProbePath {
		t.Errorf("liveness path = %q, want the agent card", c.LivenessProbe.HTTPGet.Path)
	}
	gpu := corev1.ResourceName(v1alpha1.DefaultGPUResource)
	if q := c.Resources.Requests[gpu]; q.Value() != 1 {
		t.Errorf("gpu request = %v, want 1", q.String())
	}
	if q := c.Resources.Limits[gpu]; q.Value() != 1 {
		t.Errorf("gpu limit = %v, want 1 (extended resources need limit = request)", q.String())
	}
	if q := c.Resources.Requests[corev1.ResourceCPU]; q.MilliValue() != 250 {
		t.Errorf("cpu request = %v, want 250m", q.String())
	}
	if pod.NodeSelector["pool"] != "gpu" {
		t.Errorf("node selector = %v", pod.NodeSelector)
	}
	var tolerated []string
	for _, tol := range pod.Tolerations {
		tolerated = append(tolerated, tol.Key)
	}
	if !slices.Contains(tolerated, "dedicated") || !slices.Contains(tolerated, string(gpu)) {
		t.Errorf("tolerations = %v, want dedicated and %s", tolerated, gpu)
	}
	if len(pod.TopologySpreadConstraints) != 1 {
		t.Fatalf("topology spread = %+v", pod.TopologySpreadConstraints)
	}
	ts := pod.TopologySpreadConstraints[0]
	if ts.TopologyKey != corev1.LabelTopologyZone || ts.MaxSkew != 1 || ts.WhenUnsatisfiable != corev1.DoNotSchedule ||
		ptr.Deref(ts.NodeTaintsPolicy, "") != corev1.NodeInclusionPolicyHonor {
		t.Errorf("zone spread = %+v, want maxSkew 1 over zones, DoNotSchedule (zones given), tainted nodes ignored", ts)
	}
	aff := pod.Affinity
	if aff == nil || aff.PodAntiAffinity == nil || len(aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 ||
		aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.TopologyKey != corev1.LabelHostname {
		t.Errorf("pod anti-affinity = %+v, want a preference for one replica per node", aff)
	}
	if aff == nil || aff.NodeAffinity == nil || aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		t.Fatalf("node affinity missing: %+v", aff)
	}
	req := aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0]
	if req.Key != corev1.LabelTopologyZone || !slices.Equal(req.Values, []string{"zone-a", "zone-b"}) {
		t.Errorf("zone affinity = %+v, want zone-a, zone-b", req)
	}

	sa := get(t, ns, "triage", &corev1.ServiceAccount{})
	ownedBy(t, sa, a)
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("service account automount = %v, want false", sa.AutomountServiceAccountToken)
	}

	svc := get(t, ns, "triage", &corev1.Service{})
	ownedBy(t, svc, a)
	if svc.Spec.ClusterIP == corev1.ClusterIPNone || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 9000 ||
		svc.Spec.Ports[0].TargetPort.StrVal != "a2a" || svc.Spec.Selector[controller.LabelAgent] != "triage" {
		t.Errorf("service = %+v", svc.Spec)
	}

	pdb := get(t, ns, "triage", &policyv1.PodDisruptionBudget{})
	ownedBy(t, pdb, a)
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntVal != 1 || pdb.Spec.MinAvailable != nil {
		t.Errorf("pdb = %+v, want maxUnavailable 1", pdb.Spec)
	}

	np := get(t, ns, "triage", &networkingv1.NetworkPolicy{})
	ownedBy(t, np, a)
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) || len(np.Spec.Ingress) != 1 {
		t.Fatalf("network policy = %+v, want one ingress rule", np.Spec)
	}
	in := np.Spec.Ingress[0]
	if len(in.From) != 1 || in.From[0].NamespaceSelector == nil || in.From[0].PodSelector == nil ||
		in.From[0].NamespaceSelector.MatchLabels[corev1.LabelMetadataName] != "agentplane-system" ||
		in.From[0].PodSelector.MatchLabels["app.kubernetes.io/name"] != "agentplane-gateway" {
		t.Errorf("ingress from = %+v, want gateway pods of agentplane-system only", in.From)
	}
	if len(in.Ports) != 1 || in.Ports[0].Port.IntVal != 9000 {
		t.Errorf("ingress ports = %+v, want 9000", in.Ports)
	}

	notFound(t, ns, "triage", &autoscalingv2.HorizontalPodAutoscaler{})
	notFound(t, ns, "triage", &appsv1.StatefulSet{})

	// Deleting the Agent leaves cleanup to the garbage collector (which envtest does not run):
	// every object points at the Agent, so it would be collected.
	if err := env.Client.Delete(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	notFound(t, ns, "triage", &v1alpha1.Agent{})
	for _, o := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &corev1.ServiceAccount{}, &policyv1.PodDisruptionBudget{}, &networkingv1.NetworkPolicy{}} {
		ownedBy(t, get(t, ns, "triage", o), a)
	}
	if len(events.reasons()) != 0 {
		t.Errorf("events on a clean create = %v, want none", events.reasons())
	}
}

func TestUpdateReplicasAndImageRollsTheDeployment(t *testing.T) {
	ns := env.Namespace(t)
	r, _ := reconciler()
	a := newAgent(ns, "scheduling")
	if err := env.Client.Create(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)
	before := get(t, ns, "scheduling", &appsv1.Deployment{})

	a = get(t, ns, a.Name, &v1alpha1.Agent{})
	a.Spec.Replicas = ptr.To[int32](5)
	a.Spec.Image = "registry.example/triage:1.1"
	a.Spec.MinAvailable = ptr.To[int32](3)
	if err := env.Client.Update(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)
	after := get(t, ns, "scheduling", &appsv1.Deployment{})
	if ptr.Deref(after.Spec.Replicas, 0) != 5 || after.Spec.Template.Spec.Containers[0].Image != "registry.example/triage:1.1" {
		t.Errorf("deployment replicas %v image %q, want 5 and the new image", after.Spec.Replicas, after.Spec.Template.Spec.Containers[0].Image)
	}
	if after.Generation <= before.Generation || after.UID != before.UID {
		t.Errorf("deployment generation %d→%d uid changed %v: want an in-place update", before.Generation, after.Generation, after.UID != before.UID)
	}
	pdb := get(t, ns, "scheduling", &policyv1.PodDisruptionBudget{})
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntVal != 3 || pdb.Spec.MaxUnavailable != nil {
		t.Errorf("pdb = %+v, want minAvailable 3 and no maxUnavailable", pdb.Spec)
	}

	// A reconcile with nothing changed changes nothing.
	reconcileOnce(t, r, a)
	again := get(t, ns, "scheduling", &appsv1.Deployment{})
	if again.Generation != after.Generation || again.ResourceVersion != after.ResourceVersion {
		t.Errorf("idempotent reconcile changed the deployment: generation %d→%d", after.Generation, again.Generation)
	}
}

func TestSwitchingStateReplacesDeploymentWithStatefulSet(t *testing.T) {
	ns := env.Namespace(t)
	r, events := reconciler()
	a := newAgent(ns, "radiology")
	if err := env.Client.Create(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)
	oldSvc := get(t, ns, "radiology", &corev1.Service{})

	a = get(t, ns, a.Name, &v1alpha1.Agent{})
	a.Spec.State = v1alpha1.Stateful
	a.Spec.Memory = &v1alpha1.MemorySpec{Size: "2Gi", StorageClassName: ptr.To("fast")}
	if err := env.Client.Update(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)

	notFound(t, ns, "radiology", &appsv1.Deployment{})
	sts := get(t, ns, "radiology", &appsv1.StatefulSet{})
	ownedBy(t, sts, a)
	if sts.Spec.ServiceName != "radiology" || ptr.Deref(sts.Spec.Replicas, 0) != 3 {
		t.Errorf("statefulset service %q replicas %v", sts.Spec.ServiceName, sts.Spec.Replicas)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("volume claim templates = %d, want 1", len(sts.Spec.VolumeClaimTemplates))
	}
	pvc := sts.Spec.VolumeClaimTemplates[0]
	if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != "2Gi" || ptr.Deref(pvc.Spec.StorageClassName, "") != "fast" {
		t.Errorf("memory claim = %s class %v, want 2Gi fast", q.String(), pvc.Spec.StorageClassName)
	}
	c := sts.Spec.Template.Spec.Containers[0]
	var mounted bool
	for _, m := range c.VolumeMounts {
		mounted = mounted || m.Name == pvc.Name
	}
	var memEnv string
	for _, e := range c.Env {
		if e.Name == controller.EnvMemoryDir {
			memEnv = e.Value
		}
	}
	if !mounted || memEnv == "" {
		t.Errorf("memory volume mounted %v, %s=%q", mounted, controller.EnvMemoryDir, memEnv)
	}
	svc := get(t, ns, "radiology", &corev1.Service{})
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || svc.UID == oldSvc.UID {
		t.Errorf("service clusterIP %q (recreated %v), want a new headless service", svc.Spec.ClusterIP, svc.UID != oldSvc.UID)
	}
	if !slices.Contains(events.reasons(), "Normal/Deleted") {
		t.Errorf("events = %v, want the deployment's deletion recorded", events.reasons())
	}

	// And back.
	a = get(t, ns, "radiology", &v1alpha1.Agent{})
	a.Spec.State = v1alpha1.Stateless
	a.Spec.Memory = nil
	if err := env.Client.Update(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)
	notFound(t, ns, "radiology", &appsv1.StatefulSet{})
	get(t, ns, "radiology", &appsv1.Deployment{})
	if svc := get(t, ns, "radiology", &corev1.Service{}); svc.Spec.ClusterIP == corev1.ClusterIPNone {
		t.Errorf("service still headless after switching back to stateless")
	}
}

func TestAutoscalingLeavesReplicasToTheHPA(t *testing.T) {
	ns := env.Namespace(t)
	r, _ := reconciler()
	a := newAgent(ns, "triage")
	if err := env.Client.Create(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)

	a = get(t, ns, a.Name, &v1alpha1.Agent{})
	a.Spec.Autoscaling = &v1alpha1.Autoscaling{MinReplicas: ptr.To[int32](2), MaxReplicas: 10, TargetCPUUtilizationPercentage: ptr.To[int32](60)}
	if err := env.Client.Update(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)

	hpa := get(t, ns, "triage", &autoscalingv2.HorizontalPodAutoscaler{})
	ownedBy(t, hpa, a)
	if ptr.Deref(hpa.Spec.MinReplicas, 0) != 2 || hpa.Spec.MaxReplicas != 10 || hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != "triage" {
		t.Errorf("hpa = %+v", hpa.Spec)
	}
	if m := hpa.Spec.Metrics; len(m) != 1 || m[0].Resource == nil || ptr.Deref(m[0].Resource.Target.AverageUtilization, 0) != 60 {
		t.Errorf("hpa metrics = %+v, want CPU at 60%%", m)
	}
	dep := get(t, ns, "triage", &appsv1.Deployment{})
	if got := ptr.Deref(dep.Spec.Replicas, 0); got != 3 {
		t.Errorf("replicas after switching autoscaling on = %d, want 3 kept (not reset)", got)
	}
	if owners := replicaOwners(dep.ManagedFields); slices.Contains(owners, controller.FieldOwner) {
		t.Errorf("spec.replicas is owned by %v; the operator must not own it under autoscaling", owners)
	}

	// The autoscaler scales through the scale subresource; the operator must not undo it.
	scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "triage"}, Spec: autoscalingv1.ScaleSpec{Replicas: 7}}
	if err := env.Client.SubResource("scale").Update(t.Context(), dep, client.WithSubResourceBody(scale), client.FieldOwner("kube-controller-manager")); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)
	if got := ptr.Deref(get(t, ns, "triage", &appsv1.Deployment{}).Spec.Replicas, 0); got != 7 {
		t.Errorf("replicas after the autoscaler scaled to 7 and a reconcile = %d, want 7", got)
	}

	// Autoscaling off: the HPA goes, spec.replicas rules again.
	a = get(t, ns, "triage", &v1alpha1.Agent{})
	a.Spec.Autoscaling = nil
	if err := env.Client.Update(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)
	notFound(t, ns, "triage", &autoscalingv2.HorizontalPodAutoscaler{})
	if got := ptr.Deref(get(t, ns, "triage", &appsv1.Deployment{}).Spec.Replicas, 0); got != 3 {
		t.Errorf("replicas after autoscaling off = %d, want spec.replicas 3", got)
	}
}

// replicaOwners are the field managers that own a workload's spec.replicas.
func replicaOwners(entries []metav1.ManagedFieldsEntry) []string {
	var out []string
	for _, e := range entries {
		if e.FieldsV1 != nil && strings.Contains(e.FieldsV1.GetRawString(), `"f:replicas"`) && strings.Contains(e.FieldsV1.GetRawString(), `"f:spec"`) {
			out = append(out, e.Manager)
		}
	}
	return out
}

func TestInvalidAgentsAreRejectedByTheAPIServer(t *testing.T) {
	ns := env.Namespace(t)
	cases := []struct {
		name   string
		mutate func(*v1alpha1.Agent)
		want   string // in the API server's message
		goToo  bool   // the Go validation of embedded mode rejects it too
	}{
		{"stateful without memory", func(a *v1alpha1.Agent) { a.Spec.State = v1alpha1.Stateful }, "stateful agents need spec.memory", true},
		{"memory on a stateless agent", func(a *v1alpha1.Agent) { a.Spec.Memory = &v1alpha1.MemorySpec{Size: "1Gi"} }, "only stateful agents have spec.memory", true},
		{"no image", func(a *v1alpha1.Agent) { a.Spec.Image = ""; a.Spec.Command = []string{"agentplane", "simagent"} }, "spec.image is required on Kubernetes", false},
		{"minAvailable not below replicas", func(a *v1alpha1.Agent) { a.Spec.MinAvailable = ptr.To[int32](3) }, "spec.minAvailable must be less than spec.replicas", true},
		{"minAvailable not below autoscaling.minReplicas", func(a *v1alpha1.Agent) {
			a.Spec.MinAvailable = ptr.To[int32](2)
			a.Spec.Autoscaling = &v1alpha1.Autoscaling{MinReplicas: ptr.To[int32](2), MaxReplicas: 5}
		}, "spec.minAvailable must be less than spec.autoscaling.minReplicas", true},
		{"autoscaling min above max", func(a *v1alpha1.Agent) {
			a.Spec.Autoscaling = &v1alpha1.Autoscaling{MinReplicas: ptr.To[int32](6), MaxReplicas: 5}
		}, "minReplicas must not exceed maxReplicas", true},
		{"reserved env", func(a *v1alpha1.Agent) { a.Spec.Env = []v1alpha1.EnvVar{{Name: "PORT", Value: "1"}} }, "set by agentplane for each replica", true},
		{"bad memory size", func(a *v1alpha1.Agent) {
			a.Spec.State = v1alpha1.Stateful
			a.Spec.Memory = &v1alpha1.MemorySpec{Size: "lots"}
		}, "spec.memory.size", true},
		{"bad state", func(a *v1alpha1.Agent) { a.Spec.State = "sometimes" }, "spec.state", true},
		{"negative replicas", func(a *v1alpha1.Agent) { a.Spec.Replicas = ptr.To[int32](-1) }, "spec.replicas", true},
		{"port out of range", func(a *v1alpha1.Agent) { a.Spec.Port = 70000 }, "spec.port", true},
		{"bad pull policy", func(a *v1alpha1.Agent) { a.Spec.ImagePullPolicy = "Sometimes" }, "spec.imagePullPolicy", true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newAgent(ns, fmt.Sprintf("bad-%d", i), tc.mutate)
			err := env.Client.Create(t.Context(), a)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("create: want Invalid, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if tc.goToo {
				a.APIVersion, a.Kind = v1alpha1.GroupVersion.String(), v1alpha1.KindAgent
				a.SetDefaults()
				if errs := a.Validate(); len(errs) == 0 {
					t.Errorf("the API server rejects it but Agent.Validate (embedded mode) accepts it")
				}
			}
		})
	}

	// The edges that are allowed.
	for i, m := range []func(*v1alpha1.Agent){
		func(a *v1alpha1.Agent) { a.Spec.MinAvailable = ptr.To[int32](2) },
		func(a *v1alpha1.Agent) { a.Spec.MinAvailable = ptr.To[int32](1); a.Spec.Replicas = ptr.To[int32](0) },
		func(a *v1alpha1.Agent) {
			a.Spec.State = v1alpha1.Stateful
			a.Spec.Memory = &v1alpha1.MemorySpec{Size: "512Mi"}
			a.Spec.Autoscaling = &v1alpha1.Autoscaling{MaxReplicas: 3}
		},
	} {
		a := newAgent(ns, fmt.Sprintf("good-%d", i), m)
		if err := env.Client.Create(t.Context(), a); err != nil {
			t.Errorf("valid agent %d rejected: %v", i, err)
		}
	}

	// Defaults come from the CRD.
	a := &v1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "minimal"}, Spec: v1alpha1.AgentSpec{Image: image}}
	if err := env.Client.Create(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if ptr.Deref(a.Spec.Replicas, 0) != 1 || a.Spec.MaxConcurrency != 4 || a.Spec.State != v1alpha1.Stateless {
		t.Errorf("defaults: replicas %v maxConcurrency %d state %q", a.Spec.Replicas, a.Spec.MaxConcurrency, a.Spec.State)
	}
}

func TestStatusFollowsTheWorkload(t *testing.T) {
	ns := env.Namespace(t)
	r, events := reconciler()
	a := newAgent(ns, "triage")
	if err := env.Client.Create(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)

	a = get(t, ns, "triage", &v1alpha1.Agent{})
	wantCond(t, a, v1alpha1.ConditionReady, metav1.ConditionFalse, "ReplicasNotReady")
	wantCond(t, a, v1alpha1.ConditionAvailable, metav1.ConditionFalse, "NoReplicaReady")
	wantCond(t, a, v1alpha1.ConditionProgressing, metav1.ConditionTrue, "RollingOut")
	wantCond(t, a, v1alpha1.ConditionDegraded, metav1.ConditionFalse, "AsExpected")
	if a.Status.ObservedGeneration != a.Generation {
		t.Errorf("observedGeneration = %d, want %d", a.Status.ObservedGeneration, a.Generation)
	}

	// What the Deployment controller would report once the replicas are up.
	dep := get(t, ns, "triage", &appsv1.Deployment{})
	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 3, AvailableReplicas: 3}
	if err := env.Client.Status().Update(t.Context(), dep); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)
	a = get(t, ns, "triage", &v1alpha1.Agent{})
	wantCond(t, a, v1alpha1.ConditionReady, metav1.ConditionTrue, "ReplicasReady")
	wantCond(t, a, v1alpha1.ConditionAvailable, metav1.ConditionTrue, "ReplicasAvailable")
	wantCond(t, a, v1alpha1.ConditionProgressing, metav1.ConditionFalse, "RolledOut")
	if a.Status.ReadyReplicas != 3 || a.Status.Replicas != 3 {
		t.Errorf("status replicas %d ready %d, want 3 and 3", a.Status.Replicas, a.Status.ReadyReplicas)
	}
	if !slices.Contains(events.reasons(), "Normal/Ready") {
		t.Errorf("events = %v, want Ready recorded", events.reasons())
	}

	// A crash-looping replica makes the agent Degraded, though it still serves.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "triage-abc", Labels: map[string]string{controller.LabelAgent: "triage"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: image}}},
	}
	if err := env.Client.Create(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "agent", Image: image, RestartCount: 4,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}
	if err := env.Client.Status().Update(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)
	a = get(t, ns, "triage", &v1alpha1.Agent{})
	c := wantCond(t, a, v1alpha1.ConditionDegraded, metav1.ConditionTrue, "ReplicaFailing")
	if c != nil && !strings.Contains(c.Message, "triage-abc") {
		t.Errorf("degraded message %q does not name the replica", c.Message)
	}
	wantCond(t, a, v1alpha1.ConditionAvailable, metav1.ConditionTrue, "ReplicasAvailable")

	// A new generation is not Ready until the Deployment controller has observed it.
	a.Spec.Image = "registry.example/triage:2.0"
	if err := env.Client.Update(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)
	a = get(t, ns, "triage", &v1alpha1.Agent{})
	wantCond(t, a, v1alpha1.ConditionReady, metav1.ConditionFalse, "ReplicasNotReady")
	wantCond(t, a, v1alpha1.ConditionProgressing, metav1.ConditionTrue, "RollingOut")
	if a.Status.ObservedGeneration != a.Generation {
		t.Errorf("observedGeneration = %d, want %d", a.Status.ObservedGeneration, a.Generation)
	}
}

func wantCond(t *testing.T, a *v1alpha1.Agent, typ string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(a.Status.Conditions, typ)
	if c == nil {
		t.Errorf("condition %s missing: %+v", typ, a.Status.Conditions)
		return nil
	}
	if c.Status != status || c.Reason != reason || c.ObservedGeneration != a.Generation {
		t.Errorf("condition %s = %s/%s (generation %d), want %s/%s (generation %d): %s", typ, c.Status, c.Reason, c.ObservedGeneration, status, reason, a.Generation, c.Message)
	}
	return c
}

// eventLog is an EventRecorder that remembers type/reason of each event.
type eventLog struct {
	list  []string
	notes []string
}

func (e *eventLog) Eventf(_, _ runtime.Object, typ, reason, _, note string, args ...any) {
	e.list = append(e.list, typ+"/"+reason)
	e.notes = append(e.notes, typ+"/"+reason+": "+fmt.Sprintf(note, args...))
}

func (e *eventLog) reasons() []string { return e.list }

// A change the API server cannot make in place (a StatefulSet's volume claim template) is
// reported on the Agent and not retried until the Agent changes again.
func TestImmutableChangeIsReportedNotRetried(t *testing.T) {
	ns := env.Namespace(t)
	r, events := reconciler()
	a := newAgent(ns, "memo", func(a *v1alpha1.Agent) {
		a.Spec.State = v1alpha1.Stateful
		a.Spec.Memory = &v1alpha1.MemorySpec{Size: "1Gi"}
	})
	if err := env.Client.Create(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)

	a = get(t, ns, "memo", &v1alpha1.Agent{})
	a.Spec.Memory.Size = "5Gi"
	if err := env.Client.Update(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	_, err := r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(a)})
	if !errors.Is(err, reconcile.TerminalError(nil)) {
		t.Fatalf("reconcile error = %v, want a terminal error", err)
	}
	a = get(t, ns, "memo", &v1alpha1.Agent{})
	c := wantCond(t, a, v1alpha1.ConditionDegraded, metav1.ConditionTrue, "Rejected")
	if c != nil && (!strings.Contains(c.Message, "spec.volumeClaimTemplates") || len(c.Message) > 520) {
		t.Errorf("degraded message %q does not say briefly what was rejected", c.Message)
	}
	wantCond(t, a, v1alpha1.ConditionReady, metav1.ConditionFalse, "Rejected")
	if !slices.Contains(events.reasons(), "Warning/Rejected") {
		t.Errorf("events = %v, want Warning/Rejected", events.reasons())
	}
	if q := get(t, ns, "memo", &appsv1.StatefulSet{}).Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != "1Gi" {
		t.Errorf("memory claim = %s, want the original 1Gi", q.String())
	}
}

// A status write that loses a race with another write of the Agent (the cache lags the
// operator's own last write) is not a reconcile error: it is tried again shortly, quietly.
func TestStatusConflictIsRetriedNotAnError(t *testing.T) {
	ns := env.Namespace(t)
	var conflicts atomic.Int32
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	c := interceptor.NewClient(wc, interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, cl client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if sub == "status" && conflicts.Add(1) == 1 {
				return apierrors.NewConflict(schema.GroupResource{Group: "agentplane.io", Resource: "agents"}, obj.GetName(), errors.New("the object has been modified"))
			}
			return cl.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	})
	r := &controller.AgentReconciler{Client: c, Recorder: &eventLog{}, Options: controller.Options{GatewayNamespace: "agentplane-system"}}
	a := newAgent(ns, "triage")
	if err := env.Client.Create(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	res, err := r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(a)})
	if err != nil || res.RequeueAfter <= 0 {
		t.Fatalf("reconcile after a status conflict: result %+v, err %v; want a quiet retry", res, err)
	}
	reconcileOnce(t, r, a)
	if got := get(t, ns, "triage", &v1alpha1.Agent{}); got.Status.ObservedGeneration != got.Generation {
		t.Fatalf("status not written on the retry: %+v", got.Status)
	}
}

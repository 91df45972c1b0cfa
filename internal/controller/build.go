package controller

import (
	"maps"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	autoscalingv2ac "k8s.io/client-go/applyconfigurations/autoscaling/v2"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"

	"github.com/agentplane/agentplane/api/v1alpha1"
)

// Labels and names shared with the gateway's discovery, the Helm chart and config/.
const (
	// LabelAgent selects an agent's pods; see v1alpha1.LabelAgent.
	LabelAgent = v1alpha1.LabelAgent
	// LabelManagedBy marks every object the operator writes; its caches only hold such objects.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedBy is the value of LabelManagedBy.
	ManagedBy = "agentplane-operator"
	// GatewayName is the app.kubernetes.io/name label of gateway pods, the only pods the
	// NetworkPolicy admits to an agent's port.
	GatewayName = v1alpha1.GatewayAppName
	// FieldOwner is the server-side apply field manager of the operator.
	FieldOwner = "agentplane-operator"

	containerName = "agent"
	portName      = "a2a"
	memoryVolume  = "memory"
	memoryPath    = "/var/lib/agentplane/memory"
	tmpVolume     = "tmp"
	zoneKey       = corev1.LabelTopologyZone
	hostKey       = corev1.LabelHostname

	// EnvMemoryDir tells a stateful replica where its memory volume is mounted.
	EnvMemoryDir = v1alpha1.EnvMemoryDir
)

// Options are cluster-wide settings of the objects the operator writes.
type Options struct {
	// GatewayNamespace is where the gateway runs, for agents that do not name one in
	// spec.network.gatewayNamespace. Empty means the agent's own namespace.
	GatewayNamespace string
	// MaxConcurrentReconciles is how many Agents are reconciled at once; default 1.
	MaxConcurrentReconciles int
}

// selectorLabels select an agent's pods. They never change for the life of the agent: a
// workload's selector is immutable.
func selectorLabels(a *v1alpha1.Agent) map[string]string {
	return map[string]string{LabelAgent: a.Name}
}

// objectLabels go on every object written for a, pods included.
func objectLabels(a *v1alpha1.Agent) map[string]string {
	return map[string]string{
		LabelAgent:                   a.Name,
		"app.kubernetes.io/name":     "agentplane-agent",
		"app.kubernetes.io/instance": a.Name,
		"app.kubernetes.io/part-of":  "agentplane",
		LabelManagedBy:               ManagedBy,
	}
}

func ownerRef(a *v1alpha1.Agent) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(v1alpha1.GroupVersion.String()).
		WithKind(v1alpha1.KindAgent).
		WithName(a.Name).
		WithUID(a.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

func port(a *v1alpha1.Agent) int32 {
	if a.Spec.Port != 0 {
		return a.Spec.Port
	}
	return v1alpha1.DefaultPort
}

// cpuAutoscaled agents have a HorizontalPodAutoscaler own their workload's replicas.
func cpuAutoscaled(a *v1alpha1.Agent) bool {
	return a.Spec.Autoscaling != nil && !a.Spec.Autoscaling.TaskBased()
}

// taskAutoscaled agents have the operator set their workload's replicas from task demand.
func taskAutoscaled(a *v1alpha1.Agent) bool { return a.Spec.Autoscaling.TaskBased() }

// workloadReplicas is what the operator sets the workload's replicas to: spec.replicas, or under
// task-based autoscaling the autoscaler's decision (status.autoscaling, which the reconciler
// fills in before building).
func workloadReplicas(a *v1alpha1.Agent) int32 {
	if taskAutoscaled(a) && a.Status.Autoscaling != nil {
		return a.Status.Autoscaling.DesiredReplicas
	}
	return int32(a.DesiredReplicas())
}

func stateful(a *v1alpha1.Agent) bool { return a.Spec.State == v1alpha1.Stateful }

// buildServiceAccount is the agent's own identity, with no API token unless asked for.
func buildServiceAccount(a *v1alpha1.Agent) *corev1ac.ServiceAccountApplyConfiguration {
	return corev1ac.ServiceAccount(a.Name, a.Namespace).
		WithLabels(objectLabels(a)).
		WithOwnerReferences(ownerRef(a)).
		WithAutomountServiceAccountToken(automountToken(a))
}

func automountToken(a *v1alpha1.Agent) bool {
	return a.Spec.Security != nil && a.Spec.Security.AutomountServiceAccountToken
}

// buildService fronts the replicas: its EndpointSlices are how the gateway learns which replica is
// ready. A stateful agent's Service is headless, the StatefulSet's governing service, so that each
// replica has a stable DNS name.
func buildService(a *v1alpha1.Agent) *corev1ac.ServiceApplyConfiguration {
	spec := corev1ac.ServiceSpec().
		WithSelector(selectorLabels(a)).
		WithPorts(corev1ac.ServicePort().
			WithName(portName).
			WithProtocol(corev1.ProtocolTCP).
			WithAppProtocol("http").
			WithPort(port(a)).
			WithTargetPort(intstr.FromString(portName)))
	if stateful(a) {
		spec.WithClusterIP(corev1.ClusterIPNone).WithPublishNotReadyAddresses(false)
	} else {
		spec.WithType(corev1.ServiceTypeClusterIP)
	}
	return corev1ac.Service(a.Name, a.Namespace).
		WithLabels(objectLabels(a)).
		WithOwnerReferences(ownerRef(a)).
		WithSpec(spec)
}

// buildDeployment runs a stateless agent. Replicas are left to the HorizontalPodAutoscaler when
// autoscaling is on CPU.
func buildDeployment(a *v1alpha1.Agent) *appsv1ac.DeploymentApplyConfiguration {
	spec := appsv1ac.DeploymentSpec().
		WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(a))).
		WithTemplate(buildPodTemplate(a)).
		WithRevisionHistoryLimit(5).
		WithStrategy(appsv1ac.DeploymentStrategy().
			WithType(appsv1.RollingUpdateDeploymentStrategyType).
			WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
				WithMaxUnavailable(intstr.FromInt32(0)).
				WithMaxSurge(intstr.FromString("25%"))))
	if !cpuAutoscaled(a) {
		spec.WithReplicas(workloadReplicas(a))
	}
	return appsv1ac.Deployment(a.Name, a.Namespace).
		WithLabels(objectLabels(a)).
		WithOwnerReferences(ownerRef(a)).
		WithSpec(spec)
}

// buildStatefulSet runs a stateful agent: stable replica names, and a memory volume per replica
// that follows it across restarts and reschedules.
func buildStatefulSet(a *v1alpha1.Agent) *appsv1ac.StatefulSetApplyConfiguration {
	mem := a.Spec.Memory
	size := "1Gi"
	if mem != nil {
		size = mem.Size
	}
	pvcSpec := corev1ac.PersistentVolumeClaimSpec().
		WithAccessModes(corev1.ReadWriteOnce).
		WithResources(corev1ac.VolumeResourceRequirements().
			WithRequests(corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}))
	if mem != nil && mem.StorageClassName != nil {
		pvcSpec.WithStorageClassName(*mem.StorageClassName)
	}
	spec := appsv1ac.StatefulSetSpec().
		WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(a))).
		WithServiceName(a.Name).
		WithPodManagementPolicy(appsv1.ParallelPodManagement).
		WithRevisionHistoryLimit(5).
		WithTemplate(buildPodTemplate(a)).
		WithVolumeClaimTemplates(corev1ac.PersistentVolumeClaim(memoryVolume, "").
			WithLabels(objectLabels(a)).
			WithSpec(pvcSpec)).
		WithPersistentVolumeClaimRetentionPolicy(appsv1ac.StatefulSetPersistentVolumeClaimRetentionPolicy().
			WithWhenDeleted(appsv1.RetainPersistentVolumeClaimRetentionPolicyType).
			WithWhenScaled(appsv1.RetainPersistentVolumeClaimRetentionPolicyType))
	if !cpuAutoscaled(a) {
		spec.WithReplicas(workloadReplicas(a))
	}
	return appsv1ac.StatefulSet(a.Name, a.Namespace).
		WithLabels(objectLabels(a)).
		WithOwnerReferences(ownerRef(a)).
		WithSpec(spec)
}

// buildPodTemplate is the pod every replica runs, hardened by default.
func buildPodTemplate(a *v1alpha1.Agent) *corev1ac.PodTemplateSpecApplyConfiguration {
	s := &a.Spec
	runAs := v1alpha1.DefaultRunAsUser
	if s.Security != nil && s.Security.RunAsUser != nil {
		runAs = *s.Security.RunAsUser
	}

	env := []*corev1ac.EnvVarApplyConfiguration{
		corev1ac.EnvVar().WithName("PORT").WithValue(itoa(port(a))),
		corev1ac.EnvVar().WithName("AGENTPLANE_AGENT").WithValue(a.Name),
		corev1ac.EnvVar().WithName("AGENTPLANE_REPLICA").WithValueFrom(corev1ac.EnvVarSource().
			WithFieldRef(corev1ac.ObjectFieldSelector().WithAPIVersion("v1").WithFieldPath("metadata.name"))),
		// The gateway and the probes reach the pod at its pod IP, not on loopback.
		corev1ac.EnvVar().WithName("AGENTPLANE_LISTEN_HOST").WithValue("0.0.0.0"),
		corev1ac.EnvVar().WithName("TMPDIR").WithValue("/tmp"),
	}
	mounts := []*corev1ac.VolumeMountApplyConfiguration{
		corev1ac.VolumeMount().WithName(tmpVolume).WithMountPath("/tmp"),
	}
	if stateful(a) {
		env = append(env, corev1ac.EnvVar().WithName(EnvMemoryDir).WithValue(memoryPath))
		mounts = append(mounts, corev1ac.VolumeMount().WithName(memoryVolume).WithMountPath(memoryPath))
	}
	for _, e := range s.Env {
		env = append(env, corev1ac.EnvVar().WithName(e.Name).WithValue(e.Value))
	}

	c := corev1ac.Container().
		WithName(containerName).
		WithImage(s.Image).
		WithEnv(env...).
		WithPorts(corev1ac.ContainerPort().WithName(portName).WithContainerPort(port(a)).WithProtocol(corev1.ProtocolTCP)).
		WithVolumeMounts(mounts...).
		WithSecurityContext(corev1ac.SecurityContext().
			WithAllowPrivilegeEscalation(false).
			WithReadOnlyRootFilesystem(true).
			WithRunAsNonRoot(true).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL"))).
		WithTerminationMessagePolicy(corev1.TerminationMessageFallbackToLogsOnError)
	if len(s.Command) > 0 {
		c.WithCommand(s.Command...)
	}
	if len(s.Args) > 0 {
		c.WithArgs(s.Args...)
	}
	if s.ImagePullPolicy != "" {
		c.WithImagePullPolicy(s.ImagePullPolicy)
	}
	if p := s.Probes; p != nil {
		if p.Startup != nil {
			c.WithStartupProbe(buildProbe(p.Startup))
		}
		if p.Readiness != nil {
			c.WithReadinessProbe(buildProbe(p.Readiness))
		}
		if p.Liveness != nil {
			c.WithLivenessProbe(buildProbe(p.Liveness))
		}
	}
	if res := buildResources(s.Resources); res != nil {
		c.WithResources(res)
	}

	pod := corev1ac.PodSpec().
		WithServiceAccountName(a.Name).
		WithAutomountServiceAccountToken(automountToken(a)).
		WithEnableServiceLinks(false).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(runAs).
			WithRunAsGroup(runAs).
			WithFSGroup(runAs).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithContainers(c).
		WithVolumes(corev1ac.Volume().WithName(tmpVolume).WithEmptyDir(corev1ac.EmptyDirVolumeSource())).
		WithTopologySpreadConstraints(buildZoneSpread(a)).
		WithAffinity(buildAffinity(a))
	if pl := s.Placement; pl != nil && len(pl.NodeSelector) > 0 {
		pod.WithNodeSelector(maps.Clone(pl.NodeSelector))
	}
	for _, t := range tolerations(a) {
		pod.WithTolerations(t)
	}
	return corev1ac.PodTemplateSpec().
		WithLabels(objectLabels(a)).
		WithSpec(pod)
}

// buildZoneSpread spreads replicas evenly over zones. With spec.placement.zones the spread is a
// hard rule (and replicas run only in those zones); without, it is a preference, so that a cluster
// whose nodes carry no zone label still runs the agent.
//
// Nodes that are tainted (for example node.kubernetes.io/unreachable when a zone is lost) do not
// count as a place to spread to, so replacements for a lost zone's replicas schedule in the
// zones that are left instead of waiting for the lost zone to come back.
func buildZoneSpread(a *v1alpha1.Agent) *corev1ac.TopologySpreadConstraintApplyConfiguration {
	when := corev1.ScheduleAnyway
	if pl := a.Spec.Placement; pl != nil && len(pl.Zones) > 0 {
		when = corev1.DoNotSchedule
	}
	return corev1ac.TopologySpreadConstraint().
		WithTopologyKey(zoneKey).
		WithMaxSkew(1).
		WithWhenUnsatisfiable(when).
		WithNodeAffinityPolicy(corev1.NodeInclusionPolicyHonor).
		WithNodeTaintsPolicy(corev1.NodeInclusionPolicyHonor).
		WithLabelSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(a))).
		WithMatchLabelKeys(appsv1.DefaultDeploymentUniqueLabelKey)
}

// buildAffinity keeps replicas of one agent off the same node where it can (losing a node should
// cost one replica), and restricts them to spec.placement.zones when set.
func buildAffinity(a *v1alpha1.Agent) *corev1ac.AffinityApplyConfiguration {
	aff := corev1ac.Affinity().WithPodAntiAffinity(corev1ac.PodAntiAffinity().
		WithPreferredDuringSchedulingIgnoredDuringExecution(corev1ac.WeightedPodAffinityTerm().
			WithWeight(100).
			WithPodAffinityTerm(corev1ac.PodAffinityTerm().
				WithTopologyKey(hostKey).
				WithLabelSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(a))))))
	if pl := a.Spec.Placement; pl != nil && len(pl.Zones) > 0 {
		zones := slices.Clone(pl.Zones)
		slices.Sort(zones)
		aff.WithNodeAffinity(corev1ac.NodeAffinity().
			WithRequiredDuringSchedulingIgnoredDuringExecution(corev1ac.NodeSelector().
				WithNodeSelectorTerms(corev1ac.NodeSelectorTerm().
					WithMatchExpressions(corev1ac.NodeSelectorRequirement().
						WithKey(zoneKey).
						WithOperator(corev1.NodeSelectorOpIn).
						WithValues(zones...)))))
	}
	return aff
}

// tolerations are the user's, plus one for the taint GPU nodes usually carry when the agent asks
// for GPUs.
func tolerations(a *v1alpha1.Agent) []*corev1ac.TolerationApplyConfiguration {
	var out []*corev1ac.TolerationApplyConfiguration
	if pl := a.Spec.Placement; pl != nil {
		for _, t := range pl.Tolerations {
			ac := corev1ac.Toleration()
			if t.Key != "" {
				ac.WithKey(t.Key)
			}
			if t.Operator != "" {
				ac.WithOperator(t.Operator)
			}
			if t.Value != "" {
				ac.WithValue(t.Value)
			}
			if t.Effect != "" {
				ac.WithEffect(t.Effect)
			}
			if t.TolerationSeconds != nil {
				ac.WithTolerationSeconds(*t.TolerationSeconds)
			}
			out = append(out, ac)
		}
	}
	if r := a.Spec.Resources; r != nil && r.GPUs > 0 {
		out = append(out, corev1ac.Toleration().
			WithKey(string(gpuResource(r))).
			WithOperator(corev1.TolerationOpExists).
			WithEffect(corev1.TaintEffectNoSchedule))
	}
	return out
}

func gpuResource(r *v1alpha1.Resources) corev1.ResourceName {
	if r.GPUResource != "" {
		return r.GPUResource
	}
	return v1alpha1.DefaultGPUResource
}

// buildResources turns spec.resources into container resources. GPUs are extended resources:
// Kubernetes requires their request and limit to be equal, so both are set.
func buildResources(r *v1alpha1.Resources) *corev1ac.ResourceRequirementsApplyConfiguration {
	if r == nil || (len(r.Requests) == 0 && len(r.Limits) == 0 && r.GPUs == 0) {
		return nil
	}
	req, lim := maps.Clone(r.Requests), maps.Clone(r.Limits)
	if r.GPUs > 0 {
		if req == nil {
			req = corev1.ResourceList{}
		}
		if lim == nil {
			lim = corev1.ResourceList{}
		}
		q := *resource.NewQuantity(int64(r.GPUs), resource.DecimalSI)
		req[gpuResource(r)] = q
		lim[gpuResource(r)] = q
	}
	out := corev1ac.ResourceRequirements()
	if len(req) > 0 {
		out.WithRequests(req)
	}
	if len(lim) > 0 {
		out.WithLimits(lim)
	}
	return out
}

func buildProbe(p *v1alpha1.Probe) *corev1ac.ProbeApplyConfiguration {
	return corev1ac.Probe().
		WithHTTPGet(corev1ac.HTTPGetAction().WithPath(p.Path).WithPort(intstr.FromString(portName))).
		WithPeriodSeconds(p.PeriodSeconds).
		WithTimeoutSeconds(p.TimeoutSeconds).
		WithFailureThreshold(p.FailureThreshold)
}

// buildPDB bounds voluntary disruptions: one replica at a time unless spec.minAvailable says how
// many must stay. Unhealthy replicas may always be evicted, so a crash-looping replica never
// blocks a node drain.
func buildPDB(a *v1alpha1.Agent) *policyv1ac.PodDisruptionBudgetApplyConfiguration {
	spec := policyv1ac.PodDisruptionBudgetSpec().
		WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(a))).
		WithUnhealthyPodEvictionPolicy(policyv1.AlwaysAllow)
	if m := a.Spec.MinAvailable; m != nil {
		spec.WithMinAvailable(intstr.FromInt32(*m))
	} else {
		spec.WithMaxUnavailable(intstr.FromInt32(1))
	}
	return policyv1ac.PodDisruptionBudget(a.Name, a.Namespace).
		WithLabels(objectLabels(a)).
		WithOwnerReferences(ownerRef(a)).
		WithSpec(spec)
}

// buildHPA scales the agent's workload on CPU use between spec.autoscaling's bounds.
func buildHPA(a *v1alpha1.Agent) *autoscalingv2ac.HorizontalPodAutoscalerApplyConfiguration {
	as := a.Spec.Autoscaling
	lo := int32(1)
	if as.MinReplicas != nil {
		lo = *as.MinReplicas
	}
	target := v1alpha1.DefaultTargetCPUUtilizationPercentage
	if as.TargetCPUUtilizationPercentage != nil {
		target = *as.TargetCPUUtilizationPercentage
	}
	kind := "Deployment"
	if stateful(a) {
		kind = "StatefulSet"
	}
	return autoscalingv2ac.HorizontalPodAutoscaler(a.Name, a.Namespace).
		WithLabels(objectLabels(a)).
		WithOwnerReferences(ownerRef(a)).
		WithSpec(autoscalingv2ac.HorizontalPodAutoscalerSpec().
			WithScaleTargetRef(autoscalingv2ac.CrossVersionObjectReference().
				WithAPIVersion("apps/v1").WithKind(kind).WithName(a.Name)).
			WithMinReplicas(lo).
			WithMaxReplicas(as.MaxReplicas).
			WithMetrics(autoscalingv2ac.MetricSpec().
				WithType(autoscalingv2.ResourceMetricSourceType).
				WithResource(autoscalingv2ac.ResourceMetricSource().
					WithName(corev1.ResourceCPU).
					WithTarget(autoscalingv2ac.MetricTarget().
						WithType(autoscalingv2.UtilizationMetricType).
						WithAverageUtilization(target)))))
}

// buildNetworkPolicy admits ingress to the agent's port only from gateway pods in the gateway's
// namespace. Egress is left open: agents call models and tools.
func buildNetworkPolicy(a *v1alpha1.Agent, gatewayNamespace string) *networkingv1ac.NetworkPolicyApplyConfiguration {
	tcp := corev1.ProtocolTCP
	return networkingv1ac.NetworkPolicy(a.Name, a.Namespace).
		WithLabels(objectLabels(a)).
		WithOwnerReferences(ownerRef(a)).
		WithSpec(networkingv1ac.NetworkPolicySpec().
			WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(a))).
			WithPolicyTypes(networkingv1.PolicyTypeIngress).
			WithIngress(networkingv1ac.NetworkPolicyIngressRule().
				WithFrom(networkingv1ac.NetworkPolicyPeer().
					WithNamespaceSelector(metav1ac.LabelSelector().
						WithMatchLabels(map[string]string{corev1.LabelMetadataName: gatewayNamespace})).
					WithPodSelector(metav1ac.LabelSelector().
						WithMatchLabels(map[string]string{"app.kubernetes.io/name": GatewayName}))).
				WithPorts(networkingv1ac.NetworkPolicyPort().
					WithProtocol(tcp).
					WithPort(intstr.FromInt32(port(a))))))
}

// gatewayNamespace is where the NetworkPolicy of a admits the gateway from.
func gatewayNamespace(a *v1alpha1.Agent, opts Options) string {
	if n := a.Spec.Network; n != nil && n.GatewayNamespace != "" {
		return n.GatewayNamespace
	}
	if opts.GatewayNamespace != "" {
		return opts.GatewayNamespace
	}
	return a.Namespace
}

package controller

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/agentplane/agentplane/api/v1alpha1"
)

func TestComputeStatus(t *testing.T) {
	agent := func(replicas int32) *v1alpha1.Agent {
		return &v1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Generation: 4}, Spec: v1alpha1.AgentSpec{Replicas: ptr.To(replicas)}}
	}
	rolled := observation{found: true, generation: 2, observedGeneration: 2, desired: 3, replicas: 3, ready: 3, updated: 3}
	type want struct{ ready, available, progressing, degraded string } // "True/Reason"
	cases := []struct {
		name     string
		a        *v1alpha1.Agent
		obs      observation
		applyErr error
		want     want
	}{
		{"no workload yet", agent(3), observation{}, nil,
			want{"False/ReplicasNotReady", "False/NoReplicaReady", "True/RollingOut", "False/AsExpected"}},
		{"all ready", agent(3), rolled, nil,
			want{"True/ReplicasReady", "True/ReplicasAvailable", "False/RolledOut", "False/AsExpected"}},
		{"workload has not seen the new spec", agent(3), func() observation { o := rolled; o.generation = 3; return o }(), nil,
			want{"False/ReplicasNotReady", "True/ReplicasAvailable", "True/RollingOut", "False/AsExpected"}},
		{"old replicas still around during a rollout", agent(3), func() observation { o := rolled; o.replicas = 4; o.updated = 2; return o }(), nil,
			want{"False/ReplicasNotReady", "True/ReplicasAvailable", "True/RollingOut", "False/AsExpected"}},
		{"one crash-looping", agent(3), func() observation { o := rolled; o.ready = 2; o.failing = "p: CrashLoopBackOff"; return o }(), nil,
			want{"False/ReplicasNotReady", "True/ReplicasAvailable", "True/RollingOut", "True/ReplicaFailing"}},
		{"stalled rollout", agent(3), func() observation { o := rolled; o.ready = 0; o.stalled = "ProgressDeadlineExceeded: x"; return o }(), nil,
			want{"False/ReplicasNotReady", "False/NoReplicaReady", "False/RolloutStalled", "True/RolloutStalled"}},
		{"scaled to zero", agent(0), observation{found: true, generation: 1, observedGeneration: 1}, nil,
			want{"True/ReplicasReady", "True/ReplicasAvailable", "False/RolledOut", "False/AsExpected"}},
		{"rejected", agent(3), rolled, errRejected,
			want{"False/Rejected", "True/ReplicasAvailable", "False/Rejected", "True/Rejected"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := computeStatus(tc.a, tc.obs, tc.applyErr)
			for typ, w := range map[string]string{
				v1alpha1.ConditionReady: tc.want.ready, v1alpha1.ConditionAvailable: tc.want.available,
				v1alpha1.ConditionProgressing: tc.want.progressing, v1alpha1.ConditionDegraded: tc.want.degraded,
			} {
				c := meta.FindStatusCondition(st.Conditions, typ)
				if c == nil {
					t.Fatalf("%s missing", typ)
				}
				if got := string(c.Status) + "/" + c.Reason; got != w {
					t.Errorf("%s = %s, want %s (%s)", typ, got, w, c.Message)
				}
				if c.ObservedGeneration != 4 {
					t.Errorf("%s observedGeneration = %d, want 4", typ, c.ObservedGeneration)
				}
			}
			if st.ObservedGeneration != 4 {
				t.Errorf("observedGeneration = %d, want 4", st.ObservedGeneration)
			}
		})
	}
}

func TestFailingReason(t *testing.T) {
	pod := func(reason string) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}}}}
	}
	for reason, want := range map[string]string{
		"CrashLoopBackOff": "CrashLoopBackOff", "ImagePullBackOff": "ImagePullBackOff", "ErrImagePull": "ErrImagePull",
		"ContainerCreating": "", "PodInitializing": "",
	} {
		if got := failingReason(pod(reason)); got != want {
			t.Errorf("waiting %s: failing = %q, want %q", reason, got, want)
		}
	}
	terminating := pod("CrashLoopBackOff")
	terminating.DeletionTimestamp = &metav1.Time{}
	if got := failingReason(terminating); got != "" {
		t.Errorf("terminating pod reported failing: %q", got)
	}
}

func TestOwnsField(t *testing.T) {
	entries := []metav1.ManagedFieldsEntry{
		{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate,
			FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:replicas":{}}}`)},
		{Manager: FieldOwner, Operation: metav1.ManagedFieldsOperationApply,
			FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:template":{}}}`)},
	}
	if ownsField(entries, FieldOwner, "f:spec", "f:replicas") {
		t.Error("operator reported owning replicas it does not apply")
	}
	if !ownsField(entries, FieldOwner, "f:spec", "f:template") {
		t.Error("operator not reported owning the template it applies")
	}
	if ownsField(entries, "kube-controller-manager", "f:spec", "f:replicas") {
		t.Error("an Update entry counted as applied")
	}
}

func TestZoneSpreadIsHardOnlyWithZones(t *testing.T) {
	a := &v1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Name: "x"}}
	if got := *buildZoneSpread(a).WhenUnsatisfiable; got != corev1.ScheduleAnyway {
		t.Errorf("without zones: %s, want ScheduleAnyway (clusters without zone labels must still run it)", got)
	}
	a.Spec.Placement = &v1alpha1.Placement{Zones: []string{"a"}}
	if got := *buildZoneSpread(a).WhenUnsatisfiable; got != corev1.DoNotSchedule {
		t.Errorf("with zones: %s, want DoNotSchedule", got)
	}
	if got := *buildZoneSpread(a).NodeTaintsPolicy; got != corev1.NodeInclusionPolicyHonor {
		t.Errorf("nodeTaintsPolicy = %s, want Honor (a lost zone must not hold replacements Pending)", got)
	}
}

func TestCPUAutoscaledWorkloadsLeaveReplicasUnset(t *testing.T) {
	a := &v1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: v1alpha1.AgentSpec{Replicas: ptr.To[int32](3), Image: "i"}}
	if r := buildDeployment(a).Spec.Replicas; r == nil || *r != 3 {
		t.Errorf("deployment replicas = %v, want 3", r)
	}
	a.Spec.Autoscaling = &v1alpha1.Autoscaling{MaxReplicas: 5, TargetCPUUtilizationPercentage: ptr.To[int32](70)}
	if r := buildDeployment(a).Spec.Replicas; r != nil {
		t.Errorf("autoscaled deployment replicas = %d, want unset", *r)
	}
	a.Spec.State, a.Spec.Memory = v1alpha1.Stateful, &v1alpha1.MemorySpec{Size: "1Gi"}
	if r := buildStatefulSet(a).Spec.Replicas; r != nil {
		t.Errorf("autoscaled statefulset replicas = %d, want unset", *r)
	}
	if k := *buildHPA(a).Spec.ScaleTargetRef.Kind; k != "StatefulSet" {
		t.Errorf("hpa target kind = %s, want StatefulSet", k)
	}
}

// Under task-based autoscaling the operator sets the replicas itself, to the decision in
// status.autoscaling, zero included; it makes no HorizontalPodAutoscaler.
func TestTaskAutoscaledWorkloadsFollowTheDecision(t *testing.T) {
	a := &v1alpha1.Agent{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: v1alpha1.AgentSpec{Replicas: ptr.To[int32](3), Image: "i",
		Autoscaling: &v1alpha1.Autoscaling{MinReplicas: ptr.To[int32](0), MaxReplicas: 5}}}
	a.Status.Autoscaling = &v1alpha1.AutoscalingStatus{DesiredReplicas: 0}
	if r := buildDeployment(a).Spec.Replicas; r == nil || *r != 0 {
		t.Errorf("deployment replicas = %v, want 0 (the decision)", r)
	}
	a.Status.Autoscaling.DesiredReplicas = 4
	a.Spec.State, a.Spec.Memory = v1alpha1.Stateful, &v1alpha1.MemorySpec{Size: "1Gi"}
	if r := buildStatefulSet(a).Spec.Replicas; r == nil || *r != 4 {
		t.Errorf("statefulset replicas = %v, want 4 (the decision)", r)
	}
	if cpuAutoscaled(a) || !taskAutoscaled(a) {
		t.Errorf("cpuAutoscaled = %v, taskAutoscaled = %v; want task-based", cpuAutoscaled(a), taskAutoscaled(a))
	}
}

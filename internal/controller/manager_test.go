package controller_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/controller"
	"github.com/agentplane/agentplane/internal/testutil"
)

// operatorConfig returns a client config for a user holding exactly the operator's generated
// ClusterRole (config/rbac/role.yaml) and its leader-election Role in ns: the permissions the
// install manifests grant, no more.
func operatorConfig(t *testing.T, ns string) *rest.Config {
	t.Helper()
	ctx := t.Context()
	user := "system:serviceaccount:" + ns + ":agentplane-operator"
	role := &rbacv1.ClusterRole{}
	readYAML(t, "../../config/rbac/role.yaml", role)
	role.Name = "agentplane-operator-" + ns
	leader := &rbacv1.Role{}
	readYAML(t, "../../config/rbac/leader_election_role.yaml", leader)
	leader.Namespace = ns
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	objs := []client.Object{
		role,
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   subject,
		},
		leader,
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: leader.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: leader.Name},
			Subjects:   subject,
		},
	}
	for _, o := range objs {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
	t.Cleanup(func() {
		for _, o := range objs[:2] {
			_ = env.Client.Delete(context.Background(), o)
		}
	})
	u, err := env.Env.AddUser(envtest.User{Name: user}, env.Config)
	if err != nil {
		t.Fatal(err)
	}
	return u.Config()
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(path))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestManagerWithLeastPrivilege runs the operator the way it is deployed — a manager with leader
// election and label-filtered caches, as a user holding only the generated role — and checks the
// whole loop: objects written, status following the workload, events, and deletion.
func TestManagerWithLeastPrivilege(t *testing.T) {
	ns := env.Namespace(t)
	cfg := operatorConfig(t, ns)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  controller.NewScheme(),
		Cache:                   controller.CacheOptions(""),
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		LeaderElection:          true,
		LeaderElectionID:        "agentplane-operator",
		LeaderElectionNamespace: ns,
		LeaseDuration:           ptrDuration(15 * time.Second),
		RenewDeadline:           ptrDuration(10 * time.Second),
		RetryPeriod:             ptrDuration(200 * time.Millisecond),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := controller.Setup(mgr, controller.Options{GatewayNamespace: "agentplane-system"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("manager: %v", err)
		}
	})
	select {
	case <-mgr.Elected():
	case <-time.After(30 * time.Second):
		t.Fatal("not elected leader within 30s")
	}

	a := newAgent(ns, "triage")
	if err := env.Client.Create(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	dep := &appsv1.Deployment{}
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		return env.Client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "triage"}, dep)
	})
	for _, o := range []client.Object{&corev1.Service{}, &corev1.ServiceAccount{}} {
		testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
			return env.Client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "triage"}, o)
		})
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		got := get(t, ns, "triage", &v1alpha1.Agent{})
		if c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionProgressing); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("progressing = %+v", c)
		}
		return nil
	})

	// The Deployment controller reports the replicas ready; the watch on the Deployment brings
	// the Agent to Ready without anything touching the Agent.
	dep = get(t, ns, "triage", &appsv1.Deployment{})
	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 3, AvailableReplicas: 3}
	if err := env.Client.Status().Update(t.Context(), dep); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		got := get(t, ns, "triage", &v1alpha1.Agent{})
		if !meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.ConditionReady) || got.Status.ReadyReplicas != 3 {
			return fmt.Errorf("status = %+v", got.Status)
		}
		return nil
	})
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		var evs eventsv1.EventList
		if err := env.Client.List(t.Context(), &evs, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Regarding.Kind == "Agent" && e.Regarding.Name == "triage" && e.Reason == "Ready" && e.ReportingController == controller.FieldOwner {
				return nil
			}
		}
		return fmt.Errorf("no Ready event for the agent among %d events", len(evs.Items))
	})

	// A field of the operator's that someone else changes on an owned object is put back.
	svc := get(t, ns, "triage", &corev1.Service{})
	svc.Spec.Selector[controller.LabelAgent] = "hijacked"
	if err := env.Client.Update(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		got := get(t, ns, "triage", &corev1.Service{})
		if got.Spec.Selector[controller.LabelAgent] != "triage" {
			return fmt.Errorf("selector = %v", got.Spec.Selector)
		}
		return nil
	})

	if err := env.Client.Delete(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		err := env.Client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "triage"}, &v1alpha1.Agent{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("agent still there: %v", err)
	})
}

func ptrDuration(d time.Duration) *time.Duration { return &d }

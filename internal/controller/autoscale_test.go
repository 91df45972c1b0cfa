package controller_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/controller"
	"github.com/agentplane/agentplane/internal/controller/demand"
	"github.com/agentplane/agentplane/internal/testutil"
)

func taskBased(lo, hi int32) func(*v1alpha1.Agent) {
	return func(a *v1alpha1.Agent) {
		a.Spec.Autoscaling = &v1alpha1.Autoscaling{MinReplicas: ptr.To(lo), MaxReplicas: hi}
	}
}

func replicasOf(t *testing.T, ns, name string) int32 {
	t.Helper()
	return ptr.Deref(get(t, ns, name, &appsv1.Deployment{}).Spec.Replicas, -1)
}

// setDecision writes status.autoscaling as the autoscaler would.
func setDecision(t *testing.T, ns, name string, n int32, reason string) {
	t.Helper()
	a := get(t, ns, name, &v1alpha1.Agent{})
	a.Status.Autoscaling = &v1alpha1.AutoscalingStatus{DesiredReplicas: n, Reason: reason, LastScaleTime: ptr.To(metav1.Now())}
	if err := env.Client.Status().Update(t.Context(), a); err != nil {
		t.Fatal(err)
	}
}

// Task-based autoscaling (spec.autoscaling without targetCPUUtilizationPercentage) makes no
// HorizontalPodAutoscaler: the operator sets the replicas to the decision kept in the status,
// starting from spec.replicas within the bounds, keeping it within the bounds when they change,
// and a restarted operator does not reset it.
func TestTaskBasedAutoscalingFollowsTheDecisionInStatus(t *testing.T) {
	ns := env.Namespace(t)
	r, events := reconciler()
	a := newAgent(ns, "triage", func(a *v1alpha1.Agent) { a.Spec.Replicas = ptr.To[int32](8) }, taskBased(1, 6))
	if err := env.Client.Create(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)
	notFound(t, ns, "triage", &autoscalingv2.HorizontalPodAutoscaler{})
	if got := replicasOf(t, ns, "triage"); got != 6 {
		t.Errorf("replicas = %d, want spec.replicas 8 clamped to maxReplicas 6", got)
	}
	st := get(t, ns, "triage", &v1alpha1.Agent{}).Status.Autoscaling
	if st == nil || st.DesiredReplicas != 6 || st.LastScaleTime == nil || !strings.Contains(st.Reason, "spec.replicas") {
		t.Fatalf("status.autoscaling = %+v, want 6 from spec.replicas", st)
	}
	if !slices.Contains(events.reasons(), "Normal/Scaled") {
		t.Errorf("events = %v, want a Scaled event", events.reasons())
	}

	// The autoscaler decides 2: the Deployment follows; the operator owns spec.replicas.
	setDecision(t, ns, "triage", 2, "scaled 6→2: load 0.10 under target 0.70 for 5m0s")
	reconcileOnce(t, r, a)
	dep := get(t, ns, "triage", &appsv1.Deployment{})
	if got := ptr.Deref(dep.Spec.Replicas, -1); got != 2 {
		t.Errorf("replicas = %d, want the decision 2", got)
	}
	if owners := replicaOwners(dep.ManagedFields); !slices.Contains(owners, controller.FieldOwner) {
		t.Errorf("spec.replicas owners = %v, want the operator", owners)
	}

	// Someone scales the Deployment by hand: the operator puts the decision back.
	scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "triage"}, Spec: autoscalingv1.ScaleSpec{Replicas: 5}}
	if err := env.Client.SubResource("scale").Update(t.Context(), dep, client.WithSubResourceBody(scale), client.FieldOwner("kubectl")); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)
	if got := replicasOf(t, ns, "triage"); got != 2 {
		t.Errorf("replicas after a manual scale and a reconcile = %d, want the decision 2", got)
	}

	// A restarted operator keeps the decision.
	r2, _ := reconciler()
	reconcileOnce(t, r2, a)
	if got := replicasOf(t, ns, "triage"); got != 2 {
		t.Errorf("replicas after an operator restart = %d, want 2 kept", got)
	}

	// The bounds move above the decision: it is brought within them, with an event.
	a = get(t, ns, "triage", &v1alpha1.Agent{})
	a.Spec.Autoscaling.MinReplicas = ptr.To[int32](3)
	if err := env.Client.Update(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	events.list, events.notes = nil, nil
	reconcileOnce(t, r, a)
	if got := replicasOf(t, ns, "triage"); got != 3 {
		t.Errorf("replicas after minReplicas 3 = %d, want 3", got)
	}
	if st := get(t, ns, "triage", &v1alpha1.Agent{}).Status.Autoscaling; st == nil || st.DesiredReplicas != 3 {
		t.Errorf("status.autoscaling = %+v, want 3", st)
	}
	if !slices.ContainsFunc(events.notes, func(n string) bool { return strings.HasPrefix(n, "Normal/Scaled: scaled 2→3") }) {
		t.Errorf("events = %v, want Scaled 2→3", events.notes)
	}

	// Zero is a decision like any other when minReplicas is 0; the agent is then Available
	// (nothing is wrong: its next task starts a replica).
	a = get(t, ns, "triage", &v1alpha1.Agent{})
	a.Spec.Autoscaling.MinReplicas = ptr.To[int32](0)
	if err := env.Client.Update(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	setDecision(t, ns, "triage", 0, "scaled 3→0: no task for 5m0s")
	reconcileOnce(t, r, a)
	if got := replicasOf(t, ns, "triage"); got != 0 {
		t.Errorf("replicas = %d, want 0", got)
	}
}

// Switching between CPU and task-based autoscaling, and off, never resets the running replicas,
// and exactly one of the operator or the HorizontalPodAutoscaler sets them.
func TestSwitchingBetweenCPUAndTaskBasedAutoscaling(t *testing.T) {
	ns := env.Namespace(t)
	r, _ := reconciler()
	cpu := &v1alpha1.Autoscaling{MinReplicas: ptr.To[int32](2), MaxReplicas: 10, TargetCPUUtilizationPercentage: ptr.To[int32](60)}
	a := newAgent(ns, "triage", func(a *v1alpha1.Agent) { a.Spec.Autoscaling = cpu.DeepCopy() })
	if err := env.Client.Create(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)
	get(t, ns, "triage", &autoscalingv2.HorizontalPodAutoscaler{})
	if st := get(t, ns, "triage", &v1alpha1.Agent{}).Status.Autoscaling; st != nil {
		t.Errorf("status.autoscaling = %+v under CPU autoscaling, want none", st)
	}
	dep := get(t, ns, "triage", &appsv1.Deployment{})
	scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "triage"}, Spec: autoscalingv1.ScaleSpec{Replicas: 7}}
	if err := env.Client.SubResource("scale").Update(t.Context(), dep, client.WithSubResourceBody(scale), client.FieldOwner("kube-controller-manager")); err != nil {
		t.Fatal(err)
	}

	// CPU → task-based: the HPA goes, the 7 running replicas are kept and the operator owns them.
	a = get(t, ns, "triage", &v1alpha1.Agent{})
	a.Spec.Autoscaling = &v1alpha1.Autoscaling{MinReplicas: ptr.To[int32](2), MaxReplicas: 10}
	if err := env.Client.Update(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)
	notFound(t, ns, "triage", &autoscalingv2.HorizontalPodAutoscaler{})
	dep = get(t, ns, "triage", &appsv1.Deployment{})
	if got := ptr.Deref(dep.Spec.Replicas, -1); got != 7 {
		t.Errorf("replicas after switching to task-based = %d, want 7 kept", got)
	}
	if owners := replicaOwners(dep.ManagedFields); !slices.Contains(owners, controller.FieldOwner) {
		t.Errorf("spec.replicas owners = %v, want the operator", owners)
	}
	if st := get(t, ns, "triage", &v1alpha1.Agent{}).Status.Autoscaling; st == nil || st.DesiredReplicas != 7 || !strings.Contains(st.Reason, "running replicas") {
		t.Errorf("status.autoscaling = %+v, want 7 from the running replicas", st)
	}
	setDecision(t, ns, "triage", 4, "scaled 7→4: test")
	reconcileOnce(t, r, a)

	// Task-based → CPU: the HPA is back, the 4 replicas are handed over, the decision is cleared.
	a = get(t, ns, "triage", &v1alpha1.Agent{})
	a.Spec.Autoscaling = cpu.DeepCopy()
	if err := env.Client.Update(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)
	get(t, ns, "triage", &autoscalingv2.HorizontalPodAutoscaler{})
	dep = get(t, ns, "triage", &appsv1.Deployment{})
	if got := ptr.Deref(dep.Spec.Replicas, -1); got != 4 {
		t.Errorf("replicas after switching to CPU = %d, want 4 kept", got)
	}
	if owners := replicaOwners(dep.ManagedFields); slices.Contains(owners, controller.FieldOwner) {
		t.Errorf("spec.replicas owners = %v; the operator must let go of them under CPU autoscaling", owners)
	}
	if st := get(t, ns, "triage", &v1alpha1.Agent{}).Status.Autoscaling; st != nil {
		t.Errorf("status.autoscaling = %+v after switching to CPU, want none", st)
	}

	// Off → task-based again, from spec.replicas' 3 (autoscaling off first).
	a = get(t, ns, "triage", &v1alpha1.Agent{})
	a.Spec.Autoscaling = nil
	if err := env.Client.Update(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)
	notFound(t, ns, "triage", &autoscalingv2.HorizontalPodAutoscaler{})
	if got := replicasOf(t, ns, "triage"); got != 3 {
		t.Errorf("replicas with autoscaling off = %d, want spec.replicas 3", got)
	}
	a = get(t, ns, "triage", &v1alpha1.Agent{})
	a.Spec.Autoscaling = &v1alpha1.Autoscaling{MaxReplicas: 2}
	if err := env.Client.Update(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, r, a)
	if got := replicasOf(t, ns, "triage"); got != 2 {
		t.Errorf("replicas after switching task-based on with maxReplicas 2 = %d, want 3 clamped to 2", got)
	}
}

// fakeGateway answers GET /api/v1/agents with the demand it is set to, for one agent, or fails.
type fakeGateway struct {
	*httptest.Server
	inFlight, queued atomic.Int32
	down             atomic.Bool
}

func newFakeGateway(t *testing.T, agent string) *fakeGateway {
	g := &fakeGateway{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, `{"agents":[{"name":%q,"inFlight":%d,"queued":%d}]}`, agent, g.inFlight.Load(), g.queued.Load())
	}))
	t.Cleanup(g.Close)
	return g
}

// TestAutoscalerScalesOnGatewayDemand runs the operator as deployed (least privilege, leader
// election) with the autoscaler, which finds a fake gateway from the gateway Service's
// EndpointSlice: queued tasks scale the agent from zero, an idle agent goes back to zero after
// scaleToZeroAfter, and a gateway that stops answering never makes it scale down.
func TestAutoscalerScalesOnGatewayDemand(t *testing.T) {
	ns := env.Namespace(t)
	gw := newFakeGateway(t, "burst")
	// What the EndpointSlice controller writes for the gateway Service (no controllers here). An
	// EndpointSlice may not hold a loopback address: the gateway's pod is at 10.0.0.2:8080, and
	// the autoscaler's client dials the fake gateway for it.
	host, port := "10.0.0.2", int32(8080)
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agentplane-gateway-abc", Labels: map[string]string{
			"app.kubernetes.io/name": demand.GatewayAppName, discoveryv1.LabelServiceName: "agentplane-gateway"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port)}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "agentplane-gateway-0"}}},
	}
	if err := env.Client.Create(t.Context(), slice); err != nil {
		t.Fatal(err)
	}

	cfg := operatorConfig(t, ns)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  controller.NewScheme(),
		Cache:                   controller.CacheOptions(ns, ns),
		Controller:              config.Controller{SkipNameValidation: ptr.To(true)}, // one manager per test
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
	if err := controller.Setup(mgr, controller.Options{GatewayNamespace: ns}); err != nil {
		t.Fatal(err)
	}
	if err := controller.SetupAutoscaler(mgr, controller.AutoscalerOptions{
		Gateways: &demand.EndpointSlices{Reader: mgr.GetClient(), Namespace: ns, Serves: ns},
		Interval: 100 * time.Millisecond, KeepFor: 500 * time.Millisecond,
		Client: &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr != "10.0.0.2:8080" {
				return nil, fmt.Errorf("dial %s: not the gateway's pod", addr)
			}
			return (&net.Dialer{}).DialContext(ctx, network, gw.Listener.Addr().String())
		}}},
	}); err != nil {
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

	a := newAgent(ns, "burst", func(a *v1alpha1.Agent) {
		a.Spec.Replicas = ptr.To[int32](0)
		a.Spec.MaxConcurrency = 2
		a.Spec.Autoscaling = &v1alpha1.Autoscaling{MinReplicas: ptr.To[int32](0), MaxReplicas: 4,
			ScaleDownDelay: &metav1.Duration{Duration: time.Second}, ScaleToZeroAfter: &metav1.Duration{Duration: 2 * time.Second}}
	})
	if err := env.Client.Create(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	waitReplicas := func(want int32, within time.Duration) {
		t.Helper()
		testutil.Eventually(t, within, 50*time.Millisecond, func() error {
			var dep appsv1.Deployment
			if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "burst"}, &dep); err != nil {
				return err
			}
			return testutil.Check(ptr.Deref(dep.Spec.Replicas, -1) == want, "deployment replicas %d, want %d", ptr.Deref(dep.Spec.Replicas, -1), want)
		})
	}
	waitReplicas(0, 20*time.Second)

	// 5 tasks queued, 2 slots a replica at a target load of 0.7: ceil(5 / 1.4) = 4 replicas.
	gw.queued.Store(5)
	start := time.Now()
	waitReplicas(4, 10*time.Second)
	t.Logf("scaled 0→4 %v after the gateway reported 5 queued tasks", time.Since(start).Round(time.Millisecond))
	if st := get(t, ns, "burst", &v1alpha1.Agent{}).Status.Autoscaling; st == nil || st.DesiredReplicas != 4 || !strings.Contains(st.Reason, "scaled 0→4") {
		t.Errorf("status.autoscaling = %+v", st)
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error { return scaledEvent(t, ns, "burst", "scaled 0→4") })
	if v, err := gauge("agentplane_autoscaler_desired_replicas", ns, "burst"); err != nil || v != 4 {
		t.Errorf("desired replicas gauge = %v (%v), want 4", v, err)
	}

	// The tasks run, then finish: back to zero after scaleToZeroAfter.
	gw.queued.Store(0)
	gw.inFlight.Store(3)
	idle := time.Now()
	gw.inFlight.Store(0)
	waitReplicas(0, 15*time.Second)
	if d := time.Since(idle); d < 2*time.Second {
		t.Errorf("went to zero %v after the last task; scaleToZeroAfter is 2s", d)
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error { return scaledEvent(t, ns, "burst", "→0: no task for 2s") })

	// Up again to 2, then the gateway stops answering: it may not scale down on missing data,
	// however long it lasts.
	gw.inFlight.Store(2)
	waitReplicas(2, 10*time.Second)
	gw.inFlight.Store(0)
	gw.down.Store(true)
	// For longer than scaleToZeroAfter and KeepFor, the replicas stay.
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); {
		if got := replicasOf(t, ns, "burst"); got != 2 {
			t.Fatalf("replicas = %d while the only gateway did not answer, want 2 kept", got)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-t.Context().Done():
			return
		}
	}
	// It answers again (idle): the full window of known demand is needed before going to zero.
	back := time.Now()
	gw.down.Store(false)
	waitReplicas(0, 15*time.Second)
	if d := time.Since(back); d < 2*time.Second {
		t.Errorf("went to zero %v after the gateway came back; want a full scaleToZeroAfter (2s) of known demand", d)
	}
}

func scaledEvent(t *testing.T, ns, agent, note string) error {
	var evs eventsv1.EventList
	if err := env.Client.List(t.Context(), &evs, client.InNamespace(ns)); err != nil {
		return err
	}
	var seen []string
	for _, e := range evs.Items {
		if e.Regarding.Kind == "Agent" && e.Regarding.Name == agent && e.Reason == "Scaled" {
			if strings.Contains(e.Note, note) {
				return nil
			}
			seen = append(seen, e.Note)
		}
	}
	return fmt.Errorf("no Scaled event saying %q; Scaled events: %q", note, seen)
}

// gauge reads a gauge of the operator's metrics registry.
func gauge(name, ns, agent string) (float64, error) {
	fams, err := metrics.Registry.Gather()
	if err != nil {
		return 0, err
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == ns && labels["agent"] == agent {
				return m.GetGauge().GetValue(), nil
			}
		}
	}
	return 0, fmt.Errorf("no %s{namespace=%q,agent=%q}", name, ns, agent)
}

package kubernetes_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/controller/testenv"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/discovery/kubernetes"
)

var env = &testenv.Env{}

func TestMain(m *testing.M) { testenv.Main(m, env) }

// The API server has no controllers here, so the test writes what the endpointslice controller
// and the kubelet would: pod status and EndpointSlices.
func TestSourceFollowsPodsAndEndpointSlices(t *testing.T) {
	ns := env.Namespace(t)
	ctx := t.Context()
	c := env.Client
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	for _, n := range []struct{ name, zone, site string }{{"node-a", "zone-a", "clinic-a"}, {"node-b", "zone-b", ""}} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name + "-" + ns, Labels: map[string]string{corev1.LabelTopologyZone: n.zone}}}
		if n.site != "" {
			node.Labels[v1alpha1.LabelSite] = n.site
		}
		must(c.Create(ctx, node))
		t.Cleanup(func() { _ = c.Delete(context.Background(), node) })
	}
	agent := &v1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "triage"},
		Spec: v1alpha1.AgentSpec{
			Image: "registry.example/triage:1", Replicas: ptr.To[int32](2), MaxConcurrency: 6, Description: "front desk",
			Port:      9000,
			Placement: &v1alpha1.Placement{AllowedSites: []string{"clinic-a", "clinic-b"}},
		},
	}
	must(c.Create(ctx, agent))

	pod := func(name, node, ip string, created time.Time) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{v1alpha1.LabelAgent: "triage"}},
			Spec:       corev1.PodSpec{NodeName: node + "-" + ns, Containers: []corev1.Container{{Name: "agent", Image: "x"}}},
		}
		must(c.Create(ctx, p))
		p.Status = corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(created)}},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "agent", Image: "x", Ready: true, Started: ptr.To(true), RestartCount: 2,
				State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(created)}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}},
			}},
		}
		must(c.Status().Update(ctx, p))
		return p
	}
	now := time.Now().Truncate(time.Second)
	p0 := pod("triage-aaaaa", "node-a", "10.0.0.10", now.Add(-time.Minute))
	pod("triage-bbbbb", "node-b", "10.0.0.11", now)

	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "triage-xyz", Labels: map[string]string{
			v1alpha1.LabelAgent: "triage", discoveryv1.LabelServiceName: "triage",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("a2a"), Port: ptr.To[int32](9000)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.0.0.10"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "triage-aaaaa"}},
			{Addresses: []string{"10.0.0.11"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "triage-bbbbb"}},
		},
	}
	must(c.Create(ctx, slice))

	src, err := kubernetes.New(env.Config, kubernetes.Options{Namespace: ns, DefaultSite: "hq", Logger: slog.New(slog.DiscardHandler)})
	must(err)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Start(sctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("source: %v", err)
		}
	})
	select {
	case <-src.Synced():
	case err := <-done:
		t.Fatalf("source stopped before syncing: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("source did not sync within 30s")
	}

	agents := waitFor(t, src, func(as []discovery.Agent) error {
		if len(as) != 1 || len(as[0].Endpoints) != 2 {
			return fmt.Errorf("agents = %+v", as)
		}
		return nil
	})
	a := agents[0]
	if a.Name != "triage" || a.Description != "front desk" || a.MaxConcurrency != 6 || a.Desired != 2 || a.State != "stateless" ||
		len(a.AllowedSites) != 2 {
		t.Errorf("agent = %+v", a)
	}
	e0, e1 := a.Endpoints[0], a.Endpoints[1]
	want0 := discovery.Endpoint{Agent: "triage", Name: "triage-aaaaa", Index: 0, URL: "http://10.0.0.10:9000", Ready: true,
		State: discovery.StateRunning, Zone: "zone-a", Site: "clinic-a", Restarts: 2, LastExit: "exit code 137 (OOMKilled)",
		Since: now.Add(-time.Minute)}
	if !e0.Since.Equal(want0.Since) {
		t.Errorf("endpoint 0 since %v, want %v (when it became ready)", e0.Since, want0.Since)
	}
	e0.Since, want0.Since = time.Time{}, time.Time{}
	if e0 != want0 {
		t.Errorf("endpoint 0 =\n  %+v\nwant\n  %+v", e0, want0)
	}
	if e1.Name != "triage-bbbbb" || e1.Index != 1 || e1.Ready || e1.URL != "http://10.0.0.11:9000" || e1.Zone != "zone-b" || e1.Site != "hq" {
		t.Errorf("endpoint 1 = %+v, want not ready, zone-b, default site hq", e1)
	}
	if a.ReadyCount() != 1 {
		t.Errorf("ready = %d, want 1", a.ReadyCount())
	}

	// The readiness probe passes on the second pod: the EndpointSlice says so, and the change
	// is announced.
	changed := src.Changed()
	slice.Endpoints[1].Conditions.Ready = ptr.To(true)
	must(c.Update(ctx, slice))
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("Changed not closed after the EndpointSlice changed")
	}
	waitFor(t, src, func(as []discovery.Agent) error {
		if n := as[0].ReadyCount(); n != 2 {
			return fmt.Errorf("ready = %d, want 2", n)
		}
		return nil
	})

	// The first pod crash-loops: its state says so, and it stays out of rotation once the
	// endpointslice controller marks it not ready.
	p0.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	p0.Status.ContainerStatuses[0].RestartCount = 3
	must(c.Status().Update(ctx, p0))
	slice.Endpoints[0].Conditions.Ready = ptr.To(false)
	must(c.Update(ctx, slice))
	waitFor(t, src, func(as []discovery.Agent) error {
		e := as[0].Endpoints[0]
		if e.State != discovery.StateCrashLoopBackOff || e.Restarts != 3 || e.Ready {
			return fmt.Errorf("endpoint 0 = %+v", e)
		}
		return nil
	})

	// Terminating (no kubelet here to finish it): shown as such and never ready, even while the
	// EndpointSlice still says ready.
	slice.Endpoints[0].Conditions.Ready = ptr.To(true)
	must(c.Update(ctx, slice))
	must(c.Delete(ctx, p0))
	waitFor(t, src, func(as []discovery.Agent) error {
		e := as[0].Endpoints[0]
		if e.Name != "triage-aaaaa" || e.State != discovery.StateTerminating || e.Ready {
			return fmt.Errorf("endpoint 0 = %+v, want triage-aaaaa Terminating and not ready", e)
		}
		return nil
	})
	must(c.Delete(ctx, p0, client.GracePeriodSeconds(0)))
	waitFor(t, src, func(as []discovery.Agent) error {
		if len(as[0].Endpoints) != 1 || as[0].Endpoints[0].Name != "triage-bbbbb" {
			return fmt.Errorf("endpoints = %+v, want only triage-bbbbb", as[0].Endpoints)
		}
		return nil
	})

	// The agent goes away.
	must(c.Delete(ctx, agent))
	waitFor(t, src, func(as []discovery.Agent) error {
		if len(as) != 0 {
			return fmt.Errorf("agents = %d, want 0", len(as))
		}
		return nil
	})
}

// waitFor polls the snapshot until check passes, and returns the passing snapshot.
func waitFor(t *testing.T, src *kubernetes.Source, check func([]discovery.Agent) error) []discovery.Agent {
	t.Helper()
	var last error
	deadline := time.After(10 * time.Second)
	for {
		ch := src.Changed()
		snap := src.Snapshot()
		if last = check(snap); last == nil {
			return snap
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("snapshot not as expected within 10s: %v", last)
		}
	}
}

// The gateway may start before the API server answers (both restart at once, the network is not
// up yet): discovery keeps trying instead of exiting, and syncs once the API server is there.
func TestSourceWaitsForTheAPIServer(t *testing.T) {
	ns := env.Namespace(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there for now
	apiServer, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Host = "https://" + addr
	src, err := kubernetes.New(cfg, kubernetes.Options{Namespace: ns, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Start(ctx) }()
	defer func() { cancel(); <-done }()

	select {
	case err := <-done:
		t.Fatalf("Start gave up while the API server was unreachable: %v", err)
	case <-src.Synced():
		t.Fatal("synced without an API server")
	case <-time.After(1500 * time.Millisecond): // several attempts
	}

	// Now the API server answers at that address: a TCP relay to it (TLS passes through).
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	var relays sync.WaitGroup
	defer func() { ln.Close(); cancel(); relays.Wait() }()
	relays.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			relays.Go(func() {
				defer in.Close()
				out, err := net.DialTimeout("tcp", apiServer.Host, 5*time.Second)
				if err != nil {
					return
				}
				defer out.Close()
				go func() { <-ctx.Done(); in.Close(); out.Close() }()
				go func() { _, _ = io.Copy(out, in); out.Close() }()
				_, _ = io.Copy(in, out)
			})
		}
	})
	select {
	case <-src.Synced():
	case err := <-done:
		t.Fatalf("Start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not synced 30s after the API server became reachable")
	}
}

// Task-based autoscaled agents are marked so (the gateway then holds their tasks while a replica
// starts), with their bounds, and their desired replicas are the autoscaler's decision in status,
// zero included. CPU-autoscaled agents are not marked.
func TestSourceReportsTaskBasedAutoscaling(t *testing.T) {
	ns := env.Namespace(t)
	ctx := t.Context()
	c := env.Client
	task := &v1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "burst"},
		Spec: v1alpha1.AgentSpec{Image: "x", Replicas: ptr.To[int32](0),
			Autoscaling: &v1alpha1.Autoscaling{MinReplicas: ptr.To[int32](0), MaxReplicas: 4}},
	}
	cpu := &v1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cpu"},
		Spec: v1alpha1.AgentSpec{Image: "x", Replicas: ptr.To[int32](2),
			Autoscaling: &v1alpha1.Autoscaling{MinReplicas: ptr.To[int32](2), MaxReplicas: 5, TargetCPUUtilizationPercentage: ptr.To[int32](60)}},
	}
	for _, a := range []*v1alpha1.Agent{task, cpu} {
		if err := c.Create(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	src, err := kubernetes.New(env.Config, kubernetes.Options{Namespace: ns, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Start(sctx) }()
	t.Cleanup(func() { cancel(); <-done })

	check := func(want int) {
		t.Helper()
		waitFor(t, src, func(as []discovery.Agent) error {
			b, ok := discovery.Lookup(as, "burst")
			cp, ok2 := discovery.Lookup(as, "cpu")
			if !ok || !ok2 {
				return fmt.Errorf("agents = %+v", as)
			}
			if !b.Autoscaled || b.MinReplicas != 0 || b.MaxReplicas != 4 || b.Desired != want {
				return fmt.Errorf("burst = autoscaled %v [%d, %d] desired %d, want autoscaled [0, 4] desired %d", b.Autoscaled, b.MinReplicas, b.MaxReplicas, b.Desired, want)
			}
			if cp.Autoscaled || cp.Desired != 2 {
				return fmt.Errorf("cpu = autoscaled %v desired %d, want not task-autoscaled, desired 2", cp.Autoscaled, cp.Desired)
			}
			return nil
		})
	}
	check(0)
	task.Status.Autoscaling = &v1alpha1.AutoscalingStatus{DesiredReplicas: 3, Reason: "scaled 0→3: test"}
	if err := c.Status().Update(ctx, task); err != nil {
		t.Fatal(err)
	}
	check(3)
}

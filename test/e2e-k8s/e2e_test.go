//go:build e2ek8s

package e2ek8s

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/controller"
	"github.com/agentplane/agentplane/internal/controller/demand"
	"github.com/agentplane/agentplane/internal/discovery"
	kdiscovery "github.com/agentplane/agentplane/internal/discovery/kubernetes"
	"github.com/agentplane/agentplane/test/k8scluster"
)

const (
	systemNS = "agentplane-system"
	image    = "registry.example/agent:1.0"
)

var zones = []string{"zone-a", "zone-b", "zone-c"}

// binDir finds the binaries hack/k8s-binaries.sh builds: it skips the test without them, and
// fails it in CI, which builds them first.
func binDir(t *testing.T, names ...string) string {
	t.Helper()
	bin := k8scluster.DefaultBin()
	for _, b := range names {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			msg := fmt.Sprintf("%s missing in %s: run make k8s-binaries (hack/k8s-binaries.sh all)", b, bin)
			if os.Getenv("CI") != "" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return bin
}

func repoRoot() string { return filepath.Join("..", "..") }

func TestKubernetes(t *testing.T) {
	bin := binDir(t, "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")
	ctx := t.Context()
	dir := t.TempDir()
	if keep := os.Getenv("E2E_KEEP"); keep != "" {
		dir = keep
		_ = os.MkdirAll(dir, 0o755)
	}
	installCRD := func(c *k8scluster.Cluster) error {
		_, err := c.Kubectl(ctx, nil, "apply", "--server-side", "-k", filepath.Join(repoRoot(), "config", "crd"))
		return err
	}
	c, err := k8scluster.Start(ctx, k8scluster.Options{Bin: bin, Dir: dir, Zones: zones, NodesPerZone: 2, BeforeControllers: installCRD})
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	t.Cleanup(c.Stop)
	opLog, err := os.Create(filepath.Join(dir, "operator.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { opLog.Close() })
	ctrl.SetLogger(logr.FromSlogHandler(slog.NewJSONHandler(opLog, nil)))
	discoveryLog, err := os.Create(filepath.Join(dir, "discovery.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { discoveryLog.Close() })
	t.Logf("cluster up in %v (etcd, kube-apiserver, controller-manager, scheduler, 3×kwok, 6 nodes); logs in %s", c.StartTime.Round(time.Millisecond), dir)
	// The operator and the gateway's discovery run in this process, each with its log file.
	d := diagnosis{c: c, logs: []k8scluster.LogSource{
		{Name: "operator", File: opLog.Name()},
		{Name: "gateway discovery", File: discoveryLog.Name()},
	}}

	ok := t.Run("install", func(t *testing.T) { testInstall(t, d) })
	if !ok {
		t.FailNow()
	}
	startOperator(t, d)
	src := startDiscovery(t, d, slog.New(slog.NewJSONHandler(discoveryLog, nil)))

	ok = t.Run("zone spread", func(t *testing.T) { testZoneSpread(t, d, src) })
	t.Run("drain respects the disruption budget", func(t *testing.T) { testDrain(t, d) })
	t.Run("delete cleans up", func(t *testing.T) { testDeleteCleansUp(t, d) })
	t.Run("autoscale from zero on task demand", func(t *testing.T) { testAutoscaleFromZero(t, d, src) })
	if ok {
		t.Run("zone loss", func(t *testing.T) { testZoneLoss(t, d, src) })
	}

	// E2E_HOLD=10m keeps the cluster up after the tests, to look around with its kubeconfig.
	if hold, err := time.ParseDuration(os.Getenv("E2E_HOLD")); err == nil {
		t.Logf("holding the cluster for %v: export KUBECONFIG=%s", hold, c.Kubeconfig)
		select {
		case <-time.After(hold):
		case <-ctx.Done():
		}
	}
}

// testInstall applies config/default for real (CRD, least-privilege RBAC, operator and gateway
// Deployments), then checks the samples and the Helm chart against the API server.
func testInstall(t *testing.T, d diagnosis) {
	ctx, c := t.Context(), d.c
	start := time.Now()
	if _, err := c.Kubectl(ctx, nil, "apply", "--server-side", "-k", filepath.Join(repoRoot(), "config", "default")); err != nil {
		t.Fatal(err)
	}
	kubectlWait(t, c, "CRD not established", d.about("", "crd/agents.agentplane.io"),
		"wait", "--for=condition=Established", "--timeout=30s", "crd/agents.agentplane.io")
	if _, err := c.Kubectl(ctx, nil, "apply", "--dry-run=server", "-k", filepath.Join(repoRoot(), "config", "default")); err != nil {
		t.Errorf("config/default does not re-apply cleanly: %v", err)
	}
	if out, err := c.Kubectl(ctx, nil, "apply", "--dry-run=server", "-n", systemNS, "-k", filepath.Join(repoRoot(), "config", "samples")); err != nil {
		t.Errorf("config/samples rejected: %v", err)
	} else if n := strings.Count(out, "agent.agentplane.io/"); n != 3 {
		t.Errorf("samples: %d agents accepted, want 3:\n%s", n, out)
	}
	t.Logf("config/default applied and samples validated in %v", time.Since(start).Round(time.Millisecond))

	// The install's own pods pass the namespace's restricted Pod Security level (kwok runs them).
	waitFor(t, 30*time.Second, d.about(systemNS, "deployment/agentplane-operator", "deployment/agentplane-gateway"), func() error {
		for name, want := range map[string]int{"agentplane-operator": 2, "agentplane-gateway": 1} {
			if n := len(runningPods(t, c, systemNS, map[string]string{"app.kubernetes.io/name": name})); n != want {
				return fmt.Errorf("%s: %d running pods, want %d", name, n, want)
			}
		}
		return nil
	})

	helm := filepath.Join(c.Bin, "helm")
	if _, err := os.Stat(helm); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("helm missing in %s: run make k8s-binaries", c.Bin)
		}
		t.Logf("helm not built (make k8s-binaries builds it); chart not checked")
		return
	}
	chart := filepath.Join(repoRoot(), "charts", "agentplane")
	if out, err := exec.CommandContext(ctx, helm, "lint", "--strict", chart).CombinedOutput(); err != nil {
		t.Errorf("helm lint: %v\n%s", err, out)
	}
	for _, values := range [][]string{nil, {"--set", "operator.watchNamespaces={team-a,team-b}", "--set", "gateway.site=clinic-a"}} {
		args := append([]string{"template", "agentplane", chart, "--namespace", systemNS, "--include-crds"}, values...)
		rendered, err := exec.CommandContext(ctx, helm, args...).Output()
		if err != nil {
			t.Fatalf("helm template %v: %v", values, err)
		}
		if len(values) > 0 {
			for _, ns := range []string{"team-a", "team-b"} {
				_ = c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
			}
		}
		if _, err := c.Kubectl(ctx, bytes.NewReader(rendered), "apply", "--dry-run=server", "-f", "-"); err != nil {
			t.Errorf("chart (values %v) rejected by the API server: %v", values, err)
		}
		if len(values) == 0 {
			checkChartRBAC(t, rendered)
		}
	}
	t.Logf("chart linted, rendered with two sets of values and accepted by the API server")
}

// checkChartRBAC compares the chart's operator ClusterRole with config/rbac/role.yaml.
func checkChartRBAC(t *testing.T, rendered []byte) {
	want := &rbacv1.ClusterRole{}
	b, err := os.ReadFile(filepath.Join(repoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, want); err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(rendered), "\n---") {
		var role rbacv1.ClusterRole
		if yaml.Unmarshal([]byte(doc), &role) != nil || role.Kind != "ClusterRole" || role.Name != "agentplane-operator" {
			continue
		}
		if !reflect.DeepEqual(role.Rules, want.Rules) {
			t.Errorf("chart's operator ClusterRole differs from config/rbac/role.yaml:\n%+v\nwant\n%+v", role.Rules, want.Rules)
		}
		return
	}
	t.Error("chart renders no agentplane-operator ClusterRole")
}

// impersonate returns cfg acting as a service account of the install, so that the operator and
// the gateway run here with exactly the permissions config/rbac grants them.
func impersonate(cfg *rest.Config, sa string) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + systemNS + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + systemNS, "system:authenticated"}}
	return out
}

// startOperator runs the operator in this process, as the operator's service account, with
// leader election — what `agentplane operator` runs.
func startOperator(t *testing.T, d diagnosis) {
	t.Helper()
	c := d.c
	mgr, err := ctrl.NewManager(impersonate(c.Config, "agentplane-operator"), ctrl.Options{
		Scheme:                  controller.NewScheme(),
		Cache:                   controller.CacheOptions(""),
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		LeaderElection:          true,
		LeaderElectionID:        "agentplane-operator",
		LeaderElectionNamespace: systemNS,
		RetryPeriod:             ptr.To(500 * time.Millisecond),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := controller.Setup(mgr, controller.Options{GatewayNamespace: systemNS, MaxConcurrentReconciles: 2}); err != nil {
		t.Fatal(err)
	}
	// The installed gateway is a kwok pod that runs nothing: the autoscaler asks the gateways
	// the tests start in this process instead (--gateway-url).
	gateways := demand.SourceFunc(func(context.Context) ([]demand.Gateway, error) {
		var out []demand.Gateway
		if urls := autoscaleGateways.Load(); urls != nil {
			for _, u := range *urls {
				out = append(out, demand.Gateway{URL: u, Namespace: systemNS})
			}
		}
		return out, nil
	})
	if err := controller.SetupAutoscaler(mgr, controller.AutoscalerOptions{Gateways: gateways}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-mgr.Elected():
	case err := <-done:
		t.Fatalf("operator stopped: %v\n%s", err, d.about(systemNS, "lease/agentplane-operator")())
	case <-time.After(30 * time.Second):
		t.Fatalf("operator not elected within 30s\n%s", d.about(systemNS, "lease/agentplane-operator")())
	}
}

// startDiscovery runs the gateway's discovery as the gateway's service account.
func startDiscovery(t *testing.T, d diagnosis, log *slog.Logger) *kdiscovery.Source {
	t.Helper()
	src, err := kdiscovery.New(impersonate(d.c.Config, "agentplane-gateway"), kdiscovery.Options{Namespace: systemNS, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- src.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-src.Synced():
	case err := <-done:
		t.Fatalf("discovery stopped: %v\n%s", err, d.about(systemNS)())
	case <-time.After(30 * time.Second):
		t.Fatalf("discovery not synced within 30s\n%s", d.about(systemNS)())
	}
	return src
}

func createAgent(t *testing.T, c *k8scluster.Cluster, name string, replicas int32, mutate func(*v1alpha1.Agent)) *v1alpha1.Agent {
	t.Helper()
	a := &v1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: systemNS, Name: name},
		Spec:       v1alpha1.AgentSpec{Image: image, Replicas: ptr.To(replicas), Args: []string{"simagent"}},
	}
	if mutate != nil {
		mutate(a)
	}
	if err := c.Client.Create(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	return a
}

// placedPod is a running, ready, not terminating pod with its node's zone.
type placedPod struct {
	name, node, zone string
}

// runningPods lists the ready pods matching sel that are not being deleted.
func runningPods(t *testing.T, c *k8scluster.Cluster, ns string, sel map[string]string) []placedPod {
	t.Helper()
	var pods corev1.PodList
	if err := c.Client.List(t.Context(), &pods, client.InNamespace(ns), client.MatchingLabels(sel)); err != nil {
		t.Fatal(err)
	}
	var out []placedPod
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || !podReady(&p) {
			continue
		}
		var node corev1.Node
		if err := c.Client.Get(t.Context(), types.NamespacedName{Name: p.Spec.NodeName}, &node); err != nil {
			t.Fatal(err)
		}
		out = append(out, placedPod{name: p.Name, node: p.Spec.NodeName, zone: node.Labels[corev1.LabelTopologyZone]})
	}
	return out
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func perZone(pods []placedPod) map[string]int {
	m := map[string]int{}
	for _, p := range pods {
		m[p.zone]++
	}
	return m
}

// diagnosis is what a failed wait of a suite prints (k8scluster.Diagnosis): the suite's cluster,
// and the logs of the operator and the gateway acting in it.
type diagnosis struct {
	c    *k8scluster.Cluster
	logs []k8scluster.LogSource
}

// report describes the cluster when a wait fails.
type report func() string

// about is the report of a failed wait on objects in ns, named as kubectl names them
// ("agent/intake", or "agents" for all of them): their status, the namespace's pods, leases and
// recent events, the nodes, and the logs.
func (d diagnosis) about(ns string, refs ...string) report {
	return func() string {
		dg := k8scluster.Diagnosis{Logs: d.logs}
		if ns != "" {
			dg.Namespaces = []string{ns}
		}
		for _, r := range refs {
			dg.Objects = append(dg.Objects, k8scluster.ObjectRef{Namespace: ns, Ref: r})
		}
		// Not the test's context: the report is made as the test fails, and must still be read.
		return d.c.Diagnose(context.Background(), dg)
	}
}

// withLogs is d with more logs to show.
func (d diagnosis) withLogs(logs ...k8scluster.LogSource) diagnosis {
	return diagnosis{c: d.c, logs: append(slices.Clip(d.logs), logs...)}
}

// waitFor polls cond until it returns nil, and fails t with cond's last error and rep's
// description of the cluster after timeout.
func waitFor(t *testing.T, timeout time.Duration, rep report, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v\n%s", timeout, err, rep())
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// kubectlWait runs a kubectl command that waits (wait, rollout status), and fails t with what
// what names, kubectl's output and rep's description of the cluster when it does not succeed.
func kubectlWait(t *testing.T, c *k8scluster.Cluster, what string, rep report, args ...string) string {
	t.Helper()
	out, err := c.Kubectl(t.Context(), nil, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, rep())
	}
	return out
}

func agentReady(t *testing.T, c *k8scluster.Cluster, name string) error {
	var a v1alpha1.Agent
	if err := c.Client.Get(t.Context(), types.NamespacedName{Namespace: systemNS, Name: name}, &a); err != nil {
		return err
	}
	if !meta.IsStatusConditionTrue(a.Status.Conditions, v1alpha1.ConditionReady) || a.Status.ObservedGeneration != a.Generation {
		return fmt.Errorf("agent %s not Ready: %+v", name, a.Status)
	}
	return nil
}

// testZoneSpread: six replicas over three zones land two per zone, one per node, and the
// gateway's discovery sees all six ready with their zones.
func testZoneSpread(t *testing.T, d diagnosis, src *kdiscovery.Source) {
	c := d.c
	start := time.Now()
	createAgent(t, c, "spread", 6, func(a *v1alpha1.Agent) { a.Spec.Placement = &v1alpha1.Placement{Zones: zones} })
	sel := map[string]string{v1alpha1.LabelAgent: "spread"}
	var pods []placedPod
	waitFor(t, 60*time.Second, d.about(systemNS, "agent/spread", "deployment/spread"), func() error {
		pods = runningPods(t, c, systemNS, sel)
		if len(pods) != 6 {
			return fmt.Errorf("%d of 6 replicas running", len(pods))
		}
		return agentReady(t, c, "spread")
	})
	t.Logf("6 replicas running and the Agent Ready in %v", time.Since(start).Round(time.Millisecond))
	if got := perZone(pods); !reflect.DeepEqual(got, map[string]int{"zone-a": 2, "zone-b": 2, "zone-c": 2}) {
		t.Errorf("replicas per zone = %v, want 2 in each", got)
	}
	nodes := map[string]bool{}
	for _, p := range pods {
		nodes[p.node] = true
	}
	if len(nodes) != 6 {
		t.Errorf("replicas on %d nodes, want 6 (one per node, pod anti-affinity)", len(nodes))
	}

	waitSnapshot(t, d, src, "spread", func(a discovery.Agent) error {
		ready := map[string]int{}
		for _, e := range a.Endpoints {
			if e.Ready {
				if !strings.HasPrefix(e.URL, "http://10.") || !strings.HasSuffix(e.URL, ":8080") {
					return fmt.Errorf("endpoint %s url %q, want http://POD_IP:8080", e.Name, e.URL)
				}
				if e.Site != "clinic-a" || e.State != discovery.StateRunning {
					return fmt.Errorf("endpoint %+v", e)
				}
				ready[e.Zone]++
			}
		}
		if !reflect.DeepEqual(ready, map[string]int{"zone-a": 2, "zone-b": 2, "zone-c": 2}) || a.Desired != 6 {
			return fmt.Errorf("ready endpoints per zone %v (desired %d)", ready, a.Desired)
		}
		return nil
	})
}

func waitSnapshot(t *testing.T, d diagnosis, src *kdiscovery.Source, name string, check func(discovery.Agent) error) {
	t.Helper()
	waitFor(t, 30*time.Second, d.about(systemNS, "agent/"+name), func() error {
		a, ok := discovery.Lookup(src.Snapshot(), name)
		if !ok {
			return fmt.Errorf("agent %s not in the gateway's snapshot", name)
		}
		return check(a)
	})
}

func setUnschedulable(t *testing.T, c *k8scluster.Cluster, node string, v bool) {
	t.Helper()
	var n corev1.Node
	if err := c.Client.Get(t.Context(), types.NamespacedName{Name: node}, &n); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(n.DeepCopy())
	n.Spec.Unschedulable = v
	if err := c.Client.Patch(t.Context(), &n, patch); err != nil {
		t.Fatal(err)
	}
}

func evict(t *testing.T, c *k8scluster.Cluster, pod string) error {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: systemNS, Name: pod}}
	return c.Client.SubResource("eviction").Create(t.Context(), p, &policyv1.Eviction{})
}

// testDrain: with minAvailable 2 of 3, draining evicts one replica and the eviction API refuses
// the next until the replacement is ready. All nodes are cordoned (a drain with no spare
// capacity), so the replacement waits until a node is uncordoned: the refusal does not depend on
// how fast the replacement would otherwise start.
func testDrain(t *testing.T, d diagnosis) {
	c := d.c
	createAgent(t, c, "drain", 3, func(a *v1alpha1.Agent) { a.Spec.MinAvailable = ptr.To[int32](2) })
	sel := map[string]string{v1alpha1.LabelAgent: "drain"}
	var pods []placedPod
	waitFor(t, 60*time.Second, d.about(systemNS, "agent/drain", "deployment/drain", "poddisruptionbudget/drain"), func() error {
		if pods = runningPods(t, c, systemNS, sel); len(pods) != 3 {
			return fmt.Errorf("%d of 3 replicas running", len(pods))
		}
		var pdb policyv1.PodDisruptionBudget
		if err := c.Client.Get(t.Context(), types.NamespacedName{Namespace: systemNS, Name: "drain"}, &pdb); err != nil {
			return err
		}
		if pdb.Status.ObservedGeneration != pdb.Generation || pdb.Status.CurrentHealthy != 3 || pdb.Status.DisruptionsAllowed != 1 {
			return fmt.Errorf("pdb status %+v", pdb.Status)
		}
		return nil
	})
	var nodes corev1.NodeList
	if err := c.Client.List(t.Context(), &nodes); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		setUnschedulable(t, c, n.Name, true)
	}
	defer func() {
		for _, n := range nodes.Items {
			setUnschedulable(t, c, n.Name, false)
		}
	}()

	if err := evict(t, c, pods[0].name); err != nil {
		t.Fatalf("first eviction refused: %v", err)
	}
	err := evict(t, c, pods[1].name)
	if !apierrors.IsTooManyRequests(err) || !strings.Contains(err.Error(), "disruption budget") {
		t.Fatalf("second eviction with one replica already gone: want 429 for the disruption budget, got %v", err)
	}
	if n := len(runningPods(t, c, systemNS, sel)); n != 2 {
		t.Errorf("running replicas after the refused eviction = %d, want 2", n)
	}

	setUnschedulable(t, c, pods[0].node, false)
	waitFor(t, 60*time.Second, d.about(systemNS, "agent/drain", "deployment/drain", "poddisruptionbudget/drain"), func() error {
		if n := len(runningPods(t, c, systemNS, sel)); n != 3 {
			return fmt.Errorf("%d of 3 replicas running", n)
		}
		return evict(t, c, pods[1].name)
	})
}

// testDeleteCleansUp: deleting an Agent lets the garbage collector remove everything it owned.
func testDeleteCleansUp(t *testing.T, d diagnosis) {
	c := d.c
	var a v1alpha1.Agent
	if err := c.Client.Get(t.Context(), types.NamespacedName{Namespace: systemNS, Name: "drain"}, &a); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Delete(t.Context(), &a); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 60*time.Second, d.about(systemNS, "agent/drain", "deployment/drain"), func() error {
		for _, o := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &corev1.ServiceAccount{},
			&policyv1.PodDisruptionBudget{}, &networkingv1.NetworkPolicy{}} {
			err := c.Client.Get(t.Context(), types.NamespacedName{Namespace: systemNS, Name: "drain"}, o)
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("%T still there (err %v)", o, err)
			}
		}
		var pods corev1.PodList
		if err := c.Client.List(t.Context(), &pods, client.InNamespace(systemNS), client.MatchingLabels{v1alpha1.LabelAgent: "drain"}); err != nil {
			return err
		}
		if len(pods.Items) != 0 {
			return fmt.Errorf("%d pods left", len(pods.Items))
		}
		return nil
	})
	t.Logf("garbage collector removed the Agent's objects and pods in %v", time.Since(start).Round(time.Millisecond))
}

// testZoneLoss: zone-c's nodes stop reporting (their kwok is stopped). Asserted behaviour:
//   - the nodes go NotReady and stay in the cluster;
//   - their pods are evicted after the not-ready toleration but stay Terminating, as no kubelet
//     confirms they stopped;
//   - the replacements schedule in zone-a and zone-b, three each: the zone spread ignores tainted
//     nodes (nodeTaintsPolicy: Honor), so the lost zone does not hold them Pending;
//   - the gateway's discovery shows six ready replicas, none in zone-c, and the old ones as
//     Terminating and not ready.
func testZoneLoss(t *testing.T, d diagnosis, src *kdiscovery.Source) {
	c := d.c
	start := time.Now()
	c.StopZone("zone-c")
	waitFor(t, 2*k8scluster.NodeGrace+30*time.Second, d.about(systemNS), func() error {
		var nodes corev1.NodeList
		if err := c.Client.List(t.Context(), &nodes, client.MatchingLabels{corev1.LabelTopologyZone: "zone-c"}); err != nil {
			return err
		}
		if len(nodes.Items) != 2 {
			return fmt.Errorf("%d zone-c nodes, want 2 (still registered)", len(nodes.Items))
		}
		for _, n := range nodes.Items {
			if k8scluster.NodeReady(&n) {
				return fmt.Errorf("node %s still Ready", n.Name)
			}
		}
		return nil
	})
	t.Logf("zone-c nodes NotReady after %v", time.Since(start).Round(time.Millisecond))

	sel := map[string]string{v1alpha1.LabelAgent: "spread"}
	waitFor(t, 90*time.Second, d.about(systemNS, "agent/spread", "deployment/spread"), func() error {
		pods := runningPods(t, c, systemNS, sel)
		if got := perZone(pods); !reflect.DeepEqual(got, map[string]int{"zone-a": 3, "zone-b": 3}) {
			return fmt.Errorf("ready replicas per zone = %v, want 3 in zone-a and zone-b", got)
		}
		return agentReady(t, c, "spread")
	})
	t.Logf("six replicas ready in zone-a and zone-b %v after zone-c was lost", time.Since(start).Round(time.Millisecond))

	var all corev1.PodList
	if err := c.Client.List(t.Context(), &all, client.InNamespace(systemNS), client.MatchingLabels(sel)); err != nil {
		t.Fatal(err)
	}
	var terminating []string
	for _, p := range all.Items {
		if strings.HasPrefix(p.Spec.NodeName, "zone-c-") {
			if p.DeletionTimestamp == nil {
				t.Errorf("pod %s on lost node %s not evicted", p.Name, p.Spec.NodeName)
			}
			terminating = append(terminating, p.Name)
		}
	}
	if len(terminating) != 2 {
		t.Errorf("pods left on zone-c = %v, want the 2 evicted ones, Terminating", terminating)
	}

	waitSnapshot(t, d, src, "spread", func(a discovery.Agent) error {
		ready := map[string]int{}
		var gone []string
		for _, e := range a.Endpoints {
			switch {
			case e.Ready:
				ready[e.Zone]++
			case e.State == discovery.StateTerminating:
				gone = append(gone, e.Name)
			}
		}
		slices.Sort(gone)
		slices.Sort(terminating)
		if !reflect.DeepEqual(ready, map[string]int{"zone-a": 3, "zone-b": 3}) || !slices.Equal(gone, terminating) {
			return fmt.Errorf("ready per zone %v, terminating %v (want %v)", ready, gone, terminating)
		}
		return nil
	})
}

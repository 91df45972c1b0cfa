//go:build e2ek8s

package e2ek8s

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/testutil"
	"github.com/agentplane/agentplane/test/k8scluster"
)

// realNode is the real-node test's world: a cluster with one kubelet on containerd, config/default
// installed (the operator and the gateway as pods) and config/samples applied, all with the image
// built from this checkout.
type realNode struct {
	c          *k8scluster.Cluster
	d          diagnosis // the operator's and the gateway's pods' logs, and the kubelet's
	gatewayPod string
	url        string // the gateway's base URL: its pod IP
}

// TestRealNode installs agentplane on a real kubelet (containerd, runc, the CNI bridge) with
// config/default, runs the sample Agents as real containers and serves them through the
// installed gateway (`agentplane gateway`, Kubernetes discovery): tasks in both A2A
// dialects and streaming, a container killed under load (Kubernetes restarts it, the gateway
// ejects and re-admits it, no task is lost), scaling up and down under load, and deleting the
// Agents. Needs root and Debian's containerd, runc and containernetworking-plugins; .ci/run
// installs them.
func TestRealNode(t *testing.T) {
	bin := binDir(t, "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "helm")
	if m := k8scluster.RealNodeMissing(bin); m != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("a real node needs %s", m)
		}
		t.Skipf("a real node needs %s", m)
	}
	ctx := t.Context()
	dir := t.TempDir()
	if keep := os.Getenv("E2E_KEEP"); keep != "" {
		dir = keep
		_ = os.MkdirAll(dir, 0o755)
	}

	begin := time.Now()
	imgs, err := k8scluster.BuildImages(ctx, repoRoot(), filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("static agentplane binary, agent image and pause image built in %v", time.Since(begin).Round(time.Millisecond))

	installCRD := func(c *k8scluster.Cluster) error {
		_, err := c.Kubectl(ctx, nil, "apply", "--server-side", "-k", filepath.Join(repoRoot(), "config", "crd"))
		return err
	}
	c, err := k8scluster.Start(ctx, k8scluster.Options{
		Bin: bin, Dir: dir, RealNode: true,
		Images: []string{imgs.Pause, imgs.Agent}, SandboxImage: k8scluster.PauseImage,
		NodeLabels:        map[string]string{corev1.LabelTopologyZone: "zone-a", "agentplane.io/site": "clinic-a"},
		BeforeControllers: installCRD,
	})
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	t.Cleanup(c.Stop)
	t.Logf("control plane and a real node (kubelet, containerd, runc, CNI bridge) Ready in %v; logs in %s",
		c.StartTime.Round(time.Millisecond), dir)

	// The install, for real: config/default (CRD, RBAC, the operator's two replicas and the
	// gateway) in agentplane-system, as pods on the real node, through a kustomize overlay that
	// only swaps in the image built here and points the pods at the API server (PodAPIEnv).
	start := time.Now()
	apiEnv := c.PodAPIEnv()
	writeOverlay(t, filepath.Join(dir, "install"), filepath.Join(repoRoot(), "config", "default"), fmt.Sprintf(`images:
- name: ghcr.io/agentplane/agentplane
  newName: %s
  newTag: %s
patches:
- target: {kind: Deployment}
  patch: |-
    - {op: add, path: /spec/template/spec/containers/0/imagePullPolicy, value: Never}
    - {op: add, path: /spec/template/spec/containers/0/env/-, value: {name: KUBERNETES_SERVICE_HOST, value: %q}}
    - {op: add, path: /spec/template/spec/containers/0/env/-, value: {name: KUBERNETES_SERVICE_PORT, value: %q}}
`, strings.Split(k8scluster.AgentImage, ":")[0], strings.Split(k8scluster.AgentImage, ":")[1],
		apiEnv["KUBERNETES_SERVICE_HOST"], apiEnv["KUBERNETES_SERVICE_PORT"]))
	if _, err := c.Kubectl(ctx, nil, "apply", "--server-side", "-k", filepath.Join(dir, "install")); err != nil {
		t.Fatal(err)
	}
	d := diagnosis{c: c, logs: []k8scluster.LogSource{
		{Name: "operator", Namespace: systemNS, Selector: "app.kubernetes.io/name=agentplane-operator"},
		{Name: "gateway", Namespace: systemNS, Selector: "app.kubernetes.io/name=agentplane-gateway"},
	}}
	kubectlWait(t, c, "install not ready", d.about(systemNS, "deployment/agentplane-operator", "deployment/agentplane-gateway"),
		"rollout", "status", "-n", systemNS, "--timeout=120s", "deployment/agentplane-operator", "deployment/agentplane-gateway")
	pods, _ := c.Kubectl(ctx, nil, "get", "pods", "-n", systemNS, "-o", "wide")
	t.Logf("config/default installed: operator ×2 and gateway running as containers in %v:\n%s", time.Since(start).Round(time.Millisecond), pods)
	gwPod := runningPod(t, c, systemNS, "agentplane-gateway")
	rn := &realNode{c: c, d: d, gatewayPod: gwPod.Name, url: "http://" + gwPod.Status.PodIP + ":8080"}
	waitFor(t, 30*time.Second, d.about(systemNS, "deployment/agentplane-gateway"), func() error {
		res, err := http.Get(rn.url + "/healthz")
		if err != nil {
			return err
		}
		res.Body.Close()
		return nil
	})

	// config/samples in the gateway's namespace, with the image built here.
	start = time.Now()
	writeOverlay(t, filepath.Join(dir, "samples"), filepath.Join(repoRoot(), "config", "samples"), fmt.Sprintf(`patches:
- target: {kind: Agent}
  patch: |-
    - {op: replace, path: /spec/image, value: %s}
    - {op: add, path: /spec/imagePullPolicy, value: Never}
`, k8scluster.AgentImage))
	if _, err := c.Kubectl(ctx, nil, "apply", "-n", systemNS, "-k", filepath.Join(dir, "samples")); err != nil {
		t.Fatal(err)
	}
	kubectlWait(t, c, "agents not Ready", d.about(systemNS, "agents"),
		"wait", "-n", systemNS, "--for=condition=Ready", "--timeout=180s", "agents", "--all")
	pods, _ = c.Kubectl(ctx, nil, "get", "pods", "-n", systemNS, "-o", "wide", "-l", v1alpha1.LabelAgent)
	t.Logf("config/samples (triage ×3, scheduling ×2, radiology ×2) Ready in %v as containers on %s:\n%s",
		time.Since(start).Round(time.Millisecond), k8scluster.RealNodeName, pods)
	waitFor(t, 30*time.Second, d.about(systemNS, "agent/triage"), func() error { return rn.gatewaySees("triage", 3) })

	if !t.Run("tasks in both dialects and streaming", rn.testDialects) {
		t.FailNow()
	}
	t.Run("a killed container is restarted and no task is lost", rn.testKillContainer)
	t.Run("scale up and down under load", rn.testScale)
	t.Run("scale from zero on the first task", rn.testScaleFromZero)
	t.Run("delete cleans up", rn.testDelete)
	t.Run("the Helm chart's gateway with API keys and its journal encrypted at rest", func(t *testing.T) { rn.testHelmGateway(t, dir) })
}

// writeOverlay writes a kustomization in dir over base (kustomize takes only relative paths).
func writeOverlay(t *testing.T, dir, base, rest string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(base)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, abs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte("resources:\n- "+rel+"\n"+rest), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runningPod is the running pod of a Deployment labelled app.kubernetes.io/name=name.
func runningPod(t *testing.T, c *k8scluster.Cluster, ns, name string) *corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	if err := c.Client.List(t.Context(), &pods, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/name": name}); err != nil {
		t.Fatal(err)
	}
	for i := range pods.Items {
		if p := &pods.Items[i]; p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
			return p
		}
	}
	t.Fatalf("no running %s pod", name)
	return nil
}

// gatewayReplica is an entry of the gateway's GET /api/v1/replicas.
type gatewayReplica struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	Ready    bool   `json:"ready"`
	State    string `json:"state"`
	Ejected  bool   `json:"ejected"`
	InFlight int    `json:"inFlight"`
}

func (rn *realNode) replicas(agent string) ([]gatewayReplica, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	res, err := hc.Get(rn.url + "/api/v1/replicas?agent=" + agent)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var v struct {
		Replicas []gatewayReplica `json:"replicas"`
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/replicas: %s", res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
		return nil, err
	}
	return v.Replicas, nil
}

// gatewaySees checks that the gateway has exactly n ready, admitted replicas of agent.
func (rn *realNode) gatewaySees(agent string, n int) error {
	reps, err := rn.replicas(agent)
	if err != nil {
		return err
	}
	var ready []string
	for _, r := range reps {
		if r.Ready && !r.Ejected {
			ready = append(ready, r.Name)
		}
	}
	if len(ready) != n {
		return fmt.Errorf("gateway has %d ready replicas of %s (%v), want %d", len(ready), agent, ready, n)
	}
	return nil
}

// taskOutcome is one task sent through the gateway.
type taskOutcome struct {
	replica string // X-Agentplane-Replica: the pod that answered
	state   string
	err     string
	at      time.Time // when the answer came
}

func (o taskOutcome) completed() bool {
	return o.err == "" && (o.state == "TASK_STATE_COMPLETED" || o.state == "completed")
}

var taskClient = &http.Client{Timeout: 2 * time.Minute}

// send sends one task in the v1.0 dialect (SendMessage) or the v0.3 one (message/send).
func (rn *realNode) send(ctx context.Context, agent string, i int, v03 bool) taskOutcome {
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"SendMessage","params":{"message":{"messageId":"rn-%d","role":"ROLE_USER","parts":[{"text":"task %d"}]}}}`, i, i, i)
	if v03 {
		body = fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"message/send","params":{"message":{"kind":"message","messageId":"rn-%d","role":"user","parts":[{"kind":"text","text":"task %d"}]}}}`, i, i, i)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rn.url+"/agents/"+agent, strings.NewReader(body))
	if err != nil {
		return taskOutcome{err: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := taskClient.Do(req)
	if err != nil {
		return taskOutcome{err: err.Error(), at: time.Now()}
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	out := taskOutcome{replica: res.Header.Get("X-Agentplane-Replica"), at: time.Now()}
	if err != nil {
		out.err = err.Error()
		return out
	}
	var env struct {
		Result *struct {
			Task *struct {
				Status struct{ State string } `json:"status"`
			} `json:"task"`
			Status struct{ State string } `json:"status"`
		} `json:"result"`
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	switch {
	case json.Unmarshal(raw, &env) != nil:
		out.err = fmt.Sprintf("HTTP %d, not JSON-RPC: %.200s", res.StatusCode, raw)
	case env.Error != nil:
		out.err = fmt.Sprintf("HTTP %d, JSON-RPC error %d: %s", res.StatusCode, env.Error.Code, env.Error.Message)
	case env.Result == nil:
		out.err = fmt.Sprintf("HTTP %d, no result: %.200s", res.StatusCode, raw)
	case env.Result.Task != nil:
		out.state = env.Result.Task.Status.State
	default:
		out.state = env.Result.Status.State
	}
	return out
}

// testDialects sends tasks in both A2A dialects, unary and streaming, to the triage agent's
// containers, and checks that they spread over the replicas.
func (rn *realNode) testDialects(t *testing.T) {
	ctx := t.Context()
	served := map[string]int{}
	for i := range 12 {
		o := rn.send(ctx, "triage", i, i%2 == 1)
		if !o.completed() {
			t.Fatalf("task %d (v0.3: %v): state %q, %s", i, i%2 == 1, o.state, o.err)
		}
		served[o.replica]++
	}
	if len(served) < 2 {
		t.Errorf("12 tasks all went to %v: want them spread over the 3 replicas", served)
	}
	t.Logf("12 unary tasks (SendMessage and message/send) completed, served by %v", served)

	for _, tc := range []struct{ method, msg, final string }{
		{"SendStreamingMessage", `{"messageId":"rn-s1","role":"ROLE_USER","parts":[{"text":"x"}]}`, "TASK_STATE_COMPLETED"},
		{"message/stream", `{"kind":"message","messageId":"rn-s2","role":"user","parts":[{"kind":"text","text":"x"}]}`, `"state":"completed"`},
	} {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":%q,"params":{"message":%s}}`, tc.method, tc.msg)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, rn.url+"/agents/triage", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		res, err := taskClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.method, err)
		}
		var events []string
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data:"); ok {
				events = append(events, strings.TrimSpace(d))
			}
		}
		res.Body.Close()
		if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") || len(events) < 5 { // task, working, 3 chunks, final
			t.Fatalf("%s: %s, %d events, want an event stream of at least 5:\n%s", tc.method, res.Header.Get("Content-Type"), len(events), strings.Join(events, "\n"))
		}
		if last := events[len(events)-1]; !strings.Contains(last, tc.final) {
			t.Fatalf("%s: last event %s, want %s", tc.method, last, tc.final)
		}
		t.Logf("%s: %d events relayed from %s, last one %s", tc.method, len(events), res.Header.Get("X-Agentplane-Replica"), tc.final)
	}
}

// load keeps workers sending tasks to one agent until stop.
type load struct {
	mu       sync.Mutex
	outcomes []taskOutcome
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func (rn *realNode) startLoad(agent string, workers int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	var next int
	for w := range workers {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				l.mu.Lock()
				next++
				i := next
				l.mu.Unlock()
				// Not ctx: a task already sent must finish, so stopping the load loses nothing.
				o := rn.send(context.Background(), agent, 100000+i, (w+i)%2 == 1)
				l.mu.Lock()
				l.outcomes = append(l.outcomes, o)
				l.mu.Unlock()
			}
		})
	}
	return l
}

// stop ends the load once the tasks in flight have finished, and returns every outcome.
func (l *load) stop() []taskOutcome {
	l.cancel()
	l.wg.Wait()
	return l.outcomes
}

// servedSince counts the completed tasks each replica answered after since, so far.
func (l *load) servedSince(since time.Time) map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for _, o := range l.outcomes {
		if o.completed() && o.at.After(since) {
			out[o.replica]++
		}
	}
	return out
}

// failures lists the tasks that did not complete.
func failures(outcomes []taskOutcome) []string {
	var out []string
	for _, o := range outcomes {
		if !o.completed() {
			out = append(out, fmt.Sprintf("state %q from %q: %s", o.state, o.replica, o.err))
		}
	}
	return out
}

// gatewayLog reads the gateway pod's JSON log lines (through the kubelet: kubectl logs) with
// message msg logged after since.
func (rn *realNode) gatewayLog(t *testing.T, msg string, since time.Time) []map[string]any {
	t.Helper()
	out, err := rn.c.Kubectl(t.Context(), nil, "logs", "-n", systemNS, rn.gatewayPod)
	if err != nil {
		t.Fatal(err)
	}
	var logs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) != nil || l["msg"] != msg {
			continue
		}
		if at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(l["time"])); err != nil || at.Before(since) {
			continue
		}
		logs = append(logs, l)
	}
	return logs
}

func (rn *realNode) pod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := rn.c.Client.Get(t.Context(), types.NamespacedName{Namespace: systemNS, Name: name}, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// testKillContainer kills one triage container with SIGKILL while eight clients keep sending
// tasks, then checks that the kubelet restarts it, that the gateway ejects the replica and takes
// it back once it answers again, and that every task completed.
func (rn *realNode) testKillContainer(t *testing.T) {
	ctx := t.Context()
	l := rn.startLoad("triage", 8)
	defer l.stop()
	time.Sleep(3 * time.Second) // tasks in flight on every replica

	// The victim: a replica with tasks in flight right now, so that the kill breaks them.
	var victim string
	waitFor(t, 10*time.Second, rn.d.about(systemNS, "agent/triage"), func() error {
		reps, err := rn.replicas("triage")
		if err != nil {
			return err
		}
		for _, r := range reps {
			if r.Ready && r.InFlight > 0 {
				victim = r.Name
				return nil
			}
		}
		return fmt.Errorf("no triage replica has a task in flight: %+v", reps)
	})
	before := rn.pod(t, victim)
	if len(before.Status.ContainerStatuses) != 1 {
		t.Fatalf("pod %s: %d container statuses", victim, len(before.Status.ContainerStatuses))
	}
	cs := before.Status.ContainerStatuses[0]
	killedAt := time.Now()
	if err := rn.c.KillContainer(ctx, cs.ContainerID); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed container %s of pod %s (IP %s, restarts %d) with SIGKILL under load",
		strings.TrimPrefix(cs.ContainerID, "containerd://")[:12], victim, before.Status.PodIP, cs.RestartCount)

	var after *corev1.Pod
	waitFor(t, 90*time.Second, rn.d.about(systemNS, "agent/triage", "pod/"+victim), func() error {
		after = rn.pod(t, victim)
		s := after.Status.ContainerStatuses[0]
		if s.RestartCount <= cs.RestartCount || !s.Ready {
			return fmt.Errorf("pod %s: restarts %d, ready %v", victim, s.RestartCount, s.Ready)
		}
		return nil
	})
	s := after.Status.ContainerStatuses[0]
	var lastExit string
	if term := s.LastTerminationState.Terminated; term != nil {
		lastExit = fmt.Sprintf("exit code %d (%s)", term.ExitCode, term.Reason)
		if term.ExitCode != 137 {
			t.Errorf("last termination of %s: %s, want exit code 137 (SIGKILL)", victim, lastExit)
		}
	}
	restartedAt := time.Now()
	t.Logf("kubelet restarted %s: restarts %d → %d, last termination %s, new container %s, same pod IP %s, ready again %v after the kill",
		victim, cs.RestartCount, s.RestartCount, lastExit, strings.TrimPrefix(s.ContainerID, "containerd://")[:12],
		after.Status.PodIP, restartedAt.Sub(killedAt).Round(time.Millisecond))

	// The restarted replica takes tasks again.
	waitFor(t, 60*time.Second, rn.d.about(systemNS, "agent/triage"), func() error {
		if n := l.servedSince(restartedAt)[victim]; n == 0 {
			return fmt.Errorf("the restarted replica %s has not served a task since it came back", victim)
		}
		return rn.gatewaySees("triage", 3)
	})
	outcomes := l.stop()

	ejected := rn.gatewayLog(t, "replica ejected", killedAt)
	var ejectedVictim bool
	for _, e := range ejected {
		if e["replica"] == victim {
			ejectedVictim = true
			t.Logf("gateway: replica %s ejected (%v) %v after the kill", victim, e["err"], ejectAt(e).Sub(killedAt).Round(time.Millisecond))
			break
		}
	}
	readmitted := rn.gatewayLog(t, "ejected replica answers its probe again; back in rotation", killedAt)
	for _, e := range readmitted {
		if strings.Contains(fmt.Sprint(e["url"]), after.Status.PodIP+":") {
			t.Logf("gateway: %v answers its probe again, back in rotation %v after the kill", e["url"], ejectAt(e).Sub(killedAt).Round(time.Millisecond))
		}
	}
	served := l.servedSince(restartedAt)
	t.Logf("gateway took %s back: tasks answered by each replica since the restart: %v", victim, served)

	failed := failures(outcomes)
	t.Logf("REPORT %d tasks sent during the kill and restart, %d completed, %d lost", len(outcomes), len(outcomes)-len(failed), len(failed))
	if len(failed) > 0 {
		t.Errorf("%d of %d tasks did not complete:\n%s", len(failed), len(outcomes), strings.Join(failed[:min(10, len(failed))], "\n"))
	}
	if !ejectedVictim {
		t.Errorf("the gateway never ejected the killed replica %s; ejections after the kill: %v", victim, ejected)
	}
}

func ejectAt(l map[string]any) time.Time {
	at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(l["time"]))
	return at
}

// testScale scales triage from 3 to 5 replicas and back to 3 while eight clients send tasks:
// new replicas take tasks as soon as they are ready, removed ones drain, and no task fails. (The
// sample's minAvailable is 2, so 3 is as low as its disruption budget lets it go.)
func (rn *realNode) testScale(t *testing.T) {
	ctx := t.Context()
	l := rn.startLoad("triage", 8)
	defer l.stop()
	time.Sleep(2 * time.Second)

	scale := func(n int32) {
		t.Helper()
		if _, err := rn.c.Kubectl(ctx, nil, "patch", "agent", "triage", "-n", systemNS, "--type=merge",
			"-p", fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)); err != nil {
			t.Fatal(err)
		}
	}
	runningPods := func() ([]string, error) {
		var pods corev1.PodList
		if err := rn.c.Client.List(ctx, &pods, client.InNamespace(systemNS), client.MatchingLabels{v1alpha1.LabelAgent: "triage"}); err != nil {
			return nil, err
		}
		var names []string
		for _, p := range pods.Items {
			names = append(names, p.Name)
		}
		slices.Sort(names)
		return names, nil
	}
	old, err := runningPods()
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	scale(5)
	waitFor(t, 90*time.Second, rn.d.about(systemNS, "agent/triage", "deployment/triage"), func() error { return rn.gatewaySees("triage", 5) })
	upAt := time.Now()
	t.Logf("scaled 3 → 5: the gateway had 5 ready replicas %v later", upAt.Sub(start).Round(time.Millisecond))
	waitFor(t, 30*time.Second, rn.d.about(systemNS, "agent/triage"), func() error {
		served := l.servedSince(upAt)
		for _, p := range mustPods(t, runningPods) {
			if !slices.Contains(old, p) && served[p] == 0 {
				return fmt.Errorf("new replica %s has served no task yet (%v)", p, served)
			}
		}
		return nil
	})
	t.Logf("new replicas serve tasks: %v", l.servedSince(upAt))

	start = time.Now()
	scale(3)
	waitFor(t, 90*time.Second, rn.d.about(systemNS, "agent/triage", "deployment/triage"), func() error {
		names, err := runningPods()
		if err != nil {
			return err
		}
		if len(names) != 3 {
			return fmt.Errorf("%d triage pods (%v), want 3", len(names), names)
		}
		return rn.gatewaySees("triage", 3)
	})
	downAt := time.Now()
	t.Logf("scaled 5 → 3: two pods drained and gone, the gateway down to 3 replicas, %v later", downAt.Sub(start).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	outcomes := l.stop()
	failed := failures(outcomes)
	t.Logf("REPORT %d tasks sent while scaling 3 → 5 → 3, %d completed, %d failed", len(outcomes), len(outcomes)-len(failed), len(failed))
	if len(failed) > 0 {
		t.Errorf("%d of %d tasks did not complete:\n%s", len(failed), len(outcomes), strings.Join(failed[:min(10, len(failed))], "\n"))
	}
}

// testScaleFromZero: an agent with minReplicas 0 runs no container; its first task waits at the
// installed gateway while the installed operator (its autoscaler polling that gateway through
// the gateway Service's EndpointSlice) starts one, and completes. The task's latency is the cold
// start of a real container: the autoscaler's poll, the Deployment, scheduling, the sandbox and
// container, the readiness probe, the EndpointSlice, the gateway's discovery. Then the agent goes
// back to zero after scaleToZeroAfter.
func (rn *realNode) testScaleFromZero(t *testing.T) {
	ctx, c := t.Context(), rn.c
	const agent = "coldstart"
	a := &v1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: systemNS, Name: agent},
		Spec: v1alpha1.AgentSpec{Image: k8scluster.AgentImage, ImagePullPolicy: corev1.PullNever, Replicas: ptr.To[int32](0),
			Args: []string{"simagent", "--latency", "50ms"},
			Autoscaling: &v1alpha1.Autoscaling{MinReplicas: ptr.To[int32](0), MaxReplicas: 2,
				ScaleDownDelay: &metav1.Duration{Duration: 5 * time.Second}, ScaleToZeroAfter: &metav1.Duration{Duration: 10 * time.Second}}},
	}
	if err := c.Client.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Client.Delete(context.WithoutCancel(ctx), a) })
	pods := func() int {
		var l corev1.PodList
		if err := c.Client.List(ctx, &l, client.InNamespace(systemNS), client.MatchingLabels{v1alpha1.LabelAgent: agent}); err != nil {
			t.Fatal(err)
		}
		return len(l.Items)
	}
	rep := rn.d.about(systemNS, "agent/"+agent, "deployment/"+agent)
	waitFor(t, 30*time.Second, rep, func() error {
		var dep appsv1.Deployment
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: systemNS, Name: agent}, &dep); err != nil {
			return err
		}
		if ptr.Deref(dep.Spec.Replicas, -1) != 0 {
			return fmt.Errorf("deployment at %d replicas, want 0", ptr.Deref(dep.Spec.Replicas, -1))
		}
		res, err := http.Get(rn.url + "/api/v1/agents")
		if err != nil {
			return err
		}
		defer res.Body.Close()
		var v struct {
			Agents []struct {
				Name string `json:"name"`
			} `json:"agents"`
		}
		if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
			return err
		}
		for _, a := range v.Agents {
			if a.Name == agent {
				return nil
			}
		}
		return fmt.Errorf("the gateway does not know %s yet: %+v", agent, v.Agents)
	})
	if n := pods(); n != 0 {
		t.Fatalf("%d pods at rest, want 0", n)
	}

	start := time.Now()
	o := rn.send(ctx, agent, 1, false)
	cold := time.Since(start)
	if !o.completed() {
		t.Fatalf("first task from zero: state %q, %s\n%s", o.state, o.err, rep())
	}
	fmt.Printf("realnode autoscale: cold_start=%d\n", cold.Milliseconds())
	t.Logf("REPORT the first task of an agent at zero replicas completed in %v (cold start of a real container), served by %s",
		cold.Round(time.Millisecond), o.replica)
	warm := time.Now()
	if o := rn.send(ctx, agent, 2, true); !o.completed() {
		t.Errorf("second task: state %q, %s", o.state, o.err)
	}
	t.Logf("a second task, on the running replica, completed in %v", time.Since(warm).Round(time.Millisecond))

	idle := time.Now()
	waitFor(t, 90*time.Second, rep, func() error {
		if n := pods(); n != 0 {
			return fmt.Errorf("%d pods, want 0 after scaleToZeroAfter", n)
		}
		return nil
	})
	t.Logf("back to zero pods %v after the last task (scaleToZeroAfter 10s)", time.Since(idle).Round(time.Second))
}

func mustPods(t *testing.T, list func() ([]string, error)) []string {
	t.Helper()
	names, err := list()
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// testDelete deletes the Agents and checks that everything the operator made is gone: workloads,
// pods, Services, ServiceAccounts, budgets, autoscalers, NetworkPolicies, and the containers and
// pod sandboxes in containerd; and that the gateway no longer lists the agents.
func (rn *realNode) testDelete(t *testing.T) {
	ctx := t.Context()
	start := time.Now()
	if _, err := rn.c.Kubectl(ctx, nil, "delete", "agents", "--all", "-n", systemNS, "--wait=true", "--timeout=60s"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 120*time.Second, rn.d.about(systemNS, "agents"), func() error {
		out, err := rn.c.Kubectl(ctx, nil, "get", "-n", systemNS, "-o", "name", "-l", v1alpha1.LabelAgent,
			"deployments,statefulsets,replicasets,pods,services,serviceaccounts,poddisruptionbudgets,horizontalpodautoscalers,networkpolicies")
		if err != nil {
			return err
		}
		if left := strings.Fields(out); len(left) > 0 {
			return fmt.Errorf("still there: %v", left)
		}
		return nil
	})
	t.Logf("agents deleted: workloads, pods, services, accounts, budgets, autoscaler and policies gone from the API in %v",
		time.Since(start).Round(time.Millisecond))
	// The agents' containers and sandboxes: the install's own (operator, gateway) stay.
	agentContainers := func() ([]string, error) {
		return rn.c.Containers(ctx, `labels."io.kubernetes.pod.name"~="^(triage|scheduling|radiology)-"`)
	}
	waitFor(t, 30*time.Second, rn.d.about(systemNS), func() error {
		ids, err := agentContainers()
		if err != nil {
			return err
		}
		running, err := rn.c.RunningTasks(ctx)
		if err != nil {
			return err
		}
		var still []string
		for _, id := range ids {
			if slices.Contains(running, id) {
				still = append(still, id)
			}
		}
		if len(still) > 0 {
			return fmt.Errorf("%d agent containers still running", len(still))
		}
		return nil
	})
	t.Logf("no container runs any more %v after the delete", time.Since(start).Round(time.Millisecond))
	// The kubelet's container garbage collector, which runs once a minute, then removes the
	// stopped containers and the pod sandboxes.
	waitFor(t, 120*time.Second, rn.d.about(systemNS), func() error {
		ids, err := agentContainers()
		if err != nil {
			return err
		}
		if len(ids) > 0 {
			return fmt.Errorf("%d agent containers left in containerd", len(ids))
		}
		return nil
	})
	t.Logf("all containers and pod sandboxes removed from containerd %v after the delete", time.Since(start).Round(time.Millisecond))
	waitFor(t, 30*time.Second, rn.d.about(systemNS, "agents"), func() error {
		res, err := http.Get(rn.url + "/agents")
		if err != nil {
			return err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		for _, a := range []string{"triage", "scheduling", "radiology"} {
			if strings.Contains(string(b), `"`+a+`"`) {
				return fmt.Errorf("gateway still lists %s: %s", a, b)
			}
		}
		return nil
	})
}

// testHelmGateway installs a second gateway from the Helm chart, in its own namespace, with
// gateway.config (API key authentication and a policy, so without --insecure-listen-remote) and
// gateway.journalKeySecret: its pod reads the key from the Secret (as the image's non-root user),
// refuses calls without the API key, serves a task of an Agent there with it, and the journal in
// the pod's emptyDir — read on the node — records AES-GCM encryption and holds the task's request
// in no readable form.
func (rn *realNode) testHelmGateway(t *testing.T, dir string) {
	ctx := t.Context()
	const ns, secret = "clinic-b", "agentplane-journal-key"
	if _, err := rn.c.Kubectl(ctx, nil, "create", "namespace", ns); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if _, err := rn.c.Kubectl(ctx, nil, "create", "secret", "generic", secret, "-n", ns,
		"--from-literal=key="+base64.StdEncoding.EncodeToString(key)); err != nil {
		t.Fatal(err)
	}
	// Callers authenticate with an API key (configured by its hash) and may use the agent intake.
	apiKey := make([]byte, 32)
	_, _ = rand.Read(apiKey)
	token := base64.RawURLEncoding.EncodeToString(apiKey)
	sum := sha256.Sum256([]byte(token))
	gatewayConfig := fmt.Sprintf(`{"auth":{"apiKeys":[{"subject":"intake-desk","tenant":"clinic-b","groups":["nurses"],"sha256":%q}]},
		"policies":[{"name":"nurses","groups":["nurses"],"agents":["intake","records"]}]}`, hex.EncodeToString(sum[:]))
	// The journal's volume: a local PersistentVolume on the node (there is no provisioner here),
	// which the chart's claim binds to; the kubelet gives it to the gateway's group (fsGroup).
	pvDir := filepath.Join(dir, "pv-gateway-journal")
	if err := os.MkdirAll(pvDir, 0o755); err != nil {
		t.Fatal(err)
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-gateway-journal"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              "e2e-manual",
			PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: pvDir}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{k8scluster.RealNodeName}}},
			}}}},
		},
	}
	if err := rn.c.Client.Create(ctx, pv); err != nil {
		t.Fatal(err)
	}
	repo, tag, _ := strings.Cut(k8scluster.AgentImage, ":")
	rendered, err := exec.CommandContext(ctx, filepath.Join(rn.c.Bin, "helm"), "template", "agentplane",
		filepath.Join(repoRoot(), "charts", "agentplane"), "--namespace", ns,
		"--set", "operator.enabled=false", "--set", "gateway.journalKeySecret="+secret,
		"--set-json", "gateway.config="+gatewayConfig, "--set", "gateway.insecureListenRemote=false",
		"--set", "gateway.persistence.enabled=true", "--set", "gateway.persistence.storageClassName=e2e-manual",
		"--set", "gateway.persistence.size=64Mi",
		"--set", "image.repository="+repo, "--set", "image.tag="+tag, "--set", "image.pullPolicy=Never").Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	// The chart as rendered, with the API server's address (no kube-proxy here) and a name suffix,
	// so that its cluster-wide role binding does not replace the first install's.
	overlay := filepath.Join(dir, "helm-gateway")
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(overlay, "chart.yaml"), rendered, 0o644); err != nil {
		t.Fatal(err)
	}
	env := rn.c.PodAPIEnv()
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(fmt.Sprintf(`resources:
- chart.yaml
nameSuffix: -b
patches:
- target: {kind: Deployment}
  patch: |-
    - {op: add, path: /spec/template/spec/containers/0/env, value: [{name: KUBERNETES_SERVICE_HOST, value: %q}, {name: KUBERNETES_SERVICE_PORT, value: %q}]}
`, env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"])), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := rn.c.Kubectl(ctx, nil, "apply", "-k", overlay); err != nil {
		t.Fatal(err)
	}
	// A failed wait shows the chart's gateway's log too.
	d := rn.d.withLogs(k8scluster.LogSource{Name: "chart's gateway", Namespace: ns, Selector: "app.kubernetes.io/name=agentplane-gateway"})
	kubectlWait(t, rn.c, "chart's gateway not ready", d.about(ns, "deployment/agentplane-gateway-b", "persistentvolumeclaim/agentplane-gateway-journal-b"),
		"rollout", "status", "-n", ns, "--timeout=90s", "deployment/agentplane-gateway-b")
	gw := runningPod(t, rn.c, ns, "agentplane-gateway")
	url := "http://" + gw.Status.PodIP + ":8080"

	agent := &v1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "intake"},
		Spec: v1alpha1.AgentSpec{Image: k8scluster.AgentImage, ImagePullPolicy: corev1.PullNever,
			Replicas: ptr.To[int32](1), Args: []string{"simagent", "--latency", "50ms"}},
	}
	if err := rn.c.Client.Create(ctx, agent); err != nil {
		t.Fatal(err)
	}
	kubectlWait(t, rn.c, "agent intake not Ready", d.about(ns, "agent/intake", "deployment/intake"),
		"wait", "-n", ns, "--for=condition=Ready", "--timeout=90s", "agent/intake")
	const marker = "MRN 5120-88 John Doe, shortness of breath since Tuesday"
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"helm-1","role":"ROLE_USER","parts":[{"text":%q}]}}}`, marker)
	send := func(token string) (int, string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/agents/intake", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b), nil
	}
	waitFor(t, 30*time.Second, d.about(ns, "agent/intake"), func() error {
		code, b, err := send(token)
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(b, "TASK_STATE_COMPLETED") {
			return fmt.Errorf("HTTP %d: %.300s", code, b)
		}
		return nil
	})
	for _, bad := range []string{"", "not-the-key-0123456789abcdefghijklmnop"} {
		if code, b, err := send(bad); err != nil || code != http.StatusUnauthorized {
			t.Errorf("a call with key %q: HTTP %d %v %.200s, want 401", bad, code, err, b)
		}
	}

	// The gateway's data directory is the persistent volume, on this node's disk.
	data := pvDir
	record, err := os.ReadFile(filepath.Join(data, "journal-encryption"))
	if err != nil || !strings.HasPrefix(string(record), "aes-gcm ") {
		t.Fatalf("journal encryption record in the gateway's volume: %q, %v", record, err)
	}
	var clear []string
	_ = filepath.WalkDir(filepath.Join(data, "jetstream"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(path)
		for _, form := range testutil.ReadableForms(marker) {
			if bytes.Contains(b, []byte(form)) {
				clear = append(clear, path)
			}
		}
		return nil
	})
	if len(clear) > 0 {
		t.Fatalf("the task's request is readable in the journal: %v", clear)
	}
	t.Logf("the chart's gateway (gateway.config: API keys and a policy; journal key from Secret %s) refused calls without the key (401), served one with it; its journal on the node is AES-GCM encrypted and holds the request in no readable form", secret)

	// The gateway's pod is lost with tasks accepted and not yet done: its replacement, on the same
	// journal, finishes them.
	records := &v1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "records"},
		Spec: v1alpha1.AgentSpec{Image: k8scluster.AgentImage, ImagePullPolicy: corev1.PullNever, MaxConcurrency: 2,
			Replicas: ptr.To[int32](1), Args: []string{"simagent", "--latency", "3s"}},
	}
	if err := rn.c.Client.Create(ctx, records); err != nil {
		t.Fatal(err)
	}
	kubectlWait(t, rn.c, "agent records not Ready", d.about(ns, "agent/records", "deployment/records"),
		"wait", "-n", ns, "--for=condition=Ready", "--timeout=90s", "agent/records")
	rpc := func(base, body string) (map[string]any, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/agents/records", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer res.Body.Close()
		var v map[string]any
		if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
			return nil, fmt.Errorf("HTTP %d: %w", res.StatusCode, err)
		}
		return v, nil
	}
	taskOf := func(v map[string]any) (id, state string) {
		r, _ := v["result"].(map[string]any)
		if task, ok := r["task"].(map[string]any); ok {
			r = task
		}
		st, _ := r["status"].(map[string]any)
		return fmt.Sprint(r["id"]), fmt.Sprint(st["state"])
	}
	var ids []string
	for i := range 4 {
		waitFor(t, 30*time.Second, d.about(ns, "agent/records"), func() error { // the gateway learns of the new agent
			v, err := rpc(url, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"SendMessage","params":{"message":{"messageId":"rec-%d","role":"ROLE_USER","parts":[{"text":"file the visit note"}]},"configuration":{"returnImmediately":true}}}`, i, i))
			if err != nil {
				return err
			}
			id, state := taskOf(v)
			if state != "TASK_STATE_SUBMITTED" {
				return fmt.Errorf("async task %d: %v", i, v)
			}
			ids = append(ids, id)
			return nil
		})
	}
	killedAt := time.Now()
	if _, err := rn.c.Kubectl(ctx, nil, "delete", "pod", "-n", ns, gw.Name, "--grace-period=0", "--force"); err != nil {
		t.Fatal(err)
	}
	var next *corev1.Pod
	waitFor(t, 90*time.Second, d.about(ns, "deployment/agentplane-gateway-b"), func() error {
		var pods corev1.PodList
		if err := rn.c.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/name": "agentplane-gateway"}); err != nil {
			return err
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.UID != gw.UID && p.DeletionTimestamp == nil && podReady(p) {
				next = p
				return nil
			}
		}
		return fmt.Errorf("no replacement gateway pod ready yet")
	})
	url = "http://" + next.Status.PodIP + ":8080"
	states := map[string]string{}
	waitFor(t, 90*time.Second, d.about(ns, "agent/records"), func() error {
		for _, id := range ids {
			v, err := rpc(url, fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":%q}}`, id))
			if err != nil {
				return err
			}
			_, states[id] = taskOf(v)
			if states[id] != "TASK_STATE_COMPLETED" {
				return fmt.Errorf("task states after the gateway pod was lost: %v", states)
			}
		}
		return nil
	})
	t.Logf("gateway pod force-deleted with %d async tasks accepted and unfinished; its replacement (same journal volume) completed all %d, %v after the loss",
		len(ids), len(ids), time.Since(killedAt).Round(time.Millisecond))
	if _, err := rn.c.Kubectl(ctx, nil, "delete", "namespace", ns, "--wait=false"); err != nil {
		t.Error(err)
	}
}

//go:build e2ek8s

package e2ek8s

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/discovery"
	kdiscovery "github.com/agentplane/agentplane/internal/discovery/kubernetes"
	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/testutil"
	"github.com/agentplane/agentplane/test/k8scluster"
)

// kwokKubelet is a test-only stand-in for the kubelet of kwok's fake nodes, which run no
// process: kwok only marks pods Running and Ready. For each replica (pod) of the agents it runs,
// as the Kubernetes discovery source lists them, it starts a local `agentplane simagent` process,
// and it serves the gateway a snapshot in which that replica's URL is the process's (on
// 127.0.0.1) instead of the kwok pod's IP (which nothing answers), and in which the replica is
// ready only once the pod is ready and the process answers its agent card (its readiness probe).
// A pod that goes away or terminates has its process stopped with SIGTERM. Everything else —
// the Deployment, the ReplicaSet, scheduling, the EndpointSlices, discovery — is the cluster's.
type kwokKubelet struct {
	inner discovery.Source
	bin   string
	args  map[string][]string // agent → simagent arguments, the agents this kubelet runs
	log   *os.File

	mu      sync.Mutex
	procs   map[string]*replicaProc // by pod name
	changed chan struct{}
	snap    atomic.Pointer[[]discovery.Agent]
	probed  chan struct{} // a process became ready or exited
	wg      sync.WaitGroup
}

type replicaProc struct {
	cmd   *exec.Cmd
	url   string
	ready atomic.Bool
	done  chan struct{}
}

var _ discovery.Source = (*kwokKubelet)(nil)

func newKwokKubelet(inner discovery.Source, bin string, args map[string][]string, log *os.File) *kwokKubelet {
	k := &kwokKubelet{inner: inner, bin: bin, args: args, log: log, procs: map[string]*replicaProc{},
		changed: make(chan struct{}), probed: make(chan struct{}, 1)}
	empty := []discovery.Agent{}
	k.snap.Store(&empty)
	return k
}

func (k *kwokKubelet) Snapshot() []discovery.Agent { return *k.snap.Load() }

func (k *kwokKubelet) Changed() <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.changed
}

// Start runs replicas' processes until ctx ends, then stops them all and waits for them.
func (k *kwokKubelet) Start(ctx context.Context) error {
	defer k.wg.Wait()
	defer k.stopAll()
	for {
		ch := k.inner.Changed()
		k.sync(ctx, k.inner.Snapshot())
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		case <-k.probed:
		}
	}
}

func (k *kwokKubelet) notify() {
	select {
	case k.probed <- struct{}{}:
	default:
	}
}

// sync starts and stops processes to match the pods of snap, and publishes the mapped snapshot.
func (k *kwokKubelet) sync(ctx context.Context, snap []discovery.Agent) {
	live := map[string]bool{}
	for _, a := range snap {
		args, ok := k.args[a.Name]
		if !ok {
			continue
		}
		for _, e := range a.Endpoints {
			if e.URL == "" || (e.State != discovery.StateRunning && e.State != discovery.StateStarting) {
				continue // no pod IP yet, or terminating: a kubelet would not (still) run it
			}
			live[e.Name] = true
			if _, ok := k.procs[e.Name]; !ok {
				if p, err := k.start(ctx, a.Name, e.Name, args); err == nil {
					k.procs[e.Name] = p
				} else {
					fmt.Fprintf(k.log, "kwok kubelet: start %s: %v\n", e.Name, err)
				}
			}
		}
	}
	for name, p := range k.procs {
		if !live[name] {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			delete(k.procs, name)
		}
	}

	out := make([]discovery.Agent, 0, len(snap))
	for _, a := range snap {
		if _, ok := k.args[a.Name]; ok {
			a.Endpoints = slices.Clone(a.Endpoints)
			for i := range a.Endpoints {
				e := &a.Endpoints[i]
				p := k.procs[e.Name]
				if p == nil {
					e.Ready = false
					continue
				}
				e.URL = p.url
				e.Ready = e.Ready && p.ready.Load()
			}
		}
		out = append(out, a)
	}
	if reflect.DeepEqual(out, *k.snap.Load()) {
		return
	}
	k.snap.Store(&out)
	k.mu.Lock()
	close(k.changed)
	k.changed = make(chan struct{})
	k.mu.Unlock()
}

// start runs the process of one replica and probes it until it answers.
func (k *kwokKubelet) start(ctx context.Context, agent, pod string, args []string) (*replicaProc, error) {
	port, err := k8scluster.FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(k.bin, args...)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "AGENTPLANE_AGENT="+agent, "AGENTPLANE_REPLICA="+pod)
	cmd.Stdout, cmd.Stderr = k.log, k.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &replicaProc{cmd: cmd, url: "http://127.0.0.1:" + strconv.Itoa(port), done: make(chan struct{})}
	k.wg.Go(func() {
		_ = cmd.Wait()
		close(p.done)
		k.notify()
	})
	k.wg.Go(func() {
		probe := &http.Client{Timeout: time.Second}
		for {
			res, err := probe.Get(p.url + "/.well-known/agent-card.json")
			if err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					p.ready.Store(true)
					k.notify()
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-p.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	return p, nil
}

// stopAll stops every process: SIGTERM, then SIGKILL after 10s.
func (k *kwokKubelet) stopAll() {
	for name, p := range k.procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		k.wg.Go(func() {
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			}
		})
		delete(k.procs, name)
	}
}

// serving counts the replicas of agent whose process answers.
func (k *kwokKubelet) serving(agent string) int {
	a, _ := discovery.Lookup(k.Snapshot(), agent)
	return a.ReadyCount()
}

// autoscaleGateways is what the in-process operator's autoscaler asks for demand: the gateway
// that testAutoscaleFromZero starts (none before).
var autoscaleGateways atomic.Pointer[[]string]

// testAutoscaleFromZero: an agent with minReplicas 0 rests at zero replicas; a burst of 200 tasks
// through a gateway queues there, the operator's autoscaler sees the demand and scales the
// Deployment up to maxReplicas, the tasks all complete, and some seconds (scaleToZeroAfter) after
// the last one the agent is back at zero. The gateway runs in this process with the Kubernetes
// discovery source, behind kwokKubelet (see there), which runs the kwok pods' processes.
//
// cold start here is the latency of a task sent to the agent while it had no replica (all 200 of
// the burst): from the send to the answer, queueing included.
func testAutoscaleFromZero(t *testing.T, d diagnosis, src *kdiscovery.Source) {
	ctx, c := t.Context(), d.c
	bin, remove, err := testutil.BuildAgentplane(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(remove)
	logFile, err := os.Create(filepath.Join(c.Dir, "autoscale-gateway.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	d = d.withLogs(k8scluster.LogSource{Name: "autoscale gateway and kwok kubelet", File: logFile.Name()})

	const agent, tasks, slots, maxReplicas = "burst", 200, 4, 4
	simArgs := []string{"simagent", "--latency", "200ms", "--max-concurrency", strconv.Itoa(slots)}
	createAgent(t, c, agent, 0, func(a *v1alpha1.Agent) {
		a.Spec.Args = simArgs
		a.Spec.MaxConcurrency = slots
		a.Spec.Autoscaling = &v1alpha1.Autoscaling{MinReplicas: ptr.To[int32](0), MaxReplicas: maxReplicas,
			ScaleDownDelay: &metav1.Duration{Duration: 4 * time.Second}, ScaleToZeroAfter: &metav1.Duration{Duration: 10 * time.Second}}
	})
	deployment := func() *appsv1.Deployment {
		var dep appsv1.Deployment
		if err := c.Client.Get(ctx, types.NamespacedName{Namespace: systemNS, Name: agent}, &dep); err != nil {
			return nil
		}
		return &dep
	}
	waitFor(t, 30*time.Second, d.about(systemNS, "agent/"+agent, "deployment/"+agent), func() error {
		dep := deployment()
		if dep == nil || ptr.Deref(dep.Spec.Replicas, -1) != 0 {
			return fmt.Errorf("deployment %v, want one at 0 replicas", dep)
		}
		a, ok := discovery.Lookup(src.Snapshot(), agent)
		if !ok || !a.Autoscaled || a.Desired != 0 || len(a.Endpoints) != 0 {
			return fmt.Errorf("discovery: %+v, want autoscaled, desired 0, no replica", a)
		}
		return nil
	})

	// The gateway, and the kubelet for the kwok pods of the agent.
	kubelet := newKwokKubelet(src, bin, map[string][]string{agent: simArgs}, logFile)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Options{Source: kubelet, Journal: store.NewMemory(), Listener: ln,
		QueueTimeout: 2 * time.Minute, MaxQueue: 1000, DrainTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewJSONHandler(logFile, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	var running sync.WaitGroup
	running.Go(func() { _ = kubelet.Start(runCtx) })
	running.Go(func() { _ = gw.Start(runCtx) })
	t.Cleanup(func() { autoscaleGateways.Store(nil); stop(); running.Wait() })
	url := "http://" + ln.Addr().String()
	autoscaleGateways.Store(&[]string{url})
	waitFor(t, 10*time.Second, d.about(systemNS), func() error {
		res, err := http.Get(url + "/healthz")
		if err != nil {
			return err
		}
		res.Body.Close()
		return nil
	})

	// At rest: zero replicas, however long (two polls of the autoscaler at least).
	for range 25 {
		if dep := deployment(); dep == nil || ptr.Deref(dep.Spec.Replicas, -1) != 0 || dep.Status.Replicas != 0 {
			t.Fatalf("at rest, with no task: deployment %+v, want 0 replicas", dep)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Peak replicas, as the Deployment reports them ready and as the kubelet serves them.
	var peakReady, peakServing atomic.Int32
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var sampling sync.WaitGroup
	sampling.Go(func() {
		for sampleCtx.Err() == nil {
			if dep := deployment(); dep != nil && dep.Status.ReadyReplicas > peakReady.Load() {
				peakReady.Store(dep.Status.ReadyReplicas)
			}
			if n := int32(kubelet.serving(agent)); n > peakServing.Load() {
				peakServing.Store(n)
			}
			select {
			case <-sampleCtx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	})

	rn := &realNode{url: url}
	start := time.Now()
	outcomes := make([]taskOutcome, tasks)
	latency := make([]time.Duration, tasks)
	var burst sync.WaitGroup
	for i := range tasks {
		burst.Go(func() {
			sent := time.Now()
			outcomes[i] = rn.send(ctx, agent, i, i%2 == 1)
			latency[i] = time.Since(sent)
		})
	}
	burst.Wait()
	lastDone := time.Now()
	stopSampling()
	sampling.Wait()

	completed, byReplica := 0, map[string]int{}
	for _, o := range outcomes {
		if o.completed() {
			completed++
			byReplica[o.replica]++
		}
	}
	fails := failures(outcomes)
	slices.Sort(latency)
	p50, first := latency[len(latency)/2], latency[0]
	t.Logf("burst of %d tasks from zero: done in %v, served by %v; first answer after %v, p50 %v, p99 %v",
		tasks, lastDone.Sub(start).Round(time.Millisecond), byReplica, first.Round(time.Millisecond), p50.Round(time.Millisecond),
		latency[len(latency)*99/100].Round(time.Millisecond))
	if len(fails) > 0 {
		t.Errorf("%d of %d tasks failed, first: %s\n%s", len(fails), tasks, fails[0], d.about(systemNS, "agent/"+agent)())
	}
	if peakReady.Load() != maxReplicas || len(byReplica) != maxReplicas {
		t.Errorf("peak ready replicas %d, %d replicas served; want maxReplicas %d (200 tasks want 200/(4×0.7) = 72)", peakReady.Load(), len(byReplica), maxReplicas)
	}

	// Back to zero, scaleToZeroAfter (10s) after the last task.
	waitFor(t, 60*time.Second, d.about(systemNS, "agent/"+agent, "deployment/"+agent), func() error {
		dep := deployment()
		if dep == nil || ptr.Deref(dep.Spec.Replicas, -1) != 0 || dep.Status.Replicas != 0 {
			return fmt.Errorf("deployment %+v, want back at 0 replicas", dep)
		}
		return nil
	})
	toZero := time.Since(lastDone)
	if toZero < 10*time.Second {
		t.Errorf("back at zero %v after the last task; scaleToZeroAfter is 10s", toZero)
	}
	var a v1alpha1.Agent
	if err := c.Client.Get(ctx, types.NamespacedName{Namespace: systemNS, Name: agent}, &a); err == nil && a.Status.Autoscaling != nil {
		t.Logf("status.autoscaling: %d replicas, %q", a.Status.Autoscaling.DesiredReplicas, a.Status.Autoscaling.Reason)
	}
	fmt.Printf("autoscale: tasks=%d completed=%d failed=%d peak_replicas=%d cold_start_p50=%d\n",
		tasks, completed, len(fails), peakReady.Load(), p50.Milliseconds())
	t.Logf("autoscale: tasks=%d completed=%d failed=%d peak_replicas=%d (serving %d) cold_start_p50=%dms first_task=%dms back_to_zero_after=%v",
		tasks, completed, len(fails), peakReady.Load(), peakServing.Load(), p50.Milliseconds(), first.Milliseconds(), toZero.Round(time.Second))
	if completed != tasks {
		t.Errorf("completed %d of %d", completed, tasks)
	}
}

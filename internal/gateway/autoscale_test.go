package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/simagent"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/testutil"
)

// A task for an autoscaled agent at zero replicas waits in the admission queue, asks for a
// replica at once, and runs when one is ready: its client sees only latency. The gateway stays
// ready meanwhile, and Demand counts the waiting task.
func TestTaskWaitsForAnAutoscaledAgentAtZero(t *testing.T) {
	atZero := discovery.Agent{Name: "triage", State: discovery.AgentStateless, MaxConcurrency: 4, Autoscaled: true, MaxReplicas: 2}
	src := testutil.NewSource(atZero)
	asked := make(chan string, 16)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Options{Source: src, Journal: store.NewMemory(), Listener: ln, ScaleUp: func(agent string) {
		select {
		case asked <- agent:
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Started for real: the pool's watch of the source hands a replica that becomes ready to
	// the waiting task.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- g.Start(ctx) }()
	defer func() { cancel(); <-done }()
	srv := struct{ URL string }{"http://" + ln.Addr().String()}
	if code := getStatus(t, srv.URL+"/readyz"); code != http.StatusOK {
		t.Errorf("readyz with an autoscaled agent at zero = %d, want 200", code)
	}

	// An autoscaler outside the gateway waits in a long poll for a task to wait.
	var longPoll struct {
		Waiting bool `json:"waiting"`
	}
	var quiet = longPoll
	getJSON(t, srv.URL+"/api/v1/autoscale/wait?timeout=50ms", &quiet)
	if quiet.Waiting {
		t.Error("the long poll says a task waits before any was sent")
	}
	if code := getStatus(t, srv.URL+"/api/v1/autoscale/wait?timeout=soon"); code != http.StatusBadRequest {
		t.Errorf("a long poll with timeout=soon answered %d, want 400", code)
	}
	polled := make(chan bool, 1)
	go func() {
		var v = longPoll
		getJSON(t, srv.URL+"/api/v1/autoscale/wait?timeout=10s", &v)
		polled <- v.Waiting
	}()
	time.Sleep(100 * time.Millisecond) // the poll is in
	var (
		wg    sync.WaitGroup
		reply rpcReply
		took  time.Duration
	)
	wg.Go(func() {
		start := time.Now()
		reply = post(t, srv.URL+"/agents/triage/", sendV1(1, "chest pain"))
		took = time.Since(start)
	})
	select {
	case a := <-asked:
		if a != "triage" {
			t.Fatalf("ScaleUp(%q), want triage", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting task did not ask for a replica")
	}
	select {
	case w := <-polled:
		if !w {
			t.Error("the long poll ended without a waiting task")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll did not answer when a task waited")
	}
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		if d := g.Demand()["triage"]; d.Queued != 1 {
			return fmt.Errorf("Demand = %+v, want 1 queued", d)
		}
		return nil
	})
	// The "autoscaler" starts a replica a little later; the task runs on it.
	time.Sleep(200 * time.Millisecond)
	replica := startAgent(t, "triage", "0", simagent.Config{})
	up := testutil.Agent("triage", 4, replica)
	up.Autoscaled, up.MaxReplicas = true, 2
	src.Set(up)
	wg.Wait()
	if _, state := taskState(t, reply.resp.Result); reply.status != http.StatusOK || state != "TASK_STATE_COMPLETED" {
		t.Fatalf("task of an agent scaled from zero: %d %s", reply.status, reply.raw)
	}
	if took < 200*time.Millisecond {
		t.Errorf("the task took %v, less than the replica took to come", took)
	}
	if d := g.Demand()["triage"]; d.Queued != 0 || d.InFlight != 0 {
		t.Errorf("Demand after the task = %+v, want none", d)
	}
}

// An agent that does not autoscale still fails a task at once when it has no ready replica:
// nothing would start one.
func TestTaskFailsAtOnceWithoutReplicaUnlessAutoscaled(t *testing.T) {
	src := testutil.NewSource(discovery.Agent{Name: "triage", State: discovery.AgentStateless, MaxConcurrency: 4, Desired: 1})
	_, srv := newGateway(t, src, func(o *Options) {
		o.ScaleUp = func(string) { t.Error("ScaleUp called for an agent that does not autoscale") }
	})
	start := time.Now()
	r := post(t, srv.URL+"/agents/triage/", sendV1(1, "chest pain"))
	if r.resp.Error == nil {
		t.Fatalf("a task with no replica and no autoscaler: %s", r.raw)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the refusal took %v", took)
	}
}

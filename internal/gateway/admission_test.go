package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/gateway/health"
	"github.com/agentplane/agentplane/internal/simagent"
	"github.com/agentplane/agentplane/internal/testutil"
)

func stats(t *testing.T, base string) simagent.Stats {
	t.Helper()
	var s simagent.Stats
	res, err := http.Get(base + "/simagent/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestReplicasNeverGetMoreThanMaxConcurrency sends three times a replica's capacity at once:
// the excess waits in the gateway, and the agent never works on more than maxConcurrency tasks.
func TestReplicasNeverGetMoreThanMaxConcurrency(t *testing.T) {
	a0 := startAgent(t, "radiology", "0", simagent.Config{Latency: latency(t, "100ms")})
	a1 := startAgent(t, "radiology", "1", simagent.Config{Latency: latency(t, "100ms")})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("radiology", 2, a0, a1)))
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			if r := post(t, srv.URL+"/agents/radiology", sendV1(i, "x")); r.resp.Error != nil {
				t.Errorf("task %d: %s", i, r.raw)
			}
		})
	}
	wg.Wait()
	for _, u := range []string{a0, a1} {
		if s := stats(t, u); s.MaxInFlightSeen > 2 {
			t.Errorf("replica %s worked on %d tasks at once; maxConcurrency is 2", u, s.MaxInFlightSeen)
		}
	}
}

func TestQueueTimeoutIsRefusedWithRetryAfter(t *testing.T) {
	a0 := startAgent(t, "radiology", "0", simagent.Config{Latency: latency(t, "1s")})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("radiology", 1, a0)), func(o *Options) { o.QueueTimeout = 200 * time.Millisecond })
	first := make(chan rpcReply, 1)
	go func() { first <- post(t, srv.URL+"/agents/radiology", sendV1(1, "x")) }()
	time.Sleep(100 * time.Millisecond) // the first task holds the only slot
	r := post(t, srv.URL+"/agents/radiology", sendV1(2, "x"))
	if r.status != http.StatusServiceUnavailable || r.resp.Error == nil || r.resp.Error.Code != CodeAtCapacity || r.header.Get("Retry-After") == "" {
		t.Fatalf("second task: %d %v %s", r.status, r.header, r.raw)
	}
	if f := <-first; f.resp.Error != nil {
		t.Fatalf("first task: %s", f.raw)
	}
}

// TestResidencyIsNeverViolated: an agent allowed only in site hub, whose hub replica is down,
// refuses the task although a replica elsewhere is ready.
func TestResidencyIsNeverViolated(t *testing.T) {
	elsewhere := startAgent(t, "records", "1", simagent.Config{})
	a := discovery.Agent{Name: "records", State: "stateless", MaxConcurrency: 4, Desired: 2, AllowedSites: []string{"hub"},
		Endpoints: []discovery.Endpoint{
			{Agent: "records", Name: "records-0", URL: testutil.ClosedURL(t), Site: "hub", Ready: false, State: discovery.StateCrashLoopBackOff},
			{Agent: "records", Name: "records-1", URL: elsewhere, Site: "clinic-b", Ready: true, State: discovery.StateRunning},
		}}
	_, srv := newGateway(t, testutil.NewSource(a))
	r := post(t, srv.URL+"/agents/records", sendV1(1, "x"))
	if r.resp.Error == nil || r.resp.Error.Code != CodeResidency {
		t.Fatalf("answer %d %s, want a residency refusal", r.status, r.raw)
	}
	if s := stats(t, elsewhere); s.Accepted != 0 {
		t.Fatalf("the replica outside the allowed sites got %d tasks", s.Accepted)
	}
}

func TestUrgentTasksGoFirst(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{Latency: latency(t, "150ms")})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 1, a0)))
	send := func(i int, prio string) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"SendMessage","params":{"message":{"messageId":"p-%d","role":"ROLE_USER","parts":[{"text":"x"}]},"metadata":{"agentplane.io/priority":%q}}}`, i, i, prio)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	wg.Go(func() { post(t, srv.URL+"/agents/triage", send(0, "normal")) }) // takes the slot
	time.Sleep(50 * time.Millisecond)
	for i, p := range []string{"batch", "normal", "urgent"} {
		wg.Go(func() {
			post(t, srv.URL+"/agents/triage", send(i+1, p))
			mu.Lock()
			order = append(order, p)
			mu.Unlock()
		})
		time.Sleep(30 * time.Millisecond) // arrive in this order while the slot is taken
	}
	wg.Wait()
	if fmt.Sprint(order) != "[urgent normal batch]" {
		t.Fatalf("tasks finished in order %v, want urgent, normal, batch", order)
	}
	if r := post(t, srv.URL+"/agents/triage", send(9, "critical")); r.resp.Error == nil {
		t.Fatal("an unknown priority class was accepted")
	}
}

func TestSlowReplicaIsEjectedAsALatencyOutlier(t *testing.T) {
	fast := []string{
		startAgent(t, "triage", "0", simagent.Config{Latency: latency(t, "10ms")}),
		startAgent(t, "triage", "1", simagent.Config{Latency: latency(t, "10ms")}),
		startAgent(t, "triage", "2", simagent.Config{Latency: latency(t, "10ms")}),
	}
	slow := startAgent(t, "triage", "3", simagent.Config{Latency: latency(t, "3s")})
	g, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, append(fast, slow)...)))
	// An ejection lasts a minute here, not a second: on a loaded machine the waves below take
	// longer than a second, and an ejection that ended would read as none.
	g.tasks.pool.ejector = health.NewEjector(time.Minute, time.Minute)
	// Waves of 8: enough for every replica to serve, few enough that on a loaded machine the
	// fast replicas' latency stays far below the slow one's.
	for wave := range 4 {
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				if r := post(t, srv.URL+"/agents/triage", sendV1(wave*8+i, "x")); r.resp.Error != nil {
					t.Errorf("task %d: %s", wave*8+i, r.raw)
				}
			})
		}
		wg.Wait()
	}
	if !g.tasks.pool.ejector.Ejected(slow, time.Now()) {
		t.Fatal("the replica 100 times slower than its peers was not ejected")
	}
	for _, u := range fast {
		if g.tasks.pool.ejector.Ejected(u, time.Now()) {
			t.Fatalf("fast replica %s was ejected", u)
		}
	}
}

// TestPerAgentTaskTimeoutCatchesAHungReplica: the agent's own taskTimeout, not the gateway's
// ten-minute default, decides when a silent replica is taken for hung.
func TestPerAgentTaskTimeoutCatchesAHungReplica(t *testing.T) {
	hung := startAgent(t, "triage", "0", simagent.Config{HangRate: 1})
	live := startAgent(t, "triage", "1", simagent.Config{})
	a := testutil.Agent("triage", 4, hung, live)
	a.TaskTimeout = 300 * time.Millisecond
	g, srv := newGateway(t, testutil.NewSource(a))
	for range 3 {
		defer g.tasks.pool.tracker.Acquire(live)() // the first dispatch goes to the hung replica
	}
	start := time.Now()
	r := post(t, srv.URL+"/agents/triage", sendV1(1, "x"))
	if r.resp.Error != nil || r.replica != "triage-1" {
		t.Fatalf("answer from %q: %s", r.replica, r.raw)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v: the agent's task timeout was not applied", d)
	}
}

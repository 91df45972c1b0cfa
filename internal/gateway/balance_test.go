package gateway

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/simagent"
	"github.com/agentplane/agentplane/internal/testutil"
)

// TestConversationsStayOnTheirReplica: a stateless agent's conversation goes on being served by
// the replica that took its previous turn, since that replica likely still holds its context,
// while that replica is somewhat busier than the others; it moves when that one is full, and
// then stays where it went. The first turn has no contextId; the client continues with the one
// the gateway answered with. (40 ms tasks: long enough that the replicas' measured latencies,
// equal in truth, do not differ by the warm tolerance on a busy machine.)
func TestConversationsStayOnTheirReplica(t *testing.T) {
	var urls []string
	for i := range 3 {
		urls = append(urls, startAgent(t, "triage", fmt.Sprint(i), simagent.Config{Latency: latency(t, "40ms")}))
	}
	g, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 8, urls...)))
	url := func(replica string) string { // triage-1 → its URL
		i := strings.LastIndexByte(replica, '-')
		var n int
		fmt.Sscan(replica[i+1:], &n)
		return urls[n]
	}
	// The first tasks pay for new connections; measure the replicas before the conversations.
	for i := range 9 {
		if r := post(t, srv.URL+"/agents/triage", sendV1(1000+i, "x")); r.resp.Error != nil {
			t.Fatal(r.raw)
		}
	}
	send := func(id int, contextID string, busy int, on string) string {
		t.Helper()
		for range busy { // tasks of other clients on that replica
			defer g.tasks.pool.tracker.Acquire(url(on))()
		}
		body := sendV1(id, "x")
		if contextID != "" {
			body = fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"SendMessage","params":{"message":{"messageId":"m-%d","contextId":%q,"role":"ROLE_USER","parts":[{"text":"x"}]}}}`,
				id, id, contextID)
		}
		r := post(t, srv.URL+"/agents/triage", body)
		if r.resp.Error != nil || r.replica == "" {
			t.Fatalf("task %d: replica %q: %s", id, r.replica, r.raw)
		}
		return r.replica
	}
	for c := range 4 {
		first := post(t, srv.URL+"/agents/triage", sendV1(c, "x"))
		var v struct {
			Task struct {
				ContextID string `json:"contextId"`
			} `json:"task"`
		}
		if err := json.Unmarshal(first.resp.Result, &v); err != nil || v.Task.ContextID == "" || first.replica == "" {
			t.Fatalf("first turn: no contextId or replica in %s", first.raw)
		}
		home := first.replica
		// Two of its eight slots taken while the others are idle: it stays.
		for turn := 1; turn <= 3; turn++ {
			if got := send(c*10+turn, v.Task.ContextID, 2, home); got != home {
				t.Fatalf("conversation %d turn %d went to %s, though %s, which served it, had room", c, turn, got, home)
			}
		}
		// Full: it moves, and stays where it went.
		moved := send(c*10+4, v.Task.ContextID, 8, home)
		if moved == home {
			t.Fatalf("conversation %d: a turn went to its full replica", c)
		}
		if got := send(c*10+5, v.Task.ContextID, 2, moved); got != moved {
			t.Fatalf("conversation %d moved to %s, then went to %s", c, moved, got)
		}
	}
}

// TestATaskWaitsForAFasterReplica: with a fast replica full and a much slower one free (a GPU
// pool beside a CPU one), a task waits for a slot on the fast one when that ends sooner than
// running on the slow one (the slow-server problem); when many wait, the slow one takes some,
// so that waiting never costs more than it saves.
func TestATaskWaitsForAFasterReplica(t *testing.T) {
	pool, fast, send := measuredPair(t, "50ms", "600ms")

	// Two tasks fill the fast replica; the third waits for it rather than take the slow one.
	if r, took := sendWhileFull(t, pool, fast, send); r.replica != "triage-0" {
		t.Errorf("with the fast replica full, the task went to %s (took %v); want it to wait for the fast one", r.replica, took)
	}

	// Many at once: more wait than the fast replica clears in a slow one's task time, and the
	// slow one takes some of them.
	var wg sync.WaitGroup
	var mu sync.Mutex
	on := map[string]int{}
	for i := range 24 {
		wg.Go(func() {
			r := send(100 + i)
			mu.Lock()
			on[r.replica]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if on["triage-1"] == 0 || on["triage-0"] <= on["triage-1"] {
		t.Errorf("24 tasks at once ran %v; want most on the fast replica, some on the slow one", on)
	}
}

// measuredPair starts an agent of two replicas (maxConcurrency 2) whose tasks take fastLat and
// slowLat, and has the gateway measure each: holdMinTasks tasks on it while the other is full
// (taken by other clients). It returns the gateway's pool, the fast replica's URL and a send
// that fails the test unless the task completes.
func measuredPair(t *testing.T, fastLat, slowLat string) (*pool, string, func(id int) rpcReply) {
	t.Helper()
	fast := startAgent(t, "triage", "0", simagent.Config{Latency: latency(t, fastLat)})
	slow := startAgent(t, "triage", "1", simagent.Config{Latency: latency(t, slowLat)})
	g, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 2, fast, slow)))
	pool := g.tasks.pool
	send := func(id int) rpcReply {
		r := post(t, srv.URL+"/agents/triage", sendV1(id, "x"))
		if _, state := taskState(t, r.resp.Result); state != "TASK_STATE_COMPLETED" {
			t.Fatalf("task %d: %s", id, r.raw)
		}
		return r
	}
	measure := func(id int, on, busy, want string) {
		t.Helper()
		rels := []func(){pool.tracker.Acquire(busy), pool.tracker.Acquire(busy)}
		if r := send(id); r.replica != want {
			t.Fatalf("measuring %s: the task ran on %s", want, r.replica)
		}
		for _, rel := range rels {
			rel()
		}
		if _, ok := pool.latency.Value(on, time.Now()); !ok {
			t.Fatalf("%s not measured", want)
		}
	}
	for i := range holdMinTasks { // the hold compares medians of holdMinTasks or more
		measure(1+2*i, slow, fast, "triage-1")
		measure(2+2*i, fast, slow, "triage-0")
	}
	return pool, fast, send
}

// sendWhileFull fills the fast replica of measuredPair with two tasks, sends a third, and
// returns where it ran and how long it took.
func sendWhileFull(t *testing.T, pool *pool, fast string, send func(id int) rpcReply) (rpcReply, time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range 2 {
		wg.Go(func() { send(10 + i) })
	}
	waitFor(t, func() bool { return pool.tracker.InFlight(fast) == 2 })
	start := time.Now()
	r := send(12)
	return r, time.Since(start)
}

// Replicas of one speed differ in their measured durations by chance, so a replica that only
// looks twice as fast is not waited for: waiting would idle the free one. (Waiting would pay
// here, 50ms + 100ms against 200ms, so only the speed test keeps the task from it.)
func TestATaskDoesNotWaitForAReplicaOnlyTwiceAsFast(t *testing.T) {
	pool, fast, send := measuredPair(t, "100ms", "200ms")
	if r, _ := sendWhileFull(t, pool, fast, send); r.replica != "triage-1" {
		t.Errorf("with the fast replica full, the task waited for it (ran on %s); want it on the free replica at once", r.replica)
	}
}

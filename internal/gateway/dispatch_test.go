package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/simagent"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/testutil"
)

func streamV1(id int, text string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"SendStreamingMessage","params":{"message":{"messageId":"s-%d","role":"ROLE_USER","parts":[{"text":%q}]}}}`, id, id, text)
}

func asyncV1(id int, text string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"SendMessage","params":{"message":{"messageId":"a-%d","role":"ROLE_USER","parts":[{"text":%q}]},"configuration":{"returnImmediately":true}}}`, id, id, text)
}

func getTaskV1(id int, taskID string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"GetTask","params":{"id":%q}}`, id, taskID)
}

// journaled waits until the journal holds task id in state want.
func journaled(t *testing.T, g *Gateway, id string, want store.TaskState) *store.Task {
	t.Helper()
	var last *store.Task
	waitFor(t, func() bool {
		task, err := g.tasks.journal.store.Get(t.Context(), id)
		if err == nil {
			last = task
		}
		return err == nil && task.State == want
	})
	return last
}

// firstEventTaskID opens a stream, reads its first event, and returns the gateway's task id and
// the open response (the caller closes it: a client that goes away).
func firstEventTaskID(t *testing.T, url, body string) (string, *http.Response) {
	t.Helper()
	res := postJSON(t, url, body)
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data:") {
			continue
		}
		var r a2a.Response
		if err := json.Unmarshal([]byte(strings.TrimSpace(line[5:])), &r); err != nil {
			t.Fatalf("event %q: %v", line, err)
		}
		if sum := a2a.Summarize(r.Result); sum.TaskID != "" {
			return sum.TaskID, res
		}
	}
	res.Body.Close()
	t.Fatalf("stream ended without naming its task")
	return "", nil
}

// Regression: a streaming task whose client went away stayed "working" in the journal for ever.
// It runs to its end, the journal says completed, and GetTask says so, also once the replica
// that ran it has restarted and forgotten it.
func TestDisconnectedStreamsEndCompletedInTheJournal(t *testing.T) {
	a0 := startAgent(t, "radiology", "0", simagent.Config{Latency: latency(t, "300ms"), Chunks: 3})
	agent := testutil.Agent("radiology", 8, a0)
	src := testutil.NewSource(agent)
	g, srv := newGateway(t, src)
	url := srv.URL + "/agents/radiology"
	const n = 10
	ids := make([]string, n)
	for i := range n {
		id, res := firstEventTaskID(t, url, streamV1(i, "CT head"))
		res.Body.Close() // the client leaves after the first event
		ids[i] = id
	}
	for _, id := range ids {
		journaled(t, g, id, store.StateCompleted)
	}
	restarted := agent
	restarted.Endpoints = append([]discovery.Endpoint(nil), agent.Endpoints...)
	restarted.Endpoints[0].Restarts++
	src.Set(restarted)
	for i, id := range ids {
		r := post(t, url, getTaskV1(100+i, id))
		if _, state := taskState(t, r.resp.Result); state != "TASK_STATE_COMPLETED" {
			t.Fatalf("GetTask %s after its client left and its replica restarted: %s", id, r.raw)
		}
	}
}

// Regression: a continuation took a slot with Acquire, past the replica's maxConcurrency. It
// waits in the admission queue like any task while the replica is full.
func TestContinuationNeverExceedsMaxConcurrency(t *testing.T) {
	a := newTurnAgent(t)
	intake := testutil.Agent("intake", 1, a.url)
	g, srv := newGateway(t, testutil.NewSource(intake))
	url := srv.URL + "/agents/intake"
	r := post(t, url, sendV1(1, "I need to move my appointment"))
	id, state := taskState(t, r.resp.Result)
	if state != "TASK_STATE_INPUT_REQUIRED" {
		t.Fatalf("first turn: %s", r.raw)
	}
	release := g.tasks.pool.tracker.Acquire(a.url) // another task holds the replica's only slot
	before := a.continuations()
	done := make(chan rpcReply, 1)
	go func() { done <- post(t, url, continueV1(2, id, "Tuesday morning")) }()
	waitFor(t, func() bool { return g.tasks.pool.queue.Depth("intake") == 1 })
	if got := a.continuations(); got != before {
		t.Fatalf("the continuation reached a replica at capacity (%d continuations, want %d)", got, before)
	}
	if n := g.tasks.pool.tracker.InFlight(a.url); n != 1 {
		t.Fatalf("%d tasks in flight on a replica of capacity 1", n)
	}
	release()
	g.tasks.pool.queue.Notify("intake")
	r = <-done
	if _, state := taskState(t, r.resp.Result); state != "TASK_STATE_COMPLETED" {
		t.Fatalf("second turn: %s", r.raw)
	}
}

// Regression: SubscribeToTask on a queued task still working sent one snapshot and closed. It
// streams until the task ends.
func TestSubscribeToAWorkingAsyncTaskStreamsUntilItsEnd(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{Latency: latency(t, "600ms")})
	g, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, a0)))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.tasks.Start(ctx) }()
	defer func() { cancel(); <-done }()
	url := srv.URL + "/agents/triage"
	r := post(t, url, asyncV1(1, "chest pain"))
	id, _ := taskState(t, r.resp.Result)
	journaled(t, g, id, store.StateDispatched)
	out := postStream(t, url, fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"SubscribeToTask","params":{"id":%q}}`, id))
	events := strings.Count(out, "data:")
	// A v1.0 stream event that is a task is a StreamResponse, {"task": {...}}, as SDK clients read it.
	if events < 2 || !strings.Contains(out, "TASK_STATE_COMPLETED") || !strings.HasPrefix(out, `data: {"jsonrpc":"2.0","id":2,"result":{"task":`) ||
		!strings.Contains(out[strings.LastIndex(out, "data:"):], `"result":{"task":`) {
		t.Fatalf("subscription to a working task: %d events, want the snapshot and its end, each a {\"task\": ...}:\n%s", events, out)
	}
}

// Regression: an agent's JSON-RPC error ended a blocking task rejected and a streaming one
// failed. One rule decides: the agent refused before it took the task, so both are rejected.
func TestAnAgentErrorEndsBlockingAndStreamingTasksAlike(t *testing.T) {
	refuser := streamingAgent(t, func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"no"}}`)
	})
	g, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, refuser)))
	url := srv.URL + "/agents/triage"
	_ = post(t, url, sendV1(1, "x"))
	_ = postStream(t, url, streamV1(2, "x"))
	states := map[string]string{}
	for _, s := range g.tasks.journal.recent.list("", 10) {
		states[s.ID] = s.State
	}
	if len(states) != 2 {
		t.Fatalf("want 2 tasks, got %v", states)
	}
	for id, s := range states {
		if s != string(a2a.StateRejected) {
			t.Errorf("task %s ended %s, want rejected", id, s)
		}
	}
}

// Regression: a streaming task that ended before its dispatch (canceled while it waited for a
// slot) was answered with an empty 200. The client gets the task as it ended.
func TestAStreamWhoseTaskEndedBeforeDispatchSaysSo(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	g, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 1, a0)))
	url := srv.URL + "/agents/triage"
	release := g.tasks.pool.tracker.Acquire(a0)
	out := make(chan string, 1)
	go func() { out <- postStream(t, url, streamV1(1, "x")) }()
	waitFor(t, func() bool { return g.tasks.pool.queue.Depth("triage") == 1 })
	id := g.tasks.journal.recent.list("triage", 1)[0].ID
	r := post(t, url, fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"CancelTask","params":{"id":%q}}`, id))
	if r.resp.Error != nil {
		t.Fatalf("cancel: %s", r.raw)
	}
	release()
	g.tasks.pool.queue.Notify("triage")
	got := <-out
	if !strings.Contains(got, "TASK_STATE_CANCELED") {
		t.Fatalf("stream of a task canceled before dispatch answered %q", got)
	}
}

// Regression: GetTask with an id longer than the journal allows answered 503.
func TestAnOverlongTaskIDIsNotFound(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 1, a0)))
	r := post(t, srv.URL+"/agents/triage", getTaskV1(1, strings.Repeat("x", 1000)))
	if r.status != http.StatusOK || r.resp.Error == nil || r.resp.Error.Code != a2a.CodeTaskNotFound {
		t.Fatalf("GetTask with a 1000-character id: %d %s", r.status, r.raw)
	}
}

// failingJournal fails its writes while failing is set.
type failingJournal struct {
	store.Journal
	failing atomic.Bool
}

var errDiskFull = errors.New("disk full")

func (f *failingJournal) Create(ctx context.Context, t *store.Task) error {
	if f.failing.Load() {
		return errDiskFull
	}
	return f.Journal.Create(ctx, t)
}

func (f *failingJournal) Update(ctx context.Context, t *store.Task) error {
	if f.failing.Load() {
		return errDiskFull
	}
	return f.Journal.Update(ctx, t)
}

// Regression: journal writes failed open. A task that cannot be journaled is refused, a failed
// update makes the gateway unready until writes succeed again, and nothing is silently dropped.
func TestJournalWriteFailuresSurface(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{Latency: latency(t, "200ms")})
	j := &failingJournal{Journal: store.NewMemory()}
	g, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, a0)), func(o *Options) { o.Journal = j })
	g.tasks.journal.backoff = []time.Duration{time.Millisecond}
	url := srv.URL + "/agents/triage"

	j.failing.Store(true)
	r := post(t, url, sendV1(1, "x"))
	if r.status != http.StatusServiceUnavailable || r.resp.Error == nil || !strings.Contains(r.resp.Error.Message, "cannot record") {
		t.Fatalf("a task that cannot be journaled: %d %s", r.status, r.raw)
	}
	if code := getStatus(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz while the journal fails: %d", code)
	}
	j.failing.Store(false)
	if r := post(t, url, sendV1(2, "x")); r.resp.Error != nil {
		t.Fatalf("after the journal recovered: %s", r.raw)
	}
	if code := getStatus(t, srv.URL+"/readyz"); code != http.StatusOK {
		t.Fatalf("readyz once the journal writes again: %d", code)
	}

	// The answer's write fails: the client still gets it; the task stays unfinished in the
	// journal, for recovery to run again (at least once), and the gateway says it is unready.
	var wg sync.WaitGroup
	var reply rpcReply
	wg.Go(func() { reply = post(t, url, sendV1(3, "x")) })
	waitFor(t, func() bool { return g.tasks.pool.tracker.InFlight(a0) == 1 })
	j.failing.Store(true)
	wg.Wait()
	if reply.resp.Error != nil {
		t.Fatalf("answer whose journal write failed: %s", reply.raw)
	}
	id, _ := taskState(t, reply.resp.Result)
	stored, err := j.Journal.Get(t.Context(), id)
	if err != nil || stored.State.Terminal() {
		t.Fatalf("journal after a failed write: %+v %v", stored, err)
	}
	if code := getStatus(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz after a failed update: %d", code)
	}
}

// A request the journal cannot keep is refused before dispatch with 413, never 503, and never
// runs; an answer too large to keep is relayed and its state journaled without it.
func TestWhatCannotBeJournaledIsRefusedWith413(t *testing.T) {
	var hits atomic.Int32
	a0 := streamingAgent(t, func(w http.ResponseWriter) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":1,"result":{"task":{"id":"up-12345678","contextId":"c","status":{"state":"TASK_STATE_COMPLETED"},"artifacts":[{"artifactId":"a","parts":[{"text":%q}]}]}}}`, strings.Repeat("y", 4096))
	})
	j := store.NewMemoryWithLimits(store.Limits{MaxRequestBytes: 2048, MaxResultBytes: 2048})
	g, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, a0)), func(o *Options) { o.Journal = j })
	url := srv.URL + "/agents/triage"
	r := post(t, url, sendV1(1, strings.Repeat("x", 4096)))
	if r.status != http.StatusRequestEntityTooLarge || r.resp.Error == nil || !strings.Contains(r.resp.Error.Message, "journal") {
		t.Fatalf("a request too large to journal: %d %s", r.status, r.raw)
	}
	if r.header.Get("Retry-After") != "" || hits.Load() != 0 {
		t.Fatalf("refused task: Retry-After %q, %d dispatches", r.header.Get("Retry-After"), hits.Load())
	}
	r = post(t, url, sendV1(2, "short"))
	id, state := taskState(t, r.resp.Result)
	if state != "TASK_STATE_COMPLETED" {
		t.Fatalf("a small request with a large answer: %s", r.raw)
	}
	stored := journaled(t, g, id, store.StateCompleted)
	if len(stored.Result) != 0 || !strings.Contains(stored.Reason, "larger than the task journal keeps") {
		t.Fatalf("journal of an answer too large to keep: result %d bytes, reason %q", len(stored.Result), stored.Reason)
	}
}

// faultyHost sends every request to host through fault, and the rest over the network.
type faultyHost struct {
	host  string
	fault func(*http.Request) (*http.Response, error)
	calls atomic.Int32
}

func (f *faultyHost) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != f.host || req.Method == http.MethodGet {
		return http.DefaultTransport.RoundTrip(req)
	}
	f.calls.Add(1)
	return f.fault(req)
}

// TestEachFailureClassDecidesRetryAndEjection injects each failure through the transport on one
// replica of two: what may not have reached the agent or broke off is retried on the other
// replica, an answer that is not JSON-RPC is not (the agent did answer), and the journal ends
// each task once.
func TestEachFailureClassDecidesRetryAndEjection(t *testing.T) {
	jsonAnswer := func(r *http.Request, status int, body string) *http.Response {
		return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body)), Request: r}
	}
	for _, tc := range []struct {
		name      string
		fault     func(*http.Request) (*http.Response, error)
		retried   bool
		ejectedAt bool // ejected after this one failure
	}{
		{"refused", func(*http.Request) (*http.Response, error) {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		}, true, true},
		{"reset mid-body", func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(io.MultiReader(strings.NewReader(`{"jsonrpc":`), errReader{syscall.ECONNRESET})), Request: r}, nil
		}, true, true},
		{"503", func(r *http.Request) (*http.Response, error) { return jsonAnswer(r, 503, "busy"), nil }, true, false},
		{"hang", func(r *http.Request) (*http.Response, error) { <-r.Context().Done(); return nil, r.Context().Err() }, true, false},
		{"garbage", func(r *http.Request) (*http.Response, error) { return jsonAnswer(r, 200, "<html>oops"), nil }, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := startAgent(t, "triage", "0", simagent.Config{})
			good := startAgent(t, "triage", "1", simagent.Config{})
			rt := &faultyHost{host: strings.TrimPrefix(bad, "http://"), fault: tc.fault}
			g, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, bad, good)), func(o *Options) {
				o.Transport, o.TaskTimeout = rt, 300*time.Millisecond
			})
			// 3 of the healthy replica's 4 slots are taken: the pick goes to the faulty one first.
			release := g.tasks.pool.tracker.Acquire(good)
			release2 := g.tasks.pool.tracker.Acquire(good)
			release3 := g.tasks.pool.tracker.Acquire(good)
			r := post(t, srv.URL+"/agents/triage", sendV1(1, "x"))
			release()
			release2()
			release3()
			if rt.calls.Load() != 1 {
				t.Fatalf("the faulty replica got %d requests, want 1", rt.calls.Load())
			}
			task := g.tasks.journal.recent.list("triage", 1)[0]
			if tc.retried {
				if r.resp.Error != nil || r.replica != "triage-1" || task.State != string(a2a.StateCompleted) || task.Attempts != 2 {
					t.Fatalf("want a completed re-dispatch on triage-1: %s (journal %+v)", r.raw, task)
				}
			} else if r.resp.Error == nil || r.resp.Error.Code != a2a.CodeInvalidAgentResponse || task.State != string(a2a.StateFailed) || task.Attempts != 1 {
				t.Fatalf("want one failed attempt: %s (journal %+v)", r.raw, task)
			}
			if got := g.tasks.pool.ejector.Ejected(bad, time.Now()); got != tc.ejectedAt {
				t.Fatalf("ejected after one %s: %v, want %v", tc.name, got, tc.ejectedAt)
			}
		})
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	return 0, &net.OpError{Op: "read", Net: "tcp", Err: e.err}
}

// A send without messageId is refused with -32602 naming the field, and nothing is journaled.
func TestASendWithoutMessageIDIsRefusedBeforeTheJournal(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	g, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 1, a0)))
	r := post(t, srv.URL+"/agents/triage", `{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"role":"ROLE_USER","parts":[{"text":"x"}]}}}`)
	if r.resp.Error == nil || r.resp.Error.Code != a2a.CodeInvalidParams || !strings.Contains(r.resp.Error.Message, "messageId") {
		t.Fatalf("send without messageId: %s", r.raw)
	}
	if n := len(g.tasks.journal.recent.list("", 10)); n != 0 {
		t.Fatalf("%d tasks journaled for a refused send", n)
	}
}

// A retry that finds no replica ready waits in the admission queue for one instead of failing
// the accepted task: replicas that are restarting, or failing their probes under load, come
// back. (CI saw 3 of 300 tasks fail with "no replica could run the task after 2 attempts" when
// no replica was ready at that moment.)
func TestARetryWaitsForAReplicaToBeBack(t *testing.T) {
	var (
		src   *testutil.Source
		agent discovery.Agent
		dies  sync.Once
	)
	// The first replica dies on the task: the supervisor sees its process exit (not ready)
	// and the connection drops.
	dying := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dies.Do(func() {
			down := agent
			down.Endpoints = slices.Clone(agent.Endpoints)
			down.Endpoints[0].Ready, down.Endpoints[0].State = false, discovery.StateCrashLoopBackOff
			src.Set(down)
		})
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(dying.Close)
	starting := startAgent(t, "triage", "1", simagent.Config{})
	agent = testutil.Agent("triage", 4, dying.URL, starting)
	agent.Endpoints[1].Ready, agent.Endpoints[1].State = false, discovery.StateStarting
	src = testutil.NewSource(agent)
	g, srv := newGateway(t, src)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- g.tasks.pool.Start(ctx) }() // its watch of the source wakes the waiting task
	defer func() { cancel(); <-done }()

	result := make(chan rpcReply, 1)
	go func() { result <- post(t, srv.URL+"/agents/triage", sendV1(1, "chest pain")) }()
	waitFor(t, func() bool { return g.tasks.pool.queue.Waiting("triage") == 1 })
	select {
	case r := <-result:
		t.Fatalf("the retry did not wait for a ready replica: %d %s", r.status, r.raw)
	case <-time.After(200 * time.Millisecond):
	}

	ready := src.Snapshot()[0]
	ready.Endpoints = slices.Clone(ready.Endpoints)
	ready.Endpoints[1].Ready, ready.Endpoints[1].State = true, discovery.StateRunning
	src.Set(ready)
	select {
	case r := <-result:
		if _, state := taskState(t, r.resp.Result); state != "TASK_STATE_COMPLETED" || r.replica != "triage-1" {
			t.Fatalf("the retry once a replica was ready: replica %q: %s", r.replica, r.raw)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting retry did not run when a replica became ready")
	}
}

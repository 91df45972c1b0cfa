package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/gateway/health"
	"github.com/agentplane/agentplane/internal/gateway/retry"
	"github.com/agentplane/agentplane/internal/gateway/upstream"
	"github.com/agentplane/agentplane/internal/simagent"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/testutil"
)

// startAgent runs a real simulated agent on a loopback port and returns its base URL.
func startAgent(t *testing.T, name, replica string, cfg simagent.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Name, cfg.Replica, cfg.Listen = name, replica, ln.Addr().String()
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 2 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- simagent.Serve(ctx, cfg, ln, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("simagent %s-%s: %v", name, replica, err)
		}
	})
	return "http://" + ln.Addr().String()
}

func latency(t *testing.T, s string) simagent.Latency {
	t.Helper()
	l, err := simagent.ParseLatency(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func newGateway(t *testing.T, src discovery.Source, mod ...func(*Options)) (*Gateway, *httptest.Server) {
	t.Helper()
	o := Options{Source: src, Journal: store.NewMemory()}
	for _, m := range mod {
		m(&o)
	}
	g, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	return g, srv
}

type rpcReply struct {
	status  int
	header  http.Header
	replica string
	resp    a2a.Response
	raw     string
}

// postJSON POSTs a JSON-RPC body and returns the open response; the caller closes its body.
func postJSON(t *testing.T, url, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return res
}

func post(t *testing.T, url, body string) rpcReply {
	t.Helper()
	res := postJSON(t, url, body)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := rpcReply{status: res.StatusCode, header: res.Header, replica: res.Header.Get(HeaderReplica), raw: string(raw)}
	if err := json.Unmarshal(raw, &r.resp); err != nil {
		t.Fatalf("answer is not JSON-RPC: %v: %s", err, raw)
	}
	return r
}

// postStream POSTs a JSON-RPC body and returns the whole answer, an event stream or not.
func postStream(t *testing.T, url, body string) string {
	t.Helper()
	res := postJSON(t, url, body)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return string(raw)
}

func sendV1(id int, text string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"SendMessage","params":{"message":{"messageId":"m-%d","role":"ROLE_USER","parts":[{"text":%q}]}}}`, id, id, text)
}

func sendV03(id int, text string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"message/send","params":{"message":{"kind":"message","messageId":"m-%d","role":"user","parts":[{"kind":"text","text":%q}]}}}`, id, id, text)
}

func taskState(t *testing.T, result json.RawMessage) (id, state string) {
	t.Helper()
	id, state, err := testutil.TaskIDAndState(result)
	if err != nil {
		t.Fatalf("result %s: %v", result, err)
	}
	return id, state
}

func TestBothDialectsAndTaskRouting(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	a1 := startAgent(t, "triage", "1", simagent.Config{})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, a0, a1)))
	url := srv.URL + "/agents/triage"

	r := post(t, url, sendV1(1, "chest pain since this morning"))
	id, state := taskState(t, r.resp.Result)
	if r.status != http.StatusOK || r.resp.Error != nil || state != "TASK_STATE_COMPLETED" {
		t.Fatalf("v1 SendMessage: %d %s", r.status, r.raw)
	}
	// GetTask answers with the gateway's task id, the same state and the agent's artifacts.
	g := post(t, url, fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"GetTask","params":{"id":%q}}`, id))
	if gid, gstate := taskState(t, g.resp.Result); g.resp.Error != nil || gid != id || gstate != "TASK_STATE_COMPLETED" || !strings.Contains(g.raw, "processed") {
		t.Fatalf("GetTask: %s", g.raw)
	}

	r = post(t, url, sendV03(4, "hello"))
	if _, state := taskState(t, r.resp.Result); r.resp.Error != nil || state != "completed" {
		t.Fatalf("v0.3 message/send: %s", r.raw)
	}
	if string(r.resp.ID) != "4" {
		t.Fatalf("response id = %s, want 4", r.resp.ID)
	}
}

func TestStreamingIsRelayedEventByEvent(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{Chunks: 4, Latency: latency(t, "400ms")})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, a0)))

	body := `{"jsonrpc":"2.0","id":7,"method":"SendStreamingMessage","params":{"message":{"messageId":"s1","role":"ROLE_USER","parts":[{"text":"x"}]}}}`
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/agents/triage", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type = %q", ct)
	}
	start := time.Now()
	var arrivals []time.Duration
	var last string
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data:") {
			arrivals = append(arrivals, time.Since(start))
			last = line
		}
	}
	if len(arrivals) < 6 { // task, working, 4 chunks, completed
		t.Fatalf("got %d events, want at least 6", len(arrivals))
	}
	if !strings.Contains(last, "TASK_STATE_COMPLETED") {
		t.Fatalf("last event %s is not the completion", last)
	}
	// Events must arrive as the agent sends them, not all at once at the end.
	if spread := arrivals[len(arrivals)-1] - arrivals[0]; spread < 200*time.Millisecond {
		t.Fatalf("events arrived within %v of each other: the stream was buffered", spread)
	}
}

func TestRefusedReplicaIsEjectedAndTheTaskRetried(t *testing.T) {
	dead := testutil.ClosedURL(t)
	live := startAgent(t, "triage", "1", simagent.Config{})
	g, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, dead, live)))
	// Load the live replica so that the first task is sent to the dead one.
	for range 3 {
		defer g.tasks.pool.tracker.Acquire(live)()
	}
	for i := range 20 {
		r := post(t, srv.URL+"/agents/triage", sendV1(i, "x"))
		if r.resp.Error != nil || r.replica != "triage-1" {
			t.Fatalf("task %d: replica %q: %s", i, r.replica, r.raw)
		}
	}
	if !g.tasks.pool.ejector.Ejected(dead, time.Now()) {
		t.Fatal("the dead replica is not ejected")
	}
	var admin struct {
		Replicas []ReplicaStatus `json:"replicas"`
	}
	getJSON(t, srv.URL+"/api/v1/replicas", &admin)
	if len(admin.Replicas) != 2 || !admin.Replicas[0].Ejected || admin.Replicas[1].Ejected {
		t.Fatalf("admin API replicas = %+v", admin.Replicas)
	}
}

// countingUpstream is a replica that serves a card and answers every JSON-RPC call with status.
func countingUpstream(t *testing.T, status int, calls *atomic.Int32) string {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			fmt.Fprintf(w, `{"name":"x","supportedInterfaces":[{"url":%q,"protocolBinding":"JSONRPC","protocolVersion":"1.0"}]}`, srv.URL+"/rpc")
			return
		}
		calls.Add(1)
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestRetryIsBoundedWhenEveryReplicaFails(t *testing.T) {
	var calls atomic.Int32
	var urls []string
	for range 5 {
		urls = append(urls, countingUpstream(t, http.StatusServiceUnavailable, &calls))
	}
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, urls...)), func(o *Options) { o.MaxAttempts = 3 })
	start := time.Now()
	r := post(t, srv.URL+"/agents/triage", sendV1(1, "x"))
	if r.status != http.StatusServiceUnavailable || r.resp.Error == nil || r.resp.Error.Code != a2a.CodeAgentUnavailable {
		t.Fatalf("answer %d %s, want 503 with agent-unavailable", r.status, r.raw)
	}
	if r.header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After on 503")
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d replicas were tried, want MaxAttempts = 3", n)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("failing took %v", d)
	}
}

func TestBadRequestsGetClearErrors(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	v1only := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"name":"old","supportedInterfaces":[{"url":"http://127.0.0.1:1/","protocolBinding":"JSONRPC","protocolVersion":"1.0"}]}`)
	}))
	defer v1only.Close()
	src := testutil.NewSource(
		testutil.Agent("triage", 4, a0),
		testutil.Agent("v1only", 4, v1only.URL),
		discovery.Agent{Name: "empty", MaxConcurrency: 1, Desired: 1},
	)
	_, srv := newGateway(t, src, func(o *Options) { o.MaxBodyBytes = 1024 })

	tests := []struct {
		name, agent, body, contentType string
		status, code                   int
	}{
		{"unknown agent", "nope", sendV1(1, "x"), "application/json", 404, a2a.CodeAgentNotFound},
		{"oversized", "triage", sendV1(1, strings.Repeat("x", 2048)), "application/json", 413, a2a.CodeRequestTooLarge},
		{"bad json", "triage", `{"jsonrpc":"2.0",`, "application/json", 200, a2a.CodeParseError},
		{"unknown method", "triage", `{"jsonrpc":"2.0","id":1,"method":"tasks/explode"}`, "application/json", 200, a2a.CodeMethodNotFound},
		{"form post", "triage", sendV1(1, "x"), "application/x-www-form-urlencoded", 415, a2a.CodeInvalidRequest},
		{"no replicas", "empty", sendV1(1, "x"), "application/json", 503, a2a.CodeAgentUnavailable},
		{"dialect unsupported", "v1only", sendV03(1, "x"), "application/json", 200, a2a.CodeUnsupportedOp},
		{"unknown task", "triage", `{"jsonrpc":"2.0","id":9,"method":"CancelTask","params":{"id":"nope"}}`, "application/json", 200, a2a.CodeTaskNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/agents/"+tt.agent, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", tt.contentType)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var resp a2a.Response
			raw, _ := io.ReadAll(res.Body)
			if err := json.Unmarshal(raw, &resp); err != nil {
				t.Fatalf("not JSON-RPC: %s", raw)
			}
			if res.StatusCode != tt.status || resp.Error == nil || resp.Error.Code != tt.code || resp.Error.Message == "" {
				t.Fatalf("got %d %s, want HTTP %d with code %d", res.StatusCode, raw, tt.status, tt.code)
			}
		})
	}
	// The gateway still serves valid requests after all that.
	if r := post(t, srv.URL+"/agents/triage", sendV1(1, "x")); r.resp.Error != nil {
		t.Fatalf("valid request failed: %s", r.raw)
	}
}

// streamingAgent is an agent (v1.0 card) that answers every message with the event stream that
// stream writes.
func streamingAgent(t *testing.T, stream func(w http.ResponseWriter)) string {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			fmt.Fprintf(w, `{"supportedInterfaces":[{"url":%q,"protocolBinding":"JSONRPC","protocolVersion":"1.0"}]}`, srv.URL)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		stream(w)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestMidStreamFailureEndsWithAnErrorEvent(t *testing.T) {
	agent := streamingAgent(t, func(w http.ResponseWriter) {
		fmt.Fprint(w, "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"task\":{\"id\":\"t1\",\"status\":{\"state\":\"TASK_STATE_WORKING\"}}}}\n\n")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close() // the replica dies mid-stream
		}
	})
	_, gw := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, agent)))
	raw := postStream(t, gw.URL+"/agents/triage", `{"jsonrpc":"2.0","id":1,"method":"SendStreamingMessage","params":{"message":{"messageId":"m-1","role":"ROLE_USER","parts":[{"text":"x"}]}}}`)
	events := strings.Split(strings.TrimSpace(raw), "\n\n")
	if len(events) != 2 || !strings.Contains(events[0], "TASK_STATE_WORKING") || strings.Contains(events[0], `"t1"`) || !strings.Contains(events[1], fmt.Sprint(a2a.CodeAgentUnavailable)) {
		t.Fatalf("stream = %q, want the agent's event then an error event", raw)
	}
}

func TestLoadSpreadsAcrossReplicas(t *testing.T) {
	var urls []string
	for i := range 3 {
		urls = append(urls, startAgent(t, "triage", fmt.Sprint(i), simagent.Config{Latency: latency(t, "30ms"), MaxConcurrency: 4}))
	}
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, urls...)))
	const n = 90
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := post(t, srv.URL+"/agents/triage", sendV1(i, "x"))
			if r.resp.Error != nil {
				t.Errorf("task %d: %s", i, r.raw)
			}
			mu.Lock()
			counts[r.replica]++
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, name := range []string{"triage-0", "triage-1", "triage-2"} {
		if c := counts[name]; c < n/3-12 || c > n/3+12 {
			t.Errorf("replica %s got %d of %d tasks; want about %d (counts %v)", name, c, n, n/3, counts)
		}
	}
}

func TestCardIsRewrittenToTheGateway(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, a0)))
	var card struct {
		Name       string `json:"name"`
		Interfaces []struct {
			URL, ProtocolBinding, ProtocolVersion string
		} `json:"supportedInterfaces"`
	}
	getJSON(t, srv.URL+"/agents/triage/.well-known/agent-card.json", &card)
	// JSON-RPC as the agent lists it (1.0 and 0.3), and HTTP+JSON 1.0, which the gateway serves.
	if card.Name != "triage" || len(card.Interfaces) != 3 || card.Interfaces[2].ProtocolBinding != "HTTP+JSON" || card.Interfaces[2].ProtocolVersion != "1.0" {
		t.Fatalf("card = %+v", card)
	}
	for _, i := range card.Interfaces {
		if i.URL != srv.URL+"/agents/triage/" {
			t.Fatalf("interface URL %q not rewritten to the gateway", i.URL)
		}
	}
	res, err := http.Get(srv.URL + "/agents/nope/.well-known/agent-card.json")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("card of an unknown agent: %d", res.StatusCode)
	}
}

func TestReadyzAndDrain(t *testing.T) {
	a0 := startAgent(t, "radiology", "0", simagent.Config{Latency: latency(t, "500ms")})
	src := testutil.NewSource(testutil.Agent("radiology", 2, a0), discovery.Agent{Name: "down", Desired: 1, MaxConcurrency: 1})
	g, err := New(Options{Source: src, Journal: store.NewMemory(), DrainTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	g.opts.Listener = ln
	go func() { done <- g.Start(ctx) }()

	if code := getStatus(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz with an agent that has no ready replica = %d, want 503", code)
	}
	src.Set(testutil.Agent("radiology", 2, a0))
	if code := getStatus(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("readyz = %d, want 200", code)
	}

	// A task in flight when the gateway is told to stop still completes.
	result := make(chan rpcReply, 1)
	go func() { result <- post(t, base+"/agents/radiology", sendV1(1, "x")) }()
	waitFor(t, func() bool { return g.tasks.pool.tracker.InFlight(a0) == 1 })
	cancel()
	r := <-result
	if _, state := taskState(t, r.resp.Result); state != "TASK_STATE_COMPLETED" {
		t.Fatalf("in-flight task during drain: %s", r.raw)
	}
	if err := <-done; err != nil {
		t.Fatalf("Start() = %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("the gateway still accepts connections after Start returned")
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, res.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, raw)
	}
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// waitFor waits up to 5 s for cond, through the one polling helper.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error { return testutil.Check(cond(), "condition not met") })
}

func TestRetryBudgetBoundsExtraRequestsWhenEveryReplicaFails(t *testing.T) {
	var calls atomic.Int32
	var urls []string
	for range 4 {
		urls = append(urls, countingUpstream(t, http.StatusServiceUnavailable, &calls))
	}
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 1000, urls...)))
	const n = 200
	start := time.Now()
	for i := range n {
		t0 := time.Now()
		r := post(t, srv.URL+"/agents/triage", sendV1(i, "x"))
		if r.status != http.StatusServiceUnavailable || r.resp.Error == nil {
			t.Fatalf("request %d: %d %s", i, r.status, r.raw)
		}
		if d := time.Since(t0); d > time.Second {
			t.Fatalf("request %d took %v to fail", i, d)
		}
	}
	elapsed := time.Since(start).Seconds()
	// First attempts, plus retries: half of the requests, plus the floor of 10 a second and the
	// 10 banked at the start.
	bound := n + int(retry.DefaultRatio*n) + int(retry.DefaultMinPerSecond*(elapsed+1)) + 1
	got := int(calls.Load())
	t.Logf("%d requests, %d upstream calls in %.2fs (bound %d; without a budget: %d)", n, got, elapsed, bound, n*DefaultMaxAttempts)
	if got > bound {
		t.Fatalf("%d upstream calls for %d requests; the budget allows at most %d", got, n, bound)
	}
	if got < n {
		t.Fatalf("only %d upstream calls for %d requests", got, n)
	}
}

// dyingStreamer is a replica that starts a stream and dies after the first event.
func dyingStreamer(t *testing.T, hits *atomic.Int32) string {
	t.Helper()
	return streamingAgent(t, func(w http.ResponseWriter) {
		hits.Add(1)
		fmt.Fprint(w, "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"task\":{\"id\":\"dying-replica-task\",\"contextId\":\"c\",\"status\":{\"state\":\"TASK_STATE_SUBMITTED\"}}}}\n\n")
		w.(http.Flusher).Flush()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	})
}

func TestStreamContinuesOnAnotherReplicaWhenItsReplicaDies(t *testing.T) {
	var hits atomic.Int32
	dying := dyingStreamer(t, &hits)
	live := startAgent(t, "triage", "1", simagent.Config{Chunks: 2})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, dying, live)))
	body := `{"jsonrpc":"2.0","id":1,"method":"SendStreamingMessage","params":{"message":{"messageId":"s-1","role":"ROLE_USER","parts":[{"text":"x"}]}}}`
	for try := range 30 {
		before := hits.Load()
		raw := postStream(t, srv.URL+"/agents/triage", body)
		if hits.Load() == before {
			continue // the live replica was picked first; try again
		}
		var events []a2a.Response
		for _, block := range strings.Split(strings.TrimSpace(raw), "\n\n") {
			var r a2a.Response
			if err := json.Unmarshal([]byte(strings.TrimPrefix(block, "data: ")), &r); err != nil {
				t.Fatalf("event %q: %v", block, err)
			}
			events = append(events, r)
		}
		if len(events) < 4 {
			t.Fatalf("try %d: %d events:\n%s", try, len(events), raw)
		}
		first := a2a.Summarize(events[0].Result)
		if first.TaskID == "" || first.TaskID == "dying-replica-task" {
			t.Fatalf("first event's task id %q is not the gateway's", first.TaskID)
		}
		if !strings.Contains(string(events[1].Result), MetaRedispatched) || !strings.Contains(string(events[1].Result), "re-dispatched") {
			t.Fatalf("second event is not the re-dispatch notice: %s", events[1].Result)
		}
		for i, ev := range events {
			if ev.Error != nil {
				t.Fatalf("event %d is an error: %v", i, ev.Error)
			}
			if id := a2a.Summarize(ev.Result).TaskID; id != "" && id != first.TaskID {
				t.Fatalf("event %d has task id %q, want the gateway's %q", i, id, first.TaskID)
			}
		}
		if last := a2a.Summarize(events[len(events)-1].Result); last.State != a2a.StateCompleted {
			t.Fatalf("stream ended in state %q:\n%s", last.State, raw)
		}
		return
	}
	t.Fatal("the dying replica was never picked first in 30 tries")
}

func TestActiveProbeReadmitsAnEjectedReplica(t *testing.T) {
	var calls atomic.Int32
	url := countingUpstream(t, http.StatusServiceUnavailable, &calls)
	src := testutil.NewSource(testutil.Agent("triage", 4, url))
	g, err := New(Options{Source: src, Journal: store.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	g.tasks.pool.ejector = health.NewEjector(time.Hour, time.Hour) // only a probe can bring it back in time
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	g.opts.Listener = ln
	go func() { done <- g.Start(ctx) }()
	defer func() { cancel(); <-done }()

	g.tasks.pool.failed(src.Snapshot()[0].Endpoints[0], &upstream.StatusError{Code: 503})
	g.tasks.pool.failed(src.Snapshot()[0].Endpoints[0], &upstream.StatusError{Code: 503})
	if !g.tasks.pool.ejector.Ejected(url, time.Now()) {
		t.Fatal("two 503s in a row did not eject the replica")
	}
	// Its card answers, so the prober puts it back long before the hour is up.
	waitFor(t, func() bool { return !g.tasks.pool.ejector.Ejected(url, time.Now()) })
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func startAgentB(b *testing.B, cfg simagent.Config) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cfg.Name, cfg.Replica, cfg.Listen = "triage", "0", ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- simagent.Serve(ctx, cfg, ln, nil) }()
	b.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String()
}

func newServer(tb testing.TB, h http.Handler) string {
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return srv.URL
}

func drain(res *http.Response) {
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
}

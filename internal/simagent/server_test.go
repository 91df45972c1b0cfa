package simagent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentplane/agentplane/internal/testutil"
)

// ---- helpers -------------------------------------------------------------

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testAgent struct {
	t      *testing.T
	base   string
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer
	http   *http.Client
	exits  *atomic.Int64 // number of exit calls
	exitAt *atomic.Int64 // accepted count when exit was first called
}

// startAgent serves cfg on a free loopback port until the test ends.
func startAgent(t *testing.T, cfg Config) *testAgent {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	a := &testAgent{
		t:      t,
		base:   "http://" + ln.Addr().String(),
		cancel: cancel,
		done:   make(chan error, 1),
		logs:   &syncBuffer{},
		http:   &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second},
		exits:  &atomic.Int64{},
		exitAt: &atomic.Int64{},
	}
	if cfg.Name == "" {
		cfg.Name = "triage"
	}
	if cfg.Replica == "" {
		cfg.Replica = "1"
	}
	cfg.exit = func(code int) {
		if code != 3 {
			t.Errorf("exit code %d, want 3", code)
		}
		if a.exits.Add(1) == 1 {
			a.exitAt.Store(a.statsNoFail().Accepted)
		}
	}
	logger := slog.New(slog.NewTextHandler(a.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() { a.done <- Serve(ctx, cfg, ln, logger) }()
	t.Cleanup(func() {
		a.cancel()
		select {
		case err := <-a.done:
			assert.NoError(t, err)
		case <-time.After(60 * time.Second):
			t.Error("Serve did not return after cancel")
		}
		a.http.CloseIdleConnections()
	})
	return a
}

// stop cancels the agent and waits for Serve to return.
func (a *testAgent) stop(within time.Duration) error {
	a.t.Helper()
	a.cancel()
	select {
	case err := <-a.done:
		a.done <- err // for Cleanup
		return err
	case <-time.After(within):
		a.t.Fatalf("Serve did not return within %v", within)
		return nil
	}
}

func (a *testAgent) client(t *testing.T, path string, version a2a.ProtocolVersion) *a2aclient.Client {
	t.Helper()
	c, err := a2aclient.NewFromEndpoints(context.Background(),
		[]*a2a.AgentInterface{{URL: a.base + path, ProtocolBinding: a2a.TransportProtocolJSONRPC, ProtocolVersion: version}},
		a2aclient.WithJSONRPCTransport(a.http))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Destroy() })
	return c
}

func (a *testAgent) statsNoFail() Stats {
	resp, err := a.http.Get(a.base + PathStats)
	if err != nil {
		return Stats{}
	}
	defer resp.Body.Close()
	var s Stats
	_ = json.NewDecoder(resp.Body).Decode(&s)
	return s
}

func (a *testAgent) stats(t *testing.T) Stats {
	t.Helper()
	resp, err := a.http.Get(a.base + PathStats)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var s Stats
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&s))
	return s
}

func (a *testAgent) post(t *testing.T, path, body string) (int, []byte) {
	t.Helper()
	resp, err := a.http.Post(a.base+path, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func userMsg(text string) *a2a.SendMessageRequest {
	return &a2a.SendMessageRequest{Message: a2a.NewMessage(a2a.MessageRoleUser, a2a.NewTextPart(text))}
}

func usage(t *testing.T, meta map[string]any) (in, out float64) {
	t.Helper()
	u, ok := meta[MetaUsage].(map[string]any)
	require.True(t, ok, "usage metadata missing: %v", meta)
	in, ok1 := u["inputTokens"].(float64)
	out, ok2 := u["outputTokens"].(float64)
	require.True(t, ok1 && ok2, "usage: %v", u)
	return in, out
}

func artifactText(task *a2a.Task) string {
	var sb strings.Builder
	for _, a := range task.Artifacts {
		for _, p := range a.Parts {
			sb.WriteString(p.Text())
		}
	}
	return sb.String()
}

// ---- tests ---------------------------------------------------------------

func TestAgentCard(t *testing.T) {
	a := startAgent(t, Config{Description: "test agent"})
	resp, err := a.http.Get(a.base + "/.well-known/agent-card.json")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	t.Logf("card: %s", raw)

	var card a2a.AgentCard
	require.NoError(t, json.Unmarshal(raw, &card))
	assert.Equal(t, "triage", card.Name)
	assert.Equal(t, "test agent", card.Description)
	assert.True(t, card.Capabilities.Streaming)
	require.Len(t, card.Skills, 1)
	require.Len(t, card.SupportedInterfaces, 2)
	assert.Equal(t, a2a.AgentInterface{URL: a.base + "/", ProtocolBinding: a2a.TransportProtocolJSONRPC, ProtocolVersion: "1.0"}, *card.SupportedInterfaces[0])
	assert.Equal(t, a2a.AgentInterface{URL: a.base + "/v0.3", ProtocolBinding: a2a.TransportProtocolJSONRPC, ProtocolVersion: "0.3"}, *card.SupportedInterfaces[1])
}

func TestHealthzAndStats(t *testing.T) {
	a := startAgent(t, Config{})
	resp, err := a.http.Get(a.base + PathHealthz)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "ok", string(b))

	resp, err = a.http.Get(a.base + PathStats)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
	resp.Body.Close()
	for _, k := range []string{"agent", "replica", "accepted", "completed", "failed", "inFlight", "waiting", "maxInFlightSeen"} {
		assert.Contains(t, m, k)
	}
	assert.Equal(t, "triage", m["agent"])
	assert.Equal(t, "1", m["replica"])

	// Unknown paths and methods are rejected.
	resp, err = a.http.Get(a.base + "/nope")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestSendMessageV1Blocking(t *testing.T) {
	a := startAgent(t, Config{Latency: fixedLatency(20 * time.Millisecond)})
	c := a.client(t, "/", a2a.Version)

	res, err := c.SendMessage(context.Background(), userMsg("please triage this  patient\nnote now"))
	require.NoError(t, err)
	task, ok := res.(*a2a.Task)
	require.True(t, ok, "result %T", res)
	assert.Equal(t, a2a.TaskStateCompleted, task.Status.State)
	assert.Equal(t, "triage-1", task.Metadata[MetaReplica])
	in, out := usage(t, task.Metadata)
	assert.Equal(t, float64(8), in)  // 6 words × 4/3
	assert.Equal(t, float64(6), out) // "triage-1: processed 6 words" = 4 words
	assert.Equal(t, "triage-1: processed 6 words", artifactText(task))
	assert.NotContains(t, artifactText(task), "patient")

	got, err := c.GetTask(context.Background(), &a2a.GetTaskRequest{ID: task.ID})
	require.NoError(t, err)
	assert.Equal(t, a2a.TaskStateCompleted, got.Status.State)

	s := a.stats(t)
	assert.Equal(t, int64(1), s.Accepted)
	assert.Equal(t, int64(1), s.Completed)
	assert.Equal(t, int64(0), s.InFlight)

	// The raw wire shape, for reference.
	status, body := a.post(t, "/", `{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m1","role":"ROLE_USER","parts":[{"text":"hello there"}]}}}`)
	require.Equal(t, http.StatusOK, status)
	t.Logf("v1 SendMessage response: %s", body)
	var rpc struct {
		Result struct {
			Task a2a.Task `json:"task"`
		} `json:"result"`
	}
	require.NoError(t, json.Unmarshal(body, &rpc))
	assert.Equal(t, a2a.TaskStateCompleted, rpc.Result.Task.Status.State)
}

func TestSendMessageV03(t *testing.T) {
	a := startAgent(t, Config{})
	status, body := a.post(t, "/v0.3", `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"kind":"message","messageId":"m1","role":"user","parts":[{"kind":"text","text":"hello there"}]}}}`)
	require.Equal(t, http.StatusOK, status)
	t.Logf("v0.3 message/send response: %s", body)
	var rpc struct {
		Result struct {
			Kind      string         `json:"kind"`
			ID        string         `json:"id"`
			Metadata  map[string]any `json:"metadata"`
			Status    struct{ State string }
			Artifacts []struct {
				Parts []struct{ Kind, Text string }
			}
		} `json:"result"`
		Error any `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &rpc))
	require.Nil(t, rpc.Error)
	assert.Equal(t, "task", rpc.Result.Kind)
	assert.Equal(t, "completed", rpc.Result.Status.State)
	assert.Equal(t, "triage-1", rpc.Result.Metadata[MetaReplica])
	in, out := usage(t, rpc.Result.Metadata)
	assert.Equal(t, float64(3), in)
	assert.Equal(t, float64(6), out)
	require.Len(t, rpc.Result.Artifacts, 1)
	assert.Equal(t, "triage-1: processed 2 words", rpc.Result.Artifacts[0].Parts[0].Text)

	// The task is shared with the v1.0 endpoint.
	task, err := a.client(t, "/", a2a.Version).GetTask(context.Background(), &a2a.GetTaskRequest{ID: a2a.TaskID(rpc.Result.ID)})
	require.NoError(t, err)
	assert.Equal(t, a2a.TaskStateCompleted, task.Status.State)

	// tasks/get on v0.3.
	status, body = a.post(t, "/v0.3", fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"tasks/get","params":{"id":%q}}`, rpc.Result.ID))
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, string(body), `"state":"completed"`)
}

func TestStreamingChunks(t *testing.T) {
	a := startAgent(t, Config{Chunks: 3, Latency: fixedLatency(60 * time.Millisecond)})
	c := a.client(t, "/", a2a.Version)

	var events []a2a.Event
	for ev, err := range c.SendStreamingMessage(context.Background(), userMsg("one two three")) {
		require.NoError(t, err)
		events = append(events, ev)
	}
	require.Len(t, events, 6, "submitted task, working, 3 chunks, completed")
	task, ok := events[0].(*a2a.Task)
	require.True(t, ok, "first event %T", events[0])
	assert.Equal(t, a2a.TaskStateSubmitted, task.Status.State)
	assert.Equal(t, a2a.TaskStateWorking, events[1].(*a2a.TaskStatusUpdateEvent).Status.State)
	var text strings.Builder
	var artifactID a2a.ArtifactID
	for i, ev := range events[2:5] {
		au, ok := ev.(*a2a.TaskArtifactUpdateEvent)
		require.True(t, ok, "event %d is %T", i+2, ev)
		if i == 0 {
			artifactID = au.Artifact.ID
			assert.False(t, au.Append)
		} else {
			assert.Equal(t, artifactID, au.Artifact.ID)
			assert.True(t, au.Append)
		}
		assert.Equal(t, i == 2, au.LastChunk)
		text.WriteString(au.Artifact.Parts[0].Text())
	}
	assert.Equal(t, "triage-1: chunk 1/3\ntriage-1: chunk 2/3\ntriage-1: processed 3 words", text.String())
	final, ok := events[5].(*a2a.TaskStatusUpdateEvent)
	require.True(t, ok)
	assert.Equal(t, a2a.TaskStateCompleted, final.Status.State)
	assert.Equal(t, "triage-1", final.Metadata[MetaReplica])
	in, out := usage(t, final.Metadata)
	assert.Equal(t, float64(4), in)
	assert.Equal(t, float64(14), out) // 10 words

	// Raw SSE, for reference.
	resp, err := a.http.Post(a.base+"/", "application/json", strings.NewReader(
		`{"jsonrpc":"2.0","id":7,"method":"SendStreamingMessage","params":{"message":{"messageId":"m2","role":"ROLE_USER","parts":[{"text":"hello there"}]}}}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	sc := bufio.NewScanner(resp.Body)
	var lines []string
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			lines = append(lines, d)
		}
	}
	require.NotEmpty(t, lines)
	t.Logf("v1 SSE first: %s", lines[0])
	t.Logf("v1 SSE last: %s", lines[len(lines)-1])
	assert.Contains(t, lines[len(lines)-1], "TASK_STATE_COMPLETED")
}

func TestStreamingV03(t *testing.T) {
	a := startAgent(t, Config{Chunks: 2})
	resp, err := a.http.Post(a.base+"/v0.3", "application/json", strings.NewReader(
		`{"jsonrpc":"2.0","id":1,"method":"message/stream","params":{"message":{"kind":"message","messageId":"m1","role":"user","parts":[{"kind":"text","text":"hello there"}]}}}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var data []string
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = append(data, d)
		}
	}
	require.Len(t, data, 5)
	t.Logf("v0.3 SSE first: %s", data[0])
	t.Logf("v0.3 SSE last: %s", data[len(data)-1])
	assert.Contains(t, data[2], `"kind":"artifact-update"`)
	assert.Contains(t, data[4], `"final":true`)
	assert.Contains(t, data[4], `"state":"completed"`)
	assert.Contains(t, data[4], MetaUsage)
}

func TestMaxConcurrencyQueues(t *testing.T) {
	a := startAgent(t, Config{MaxConcurrency: 2, Latency: fixedLatency(100 * time.Millisecond)})
	c := a.client(t, "/", a2a.Version)

	const n = 6
	var wg sync.WaitGroup
	results := make([]a2a.TaskState, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			res, err := c.SendMessage(context.Background(), userMsg(fmt.Sprintf("task %d", i)))
			errs[i] = err
			if task, ok := res.(*a2a.Task); ok {
				results[i] = task.Status.State
			}
		})
	}
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error { return testutil.Check(a.stats(t).Waiting > 0, "waiting for tasks to queue") })
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		assert.Equal(t, a2a.TaskStateCompleted, results[i], "task %d", i)
	}
	s := a.stats(t)
	assert.Equal(t, int64(2), s.MaxInFlightSeen)
	assert.Equal(t, int64(n), s.Completed)
	assert.Equal(t, int64(0), s.Waiting)
	assert.Equal(t, int64(0), s.InFlight)
}

func TestFailRate(t *testing.T) {
	a := startAgent(t, Config{FailRate: 1})
	res, err := a.client(t, "/", a2a.Version).SendMessage(context.Background(), userMsg("hi"))
	require.NoError(t, err)
	task := res.(*a2a.Task)
	assert.Equal(t, a2a.TaskStateFailed, task.Status.State)
	require.NotNil(t, task.Status.Message)
	assert.Equal(t, "triage-1: simulated failure", task.Status.Message.Parts[0].Text())
	assert.Equal(t, "triage-1", task.Metadata[MetaReplica])
	usage(t, task.Metadata)
	assert.Equal(t, int64(1), a.stats(t).Failed)
}

func TestSeedIsDeterministic(t *testing.T) {
	outcomes := func() []outcome {
		e := newExecutor(Config{Seed: 42, FailRate: 0.3, HangRate: 0.2, Latency: fixedLatency(0)}, slog.New(slog.DiscardHandler), newStats("a", "0"), nil)
		var o []outcome
		for range 50 {
			f, _ := e.draw()
			o = append(o, f)
		}
		return o
	}
	first := outcomes()
	assert.Equal(t, first, outcomes())
	assert.Contains(t, first, outcomeFail)
	assert.Contains(t, first, outcomeHang)
	assert.Contains(t, first, outcomeComplete)
}

func TestNonBlockingThenGetTask(t *testing.T) {
	a := startAgent(t, Config{Latency: fixedLatency(100 * time.Millisecond)})
	c := a.client(t, "/", a2a.Version)
	req := userMsg("later please")
	req.Config = &a2a.SendMessageConfig{ReturnImmediately: true}
	res, err := c.SendMessage(context.Background(), req)
	require.NoError(t, err)
	task := res.(*a2a.Task)
	assert.False(t, task.Status.State.Terminal(), "state %s", task.Status.State)
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		got, err := c.GetTask(context.Background(), &a2a.GetTaskRequest{ID: task.ID})
		require.NoError(t, err)
		return testutil.Check(got.Status.State == a2a.TaskStateCompleted, "waiting for task completion")
	})
}

func TestCancelTask(t *testing.T) {
	a := startAgent(t, Config{Latency: fixedLatency(time.Hour)})
	c := a.client(t, "/", a2a.Version)
	req := userMsg("slow")
	req.Config = &a2a.SendMessageConfig{ReturnImmediately: true}
	res, err := c.SendMessage(context.Background(), req)
	require.NoError(t, err)
	task := res.(*a2a.Task)
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error { return testutil.Check(a.stats(t).InFlight == 1, "waiting for task to work") })

	canceled, err := c.CancelTask(context.Background(), &a2a.CancelTaskRequest{ID: task.ID})
	require.NoError(t, err)
	assert.Equal(t, a2a.TaskStateCanceled, canceled.Status.State)
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		s := a.stats(t)
		return testutil.Check(s.InFlight == 0 && s.Canceled == 1, "waiting for slot release")
	})
	got, err := c.GetTask(context.Background(), &a2a.GetTaskRequest{ID: task.ID})
	require.NoError(t, err)
	assert.Equal(t, a2a.TaskStateCanceled, got.Status.State)
}

func TestHangEndsWhenClientGoesAway(t *testing.T) {
	before := runtime.NumGoroutine()
	a := startAgent(t, Config{HangRate: 1, DrainTimeout: 20 * time.Second})
	c := a.client(t, "/", a2a.Version)

	reqCtx, cancelReq := context.WithCancel(context.Background())
	sendErr := make(chan error, 1)
	go func() {
		_, err := c.SendMessage(reqCtx, userMsg("never answered"))
		sendErr <- err
	}()
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error { return testutil.Check(a.stats(t).InFlight == 1, "waiting for task to hang") })
	cancelReq()
	require.Error(t, <-sendErr)
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		s := a.stats(t)
		return testutil.Check(s.InFlight == 0 && s.Canceled == 1, "waiting for hanging task to end")
	})

	start := time.Now()
	require.NoError(t, a.stop(10*time.Second))
	assert.Less(t, time.Since(start), 5*time.Second, "nothing in flight: drain should be quick")
	a.http.CloseIdleConnections()
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
		return testutil.Check(runtime.NumGoroutine() <= before+2, "waiting for goroutines to end")
	})
}

func TestHangEndsAtDrainDeadline(t *testing.T) {
	before := runtime.NumGoroutine()
	a := startAgent(t, Config{HangRate: 1, DrainTimeout: 200 * time.Millisecond})
	c := a.client(t, "/", a2a.Version)

	// One detached (non-blocking) hanging task and one blocking one.
	req := userMsg("detached")
	req.Config = &a2a.SendMessageConfig{ReturnImmediately: true}
	_, err := c.SendMessage(context.Background(), req)
	require.NoError(t, err)
	blocking := make(chan a2a.SendMessageResult, 1)
	go func() {
		res, _ := c.SendMessage(context.Background(), userMsg("blocking"))
		blocking <- res
	}()
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error { return testutil.Check(a.stats(t).InFlight == 2, "waiting for tasks to hang") })

	start := time.Now()
	require.NoError(t, a.stop(15*time.Second))
	assert.Less(t, time.Since(start), 5*time.Second)
	select {
	case res := <-blocking:
		if task, ok := res.(*a2a.Task); ok {
			assert.Equal(t, a2a.TaskStateFailed, task.Status.State)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocking client was not released")
	}
	a.http.CloseIdleConnections()
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
		return testutil.Check(runtime.NumGoroutine() <= before+2, "waiting for goroutines to end")
	})
}

func TestDrainLetsInFlightTaskFinish(t *testing.T) {
	a := startAgent(t, Config{Latency: fixedLatency(300 * time.Millisecond), DrainTimeout: 10 * time.Second})
	c := a.client(t, "/", a2a.Version)

	type result struct {
		res a2a.SendMessageResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := c.SendMessage(context.Background(), userMsg("finish me"))
		done <- result{res, err}
	}()
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error { return testutil.Check(a.stats(t).InFlight == 1, "waiting for task in flight") })
	require.NoError(t, a.stop(10*time.Second))
	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, a2a.TaskStateCompleted, r.res.(*a2a.Task).Status.State)

	// The listener is closed.
	_, err := a.http.Get(a.base + PathHealthz)
	assert.Error(t, err)
}

func TestCrashAfter(t *testing.T) {
	a := startAgent(t, Config{CrashAfter: 2})
	c := a.client(t, "/", a2a.Version)
	for i := range 2 {
		res, err := c.SendMessage(context.Background(), userMsg("ok"))
		require.NoError(t, err, "task %d", i)
		assert.Equal(t, a2a.TaskStateCompleted, res.(*a2a.Task).Status.State)
		assert.Zero(t, a.exits.Load(), "exit after task %d", i)
	}
	res, err := c.SendMessage(context.Background(), userMsg("boom"))
	assert.Equal(t, int64(1), a.exits.Load())
	assert.Equal(t, int64(3), a.exitAt.Load(), "exit must happen when the third task arrives")
	if err == nil {
		// The SDK may turn the executor error into a failed task.
		task, ok := res.(*a2a.Task)
		require.True(t, ok, "result %T", res)
		assert.Equal(t, a2a.TaskStateFailed, task.Status.State)
	}
	assert.Contains(t, a.logs.String(), "simagent simulated crash")
}

func TestNoBodiesInLogs(t *testing.T) {
	a := startAgent(t, Config{Chunks: 2, FailRate: 0.5, Seed: 7})
	c := a.client(t, "/", a2a.Version)
	for range 4 {
		_, err := c.SendMessage(context.Background(), userMsg("SECRET-PATIENT-DATA"))
		require.NoError(t, err)
	}
	for range c.SendStreamingMessage(context.Background(), userMsg("SECRET-PATIENT-DATA")) {
	}
	a.post(t, "/v0.3", `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"kind":"message","messageId":"m1","role":"user","parts":[{"kind":"text","text":"SECRET-PATIENT-DATA"}]}}}`)
	a.post(t, "/", `{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m1","role":"ROLE_USER","parts":[{"text":"SECRET-PATIENT-DATA"}]}`) // malformed
	require.NoError(t, a.stop(10*time.Second))
	logs := a.logs.String()
	assert.Contains(t, logs, "simagent listening")
	assert.Contains(t, logs, "simagent stopped")
	assert.NotContains(t, logs, "SECRET-PATIENT-DATA")
}

func TestOversizedBodyRejected(t *testing.T) {
	a := startAgent(t, Config{})
	big := `{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m1","role":"ROLE_USER","parts":[{"text":"` + strings.Repeat("a", maxRequestBody) + `"}]}}}`
	status, _ := a.post(t, "/", big)
	assert.Equal(t, http.StatusRequestEntityTooLarge, status)
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"ok", Config{}, ""},
		{"fail rate high", Config{FailRate: 1.5}, "fail-rate must be in [0,1]"},
		{"hang rate negative", Config{HangRate: -0.1}, "hang-rate must be in [0,1]"},
		{"rates sum", Config{FailRate: 0.6, HangRate: 0.6}, "fail-rate + hang-rate"},
		{"concurrency", Config{MaxConcurrency: -1}, "max-concurrency"},
		{"chunks", Config{Chunks: -2}, "chunks"},
		{"chunks huge", Config{Chunks: maxChunks + 1}, "chunks"},
		{"crash", Config{CrashAfter: -1}, "crash-after"},
		{"drain", Config{DrainTimeout: -time.Second}, "drain-timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.withDefaults(false)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			// Serve refuses it too (and closes the listener).
			ln, lerr := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, lerr)
			require.Error(t, Serve(context.Background(), tt.cfg, ln, nil))
			_, cerr := net.Dial("tcp", ln.Addr().String())
			assert.Error(t, cerr)
		})
	}
}

func TestDefaults(t *testing.T) {
	t.Setenv(EnvPort, "")
	t.Setenv(EnvListenHost, "")
	t.Setenv(EnvAgent, "")
	t.Setenv(EnvReplica, "")
	_, err := Config{}.withDefaults(true)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no listen address")
	require.Error(t, Run(context.Background(), Config{}, nil))

	t.Setenv(EnvPort, "8123")
	t.Setenv(EnvAgent, "triage")
	t.Setenv(EnvReplica, "4")
	c, err := Config{}.withDefaults(true)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:8123", c.Listen)
	assert.Equal(t, "triage", c.Name)
	assert.Equal(t, "4", c.Replica)
	assert.Equal(t, 1, c.Chunks)
	assert.Equal(t, 30*time.Second, c.DrainTimeout)
	assert.Equal(t, "0", c.Latency.String())

	// In a pod the operator sets the host, so that the pod IP reaches the agent.
	t.Setenv(EnvListenHost, "0.0.0.0")
	c, err = Config{}.withDefaults(true)
	require.NoError(t, err)
	assert.Equal(t, "0.0.0.0:8123", c.Listen)
	t.Setenv(EnvListenHost, "")

	t.Setenv(EnvAgent, "")
	t.Setenv(EnvReplica, "")
	c, err = Config{Listen: "127.0.0.1:1"}.withDefaults(true)
	require.NoError(t, err)
	assert.Equal(t, "simagent", c.Name)
	assert.Equal(t, "0", c.Replica)
}

func TestRunListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	err = Run(context.Background(), Config{Listen: ln.Addr().String()}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "listen")
}

func TestRunServesAndStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Config{Listen: addr}, nil) }()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		resp, err := client.Get("http://" + addr + PathHealthz)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return testutil.Check(resp.StatusCode == http.StatusOK, "waiting for healthz")
	})
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

func TestBindFlags(t *testing.T) {
	var c Config
	fs := pflag.NewFlagSet("simagent", pflag.ContinueOnError)
	c.BindFlags(fs)
	require.NoError(t, fs.Parse([]string{
		"--listen=127.0.0.1:9000", "--name=triage", "--replica=2", "--description=d",
		"--latency=lognormal:2s,20s", "--max-concurrency=4", "--chunks=5", "--fail-rate=0.1",
		"--hang-rate=0.05", "--crash-after=100", "--seed=9", "--drain-timeout=5s",
	}))
	assert.Equal(t, "127.0.0.1:9000", c.Listen)
	assert.Equal(t, "triage", c.Name)
	assert.Equal(t, "2", c.Replica)
	assert.Equal(t, "d", c.Description)
	assert.Equal(t, "lognormal:2s,20s", c.Latency.String())
	assert.Equal(t, 4, c.MaxConcurrency)
	assert.Equal(t, 5, c.Chunks)
	assert.Equal(t, 0.1, c.FailRate)
	assert.Equal(t, 0.05, c.HangRate)
	assert.Equal(t, 100, c.CrashAfter)
	assert.Equal(t, int64(9), c.Seed)
	assert.Equal(t, 5*time.Second, c.DrainTimeout)

	fs2 := pflag.NewFlagSet("simagent", pflag.ContinueOnError)
	fs2.SetOutput(io.Discard)
	(&Config{}).BindFlags(fs2)
	err := fs2.Parse([]string{"--latency=lognormal:20s,2s"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "p99")
}

func TestBaseURL(t *testing.T) {
	addr := &net.TCPAddr{IP: net.IPv6unspecified, Port: 8080}
	assert.Equal(t, "http://127.0.0.1:8080", baseURL(":8080", addr))
	assert.Equal(t, "http://127.0.0.1:8080", baseURL("0.0.0.0:8080", addr))
	assert.Equal(t, "http://agent.local:8080", baseURL("agent.local:0", addr))
	assert.Equal(t, "http://127.0.0.1:8080", baseURL("", addr))
}

func TestTokens(t *testing.T) {
	for words, want := range map[int]int{0: 0, 1: 2, 2: 3, 3: 4, 4: 6, 6: 8} {
		assert.Equal(t, want, tokens(words), "words=%d", words)
	}
}

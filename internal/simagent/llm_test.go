package simagent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentplane/agentplane/internal/testutil"
)

// testLLM is a model with round numbers: 1ms per prompt token, 10ms per
// output token alone, +10% per other task in the batch, cached tokens 4×
// cheaper.
func testLLM() LLMConfig {
	l := DefaultLLMConfig()
	l.Enabled = true
	l.PrefillPerToken = time.Millisecond
	l.TPOT = 10 * time.Millisecond
	l.BatchSlope = 0.1
	l.CacheSpeedup = 4
	l.CacheTokens = 10_000
	return l
}

func TestLLMServiceTimeGrowsWithBatch(t *testing.T) {
	m := newLLMModel(testLLM(), "0")
	assert.Equal(t, 10*time.Millisecond, m.TPOT(1))
	assert.Equal(t, 10*time.Millisecond, m.TPOT(0), "an empty batch counts as the task alone")
	assert.Equal(t, 11*time.Millisecond, m.TPOT(2))
	assert.Equal(t, 17*time.Millisecond, m.TPOT(8))

	// 100 prompt tokens, 101 output tokens: the first comes with the prefill.
	ttft, total := m.ServiceTime(100, 0, 101, 1)
	assert.Equal(t, 100*time.Millisecond, ttft)
	assert.Equal(t, 100*time.Millisecond+100*10*time.Millisecond, total)
	_, at2 := m.ServiceTime(100, 0, 101, 2)
	_, at8 := m.ServiceTime(100, 0, 101, 8)
	assert.Equal(t, 100*time.Millisecond+100*11*time.Millisecond, at2)
	assert.Equal(t, 100*time.Millisecond+100*17*time.Millisecond, at8)
	assert.Greater(t, at8, at2, "a replica with 8 tasks at once is slower per task than one with 2")

	// One output token: the prefill is all.
	ttft, total = m.ServiceTime(7, 0, 1, 8)
	assert.Equal(t, ttft, total)

	// No slope: the batch does not matter.
	flat := testLLM()
	flat.BatchSlope = 0
	assert.Equal(t, 10*time.Millisecond, newLLMModel(flat, "0").TPOT(64))
}

func TestLLMCachedPrefillIsFasterByTheSpeedup(t *testing.T) {
	m := newLLMModel(testLLM(), "0")
	assert.Equal(t, 1000*time.Millisecond, m.Prefill(1000, 0))
	assert.Equal(t, 250*time.Millisecond, m.Prefill(0, 1000), "a fully cached prompt: 4× faster")
	assert.Equal(t, 100*time.Millisecond+225*time.Millisecond, m.Prefill(100, 900))

	none := testLLM()
	none.CacheSpeedup = 1
	assert.Equal(t, 1000*time.Millisecond, newLLMModel(none, "0").Prefill(0, 1000))
}

func TestLLMSpeedFactor(t *testing.T) {
	l := testLLM()
	l.Speed = SpeedFactors{1, 0.25}
	fast, slow := newLLMModel(l, "0"), newLLMModel(l, "1")
	assert.Equal(t, 1.0, fast.speed)
	assert.Equal(t, 0.25, slow.speed)
	_, tf := fast.ServiceTime(100, 50, 20, 3)
	ts, total := slow.ServiceTime(100, 50, 20, 3)
	assert.Equal(t, 4*tf, total, "a replica at 0.25 takes 4× as long")
	assert.Equal(t, 4*fast.Prefill(100, 50), ts)

	// Replica numbers wrap around the list; other ids hash to a fixed entry.
	s := SpeedFactors{1, 0.5, 0.25}
	assert.Equal(t, 1.0, s.For("3"))
	assert.Equal(t, 0.25, s.For("5"))
	assert.Equal(t, s.For("agent-7f9c-x2k"), s.For("agent-7f9c-x2k"))
	assert.Contains(t, []float64{1, 0.5, 0.25}, s.For("agent-7f9c-x2k"))
	assert.Equal(t, 1.0, SpeedFactors(nil).For("2"))
	assert.Equal(t, 0.3, SpeedFactors{0.3}.For("anything"))
}

func TestContextCacheLRU(t *testing.T) {
	c := newContextCache(100)
	c.put("a", 40)
	c.put("b", 40)
	_, ok := c.get("a") // a is now the most recently used
	require.True(t, ok)
	c.put("c", 40) // evicts b, the least recently used
	_, ok = c.get("b")
	assert.False(t, ok, "b was least recently used")
	n, ok := c.get("a")
	assert.True(t, ok)
	assert.Equal(t, 40, n)
	assert.Equal(t, 80, c.used)
	assert.Equal(t, int64(1), c.evictions)

	// A conversation grows: its entry is replaced, not added to.
	c.put("a", 60)
	assert.Equal(t, 100, c.used)
	assert.Equal(t, 2, c.len())
	c.put("d", 100) // needs the whole cache
	assert.Equal(t, 1, c.len())
	assert.Equal(t, int64(3), c.evictions)

	// Too big for the cache: not kept, and its older entry goes.
	c.put("d", 101)
	assert.Equal(t, 0, c.len())
	assert.Equal(t, 0, c.used)

	off := newContextCache(0)
	off.put("a", 1)
	_, ok = off.get("a")
	assert.False(t, ok, "a zero-sized cache holds nothing")
}

func TestLLMPlanContinuationHitsTheCache(t *testing.T) {
	g := newLLMEngine(testLLM(), "0")

	// Turn 1 of conversation c1: nothing cached.
	p1 := g.plan("c1", llmRequest{prompt: 200}, 50)
	assert.Equal(t, llmPlan{contextID: "c1", prompt: 200, output: 50}, p1)
	g.done(p1)

	// Turn 2 on the same replica: the 250 tokens of turn 1 are cached, the
	// conversation grows by this turn's prompt.
	p2 := g.plan("c1", llmRequest{prompt: 100}, 30)
	assert.Equal(t, llmPlan{contextID: "c1", hit: true, prompt: 350, cached: 250, output: 30}, p2)
	miss := g.model.Prefill(350, 0)
	hit := g.model.Prefill(p2.prompt-p2.cached, p2.cached)
	assert.Equal(t, 100*time.Millisecond+250*time.Millisecond/4, hit)
	assert.Equal(t, 350*time.Millisecond, miss)
	g.done(p2)

	// The same turn on a replica that never saw the conversation: the client
	// says how long it was (contextTokens from the last answer), all of it
	// is prefilled.
	other := newLLMEngine(testLLM(), "1")
	p3 := other.plan("c1", llmRequest{prompt: 100, history: 250, historyKnown: true}, 30)
	assert.Equal(t, llmPlan{contextID: "c1", prompt: 350, output: 30}, p3)

	s := g.snapshot()
	assert.Equal(t, int64(1), s.CacheHits)
	assert.Equal(t, int64(1), s.CacheMisses)
	assert.Equal(t, 1, s.CacheEntries)
	assert.Equal(t, 380, s.CacheTokens)
	assert.Equal(t, int64(550), s.PromptTokens)
	assert.Equal(t, int64(250), s.CachedTokens)
	assert.Equal(t, int64(80), s.OutputTokens)

	// Eviction: conversations that do not fit push c1 out.
	for _, id := range []string{"x", "y", "z"} {
		g.done(g.plan(id, llmRequest{prompt: 4000}, 10))
	}
	p4 := g.plan("c1", llmRequest{prompt: 10}, 10)
	assert.False(t, p4.hit, "c1 was evicted")
	assert.Equal(t, 10, p4.prompt, "without contextTokens a replica that lost the conversation only knows this turn")
	assert.Positive(t, g.snapshot().CacheEvictions)
}

func TestLLMDeterministicWithSeed(t *testing.T) {
	type step struct {
		fate    outcome
		plan    llmPlan
		service time.Duration
	}
	run := func(seed int64) []step {
		l := testLLM()
		var err error
		l.OutputTokens, err = ParseTokenCount("lognormal:20,400")
		require.NoError(t, err)
		e := newExecutor(Config{Seed: seed, Replica: "0", FailRate: 0.2, LLM: l}, slog.New(slog.DiscardHandler), newStats("a", "0"), nil)
		var out []step
		for i := range 40 {
			req := llmRequest{prompt: 10 + i}
			fate, n := e.drawLLM(true)
			p := e.llm.plan([]string{"c1", "c2", "c3"}[i%3], req, n)
			_, total := e.llm.model.ServiceTime(p.prompt-p.cached, p.cached, p.output, 1+i%4)
			e.llm.done(p)
			out = append(out, step{fate, p, total})
		}
		return out
	}
	first := run(42)
	assert.Equal(t, first, run(42), "same seed and requests, same service times")
	assert.NotEqual(t, first, run(43))
	var outputs []int
	for _, s := range first {
		outputs = append(outputs, s.plan.output)
	}
	assert.Greater(t, len(slicesCompact(outputs)), 10, "output tokens are drawn: %v", outputs)
}

func slicesCompact(v []int) map[int]bool {
	m := map[int]bool{}
	for _, x := range v {
		m[x] = true
	}
	return m
}

func TestReadLLMRequest(t *testing.T) {
	msg := a2a.NewMessage(a2a.MessageRoleUser, a2a.NewTextPart(strings.Repeat("x", 41)))
	req, err := readLLMRequest(msg, nil)
	require.NoError(t, err)
	assert.Equal(t, llmRequest{prompt: 11}, req, "41 characters / 4, rounded up")

	empty, err := readLLMRequest(a2a.NewMessage(a2a.MessageRoleUser), nil)
	require.NoError(t, err)
	assert.Equal(t, 1, empty.prompt)

	msg.Metadata = map[string]any{MetaPromptTokens: float64(5000), MetaMaxTokens: 64}
	req, err = readLLMRequest(msg, map[string]any{MetaMaxTokens: float64(1), MetaContextTokens: json.Number("1200")})
	require.NoError(t, err)
	assert.Equal(t, llmRequest{prompt: 5000, output: 64, history: 1200, historyKnown: true}, req, "the message wins over the request")

	for _, tt := range []struct {
		meta map[string]any
		want string
	}{
		{map[string]any{MetaPromptTokens: "12"}, "metadata promptTokens: want a whole number of tokens, got string"},
		{map[string]any{MetaPromptTokens: 1.5}, "metadata promptTokens: want a whole number"},
		{map[string]any{MetaPromptTokens: float64(-1)}, "[0,10000000], got -1"},
		{map[string]any{MetaMaxTokens: float64(0)}, "metadata maxTokens: must be >= 1, got 0"},
		{map[string]any{MetaContextTokens: 1e12}, "metadata contextTokens"},
		{map[string]any{MetaMaxTokens: nil}, "metadata maxTokens"},
	} {
		_, err := readLLMRequest(&a2a.Message{Metadata: tt.meta}, nil)
		require.Error(t, err, "%v", tt.meta)
		assert.Contains(t, err.Error(), tt.want)
	}
}

func TestParseTokenCount(t *testing.T) {
	for _, tt := range []struct{ in, want, wantErr string }{
		{in: "300", want: "300"},
		{in: " 1 ", want: "1"},
		{in: "lognormal:200,2000", want: "lognormal:200,2000"},
		{in: "lognormal: 5 , 5", want: "lognormal:5,5"},
		{in: "", wantErr: "empty"},
		{in: "0", wantErr: "outside [1,10000000]"},
		{in: "-3", wantErr: "outside"},
		{in: "1e3", wantErr: "invalid count"},
		{in: "20000000", wantErr: "outside"},
		{in: "lognormal:200", wantErr: "two counts"},
		{in: "lognormal:300,200", wantErr: "must be >= median"},
		{in: "lognormal:x,2", wantErr: "median: invalid count"},
		{in: "zipf:1,2", wantErr: "unknown distribution"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			c, err := ParseTokenCount(tt.in)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, c.String())
		})
	}
}

func TestParseSpeed(t *testing.T) {
	for _, tt := range []struct{ in, want, wantErr string }{
		{in: "1", want: "1"},
		{in: "0.25", want: "0.25"},
		{in: "1, 1,0.25", want: "1,1,0.25"},
		{in: "", wantErr: "empty speed"},
		{in: "0", wantErr: "outside [0.001,1000]"},
		{in: "-1", wantErr: "outside"},
		{in: "NaN", wantErr: "outside"},
		{in: "Inf", wantErr: "outside"},
		{in: "1,,2", wantErr: "factor 2: \"\" is not a number"},
		{in: "fast", wantErr: "not a number"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			s, err := ParseSpeed(tt.in)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, s.String())
		})
	}
}

func TestLLMFlags(t *testing.T) {
	var c Config
	fs := pflag.NewFlagSet("simagent", pflag.ContinueOnError)
	c.BindFlags(fs)
	for _, name := range []string{"llm-tpot", "llm-prefill-per-token", "llm-batch-slope", "llm-cache-speedup", "llm-cache-tokens", "llm-speed", "llm-output-tokens", "llm-stream-tokens"} {
		f := fs.Lookup(name)
		require.NotNil(t, f, name)
		assert.NotEmpty(t, f.DefValue, "%s shows its default", name)
	}
	assert.Equal(t, "17ms", fs.Lookup("llm-tpot").DefValue)
	require.NoError(t, fs.Parse([]string{"--llm", "--llm-tpot=20ms", "--llm-prefill-per-token=50us", "--llm-batch-slope=0.05",
		"--llm-cache-speedup=8", "--llm-cache-tokens=1000", "--llm-speed=1,0.25", "--llm-output-tokens=lognormal:100,1000",
		"--llm-stream-tokens=4", "--seed=3"}))
	want := LLMConfig{Enabled: true, PrefillPerToken: 50 * time.Microsecond, TPOT: 20 * time.Millisecond, BatchSlope: 0.05,
		CacheSpeedup: 8, CacheTokens: 1000, Speed: SpeedFactors{1, 0.25}, StreamTokens: 4}
	got := c.LLM
	assert.Equal(t, "lognormal:100,1000", got.OutputTokens.String())
	got.OutputTokens = nil
	assert.Equal(t, want, got)
	_, err := c.withDefaults(false)
	require.NoError(t, err)

	// Without --llm nothing changes.
	var plain Config
	fs = pflag.NewFlagSet("simagent", pflag.ContinueOnError)
	plain.BindFlags(fs)
	require.NoError(t, fs.Parse([]string{"--latency=200ms"}))
	assert.False(t, plain.LLM.Enabled)
	_, err = plain.withDefaults(false)
	require.NoError(t, err)

	// Bad values are refused when parsed, naming what is wrong.
	for _, tt := range []struct{ arg, want string }{
		{"--llm-speed=0", "outside [0.001,1000]"},
		{"--llm-speed=fast", "not a number"},
		{"--llm-output-tokens=0", "outside [1,10000000]"},
		{"--llm-tpot=fast", "invalid argument"},
		{"--llm-cache-tokens=many", "invalid argument"},
	} {
		fs := pflag.NewFlagSet("simagent", pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		(&Config{}).BindFlags(fs)
		err := fs.Parse([]string{"--llm", tt.arg})
		require.Error(t, err, tt.arg)
		assert.Contains(t, err.Error(), tt.want, tt.arg)
	}
}

func TestLLMConfigValidation(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"zero means defaults", func(c *Config) { c.LLM = LLMConfig{Enabled: true, CacheSpeedup: 1} }, ""},
		{"tpot", func(c *Config) { c.LLM.TPOT = -time.Millisecond }, "llm-tpot must be in [0,1m0s]"},
		{"prefill", func(c *Config) { c.LLM.PrefillPerToken = 2 * time.Second }, "llm-prefill-per-token"},
		{"slope", func(c *Config) { c.LLM.BatchSlope = -0.1 }, "llm-batch-slope must be in [0,100]"},
		{"speedup", func(c *Config) { c.LLM.CacheSpeedup = 0.5 }, "llm-cache-speedup must be in [1,"},
		{"cache", func(c *Config) { c.LLM.CacheTokens = -1 }, "llm-cache-tokens"},
		{"speed", func(c *Config) { c.LLM.Speed = SpeedFactors{2, 0} }, "llm-speed: factor 2: 0 is outside"},
		{"stream", func(c *Config) { c.LLM.StreamTokens = -1 }, "llm-stream-tokens"},
		{"latency", func(c *Config) { c.Latency = fixedLatency(time.Second) }, "latency 1s cannot be combined with llm"},
		{"chunks", func(c *Config) { c.Chunks = 3 }, "chunks 3 cannot be combined with llm"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{LLM: testLLM()}
			tt.mod(&c)
			_, err := c.withDefaults(false)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	// Off, the LLM parameters are not looked at.
	_, err := Config{LLM: LLMConfig{TPOT: -1}}.withDefaults(false)
	require.NoError(t, err)
}

// ---- through the real server -------------------------------------------------

func llmMsg(contextID string, meta map[string]any) *a2a.SendMessageRequest {
	m := a2a.NewMessage(a2a.MessageRoleUser, a2a.NewTextPart("plan the next step"))
	m.ContextID = contextID
	m.Metadata = meta
	return &a2a.SendMessageRequest{Message: m}
}

func llmMeta(t *testing.T, meta map[string]any) map[string]any {
	t.Helper()
	m, ok := meta[MetaLLM].(map[string]any)
	require.True(t, ok, "llm metadata missing: %v", meta)
	return m
}

func TestLLMStreamsTokensAndContinuationHits(t *testing.T) {
	l := testLLM()
	l.PrefillPerToken = 10 * time.Microsecond
	l.TPOT = time.Millisecond
	l.StreamTokens = 4
	a := startAgent(t, Config{LLM: l})
	c := a.client(t, "/", a2a.Version)

	// Turn 1, streamed: submitted, working, the first token alone, then 4 at a time.
	var events []a2a.Event
	for ev, err := range c.SendStreamingMessage(t.Context(), llmMsg("", map[string]any{MetaPromptTokens: 500, MetaMaxTokens: 10})) {
		require.NoError(t, err)
		events = append(events, ev)
	}
	require.Len(t, events, 2+1+3+1, "task, working, 1+4+4+1 tokens, completed")
	task := events[0].(*a2a.Task)
	contextID := task.ContextID
	first := events[2].(*a2a.TaskArtifactUpdateEvent)
	assert.Equal(t, "triage-1:", first.Artifact.Parts[0].Text(), "the first token comes alone, after the prefill")
	var text strings.Builder
	text.WriteString(first.Artifact.Parts[0].Text())
	for _, ev := range events[3:6] {
		au := ev.(*a2a.TaskArtifactUpdateEvent)
		assert.True(t, au.Append)
		text.WriteString(au.Artifact.Parts[0].Text())
	}
	assert.True(t, events[5].(*a2a.TaskArtifactUpdateEvent).LastChunk)
	assert.Len(t, strings.Fields(text.String()), 10, "one word per output token: %q", text.String())
	final := events[6].(*a2a.TaskStatusUpdateEvent)
	assert.Equal(t, a2a.TaskStateCompleted, final.Status.State)
	m := llmMeta(t, final.Metadata)
	assert.Equal(t, false, m["cacheHit"])
	assert.EqualValues(t, 500, m["promptTokens"])
	assert.EqualValues(t, 0, m["cachedTokens"])
	assert.EqualValues(t, 510, m["contextTokens"])
	assert.EqualValues(t, 5.0, m["prefillMs"])
	assert.EqualValues(t, 9.0, m["decodeMs"], "9 tokens alone at 1ms")
	assert.GreaterOrEqual(t, m["ttftMs"], 5.0)
	in, out := usage(t, final.Metadata)
	assert.Equal(t, 500.0, in)
	assert.Equal(t, 10.0, out)

	// Turn 2 of the same conversation, blocking: the 510 tokens are cached.
	res, err := c.SendMessage(t.Context(), llmMsg(contextID, map[string]any{MetaPromptTokens: 100, MetaMaxTokens: 1}))
	require.NoError(t, err)
	done := res.(*a2a.Task)
	assert.Equal(t, a2a.TaskStateCompleted, done.Status.State)
	m = llmMeta(t, done.Metadata)
	assert.Equal(t, true, m["cacheHit"])
	assert.EqualValues(t, 610, m["promptTokens"])
	assert.EqualValues(t, 510, m["cachedTokens"])
	assert.InDelta(t, 1.0+5.1/4, m["prefillMs"], 1e-9)
	assert.Equal(t, "triage-1:", artifactText(done))

	s := a.stats(t)
	require.NotNil(t, s.LLM)
	assert.Equal(t, int64(1), s.LLM.CacheHits)
	assert.Equal(t, int64(1), s.LLM.CacheMisses)
	assert.Equal(t, 611, s.LLM.CacheTokens)
	assert.Equal(t, int64(11), s.LLM.OutputTokens)
	assert.Equal(t, int64(2), s.Completed)

	// Bad metadata fails the task, saying why.
	res, err = c.SendMessage(t.Context(), llmMsg("", map[string]any{MetaMaxTokens: -5}))
	require.NoError(t, err)
	bad := res.(*a2a.Task)
	assert.Equal(t, a2a.TaskStateFailed, bad.Status.State)
	assert.Contains(t, bad.Status.Message.Parts[0].Text(), "metadata maxTokens")
}

func TestLLMBatchSeenThroughServer(t *testing.T) {
	l := testLLM()
	l.PrefillPerToken = 0
	l.TPOT = 10 * time.Millisecond
	l.StreamTokens = 5
	const n = 4
	a := startAgent(t, Config{LLM: l, MaxConcurrency: n})
	c := a.client(t, "/", a2a.Version)

	metas := make([]map[string]any, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := c.SendMessage(context.Background(), llmMsg("", map[string]any{MetaMaxTokens: 151}))
			if assert.NoError(t, err) {
				metas[i], _ = res.(*a2a.Task).Metadata[MetaLLM].(map[string]any)
			}
		})
	}
	// All four at once on the replica; each has at least 1.5s of decoding left.
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
		return testutil.Check(a.stats(t).InFlight == n, "waiting for %d tasks in flight", n)
	})
	wg.Wait()
	alone := newLLMModel(l, "1")
	for i, m := range metas {
		require.NotNil(t, m, "task %d", i)
		assert.EqualValues(t, n, m["maxBatch"], "task %d saw the whole batch", i)
		assert.Greater(t, m["meanBatch"], 1.0, "task %d", i)
		// The model's decode time is the batch-weighted sum, longer than alone.
		_, aloneTotal := alone.ServiceTime(0, 0, 151, 1)
		assert.Greater(t, m["decodeMs"], millis(aloneTotal), "task %d decoded slower than alone", i)
		assert.InDelta(t, 150*10*(1+0.1*(m["meanBatch"].(float64)-1)), m["decodeMs"], 1e-6, "task %d", i)
	}
}

// ---- fuzz --------------------------------------------------------------------

func FuzzParseTokenCount(f *testing.F) {
	for _, s := range []string{"300", "1", "10000000", "lognormal:200,2000", "lognormal:1,1", "0", "lognormal:3,1", "lognormal:,", "9999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseTokenCount(s)
		if err != nil {
			if c != nil {
				t.Fatalf("ParseTokenCount(%q) returned a value with error %v", s, err)
			}
			return
		}
		again, err := ParseTokenCount(c.String())
		if err != nil || !reflect.DeepEqual(c, again) {
			t.Fatalf("round trip of %q via %q: %#v, %v", s, c.String(), again, err)
		}
		r := rand.New(rand.NewPCG(1, 2))
		for range 20 {
			if n := c.Sample(r); n < 1 || n > maxTokens {
				t.Fatalf("%q sampled %d", s, n)
			}
		}
	})
}

func FuzzParseSpeed(f *testing.F) {
	for _, s := range []string{"1", "0.25", "1,1,0.25", "0", "1,,2", "NaN", "1e3", "0x1p-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpeed(s)
		if err != nil {
			if sp != nil {
				t.Fatalf("ParseSpeed(%q) returned a value with error %v", s, err)
			}
			return
		}
		again, err := ParseSpeed(sp.String())
		if err != nil || !reflect.DeepEqual(sp, again) {
			t.Fatalf("round trip of %q via %q: %v, %v", s, sp.String(), again, err)
		}
		if f := sp.For(s); !(f >= minSpeed && f <= maxSpeed) {
			t.Fatalf("For gave %v", f)
		}
		m := newLLMModel(LLMConfig{PrefillPerToken: maxPrefillPerToken, TPOT: maxTPOT, BatchSlope: maxBatchSlope, CacheSpeedup: 1, Speed: sp}, s)
		if _, total := m.ServiceTime(maxTokens, maxTokens, maxTokens, 1<<20); total < 0 {
			t.Fatalf("negative service time %v", total)
		}
	})
}

// FuzzReadLLMRequest feeds message metadata decoded from arbitrary JSON.
func FuzzReadLLMRequest(f *testing.F) {
	for _, s := range []string{`{"promptTokens":5000,"maxTokens":64}`, `{"contextTokens":1.5}`, `{"maxTokens":"7"}`, `{"promptTokens":-1}`, `{"promptTokens":1e300}`, `{}`, `{"maxTokens":null}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var meta map[string]any
		if json.Unmarshal([]byte(s), &meta) != nil {
			return
		}
		req, err := readLLMRequest(&a2a.Message{Metadata: meta}, meta)
		if err != nil {
			if req != (llmRequest{}) {
				t.Fatalf("value with error: %+v", req)
			}
			return
		}
		if req.prompt < 0 || req.prompt > maxTokens || req.output < 0 || req.output > maxTokens || req.history < 0 || req.history > maxTokens {
			t.Fatalf("out of range: %+v", req)
		}
		g := newLLMEngine(testLLM(), "0")
		p := g.plan("c", req, max(req.output, 1))
		if p.prompt < 0 || p.prompt > maxTokens || p.cached > p.prompt {
			t.Fatalf("bad plan %+v", p)
		}
	})
}

package simagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2asrv"
)

// Metadata keys read from a message (or, when the message lacks them, from
// the request) in --llm mode. Each value is a whole number.
const (
	// MetaPromptTokens is the size of this turn's prompt in tokens; without
	// it the prompt is the message's text length / 4.
	MetaPromptTokens = "promptTokens"
	// MetaMaxTokens is how many tokens to answer with; without it
	// --llm-output-tokens decides.
	MetaMaxTokens = "maxTokens"
	// MetaContextTokens is how long the conversation (contextId) was before
	// this turn: copy contextTokens from the previous answer's MetaLLM. A
	// replica that holds the conversation in its cache knows it anyway; one
	// that does not must prefill it all, and only knows how much from here.
	MetaContextTokens = "contextTokens"
)

// MetaLLM is the key of what the model did for a task, set on the final
// status-update event (and so on the task) in --llm mode: cacheHit,
// promptTokens (history included), cachedTokens, outputTokens,
// contextTokens (the conversation after this turn), speed, prefillMs and
// decodeMs (model time), ttftMs (measured from arrival, queueing included),
// meanBatch and maxBatch (batch sizes the decode saw).
const MetaLLM = "agentplane.io/llm"

// LLMStats are the --llm counters in GET /simagent/stats.
type LLMStats struct {
	Speed          float64 `json:"speed"`          // this replica's speed factor
	CacheHits      int64   `json:"cacheHits"`      // tasks whose conversation was in the cache
	CacheMisses    int64   `json:"cacheMisses"`    // tasks whose conversation was not (first turns included)
	CacheEvictions int64   `json:"cacheEvictions"` // conversations evicted to make room
	CacheEntries   int     `json:"cacheEntries"`   // conversations held now
	CacheTokens    int     `json:"cacheTokens"`    // tokens held now
	PromptTokens   int64   `json:"promptTokens"`   // prompt tokens of tasks started, history included
	CachedTokens   int64   `json:"cachedTokens"`   // of those, found in the cache
	OutputTokens   int64   `json:"outputTokens"`   // output tokens written
}

// llmRequest is what a message asks of the model. Zero output means "not
// said": --llm-output-tokens decides.
type llmRequest struct {
	prompt       int // this turn's tokens
	output       int
	history      int // conversation tokens before this turn, when historyKnown
	historyKnown bool
}

// readLLMRequest reads a message's token counts from its metadata (then the
// request's), falling back on its text for the prompt.
func readLLMRequest(msg *a2a.Message, reqMeta map[string]any) (llmRequest, error) {
	var msgMeta map[string]any
	if msg != nil {
		msgMeta = msg.Metadata
	}
	lookup := func(key string) (any, bool) {
		if v, ok := msgMeta[key]; ok {
			return v, true
		}
		v, ok := reqMeta[key]
		return v, ok
	}
	var req llmRequest
	var errs []error
	count := func(key string, lo int, dst *int) bool {
		v, ok := lookup(key)
		if !ok {
			return false
		}
		n, err := metaCount(v)
		if err == nil && n < lo {
			err = fmt.Errorf("must be >= %d, got %d", lo, n)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("metadata %s: %w", key, err))
			return false
		}
		*dst = n
		return true
	}
	if !count(MetaPromptTokens, 0, &req.prompt) {
		req.prompt = textTokens(msg)
	}
	count(MetaMaxTokens, 1, &req.output)
	req.historyKnown = count(MetaContextTokens, 0, &req.history)
	if err := errors.Join(errs...); err != nil {
		return llmRequest{}, err
	}
	return req, nil
}

// metaCount reads a token count from a metadata value: a JSON number (or a
// Go integer, in process) that is whole and in [0, 10000000].
func metaCount(v any) (int, error) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return 0, fmt.Errorf("%q is not a number", string(x))
		}
	default:
		return 0, fmt.Errorf("want a whole number of tokens, got %T", v)
	}
	if f != math.Trunc(f) || f < 0 || f > maxTokens { // NaN fails the first test
		return 0, fmt.Errorf("want a whole number of tokens in [0,%d], got %v", maxTokens, f)
	}
	return int(f), nil
}

// textTokens estimates a message's tokens as its text length / 4, at least 1.
func textTokens(m *a2a.Message) int {
	chars := 0
	if m != nil {
		for _, p := range m.Parts {
			if p != nil {
				chars += utf8.RuneCountInString(p.Text())
			}
		}
	}
	return min(max((chars+3)/4, 1), maxTokens)
}

// llmPlan is what the model will do for a task, decided when it starts.
type llmPlan struct {
	contextID string
	hit       bool
	prompt    int // history + this turn
	cached    int // of prompt, found in the cache
	output    int
}

// llmEngine is one replica's model state: the context cache, the number of
// tasks it works on (the batch) and the prefill lane, where prompts are
// prefilled one at a time.
type llmEngine struct {
	cfg     LLMConfig
	model   llmModel
	active  atomic.Int64
	prefill chan struct{} // capacity 1

	mu    sync.Mutex
	cache *contextCache
	st    LLMStats
}

func newLLMEngine(cfg LLMConfig, replica string) *llmEngine {
	m := newLLMModel(cfg, replica)
	return &llmEngine{
		cfg:     cfg,
		model:   m,
		prefill: make(chan struct{}, 1),
		cache:   newContextCache(cfg.CacheTokens),
		st:      LLMStats{Speed: m.speed},
	}
}

// plan looks the conversation up in the cache and decides the task's token
// counts. The conversation's history is what the message says it is, else
// what the cache holds, else nothing.
func (g *llmEngine) plan(contextID string, req llmRequest, output int) llmPlan {
	g.mu.Lock()
	defer g.mu.Unlock()
	held, hit := g.cache.get(contextID)
	history := req.history
	if !req.historyKnown {
		history = held
	}
	p := llmPlan{contextID: contextID, hit: hit, output: output,
		prompt: min(history+req.prompt, maxTokens), cached: min(held, history)}
	if hit {
		g.st.CacheHits++
	} else {
		g.st.CacheMisses++
	}
	g.st.PromptTokens += int64(p.prompt)
	g.st.CachedTokens += int64(p.cached)
	return p
}

// done records a completed task: the replica now holds the conversation with
// this turn's prompt and answer.
func (g *llmEngine) done(p llmPlan) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.st.OutputTokens += int64(p.output)
	g.cache.put(p.contextID, min(p.prompt+p.output, maxTokens))
}

func (g *llmEngine) snapshot() LLMStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.st
	s.CacheEvictions = g.cache.evictions
	s.CacheEntries = g.cache.len()
	s.CacheTokens = g.cache.used
	return s
}

// drawLLM decides a task's fate and, when the message did not say, its
// output tokens.
func (e *executor) drawLLM(drawOutput bool) (outcome, int) {
	e.rngMu.Lock()
	defer e.rngMu.Unlock()
	u := e.rng.Float64()
	out := 0
	if drawOutput {
		out = e.cfg.LLM.OutputTokens.Sample(e.rng)
	}
	switch {
	case u < e.cfg.HangRate:
		return outcomeHang, out
	case u < e.cfg.HangRate+e.cfg.FailRate:
		return outcomeFail, out
	default:
		return outcomeComplete, out
	}
}

// runLLM is run in --llm mode: prefill, then output tokens streamed as
// artifact updates, the first one alone so that a streaming client sees the
// time to first token.
func (e *executor) runLLM(ctx context.Context, execCtx *a2asrv.ExecutorContext, yield func(a2a.Event, error) bool) a2a.TaskState {
	arrived := time.Now()
	who := e.cfg.who()
	inWords := countWords(execCtx.Message)
	req, reqErr := readLLMRequest(execCtx.Message, execCtx.Metadata)
	fate, output := e.drawLLM(req.output == 0)
	if req.output > 0 {
		output = req.output
	}

	if execCtx.StoredTask == nil {
		task := a2a.NewSubmittedTask(execCtx, execCtx.Message)
		task.SetMeta(MetaReplica, who)
		if !yield(task, nil) {
			return a2a.TaskStateUnspecified
		}
	}
	if reqErr != nil {
		msg := a2a.NewMessageForTask(a2a.MessageRoleAgent, execCtx, a2a.NewTextPart(who+": "+reqErr.Error()))
		ev := a2a.NewStatusUpdateEvent(execCtx, a2a.TaskStateFailed, msg)
		setFinalMeta(ev, who, inWords, 0)
		yield(ev, nil)
		return a2a.TaskStateFailed
	}

	e.stats.waitBegin()
	acquired, why := e.acquire(ctx)
	e.stats.waitEnd(acquired)
	if !acquired {
		return e.abort(ctx, execCtx, why, who, inWords, yield)
	}
	defer e.release()
	g := e.llm
	g.active.Add(1)
	defer g.active.Add(-1)

	working := a2a.NewStatusUpdateEvent(execCtx, a2a.TaskStateWorking, nil)
	working.SetMeta(MetaReplica, who)
	if !yield(working, nil) {
		return a2a.TaskStateUnspecified
	}
	if fate == outcomeHang {
		return e.abort(ctx, execCtx, e.hang(ctx), who, inWords, yield)
	}

	p := g.plan(execCtx.ContextID, req, output)
	prefill := g.model.Prefill(p.prompt-p.cached, p.cached)
	if why := e.prefillLane(ctx, prefill); why != "" {
		return e.abort(ctx, execCtx, why, who, inWords, yield)
	}
	if fate == outcomeFail {
		msg := a2a.NewMessageForTask(a2a.MessageRoleAgent, execCtx, a2a.NewTextPart(who+": simulated failure"))
		ev := a2a.NewStatusUpdateEvent(execCtx, a2a.TaskStateFailed, msg)
		setFinalMeta(ev, who, inWords, 0)
		yield(ev, nil)
		return a2a.TaskStateFailed
	}

	// The first token comes with the prefill.
	first := a2a.NewArtifactEvent(execCtx, a2a.NewTextPart(who+":"))
	first.Artifact.Name = "answer"
	first.LastChunk = p.output == 1
	if !yield(first, nil) {
		return a2a.TaskStateUnspecified
	}
	ttft := time.Since(arrived)

	// Then the rest, StreamTokens at a time; the batch is read before each
	// group and the deadlines add up from the first token, so that timer
	// overshoot does not accumulate.
	var decode time.Duration
	var batchSum, maxBatch int64
	next := time.Now()
	for written := 1; written < p.output; {
		n := min(e.cfg.LLM.StreamTokens, p.output-written)
		batch := g.active.Load()
		step := scaleDuration(g.model.TPOT(int(batch)), float64(n))
		decode = satAdd(decode, step)
		batchSum += batch * int64(n)
		maxBatch = max(maxBatch, batch)
		next = next.Add(step)
		if why := e.sleep(ctx, time.Until(next)); why != "" {
			return e.abort(ctx, execCtx, why, who, inWords, yield)
		}
		written += n
		ev := a2a.NewArtifactUpdateEvent(execCtx, first.Artifact.ID, a2a.NewTextPart(strings.Repeat(" tok", n)))
		ev.LastChunk = written == p.output
		if !yield(ev, nil) {
			return a2a.TaskStateUnspecified
		}
	}
	g.done(p)

	meanBatch := 0.0
	if p.output > 1 {
		meanBatch = float64(batchSum) / float64(p.output-1)
	}
	done := a2a.NewStatusUpdateEvent(execCtx, a2a.TaskStateCompleted, nil)
	done.SetMeta(MetaReplica, who)
	done.SetMeta(MetaUsage, map[string]any{"inputTokens": p.prompt, "outputTokens": p.output})
	done.SetMeta(MetaLLM, map[string]any{
		"cacheHit":      p.hit,
		"promptTokens":  p.prompt,
		"cachedTokens":  p.cached,
		"outputTokens":  p.output,
		"contextTokens": min(p.prompt+p.output, maxTokens),
		"speed":         g.model.speed,
		"prefillMs":     millis(prefill),
		"decodeMs":      millis(decode),
		"ttftMs":        millis(ttft),
		"meanBatch":     meanBatch,
		"maxBatch":      maxBatch,
	})
	yield(done, nil)
	return a2a.TaskStateCompleted
}

// prefillLane waits for the replica's prefill lane, prefills for d and frees
// the lane; it returns a reason when interrupted, "" otherwise.
func (e *executor) prefillLane(ctx context.Context, d time.Duration) string {
	select {
	case e.llm.prefill <- struct{}{}:
	case <-ctx.Done():
		return reasonCanceled
	case <-e.stop:
		return reasonShutdown
	}
	defer func() { <-e.llm.prefill }()
	return e.sleep(ctx, d)
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

package simagent

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2asrv"
)

// Metadata keys set on the task (and on the final status-update event).
const (
	MetaReplica = "agentplane.io/replica"
	MetaUsage   = "agentplane.io/usage"
)

// outcome of a task, decided when it arrives.
type outcome int

const (
	outcomeComplete outcome = iota
	outcomeFail
	outcomeHang
)

// executor implements a2asrv.AgentExecutor for the simulated agent.
type executor struct {
	cfg    Config
	logger *slog.Logger
	stats  *stats

	// stop is closed when the drain deadline has passed: every task still
	// running (including hanging ones) ends as failed.
	stop <-chan struct{}

	// slots is a counting semaphore; nil means unlimited concurrency.
	slots chan struct{}

	rngMu sync.Mutex
	rng   *rand.Rand

	// llm is the model's state in --llm mode; nil otherwise.
	llm *llmEngine
}

var (
	_ a2asrv.AgentExecutor   = (*executor)(nil)
	_ a2asrv.CallInterceptor = clientInterceptor{}
)

func newExecutor(cfg Config, logger *slog.Logger, st *stats, stop <-chan struct{}) *executor {
	seed := uint64(cfg.Seed)
	if seed == 0 {
		seed = rand.Uint64()
	}
	e := &executor{
		cfg:    cfg,
		logger: logger,
		stats:  st,
		stop:   stop,
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
	if cfg.MaxConcurrency > 0 {
		e.slots = make(chan struct{}, cfg.MaxConcurrency)
	}
	if cfg.LLM.Enabled {
		e.llm = newLLMEngine(cfg.LLM, cfg.Replica)
	}
	return e
}

// draw decides a task's fate and service time.
func (e *executor) draw() (outcome, time.Duration) {
	e.rngMu.Lock()
	defer e.rngMu.Unlock()
	u := e.rng.Float64()
	d := e.cfg.Latency.Sample(e.rng)
	switch {
	case u < e.cfg.HangRate:
		return outcomeHang, d
	case u < e.cfg.HangRate+e.cfg.FailRate:
		return outcomeFail, d
	default:
		return outcomeComplete, d
	}
}

// Execute implements a2asrv.AgentExecutor.
func (e *executor) Execute(ctx context.Context, execCtx *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		n := e.stats.accept()
		if e.cfg.CrashAfter > 0 && n > int64(e.cfg.CrashAfter) {
			e.logger.Error("simagent simulated crash", "agent", e.cfg.Name, "replica", e.cfg.Replica, "accepted", n-1, "crashAfter", e.cfg.CrashAfter)
			e.cfg.exit(3)
			// Only reached when exit is injected (tests).
			e.stats.finish(a2a.TaskStateFailed)
			yield(nil, errors.New("simagent: simulated crash"))
			return
		}
		state := e.run(ctx, execCtx, yield)
		e.stats.finish(state)
	}
}

// run emits the task's events and returns the terminal state reached
// (TaskStateUnspecified when the execution was abandoned).
func (e *executor) run(ctx context.Context, execCtx *a2asrv.ExecutorContext, yield func(a2a.Event, error) bool) a2a.TaskState {
	if e.llm != nil {
		return e.runLLM(ctx, execCtx, yield)
	}
	who := e.cfg.who()
	inWords := countWords(execCtx.Message)
	fate, latency := e.draw()

	if execCtx.StoredTask == nil {
		task := a2a.NewSubmittedTask(execCtx, execCtx.Message)
		task.SetMeta(MetaReplica, who)
		if !yield(task, nil) {
			return a2a.TaskStateUnspecified
		}
	}

	// Wait for a slot like a request queued at a model server.
	e.stats.waitBegin()
	acquired, why := e.acquire(ctx)
	e.stats.waitEnd(acquired)
	if !acquired {
		return e.abort(ctx, execCtx, why, who, inWords, yield)
	}
	defer e.release()

	working := a2a.NewStatusUpdateEvent(execCtx, a2a.TaskStateWorking, nil)
	working.SetMeta(MetaReplica, who)
	if !yield(working, nil) {
		return a2a.TaskStateUnspecified
	}

	switch fate {
	case outcomeHang:
		why := e.hang(ctx)
		return e.abort(ctx, execCtx, why, who, inWords, yield)

	case outcomeFail:
		if why := e.sleep(ctx, latency); why != "" {
			return e.abort(ctx, execCtx, why, who, inWords, yield)
		}
		msg := a2a.NewMessageForTask(a2a.MessageRoleAgent, execCtx, a2a.NewTextPart(who+": simulated failure"))
		ev := a2a.NewStatusUpdateEvent(execCtx, a2a.TaskStateFailed, msg)
		setFinalMeta(ev, who, inWords, 0)
		yield(ev, nil)
		return a2a.TaskStateFailed
	}

	// Complete: stream the answer in chunks, spreading the latency over them.
	texts := chunkTexts(who, inWords, e.cfg.Chunks)
	var artifactID a2a.ArtifactID
	outWords := 0
	for i, text := range texts {
		step := latency / time.Duration(len(texts))
		if i == len(texts)-1 {
			step = latency - step*time.Duration(len(texts)-1)
		}
		if why := e.sleep(ctx, step); why != "" {
			return e.abort(ctx, execCtx, why, who, inWords, yield)
		}
		var ev *a2a.TaskArtifactUpdateEvent
		if artifactID == "" {
			ev = a2a.NewArtifactEvent(execCtx, a2a.NewTextPart(text))
			ev.Artifact.Name = "answer"
			artifactID = ev.Artifact.ID
		} else {
			ev = a2a.NewArtifactUpdateEvent(execCtx, artifactID, a2a.NewTextPart(text))
		}
		ev.LastChunk = i == len(texts)-1
		outWords += len(strings.Fields(text))
		if !yield(ev, nil) {
			return a2a.TaskStateUnspecified
		}
	}
	done := a2a.NewStatusUpdateEvent(execCtx, a2a.TaskStateCompleted, nil)
	setFinalMeta(done, who, inWords, outWords)
	yield(done, nil)
	return a2a.TaskStateCompleted
}

// Reasons a task stops early.
const (
	reasonCanceled   = "canceled"    // execution context ended (CancelTask)
	reasonClientGone = "client-gone" // the blocking/streaming client disconnected
	reasonShutdown   = "shutdown"    // drain deadline passed
)

// abort ends a task that was interrupted for reason why.
func (e *executor) abort(ctx context.Context, execCtx *a2asrv.ExecutorContext, why, who string, inWords int, yield func(a2a.Event, error) bool) a2a.TaskState {
	if ctx.Err() != nil || why == reasonCanceled {
		// The SDK stopped consuming (task canceled): nothing more to emit.
		return a2a.TaskStateCanceled
	}
	state, text := a2a.TaskStateFailed, who+": agent shutting down"
	if why == reasonClientGone {
		state, text = a2a.TaskStateCanceled, who+": client went away"
	}
	msg := a2a.NewMessageForTask(a2a.MessageRoleAgent, execCtx, a2a.NewTextPart(text))
	ev := a2a.NewStatusUpdateEvent(execCtx, state, msg)
	setFinalMeta(ev, who, inWords, 0)
	yield(ev, nil)
	return state
}

func (e *executor) acquire(ctx context.Context) (bool, string) {
	if e.slots == nil {
		return true, ""
	}
	select {
	case e.slots <- struct{}{}:
		return true, ""
	case <-ctx.Done():
		return false, reasonCanceled
	case <-e.stop:
		return false, reasonShutdown
	}
}

func (e *executor) release() {
	if e.slots != nil {
		<-e.slots
	}
	e.stats.release()
}

// sleep waits d; it returns a reason when interrupted, "" otherwise.
func (e *executor) sleep(ctx context.Context, d time.Duration) string {
	if d <= 0 {
		select {
		case <-e.stop:
			return reasonShutdown
		default:
			return ""
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return ""
	case <-ctx.Done():
		return reasonCanceled
	case <-e.stop:
		return reasonShutdown
	}
}

// hang blocks until the task is canceled, the client that is waiting for it
// goes away, or the agent shuts down.
func (e *executor) hang(ctx context.Context) string {
	var clientDone <-chan struct{}
	if c, ok := ctx.Value(clientCtxKey{}).(context.Context); ok {
		clientDone = c.Done()
	}
	select {
	case <-ctx.Done():
		return reasonCanceled
	case <-clientDone:
		return reasonClientGone
	case <-e.stop:
		return reasonShutdown
	}
}

// Cancel implements a2asrv.AgentExecutor.
func (e *executor) Cancel(ctx context.Context, execCtx *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		ev := a2a.NewStatusUpdateEvent(execCtx, a2a.TaskStateCanceled, nil)
		ev.SetMeta(MetaReplica, e.cfg.who())
		yield(ev, nil)
	}
}

// clientCtxKey carries the context of a request whose client waits for the
// task's result (blocking send or stream). The SDK runs executions in a
// context detached from the request, but values survive the detaching.
type clientCtxKey struct{}

// clientInterceptor remembers the request context of attached clients so a
// hanging task can end when its client goes away.
type clientInterceptor struct {
	a2asrv.PassthroughCallInterceptor
}

func (clientInterceptor) Before(ctx context.Context, _ *a2asrv.CallContext, req *a2asrv.Request) (context.Context, any, error) {
	if r, ok := req.Payload.(*a2a.SendMessageRequest); ok && r != nil {
		if r.Config == nil || !r.Config.ReturnImmediately {
			ctx = context.WithValue(ctx, clientCtxKey{}, ctx)
		}
	}
	return ctx, nil, nil
}

func setFinalMeta(ev *a2a.TaskStatusUpdateEvent, who string, inWords, outWords int) {
	ev.SetMeta(MetaReplica, who)
	ev.SetMeta(MetaUsage, map[string]any{
		"inputTokens":  tokens(inWords),
		"outputTokens": tokens(outWords),
	})
}

// tokens approximates a token count as ceil(words*4/3).
func tokens(words int) int { return (words*4 + 2) / 3 }

func countWords(m *a2a.Message) int {
	if m == nil {
		return 0
	}
	n := 0
	for _, p := range m.Parts {
		if p == nil {
			continue
		}
		n += len(strings.Fields(p.Text()))
	}
	return n
}

// chunkTexts returns the artifact chunks. The last one is the summary
// "<who>: processed N words"; earlier ones are short progress lines.
func chunkTexts(who string, inWords, chunks int) []string {
	out := make([]string, 0, chunks)
	for i := 1; i < chunks; i++ {
		out = append(out, fmt.Sprintf("%s: chunk %d/%d\n", who, i, chunks))
	}
	return append(out, fmt.Sprintf("%s: processed %d words", who, inWords))
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// llmTurn is one streamed request of an LLM scenario.
type llmTurn struct {
	id            int
	contextID     string // "" for single-turn tasks
	promptTokens  int
	maxTokens     int
	contextTokens int    // the conversation before this turn (from the previous answer)
	class         string // urgent, normal or batch; "" without classes
	target        string // the gateway takes the class from params.metadata, the proxies from X-Priority
}

// streamResult is what the client read from one answer.
type streamResult struct {
	sample
	contextTokens int // from the answer's agentplane.io/llm, for the next turn
}

// body is the SendStreamingMessage JSON-RPC request of t.
func (t llmTurn) body(runID string) []byte {
	meta := map[string]any{"promptTokens": t.promptTokens, "maxTokens": t.maxTokens}
	if t.contextTokens > 0 {
		meta["contextTokens"] = t.contextTokens
	}
	msg := map[string]any{"messageId": fmt.Sprintf("bench-%s-%d", runID, t.id), "role": "ROLE_USER",
		"parts": []any{map[string]any{"text": "patient reports chest pain since this morning"}}, "metadata": meta}
	if t.contextID != "" {
		msg["contextId"] = t.contextID
	}
	params := map[string]any{"message": msg}
	if t.class != "" && t.target == "agentplane" {
		params["metadata"] = map[string]any{"agentplane.io/priority": t.class}
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": t.id, "method": "SendStreamingMessage", "params": params})
	return b
}

// lognormalInt draws a lognormal whole number with this median and p99, at least 1.
func lognormalInt(r *rand.Rand, median, p99 float64) int {
	sigma := math.Log(p99/median) / 2.3263
	return max(1, int(math.Round(median*math.Exp(sigma*r.NormFloat64()))))
}

// drawSizes draws a prompt and an answer size for request key: the same key gives the same
// sizes for every target.
func drawSizes(seed int, key uint64) (prompt, output int) {
	r := rand.New(rand.NewPCG(uint64(seed), key))
	return lognormalInt(r, promptMedian, promptP99), lognormalInt(r, outputMedian, outputP99)
}

// sendStream does one SendStreamingMessage and reads its events: TTFT is when the first
// artifact-update event carrying text arrived, latency when the final status did.
func sendStream(ctx context.Context, c *http.Client, url, runID string, t llmTurn) streamResult {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(t.body(runID)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	if t.contextID != "" {
		req.Header.Set("X-Context-Id", t.contextID)
	}
	if t.class != "" {
		req.Header.Set("X-Priority", t.class)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return streamResult{sample: classify(err, time.Since(start))}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		d := time.Since(start)
		if (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && resp.Header.Get("Retry-After") != "" {
			return streamResult{sample: sample{latency: d, out: rejected, why: fmt.Sprintf("HTTP %d + Retry-After", resp.StatusCode)}}
		}
		return streamResult{sample: sample{latency: d, out: refused, why: fmt.Sprintf("HTTP %d (%s)", resp.StatusCode, resp.Header.Get("Content-Type"))}}
	}
	var res streamResult
	res.hit = -1
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line, found := bytes.CutPrefix(sc.Bytes(), []byte("data:"))
		if !found {
			continue
		}
		var ev struct {
			Error  json.RawMessage `json:"error"`
			Result struct {
				ArtifactUpdate *struct {
					Artifact struct {
						Parts []struct {
							Text string `json:"text"`
						} `json:"parts"`
					} `json:"artifact"`
				} `json:"artifactUpdate"`
				StatusUpdate *taskStatus `json:"statusUpdate"`
				Task         *taskStatus `json:"task"`
			} `json:"result"`
		}
		if err := json.Unmarshal(bytes.TrimSpace(line), &ev); err != nil {
			continue
		}
		now := time.Since(start)
		if len(ev.Error) > 0 && string(ev.Error) != "null" {
			res.latency, res.out, res.why = now, refused, "JSON-RPC error"
			return res
		}
		if a := ev.Result.ArtifactUpdate; a != nil && res.ttft == 0 {
			for _, p := range a.Artifact.Parts {
				if p.Text != "" {
					res.ttft = now
					break
				}
			}
		}
		st := ev.Result.StatusUpdate
		if st == nil {
			st = ev.Result.Task
		}
		if st == nil {
			continue
		}
		switch st.Status.State {
		case "TASK_STATE_COMPLETED":
			res.latency, res.out = now, ok
			if m := st.Metadata.LLM; m != nil {
				res.contextTokens = m.ContextTokens
				res.hit = 0
				if m.CacheHit {
					res.hit = 1
				}
			}
			return res
		case "TASK_STATE_FAILED", "TASK_STATE_REJECTED", "TASK_STATE_CANCELED":
			res.latency, res.out, res.why = now, refused, "task "+strings.ToLower(strings.TrimPrefix(st.Status.State, "TASK_STATE_"))
			return res
		}
	}
	d := time.Since(start)
	if err := sc.Err(); err != nil {
		s := classify(err, d)
		res.sample.latency, res.out, res.why = s.latency, s.out, s.why
		return res
	}
	res.latency, res.out, res.why = d, lost, "stream ended before the task did"
	return res
}

type taskStatus struct {
	Status struct {
		State string `json:"state"`
	} `json:"status"`
	Metadata struct {
		LLM *struct {
			CacheHit      bool `json:"cacheHit"`
			ContextTokens int  `json:"contextTokens"`
		} `json:"agentplane.io/llm"`
	} `json:"metadata"`
}

var classes = []struct {
	name  string
	share float64
}{{"urgent", 0.10}, {"normal", 0.60}, {"batch", 0.30}}

// classOf draws request id's class, the same for every target.
func classOf(seed, id int) string {
	u := rand.New(rand.NewPCG(uint64(seed), uint64(id)+1<<40)).Float64()
	for _, c := range classes {
		if u < c.share {
			return c.name
		}
		u -= c.share
	}
	return classes[len(classes)-1].name
}

// llmSingle streams single-turn tasks with Poisson arrivals (mixed, priority).
func llmSingle(ctx context.Context, c *http.Client, d *deployment, sc scenario, cfg config) []sample {
	return openLoopFunc(ctx, sc, cfg, func(id int) sample {
		p, o := drawSizes(cfg.seed, uint64(id))
		t := llmTurn{id: id, promptTokens: p, maxTokens: o, target: d.target}
		if sc.classes {
			t.class = classOf(cfg.seed, id)
		}
		s := sendStream(ctx, c, d.url(), sc.name, t).sample
		s.class, s.ideal = t.class, idealTime(t)
		return s
	}, nil)
}

// conversations starts conversations with Poisson arrivals, each of convTurnsMin..Max turns
// with exponential think times between them; every turn sends the conversation's contextId
// (and X-Context-Id) and the contextTokens of the previous answer. At most convUsers run at
// once; an arrival beyond that is counted overflown.
func conversations(ctx context.Context, c *http.Client, d *deployment, sc scenario, cfg config) []sample {
	ccfg := cfg
	ccfg.maxInflight = cfg.convUsers
	var mu sync.Mutex
	var extra []sample
	first := openLoopFunc(ctx, sc, ccfg, func(id int) sample {
		r := rand.New(rand.NewPCG(uint64(cfg.seed), uint64(id)+1<<41))
		turns := cfg.convTurnsMin + r.IntN(cfg.convTurnsMax-cfg.convTurnsMin+1)
		ctxID := fmt.Sprintf("conv-%d-%d", cfg.seed, id)
		var mine []sample
		contextTokens := 0
		var firstS sample
		began := time.Now()
		for k := range turns {
			p, o := drawSizes(cfg.seed, uint64(id)<<8|uint64(k))
			think := time.Duration(r.ExpFloat64() * float64(cfg.think))
			if k > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(think):
				}
				if ctx.Err() != nil {
					break
				}
			}
			t := llmTurn{id: id<<8 | k, contextID: ctxID, promptTokens: p, maxTokens: o, contextTokens: contextTokens, target: d.target}
			res := sendStream(ctx, c, d.url(), sc.name, t)
			res.turn, res.ideal = k+1, idealTime(t)
			if k == 0 {
				firstS = res.sample
			} else {
				res.sample.at = time.Since(began) // made absolute below
				mine = append(mine, res.sample)
			}
			if res.out != ok {
				break // the user gives up on this conversation
			}
			contextTokens = res.contextTokens
		}
		// Later turns' "at" is relative to the conversation's start; openLoopFunc sets the
		// first's, and the others are shifted by it after the loop.
		mu.Lock()
		for i := range mine {
			mine[i].conv = id + 1
		}
		extra = append(extra, mine...)
		mu.Unlock()
		firstS.conv = id + 1
		return firstS
	}, nil)
	start := map[int]time.Duration{}
	for _, s := range first {
		start[s.conv] = s.at
	}
	for i := range extra {
		extra[i].at += start[extra[i].conv]
	}
	return append(first, extra...)
}

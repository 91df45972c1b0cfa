package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// outcome of one request, from the client's side.
type outcome int

const (
	ok        outcome = iota // HTTP 200 with a completed task
	refused                  // explicit failure: connection refused, an HTTP or JSON-RPC error, a failed task
	lost                     // no answer: the connection broke after the request was sent, or the client timed out
	overflown                // not sent: the client's in-flight bound was reached
	rejected                 // refused early, before any work: HTTP 429/503 with Retry-After
)

type sample struct {
	at      time.Duration // when the request was sent, from the start of the run
	latency time.Duration
	out     outcome
	why     string // for refused and lost

	// Streaming (LLM) requests only.
	ttft  time.Duration // first artifact-update event with text; 0 when none came
	hit   int8          // the answer's agentplane.io/llm cacheHit: 1, 0, or -1 when unknown
	class string        // priority class, when the scenario has classes
	turn  int           // turn of a conversation, from 1; 0 for single-turn tasks
	conv  int           // conversation number + 1; 0 for single-turn tasks
	ideal time.Duration // the task's time with nothing in its way (idealTime)
}

var bodyTemplate = `{"jsonrpc":"2.0","id":%d,"method":"SendMessage","params":{"message":{"messageId":"bench-%s-%d","role":"ROLE_USER","parts":[{"text":"patient reports chest pain since this morning"}]}}}`

func newClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConns:        8192,
			MaxIdleConnsPerHost: 8192,
			IdleConnTimeout:     60 * time.Second,
			DisableCompression:  true,
		},
	}
}

// send does one request and classifies its outcome.
func send(ctx context.Context, c *http.Client, url, runID string, id int) sample {
	body := fmt.Sprintf(bodyTemplate, id, runID, id)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return classify(err, time.Since(start))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		return classify(err, d)
	}
	switch {
	case (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && resp.Header.Get("Retry-After") != "":
		return sample{latency: d, out: rejected, why: fmt.Sprintf("HTTP %d + Retry-After", resp.StatusCode)}
	case resp.StatusCode != http.StatusOK:
		return sample{latency: d, out: refused, why: fmt.Sprintf("HTTP %d", resp.StatusCode)}
	case bytes.Contains(b, []byte(`"error"`)):
		return sample{latency: d, out: refused, why: "JSON-RPC error"}
	case !bytes.Contains(b, []byte("TASK_STATE_COMPLETED")):
		return sample{latency: d, out: refused, why: "task not completed"}
	}
	return sample{latency: d, out: ok}
}

func classify(err error, d time.Duration) sample {
	var ne net.Error
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return sample{latency: d, out: refused, why: "connection refused"}
	case errors.As(err, &ne) && ne.Timeout():
		return sample{latency: d, out: lost, why: "client timeout"}
	case errors.Is(err, context.Canceled):
		return sample{latency: d, out: lost, why: "canceled"}
	}
	return sample{latency: d, out: lost, why: "connection dropped"}
}

// warm sends n requests at once and waits for them, so connections and the gateway's card
// cache exist before measuring.
func warm(ctx context.Context, c *http.Client, url func() string, n int) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { send(ctx, c, url(), "warm", i) })
	}
	wg.Wait()
}

// openLoop sends requests with Poisson arrivals at sc.rate(t) for sc.duration, each in its own
// goroutine whatever happens to the others, and waits for the last one. At sc.kill it calls
// kill once.
func openLoop(ctx context.Context, c *http.Client, d *deployment, sc scenario, cfg config, kill func()) []sample {
	return openLoopFunc(ctx, sc, cfg, func(id int) sample { return send(ctx, c, d.url(), sc.name, id) }, kill)
}

// openLoopFunc is openLoop with do as one request: it runs do(id) at every arrival.
func openLoopFunc(ctx context.Context, sc scenario, cfg config, do func(id int) sample, kill func()) []sample {
	rnd := rand.New(rand.NewPCG(uint64(cfg.seed), 99))
	var mu sync.Mutex
	var out []sample
	var wg sync.WaitGroup
	inflight := make(chan struct{}, cfg.maxInflight)
	start := time.Now()
	if sc.kill > 0 && kill != nil {
		t := time.AfterFunc(sc.kill, kill)
		defer t.Stop()
	}
	next := time.Duration(0)
	for id := 0; ; id++ {
		rate := sc.rate(next)
		next += time.Duration(rnd.ExpFloat64() / rate * float64(time.Second))
		if next >= sc.duration {
			break
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return out
		case <-time.After(time.Until(start.Add(next))):
		}
		at := time.Since(start)
		select {
		case inflight <- struct{}{}:
		default:
			mu.Lock()
			out = append(out, sample{at: at, out: overflown, why: "client in-flight bound"})
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			s := do(id)
			<-inflight
			s.at = at
			mu.Lock()
			out = append(out, s)
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// closedLoop runs n workers that each send the next request as soon as the last one answered,
// for dur.
func closedLoop(ctx context.Context, c *http.Client, d *deployment, n int, dur time.Duration, runID string) []sample {
	var mu sync.Mutex
	var out []sample
	var wg sync.WaitGroup
	start := time.Now()
	for w := range n {
		wg.Go(func() {
			var mine []sample
			for i := 0; time.Since(start) < dur && ctx.Err() == nil; i++ {
				at := time.Since(start)
				s := send(ctx, c, d.url(), runID, w*1_000_000+i)
				s.at = at
				mine = append(mine, s)
			}
			mu.Lock()
			out = append(out, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// summary of one target in one scenario.
type summary struct {
	Target      string             `json:"target"`
	Sent        int                `json:"sent"`
	OK          int                `json:"ok"`
	Errors      int                `json:"errors"`
	Lost        int                `json:"lost"`
	Overflown   int                `json:"overflown,omitempty"`
	Why         map[string]int     `json:"why,omitempty"`
	P50         time.Duration      `json:"p50"`
	P90         time.Duration      `json:"p90"`
	P99         time.Duration      `json:"p99"`
	P999        time.Duration      `json:"p999"`
	Mean        time.Duration      `json:"mean"`
	Throughput  float64            `json:"throughput"`
	CPUSeconds  float64            `json:"cpuSeconds"`
	CPUPerReq   time.Duration      `json:"cpuPerRequest"`
	Restarts    int                `json:"restarts"`
	Killed      string             `json:"killed,omitempty"`
	Latencies   []time.Duration    `json:"-"`
	PerSecondOK map[int]int        `json:"-"`
	Extra       map[string]float64 `json:"extra,omitempty"`
	// sitekill: tasks in flight on the lost site, how many of them completed anyway, after how
	// long the first and the last did (from the kill), and requests sent again (at-least-once).
	Orphaned     int           `json:"orphaned,omitempty"`
	OrphansDone  int           `json:"orphansCompleted,omitempty"`
	Takeover     time.Duration `json:"firstOrphanCompleted,omitempty"`
	TakeoverLast time.Duration `json:"lastOrphanCompleted,omitempty"`
	Resent       int           `json:"resent,omitempty"`

	// Streaming (LLM) scenarios: refused early with Retry-After (not counted in Errors), time to
	// first token over completed tasks, cache hits among turns > 1, rows per priority class.
	Refused int             `json:"refused,omitempty"`
	TTFT50  time.Duration   `json:"ttftP50,omitempty"`
	TTFT90  time.Duration   `json:"ttftP90,omitempty"`
	TTFT99  time.Duration   `json:"ttftP99,omitempty"`
	TTFT999 time.Duration   `json:"ttftP999,omitempty"`
	TTFTs   []time.Duration `json:"-"`
	// Floor99 is the p99 of the completed tasks' idealTime: the lowest p99 any balancer could
	// give these tasks.
	Floor99 time.Duration `json:"floorP99,omitempty"`
	Hits    int           `json:"cacheHits,omitempty"`
	Misses  int           `json:"cacheMisses,omitempty"`
	Classes []summary     `json:"classes,omitempty"`
	Levels  []summary     `json:"levels,omitempty"` // ceiling: one per concurrency level
	Conc    int           `json:"concurrency,omitempty"`
}

// hitRate is the share of cache hits among later turns that reported one, or -1.
func (s summary) hitRate() float64 {
	if s.Hits+s.Misses == 0 {
		return -1
	}
	return float64(s.Hits) / float64(s.Hits+s.Misses)
}

func summarize(target string, ss []sample, window time.Duration) summary {
	s := summary{Target: target, Sent: len(ss), Why: map[string]int{}, PerSecondOK: map[int]int{}}
	var sum time.Duration
	var ideal []time.Duration
	for _, x := range ss {
		switch x.out {
		case ok:
			s.OK++
			s.Latencies = append(s.Latencies, x.latency)
			sum += x.latency
			s.PerSecondOK[int(x.at/time.Second)]++
		case refused:
			s.Errors++
			s.Why[x.why]++
		case lost:
			s.Lost++
			s.Why[x.why]++
		case overflown:
			s.Overflown++
			s.Why[x.why]++
		case rejected:
			s.Refused++
			s.Why[x.why]++
		}
		if x.out == ok && x.ideal > 0 {
			ideal = append(ideal, x.ideal)
		}
		if x.out == ok && x.ttft > 0 {
			s.TTFTs = append(s.TTFTs, x.ttft)
		}
		if x.out == ok && x.turn > 1 && x.hit >= 0 {
			if x.hit == 1 {
				s.Hits++
			} else {
				s.Misses++
			}
		}
	}
	slices.Sort(ideal)
	s.Floor99 = pct(ideal, 0.99)
	slices.Sort(s.TTFTs)
	s.TTFT50, s.TTFT90, s.TTFT99, s.TTFT999 = pct(s.TTFTs, 0.5), pct(s.TTFTs, 0.9), pct(s.TTFTs, 0.99), pct(s.TTFTs, 0.999)
	slices.Sort(s.Latencies)
	s.P50, s.P90, s.P99, s.P999 = pct(s.Latencies, 0.5), pct(s.Latencies, 0.9), pct(s.Latencies, 0.99), pct(s.Latencies, 0.999)
	if s.OK > 0 {
		s.Mean = sum / time.Duration(s.OK)
	}
	s.Throughput = float64(s.OK) / window.Seconds()
	if slices.ContainsFunc(ss, func(x sample) bool { return x.class != "" }) {
		for _, c := range classes {
			var mine []sample
			for _, x := range ss {
				if x.class == c.name {
					x.class = "" // no rows per class within a class
					mine = append(mine, x)
				}
			}
			cs := summarize(c.name, mine, window)
			cs.TTFTs, cs.Latencies, cs.PerSecondOK = nil, nil, nil
			s.Classes = append(s.Classes, cs)
		}
	}
	return s
}

// pct is the q-quantile of sorted (nearest rank).
func pct(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

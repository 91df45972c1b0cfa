package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// scenario is one load pattern, run against every target in turn.
type scenario struct {
	name, title string
	duration    time.Duration
	rate        func(t time.Duration) float64 // arrivals per second at offset t (open loop)
	rateNote    string
	lat         string // every replica's latency
	slow        int    // index of the slow replica, or -1
	slowFactor  float64
	kill        time.Duration // when > 0: SIGKILL one replica at this offset
	closed      bool          // closed loop (overhead) instead of open loop
	sites       bool          // two sites, one lost at kill (sitekill); its own targets
	concurrency int           // closed-loop workers

	// The LLM scenarios (conversations, mixed, priority): replicas run simagent --llm and the
	// client streams (SendStreamingMessage) and measures time to first token.
	llm      bool
	speeds   []float64 // --llm-speed per replica index (mixed); nil = all 1
	kind     string    // "conversations", "mixed", "priority", "ceiling"; "" for the others
	targets  []string  // this scenario's targets when it has its own (conversations, ceiling)
	weighted bool      // proxies get weights from speeds (mixed)
	classes  bool      // requests carry a priority class (priority)
	ceiling  []int     // closed-loop concurrency levels, one after another on one deployment
}

func (s scenario) latency(i int) string {
	if i == s.slow {
		return scaleLatency(s.lat, s.slowFactor)
	}
	return s.lat
}

// scaleLatency multiplies a simagent latency spec ("200ms" or "lognormal:MEDIAN,P99") by f.
func scaleLatency(spec string, f float64) string {
	scale := func(d string) string {
		x, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			return d
		}
		return time.Duration(float64(x) * f).String()
	}
	if rest, ok := strings.CutPrefix(spec, "lognormal:"); ok {
		m, p, _ := strings.Cut(rest, ",")
		return "lognormal:" + scale(m) + "," + scale(p)
	}
	return scale(spec)
}

// meanLatency is the mean of a simagent latency spec: median·exp(σ²/2) for a lognormal with
// σ = ln(p99/median)/z99 (simagent's cap at 10×p99 changes it by well under 1%).
func meanLatency(spec string) (time.Duration, error) {
	if rest, ok := strings.CutPrefix(spec, "lognormal:"); ok {
		ms, ps, _ := strings.Cut(rest, ",")
		m, err1 := time.ParseDuration(strings.TrimSpace(ms))
		p, err2 := time.ParseDuration(strings.TrimSpace(ps))
		if err1 != nil || err2 != nil || m <= 0 || p < m {
			return 0, fmt.Errorf("latency %q: want lognormal:MEDIAN,P99 with 0 < MEDIAN <= P99", spec)
		}
		sigma := math.Log(float64(p)/float64(m)) / 2.3263
		return time.Duration(float64(m) * math.Exp(sigma*sigma/2)), nil
	}
	return time.ParseDuration(spec)
}

// scenarios builds the scenarios for cfg. capacity is tasks per second the replicas can finish.
func scenarios(cfg config, mean time.Duration) []scenario {
	capacity := float64(cfg.replicas*cfg.maxConc) / mean.Seconds()
	constant := func(f float64) func(time.Duration) float64 {
		return func(time.Duration) float64 { return f * capacity }
	}
	d := cfg.duration
	slowCap := (float64(cfg.replicas-1) + 1/5.0) / float64(cfg.replicas) // share of capacity left
	scs := []scenario{
		{name: "a70", title: "(a) heavy-tailed latency at 70% of capacity", duration: d, rate: constant(0.7),
			rateNote: fmt.Sprintf("%.1f/s", 0.7*capacity), lat: cfg.latency, slow: -1},
		{name: "a90", title: "(a) heavy-tailed latency at 90% of capacity", duration: d, rate: constant(0.9),
			rateNote: fmt.Sprintf("%.1f/s", 0.9*capacity), lat: cfg.latency, slow: -1},
		{name: "slow", title: "(b) one replica 5× slower, at 70% of the remaining capacity", duration: d, rate: constant(0.7 * slowCap),
			rateNote: fmt.Sprintf("%.1f/s", 0.7*slowCap*capacity), lat: cfg.latency, slow: 0, slowFactor: 5},
		{name: "kill", title: "(c) one replica SIGKILLed at 1/3 of the run, at 70% of capacity", duration: d, rate: constant(0.7),
			rateNote: fmt.Sprintf("%.1f/s", 0.7*capacity), lat: cfg.latency, slow: -1, kill: d / 3},
		{name: "burst", title: "(d) burst: 50% of capacity, 2× capacity for the second quarter, then 50%", duration: d,
			rate: func(t time.Duration) float64 {
				if t >= d/4 && t < d/2 {
					return 2 * capacity
				}
				return 0.5 * capacity
			},
			rateNote: fmt.Sprintf("%.1f/s, %.1f/s from %v to %v", 0.5*capacity, 2*capacity, d/4, d/2), lat: cfg.latency, slow: -1},
	}
	// sitekill: two sites of sitesReplicas each at 70% of one site's capacity, so the site left
	// can carry the whole load once the other is lost.
	siteMean, _ := meanLatency(sitesLatency)
	siteCap := float64(sitesReplicas(cfg)*cfg.maxConc) / siteMean.Seconds()
	scs = append(scs, scenario{name: "sitekill", title: "(f) site loss: one of two gateways SIGKILLed with its replicas at 1/3 of the run",
		duration: d, rate: func(time.Duration) float64 { return 0.7 * siteCap }, lat: sitesLatency, slow: -1, kill: d / 3, sites: true,
		rateNote: fmt.Sprintf("%.1f/s (70%% of one site's capacity, 35%% of both)", 0.7*siteCap)})
	scs = append(scs, llmScenarios(cfg)...)
	scs = append(scs, scenario{name: "ceiling", kind: "ceiling",
		title:    "(j) throughput ceiling: trivial backend (latency 0), closed loop at rising concurrency",
		duration: cfg.ceilingStep, lat: "0", slow: -1, closed: true, ceiling: cfg.ceilingConc,
		rateNote: fmt.Sprintf("closed loop, %v per level, levels %v", cfg.ceilingStep, cfg.ceilingConc)})
	for _, n := range cfg.overheadConc {
		scs = append(scs, scenario{name: fmt.Sprintf("overhead-c%d", n),
			title:    fmt.Sprintf("(e) forwarding overhead: trivial backend (latency 0), closed loop, %d client(s)", n),
			duration: cfg.overheadDuration, lat: "0", slow: -1, closed: true, concurrency: n,
			rateNote: fmt.Sprintf("%d concurrent client(s)", n)})
	}
	return scs
}

// The LLM model of the new scenarios: short times so that runs stay short (the ratios are what
// a balancer sees, see README "Model"), prompts and answers drawn by the client.
const (
	llmTPOT       = 2 * time.Millisecond
	llmPrefill    = 20 * time.Microsecond
	llmBatchSlope = 0.01 // simagent's default --llm-batch-slope
	llmCacheGain  = 5    // simagent's default --llm-cache-speedup
	promptMedian  = 300
	promptP99     = 3000
	outputMedian  = 200
	outputP99     = 2000
)

// lognormalMean is the mean of a lognormal with this median and p99.
func lognormalMean(median, p99 float64) float64 {
	sigma := math.Log(p99/median) / 2.3263
	return median * math.Exp(sigma*sigma/2)
}

// llmCapacity is the single-turn tasks per second the replicas finish at full batches, from the
// model: a replica of speed s runs maxConc tasks at once, each taking its prefill (one prompt at
// a time) plus its answer at tpot × (1 + slope × (maxConc − 1)) per token, all divided by s.
func llmCapacity(cfg config, speeds []float64) float64 {
	out := lognormalMean(outputMedian, outputP99)
	prompt := lognormalMean(promptMedian, promptP99)
	task := out*llmTPOT.Seconds()*(1+llmBatchSlope*float64(cfg.maxConc-1)) + prompt*llmPrefill.Seconds()
	c := 0.0
	for i := range cfg.replicas {
		s := 1.0
		if len(speeds) > 0 {
			s = speeds[i%len(speeds)]
		}
		c += s * float64(cfg.maxConc) / task
	}
	return c
}

// idealTime is t's time in the model with nothing in its way: alone on a speed-1 replica (batch
// 1), its conversation's earlier turns (contextTokens) in that replica's cache. No balancer
// finishes a task sooner, so the p99 of these is the floor of any target's p99.
func idealTime(t llmTurn) time.Duration {
	prefill := (float64(t.promptTokens) + float64(t.contextTokens)/llmCacheGain) * float64(llmPrefill)
	return time.Duration(prefill + float64(max(t.maxTokens, 1)-1)*float64(llmTPOT))
}

var mixedSpeeds = []float64{1, 1, 0.25, 0.25}

func llmScenarios(cfg config) []scenario {
	capacity := llmCapacity(cfg, nil)
	mixedCap := llmCapacity(cfg, mixedSpeeds)
	d := cfg.llmDuration
	turns := float64(cfg.convTurnsMin+cfg.convTurnsMax) / 2
	convRate := 0.7 * capacity / turns // conversations per second: 70% of capacity in turns
	return []scenario{
		{name: "conversations", kind: "conversations", llm: true, duration: d, slow: -1,
			title:    "(g) multi-turn conversations (LLM model, context cache per replica) at ~70% of capacity",
			rate:     func(time.Duration) float64 { return convRate },
			rateNote: fmt.Sprintf("%.2f new conversations/s (Poisson) of %d–%d turns, think time exp. mean %v, at most %d users at once; ≈ %.1f turns/s of capacity %.1f/s", convRate, cfg.convTurnsMin, cfg.convTurnsMax, cfg.think, cfg.convUsers, convRate*turns, capacity),
			targets:  []string{"direct", "haproxy", "haproxy-hash", "haproxy-hash-bounded", "nginx", "nginx-hash", "agentplane"}},
		{name: "mixed", kind: "mixed", llm: true, duration: d, slow: -1, speeds: mixedSpeeds, weighted: true,
			title:    "(h) fast and slow replicas (speeds 1,1,0.25,0.25), single-turn, at 70% of capacity",
			rate:     func(time.Duration) float64 { return 0.7 * mixedCap },
			rateNote: fmt.Sprintf("%.1f/s (70%% of %.1f/s)", 0.7*mixedCap, mixedCap)},
		{name: "priority", kind: "priority", llm: true, duration: cfg.priorityDuration, slow: -1, classes: true,
			title:    "(i) overload with priorities: 2× capacity, 10% urgent, 60% normal, 30% batch",
			rate:     func(time.Duration) float64 { return 2 * capacity },
			rateNote: fmt.Sprintf("%.1f/s (2× capacity %.1f/s) for %v", 2*capacity, capacity, cfg.priorityDuration)},
	}
}

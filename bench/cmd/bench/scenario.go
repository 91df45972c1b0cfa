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
	for _, n := range cfg.overheadConc {
		scs = append(scs, scenario{name: fmt.Sprintf("overhead-c%d", n),
			title:    fmt.Sprintf("(e) forwarding overhead: trivial backend (latency 0), closed loop, %d client(s)", n),
			duration: cfg.overheadDuration, lat: "0", slow: -1, closed: true, concurrency: n,
			rateNote: fmt.Sprintf("%d concurrent client(s)", n)})
	}
	return scs
}

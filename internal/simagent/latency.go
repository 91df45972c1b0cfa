package simagent

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// Latency is a distribution of per-task service times.
type Latency interface {
	// Sample draws one service time. r must not be used concurrently.
	Sample(r *rand.Rand) time.Duration
	// String renders the latency in the syntax accepted by ParseLatency.
	String() string
}

// z99 is the 99th percentile of the standard normal distribution.
const z99 = 2.3263

// lognormalCapFactor bounds lognormal samples to this multiple of the p99 so a
// simulation never draws an absurd (hours long) service time from the tail.
const lognormalCapFactor = 10

const lognormalPrefix = "lognormal:"

// ParseLatency parses a latency specification:
//
//	"0"                  no latency
//	"200ms"              fixed latency (any time.ParseDuration syntax)
//	"lognormal:2s,20s"   log-normal with median 2s and 99th percentile 20s
//
// Samples of a log-normal latency are capped at 10×p99.
func ParseLatency(s string) (Latency, error) {
	spec := strings.TrimSpace(s)
	if spec == "" {
		return nil, errors.New("latency: empty specification (use \"0\", a duration like \"200ms\" or \"lognormal:MEDIAN,P99\")")
	}
	if rest, ok := strings.CutPrefix(spec, lognormalPrefix); ok {
		medStr, p99Str, found := strings.Cut(rest, ",")
		if !found {
			return nil, fmt.Errorf("latency %q: lognormal needs two durations \"lognormal:MEDIAN,P99\", e.g. \"lognormal:2s,20s\"", s)
		}
		median, err := parseNonNegative(medStr)
		if err != nil {
			return nil, fmt.Errorf("latency %q: median: %w", s, err)
		}
		p99, err := parseNonNegative(p99Str)
		if err != nil {
			return nil, fmt.Errorf("latency %q: p99: %w", s, err)
		}
		return newLognormal(median, p99)
	}
	if strings.Contains(spec, ":") {
		return nil, fmt.Errorf("latency %q: unknown distribution (supported: a fixed duration or \"lognormal:MEDIAN,P99\")", s)
	}
	d, err := parseNonNegative(spec)
	if err != nil {
		return nil, fmt.Errorf("latency %q: %w", s, err)
	}
	return fixedLatency(d), nil
}

func parseNonNegative(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (examples: \"0\", \"250ms\", \"2s\")", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return d, nil
}

// fixedLatency always samples the same duration.
type fixedLatency time.Duration

func (f fixedLatency) Sample(*rand.Rand) time.Duration { return time.Duration(f) }
func (f fixedLatency) String() string {
	if f == 0 {
		return "0"
	}
	return time.Duration(f).String()
}

// lognormalLatency samples exp(mu + sigma*Z), Z standard normal.
type lognormalLatency struct {
	median, p99 time.Duration
	mu, sigma   float64
	max         float64 // cap in nanoseconds
}

func newLognormal(median, p99 time.Duration) (Latency, error) {
	if median <= 0 {
		return nil, fmt.Errorf("latency: lognormal median must be > 0, got %v", median)
	}
	if p99 < median {
		return nil, fmt.Errorf("latency: lognormal p99 (%v) must be >= median (%v)", p99, median)
	}
	mu := math.Log(float64(median))
	sigma := (math.Log(float64(p99)) - mu) / z99
	return &lognormalLatency{
		median: median,
		p99:    p99,
		mu:     mu,
		sigma:  sigma,
		max:    math.Min(float64(p99)*lognormalCapFactor, float64(math.MaxInt64/2)),
	}, nil
}

func (l *lognormalLatency) Sample(r *rand.Rand) time.Duration {
	v := math.Round(math.Exp(l.mu + l.sigma*r.NormFloat64()))
	if math.IsNaN(v) || v > l.max {
		v = l.max
	}
	if v < 0 {
		v = 0
	}
	return time.Duration(v)
}

func (l *lognormalLatency) String() string {
	return lognormalPrefix + l.median.String() + "," + l.p99.String()
}

// latencyValue adapts a *Latency to pflag.Value.
type latencyValue struct{ l *Latency }

func (v latencyValue) String() string {
	if v.l == nil || *v.l == nil {
		return "0"
	}
	return (*v.l).String()
}

func (v latencyValue) Set(s string) error {
	l, err := ParseLatency(s)
	if err != nil {
		return err
	}
	*v.l = l
	return nil
}

func (latencyValue) Type() string { return "latency" }

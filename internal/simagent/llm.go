package simagent

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// LLMConfig turns on the LLM-shaped service-time model (--llm) and holds its
// parameters. The defaults (DefaultLLMConfig) and where they come from are in
// bench/README.md, section "Model".
//
// A task's time is prefill then decode: the prompt costs PrefillPerToken per
// token (CacheSpeedup times less for the part already in this replica's
// context cache), which gives the first token; each further token costs
// TPOT × (1 + BatchSlope × (batch−1)), batch being the tasks the replica is
// working on at that moment. Every duration is divided by the replica's speed.
type LLMConfig struct {
	Enabled         bool          // the model replaces --latency
	PrefillPerToken time.Duration // prefill time per uncached prompt token; 0 = free
	TPOT            time.Duration // time per output token with nothing else running
	BatchSlope      float64       // per-token slow-down for each other task in the batch; 0 = none
	CacheSpeedup    float64       // a cached prompt token costs PrefillPerToken/CacheSpeedup; 1 = no gain
	CacheTokens     int           // context cache size in tokens (LRU by conversation); 0 = no cache
	Speed           SpeedFactors  // replica speed, or one per replica; nil = 1
	OutputTokens    TokenCount    // output tokens of a message without "maxTokens"; nil = default
	StreamTokens    int           // output tokens per artifact-update event; 0 = default
}

// DefaultLLMConfig returns the model's default parameters, with Enabled false.
func DefaultLLMConfig() LLMConfig {
	return LLMConfig{
		PrefillPerToken: defaultPrefillPerToken,
		TPOT:            defaultTPOT,
		BatchSlope:      defaultBatchSlope,
		CacheSpeedup:    defaultCacheSpeedup,
		CacheTokens:     defaultCacheTokens,
		Speed:           SpeedFactors{1},
		OutputTokens:    fixedTokens(defaultOutputTokens),
		StreamTokens:    defaultStreamTokens,
	}
}

// Defaults of the model; bench/README.md ("Model") gives their sources.
const (
	defaultPrefillPerToken = 100 * time.Microsecond
	defaultTPOT            = 17 * time.Millisecond
	defaultBatchSlope      = 0.01
	defaultCacheSpeedup    = 5
	defaultCacheTokens     = 500_000
	defaultOutputTokens    = 300
	defaultStreamTokens    = 16
)

// Bounds that keep every computed duration far from overflowing.
const (
	maxTokens          = 10_000_000 // any token count: prompt, context, output, cache
	maxPrefillPerToken = time.Second
	maxTPOT            = time.Minute
	maxBatchSlope      = 100
	maxCacheSpeedup    = 1e6
	minSpeed, maxSpeed = 1e-3, 1e3
	maxSpeedFactors    = 1024
)

// bindLLMFlags registers the --llm flags. Unless the model is already on, its
// parameters are reset to the defaults first, so that the help shows them.
func (c *Config) bindLLMFlags(fs *pflag.FlagSet) {
	if !c.LLM.Enabled {
		c.LLM = DefaultLLMConfig()
	}
	l := &c.LLM
	fs.BoolVar(&l.Enabled, "llm", l.Enabled, "LLM-shaped service time instead of --latency: prefill per prompt token, then output tokens whose time grows with the replica's batch, a per-replica context cache (see bench/README.md, Model)")
	fs.DurationVar(&l.PrefillPerToken, "llm-prefill-per-token", l.PrefillPerToken, "--llm: prefill time per uncached prompt token (0 = free)")
	fs.DurationVar(&l.TPOT, "llm-tpot", l.TPOT, "--llm: time per output token when the replica works on one task")
	fs.Float64Var(&l.BatchSlope, "llm-batch-slope", l.BatchSlope, "--llm: per-token time grows by this fraction for each other task the replica works on: tpot × (1 + slope × (batch−1))")
	fs.Float64Var(&l.CacheSpeedup, "llm-cache-speedup", l.CacheSpeedup, "--llm: a prompt token found in the replica's context cache is prefilled this many times faster (>= 1; 1 = no gain)")
	fs.IntVar(&l.CacheTokens, "llm-cache-tokens", l.CacheTokens, "--llm: context cache size in tokens, least recently used conversation evicted first (0 = no cache)")
	fs.Var(speedValue{&l.Speed}, "llm-speed", "--llm: replica speed factor (1 = reference, 0.25 = four times slower), or a comma list picked by replica number, e.g. \"1,1,0.25\"")
	fs.Var(tokenCountValue{&l.OutputTokens}, "llm-output-tokens", "--llm: output tokens of a message without metadata maxTokens: a count like \"300\" or \"lognormal:MEDIAN,P99\" e.g. \"lognormal:200,2000\" (drawn with --seed)")
	fs.IntVar(&l.StreamTokens, "llm-stream-tokens", l.StreamTokens, "--llm: output tokens per streamed artifact-update event after the first token (which comes alone)")
}

// withDefaults fills the parameters whose zero value means "default".
func (l LLMConfig) withDefaults() LLMConfig {
	if len(l.Speed) == 0 {
		l.Speed = SpeedFactors{1}
	}
	if l.OutputTokens == nil {
		l.OutputTokens = fixedTokens(defaultOutputTokens)
	}
	if l.StreamTokens == 0 {
		l.StreamTokens = defaultStreamTokens
	}
	return l
}

// validate reports every bad parameter, each named by its flag.
func (l LLMConfig) validate() []error {
	var errs []error
	dur := func(name string, v, hi time.Duration) {
		if v < 0 || v > hi {
			errs = append(errs, fmt.Errorf("%s must be in [0,%v], got %v", name, hi, v))
		}
	}
	dur("llm-prefill-per-token", l.PrefillPerToken, maxPrefillPerToken)
	dur("llm-tpot", l.TPOT, maxTPOT)
	if math.IsNaN(l.BatchSlope) || l.BatchSlope < 0 || l.BatchSlope > maxBatchSlope {
		errs = append(errs, fmt.Errorf("llm-batch-slope must be in [0,%v], got %v", maxBatchSlope, l.BatchSlope))
	}
	if math.IsNaN(l.CacheSpeedup) || l.CacheSpeedup < 1 || l.CacheSpeedup > maxCacheSpeedup {
		errs = append(errs, fmt.Errorf("llm-cache-speedup must be in [1,%g] (1 = no gain), got %v", maxCacheSpeedup, l.CacheSpeedup))
	}
	if l.CacheTokens < 0 || l.CacheTokens > maxTokens {
		errs = append(errs, fmt.Errorf("llm-cache-tokens must be in [0,%d] (0 = no cache), got %d", maxTokens, l.CacheTokens))
	}
	if err := l.Speed.check(); err != nil {
		errs = append(errs, fmt.Errorf("llm-speed: %w", err))
	}
	if l.StreamTokens < 1 || l.StreamTokens > maxTokens {
		errs = append(errs, fmt.Errorf("llm-stream-tokens must be in [1,%d], got %d", maxTokens, l.StreamTokens))
	}
	return errs
}

// ---- the model --------------------------------------------------------------

// llmModel is the pure part of the model: durations from token counts and
// batch size, for one replica's speed. It holds no state.
type llmModel struct {
	prefillPerToken time.Duration
	tpot            time.Duration
	slope           float64
	cacheSpeedup    float64
	speed           float64
}

func newLLMModel(l LLMConfig, replica string) llmModel {
	return llmModel{
		prefillPerToken: l.PrefillPerToken,
		tpot:            l.TPOT,
		slope:           l.BatchSlope,
		cacheSpeedup:    l.CacheSpeedup,
		speed:           l.Speed.For(replica),
	}
}

// Prefill is the time to first token of a prompt of uncached+cached tokens,
// cached of which are in the replica's context cache.
func (m llmModel) Prefill(uncached, cached int) time.Duration {
	work := float64(uncached) + float64(cached)/m.cacheSpeedup
	return scaleDuration(m.prefillPerToken, work/m.speed)
}

// TPOT is the time of one output token while the replica works on batch tasks
// (itself included; less than 1 counts as 1).
func (m llmModel) TPOT(batch int) time.Duration {
	batch = max(batch, 1)
	return scaleDuration(m.tpot, (1+m.slope*float64(batch-1))/m.speed)
}

// ServiceTime is the time to first token and the total time of a task that
// finds cached of its prompt tokens in the cache and writes output tokens
// (at least one) while the batch stays at batch: the first token comes with
// the prefill, each further one takes TPOT(batch). Queueing is not included.
func (m llmModel) ServiceTime(uncached, cached, output, batch int) (ttft, total time.Duration) {
	ttft = m.Prefill(uncached, cached)
	decode := scaleDuration(m.TPOT(batch), float64(max(output, 1)-1))
	return ttft, satAdd(ttft, decode)
}

// scaleDuration is d×f, rounded, saturating at the largest duration.
func scaleDuration(d time.Duration, f float64) time.Duration {
	v := math.Round(float64(d) * f)
	if math.IsNaN(v) || v <= 0 {
		return 0
	}
	if v >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(v)
}

func satAdd(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// ---- speed factors ----------------------------------------------------------

// SpeedFactors is the --llm-speed value: one factor for every replica, or one
// per replica number. Replica i (its id as a decimal number, as the supervisor
// sets $AGENTPLANE_REPLICA) gets factor i mod len; a replica id that is not a
// number (a pod name) picks one by its hash, the same every time.
type SpeedFactors []float64

// ParseSpeed parses "0.25" or a comma list "1,1,0.25". Each factor is in
// [0.001, 1000].
func ParseSpeed(s string) (SpeedFactors, error) {
	spec := strings.TrimSpace(s)
	if spec == "" {
		return nil, errors.New("empty speed (use a factor like \"1\" or \"0.25\", or a list like \"1,1,0.25\")")
	}
	parts := strings.Split(spec, ",")
	if len(parts) > maxSpeedFactors {
		return nil, fmt.Errorf("speed %q: at most %d factors", s, maxSpeedFactors)
	}
	out := make(SpeedFactors, 0, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		f, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return nil, fmt.Errorf("speed %q: factor %d: %q is not a number", s, i+1, p)
		}
		if !(f >= minSpeed && f <= maxSpeed) { // also refuses NaN
			return nil, fmt.Errorf("speed %q: factor %d: %v is outside [%g,%g]", s, i+1, f, minSpeed, maxSpeed)
		}
		out = append(out, f)
	}
	return out, nil
}

func (s SpeedFactors) check() error {
	if len(s) > maxSpeedFactors {
		return fmt.Errorf("at most %d factors, got %d", maxSpeedFactors, len(s))
	}
	for i, f := range s {
		if !(f >= minSpeed && f <= maxSpeed) {
			return fmt.Errorf("factor %d: %v is outside [%g,%g]", i+1, f, minSpeed, maxSpeed)
		}
	}
	return nil
}

// For returns the factor of a replica.
func (s SpeedFactors) For(replica string) float64 {
	switch len(s) {
	case 0:
		return 1
	case 1:
		return s[0]
	}
	if n, err := strconv.ParseUint(replica, 10, 64); err == nil {
		return s[n%uint64(len(s))]
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(replica))
	return s[h.Sum32()%uint32(len(s))]
}

func (s SpeedFactors) String() string {
	parts := make([]string, len(s))
	for i, f := range s {
		parts[i] = strconv.FormatFloat(f, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

type speedValue struct{ s *SpeedFactors }

func (v speedValue) String() string {
	if v.s == nil || len(*v.s) == 0 {
		return "1"
	}
	return v.s.String()
}

func (v speedValue) Set(s string) error {
	f, err := ParseSpeed(s)
	if err != nil {
		return err
	}
	*v.s = f
	return nil
}

func (speedValue) Type() string { return "speed" }

// ---- token counts -----------------------------------------------------------

// TokenCount is a distribution of token counts (--llm-output-tokens).
type TokenCount interface {
	// Sample draws a count >= 1. r must not be used concurrently.
	Sample(r *rand.Rand) int
	// String renders the count in the syntax accepted by ParseTokenCount.
	String() string
}

// ParseTokenCount parses a token count:
//
//	"300"                  always 300
//	"lognormal:200,2000"   log-normal with median 200 and 99th percentile 2000
//
// Counts are in [1, 10000000]; log-normal draws are capped at 10×p99 and at that bound.
func ParseTokenCount(s string) (TokenCount, error) {
	spec := strings.TrimSpace(s)
	if spec == "" {
		return nil, errors.New("tokens: empty specification (use a count like \"300\" or \"lognormal:MEDIAN,P99\")")
	}
	if rest, ok := strings.CutPrefix(spec, lognormalPrefix); ok {
		medStr, p99Str, found := strings.Cut(rest, ",")
		if !found {
			return nil, fmt.Errorf("tokens %q: lognormal needs two counts \"lognormal:MEDIAN,P99\", e.g. \"lognormal:200,2000\"", s)
		}
		median, err := parseCount(medStr)
		if err != nil {
			return nil, fmt.Errorf("tokens %q: median: %w", s, err)
		}
		p99, err := parseCount(p99Str)
		if err != nil {
			return nil, fmt.Errorf("tokens %q: p99: %w", s, err)
		}
		if p99 < median {
			return nil, fmt.Errorf("tokens %q: p99 (%d) must be >= median (%d)", s, p99, median)
		}
		mu := math.Log(float64(median))
		return &lognormalTokens{median: median, p99: p99, mu: mu, sigma: (math.Log(float64(p99)) - mu) / z99,
			max: min(float64(p99)*lognormalCapFactor, maxTokens)}, nil
	}
	if strings.Contains(spec, ":") {
		return nil, fmt.Errorf("tokens %q: unknown distribution (supported: a count or \"lognormal:MEDIAN,P99\")", s)
	}
	n, err := parseCount(spec)
	if err != nil {
		return nil, fmt.Errorf("tokens %q: %w", s, err)
	}
	return fixedTokens(n), nil
}

func parseCount(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty count")
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("invalid count %q (a whole number, e.g. \"300\")", s)
	}
	if n < 1 || n > maxTokens {
		return 0, fmt.Errorf("count %d is outside [1,%d]", n, maxTokens)
	}
	return n, nil
}

type fixedTokens int

func (f fixedTokens) Sample(*rand.Rand) int { return int(f) }
func (f fixedTokens) String() string        { return strconv.Itoa(int(f)) }

type lognormalTokens struct {
	median, p99 int
	mu, sigma   float64
	max         float64
}

func (l *lognormalTokens) Sample(r *rand.Rand) int {
	v := math.Round(math.Exp(l.mu + l.sigma*r.NormFloat64()))
	if math.IsNaN(v) || v > l.max {
		v = l.max
	}
	return max(int(v), 1)
}

func (l *lognormalTokens) String() string {
	return lognormalPrefix + strconv.Itoa(l.median) + "," + strconv.Itoa(l.p99)
}

type tokenCountValue struct{ t *TokenCount }

func (v tokenCountValue) String() string {
	if v.t == nil || *v.t == nil {
		return strconv.Itoa(defaultOutputTokens)
	}
	return (*v.t).String()
}

func (v tokenCountValue) Set(s string) error {
	t, err := ParseTokenCount(s)
	if err != nil {
		return err
	}
	*v.t = t
	return nil
}

func (tokenCountValue) Type() string { return "tokens" }

package auth

import (
	"container/list"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
)

// Defaults for RateLimiterOptions.
const (
	DefaultMaxBuckets  = 100_000
	DefaultBucketIdle  = 10 * time.Minute
	maxTokenChargeOnce = math.MaxInt32
	maxTokenDebt       = 1 << 40 // bounds the work of one absurd report
)

// RateLimiterOptions bound the limiter's memory.
type RateLimiterOptions struct {
	// MaxBuckets bounds the subject × agent pairs tracked; the least recently used is dropped
	// first. Default 100000.
	MaxBuckets int
	// IdleTimeout drops a pair not seen for this long. Default 10m; it should be longer than a
	// bucket takes to refill, or a dropped bucket forgives a debt.
	IdleTimeout time.Duration
}

// RateLimiter keeps token buckets per subject × agent: one for requests and one for the model
// tokens agents report. The first rule that matches a pair applies to it; pairs no rule matches
// are not limited. Decisions take the time as an argument.
type RateLimiter struct {
	rules []configv1.RateLimit
	o     RateLimiterOptions

	mu      sync.Mutex
	buckets map[bucketKey]*list.Element
	lru     *list.List // of *bucket, least recently used first
}

type bucketKey struct{ tenant, subject, agent string }

type bucket struct {
	key      bucketKey
	rule     *configv1.RateLimit // nil: unlimited
	requests *rate.Limiter       // nil: requests unlimited
	tokens   *rate.Limiter       // nil: tokens unlimited
	tokBurst int
	last     time.Time
}

// NewRateLimiter returns a limiter for defaulted, validated rules.
func NewRateLimiter(rules []configv1.RateLimit, o RateLimiterOptions) *RateLimiter {
	if o.MaxBuckets <= 0 {
		o.MaxBuckets = DefaultMaxBuckets
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultBucketIdle
	}
	return &RateLimiter{rules: append([]configv1.RateLimit(nil), rules...), o: o, buckets: map[bucketKey]*list.Element{}, lru: list.New()}
}

func (l *RateLimiter) ruleFor(s *Subject, agent string) *configv1.RateLimit {
	for i := range l.rules {
		r := &l.rules[i]
		who := len(r.Subjects) == 0 && len(r.Groups) == 0
		if !who && matchAny(r.Subjects, s.Name) {
			who = true
		}
		for _, g := range s.Groups {
			if !who && matchAny(r.Groups, g) {
				who = true
			}
		}
		if who && (len(r.Agents) == 0 || matchAny(r.Agents, agent)) {
			return r
		}
	}
	return nil
}

// bucketFor finds or makes the pair's bucket; l.mu is held.
func (l *RateLimiter) bucketFor(s *Subject, agent string, now time.Time) *bucket {
	k := bucketKey{s.Tenant, s.Name, agent}
	if el, ok := l.buckets[k]; ok {
		l.lru.MoveToBack(el)
		b := el.Value.(*bucket)
		b.last = now
		return b
	}
	for el := l.lru.Front(); el != nil; el = l.lru.Front() {
		b := el.Value.(*bucket)
		if len(l.buckets) < l.o.MaxBuckets && now.Sub(b.last) < l.o.IdleTimeout {
			break
		}
		l.lru.Remove(el)
		delete(l.buckets, b.key)
	}
	b := &bucket{key: k, rule: l.ruleFor(s, agent), last: now}
	if r := b.rule; r != nil {
		if r.RequestsPerSecond > 0 {
			b.requests = rate.NewLimiter(rate.Limit(r.RequestsPerSecond), int(max(r.Burst, 1)))
		}
		if r.TokensPerMinute > 0 {
			b.tokBurst = int(min(max(r.TokenBurst, 1), math.MaxInt32))
			b.tokens = rate.NewLimiter(rate.Limit(float64(r.TokensPerMinute)/60), b.tokBurst)
		}
	}
	l.buckets[k] = l.lru.PushBack(b)
	return b
}

// Allow takes one request from the pair's budget at now. It returns nil, or a *RateLimitError
// (matching ErrRateLimited) saying how long until a request would be allowed: when the request
// budget is empty, or when the token budget is in debt from tokens charged after earlier tasks.
// A refused request takes nothing.
func (l *RateLimiter) Allow(s *Subject, agent string, now time.Time) error {
	if s == nil || len(l.rules) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketFor(s, agent, now)
	if b.rule == nil {
		return nil
	}
	if b.tokens != nil {
		if have := b.tokens.TokensAt(now); have < 0 {
			wait := time.Duration(-have / float64(b.tokens.Limit()) * float64(time.Second))
			return &RateLimitError{Rule: b.rule.Name, Budget: "tokens", RetryAfter: max(wait, time.Millisecond)}
		}
	}
	if b.requests != nil {
		r := b.requests.ReserveN(now, 1)
		if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			return &RateLimitError{Rule: b.rule.Name, Budget: "requests", RetryAfter: d}
		}
	}
	return nil
}

// ChargeTokens takes n model tokens, reported by an agent after a task, from the pair's token
// budget at now. The budget may go into debt; Allow refuses the pair until it is paid back.
func (l *RateLimiter) ChargeTokens(s *Subject, agent string, n int64, now time.Time) {
	if s == nil || n <= 0 || len(l.rules) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketFor(s, agent, now)
	if b.tokens == nil {
		return
	}
	n = min(n, maxTokenDebt)
	for n > 0 {
		c := int(min(n, maxTokenChargeOnce))
		// rate.Limiter refuses a reservation larger than its burst; widen the burst for the
		// charge so that the debt is recorded, then restore it (tokens above the burst are never
		// kept, and a debt is below it).
		if c > b.tokBurst {
			b.tokens.SetBurstAt(now, c)
		}
		b.tokens.ReserveN(now, c)
		if c > b.tokBurst {
			b.tokens.SetBurstAt(now, b.tokBurst)
		}
		n -= int64(c)
	}
}

// Len returns how many pairs are tracked.
func (l *RateLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

package auth

import (
	"errors"
	"testing"
	"time"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func TestRateLimitRequests(t *testing.T) {
	l := NewRateLimiter([]configv1.RateLimit{
		{Name: "vip", Subjects: []string{"vip"}}, // unlimited
		{Name: "triage", Agents: []string{"triage"}, RequestsPerSecond: 2, Burst: 3},
	}, RateLimiterOptions{})
	bob := &Subject{Name: "bob", Tenant: "a"}
	for i := range 3 {
		if err := l.Allow(bob, "triage", t0); err != nil {
			t.Fatalf("request %d within the burst refused: %v", i, err)
		}
	}
	err := l.Allow(bob, "triage", t0)
	var rl *RateLimitError
	if !errors.As(err, &rl) || !errors.Is(err, ErrRateLimited) {
		t.Fatalf("4th request: err = %v, want a RateLimitError", err)
	}
	if rl.RetryAfter != 500*time.Millisecond || rl.Budget != "requests" || rl.Rule != "triage" {
		t.Fatalf("RateLimitError = %+v, want 500ms on requests of rule triage", rl)
	}
	if RetryAfterSeconds(rl.RetryAfter) != "1" {
		t.Errorf("RetryAfterSeconds(500ms) = %s", RetryAfterSeconds(rl.RetryAfter))
	}
	// A refused request takes nothing: after exactly the advertised wait one more is allowed.
	if err := l.Allow(bob, "triage", t0.Add(rl.RetryAfter)); err != nil {
		t.Fatalf("after Retry-After: %v", err)
	}
	// Other pairs have their own buckets; unmatched pairs and the unlimited rule are not limited.
	if err := l.Allow(&Subject{Name: "carol", Tenant: "a"}, "triage", t0); err != nil {
		t.Errorf("another subject shares bob's bucket: %v", err)
	}
	if err := l.Allow(&Subject{Name: "bob", Tenant: "b"}, "triage", t0); err != nil {
		t.Errorf("same name in another tenant shares the bucket: %v", err)
	}
	for range 10 {
		if err := l.Allow(bob, "radiology", t0); err != nil {
			t.Fatalf("agent no rule covers was limited: %v", err)
		}
		if err := l.Allow(&Subject{Name: "vip", Tenant: "a"}, "triage", t0); err != nil {
			t.Fatalf("the unlimited rule limited: %v", err)
		}
	}
}

func TestRateLimitTokensDebt(t *testing.T) {
	l := NewRateLimiter([]configv1.RateLimit{{Name: "tok", TokensPerMinute: 600, TokenBurst: 100}}, RateLimiterOptions{})
	s := &Subject{Name: "bob", Tenant: "a"}
	if err := l.Allow(s, "x", t0); err != nil {
		t.Fatal(err)
	}
	// 400 tokens reported after the task: 100 in the bucket, 300 of debt at 10 tokens/s.
	l.ChargeTokens(s, "x", 400, t0)
	err := l.Allow(s, "x", t0)
	var rl *RateLimitError
	if !errors.As(err, &rl) || rl.Budget != "tokens" {
		t.Fatalf("err = %v, want a tokens RateLimitError", err)
	}
	if rl.RetryAfter != 30*time.Second {
		t.Fatalf("RetryAfter = %v, want 30s (300 tokens of debt at 10/s)", rl.RetryAfter)
	}
	if err := l.Allow(s, "x", t0.Add(29*time.Second)); err == nil {
		t.Fatal("allowed while still in debt")
	}
	if err := l.Allow(s, "x", t0.Add(30*time.Second)); err != nil {
		t.Fatalf("refused once the debt is paid: %v", err)
	}
	// A burst-sized bucket never holds more than its burst.
	l.ChargeTokens(s, "x", 1, t0.Add(time.Hour))
	if err := l.Allow(s, "x", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

func TestRateLimitBoundedMemory(t *testing.T) {
	l := NewRateLimiter([]configv1.RateLimit{{Name: "r", RequestsPerSecond: 1}}, RateLimiterOptions{MaxBuckets: 100, IdleTimeout: time.Minute})
	for i := range 1000 {
		_ = l.Allow(&Subject{Name: "s", Tenant: "t"}, string(rune('a'+i%26))+time.Duration(i).String(), t0)
	}
	if n := l.Len(); n > 100 {
		t.Fatalf("Len = %d, want at most MaxBuckets = 100", n)
	}
	// Idle buckets go when a new pair arrives after the idle timeout.
	_ = l.Allow(&Subject{Name: "late", Tenant: "t"}, "x", t0.Add(2*time.Minute))
	if n := l.Len(); n != 1 {
		t.Fatalf("Len after idle timeout = %d, want 1", n)
	}
}

package retry

import (
	"testing"
	"time"
)

func TestBudgetBoundsRetriesToARatioOfRequests(t *testing.T) {
	b := NewBudget(0.1, 1, 50)
	now := time.Unix(0, 0)
	// At the start the floor allows one retry.
	if !b.Retry("a", now) || b.Retry("a", now) {
		t.Fatal("the initial floor should allow exactly one retry")
	}
	// 1000 requests within the same instant earn 100 retries, capped at 50.
	for range 1000 {
		b.Request("a", now)
	}
	n := 0
	for b.Retry("a", now) {
		n++
	}
	if n != 50 {
		t.Fatalf("retries allowed = %d, want the cap 50", n)
	}
	// Time refills the floor: 3 seconds → 3 retries.
	now = now.Add(3 * time.Second)
	n = 0
	for b.Retry("a", now) {
		n++
	}
	if n != 3 {
		t.Fatalf("after 3s, retries allowed = %d, want 3", n)
	}
	// Agents have separate budgets.
	if !b.Retry("b", now) {
		t.Fatal("agent b has no budget of its own")
	}
}

func TestBudgetRatio(t *testing.T) {
	b := NewBudget(0.2, 0.001, 1000)
	now := time.Unix(0, 0)
	_ = b.Retry("a", now) // spend nothing meaningful of the tiny floor
	for range 100 {
		b.Request("a", now)
	}
	n := 0
	for b.Retry("a", now) {
		n++
	}
	if n != 20 {
		t.Fatalf("100 requests at ratio 0.2 allowed %d retries, want 20", n)
	}
}

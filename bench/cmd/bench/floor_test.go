package main

import (
	"testing"
	"time"
)

func TestIdealTime(t *testing.T) {
	// 1000 new prompt tokens at 20µs, 500 cached at a fifth of that, then 100 tokens after the
	// first at 2ms: 22ms + 200ms.
	got := idealTime(llmTurn{promptTokens: 1000, contextTokens: 500, maxTokens: 101})
	if want := 222 * time.Millisecond; got != want {
		t.Errorf("idealTime = %v, want %v", got, want)
	}
}

func TestFloorCountsCompletedTasksOnly(t *testing.T) {
	var ss []sample
	for i := range 100 {
		ss = append(ss, sample{out: ok, latency: time.Second, ideal: time.Duration(i+1) * time.Millisecond})
	}
	// A lost task's ideal time must not reach the floor: its latency is not in the p99 either.
	ss = append(ss, sample{out: lost, ideal: time.Hour})
	s := summarize("x", ss, time.Second)
	if s.Floor99 != 99*time.Millisecond {
		t.Errorf("Floor99 = %v, want 99ms", s.Floor99)
	}
}

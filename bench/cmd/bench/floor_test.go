package main

import (
	"strings"
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

func TestFloorLine(t *testing.T) {
	sums := []summary{
		{Target: "haproxy", OK: 10, P99: 4 * time.Second, Floor99: 3 * time.Second},
		{Target: "nginx", OK: 10, P99: 5 * time.Second, Floor99: 3 * time.Second},
		{Target: "agentplane", OK: 10, P99: 2 * time.Second, Floor99: 3 * time.Second},
	}
	var b strings.Builder
	p99Lines(&b, sums, "urgent p99")
	for _, want := range []string{"`agentplane/best-peer urgent p99 = 0.50`", "`floor/best-peer urgent p99 = 0.75` (floor 3.00 s: haproxy's"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in:\n%s", want, b.String())
		}
	}
	// Without ideal times (the scenarios that are not LLM-shaped) there is no floor.
	for i := range sums {
		sums[i].Floor99 = 0
	}
	b.Reset()
	p99Lines(&b, sums, "p99")
	if strings.Contains(b.String(), "floor") {
		t.Errorf("a floor line without ideal times:\n%s", b.String())
	}
}

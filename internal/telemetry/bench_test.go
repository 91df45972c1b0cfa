package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The gateway calls these on every task; they should cost well under a microsecond.

func BenchmarkTaskFinished(b *testing.B) {
	m := NewMetrics(Options{NoRuntimeCollectors: true})
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.TaskFinished(ctx, "triage", "SendMessage", "completed", 1500*time.Millisecond)
		}
	})
}

func BenchmarkTaskFlowMetrics(b *testing.B) {
	// What one task with one dispatch records: started, queue wait, dispatch, finished, request.
	m := NewMetrics(Options{NoRuntimeCollectors: true})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		m.TaskStarted("triage", "SendMessage")
		m.QueueWait(ctx, "triage", 0)
		m.Dispatch(ctx, "triage", "triage-0", "ok", time.Second)
		m.TaskFinished(ctx, "triage", "SendMessage", "completed", time.Second)
		m.Request(ctx, "triage", "SendMessage", "ok", time.Second)
	}
}

func BenchmarkTokensCappedSubjects(b *testing.B) {
	m := NewMetrics(Options{NoRuntimeCollectors: true, MaxSubjects: 100})
	subjects := make([]string, 1000)
	for i := range subjects {
		subjects[i] = fmt.Sprintf("subject-%d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.Tokens("triage", subjects[i%len(subjects)], TokensOutput, 42)
		i++
	}
}

func BenchmarkSpansTracingOff(b *testing.B) {
	// The default: no exporter. The span helpers of one task with one dispatch, with a caller's
	// trace context to pass on.
	clearOTelEnv(b)
	if _, err := SetupTracing(context.Background(), "bench"); err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/agents/triage", nil)
	r.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	ctx := Extract(r)
	h := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		tctx, task := StartTask(ctx, "triage", "SendMessage", "")
		dctx, d := StartDispatch(tctx, "triage-0", 0)
		Inject(dctx, h)
		End(d, nil)
		End(task, nil)
	}
}

func BenchmarkScrape(b *testing.B) {
	m := NewMetrics(Options{NoRuntimeCollectors: true})
	var reps []ReplicaSample
	for a := range 10 {
		for r := range 10 {
			reps = append(reps, ReplicaSample{Agent: fmt.Sprint("agent-", a), Replica: fmt.Sprint("r-", r), State: "Running", Ready: true, Capacity: 4})
			m.TaskFinished(context.Background(), fmt.Sprint("agent-", a), "SendMessage", "completed", time.Second)
			m.Dispatch(context.Background(), fmt.Sprint("agent-", a), fmt.Sprint("r-", r), "ok", time.Second)
		}
	}
	m.SetSnapshot(func() Snapshot { return Snapshot{Replicas: reps} })
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Registry().Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLogWithContext(b *testing.B) {
	log := NewLogger(io.Discard, LogFormatJSON, slog.LevelInfo)
	ctx := WithRequestID(context.Background(), NewRequestID())
	b.ReportAllocs()
	for b.Loop() {
		log.InfoContext(ctx, "task finished", "agent", "triage", "outcome", "completed")
	}
}

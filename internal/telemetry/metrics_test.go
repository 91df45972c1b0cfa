package telemetry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/trace"
)

// exercise calls every recording method once, with fixed values.
func exercise(m *Metrics) {
	ctx := context.Background()
	m.Request(ctx, "triage", "SendMessage", "ok", 1500*time.Millisecond)
	m.TaskStarted("triage", "SendMessage")
	m.TaskFinished(ctx, "triage", "SendMessage", "completed", 1500*time.Millisecond)
	m.Dispatch(ctx, "triage", "triage-0", "ok", 1400*time.Millisecond)
	m.Redispatch("triage", "refused")
	m.Ejection("triage", "triage-1")
	m.ReplicaRestart("triage", "triage-1")
	m.QueueWait(ctx, "triage", 20*time.Millisecond)
	m.QueueRefused("triage", "queue_full")
	m.Tokens("triage", "alice", TokensInput, 120)
	m.PushNotification("echo", PushSent)
	m.SetSnapshot(func() Snapshot {
		return Snapshot{
			Replicas: []ReplicaSample{{Agent: "triage", Replica: "triage-0", Site: "clinic-a", Zone: "z1", State: "Running", Ready: true, InFlight: 2, Capacity: 4}},
			Queues:   []QueueSample{{Agent: "triage", Depth: 3, OldestWait: 1500 * time.Millisecond}},
			Agents:   []AgentSample{{Agent: "triage", Desired: 2, Autoscaled: true}},
		}
	})
}

func TestMetricValues(t *testing.T) {
	m := NewMetrics(Options{NoRuntimeCollectors: true})
	exercise(m)
	m.TaskFinished(t.Context(), "triage", "SendMessage", "failed", 400*time.Second)

	want := `
# HELP agentplane_tasks_finished_total Tasks that reached a final state, by outcome (completed, failed, canceled, rejected, input-required, ...).
# TYPE agentplane_tasks_finished_total counter
agentplane_tasks_finished_total{agent="triage",method="SendMessage",outcome="completed"} 1
agentplane_tasks_finished_total{agent="triage",method="SendMessage",outcome="failed"} 1
# HELP agentplane_replica_in_flight Tasks the gateway has in flight on a replica.
# TYPE agentplane_replica_in_flight gauge
agentplane_replica_in_flight{agent="triage",replica="triage-0",site="clinic-a",zone="z1"} 2
# HELP agentplane_queue_depth Tasks waiting in the gateway for a free replica slot.
# TYPE agentplane_queue_depth gauge
agentplane_queue_depth{agent="triage"} 3
# HELP agentplane_queue_wait_seconds Time tasks waited in the gateway for a free replica slot.
# TYPE agentplane_queue_wait_seconds histogram
agentplane_queue_wait_seconds_bucket{agent="triage",le="0.005"} 0
agentplane_queue_wait_seconds_bucket{agent="triage",le="0.01"} 0
agentplane_queue_wait_seconds_bucket{agent="triage",le="0.025"} 1
agentplane_queue_wait_seconds_bucket{agent="triage",le="0.05"} 1
agentplane_queue_wait_seconds_bucket{agent="triage",le="0.1"} 1
agentplane_queue_wait_seconds_bucket{agent="triage",le="0.25"} 1
agentplane_queue_wait_seconds_bucket{agent="triage",le="0.5"} 1
agentplane_queue_wait_seconds_bucket{agent="triage",le="1"} 1
agentplane_queue_wait_seconds_bucket{agent="triage",le="2.5"} 1
agentplane_queue_wait_seconds_bucket{agent="triage",le="5"} 1
agentplane_queue_wait_seconds_bucket{agent="triage",le="10"} 1
agentplane_queue_wait_seconds_bucket{agent="triage",le="30"} 1
agentplane_queue_wait_seconds_bucket{agent="triage",le="60"} 1
agentplane_queue_wait_seconds_bucket{agent="triage",le="120"} 1
agentplane_queue_wait_seconds_bucket{agent="triage",le="300"} 1
agentplane_queue_wait_seconds_bucket{agent="triage",le="600"} 1
agentplane_queue_wait_seconds_bucket{agent="triage",le="+Inf"} 1
agentplane_queue_wait_seconds_sum{agent="triage"} 0.02
agentplane_queue_wait_seconds_count{agent="triage"} 1
# HELP agentplane_replica_state 1 for a replica's current state, 0 for the others.
# TYPE agentplane_replica_state gauge
agentplane_replica_state{agent="triage",replica="triage-0",state="CrashLoopBackOff"} 0
agentplane_replica_state{agent="triage",replica="triage-0",state="Pending"} 0
agentplane_replica_state{agent="triage",replica="triage-0",state="Running"} 1
agentplane_replica_state{agent="triage",replica="triage-0",state="Starting"} 0
agentplane_replica_state{agent="triage",replica="triage-0",state="Stopped"} 0
agentplane_replica_state{agent="triage",replica="triage-0",state="Terminating"} 0
agentplane_replica_state{agent="triage",replica="triage-0",state="Unknown"} 0
# HELP agentplane_tokens_total Model tokens reported by agents, by subject (capped; the rest is "other") and kind (input, output).
# TYPE agentplane_tokens_total counter
agentplane_tokens_total{agent="triage",kind="input",subject="alice"} 120
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"agentplane_tasks_finished_total", "agentplane_replica_in_flight", "agentplane_queue_depth",
		"agentplane_queue_wait_seconds", "agentplane_replica_state", "agentplane_tokens_total"); err != nil {
		t.Fatal(err)
	}
}

func TestMetricsFollowPrometheusConventions(t *testing.T) {
	m := NewMetrics(Options{})
	exercise(m)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// TestCatalogMatchesRegistry shows Catalog lists exactly what a scrape returns, with the same
// types and labels, and that every family other than the runtime's has the agentplane_ prefix.
func TestCatalogMatchesRegistry(t *testing.T) {
	m := NewMetrics(Options{})
	exercise(m)
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	cat := map[string]MetricInfo{}
	for _, mi := range Catalog() {
		cat[mi.Name] = mi
	}
	seen := map[string]bool{}
	for _, f := range families {
		name := f.GetName()
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_") {
			continue
		}
		mi, ok := cat[name]
		if !ok {
			t.Errorf("registry has %s, which is not in the catalog", name)
			continue
		}
		seen[name] = true
		if got := strings.ToLower(f.GetType().String()); got != mi.Type {
			t.Errorf("%s: type %s, catalog says %s", name, got, mi.Type)
		}
		var labels []string
		for _, lp := range f.GetMetric()[0].GetLabel() {
			labels = append(labels, lp.GetName())
		}
		want := slices.Clone(mi.Labels)
		slices.Sort(want)
		if !slices.Equal(labels, want) { // the registry sorts label pairs by name
			t.Errorf("%s: labels %v, catalog says %v", name, labels, mi.Labels)
		}
	}
	for name := range cat {
		if !seen[name] {
			t.Errorf("catalog lists %s, which the registry did not return", name)
		}
	}
}

// TestSnapshotIsReadAtScrapeTime shows gauges follow the snapshot function at each scrape, and
// that duplicate or unknown entries do not break the scrape.
func TestSnapshotIsReadAtScrapeTime(t *testing.T) {
	m := NewMetrics(Options{NoRuntimeCollectors: true})
	var mu sync.Mutex
	inFlight := 1
	m.SetSnapshot(func() Snapshot {
		mu.Lock()
		defer mu.Unlock()
		r := ReplicaSample{Agent: "a", Replica: "a-0", State: "Weird", InFlight: inFlight, Capacity: 2}
		return Snapshot{Replicas: []ReplicaSample{r, r}, Queues: []QueueSample{{Agent: "a"}, {Agent: "a", Depth: 9}}}
	})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	scrape := func() string {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("scrape: %d %s", resp.StatusCode, b)
		}
		return string(b)
	}
	for _, n := range []int{1, 7} {
		mu.Lock()
		inFlight = n
		mu.Unlock()
		body := scrape()
		line := fmt.Sprintf(`agentplane_replica_in_flight{agent="a",replica="a-0",site="",zone=""} %d`, n)
		if !strings.Contains(body, line+"\n") {
			t.Fatalf("scrape lacks %q:\n%s", line, body)
		}
		if !strings.Contains(body, `agentplane_replica_state{agent="a",replica="a-0",state="Unknown"} 1`) {
			t.Fatalf("an unknown state is not reported as Unknown:\n%s", body)
		}
		if !strings.Contains(body, `agentplane_queue_depth{agent="a"} 0`) {
			t.Fatalf("first queue sample does not win:\n%s", body)
		}
	}
}

func TestTokenSubjectsAreCapped(t *testing.T) {
	m := NewMetrics(Options{NoRuntimeCollectors: true, MaxSubjects: 3})
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() { m.Tokens("a", fmt.Sprintf("s%d", i), TokensOutput, 1) })
	}
	wg.Wait()
	m.Tokens("a", "s0", "bogus-kind", 5)
	m.Tokens("a", "s0", TokensInput, 0) // nothing to count
	if n := testutil.CollectAndCount(m.tokens); n > 4+1 {
		t.Fatalf("%d token series, want at most 3 subjects + other (+1 for kind other)", n)
	}
	other := testutil.ToFloat64(m.tokens.WithLabelValues("a", OtherSubject, TokensOutput))
	if other != 7 {
		t.Fatalf("other = %v, want 7 (10 subjects, 3 kept)", other)
	}
	m.subjectsMu.RLock()
	kept := len(m.subjects)
	m.subjectsMu.RUnlock()
	if kept != 3 {
		t.Fatalf("kept %d subjects, want 3", kept)
	}
}

func TestExemplarCarriesTraceID(t *testing.T) {
	m := NewMetrics(Options{NoRuntimeCollectors: true})
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(t.Context(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	m.TaskFinished(ctx, "a", "SendMessage", "completed", 3*time.Second)

	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), `# {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 3`) {
		t.Fatalf("no exemplar in OpenMetrics output:\n%s", rec.Body.String())
	}
}

func TestNilMetricsIsANoOp(t *testing.T) {
	var m *Metrics
	exercise(m)
	if m.Registry() != nil {
		t.Fatal("nil Metrics has a registry")
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("nil Metrics handler answered %d", rec.Code)
	}
}

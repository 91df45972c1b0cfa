package e2e

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// scrape reads the gateway's /metrics into "name{labels}" → value.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	res, err := client.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(res.Body, 16<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// TestMetricsMatchTheTasksSent sends a known number of tasks, blocking and streaming, and checks
// that the counters and histograms scraped from /metrics say exactly that.
func TestMetricsMatchTheTasksSent(t *testing.T) {
	up := startUp(t)
	const blocking, streaming = 25, 5
	var wg sync.WaitGroup
	for i := range blocking {
		wg.Go(func() {
			if r, err := post(t.Context(), up.URL+"/agents/echo", sendV1(i, "count me")); err != nil || r.Error != nil {
				t.Errorf("task %d: %v %s", i, err, r.Body)
			}
		})
	}
	for i := range streaming {
		wg.Go(func() {
			body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"SendStreamingMessage","params":{"message":{"messageId":"ms-%d","role":"ROLE_USER","parts":[{"text":"x"}]}}}`, i, i)
			if _, err := post(t.Context(), up.URL+"/agents/echo", body); err != nil {
				t.Errorf("stream %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	// An unknown agent must not become a label value.
	_, _ = post(t.Context(), up.URL+"/agents/no-such-agent", sendV1(1, "x"))

	m := scrape(t, up.URL)
	want := map[string]float64{
		`agentplane_tasks_started_total{agent="echo",method="SendMessage"}`:                               blocking,
		`agentplane_tasks_started_total{agent="echo",method="SendStreamingMessage"}`:                      streaming,
		`agentplane_tasks_finished_total{agent="echo",method="SendMessage",outcome="completed"}`:          blocking,
		`agentplane_tasks_finished_total{agent="echo",method="SendStreamingMessage",outcome="completed"}`: streaming,
		`agentplane_requests_total{agent="echo",method="SendMessage",outcome="ok"}`:                       blocking,
		`agentplane_task_duration_seconds_count{agent="echo",method="SendMessage",outcome="completed"}`:   blocking,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	var dispatched float64
	for k, v := range m {
		if strings.HasPrefix(k, `agentplane_dispatches_total{agent="echo"`) && strings.Contains(k, `result="ok"`) {
			dispatched += v
		}
		if strings.Contains(k, "no-such-agent") {
			t.Errorf("an unknown agent became a label: %s", k)
		}
	}
	if dispatched != blocking+streaming {
		t.Errorf("successful dispatches = %v, want %d", dispatched, blocking+streaming)
	}
	if m[`agentplane_replica_ready{agent="echo",replica="echo-0",site="",zone=""}`] != 1 {
		t.Errorf("replica readiness gauge missing or 0")
	}
}

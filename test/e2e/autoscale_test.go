package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testutil"
)

// burstManifest is an agent that scales on task load between 0 and 4 replicas, with short
// delays so that the test sees it go back to zero.
const burstManifest = `apiVersion: agentplane.io/v1alpha1
kind: Agent
metadata:
  name: burst
spec:
  replicas: 0 # to begin with; the autoscaler decides from then on
  maxConcurrency: 4
  command: [agentplane, simagent]
  args: ["--latency", "100ms"]
  autoscaling:
    minReplicas: 0
    maxReplicas: 4
    scaleDownDelay: 3s
    scaleToZeroAfter: 4s
  probes:
    startup: {periodSeconds: 1}
    readiness: {periodSeconds: 1}
    liveness: {periodSeconds: 1}
`

// serviceTime is the burst agent's own time per task (--latency).
const serviceTime = 100 * time.Millisecond

type agentStatus struct {
	Name        string `json:"name"`
	Desired     int    `json:"desired"`
	Ready       int    `json:"ready"`
	InFlight    int    `json:"inFlight"`
	Queued      int    `json:"queued"`
	Autoscaling *struct {
		Min    int    `json:"minReplicas"`
		Max    int    `json:"maxReplicas"`
		Reason string `json:"reason"`
	} `json:"autoscaling"`
}

func agentStatusOf(t *testing.T, base, name string) agentStatus {
	t.Helper()
	res, err := client.Get(base + "/api/v1/agents")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/agents: %s", res.Status)
	}
	var v struct {
		Agents []agentStatus `json:"agents"`
	}
	if err := decode(res.Body, &v); err != nil {
		t.Fatal(err)
	}
	for _, a := range v.Agents {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("agent %s not listed", name)
	return agentStatus{}
}

// An agent with minReplicas 0 has no replica at rest; a burst of 200 tasks scales it up, every
// task completes, and it goes back to zero after the delay. Its cold start (a task sent at zero
// replicas, answered) is measured over several trips from zero.
func TestAutoscaleFromZeroAndBack(t *testing.T) {
	dir := t.TempDir()
	manifest := filepath.Join(dir, "burst.yaml")
	if err := os.WriteFile(manifest, []byte(burstManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	up := startUp(t, "-f", manifest)
	agent := up.URL + "/agents/burst/"
	atZero := func(timeout time.Duration) {
		t.Helper()
		testutil.Eventually(t, timeout, 50*time.Millisecond, func() error {
			s := agentStatusOf(t, up.URL, "burst")
			_, total := readyReplicas(t, up.URL, "burst")
			return testutil.Check(s.Desired == 0 && total == 0, "burst has %d desired and %d replicas, want 0", s.Desired, total)
		})
	}
	atZero(5 * time.Second)
	if s := agentStatusOf(t, up.URL, "burst"); s.Autoscaling == nil || s.Autoscaling.Min != 0 || s.Autoscaling.Max != 4 {
		t.Errorf("GET /api/v1/agents does not show the autoscaling bounds: %+v", s.Autoscaling)
	}

	// The burst, while a watcher records the most replicas the agent had.
	watchCtx, stopWatch := context.WithCancel(t.Context())
	peak := make(chan int, 1)
	go func() {
		most := 0
		for watchCtx.Err() == nil {
			ready, _ := readyReplicas(t, up.URL, "burst")
			most = max(most, ready)
			time.Sleep(50 * time.Millisecond)
		}
		peak <- most
	}()
	const tasks = 200
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		completed int
		failed    []string
		latencies []time.Duration
	)
	start := time.Now()
	for i := range tasks {
		wg.Go(func() {
			began := time.Now()
			r, err := post(t.Context(), agent, sendV1(i+1, fmt.Sprintf("study %d", i)))
			took := time.Since(began)
			mu.Lock()
			defer mu.Unlock()
			_, state := parseTask(r)
			if err != nil || r.Error != nil || state != "TASK_STATE_COMPLETED" {
				failed = append(failed, fmt.Sprintf("task %d: %v %d %s", i, err, r.Status, r.Body))
				return
			}
			completed++
			latencies = append(latencies, took)
		})
	}
	wg.Wait()
	burstTook := time.Since(start)
	stopWatch()
	peakReplicas := <-peak
	slices.Sort(latencies)
	if len(failed) > 0 {
		t.Errorf("%d tasks failed:\n%s", len(failed), strings.Join(failed, "\n"))
	}
	firstAnswer := time.Duration(0)
	if len(latencies) > 0 {
		firstAnswer = latencies[0]
	}
	s := agentStatusOf(t, up.URL, "burst")
	if s.Autoscaling == nil || !strings.HasPrefix(s.Autoscaling.Reason, "scaled ") {
		t.Errorf("the agent's status does not say why it scaled: %+v", s.Autoscaling)
	}
	// The metric and describe say the same; scaling down waits for scaleDownDelay (3s).
	if got, want := scrape(t, up.URL)[`agentplane_agent_desired_replicas{agent="burst",autoscaled="true"}`], float64(s.Desired); got != want || got < 1 {
		t.Errorf("agentplane_agent_desired_replicas = %v, want the agent's desired %v", got, want)
	}
	if out := agentplane(t, "describe", "agent", "burst", "--gateway", up.URL); !strings.Contains(out, "Autoscaling:      0–4 replicas on task load (target 0.70); scaled ") {
		t.Errorf("describe does not show the autoscaling:\n%s", out)
	}

	// Back to zero after scaleDownDelay and scaleToZeroAfter (3s, 4s), with room to spare.
	atZero(20 * time.Second)
	for _, line := range []string{"burst scaled 0→", "burst scaled "} {
		if !strings.Contains(up.stderr.String(), line) {
			t.Errorf("the console does not show %q:\n%s", line, up.stderr.String())
		}
	}

	// Cold starts: a single task sent at zero, answered, minus the agent's own time.
	colds := []time.Duration{firstAnswer - serviceTime}
	for i := range 3 {
		began := time.Now()
		r, err := post(t.Context(), agent, sendV1(1000+i, "one more study"))
		took := time.Since(began)
		if _, state := parseTask(r); err != nil || state != "TASK_STATE_COMPLETED" {
			t.Fatalf("task at zero replicas: %v %d %s", err, r.Status, r.Body)
		}
		colds = append(colds, took-serviceTime)
		atZero(20 * time.Second)
	}
	slices.Sort(colds)
	coldP50 := colds[len(colds)/2]

	line := fmt.Sprintf("autoscale: tasks=%d completed=%d failed=%d peak_replicas=%d cold_start_p50=%d", tasks, completed, len(failed), peakReplicas, coldP50.Milliseconds())
	t.Log(line)
	t.Logf("burst of %d took %v; cold starts %v", tasks, burstTook.Round(time.Millisecond), colds)
	fmt.Println(line)
	if completed != tasks || len(failed) != 0 {
		t.Errorf("%s: want every task completed", line)
	}
	if peakReplicas < 2 || peakReplicas > 4 {
		t.Errorf("%s: want the burst to scale beyond one replica and at most to maxReplicas 4", line)
	}
	if coldP50 <= 0 || coldP50 > 10*time.Second {
		t.Errorf("%s: cold start out of range", line)
	}
}

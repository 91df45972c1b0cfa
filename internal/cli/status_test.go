package cli

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/discovery"
)

// TestStatusReporterPrintsEachEventOnce feeds reportStatus's reporter the snapshots of a
// crash loop, a recovery, a rolling update and a removal, each more than once (a snapshot
// changes for many reasons), and checks that every event is printed once, in the words of
// describe, with ✗ only for failures.
func TestStatusReporterPrintsEachEventOnce(t *testing.T) {
	now := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	var lines []string
	r := newStatusReporter(func(mark, line string) { lines = append(lines, strings.TrimSpace(mark+" "+line)) }, tryCommands("http://gw", false))
	ok := func(name, url string) discovery.Endpoint {
		return discovery.Endpoint{Name: name, URL: url, State: discovery.StateRunning, Ready: true}
	}
	starting := func(name string, restarts int) discovery.Endpoint {
		return discovery.Endpoint{Name: name, URL: "http://127.0.0.1:9", State: discovery.StateStarting, Restarts: restarts,
			Reason: discovery.ReasonExited, Message: "exit status 3", LastExit: "exit status 3", StderrTail: "boom\n"}
	}
	crashed := func(restarts int) discovery.Endpoint {
		e := starting("crashy-0", restarts)
		e.State, e.NextStart = discovery.StateCrashLoopBackOff, now.Add(time.Second)
		return e
	}
	agent := func(name string, desired int, eps ...discovery.Endpoint) discovery.Agent {
		return discovery.Agent{Name: name, Desired: desired, Endpoints: eps}
	}
	steps := [][]discovery.Agent{
		{agent("crashy", 1, discovery.Endpoint{Name: "crashy-0", State: discovery.StateStarting}), agent("ok", 1, discovery.Endpoint{Name: "ok-0", State: discovery.StateStarting, URL: "http://a"})},
		{agent("crashy", 1, crashed(1)), agent("ok", 1, ok("ok-0", "http://a"))},
		{agent("crashy", 1, starting("crashy-0", 1)), agent("ok", 1, ok("ok-0", "http://a"))},
		{agent("crashy", 1, crashed(2)), agent("ok", 1, ok("ok-0", "http://a"))},
		{agent("crashy", 1, starting("crashy-0", 2)), agent("ok", 1, ok("ok-0", "http://a"))},
		{agent("crashy", 1, crashed(3)), agent("ok", 1, ok("ok-0", "http://a"))},
		{agent("crashy", 1, ok("crashy-0", "http://c")), agent("ok", 1, ok("ok-0", "http://a"))},
		// A rolling update of ok: the new process of ok-0 starts next to the old one.
		{agent("crashy", 1, ok("crashy-0", "http://c")), agent("ok", 1, ok("ok-0", "http://a"), discovery.Endpoint{Name: "ok-0", URL: "http://b", State: discovery.StateStarting})},
		{agent("crashy", 1, ok("crashy-0", "http://c")), agent("ok", 1, discovery.Endpoint{Name: "ok-0", URL: "http://a", State: discovery.StateTerminating}, ok("ok-0", "http://b"))},
		{agent("crashy", 1, ok("crashy-0", "http://c")), agent("ok", 1, ok("ok-0", "http://b"))},
		// ok is removed: its replica stops, then it is gone.
		{agent("crashy", 1, ok("crashy-0", "http://c")), agent("ok", 0, discovery.Endpoint{Name: "ok-0", URL: "http://b", State: discovery.StateTerminating})},
		{agent("crashy", 1, ok("crashy-0", "http://c"))},
	}
	for _, snap := range steps {
		for range 3 {
			r.observe(snap, now)
		}
	}
	want := []string{
		"✗ replica crashy-0 exited (exit status 3: boom), restart 1 in 1s",
		"✓ agent ok           1/1 replicas ready",
		"✗ replica crashy-0 keeps exiting (exit status 3: boom), restart 2 in 1s",
		"✓ agent crashy       1/1 replicas ready",
		"✓ replica crashy-0 ready at http://c (restarts: 0)",
		"✓ all 2 agents ready (2 replicas). Try:\n  curl -s http://gw/agents\n  agentplane get replicas",
		"✓ replica ok-0 ready at http://b (restarts: 0)",
		"agent ok removed",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("printed:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

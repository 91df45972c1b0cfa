package supervisor

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/discovery"
)

// TestStartupProbeFailureSaysWhy runs a replica that never listens on $PORT: within one probe
// period after its startup budget it is reported as StartupProbeFailed, with the probe's last
// error and the last lines of its stderr; while it starts, the probe's error is reported too.
func TestStartupProbeFailureSaysWhy(t *testing.T) {
	a := testAgent(t, "deaf", 1, "noport")
	a.Spec.Probes.Startup = &v1alpha1.Probe{Path: v1alpha1.DefaultProbePath, PeriodSeconds: 4, TimeoutSeconds: 1, FailureThreshold: 3}
	period := 4 * probeUnit
	budget := period * time.Duration(1+3) // the first period's tries are not counted
	start := time.Now()
	h := startSupervisor(t, []v1alpha1.Agent{a}, Options{Backoff: Backoff{Initial: time.Minute}})

	snap := h.waitFor("the startup probe's error while starting", budget, func(s []discovery.Agent) bool {
		return len(s[0].Endpoints) == 1 && s[0].Endpoints[0].Reason == discovery.ReasonStartupProbeFailing
	})
	if e := snap[0].Endpoints[0]; e.State != discovery.StateStarting || !strings.Contains(e.Message, "connection refused") {
		t.Errorf("while starting: state %s, message %q; want Starting and the probe's error", e.State, e.Message)
	}

	snap = h.waitFor("StartupProbeFailed", budget+period+2*time.Second, func(s []discovery.Agent) bool {
		return s[0].Endpoints[0].Reason == discovery.ReasonStartupProbeFailed
	})
	// Generous for a loaded machine, but it must not wait for a later try.
	if took := time.Since(start); took > budget+period+time.Second {
		t.Errorf("the reason took %v, want it within one probe period (%v) after the budget (%v)", took, period, budget)
	}
	e := snap[0].Endpoints[0]
	if e.State != discovery.StateCrashLoopBackOff || e.LastExit != "startup probe failed" {
		t.Errorf("state %s, last exit %q", e.State, e.LastExit)
	}
	for _, want := range []string{"no answer to its startup probe within ", "3 tries", "does it listen on $PORT?", "connection refused"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message %q does not say %q", e.Message, want)
		}
	}
	if tail := strings.Split(strings.TrimSuffix(e.StderrTail, "\n"), "\n"); len(tail) != stderrTailLines || tail[len(tail)-1] != "listening on 127.0.0.1:8080" || tail[0] != "noport line 3" {
		t.Errorf("stderr tail = %q, want the last %d lines, ending with the listening line", e.StderrTail, stderrTailLines)
	}
	// stderr still goes to the replica's log, in full.
	if log := readFile(t, e.LogPath); !strings.Contains(log, "noport line 0\n") || !strings.Contains(log, "listening on 127.0.0.1:8080\n") {
		t.Errorf("the replica's log lacks its stderr:\n%s", log)
	}
}

// lockedBuffer is a bytes.Buffer for a logger and a test reading it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCrashLoopLogsOnce checks that a replica that keeps exiting the same way is logged at
// warn twice, when it first exits and once it loops, not at every restart; every restart is
// still counted, and its stderr is kept.
func TestCrashLoopLogsOnce(t *testing.T) {
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h := startSupervisor(t, []v1alpha1.Agent{testAgent(t, "crashy", 1, "crash")}, Options{
		Logger: logger, Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond},
	})
	snap := h.waitFor("5 restarts", 30*time.Second, func(s []discovery.Agent) bool { return s[0].Endpoints[0].Restarts >= 5 })
	e := snap[0].Endpoints[0]
	if e.Reason != discovery.ReasonExited || e.Message != "exit status 3" || e.StderrTail != "helper agent crashing\n" {
		t.Errorf("reason %q, message %q, stderr %q", e.Reason, e.Message, e.StderrTail)
	}
	out := logs.String()
	if n := strings.Count(out, `msg="replica exited"`); n != 1 {
		t.Errorf(`"replica exited" logged %d times, want once:\n%s`, n, out)
	}
	if n := strings.Count(out, `msg="replica keeps exiting"`); n != 1 {
		t.Errorf(`"replica keeps exiting" logged %d times, want once:\n%s`, n, out)
	}
	if n := strings.Count(out, `msg="replica started"`); n != 1 {
		t.Errorf(`"replica started" logged %d times at info, want once (then at debug):\n%s`, n, out)
	}
	if !strings.Contains(out, "restarts=2") || !strings.Contains(out, `stderr="helper agent crashing"`) {
		t.Errorf("the loop's line lacks its restart count or stderr:\n%s", out)
	}
}

func TestStderrTailBounds(t *testing.T) {
	var tail stderrTail
	long := strings.Repeat("x", 2*stderrTailLineSize)
	_, _ = tail.Write([]byte("a\r\nb\n" + long + "\n"))
	for i := range 20 {
		_, _ = tail.Write([]byte{byte('0' + i%10)})
		_, _ = tail.Write([]byte("\n"))
	}
	_, _ = tail.Write([]byte("partial"))
	got := tail.Lines()
	want := []string{"1", "2", "3", "4", "5", "6", "7", "8", "9"}
	if len(got) != stderrTailLines || !slices.Equal(got[:9], want[:9]) || got[9] != "partial" {
		t.Errorf("Lines() = %q", got)
	}
	var t2 stderrTail
	_, _ = t2.Write([]byte("a\r\n" + long + "\nb"))
	if got := t2.Lines(); len(got) != 3 || got[0] != "a" || len(got[1]) != stderrTailLineSize || got[2] != "b" {
		t.Errorf("Lines() = %q, want a, the long line cut to %d bytes, b", got, stderrTailLineSize)
	}
}

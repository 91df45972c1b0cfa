package supervisor

import (
	"os"
	"regexp"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/discovery"
)

// A process started on the supervisor's thread dies when the thread ends, as it does when
// agentplane up is killed: nothing is left running unsupervised.
func TestProcessDiesWithItsThread(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal is Linux only")
	}
	t.Parallel()
	th := startOSThread()
	var (
		proc Process
		err  error
	)
	th.do(func() {
		proc, err = ExecLauncher{}.Launch(t.Context(), ProcessSpec{
			Path: testExe, Args: []string{testExe},
			Env: []string{"SUPERVISOR_TEST_AGENT=sleeper", "GORACE=atexit_sleep_ms=0"},
		})
	})
	if err != nil {
		th.stop()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Signal(syscall.SIGKILL) })
	exited := make(chan error, 1)
	go func() { exited <- proc.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("the sleeper exited before its thread ended: %v", err)
	default:
	}

	th.stop()
	select {
	case err := <-exited:
		if got := describeExit(err); got != "signal: killed" {
			t.Errorf("the sleeper ended with %q, want signal: killed", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sleeper still runs 10s after the thread that started it ended")
	}
	if th.do(func() { t.Error("do ran a function after stop") }) {
		t.Error("do reported success after stop")
	}
}

// KillAll, for a forced exit, kills every replica's process group at once, without a grace
// period, even replicas that ignore SIGTERM.
func TestKillAllKillsEveryProcessGroup(t *testing.T) {
	t.Parallel()
	h := startSupervisor(t, []v1alpha1.Agent{
		testAgent(t, "family", 2, "family"),
		testAgent(t, "stubborn", 1, "ignoreterm"),
	}, Options{Grace: time.Minute})
	snap := h.waitFor("ready", 20*time.Second, allReady)
	var pids []int
	for _, a := range snap {
		for _, e := range a.Endpoints {
			pids = append(pids, e.PID)
			if a.Name != "family" {
				continue
			}
			log, _ := os.ReadFile(e.LogPath)
			m := regexp.MustCompile(`child pid (\d+)`).FindStringSubmatch(string(log))
			if m == nil {
				t.Fatalf("no child pid in the log of %s:\n%s", e.Name, log)
			}
			child, _ := strconv.Atoi(m[1])
			pids = append(pids, child)
		}
	}
	if len(pids) != 5 {
		t.Fatalf("%d processes, want 3 replicas and 2 children: %v", len(pids), pids)
	}

	h.s.KillAll()
	for _, pid := range pids {
		waitGone(t, pid, 5*time.Second) // the grace period is a minute: only SIGKILL is this quick
	}
	// Replicas started after KillAll are killed at once too; Start still stops cleanly.
	h.waitFor("a restart after KillAll", 20*time.Second, func(s []discovery.Agent) bool {
		return s[0].Endpoints[0].Restarts > 0
	})
	if err := h.shutdown(20 * time.Second); err != nil {
		t.Fatal(err)
	}
}

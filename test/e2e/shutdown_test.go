package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testutil"
)

// groupMembers returns the live processes (not zombies) of process group pgid.
func groupMembers(pgid int) []int {
	dir, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, d := range dir {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		_, rest, _ := strings.Cut(string(stat), ") ")
		f := strings.Fields(rest) // f[0] is the state, f[2] the process group
		if len(f) > 2 && f[0] != "Z" && f[0] != "X" && f[2] == strconv.Itoa(pgid) {
			out = append(out, pid)
		}
	}
	return out
}

// replicaGroups returns the process group of every replica (each replica leads its own) and
// makes sure the test leaves none of them running, whatever happens.
func replicaGroups(t *testing.T, up *upProcess) map[string]int {
	t.Helper()
	groups := map[string]int{}
	for name, r := range replicas(t, up.URL) {
		if r.PID <= 0 {
			t.Fatalf("replica %s has no pid: %+v", name, r)
		}
		groups[name] = r.PID
	}
	t.Cleanup(func() {
		for _, pgid := range groups {
			if len(groupMembers(pgid)) > 0 {
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
		}
	})
	return groups
}

// waitGroupsGone waits until no process is left in any of the groups.
func waitGroupsGone(t *testing.T, groups map[string]int, limit time.Duration, after string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		left := map[string][]int{}
		for name, pgid := range groups {
			if m := groupMembers(pgid); len(m) > 0 {
				left[name] = m
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v after %s, replica processes still run (replica: pids): %v", limit, after, left)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
	}
}

// When agentplane up is killed with SIGKILL, it cannot stop anything: its replicas must die
// with it (parent-death signal), not run on until the next up on that data directory.
func TestReplicasDieWhenUpIsKilled(t *testing.T) {
	up := startUp(t)
	groups := replicaGroups(t, up)
	if len(groups) != 4 {
		t.Fatalf("%d replicas, want 4: %v", len(groups), groups)
	}
	if err := up.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-up.done
	up.done <- nil
	waitGroupsGone(t, groups, 10*time.Second, "kill -9 of agentplane up")
}

// stubbornAgents are replicas that survive SIGTERM: the leader (a shell) ignores it, and so
// does a child it leaves in the group (sleep), which no parent-death signal reaches.
const stubbornAgents = `apiVersion: agentplane.io/v1alpha1
kind: Agent
metadata:
  name: stubborn
spec:
  replicas: 2
  command: [sh, -c, 'trap "" TERM; sleep 600 & "$0" simagent & wait']
  args: [%q]
  env:
    - {name: GORACE, value: atexit_sleep_ms=0}
`

// A second Ctrl-C exits at once, and kills every replica's process group before it does, even
// while replicas that ignore SIGTERM hold up a clean stop.
func TestSecondSignalKillsReplicas(t *testing.T) {
	manifest := filepath.Join(t.TempDir(), "stubborn.yaml")
	if err := os.WriteFile(manifest, fmt.Appendf(nil, stubbornAgents, binary), 0o600); err != nil {
		t.Fatal(err)
	}
	up := startUp(t, "-f", manifest, "--grace", "5m")
	groups := replicaGroups(t, up)
	for name, pgid := range groups {
		if n := len(groupMembers(pgid)); n != 3 {
			t.Fatalf("replica %s has %d processes, want 3 (shell, sleep, simagent)", name, n)
		}
	}

	if err := up.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		return testutil.Check(strings.Contains(readFile(t, filepath.Join(up.DataDir, "agentplane.log")), `"msg":"stopping replicas"`),
			"the supervisor has not started to stop replicas")
	})
	if err := up.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-up.done:
		up.done <- err
		var ee *exec.ExitError
		if !asExit(err, &ee) || ee.ExitCode() != 130 {
			t.Fatalf("agentplane up ended with %v after the second SIGINT, want exit status 130", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agentplane up still runs 10s after the second SIGINT")
	}
	waitGroupsGone(t, groups, 10*time.Second, "the second SIGINT")
}

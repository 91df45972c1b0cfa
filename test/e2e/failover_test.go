package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testutil"
)

type taskResult struct {
	ID     string
	State  string
	Status int
	Err    string
	Took   time.Duration
}

func parseTask(r reply) (id, state string) {
	id, state, _ = testutil.TaskIDAndState(r.Result)
	return id, state
}

// ejections reads the gateway's log for replica ejections after since.
func ejections(t *testing.T, dataDir string, since time.Time) map[string]time.Time {
	t.Helper()
	f, err := os.Open(filepath.Join(dataDir, "agentplane.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]time.Time{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Time    time.Time `json:"time"`
			Msg     string    `json:"msg"`
			Replica string    `json:"replica"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Msg != "replica ejected" || l.Time.Before(since) {
			continue
		}
		if _, seen := out[l.Replica]; !seen {
			out[l.Replica] = l.Time
		}
	}
	return out
}

// TestNoTaskLostWhenReplicasDieOrHang is the fault-injection test of the failover promise:
// 300 concurrent tasks on 3 replicas; mid-run one replica is SIGKILLed and another frozen
// (SIGSTOP, so it accepts connections and never answers). Every task must complete, each
// exactly once from the client's view.
func TestNoTaskLostWhenReplicasDieOrHang(t *testing.T) {
	up := startUp(t, "-f", "testdata/failover.yaml", "--task-timeout", "5s")
	reps := replicas(t, up.URL)
	killed, hung := reps["work-0"], reps["work-1"]
	t.Cleanup(func() { _ = syscall.Kill(hung.PID, syscall.SIGCONT) })

	const n = 300
	results := make([]taskResult, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			t0 := time.Now()
			r, err := post(context.Background(), up.URL+"/agents/work", sendV1(i, fmt.Sprintf("task %d", i)))
			res := taskResult{Status: r.Status, Took: time.Since(t0)}
			switch {
			case err != nil:
				res.Err = err.Error()
			case r.Error != nil:
				res.Err = r.Error.Message
			default:
				res.ID, res.State = parseTask(r)
			}
			results[i] = res
		})
	}
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
		in := replicasInFlight(t, up.URL)
		return testutil.Check(in["work-0"] > 0 && in["work-1"] > 0 && in["work-2"] > 0, "tasks in flight per replica: %v, want some on every one", in)
	})
	faultAt := time.Now()
	if err := syscall.Kill(killed.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(hung.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	total := time.Since(start)

	ids := map[string]int{}
	var failed []string
	var took []time.Duration
	for i, r := range results {
		took = append(took, r.Took)
		if r.Err != "" || r.State != "TASK_STATE_COMPLETED" {
			failed = append(failed, fmt.Sprintf("task %d: state %q, HTTP %d, %s", i, r.State, r.Status, r.Err))
			continue
		}
		ids[r.ID]++
	}
	slices.Sort(took)
	ej := ejections(t, up.DataDir, faultAt.Add(-time.Second))
	t.Logf("REPORT %d/%d tasks completed in %v; task latency p50 %v, p99 %v, max %v",
		n-len(failed), n, total.Round(time.Millisecond), took[n/2].Round(time.Millisecond),
		took[n*99/100].Round(time.Millisecond), took[n-1].Round(time.Millisecond))
	for name, at := range ej {
		t.Logf("REPORT replica %s ejected %v after the fault", name, at.Sub(faultAt).Round(time.Millisecond))
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d tasks did not complete:\n%s", len(failed), n, strings.Join(failed[:min(10, len(failed))], "\n"))
	}
	if len(ids) != n {
		t.Fatalf("%d distinct task ids for %d tasks: a task was answered twice or ids collide", len(ids), n)
	}
	if _, ok := ej["work-0"]; !ok {
		t.Errorf("the killed replica was never ejected")
	}
	if _, ok := ej["work-1"]; !ok {
		t.Errorf("the hung replica was never ejected")
	}
}

// TestGetTaskAfterItsReplicaDied reads a finished task from the journal once the replica that
// ran it is gone.
func TestGetTaskAfterItsReplicaDied(t *testing.T) {
	up := startUp(t)
	r, err := post(t.Context(), up.URL+"/agents/echo", sendV1(1, "x"))
	if err != nil || r.Error != nil {
		t.Fatalf("send: %v %s", err, r.Body)
	}
	id, _ := parseTask(r)
	rep := replicas(t, up.URL)[r.Replica]
	if err := syscall.Kill(rep.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		return testutil.Check(replicas(t, up.URL)[r.Replica].PID != rep.PID, "replica %s is not seen as gone", r.Replica)
	})
	for _, method := range []string{"GetTask", "tasks/get"} {
		g, err := post(t.Context(), up.URL+"/agents/echo", fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":%q,"params":{"id":%q}}`, method, id))
		if err != nil || g.Error != nil {
			t.Fatalf("%s after the replica died: %v %s", method, err, g.Body)
		}
		if gid, state := parseTask(g); gid != id || state != "TASK_STATE_COMPLETED" || !strings.Contains(g.Body, "processed") {
			t.Fatalf("%s after the replica died: %s", method, g.Body)
		}
	}
}

// TestAsyncTasksSurviveAGatewayCrash queues tasks, kills agentplane up with SIGKILL while they
// run, starts it again on the same data directory, and waits for every task to end.
func TestAsyncTasksSurviveAGatewayCrash(t *testing.T) {
	dataDir := t.TempDir()
	up := startUp(t, "-f", "testdata/async.yaml", "--data-dir", dataDir)
	const n = 60
	var ids []string
	for i := range n {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"SendMessage","params":{"message":{"messageId":"async-%d","role":"ROLE_USER","parts":[{"text":"x"}]},"configuration":{"returnImmediately":true}}}`, i, i)
		r, err := post(t.Context(), up.URL+"/agents/batch", body)
		if err != nil || r.Error != nil {
			t.Fatalf("async send %d: %v %s", i, err, r.Body)
		}
		id, state := parseTask(r)
		if id == "" || state != "TASK_STATE_SUBMITTED" {
			t.Fatalf("async send %d answered %s", i, r.Body)
		}
		ids = append(ids, id)
	}
	// Some finished, some running, most still queued.
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		r, err := post(t.Context(), up.URL+"/agents/batch", fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":%q}}`, ids[0]))
		if err != nil {
			return err
		}
		_, state := parseTask(r)
		return testutil.Check(state == "TASK_STATE_COMPLETED" && inFlight(t, up.URL) > 0, "first task %s, %d in flight; want it completed and others running", state, inFlight(t, up.URL))
	})
	if err := up.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-up.done
	up.done <- nil
	t.Logf("killed agentplane up with %d async tasks accepted", n)

	again := startUp(t, "-f", "testdata/async.yaml", "--data-dir", dataDir)
	states := map[string]string{}
	testutil.Eventually(t, 90*time.Second, 20*time.Millisecond, func() error {
		for _, id := range ids {
			if s := states[id]; s == "TASK_STATE_COMPLETED" || s == "TASK_STATE_FAILED" || s == "TASK_STATE_CANCELED" {
				continue
			}
			r, err := post(t.Context(), again.URL+"/agents/batch", fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":%q}}`, id))
			if err != nil || r.Error != nil {
				t.Fatalf("GetTask %s: %v %s", id, err, r.Body)
			}
			_, states[id] = parseTask(r)
		}
		for _, s := range states {
			if s != "TASK_STATE_COMPLETED" && s != "TASK_STATE_FAILED" && s != "TASK_STATE_CANCELED" {
				return fmt.Errorf("not every accepted task is in a terminal state: %v", states)
			}
		}
		return testutil.Check(len(states) == n, "%d task states, want %d", len(states), n)
	})
	completed := 0
	for _, s := range states {
		if s == "TASK_STATE_COMPLETED" {
			completed++
		}
	}
	t.Logf("REPORT after kill -9 and restart: %d/%d async tasks completed", completed, n)
	if completed != n {
		t.Fatalf("%d of %d tasks completed; states: %v", completed, n, states)
	}
}

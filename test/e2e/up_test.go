package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testutil"
)

func TestTasksInBothDialectsAndStreaming(t *testing.T) {
	up := startUp(t)
	url := up.URL + "/agents/echo"
	ctx := t.Context()

	r, err := post(ctx, url, sendV1(1, "patient reports a headache"))
	if err != nil || r.Error != nil || !strings.Contains(string(r.Result), "TASK_STATE_COMPLETED") {
		t.Fatalf("v1.0 SendMessage: %v %s", err, r.Body)
	}
	r, err = post(ctx, url, `{"jsonrpc":"2.0","id":2,"method":"message/send","params":{"message":{"kind":"message","messageId":"e2e-v03","role":"user","parts":[{"kind":"text","text":"hello"}]}}}`)
	if err != nil || r.Error != nil || !strings.Contains(string(r.Result), `"state":"completed"`) {
		t.Fatalf("v0.3 message/send: %v %s", err, r.Body)
	}

	for _, tc := range []struct{ method, msg, final string }{
		{"SendStreamingMessage", `{"messageId":"e2e-s1","role":"ROLE_USER","parts":[{"text":"x"}]}`, "TASK_STATE_COMPLETED"},
		{"message/stream", `{"kind":"message","messageId":"e2e-s2","role":"user","parts":[{"kind":"text","text":"x"}]}`, `"state":"completed"`},
	} {
		r, err := post(ctx, url, fmt.Sprintf(`{"jsonrpc":"2.0","id":3,"method":%q,"params":{"message":%s}}`, tc.method, tc.msg))
		if err != nil {
			t.Fatalf("%s: %v", tc.method, err)
		}
		events := sseData(r.Body)
		if len(events) < 5 { // task, working, 3 chunks, final
			t.Fatalf("%s: %d events, want at least 5:\n%s", tc.method, len(events), r.Body)
		}
		if last := events[len(events)-1]; !strings.Contains(last, tc.final) {
			t.Fatalf("%s: last event %s, want %s", tc.method, last, tc.final)
		}
	}

	// The agent card is served with the gateway's URL.
	res, err := client.Get(url + "/.well-known/agent-card.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var card struct {
		Interfaces []struct{ URL string } `json:"supportedInterfaces"`
	}
	if err := decode(res.Body, &card); err != nil || len(card.Interfaces) == 0 || card.Interfaces[0].URL != url+"/" {
		t.Fatalf("agent card: %v %+v", err, card)
	}
}

func TestLoadSpreadsAcrossReplicas(t *testing.T) {
	up := startUp(t)
	const n = 150
	counts := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 12) // 12 at a time: all three replicas (capacity 4 each) kept busy
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r, err := post(t.Context(), up.URL+"/agents/echo", sendV1(i, "x"))
			if err != nil || r.Error != nil {
				t.Errorf("task %d: %v %s", i, err, r.Body)
				return
			}
			mu.Lock()
			counts[r.Replica]++
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("tasks per replica: %v", counts)
	for _, name := range []string{"echo-0", "echo-1", "echo-2"} {
		// Equal capacity, equal share: each replica within ±40% of n/3.
		if c := counts[name]; c < n/3*6/10 || c > n/3*14/10 {
			t.Errorf("replica %s served %d of %d tasks; want about %d", name, c, n, n/3)
		}
	}
}

func TestKilledReplicaIsRestartedAndServesAgain(t *testing.T) {
	up := startUp(t)
	before := replicas(t, up.URL)["echo-1"]
	if !before.Ready || before.PID == 0 {
		t.Fatalf("echo-1 before the kill: %+v", before)
	}

	// Keep tasks flowing while the replica is killed: every one must succeed.
	ctx, stopLoad := context.WithCancel(t.Context())
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		ok, fail  int
		restarted bool // echo-1 is back: an answer from it now comes from the new process
		onNew     int  // tasks the restarted echo-1 served
	)
	for w := range 6 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				r, err := post(context.WithoutCancel(ctx), up.URL+"/agents/echo", sendV1(w*100000+i, "x"))
				mu.Lock()
				if err != nil || r.Error != nil {
					fail++
					t.Errorf("task during the kill failed: %v %s", err, r.Body)
				} else {
					ok++
					if restarted && r.Replica == "echo-1" {
						onNew++
					}
				}
				mu.Unlock()
			}
		})
	}
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
		n := replicasInFlight(t, up.URL)["echo-1"]
		return testutil.Check(n > 0, "no task in flight on echo-1")
	})
	killedAt := time.Now()
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var after replica
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		after = replicas(t, up.URL)["echo-1"]
		return testutil.Check(after.Ready && after.Restarts == 1 && after.PID != before.PID, "echo-1 is not restarted and ready: %+v", after)
	})
	t.Logf("echo-1 back %v after SIGKILL (pid %d → %d)", time.Since(killedAt).Round(time.Millisecond), before.PID, after.PID)
	// Tasks keep succeeding after the restart, and the restarted replica is back in rotation: it
	// serves some of them. (Under load, where spreading matters: one client at a time goes to the
	// replica measured fastest, which need not be the restarted one.)
	mu.Lock()
	okAtRestart := ok
	restarted = true
	mu.Unlock()
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		return testutil.Check(ok >= okAtRestart+20 && onNew > 0, "%d tasks since echo-1 restarted, %d on it; want 20, some on it", ok-okAtRestart, onNew)
	})
	stopLoad()
	wg.Wait()
	t.Logf("tasks during the kill: %d ok, %d failed, %d on the restarted echo-1", ok, fail, onNew)
	if ok < 50 {
		t.Fatalf("only %d tasks ran during the kill", ok)
	}

	if !strings.Contains(up.stderr.String(), "replica echo-1 exited") {
		t.Errorf("up did not report the exit:\n%s", up.stderr.String())
	}
}

func TestGracefulShutdownFinishesInFlightTasks(t *testing.T) {
	up := startUp(t)
	reps := replicas(t, up.URL)
	type result struct {
		r   reply
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := post(context.Background(), up.URL+"/agents/slow", sendV1(1, "x"))
		done <- result{r, err}
	}()
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() error {
		return testutil.Check(strings.Contains(readFile(t, filepath.Join(up.DataDir, "agentplane.log")), `"msg":"replica ready"`) &&
			inFlight(t, up.URL) > 0, "the slow task is not in flight")
	})
	start := time.Now()
	if err := up.stop(t); err != nil {
		t.Fatalf("agentplane up exited with %v after SIGTERM", err)
	}
	res := <-done
	if res.err != nil || res.r.Error != nil || !strings.Contains(string(res.r.Result), "TASK_STATE_COMPLETED") {
		t.Fatalf("in-flight task during shutdown: %v %s", res.err, res.r.Body)
	}
	t.Logf("shutdown took %v with a task in flight", time.Since(start).Round(time.Millisecond))
	for name, r := range reps {
		if !processGone(r.PID) {
			t.Errorf("replica %s (pid %d) still runs after agentplane up exited", name, r.PID)
		}
	}
}

func TestBadManifestIsRejectedWithAClearError(t *testing.T) {
	out, err := exec.Command(binary, "up", "-f", "testdata/bad.yaml", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0").CombinedOutput()
	var ee *exec.ExitError
	if !asExit(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit = %v, want status 2; output:\n%s", err, out)
	}
	for _, want := range []string{"testdata/bad.yaml", `unknown field "spec.maxConcurency"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output does not mention %q:\n%s", want, out)
		}
	}
}

func TestBadRequestsGetClearErrors(t *testing.T) {
	up := startUp(t)
	for _, tc := range []struct {
		name, agent, body string
		status, code      int
	}{
		{"unknown agent", "nope", sendV1(1, "x"), 404, -32050},
		{"malformed JSON", "echo", `{"jsonrpc":"2.0","id":1,"method":`, 200, -32700},
		{"unknown method", "echo", `{"jsonrpc":"2.0","id":1,"method":"tasks/obliterate"}`, 200, -32601},
		{"oversized body", "echo", sendV1(1, strings.Repeat("a", 9<<20)), 413, -32052},
		{"unknown task", "echo", `{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"no-such-task"}}`, 200, -32001},
	} {
		r, err := post(t.Context(), up.URL+"/agents/"+tc.agent, tc.body)
		if err != nil || r.Status != tc.status || r.Error == nil || r.Error.Code != tc.code {
			t.Errorf("%s: got %v %d %s; want HTTP %d, code %d", tc.name, err, r.Status, r.Body, tc.status, tc.code)
		}
	}
	if r, err := post(t.Context(), up.URL+"/agents/echo", sendV1(1, "still serving")); err != nil || r.Error != nil {
		t.Fatalf("valid request after bad ones: %v %s", err, r.Body)
	}
}

func TestGetCommands(t *testing.T) {
	up := startUp(t)
	out, err := exec.Command(binary, "get", "replicas", "--gateway", up.URL).CombinedOutput()
	if err != nil {
		t.Fatalf("get replicas: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "AGENT") || !strings.Contains(string(out), "echo-2") {
		t.Fatalf("get replicas printed:\n%s", out)
	}
	out, err = exec.Command(binary, "get", "agents", "-o", "json", "--gateway", up.URL).Output()
	if err != nil {
		t.Fatalf("get agents -o json: %v", err)
	}
	var agents []struct {
		Name  string `json:"name"`
		Ready int    `json:"ready"`
	}
	if err := decode(strings.NewReader(string(out)), &agents); err != nil || len(agents) != 2 || agents[0].Name != "echo" || agents[0].Ready != 3 {
		t.Fatalf("get agents -o json: %v %s", err, out)
	}
	if out, err := exec.Command(binary, "get", "agents", "--gateway", "http://127.0.0.1:1").CombinedOutput(); err == nil || !strings.Contains(string(out), "cannot reach the gateway") {
		t.Fatalf("get with no gateway: %v %s", err, out)
	}
	if _, err := post(t.Context(), up.URL+"/agents/echo", sendV1(1, "x")); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(binary, "get", "tasks", "--gateway", up.URL).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "completed") || !strings.HasPrefix(string(out), "ID") {
		t.Fatalf("get tasks: %v\n%s", err, out)
	}
	// Replica logs land in the data directory.
	if log := readFile(t, filepath.Join(up.DataDir, "logs", "echo", "echo-0.log")); !strings.Contains(log, "start echo-0") {
		t.Fatalf("replica log:\n%s", log)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func inFlight(t *testing.T, base string) int {
	n := 0
	for _, r := range replicasInFlight(t, base) {
		n += r
	}
	return n
}

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testutil"
)

// echoManifest is an echo agent with n replicas; latency changes its spec, for a rolling update.
func echoManifest(n int, latency string) string {
	return fmt.Sprintf(`apiVersion: agentplane.io/v1alpha1
kind: Agent
metadata:
  name: echo
spec:
  replicas: %d
  maxConcurrency: 4
  command: [agentplane, simagent]
  args: ["--latency", %q]
  probes:
    readiness: {periodSeconds: 1}
    liveness: {periodSeconds: 1}
`, n, latency)
}

// agentplane runs the built binary with args and returns its stdout; it fails the test on a
// non-zero exit.
func agentplane(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("agentplane %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func readyReplicas(t *testing.T, base, agent string) (ready, total int) {
	t.Helper()
	for _, r := range replicas(t, base) {
		if r.Agent == agent {
			total++
			if r.Ready {
				ready++
			}
		}
	}
	return ready, total
}

// `agentplane apply` scales an agent up, rolls it to a new spec and scales it down while tasks
// keep flowing, and not one task fails; `logs` and `describe` show the result.
func TestApplyScalesAndRollsUnderLoad(t *testing.T) {
	dir := t.TempDir()
	manifest := filepath.Join(dir, "echo.yaml")
	write := func(n int, latency string) {
		t.Helper()
		if err := os.WriteFile(manifest, []byte(echoManifest(n, latency)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(1, "50ms")
	up := startUp(t, "-f", manifest)

	// Continuous load: 6 clients, more than one replica's maxConcurrency.
	ctx, stopLoad := context.WithCancel(t.Context())
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ok, fail int
		served   = map[string]int{}
		ids      atomic.Int64
	)
	for range 6 {
		wg.Go(func() {
			for ctx.Err() == nil {
				r, err := post(context.WithoutCancel(ctx), up.URL+"/agents/echo", sendV1(int(ids.Add(1)), "x"))
				mu.Lock()
				if err != nil || r.Error != nil || r.Status != 200 {
					fail++
					t.Errorf("task failed during apply: %v %d %s", err, r.Status, r.Body)
				} else {
					ok++
					served[r.Replica]++
				}
				mu.Unlock()
			}
		})
	}
	defer func() { stopLoad(); wg.Wait() }()
	load := func() int {
		mu.Lock()
		defer mu.Unlock()
		return ok
	}
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error { return testutil.Check(load() > 10, "no tasks flow") })

	step := func(what, want string, n int) {
		t.Helper()
		before := load()
		out := agentplane(t, "apply", "-f", manifest, "--gateway", up.URL)
		if out != want {
			t.Fatalf("apply (%s) printed %q, want %q", what, out, want)
		}
		testutil.Eventually(t, 60*time.Second, 20*time.Millisecond, func() error {
			ready, total := readyReplicas(t, up.URL, "echo")
			return testutil.Check(ready == n && total == n, "%d of %d echo replicas ready, want %d of %d", ready, total, n, n)
		})
		testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error { return testutil.Check(load() > before+20, "no tasks flow after %s", what) })
	}
	write(3, "50ms")
	step("scale up", "agent/echo scaled from 1 to 3 replicas\n", 3)
	write(3, "60ms")
	step("rolling update", "agent/echo rolled out\n", 3)
	write(1, "60ms")
	step("scale down", "agent/echo scaled from 3 to 1 replicas\n", 1)

	stopLoad()
	wg.Wait()
	t.Logf("tasks during apply: %d ok, %d failed; per replica: %v", ok, fail, served)
	if fail > 0 {
		t.Fatalf("%d tasks failed during apply", fail)
	}
	if served["echo-1"] == 0 || served["echo-2"] == 0 {
		t.Errorf("the added replicas served no tasks: %v", served)
	}

	// The same manifest again changes nothing.
	if out := agentplane(t, "apply", "-f", manifest, "--gateway", up.URL); out != "agent/echo unchanged\n" {
		t.Errorf("second apply printed %q", out)
	}

	// logs: the replica's own log, with agentplane's start lines; two starts of echo-0 (the
	// rolling update replaced it).
	logs := agentplane(t, "logs", "echo-0", "--gateway", up.URL)
	if n := strings.Count(logs, "--- agentplane: start echo-0 attempt 1 at "); n != 2 {
		t.Errorf("log of echo-0 shows %d starts, want 2:\n%s", n, logs)
	}
	if tail := agentplane(t, "logs", "echo", "--tail", "1", "--gateway", up.URL); strings.Count(tail, "\n") != 1 {
		t.Errorf("logs --tail 1 printed %q", tail)
	}
	if removed := agentplane(t, "logs", "echo-2", "--gateway", up.URL); !strings.Contains(removed, "--- agentplane: echo-2 exited: exit status 0 ---") {
		t.Errorf("log of the removed echo-2 does not show a clean exit:\n%s", removed)
	}

	// describe: the spec as applied, conditions and replicas.
	desc := agentplane(t, "describe", "agent", "echo", "--gateway", up.URL)
	for _, want := range []string{"Name:", "echo", "1 desired | 1 total | 1 ready", "--latency 60ms", "AllReplicasReady", "echo-0", "Running"} {
		if !strings.Contains(desc, want) {
			t.Errorf("describe lacks %q:\n%s", want, desc)
		}
	}
}

// A manifest the gateway cannot apply changes nothing and says why.
func TestApplyRejectsBadManifests(t *testing.T) {
	up := startUp(t)
	before := replicas(t, up.URL)
	var stderr bytes.Buffer
	cmd := exec.Command(binary, "apply", "-f", "testdata/bad.yaml", "--gateway", up.URL)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !asExit(err, &ee) || ee.ExitCode() != 2 || len(out) != 0 {
		t.Fatalf("exit %v, stdout %q; want status 2 and nothing on stdout", err, out)
	}
	if !strings.Contains(stderr.String(), `unknown field "spec.maxConcurency"`) {
		t.Errorf("stderr does not name the field:\n%s", stderr.String())
	}
	after := replicas(t, up.URL)
	for name, r := range before {
		if after[name].PID != r.PID {
			t.Errorf("replica %s changed: %+v -> %+v", name, r, after[name])
		}
	}
}

// `apply` returns once a new agent is ready, so that a task sent right after it succeeds; an
// agent that cannot start fails apply within its --wait, naming the replica and why; and
// --wait=false returns without waiting.
func TestApplyWaitsUntilReady(t *testing.T) {
	dir := t.TempDir()
	first := filepath.Join(dir, "echo.yaml")
	if err := os.WriteFile(first, []byte(echoManifest(1, "10ms")), 0o644); err != nil {
		t.Fatal(err)
	}
	up := startUp(t, "-f", first)

	fresh := filepath.Join(dir, "fresh.yaml")
	manifest := strings.Replace(echoManifest(2, "10ms"), "name: echo", "name: fresh", 1)
	if err := os.WriteFile(fresh, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := agentplane(t, "apply", "-f", fresh, "--gateway", up.URL); out != "agent/echo unchanged\nagent/fresh created\n" {
		t.Fatalf("apply printed %q", out)
	}
	for i := range 4 {
		r, err := post(t.Context(), up.URL+"/agents/fresh", sendV1(1000+i, "right after apply"))
		if err != nil || r.Status != 200 || r.Error != nil {
			t.Fatalf("task %d right after apply: %v %d %s", i, err, r.Status, r.Body)
		}
	}

	brokenManifest := func(name string) string {
		p := filepath.Join(dir, name+".yaml")
		m := fmt.Sprintf("apiVersion: agentplane.io/v1alpha1\nkind: Agent\nmetadata:\n  name: %s\nspec:\n  command: [sh, -c, \"echo cannot load the model >&2; exit 1\"]\n", name)
		if err := os.WriteFile(p, []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(binary, "apply", "-f", brokenManifest("broken"), "--wait=3s", "--gateway", up.URL)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	var ee *exec.ExitError
	if !asExit(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stdout.String(), "agent/broken created\n") {
		t.Fatalf("apply of a broken agent: %v, stdout %q, stderr:\n%s", err, stdout.String(), stderr.String())
	}
	for _, want := range []string{"agent/broken is not ready after 3s", "broken-0: ", "last exit: exit status 1", "agentplane logs broken-0"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("apply's error does not say %q:\n%s", want, stderr.String())
		}
	}
	if took > 15*time.Second {
		t.Errorf("apply --wait=3s took %s", took)
	}

	start = time.Now()
	if out := agentplane(t, "apply", "-f", brokenManifest("broken2"), "--wait=false", "--gateway", up.URL); !strings.Contains(out, "agent/broken2 created\n") {
		t.Errorf("apply --wait=false printed %q", out)
	}
	if ready, _ := readyReplicas(t, up.URL, "broken2"); ready != 0 || time.Since(start) > 10*time.Second {
		t.Errorf("apply --wait=false: %d replicas ready after %s", ready, time.Since(start))
	}
}

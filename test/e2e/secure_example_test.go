package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testutil"
)

// runAgentplane runs the CLI with extra environment and returns its output and exit code.
func runAgentplane(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("agentplane %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// TestSecureExample runs the walkthrough of examples/secure as its README tells it: keys from
// gen-keys.sh, up with its GatewayConfig, a task as clinic A, clinic B refused and blind to it,
// the command line with the operator's key from a context (get, get task, describe, logs -f,
// apply), a nurse's key refused by the admin API, and the audit log verified with its key and
// checkpoints after up stops.
func TestSecureExample(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../../examples/secure")); err != nil {
		t.Fatal(err)
	}
	for _, local := range []string{"keys", "state"} { // a run of the example in the checkout
		if err := os.RemoveAll(filepath.Join(dir, local)); err != nil {
			t.Fatal(err)
		}
	}
	gen := exec.Command("sh", "gen-keys.sh")
	gen.Dir = dir
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("gen-keys.sh: %v\n%s", err, out)
	}
	key := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, "keys", name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(filepath.Join(dir, "keys", name+".key")); fi.Mode().Perm() != 0o600 {
			t.Errorf("keys/%s.key has mode %v", name, fi.Mode().Perm())
		}
		return string(b)
	}
	nurseA, nurseB, leadA, ops := key("nurse-a"), key("nurse-b"), key("lead-a"), key("ops")

	up := startUpIn(t, dir, "-f", "agents", "--config", "gateway.yaml", "--data-dir", filepath.Join(dir, "state"))
	as := func(k string) http.Header { return http.Header{"Authorization": {"Bearer " + k}} }
	// The console's suggestions say that credentials are needed, and print none.
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		out := up.stderr.String()
		return testutil.Check(strings.Contains(out, `curl -s -H "Authorization: Bearer $AGENTPLANE_TOKEN" `+up.URL+"/agents"), "up's console:\n%s", out)
	})
	for _, k := range []string{nurseA, nurseB, leadA, ops} {
		if strings.Contains(up.stderr.String(), k) {
			t.Fatal("up's console shows an API key")
		}
	}

	// A call without a key is 401.
	if r, _ := postHeader(t.Context(), client, up.URL+"/agents/triage", sendV1(1, "hi"), nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("no key: %d %s", r.Status, r.Body)
	}
	// Clinic A's nurse sends a task to triage.
	r, err := postHeader(t.Context(), client, up.URL+"/agents/triage", sendV1(2, "patient reports chest pain since this morning"), as(nurseA))
	if err != nil || r.Status != http.StatusOK || r.Error != nil {
		t.Fatalf("nurse-a to triage: %v %d %s", err, r.Status, r.Body)
	}
	var sent struct {
		Task struct {
			ID string `json:"id"`
		} `json:"task"`
	}
	if err := json.Unmarshal(r.Result, &sent); err != nil || sent.Task.ID == "" {
		t.Fatalf("no task id in %s", r.Result)
	}
	task := sent.Task.ID
	getTask := fmt.Sprintf(`{"jsonrpc":"2.0","id":3,"method":"GetTask","params":{"id":%q}}`, task)

	// Clinic B may not call radiology, and does not see clinic A's task; clinic A's lead does.
	if r, _ := postHeader(t.Context(), client, up.URL+"/agents/radiology", sendV1(4, "CT head"), as(nurseB)); r.Status != http.StatusForbidden || r.Error == nil || r.Error.Code != -32053 {
		t.Errorf("nurse-b to radiology: %d %s", r.Status, r.Body)
	}
	if r, _ := postHeader(t.Context(), client, up.URL+"/agents/triage", getTask, as(nurseB)); r.Error == nil || r.Error.Code != -32001 {
		t.Errorf("nurse-b reads clinic A's task: %d %s", r.Status, r.Body)
	}
	if r, _ := postHeader(t.Context(), client, up.URL+"/agents/triage", getTask, as(leadA)); r.Error != nil || !strings.Contains(string(r.Result), task) {
		t.Errorf("lead-a (tenant admin) reads clinic A's task: %d %s", r.Status, r.Body)
	}
	// nurse-b may call triage: its own tenant's policy.
	if r, _ := postHeader(t.Context(), client, up.URL+"/agents/triage", sendV1(5, "hi"), as(nurseB)); r.Status != http.StatusOK || r.Error != nil {
		t.Errorf("nurse-b to triage: %d %s", r.Status, r.Body)
	}

	// The command line, with the operator's key in a context; nothing from this machine's own
	// configuration or environment.
	env := []string{"AGENTPLANE_CONFIG=" + filepath.Join(dir, "cli.yaml"), "AGENTPLANE_TOKEN=", "AGENTPLANE_GATEWAY="}
	cli := func(args ...string) string {
		t.Helper()
		out, errs, code := runAgentplane(t, env, args...)
		if code != 0 {
			t.Fatalf("agentplane %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
		if strings.Contains(out+errs, ops) {
			t.Fatalf("agentplane %s printed the token", strings.Join(args, " "))
		}
		return out
	}
	// Before there is a context: 401, saying what to do.
	if _, errs, code := runAgentplane(t, env, "get", "agents", "--gateway", up.URL); code != 1 || !strings.Contains(errs, "401 Unauthorized") || !strings.Contains(errs, "config set-context") {
		t.Errorf("get agents without credentials: %d %s", code, errs)
	}
	cli("config", "set-context", "secure-example", "--gateway", up.URL, "--token-file", filepath.Join(dir, "keys", "ops.key"), "--use")
	if out := cli("config", "view"); strings.Contains(out, ops) || !strings.Contains(out, "ops.key") {
		t.Errorf("config view:\n%s", out)
	}
	if out := cli("get", "agents"); !strings.Contains(out, "triage") || !strings.Contains(out, "radiology") {
		t.Errorf("get agents:\n%s", out)
	}
	if out := cli("get", "tasks", "--agent", "triage"); !strings.Contains(out, task) {
		t.Errorf("get tasks --agent triage has no %s:\n%s", task, out)
	}
	if out := cli("get", "task", task); !strings.Contains(out, "Agent:     triage") || !strings.Contains(out, "State:     completed") ||
		strings.Contains(out, "chest pain") {
		t.Errorf("get task:\n%s", out)
	}
	if out := cli("describe", "agent", "triage"); !strings.Contains(out, "2 desired | 2 total | 2 ready") {
		t.Errorf("describe agent triage:\n%s", out)
	}

	// logs -f: a few lines, then Ctrl-C ends it.
	logs := exec.Command(binary, "logs", "triage", "--replica", "0", "-f")
	logs.Env = append(os.Environ(), env...)
	stdout, err := logs.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := logs.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(20 * time.Second)
	for seen := false; !seen; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("logs -f ended by itself")
			}
			seen = strings.Contains(l, "simagent listening")
		case <-deadline:
			_ = logs.Process.Kill()
			t.Fatal("logs -f printed no start of triage-0 in 20s")
		}
	}
	_ = logs.Process.Signal(syscall.SIGINT)
	waited := make(chan error, 1)
	go func() { waited <- logs.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Errorf("logs -f after Ctrl-C: %v", err)
		}
	case <-time.After(10 * time.Second):
		_ = logs.Process.Kill()
		t.Fatal("logs -f did not stop at Ctrl-C")
	}

	// apply: scale triage to 3, and wait (with the context's credentials) until all are ready.
	manifest := filepath.Join(dir, "agents", "triage.yaml")
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, bytes.Replace(b, []byte("replicas: 2"), []byte("replicas: 3"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := cli("apply", "-f", manifest, "--wait=1m"); !strings.Contains(out, "agent/triage scaled from 2 to 3 replicas") {
		t.Errorf("apply:\n%s", out)
	}
	if ready, total := readyReplicasAs(t, up.URL, ops, "triage"); ready != 3 || total != 3 {
		t.Errorf("after apply --wait, triage has %d/%d replicas ready", ready, total)
	}

	// A nurse's key is not an admin's.
	if _, errs, code := runAgentplane(t, env, "get", "agents", "--token", nurseA); code != 1 || !strings.Contains(errs, "403 Forbidden") || strings.Contains(errs, nurseA) {
		t.Errorf("get agents as nurse-a: %d %s", code, errs)
	}

	// Stop: up writes a last checkpoint; the log verifies with its key against the checkpoints,
	// and records the refusals.
	if err := up.stop(t); err != nil {
		t.Fatalf("up: %v", err)
	}
	out := cli("audit", "verify", "--hmac-key-file", filepath.Join(dir, "keys", "audit.key"),
		"--checkpoints", filepath.Join(dir, "state", "checkpoints", "checkpoints.jsonl"), filepath.Join(dir, "state", "audit"))
	if !strings.Contains(out, "audit log intact") || !strings.Contains(out, "HMAC-SHA-256") || !strings.Contains(out, "all matched") {
		t.Errorf("audit verify:\n%s", out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "state", "audit", "*.jsonl"))
	var log strings.Builder
	for _, f := range files {
		b, _ := os.ReadFile(f)
		log.Write(b)
	}
	for _, want := range []string{`"subject":"nurse-b","tenant":"clinic-b","agent":"radiology"`, `"httpStatus":403`, `"httpStatus":401`, `"subject":"ops"`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the audit log has no %s", want)
		}
	}
	for _, secret := range []string{"chest pain", nurseA, ops} {
		if strings.Contains(log.String(), secret) {
			t.Errorf("the audit log holds %q", secret)
		}
	}
}

// readyReplicasAs counts the ready and all replicas of agent, asking with token.
func readyReplicasAs(t *testing.T, base, token, agent string) (ready, total int) {
	t.Helper()
	for _, r := range replicasAs(t, base, token) {
		if r.Agent == agent {
			total++
			if r.Ready {
				ready++
			}
		}
	}
	return ready, total
}

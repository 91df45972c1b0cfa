package e2e

import (
	"context"
	"fmt"
	"io/fs"
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

const phiMarker = "PHI-MARKER-987-65-4321"

// TestSecuredGatewayEndToEnd runs agentplane up with a GatewayConfig: callers need a key, every
// call is audited, `agentplane audit verify` accepts the log, and a patient identifier sent in a
// message appears in no log or audit file.
// envOf reads one variable of a process's environment.
func envOf(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	t.Fatalf("process %d has no %s", pid, name)
	return ""
}

func TestSecuredGatewayEndToEnd(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfg, []byte(`apiVersion: agentplane.io/v1alpha1
kind: GatewayConfig
auth:
  apiKeys:
  - {subject: nurse-1, tenant: clinic-a, groups: [nurses], keyEnv: E2E_NURSE_KEY}
  - {subject: ops, groups: [agentplane-admins], keyEnv: E2E_OPS_KEY}
policies:
- {name: nurses, groups: [nurses], agents: [echo]}
- {name: echo-delegates-to-slow, subjects: ["agent:echo"], agents: [slow]}
audit:
  fsync: always
`), 0o600); err != nil {
		t.Fatal(err)
	}
	const key = "e2e-nurse-key-0123456789abcdefghijklmnop"
	t.Setenv("E2E_NURSE_KEY", key)
	const opsKey = "e2e-ops-key-0123456789abcdefghijklmnopqrs"
	t.Setenv("E2E_OPS_KEY", opsKey)
	up := startUp(t, "--config", cfg)
	if !strings.Contains(up.stderr.String(), "authentication: API keys") {
		t.Fatalf("up did not say how it is protected:\n%s", up.stderr.String())
	}

	call := func(agent, token string) int {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, up.URL+"/agents/"+agent, strings.NewReader(sendV1(1, phiMarker+" chest pain")))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := call("echo", ""); got != http.StatusUnauthorized {
		t.Errorf("no key: %d, want 401", got)
	}
	if got := call("echo", "wrong-key-0123456789abcdefghijklmnopqrstu"); got != http.StatusUnauthorized {
		t.Errorf("wrong key: %d, want 401", got)
	}
	if got := call("slow", key); got != http.StatusForbidden {
		t.Errorf("agent not allowed: %d, want 403", got)
	}
	for range 3 {
		if got := call("echo", key); got != http.StatusOK {
			t.Fatalf("allowed call: %d", got)
		}
	}
	// Agent to agent: each replica gets a key of its own, valid while its process lives, and is
	// authorized by policy like any caller.
	if code := status(up.URL + "/api/v1/replicas"); code != http.StatusUnauthorized {
		t.Errorf("admin API without a key: %d, want 401", code)
	}
	rep := replicasAs(t, up.URL, opsKey)["echo-0"]
	token := envOf(t, rep.PID, "AGENTPLANE_TOKEN")
	if gw := envOf(t, rep.PID, "AGENTPLANE_GATEWAY"); gw != up.URL {
		t.Errorf("AGENTPLANE_GATEWAY = %q, want %q", gw, up.URL)
	}
	if got := call("slow", token); got != http.StatusOK {
		t.Errorf("echo's replica calling slow: %d, want 200", got)
	}
	if got := call("echo", token); got != http.StatusForbidden {
		t.Errorf("echo's replica calling echo: %d, want 403 (no policy)", got)
	}
	if err := syscall.Kill(rep.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		r := replicasAs(t, up.URL, opsKey)["echo-0"]
		return testutil.Check(r.Ready && r.PID != rep.PID, "echo-0 has not restarted: %+v", r)
	})
	if got := call("slow", token); got != http.StatusUnauthorized {
		t.Errorf("the dead replica's key still works: %d, want 401", got)
	}

	if err := up.stop(t); err != nil {
		t.Fatalf("stop: %v", err)
	}

	auditDir := filepath.Join(up.DataDir, "audit")
	out, err := exec.Command(binary, "audit", "verify", auditDir).CombinedOutput()
	if err != nil {
		t.Fatalf("audit verify on a clean log: %v\n%s", err, out)
	}
	t.Logf("audit verify: %s", strings.TrimSpace(string(out)))

	// Tamper with one record: verify must fail and name it.
	files, _ := filepath.Glob(filepath.Join(auditDir, "*"))
	b, _ := os.ReadFile(files[len(files)-1])
	if err := os.WriteFile(files[len(files)-1], []byte(strings.Replace(string(b), `"subject":"nurse-1"`, `"subject":"nurse-2"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(binary, "audit", "verify", auditDir).CombinedOutput(); err == nil {
		t.Fatalf("audit verify accepted an edited record:\n%s", out)
	}

	// The marker is in no file agentplane wrote, except the task journal, which must keep the
	// request to re-dispatch it.
	err = filepath.WalkDir(up.DataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "jetstream" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), phiMarker) || strings.Contains(string(b), key) {
			t.Errorf("%s contains the patient identifier or the key", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(up.stderr.String(), phiMarker) {
		t.Error("agentplane's output contains the patient identifier")
	}
}

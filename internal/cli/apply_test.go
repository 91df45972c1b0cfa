package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"
)

// lockedBuffer is a bytes.Buffer safe for a writer and readers at once.
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

// runCLI runs one command as Main would, and returns its stdout, stderr and exit code.
func runCLI(ctx context.Context, t *testing.T, newCmd func(Streams) *cobra.Command, args ...string) (string, string, int) {
	t.Helper()
	var out, errb lockedBuffer
	cmd := newCmd(Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return out.String(), errb.String(), 0
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	return out.String(), errb.String() + "Error: " + err.Error(), code
}

func writeFile(t *testing.T, path, data string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestApplyCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	both := filepath.Join(dir, "both")
	if err := os.Mkdir(both, 0o755); err != nil {
		t.Fatal(err)
	}
	// echo runs as if up had read it from both/a.yaml.
	env := startAdminIn(t, both, agentYAML("echo", 1, ""))
	env.waitFor("echo ready", readyReplicas("echo", 1))
	gw := "--gateway=" + env.srv.URL
	apply := func(args ...string) (string, string, int) {
		return runCLI(t.Context(), t, newApplyCommand, append(args, gw)...)
	}

	scaled := writeFile(t, filepath.Join(both, "a.yaml"), agentYAML("echo", 2, ""))
	if out, errs, code := apply("-f", scaled); code != 0 || out != "agent/echo scaled from 1 to 2 replicas\n" {
		t.Fatalf("apply scale: %d %q %q", code, out, errs)
	}
	env.waitFor("2 ready", readyReplicas("echo", 2))

	writeFile(t, filepath.Join(both, "b.yml"), agentYAML("other", 1, ""))
	writeFile(t, filepath.Join(both, "notes.txt"), "not a manifest")
	if out, errs, code := apply("-f", both); code != 0 || out != "agent/echo unchanged\nagent/other created\n" {
		t.Fatalf("apply dir: %d %q %q", code, out, errs)
	}

	if out, errs, code := apply("-f", filepath.Join(both, "b.yml"), "--prune", "-o", "json"); code != 0 {
		t.Fatalf("apply --prune: %d %q %q", code, out, errs)
	} else {
		// The same words as the text output.
		var r ApplyResult
		if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Agents) != 2 ||
			r.Agents[0] != (AppliedAgent{Agent: "echo", Action: "deleted"}) || r.Agents[1] != (AppliedAgent{Agent: "other", Action: "unchanged"}) {
			t.Errorf("apply --prune -o json: %v %s", err, out)
		}
	}

	bad := writeFile(t, filepath.Join(dir, "bad.yaml"), agentYAML("other", 2, "  maxConcurency: 3\n"))
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-f", bad}, 2, bad + ` (document 1): unknown field "spec.maxConcurency"`},
		{nil, 2, "no manifests"},
		{[]string{"--reload", "-f", scaled}, 2, "--reload takes no -f"},
		{[]string{"-f", scaled, "-o", "wide"}, 2, "-o"},
		{[]string{"-f", filepath.Join(dir, "missing.yaml")}, 2, "no such file"},
	} {
		out, errs, code := apply(tc.args...)
		if code != tc.code || out != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("apply %q: %d %q %q; want %d with %q", tc.args, code, out, errs, tc.code, tc.want)
		}
	}
	if a, _ := env.sup.Agent("other"); *a.Spec.Replicas != 1 {
		t.Error("a refused apply changed the agent")
	}

	// --reload applies the manifests up was started with.
	if out, errs, code := apply("--reload"); code != 0 || out != "agent/echo created\nagent/other deleted\n" {
		t.Errorf("apply --reload: %d %q %q", code, out, errs)
	}

	// No gateway there.
	_, errs, code := runCLI(t.Context(), t, newApplyCommand, "-f", scaled, "--gateway", "http://127.0.0.1:1")
	if code != 1 || !strings.Contains(errs, "cannot reach the gateway at http://127.0.0.1:1") {
		t.Errorf("apply without a gateway: %d %q", code, errs)
	}
}

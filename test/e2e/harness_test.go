package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testutil"
)

var binary string

func TestMain(m *testing.M) {
	os.Exit(testutil.RunWithAgentplane(m, true, &binary))
}

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// upProcess is a running `agentplane up`.
type upProcess struct {
	cmd     *exec.Cmd
	URL     string
	DataDir string
	stderr  *syncBuffer
	done    chan error
}

var listening = regexp.MustCompile(`listening on (http://\S+)`)

// startUp runs `agentplane up` with the test manifests and waits until every agent is ready.
func startUp(t *testing.T, extra ...string) *upProcess {
	t.Helper()
	return startUpIn(t, "", extra...)
}

// startUpIn is startUp with dir as the working directory of `agentplane up` ("" for the test's),
// against which the manifests' relative paths and commands are resolved.
func startUpIn(t *testing.T, dir string, extra ...string) *upProcess {
	t.Helper()
	p := &upProcess{DataDir: t.TempDir(), stderr: &syncBuffer{}, done: make(chan error, 1)}
	args := []string{"up", "--listen", "127.0.0.1:0", "--restart-backoff", "200ms", "--grace", "5s", "--drain-timeout", "10s", "--log-level", "debug"}
	if !slices.Contains(extra, "-f") {
		args = append(args, "-f", "testdata/agents.yaml")
	}
	if i := slices.Index(extra, "--data-dir"); i >= 0 {
		p.DataDir = extra[i+1]
	} else {
		args = append(args, "--data-dir", p.DataDir)
	}
	args = append(args, extra...)
	p.cmd = exec.Command(binary, args...)
	p.cmd.Dir = dir
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("agentplane up output:\n%s", p.stderr.String())
		}
	})
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if m := listening.FindStringSubmatch(p.stderr.String()); m != nil {
			p.URL = m[1]
			return nil
		}
		return errors.New("the gateway URL is not printed")
	})
	// Every replica of every agent, not just one per agent as /readyz says.
	testutil.Eventually(t, 60*time.Second, 20*time.Millisecond, func() error {
		return testutil.Check(strings.Contains(p.stderr.String(), " agents ready ("), "not every replica is ready")
	})
	return p
}

// stop sends SIGTERM and waits for the process to exit, killing it after a deadline.
func (p *upProcess) stop(t *testing.T) error {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(40 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Errorf("agentplane up did not stop within 40s of SIGTERM")
		return <-p.done
	}
}

var client = &http.Client{Timeout: 30 * time.Second}

func status(url string) int {
	res, err := client.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

type replica struct {
	Agent    string `json:"agent"`
	Name     string `json:"name"`
	URL      string `json:"url"`
	PID      int    `json:"pid"`
	Ready    bool   `json:"ready"`
	State    string `json:"state"`
	Restarts int    `json:"restarts"`
}

func replicas(t *testing.T, base string) map[string]replica {
	t.Helper()
	return replicasAs(t, base, "")
}

// replicasAs lists replicas with an admin's bearer token (when authentication is on).
func replicasAs(t *testing.T, base, token string) map[string]replica {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/api/v1/replicas", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/replicas: %s", res.Status)
	}
	defer res.Body.Close()
	var v struct {
		Replicas []replica `json:"replicas"`
	}
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	out := map[string]replica{}
	for _, r := range v.Replicas {
		out[r.Name] = r
	}
	return out
}

type reply struct {
	Status  int
	Replica string
	Body    string
	Result  json.RawMessage
	Error   *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
}

func post(ctx context.Context, url, body string) (reply, error) {
	return postWith(ctx, client, url, body)
}

// postWith is post through c.
func postWith(ctx context.Context, c *http.Client, url, body string) (reply, error) {
	return postHeader(ctx, c, url, body, nil)
}

// postHeader is postWith with extra request headers, such as A2A-Version.
func postHeader(ctx context.Context, c *http.Client, url, body string, h http.Header) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return reply{}, err
	}
	r := reply{Status: res.StatusCode, Replica: res.Header.Get("X-Agentplane-Replica"), Body: string(raw)}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		return r, nil
	}
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return r, fmt.Errorf("not JSON-RPC: %s", raw)
	}
	r.Result, r.Error = env.Result, env.Error
	return r, nil
}

func sendV1(id int, text string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"SendMessage","params":{"message":{"messageId":"e2e-%d","role":"ROLE_USER","parts":[{"text":%q}]}}}`, id, id, text)
}

// sseData returns the data payloads of an event stream.
func sseData(stream string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(stream))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data:"); ok {
			out = append(out, strings.TrimSpace(d))
		}
	}
	return out
}

// processGone reports whether pid no longer runs (a zombie waiting for a reaper counts as gone).
func processGone(pid int) bool {
	if syscall.Kill(pid, 0) == syscall.ESRCH {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return strings.HasPrefix(rest, "Z")
}

func decode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

func asExit(err error, target **exec.ExitError) bool { return errors.As(err, target) }

func replicasInFlight(t *testing.T, base string) map[string]int {
	t.Helper()
	res, err := client.Get(base + "/api/v1/replicas")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var v struct {
		Replicas []struct {
			Name     string `json:"name"`
			InFlight int    `json:"inFlight"`
		} `json:"replicas"`
	}
	if err := decode(res.Body, &v); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range v.Replicas {
		out[r.Name] = r.InFlight
	}
	return out
}

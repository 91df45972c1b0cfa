package ui_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/chromedp"

	"github.com/agentplane/agentplane/internal/testutil"
)

// binary is agentplane, built for the tests that run it.
var binary string

func TestMain(m *testing.M) {
	os.Exit(testutil.RunWithAgentplane(m, true, &binary))
}

// liveManifests are the agents of the real-gateway test: one that works (slowly, so that a task
// is seen running), one whose command exits 1 at once, and one that never answers its probes (it
// listens, but not on $PORT).
const liveManifests = `apiVersion: agentplane.io/v1alpha1
kind: Agent
metadata:
  name: echo
spec:
  command: [agentplane, simagent]
  args: [--latency, 6s]
---
apiVersion: agentplane.io/v1alpha1
kind: Agent
metadata:
  name: crashy
spec:
  command: [sh, -c, "echo 'crashy: cannot load the model' >&2; exit 1"]
---
apiVersion: agentplane.io/v1alpha1
kind: Agent
metadata:
  name: stuck
spec:
  command: [agentplane, simagent, --listen, "127.0.0.1:0"]
  probes:
    startup: {periodSeconds: 1, failureThreshold: 120}
`

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startUp runs `agentplane up` with manifests and returns the gateway's URL once its echo agent
// is ready; the other agents never will be.
func startUp(t *testing.T, manifests string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "agents.yaml"), []byte(manifests), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cmd := exec.Command(binary, "up", "-f", filepath.Join(dir, "agents.yaml"), "--listen", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "data"), "--restart-backoff", "300ms", "--grace", "2s", "--drain-timeout", "2s")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Error("agentplane up did not stop within 30s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("agentplane up output:\n%s", out.String())
		}
	})
	listening := regexp.MustCompile(`listening on (http://\S+)`)
	var url string
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if m := listening.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
			return nil
		}
		return errors.New("the gateway URL is not printed")
	})
	testutil.Eventually(t, 60*time.Second, 50*time.Millisecond, func() error {
		res, err := http.Get(url + "/api/v1/replicas?agent=echo")
		if err != nil {
			return err
		}
		defer res.Body.Close()
		var v struct {
			Replicas []struct {
				Ready bool `json:"ready"`
			} `json:"replicas"`
		}
		if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
			return err
		}
		return testutil.Check(len(v.Replicas) == 1 && v.Replicas[0].Ready, "echo is not ready")
	})
	return url
}

// The dashboard against a real `agentplane up`: a crash-looping agent and one stuck starting
// both count as unhealthy, each with why; a replica's log opens and follows; a running task's
// time ticks; and the task opens to its attempts and state changes.
func TestDashboardOnARealGateway(t *testing.T) {
	exe := chromium(t)
	base := startUp(t, liveManifests)

	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	// up without --config keeps no audit log: GET /api/v1/audit answers 404, and the page hides
	// its section.
	bctx, pageErrors := startBrowser(ctx, t, exe, func(e *cdplog.Entry) bool {
		return e.Source == cdplog.EntrySourceNetwork && strings.Contains(e.URL, "/api/v1/audit") && strings.Contains(e.Text, "status of 404")
	})
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1440, 1000), chromedp.Navigate(base+"/ui/")); err != nil {
		t.Fatal(err)
	}
	shoot := func(name string) {
		png, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(artifactsDir(t), name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}

	// Both broken agents are unhealthy, each with its reason; the stuck one once it has been
	// starting for longer than a start takes.
	waitFor(bctx, t, "crashy and stuck listed as not ready, with why", `(() => {
		const c = document.querySelector('[data-unhealthy="crashy-0"]'), s = document.querySelector('[data-unhealthy="stuck-0"]');
		return !!c && !!s && c.textContent.includes("exit status 1") && s.textContent.includes("startup probe not passed for");
	})()`, 40*time.Second)
	if got := eval[string](bctx, t, `document.querySelector('[data-metric="Unhealthy"]').firstChild.textContent`); got != "2" {
		t.Errorf("unhealthy replicas: %s, want 2", got)
	}
	if got := eval[string](bctx, t, `document.querySelector('[data-replica="crashy/crashy-0"] [data-role="why"]').textContent`); !strings.HasPrefix(got, "crash-looping (last exit: exit status 1, restarts: ") {
		t.Errorf("crashy-0's tile says %q", got)
	}
	if got := eval[string](bctx, t, `document.querySelector('[data-replica="echo/echo-0"]').dataset.health`); got != "Ready" {
		t.Errorf("echo-0 shows %q", got)
	}

	// A task that runs for 6 seconds shows its time going up.
	taskDone := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/agents/echo",
			strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"ui-1","role":"ROLE_USER","parts":[{"text":"hello"}]}}}`))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				err = fmt.Errorf("task answered %s", res.Status)
			}
		}
		taskDone <- err
	}()
	waitFor(bctx, t, "the running task", `!!document.querySelector('#tasks tr[data-state="working"] td.live')`, 10*time.Second)
	elapsed := func() string {
		return eval[string](bctx, t, `(document.querySelector('#tasks tr[data-state="working"] td.live') || {}).textContent || ""`)
	}
	first := elapsed()
	waitFor(bctx, t, "the running task's time to move on", fmt.Sprintf(`(() => {
		const c = document.querySelector('#tasks tr[data-state="working"] td.live');
		return !!c && c.textContent !== %q && c.textContent !== "0 ms";
	})()`, first), 5*time.Second)
	shoot("live-dashboard.png")

	// The task opens: its attempt on echo-0, its state changes, and its time running.
	id := eval[string](bctx, t, `document.querySelector('#tasks tr[data-state="working"]').dataset.task`)
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`(() => { document.querySelector('#tasks tr[data-state="working"] a[data-open-task]').click(); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	waitFor(bctx, t, "the task view", fmt.Sprintf(`(() => {
		const p = document.getElementById("panel");
		return p.open && p.dataset.view === "task" && p.dataset.task === %q &&
			document.querySelectorAll('#panel table.attempts tr[data-attempt]').length === 1 &&
			document.querySelector('#panel table.attempts tr[data-attempt="1"]').textContent.includes("echo-0") &&
			!!document.querySelector('#panel [data-role="elapsed"]');
	})()`, id), 10*time.Second)
	if got := eval[string](bctx, t, `[...document.querySelectorAll('#panel table.history tr[data-event]')].map(r => r.dataset.event).join(",")`); got != "submitted,working" {
		t.Errorf("the running task's state changes: %q", got)
	}
	if got := eval[string](bctx, t, `location.hash`); got != "#task="+id {
		t.Errorf("the task view's address: %q", got)
	}
	shoot("live-task-running.png")
	if err := <-taskDone; err != nil {
		t.Fatal(err)
	}
	waitFor(bctx, t, "the task view to show the task completed", `document.querySelector('#panel [data-role="task-state"]').textContent === "completed" &&
		[...document.querySelectorAll('#panel table.history tr[data-event]')].map(r => r.dataset.event).join(",") === "submitted,working,completed"`, 5*time.Second)
	if eval[bool](bctx, t, `document.getElementById("panel").textContent.includes("hello")`) {
		t.Error("the task view shows the task's message")
	}
	shoot("live-task-completed.png")

	// The crash-looping replica's log opens from the list of unhealthy replicas, shows its
	// output, and follows it: new starts appear while it is open.
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`(() => { document.getElementById("panel").close(); document.querySelector('[data-unhealthy="crashy-0"] a[data-log]').click(); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	defer func() { // what the panel says, when the log does not show
		if t.Failed() {
			t.Logf("panel: %s", eval[string](bctx, t, `document.getElementById("panel").dataset.view + " | " + document.getElementById("panel-status").textContent + " | " + document.getElementById("panel-body").textContent.slice(0, 500)`))
		}
	}()
	waitFor(bctx, t, "crashy-0's log", `(() => {
		const p = document.getElementById("panel"), pre = p.querySelector("pre.log");
		return p.open && p.dataset.view === "log" && p.dataset.replica === "crashy-0" && !!pre &&
			pre.textContent.includes("crashy: cannot load the model") && pre.textContent.includes("--- agentplane: start crashy-0 attempt");
	})()`, 10*time.Second)
	starts := eval[int](bctx, t, `document.querySelector("#panel pre.log").textContent.split("--- agentplane: start crashy-0").length`)
	waitFor(bctx, t, "a new start of crashy-0 followed into the open log", fmt.Sprintf(`document.querySelector("#panel pre.log").textContent.split("--- agentplane: start crashy-0").length > %d`, starts), 20*time.Second)
	shoot("live-log.png")
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`(() => { document.getElementById("panel-close").click(); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	waitFor(bctx, t, "the log to close", `!document.getElementById("panel").open && location.hash === ""`, 5*time.Second)

	if errs := pageErrors(); len(errs) > 0 {
		t.Errorf("the page reported errors:\n%s", strings.Join(errs, "\n"))
	}
}

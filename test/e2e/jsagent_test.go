package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testutil"
)

// TestJavaScriptSDKAgent runs examples/js-agent, an agent written with the official A2A JavaScript
// SDK, with `agentplane up -f examples/js-agent` as its README says, and talks to it through the
// gateway: its card, a blocking send, a streaming send, GetTask, a cancel while it works, and
// the same in A2A 0.3. The SDK takes a request without A2A-Version for 0.3: the first send has
// none, and the gateway names the dialect to the agent itself.
func TestJavaScriptSDKAgent(t *testing.T) {
	root := jsExample(t)
	up := startUpIn(t, root, "-f", "examples/js-agent")
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(up.DataDir, "logs", "intake", "*.log"))
			for _, l := range logs {
				t.Logf("%s:\n%s", filepath.Base(l), readFile(t, l))
			}
		}
	})
	url := up.URL + "/agents/intake"
	ctx := t.Context()
	v1 := http.Header{"A2A-Version": {"1.0"}}

	t.Run("card", func(t *testing.T) {
		res, err := client.Get(url + "/.well-known/agent-card.json")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var card struct {
			Name       string `json:"name"`
			URL        string `json:"url"` // for A2A 0.3 clients
			Interfaces []struct {
				URL             string `json:"url"`
				ProtocolBinding string `json:"protocolBinding"`
				ProtocolVersion string `json:"protocolVersion"`
			} `json:"supportedInterfaces"`
		}
		if err := decode(res.Body, &card); err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("agent card: %s %v", res.Status, err)
		}
		var versions []string
		for _, i := range card.Interfaces {
			if i.URL != url+"/" {
				t.Errorf("interface %+v does not point at the gateway's URL %s/", i, url)
			}
			versions = append(versions, i.ProtocolBinding+" "+i.ProtocolVersion)
		}
		// The gateway serves HTTP+JSON for every agent that speaks v1.0, translating it.
		want := []string{"JSONRPC 1.0", "JSONRPC 0.3", "HTTP+JSON 1.0"}
		if card.Name != "Clinic intake (JavaScript)" || card.URL != url+"/" || !slices.Equal(versions, want) {
			t.Fatalf("agent card: name %q, url %q, interfaces %v; want the intake agent's at %s/, with %v", card.Name, card.URL, versions, url, want)
		}
	})

	t.Run("v1.0 send and GetTask", func(t *testing.T) {
		r, err := postHeader(ctx, client, url, sendV1(1, "Jane Doe, 54, has had chest pain since this morning"), nil) // no A2A-Version: the gateway names the dialect to the agent
		if err != nil || r.Error != nil {
			t.Fatalf("SendMessage: %v %s", err, r.Body)
		}
		var sent struct {
			Task jsTask `json:"task"`
		}
		if err := json.Unmarshal(r.Result, &sent); err != nil {
			t.Fatal(err)
		}
		task := sent.Task
		const want = "Intake summary: urgency urgent (red flags: chest pain). Reason for visit: Jane Doe, 54, has had chest pain since this morning"
		if task.Status.State != "TASK_STATE_COMPLETED" || task.statusText() != want || !strings.HasPrefix(r.Replica, "intake-") {
			t.Fatalf("SendMessage answered by %q: state %s, text %q; want completed by an intake replica with %q", r.Replica, task.Status.State, task.statusText(), want)
		}
		if data := task.artifactData(); !strings.Contains(data, `"urgency":"urgent"`) || !strings.Contains(data, `"redFlags":["chest pain"]`) {
			t.Errorf("the summary's data part is %s", data)
		}

		r, err = postHeader(ctx, client, url, getTask("GetTask", task.ID), v1)
		var got jsTask
		if err != nil || r.Error != nil || json.Unmarshal(r.Result, &got) != nil {
			t.Fatalf("GetTask: %v %s", err, r.Body)
		}
		if got.ID != task.ID || got.Status.State != "TASK_STATE_COMPLETED" || got.statusText() != want {
			t.Fatalf("GetTask %s: %s", task.ID, r.Body)
		}
	})

	t.Run("v1.0 streaming send", func(t *testing.T) {
		events := streamEvents(t, url, fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"SendStreamingMessage","params":{"message":{"messageId":"js-s1","role":"ROLE_USER","parts":[{"text":%q}]}}}`, "I need a refill of my inhaler"), v1)
		var got []string
		for ev := range events {
			got = append(got, ev.String())
		}
		want := []string{
			"task TASK_STATE_SUBMITTED",
			"status TASK_STATE_WORKING: Reading the request",
			"status TASK_STATE_WORKING: Checking for red flags",
			"artifact: Intake summary: urgency routine. Reason for visit: I need a refill of my inhaler",
			"status TASK_STATE_COMPLETED: Intake summary: urgency routine. Reason for visit: I need a refill of my inhaler",
		}
		if !slices.Equal(got, want) {
			t.Fatalf("events:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	})

	t.Run("v1.0 cancel while it works", func(t *testing.T) {
		events := streamEvents(t, url, `{"jsonrpc":"2.0","id":3,"method":"SendStreamingMessage","params":{"message":{"messageId":"js-c1","role":"ROLE_USER","parts":[{"text":"fainted in the waiting room"}]}}}`, v1)
		first, second := <-events, <-events
		if first.Task == nil || second.String() != "status TASK_STATE_WORKING: Reading the request" {
			t.Fatalf("first events: %s, %s", first, second)
		}
		id := first.Task.ID

		// While the task lives, the gateway asks the replica that runs it.
		r, err := postHeader(ctx, client, url, getTask("GetTask", id), v1)
		var got jsTask
		if err != nil || r.Error != nil || json.Unmarshal(r.Result, &got) != nil || got.Status.State != "TASK_STATE_WORKING" || r.Replica == "" {
			t.Fatalf("GetTask while it works: %v replica %q %s", err, r.Replica, r.Body)
		}
		r, err = postHeader(ctx, client, url, getTask("CancelTask", id), v1)
		if err != nil || r.Error != nil || json.Unmarshal(r.Result, &got) != nil || got.Status.State != "TASK_STATE_CANCELED" {
			t.Fatalf("CancelTask: %v %s", err, r.Body)
		}
		var last streamEvent
		for ev := range events {
			last = ev
		}
		if last.String() != "status TASK_STATE_CANCELED: Intake canceled." {
			t.Fatalf("the stream ended with %s", last)
		}
		r, err = postHeader(ctx, client, url, getTask("GetTask", id), v1)
		if err != nil || r.Error != nil || json.Unmarshal(r.Result, &got) != nil || got.Status.State != "TASK_STATE_CANCELED" {
			t.Fatalf("GetTask after the cancel: %v %s", err, r.Body)
		}
	})

	t.Run("v0.3 send, tasks/get and stream", func(t *testing.T) {
		r, err := post(ctx, url, `{"jsonrpc":"2.0","id":4,"method":"message/send","params":{"message":{"kind":"message","messageId":"js-v03","role":"user","parts":[{"kind":"text","text":"sore throat for three days"}]}}}`)
		var task jsTask
		if err != nil || r.Error != nil || json.Unmarshal(r.Result, &task) != nil {
			t.Fatalf("message/send: %v %s", err, r.Body)
		}
		const want = "Intake summary: urgency routine. Reason for visit: sore throat for three days"
		if task.Status.State != "completed" || task.statusText() != want {
			t.Fatalf("message/send: state %s, text %q; want completed, %q", task.Status.State, task.statusText(), want)
		}
		r, err = post(ctx, url, getTask("tasks/get", task.ID))
		var got jsTask
		if err != nil || r.Error != nil || json.Unmarshal(r.Result, &got) != nil || got.Status.State != "completed" || got.statusText() != want {
			t.Fatalf("tasks/get: %v %s", err, r.Body)
		}

		events := streamEvents(t, url, `{"jsonrpc":"2.0","id":5,"method":"message/stream","params":{"message":{"kind":"message","messageId":"js-v03-s","role":"user","parts":[{"kind":"text","text":"shortness of breath"}]}}}`, nil)
		var states []string
		var last streamEvent
		for ev := range events {
			states = append(states, ev.Status.State)
			last = ev
		}
		if !slices.Equal(states, []string{"submitted", "working", "working", "", "completed"}) ||
			last.Status.text() != "Intake summary: urgency urgent (red flags: shortness of breath). Reason for visit: shortness of breath" {
			t.Fatalf("message/stream: states %q, last event %s", states, last.raw)
		}
	})
}

// jsTask is what the test reads of a task, in either dialect.
type jsTask struct {
	ID        string   `json:"id"`
	Status    jsStatus `json:"status"`
	Artifacts []struct {
		Parts []jsPart `json:"parts"`
	} `json:"artifacts"`
}

type jsStatus struct {
	State   string `json:"state"`
	Message *struct {
		Parts []jsPart `json:"parts"`
	} `json:"message"`
}

type jsPart struct {
	Text string          `json:"text"`
	Data json.RawMessage `json:"data"`
}

func (s jsStatus) text() string {
	if s.Message == nil {
		return ""
	}
	return partsText(s.Message.Parts)
}

func (t jsTask) statusText() string { return t.Status.text() }

// artifactData is the data parts of the task's artifacts, joined.
func (t jsTask) artifactData() string {
	var out []string
	for _, a := range t.Artifacts {
		for _, p := range a.Parts {
			if p.Data != nil {
				out = append(out, string(p.Data))
			}
		}
	}
	return strings.Join(out, " ")
}

func partsText(parts []jsPart) string {
	var out []string
	for _, p := range parts {
		if p.Text != "" {
			out = append(out, p.Text)
		}
	}
	return strings.Join(out, " ")
}

// streamEvent is one event of a stream: in v1.0 one of task, statusUpdate and artifactUpdate is
// set; in v0.3 the event is the object itself, and Status is set for a task or a status update.
type streamEvent struct {
	Task         *jsTask `json:"task"`
	StatusUpdate *struct {
		Status jsStatus `json:"status"`
	} `json:"statusUpdate"`
	ArtifactUpdate *struct {
		Artifact struct {
			Parts []jsPart `json:"parts"`
		} `json:"artifact"`
	} `json:"artifactUpdate"`
	Status jsStatus `json:"status"`
	raw    string
}

// String is the event in one line: its kind, its state and its text.
func (e streamEvent) String() string {
	switch {
	case e.Task != nil:
		return "task " + e.Task.Status.State
	case e.StatusUpdate != nil:
		return fmt.Sprintf("status %s: %s", e.StatusUpdate.Status.State, e.StatusUpdate.Status.text())
	case e.ArtifactUpdate != nil:
		return "artifact: " + partsText(e.ArtifactUpdate.Artifact.Parts)
	}
	return e.raw
}

// streamEvents posts a streaming request and returns its events as they arrive, reading the
// stream until it ends. An error event or a body that is not a stream fails the test.
func streamEvents(t *testing.T, url, body string, h http.Header) <-chan streamEvent {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := res.Header.Get("Content-Type"); res.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/event-stream") {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		t.Fatalf("%s %s: %s", res.Status, ct, b)
	}
	out := make(chan streamEvent)
	go func() {
		defer close(out)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			d, ok := strings.CutPrefix(sc.Text(), "data:")
			if !ok {
				continue
			}
			var env struct {
				Result streamEvent     `json:"result"`
				Error  json.RawMessage `json:"error"`
			}
			if err := json.Unmarshal([]byte(d), &env); err != nil || env.Error != nil {
				t.Errorf("stream event %s: %v", d, err)
				return
			}
			env.Result.raw = strings.TrimSpace(d)
			select {
			case out <- env.Result:
			case <-t.Context().Done(): // the test stopped reading
				return
			}
		}
	}()
	return out
}

// getTask is a request naming a task by id: GetTask, CancelTask or tasks/get.
func getTask(method, id string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":9,"method":%q,"params":{"id":%q}}`, method, id)
}

// nodeMajor is the oldest Node.js the example supports: the engines field of @a2a-js/sdk.
const nodeMajor = 20

// requireNode skips the test when node or npm is missing or node is older than nodeMajor, and
// fails it instead when the environment variable CI is true: CI must run it (.ci/run installs
// Node.js).
func requireNode(t *testing.T) {
	t.Helper()
	missing := func(why string) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI must run the JavaScript agent's test (.ci/run installs nodejs and npm)", why)
		}
		t.Skipf("skipping the JavaScript SDK agent: %s (with CI=true this is a failure)", why)
	}
	for _, name := range []string{"node", "npm"} {
		if _, err := exec.LookPath(name); err != nil {
			missing(name + " is not installed")
			return
		}
	}
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		missing(fmt.Sprintf("node --version: %v", err))
		return
	}
	v := strings.TrimSpace(string(out))
	major, _, _ := strings.Cut(strings.TrimPrefix(v, "v"), ".")
	if n, err := strconv.Atoi(major); err != nil || n < nodeMajor {
		missing(fmt.Sprintf("node %s is older than the %d.x that @a2a-js/sdk needs", v, nodeMajor))
	}
}

// jsExample copies examples/js-agent to <root>/examples/js-agent, with a node_modules that links
// to the packages npmInstall put in the cache, and returns root: `agentplane up -f
// examples/js-agent` run in root resolves the manifest's command as in a clone of the repository,
// and the clone itself gets no node_modules.
func jsExample(t *testing.T) string {
	t.Helper()
	requireNode(t)
	repo, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(repo, "examples", "js-agent")
	modules := npmInstall(t, src)
	root := t.TempDir()
	dst := filepath.Join(root, "examples", "js-agent")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue // a developer's own node_modules among them
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(modules, filepath.Join(dst, "node_modules")); err != nil {
		t.Fatal(err)
	}
	return root
}

// npmInstall runs `npm ci` for the example's package.json and package-lock.json in a directory
// of the user's cache named by their hash (~/.cache/agentplane/npm/<hash>), outside the
// repository, and returns its node_modules. A warm cache runs nothing; a cold one installs once
// for each lock. The install happens in a temporary directory renamed into place when it is
// complete, so an interrupted run or a concurrent one never leaves a partial install behind.
func npmInstall(t *testing.T, src string) string {
	t.Helper()
	h := sha256.New()
	files := map[string][]byte{}
	for _, name := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(cache, "agentplane", "npm")
	key := hex.EncodeToString(h.Sum(nil))[:16]
	dir := filepath.Join(base, key)
	const done = ".agentplane-installed" // written last, before the rename
	if _, err := os.Stat(filepath.Join(dir, done)); err == nil {
		return filepath.Join(dir, "node_modules")
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(base, key+".tmp-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp) // gone already when the rename succeeded
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci for examples/js-agent in %s: %v\n%s", tmp, err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, done), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, done)); err == nil {
		return filepath.Join(dir, "node_modules") // a concurrent run finished first
	}
	_ = os.RemoveAll(dir) // not put there by this function, which renames only complete installs
	if err := os.Rename(tmp, dir); err != nil {
		// A concurrent run renamed its install first; it is as good as this one.
		if _, serr := os.Stat(filepath.Join(dir, done)); serr != nil {
			t.Fatalf("cannot move the npm install into the cache: %v", err)
		}
	}
	t.Logf("npm ci for examples/js-agent took %v (cached in %s)", time.Since(start).Round(time.Millisecond), dir)
	return filepath.Join(dir, "node_modules")
}

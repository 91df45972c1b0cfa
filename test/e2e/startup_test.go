package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testutil"
)

// launchUp runs `agentplane up` in dir with args, and returns once it listens, without waiting
// for its replicas: some never become ready here.
func launchUp(t *testing.T, dir string, args ...string) *upProcess {
	t.Helper()
	p := &upProcess{DataDir: t.TempDir(), stderr: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(binary, append([]string{"up", "--listen", "127.0.0.1:0", "--restart-backoff", "200ms",
		"--grace", "5s", "--drain-timeout", "5s", "--data-dir", p.DataDir}, args...)...)
	p.cmd.Dir = dir
	p.cmd.Stderr, p.cmd.Stdout = p.stderr, p.stderr
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
	return p
}

func writeFile(t *testing.T, path, s string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), mode); err != nil {
		t.Fatal(err)
	}
}

const agentDoc = `apiVersion: agentplane.io/v1alpha1
kind: Agent
metadata:
  name: NAME
spec:
  command: COMMAND
`

func agentYAML(name, command string, extra ...string) string {
	s := strings.NewReplacer("NAME", name, "COMMAND", command).Replace(agentDoc)
	for _, e := range extra {
		s += "  " + e + "\n"
	}
	return s
}

// A program that is not there is an error of the manifest, at once, naming the file, the
// document and the field; not a replica restarted for ever.
func TestUpRefusesAMissingCommand(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "agents.yaml")
	writeFile(t, f, agentYAML("fine", "[agentplane, simagent]")+"---\n"+agentYAML("typo", "[agentplan-simagent]")+"---\n"+
		agentYAML("script", "[./serve.sh]"), 0o600)
	start := time.Now()
	out, err := exec.Command(binary, "up", "-f", f, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0").CombinedOutput()
	var ee *exec.ExitError
	if !asExit(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("up with a missing command: %v, want exit code 2\n%s", err, out)
	}
	for _, want := range []string{
		f + ` (document 2): spec.command[0]: Invalid value: "agentplan-simagent": no such program in $PATH`,
		f + ` (document 3): spec.command[0]: Invalid value: "./serve.sh": no such file: ` + filepath.Join(dir, "serve.sh") +
			" (a relative command is relative to the manifest's directory, " + dir + ")",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("up took %v to refuse the manifests", took)
	}
}

// A relative command is relative to the manifest's directory, which is where replicas run by
// default, whatever the working directory of up.
func TestUpRunsARelativeCommandFromTheManifestsDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "marker"), "here\n", 0o600)
	// The agent starts only where the manifest is: it reads ./marker.
	writeFile(t, filepath.Join(dir, "agent.sh"), "#!/bin/sh\nread m < ./marker || exit 9\nexec \"$AGENTPLANE_BIN\" simagent\n", 0o755)
	writeFile(t, filepath.Join(dir, "agents.yaml"), agentYAML("local", "[./agent.sh]", "env: [{name: AGENTPLANE_BIN, value: '"+binary+"'}]"), 0o600)

	up := startUpIn(t, t.TempDir(), "-f", filepath.Join(dir, "agents.yaml"))
	r, err := post(t.Context(), up.URL+"/agents/local", sendV1(1, "hello"))
	if err != nil || r.Status != 200 || r.Error != nil {
		t.Fatalf("a task to the agent: %v %d %s", err, r.Status, r.Body)
	}
	desc := agentplane(t, "describe", "agent", "local", "--gateway", up.URL, "-o", "yaml")
	if !strings.Contains(desc, "agentplane.io/manifest-dir: "+dir) {
		t.Errorf("describe does not show the manifest's directory:\n%s", desc)
	}

	// An agent applied later from its own directory runs from there too, wherever up runs.
	later := t.TempDir()
	writeFile(t, filepath.Join(later, "marker"), "here\n", 0o600)
	writeFile(t, filepath.Join(later, "agent.sh"), "#!/bin/sh\nread m < ./marker || exit 9\nexec \"$AGENTPLANE_BIN\" simagent\n", 0o755)
	writeFile(t, filepath.Join(later, "agents.yaml"), agentYAML("later", "[./agent.sh]", "env: [{name: AGENTPLANE_BIN, value: '"+binary+"'}]"), 0o600)
	agentplane(t, "apply", "-f", filepath.Join(later, "agents.yaml"), "--gateway", up.URL, "--wait=1m")
	if r, err := post(t.Context(), up.URL+"/agents/later", sendV1(2, "hello")); err != nil || r.Status != 200 || r.Error != nil {
		t.Fatalf("a task to the applied agent: %v %d %s", err, r.Status, r.Body)
	}
}

// A server that ignores $PORT never answers its startup probe: within one probe period after
// its startup budget, describe says so, with the probe's error and the last lines of its
// stderr, and so does the console, once.
func TestUpSaysWhyAReplicaDoesNotStart(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "agents.yaml"), agentYAML("deaf", `[sh, -c, 'echo "config loaded" >&2; echo "listening on 127.0.0.1:8080" >&2; exec sleep 600']`,
		"probes: {startup: {periodSeconds: 1, failureThreshold: 2}}"), 0o600)
	start := time.Now()
	up := launchUp(t, dir, "-f", "agents.yaml", "--restart-backoff", "30s")
	// The first period's tries are not counted; then 2 failures, 1s apart.
	budget, period := 3*time.Second, time.Second

	var desc string
	testutil.Eventually(t, budget+period+20*time.Second, 50*time.Millisecond, func() error {
		desc = agentplane(t, "describe", "agent", "deaf", "--gateway", up.URL)
		return testutil.Check(strings.Contains(desc, "StartupProbeFailed"), "describe does not say why yet:\n%s", desc)
	})
	// Measured from before up started, so generous on a loaded machine; a reason that waited for
	// the next try (30s of backoff away) would be far later.
	if took := time.Since(start); took > budget+period+5*time.Second {
		t.Errorf("the reason took %v to show, want about %v", took, budget+period)
	}
	for _, want := range []string{
		"CrashLoopBackOff  crash-looping: deaf-0 (StartupProbeFailed: no answer to its startup probe within ",
		"does it listen on $PORT?", "connection refused",
		"Not ready:\n  deaf-0: StartupProbeFailed: ",
		"    last lines of stderr:\n      config loaded\n      listening on 127.0.0.1:8080\n",
	} {
		if !strings.Contains(desc, want) {
			t.Errorf("describe lacks %q:\n%s", want, desc)
		}
	}
	// get replicas says it in a word.
	if out := agentplane(t, "get", "replicas", "--gateway", up.URL); !regexp.MustCompile(`deaf-0 .* StartupProbeFailed\n`).MatchString(out) {
		t.Errorf("get replicas has no reason for deaf-0:\n%s", out)
	}
	// The dashboard's data: GET /api/v1/replicas carries the same.
	res, err := client.Get(up.URL + "/api/v1/replicas")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Replicas []struct {
			Reason, Message, StderrTail string
		} `json:"replicas"`
	}
	err = decode(res.Body, &v)
	res.Body.Close()
	if err != nil || len(v.Replicas) != 1 || v.Replicas[0].Reason != "StartupProbeFailed" ||
		!strings.Contains(v.Replicas[0].Message, "connection refused") || v.Replicas[0].StderrTail != "config loaded\nlistening on 127.0.0.1:8080\n" {
		t.Errorf("GET /api/v1/replicas: %v %+v", err, v)
	}
	testutil.Eventually(t, 5*time.Second, 50*time.Millisecond, func() error {
		return testutil.Check(strings.Contains(up.stderr.String(), "replica deaf-0 did not start (no answer to its startup probe within "),
			"the console does not say why")
	})
	if !strings.Contains(up.stderr.String(), "; stderr: listening on 127.0.0.1:8080), restart 1 in ") {
		t.Errorf("the console's line lacks the last line of stderr or the restart:\n%s", up.stderr.String())
	}
}

// slogLine is a line of slog's text format, as the console shows warnings and errors.
var slogLine = regexp.MustCompile(`^time=\S+ level=(WARN|ERROR) `)

// The console prints each event once: a crash-looping agent next to a healthy one gives a line
// when it first exits and one when it keeps exiting, not one per restart, and no slog warning
// repeats what a friendly line says.
func TestUpConsolePrintsEachEventOnce(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "agents.yaml"), agentYAML("crashy", `[sh, -c, 'echo "cannot open model weights" >&2; exit 3']`)+"---\n"+
		agentYAML("fine", "[agentplane, simagent]"), 0o600)
	up := launchUp(t, dir, "-f", "agents.yaml", "--restart-backoff", "50ms")
	testutil.Eventually(t, 60*time.Second, 50*time.Millisecond, func() error {
		r := replicas(t, up.URL)
		return testutil.Check(r["crashy-0"].Restarts >= 5 && r["fine-0"].Ready, "crashy-0 restarted %d times, fine-0 ready %t",
			r["crashy-0"].Restarts, r["fine-0"].Ready)
	})
	out := up.stderr.String()
	seen := map[string]bool{}
	for line := range strings.SplitSeq(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		if seen[line] {
			t.Errorf("the console repeats %q", line)
		}
		seen[line] = true
		if slogLine.MatchString(line) && strings.Contains(line, "replica") {
			t.Errorf("a slog line repeats a replica event: %q", line)
		}
	}
	for _, want := range []string{
		"replica crashy-0 exited (exit status 3: cannot open model weights), restart 1 in ",
		"replica crashy-0 keeps exiting (exit status 3: cannot open model weights), restart 2 in ",
		"agent fine         1/1 replicas ready",
	} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("the console has %q %d times, want once:\n%s", want, n, out)
		}
	}
	if strings.Contains(out, "✗") {
		t.Errorf("marks on a console that is not a terminal:\n%s", out)
	}
	// The log file has the loop once too, with its restart count.
	log := readFile(t, filepath.Join(up.DataDir, "agentplane.log"))
	if n := strings.Count(log, `"msg":"replica exited"`); n != 1 {
		t.Errorf(`the log has "replica exited" %d times at info or above, want once`, n)
	}
	if !strings.Contains(log, `"msg":"replica keeps exiting"`) || !strings.Contains(log, `"restarts":2`) {
		t.Errorf("the log lacks the loop, with its restart count:\n%s", log)
	}
}

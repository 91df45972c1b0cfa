package cli

import (
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/discovery"
)

func TestDescribeCommand(t *testing.T) {
	t.Parallel()
	env := startAdmin(t, agentYAML("echo", 2, "  description: echoes what it gets\n  placement: {site: clinic-a}\n"))
	env.waitFor("ready", readyReplicas("echo", 2))
	gw := "--gateway=" + env.srv.URL

	out, errs, code := runCLI(t.Context(), t, newDescribeCommand, "agent", "echo", gw)
	if code != 0 {
		t.Fatalf("describe: %d %q", code, errs)
	}
	for _, want := range []string{
		"Name:             echo\n",
		"Description:      echoes what it gets\n",
		"Replicas:         2 desired | 2 total | 2 ready\n",
		"Command:          agentplane simagent --latency 10ms\n",
		"Placement:        site clinic-a\n",
		"  AGENTPLANE_CLI_TEST_MAIN=1",
		"  Readiness:  GET /.well-known/agent-card.json every 5s, timeout 2s, 3 failures in a row fail\n",
		"Conditions:\n",
		"  Ready        True    AllReplicasReady  2/2 replicas ready\n",
		"  Degraded     False   AsExpected",
		"Replicas:\n  NAME    STATE    READY  PID",
		"  echo-1  Running  true   ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}

	out, errs, code = runCLI(t.Context(), t, newDescribeCommand, "agent", "echo", "-o", "yaml", gw)
	var d AgentDescription
	if code != 0 || yaml.Unmarshal([]byte(out), &d) != nil || d.Agent.APIVersion != "agentplane.io/v1alpha1" || len(d.Replicas) != 2 {
		t.Errorf("describe -o yaml: %d %q\n%s", code, errs, out)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"agent", "nope"}, 1, `no agent "nope"`},
		{[]string{"pod", "echo"}, 2, `unknown resource "pod"`},
		{[]string{"agent", "echo", "-o", "wide"}, 2, "-o"},
		{[]string{"agent"}, 1, "accepts 2 arg(s)"},
	} {
		if out, errs, code := runCLI(t.Context(), t, newDescribeCommand, append(tc.args, gw)...); code != tc.code || out != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("describe %q: %d %q %q; want %d with %q", tc.args, code, out, errs, tc.code, tc.want)
		}
	}
}

func TestPrintDescriptionOfACrashLoop(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := discovery.Agent{Name: "x", Desired: 1, Endpoints: []discovery.Endpoint{{
		Name: "x-0", State: discovery.StateCrashLoopBackOff, Restarts: 4, LastExit: "exit status 3",
		Since: now.Add(-90 * time.Second), NextStart: now.Add(8 * time.Second),
	}}}
	d := AgentDescription{Replicas: st.Endpoints}
	d.Agent.Name = "x"
	d.Agent.Status = agentStatus(st, nil, now)
	var b strings.Builder
	if err := printDescription(&b, d, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"  Degraded     True    CrashLoopBackOff  crash-looping: x-0\n",
		"  x-0   CrashLoopBackOff (restart in 8s)  false  -    4         exit status 3  1m ",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
}

// A replica that never answered its startup probe: describe names it in the Degraded condition
// with why, and shows the probe's error and its stderr's last lines; a replica starting for the
// first time is progressing, with its probe's error, not degraded.
func TestPrintDescriptionOfAReplicaThatCannotStart(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	msg := "no answer to its startup probe within 3s, 3 tries (does it listen on $PORT?): connection refused"
	st := discovery.Agent{Name: "x", Desired: 2, Endpoints: []discovery.Endpoint{{
		Name: "x-0", State: discovery.StateStarting, Restarts: 1, LastExit: "startup probe failed",
		Reason: discovery.ReasonStartupProbeFailed, Message: msg, StderrTail: "config loaded\nlistening on :8080\n",
		Since: now.Add(-time.Second),
	}, {
		Name: "x-1", State: discovery.StateStarting, Reason: discovery.ReasonStartupProbeFailing, Message: "startup probe failing: connection refused",
		Since: now.Add(-time.Second),
	}}}
	d := AgentDescription{Replicas: st.Endpoints}
	d.Agent.Name = "x"
	d.Agent.Status = agentStatus(st, nil, now)
	var b strings.Builder
	if err := printDescription(&b, d, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Degraded     True    CrashLoopBackOff  crash-looping: x-0 (StartupProbeFailed: " + msg + ")\n",
		"Progressing  True    ReplicasChanging  starting x-1 (StartupProbeFailing: startup probe failing: connection refused)\n",
		"Not ready:\n  x-0: StartupProbeFailed: " + msg + "\n    last lines of stderr:\n      config loaded\n      listening on :8080\n" +
			"  x-1: StartupProbeFailing: startup probe failing: connection refused\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
}

// describe shows how an autoscaled agent scales, its desired replicas from the autoscaler (not
// spec.replicas), and why it has them.
func TestPrintDescriptionOfAnAutoscaledAgent(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := discovery.Agent{Name: "x", Desired: 3, Autoscaled: true, MinReplicas: 0, MaxReplicas: 4,
		ScaleReason: "scaled 1→3: load 1.40 over target 0.70", ScaledAt: now.Add(-12 * time.Second)}
	d := AgentDescription{}
	d.Agent.Name = "x"
	d.Agent.Spec.Replicas = ptr.To[int32](1)
	d.Agent.Spec.Autoscaling = &v1alpha1.Autoscaling{MinReplicas: ptr.To[int32](0), MaxReplicas: 4}
	d.Agent.Status = agentStatus(st, nil, now)
	var b strings.Builder
	if err := printDescription(&b, d, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Replicas:         3 desired | 0 total | 0 ready\n",
		"Autoscaling:      0–4 replicas on task load (target 0.70); scaled 1→3: load 1.40 over target 0.70 (12s ago)\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
}

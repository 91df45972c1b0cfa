package cli

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestLogsCommand(t *testing.T) {
	t.Parallel()
	env := startAdmin(t, agentYAML("echo", 2, ""))
	env.waitFor("ready", readyReplicas("echo", 2))
	gw := "--gateway=" + env.srv.URL
	logs := func(args ...string) (string, string, int) {
		return runCLI(t.Context(), t, newLogsCommand, append(args, gw)...)
	}

	for _, tc := range []struct {
		args    []string
		replica string
		notice  bool
	}{
		{[]string{"echo-1"}, "echo-1", false},
		{[]string{"echo"}, "echo-0", true},
		{[]string{"echo", "--replica", "1"}, "echo-1", false},
	} {
		out, errs, code := logs(tc.args...)
		if code != 0 || !strings.Contains(out, "--- agentplane: start "+tc.replica+" attempt 1 at ") {
			t.Errorf("logs %q: %d %q %q", tc.args, code, out, errs)
		}
		if got := strings.Contains(errs, "choose with --replica N"); got != tc.notice {
			t.Errorf("logs %q: notice on stderr %v, want %v: %q", tc.args, got, tc.notice, errs)
		}
	}
	if out, errs, code := logs("echo-0", "--tail", "1"); code != 0 || strings.Count(out, "\n") != 1 {
		t.Errorf("logs --tail 1: %d %q %q", code, out, errs)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"nope"}, 1, `no agent or replica called "nope"`},
		{[]string{"echo-7"}, 1, "no log for replica echo-7"},
		{[]string{"Bad_Name", "--replica", "0"}, 2, "not an agent name"},
		{[]string{"echo", "--replica", "-2"}, 2, "--replica"},
		{[]string{"echo", "--tail", "-5"}, 2, "--tail"},
	} {
		if out, errs, code := logs(tc.args...); code != tc.code || out != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("logs %q: %d %q %q; want %d with %q", tc.args, code, out, errs, tc.code, tc.want)
		}
	}

	// -f prints until the context ends, then exits cleanly.
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	out, errs, code := runCLI(ctx, t, newLogsCommand, "echo-0", "-f", gw)
	if code != 0 || !strings.Contains(out, "--- agentplane: start echo-0 attempt 1 at ") {
		t.Errorf("logs -f: %d %q %q", code, out, errs)
	}
}

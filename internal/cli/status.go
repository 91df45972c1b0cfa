package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/agentplane/agentplane/internal/discovery"
)

// reportStatus prints a line per event until ctx ends, and never the same event twice: an
// agent's ready replicas when their number changes, all agents ready (once), an agent removed,
// a replica that exits or fails a probe (once, then once more if it keeps doing so the same
// way, then only when the way changes), and a replica ready again after that. The words are
// those of `get` and `describe`. On a terminal, a spinner shows progress while replicas start,
// and lines are marked ✓ (all is well) or ✗ (a replica failed); a replica still starting is
// neither.
func reportStatus(ctx context.Context, w io.Writer, src discovery.Source, try string) {
	tty := isTerminal(w)
	var spinner *progressbar.ProgressBar
	if tty {
		spinner = progressbar.NewOptions(-1, progressbar.OptionSetWriter(w), progressbar.OptionSpinnerType(14),
			progressbar.OptionClearOnFinish(), progressbar.OptionSetDescription("starting agents"))
	}
	stopSpinner := func() {
		if spinner != nil {
			_ = spinner.Finish()
			_ = spinner.Clear()
			spinner = nil
		}
	}
	defer stopSpinner()
	r := newStatusReporter(func(mark, line string) {
		if spinner != nil {
			_ = spinner.Clear()
		}
		if tty && mark != "" {
			line = mark + " " + line
		}
		fmt.Fprintln(w, line)
	}, try)

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ch := src.Changed()
		r.observe(src.Snapshot(), time.Now())
		if r.allReadyOnce {
			stopSpinner()
		} else if spinner != nil {
			spinner.Describe(fmt.Sprintf("starting agents: %d/%d replicas ready", r.readyTotal, r.total))
		}
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				waiting = false
			case <-tick.C:
				if spinner != nil {
					_ = spinner.Add(1)
				}
			}
		}
	}
}

// Marks of the console's lines on a terminal.
const (
	markOK     = "✓"
	markFailed = "✗"
)

// statusReporter turns snapshots into event lines, remembering what it printed.
type statusReporter struct {
	print func(mark, line string)
	try   string // tryCommands

	agents       map[string]int            // agent → ready replicas last printed (-1: none yet)
	problems     map[string]replicaProblem // replica name → the last problem printed for it
	ready        map[string]bool           // replica name and URL (one process) → ready last seen
	allReadyOnce bool
	total        int // replicas desired and ready, in the last snapshot
	readyTotal   int
}

// replicaProblem is a problem printed for a replica, and whether it was seen to loop.
type replicaProblem struct {
	what     string // its state, reason and exit
	restarts int    // the replica's restarts then
	looping  bool   // it was seen again, and printed as a loop
}

func newStatusReporter(print func(mark, line string), try string) *statusReporter {
	return &statusReporter{print: print, try: try, agents: map[string]int{}, problems: map[string]replicaProblem{}, ready: map[string]bool{}}
}

func (r *statusReporter) observe(agents []discovery.Agent, now time.Time) {
	r.total, r.readyTotal = 0, 0
	present := map[string]bool{}
	live := map[string]bool{}
	for _, a := range agents {
		present[a.Name] = true
		n := a.ReadyCount()
		r.total += a.Desired
		r.readyTotal += n
		prev, seen := r.agents[a.Name]
		switch {
		case (!seen || prev < 0) && n == 0:
			r.agents[a.Name] = -1 // starting: nothing to say yet
		case a.Desired == 0 && n == 0:
			// Scaled to zero or being removed: its own line says which, not "0/0 ready".
			r.agents[a.Name] = 0
		case prev != n:
			mark := ""
			if n >= a.Desired {
				mark = markOK
			}
			r.print(mark, fmt.Sprintf("agent %-12s %d/%d replicas ready", a.Name, n, a.Desired))
			r.agents[a.Name] = n
		}
		for _, e := range a.Endpoints {
			if e.Gateway {
				continue
			}
			live[e.Name] = true
			r.replica(e, now)
		}
	}
	for name := range r.agents {
		if !present[name] {
			r.print("", fmt.Sprintf("agent %s removed", name))
			delete(r.agents, name)
		}
	}
	for name := range r.problems {
		if !live[name] {
			delete(r.problems, name)
		}
	}
	for key := range r.ready {
		if name, _, _ := strings.Cut(key, " "); !live[name] {
			delete(r.ready, key)
		}
	}
	if !r.allReadyOnce && r.readyTotal == r.total && len(agents) > 0 {
		r.allReadyOnce = true
		r.print(markOK, fmt.Sprintf("all %d agents ready (%d replicas). Try:\n%s", len(agents), r.total, r.try))
	}
}

// problemRestarts is the restart count seen when the problem of replica name was printed.
func (r *statusReporter) problemRestarts(name string) int { return r.problems[name].restarts }

func (r *statusReporter) replica(e discovery.Endpoint, now time.Time) {
	key := e.Name + " " + e.URL // one process of the replica: a rolling update runs two at once
	wasReady := r.ready[key]
	r.ready[key] = e.Ready
	if e.Ready {
		if _, failed := r.problems[e.Name]; !wasReady && (failed || r.allReadyOnce) {
			r.print(markOK, fmt.Sprintf("replica %s ready at %s (restarts: %d)", e.Name, e.URL, e.Restarts))
		}
		delete(r.problems, e.Name)
		return
	}
	first, again, ok := problemLines(e)
	if !ok {
		return
	}
	// The same problem is the same state, reason and exit: a message may name a new port
	// each time.
	what := e.State + " " + e.Reason + " " + e.LastExit
	p, printed := r.problems[e.Name]
	switch {
	case !printed || p.what != what:
		r.problems[e.Name] = replicaProblem{what: what, restarts: e.Restarts}
		r.print(markFailed, first+restartIn(e, now))
	case again != "" && !p.looping && e.Restarts > r.problemRestarts(e.Name):
		r.problems[e.Name] = replicaProblem{what: what, restarts: e.Restarts, looping: true}
		r.print(markFailed, again+restartIn(e, now))
	}
}

// problemLines say what is wrong with a replica that is not ready: the first time, and when it
// happens again (empty for a problem that does not repeat). ok is false when nothing is wrong
// (it is starting, or stopping).
func problemLines(e discovery.Endpoint) (first, again string, ok bool) {
	detail := e.Message
	if e.Reason == discovery.ReasonExited || e.Reason == "" {
		detail = e.LastExit
	}
	if tail := strings.TrimRight(e.StderrTail, "\n"); tail != "" {
		sep := "; stderr: "
		if e.Reason == discovery.ReasonExited {
			sep = ": "
		}
		detail += sep + shorten(tail[strings.LastIndexByte(tail, '\n')+1:], 100)
	}
	name := "replica " + e.Name
	switch {
	case e.State == discovery.StateCrashLoopBackOff:
		switch e.Reason {
		case discovery.ReasonStartupProbeFailed:
			return name + " did not start (" + detail + ")", name + " keeps failing to start (" + detail + ")", true
		case discovery.ReasonLivenessProbeFailed:
			return name + " was killed (" + detail + ")", name + " keeps failing its liveness probe (" + detail + ")", true
		case discovery.ReasonStartFailed:
			return name + " could not be started (" + detail + ")", name + " still cannot be started (" + detail + ")", true
		default:
			return name + " exited (" + detail + ")", name + " keeps exiting (" + detail + ")", true
		}
	case e.State == discovery.StateRunning && e.Reason == discovery.ReasonReadinessProbeFailing:
		return name + " not ready (" + detail + ")", "", true
	}
	return "", "", false
}

func restartIn(e discovery.Endpoint, now time.Time) string {
	if e.State != discovery.StateCrashLoopBackOff || e.NextStart.IsZero() {
		return ""
	}
	return fmt.Sprintf(", restart %d in %s", e.Restarts, e.NextStart.Sub(now).Round(100*time.Millisecond))
}

// shorten cuts s to at most n runes, marking the cut with an ellipsis.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// tryCommands are the commands the console suggests once every agent is ready. With
// authentication on they need credentials, and say where they go (never which).
func tryCommands(url string, secured bool) string {
	if !secured {
		return "  curl -s " + url + "/agents\n  agentplane get replicas"
	}
	return "  curl -s -H \"Authorization: Bearer $AGENTPLANE_TOKEN\" " + url + "/agents\n" +
		"  agentplane get replicas --gateway " + url + "   (AGENTPLANE_TOKEN: an admin's API key or token)"
}

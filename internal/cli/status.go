package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/agentplane/agentplane/internal/discovery"
)

// reportStatus prints a line per agent as its replicas become ready, then a line for every
// replica that exits or comes back, until ctx ends. On a terminal a spinner shows progress
// while replicas start.
func reportStatus(ctx context.Context, w io.Writer, src discovery.Source, url string) {
	tty := isTerminal(w)
	mark := func(ok bool) string {
		switch {
		case !tty:
			return ""
		case ok:
			return "✓ "
		default:
			return "✗ "
		}
	}
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

	ready := map[string]int{}           // agent → ready replicas last printed
	replicaState := map[string]string{} // replica → state last seen
	replicaReady := map[string]bool{}   // replica → ready last seen
	allReadyOnce := false
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ch := src.Changed()
		agents := src.Snapshot()
		total, readyTotal := 0, 0
		for _, a := range agents {
			n := a.ReadyCount()
			total += a.Desired
			readyTotal += n
			if prev, seen := ready[a.Name]; !seen || prev != n {
				if seen || n > 0 {
					if spinner != nil {
						_ = spinner.Clear()
					}
					fmt.Fprintf(w, "%sagent %-12s %d/%d replicas ready\n", mark(n == a.Desired), a.Name, n, a.Desired)
				}
				ready[a.Name] = n
			}
			for _, e := range a.Endpoints {
				prevState, prevReady := replicaState[e.Name], replicaReady[e.Name]
				if allReadyOnce && e.State != prevState && e.State == discovery.StateCrashLoopBackOff {
					fmt.Fprintf(w, "%sreplica %s exited (%s); restart %d in %s\n", mark(false), e.Name, e.LastExit,
						e.Restarts, time.Until(e.NextStart).Round(100*time.Millisecond))
				}
				if allReadyOnce && e.Ready && !prevReady {
					fmt.Fprintf(w, "%sreplica %s ready at %s (restarts: %d)\n", mark(true), e.Name, e.URL, e.Restarts)
				}
				replicaState[e.Name], replicaReady[e.Name] = e.State, e.Ready
			}
		}
		if spinner != nil {
			spinner.Describe(fmt.Sprintf("starting agents: %d/%d replicas ready", readyTotal, total))
		}
		if !allReadyOnce && readyTotal == total {
			allReadyOnce = true
			stopSpinner()
			fmt.Fprintf(w, "%sall %d agents ready (%d replicas). Try:\n  curl -s %s/agents\n  agentplane get replicas\n",
				mark(true), len(agents), total, url)
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

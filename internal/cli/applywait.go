package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/supervisor"
)

// applyProgressEvery bounds how often apply --wait says what it waits for.
const applyProgressEvery = 5 * time.Second

// toWaitFor returns the agents whose replicas an apply started or replaced: those --wait waits
// for. Configured agents changed in nothing a replica runs, and deleted ones are gone.
func toWaitFor(d supervisor.Diff) []string {
	out := slices.Concat(d.Added, d.Rolled)
	for _, s := range d.Scaled {
		out = append(out, s.Agent)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// replicaView is a replica as GET /api/v1/agents/{name} reports it. Reason and Message, once
// the supervisor reports them, say why a replica is not ready (its probe's error, the tail of
// its output); until then they are empty and State and LastExit say what is known.
type replicaView struct {
	discovery.Endpoint
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// agentView is the answer of GET /api/v1/agents/{name} (AgentDescription) as apply reads it.
type agentView struct {
	Agent    v1alpha1.Agent `json:"agent"`
	Replicas []replicaView  `json:"replicas"`
}

// rolledOut reports whether an agent's new generation is ready: every desired replica ready
// (none desired counts), none being started or stopped, none left on an older spec. progress
// says where it is otherwise, such as "1/2 replicas ready; starting echo-1".
func rolledOut(v agentView) (done bool, progress string) {
	conds := v.Agent.Status.Conditions
	ready := meta.FindStatusCondition(conds, v1alpha1.ConditionReady)
	prog := meta.FindStatusCondition(conds, v1alpha1.ConditionProgressing)
	if ready == nil || prog == nil {
		return false, "no status yet"
	}
	done = ready.Status == "True" && prog.Status == "False" && prog.Reason == "Complete"
	progress = ready.Message
	if prog.Status == "True" || prog.Reason == "RolloutStalled" {
		progress += "; " + prog.Message
	}
	return done, progress
}

// notReady says, a line per replica, why the replicas of v that are not ready are not, as of
// now: their state and for how long, restarts, last exit and, when reported, the reason.
func notReady(v agentView, now time.Time) []string {
	var out []string
	for _, r := range v.Replicas {
		if r.Ready && r.State == discovery.StateRunning {
			continue
		}
		if r.State == discovery.StateTerminating || r.State == discovery.StateStopped {
			continue // on its way out: not what the agent waits for
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s: %s", r.Name, r.State)
		if r.State == discovery.StateRunning {
			b.WriteString(" but not ready (failing its readiness probe)")
		}
		if !r.Since.IsZero() {
			fmt.Fprintf(&b, " for %s", now.Sub(r.Since).Round(time.Second))
		}
		if r.Restarts > 0 {
			fmt.Fprintf(&b, ", restarted %d times", r.Restarts)
		}
		if r.LastExit != "" {
			fmt.Fprintf(&b, ", last exit: %s", r.LastExit)
		}
		if !r.NextStart.IsZero() && r.NextStart.After(now) {
			fmt.Fprintf(&b, ", next start in %s", r.NextStart.Sub(now).Round(time.Second))
		}
		for _, s := range []string{r.Reason, r.Message} {
			if s = strings.TrimSpace(s); s != "" {
				fmt.Fprintf(&b, "; %s", s)
			}
		}
		out = append(out, b.String())
	}
	return out
}

// waitApplied waits until every agent of agents has rolled out (see rolledOut), for at most
// timeout, checking every poll. It says on stderr what it waits for when that takes a while, no
// more often than applyProgressEvery. On timeout it returns an error that names each agent not
// ready and why its replicas are not.
func waitApplied(ctx context.Context, streams Streams, gw gatewayTarget, agents []string, timeout, poll time.Duration) error {
	if len(agents) == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	pending := slices.Clone(agents)
	views := map[string]agentView{}
	said := map[string]string{}
	var lastSaid time.Time
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		var still []string
		for i, name := range pending {
			var v agentView
			if err := adminDo(wctx, http.MethodGet, gw, "/api/v1/agents/"+url.PathEscape(name), nil, &v); err != nil {
				if wctx.Err() != nil {
					still = append(still, pending[i:]...)
					break
				}
				return fmt.Errorf("waiting for agent/%s: %w", name, err)
			}
			views[name] = v
			done, progress := rolledOut(v)
			if done {
				if _, ok := said[name]; ok {
					fmt.Fprintf(streams.Err, "agent/%s ready: %s\n", name, progress)
				}
				continue
			}
			still = append(still, name)
			now := time.Now()
			if progress != said[name] && now.Sub(start) >= time.Second && now.Sub(lastSaid) >= applyProgressEvery {
				fmt.Fprintf(streams.Err, "waiting for agent/%s: %s\n", name, progress)
				said[name], lastSaid = progress, now
			}
		}
		pending = still
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return notReadyError(pending, views, timeout, time.Now())
		case <-tick.C:
		}
	}
}

// notReadyError says which agents are not ready after timeout, and why.
func notReadyError(pending []string, views map[string]agentView, timeout time.Duration, now time.Time) error {
	var b strings.Builder
	for i, name := range pending {
		if i > 0 {
			b.WriteString("\n")
		}
		v, ok := views[name]
		if !ok {
			fmt.Fprintf(&b, "agent/%s: no answer from the gateway about it", name)
			continue
		}
		_, progress := rolledOut(v)
		fmt.Fprintf(&b, "agent/%s is not ready after %s: %s", name, timeout, progress)
		for _, l := range notReady(v, now) {
			b.WriteString("\n  " + l)
		}
		for _, r := range v.Replicas {
			if !r.Ready {
				fmt.Fprintf(&b, "\n  its output: agentplane logs %s", r.Name)
				break
			}
		}
	}
	b.WriteString("\nthe change is applied; fix the manifest and apply again, or wait longer with --wait=DURATION")
	return errors.New(b.String())
}

package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/autoscale"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/supervisor"
)

// autoscaleInterval is how often embedded mode samples demand and decides.
const autoscaleInterval = time.Second

// scaler is what the embedded autoscaler needs of the supervisor.
type scaler interface {
	Agents() []v1alpha1.Agent
	Snapshot() []discovery.Agent
	Scale(ctx context.Context, name string, n int, reason string) (supervisor.Diff, error)
}

// autoscaler scales embedded mode's agents that scale on task load: every interval, and at once
// when a task waits for an agent with no ready replica, it samples each one's demand at the
// gateway, decides with package autoscale and has the supervisor start or drain replicas.
type autoscaler struct {
	sup      scaler
	demand   func() map[string]gateway.Demand
	wake     chan struct{}
	interval time.Duration
	now      func() time.Time
	log      *slog.Logger
	console  io.Writer

	history map[string]*autoscale.History
	failing map[string]string // agent → the Scale error last reported
}

func newAutoscaler(sup scaler, demand func() map[string]gateway.Demand, log *slog.Logger, console io.Writer) *autoscaler {
	return &autoscaler{sup: sup, demand: demand, wake: make(chan struct{}, 1), interval: autoscaleInterval, now: time.Now,
		log: log, console: console, history: map[string]*autoscale.History{}, failing: map[string]string{}}
}

// ScaleUp asks for a decision at once; it never blocks (gateway.Options.ScaleUp).
func (a *autoscaler) ScaleUp(string) {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Start decides until ctx ends.
func (a *autoscaler) Start(ctx context.Context) error {
	tick := time.NewTicker(a.interval)
	defer tick.Stop()
	for {
		a.step(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-a.wake:
		}
	}
}

// step samples and decides once for every agent that scales on task load.
func (a *autoscaler) step(ctx context.Context) {
	now := a.now()
	demand := a.demand()
	snap := a.sup.Snapshot()
	seen := map[string]bool{}
	for _, def := range a.sup.Agents() {
		spec, ok := autoscale.SpecOf(&def)
		if !ok {
			continue
		}
		seen[def.Name] = true
		h := a.history[def.Name]
		if h == nil {
			h = &autoscale.History{}
			a.history[def.Name] = h
		}
		d := demand[def.Name]
		h.Add(autoscale.Sample{At: now, InFlight: d.InFlight, Queued: d.Queued}, spec)
		info, _ := discovery.Lookup(snap, def.Name)
		dec := autoscale.Desired(h.Samples(), info.Desired, spec, now)
		if dec.Replicas == info.Desired {
			continue
		}
		if _, err := a.sup.Scale(ctx, def.Name, dec.Replicas, dec.Reason); err != nil {
			if ctx.Err() == nil && a.failing[def.Name] != err.Error() {
				a.failing[def.Name] = err.Error()
				a.log.Warn("autoscaling failed", "agent", def.Name, "want", dec.Replicas, "err", err)
			}
			continue
		}
		delete(a.failing, def.Name)
		a.log.Info("agent autoscaled", "agent", def.Name, "from", info.Desired, "to", dec.Replicas, "reason", dec.Reason)
		fmt.Fprintf(a.console, "%s %s\n", def.Name, dec.Reason)
	}
	for name := range a.history {
		if !seen[name] {
			delete(a.history, name) // removed, or no longer autoscaled: start afresh if it comes back
			delete(a.failing, name)
		}
	}
}

// drainReplica waits until the gateway has no task on the replica at url, or ctx ends
// (supervisor.Options.Drain).
func drainReplica(inFlight func(url string) int) func(ctx context.Context, url string) {
	return func(ctx context.Context, url string) {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for inFlight(url) > 0 {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}
}

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/discovery"
)

// maxRolloutCrashes is how often a new replica of a rolling update may exit before it becomes
// ready until Apply gives up on the update.
const maxRolloutCrashes = 3

// Diff is what an Apply changed, by agent name. Each list is sorted; an agent is in at most one
// of Added, Removed, Updated and Unchanged, and may be both Scaled and Rolled.
type Diff struct {
	// Added agents were started.
	Added []string `json:"added,omitempty"`
	// Removed agents were stopped, their replicas drained, and are gone.
	Removed []string `json:"removed,omitempty"`
	// Scaled agents got replicas added or their highest-index replicas drained and stopped.
	Scaled []Scale `json:"scaled,omitempty"`
	// Rolled agents had their replicas replaced one at a time for a new command, args, env,
	// probes or maxConcurrency.
	Rolled []string `json:"rolled,omitempty"`
	// Updated agents changed only in fields that need no restart (description, state,
	// placement, or fields that embedded mode ignores), which took effect at once.
	Updated []string `json:"updated,omitempty"`
	// Unchanged agents are as they were.
	Unchanged []string `json:"unchanged,omitempty"`
}

// Scale is a change of an agent's number of replicas.
type Scale struct {
	Agent string `json:"agent"`
	From  int    `json:"from"`
	To    int    `json:"to"`
}

// Changed reports whether the Apply changed anything.
func (d Diff) Changed() bool {
	return len(d.Added)+len(d.Removed)+len(d.Scaled)+len(d.Rolled)+len(d.Updated) > 0
}

// Apply makes agents the whole set of agents the supervisor runs, and returns once the change is
// done. agents are defaulted and validated first; if any of them cannot run, Apply changes
// nothing and returns an error wrapping ErrInvalid. Otherwise:
//
//   - a new agent's replicas are started (Apply does not wait until they are ready);
//   - an agent no longer in agents has its replicas published as Terminating, so that the gateway
//     stops routing to them, then stopped as on shutdown (SIGTERM, then SIGKILL after
//     Options.Grace); Apply waits until they are gone, then the agent leaves the snapshots;
//   - a scaled-up agent gets replicas at the next indices; a scaled-down one has its
//     highest-index replicas stopped the same way as a removed agent's;
//   - an agent whose command, args, env, probes, working directory or maxConcurrency changed has its replicas
//     replaced one at a time, surging by one: a new process for replica <agent>-<i> is started
//     next to the old one, under the same name and writing to the same log file, and only once it
//     is ready is the old one stopped, so the number of ready replicas never drops. A new
//     process that does not become ready within Options.ProgressDeadline, or that exits
//     maxRolloutCrashes times first, is stopped and the update ends there with an error: the
//     replicas not replaced yet keep the old spec, and applying the new spec again resumes;
//   - other changes take effect at once.
//
// ctx bounds the waits for new replicas of a rolling update; stopping replicas is not
// abandoned when it ends. On error, the Diff says what Apply set out to do. Calls of Apply and
// Update are serialized. Before Start, Apply only changes what Start will run; once Start is
// stopping, Apply returns ErrStopped.
func (s *Supervisor) Apply(ctx context.Context, agents []v1alpha1.Agent) (Diff, error) {
	return s.Update(ctx, func([]v1alpha1.Agent) ([]v1alpha1.Agent, error) { return agents, nil })
}

// Update applies, as Apply does, the agents that f returns given the current ones (as Agents
// returns them). f runs while no other Apply or Update does, so that changes made from the
// current agents are not lost to a concurrent Apply. An error of f is returned as is.
func (s *Supervisor) Update(ctx context.Context, f func(current []v1alpha1.Agent) ([]v1alpha1.Agent, error)) (Diff, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	// Replicas an earlier Apply stopped, abandoned by its caller, must be gone first: an agent
	// may come back under the same name.
	if err := s.waitRetired(ctx); err != nil {
		return Diff{}, err
	}
	desired, err := f(s.Agents())
	if err != nil {
		return Diff{}, err
	}
	for name := range s.scaled {
		if !slices.ContainsFunc(desired, func(a v1alpha1.Agent) bool { return a.Name == name && a.Spec.Autoscaling.TaskBased() }) {
			delete(s.scaled, name) // gone, or no longer autoscaled: a comeback starts afresh
			delete(s.reasons, name)
		}
	}
	defs, specs, err := s.resolve(desired)
	if err != nil {
		return Diff{}, err
	}
	return s.apply(ctx, defs, specs)
}

// Scale sets the replicas of an agent that scales on task load (spec.autoscaling without
// targetCPUUtilizationPercentage) to n, within its bounds, and applies that as Apply would:
// new replicas start, and replicas removed are drained (see Options.Drain) and stopped. The
// count holds across later Applies of the agent, while it scales on task load. It returns the
// change made, if any.
func (s *Supervisor) Scale(ctx context.Context, name string, n int, reason string) (Diff, error) {
	return s.Update(ctx, func(current []v1alpha1.Agent) ([]v1alpha1.Agent, error) {
		i := slices.IndexFunc(current, func(a v1alpha1.Agent) bool { return a.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("agent %q: %w", name, ErrUnknownAgent)
		}
		if !current[i].Spec.Autoscaling.TaskBased() {
			return nil, fmt.Errorf("agent %q does not scale on task load", name)
		}
		s.scaled[name] = max(n, 0) // f runs under applyMu, which guards scaled and reasons
		s.reasons[name] = scaleReason{why: reason, at: s.opts.Clock()}
		return current, nil
	})
}

// ErrUnknownAgent is wrapped by Scale's error for an agent the supervisor does not run.
var ErrUnknownAgent = errors.New("no such agent")

// agentChange is what apply still has to do for one agent after its first, immediate step.
type agentChange struct {
	a      *agent
	spec   *agentSpec
	stop   []*replica // already Terminating
	roll   []int      // indices of replicas that run an older spec
	remove bool       // remove the agent once its replicas are gone
}

func (s *Supervisor) apply(ctx context.Context, defs []*v1alpha1.Agent, specs []*agentSpec) (Diff, error) {
	var (
		diff    Diff
		changes []agentChange
		log     = s.opts.Logger
	)
	s.mu.Lock()
	if s.phase >= phaseStopping {
		s.mu.Unlock()
		return diff, ErrStopped
	}
	// First step, published at once: start what is new, withdraw what goes.
	want := map[string]bool{}
	for i, def := range defs {
		spec := specs[i]
		want[spec.name] = true
		a := s.lookupLocked(spec.name)
		if a == nil {
			a = s.newAgentLocked(def, spec)
			s.insertAgentLocked(a)
			for _, r := range a.replicas {
				s.startLocked(r)
			}
			diff.Added = append(diff.Added, spec.name)
			log.Info("agent added", "agent", spec.name, "replicas", spec.replicas)
			continue
		}
		oldDef, from := a.def, a.spec.replicas
		a.def, a.spec, a.info = def, spec, agentInfo(def, spec)
		c := agentChange{a: a, spec: spec}
		live := map[int]*replica{}
		for _, r := range a.replicas {
			if r.leaving {
				continue
			}
			if r.index >= spec.replicas {
				r.leaving = true
				s.changeLocked(r, func(*discovery.Endpoint) {})
				c.stop = append(c.stop, r)
				continue
			}
			live[r.index] = r
			s.changeLocked(r, func(e *discovery.Endpoint) { e.Site = spec.site })
		}
		for i := range spec.replicas {
			switch r := live[i]; {
			case r == nil:
				r = s.newReplicaLocked(spec, i)
				a.addReplicaLocked(r)
				s.startLocked(r)
			case !r.spec.sameProcess(spec):
				c.roll = append(c.roll, i)
			}
		}
		if from != spec.replicas {
			diff.Scaled = append(diff.Scaled, Scale{Agent: spec.name, From: from, To: spec.replicas})
			log.Info("agent scaled", "agent", spec.name, "from", from, "to", spec.replicas)
		}
		if len(c.roll) > 0 {
			diff.Rolled = append(diff.Rolled, spec.name)
			log.Info("rolling update", "agent", spec.name, "replicas", len(c.roll))
		}
		switch {
		case from != spec.replicas || len(c.roll) > 0:
		case !reflect.DeepEqual(oldDef.Spec, def.Spec):
			diff.Updated = append(diff.Updated, spec.name)
		default:
			diff.Unchanged = append(diff.Unchanged, spec.name)
		}
		if len(c.stop) > 0 || len(c.roll) > 0 {
			changes = append(changes, c)
		}
	}
	for _, a := range s.agents {
		if want[a.spec.name] || a.removed {
			continue
		}
		a.removed = true
		a.info.Desired = 0
		c := agentChange{a: a, remove: true}
		for _, r := range a.replicas {
			if !r.leaving {
				r.leaving = true
				s.changeLocked(r, func(*discovery.Endpoint) {})
				c.stop = append(c.stop, r)
			}
		}
		diff.Removed = append(diff.Removed, a.spec.name)
		log.Info("agent removed", "agent", a.spec.name)
		changes = append(changes, c)
	}
	s.publishLocked()
	// Then stop what was withdrawn, now that the gateway no longer routes to it.
	var stopped []<-chan struct{}
	for _, c := range changes {
		if len(c.stop) > 0 || c.remove {
			stopped = append(stopped, s.retireLocked(c.a, c.stop, c.remove))
		}
	}
	s.mu.Unlock()

	// Rolling updates, one goroutine per agent, one replica at a time.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, c := range changes {
		if len(c.roll) == 0 {
			continue
		}
		wg.Go(func() {
			for _, i := range c.roll {
				if err := s.roll(ctx, c.a, c.spec, i); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("rolling update of agent %q: %w", c.spec.name, err))
					mu.Unlock()
					return
				}
			}
			log.Info("rolling update done", "agent", c.spec.name)
		})
	}
	wg.Wait()
	for _, ch := range stopped {
		<-ch // bounded by Options.Grace
	}
	for _, l := range [][]string{diff.Added, diff.Removed, diff.Rolled, diff.Updated, diff.Unchanged} {
		slices.Sort(l)
	}
	slices.SortFunc(diff.Scaled, func(a, b Scale) int { return strings.Compare(a.Agent, b.Agent) })
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return diff, errors.Join(errs...)
}

// roll replaces the replica of a at index i, if it runs an older spec than spec: it starts a
// new replica next to it, waits until that one is ready, then stops the old one.
func (s *Supervisor) roll(ctx context.Context, a *agent, spec *agentSpec, i int) error {
	s.mu.Lock()
	if s.phase >= phaseStopping {
		s.mu.Unlock()
		return ErrStopped
	}
	var old *replica
	for _, r := range a.replicas {
		if r.index == i && !r.leaving {
			old = r
		}
	}
	if old == nil || old.spec.sameProcess(spec) {
		s.mu.Unlock()
		return nil
	}
	next := s.newReplicaLocked(spec, i)
	a.addReplicaLocked(next)
	if s.phase == phaseNew {
		// Nothing runs yet: replace the replica at once.
		old.leaving = true
		a.replicas = slices.DeleteFunc(a.replicas, func(r *replica) bool { return r == old })
		s.publishLocked()
		s.mu.Unlock()
		return nil
	}
	s.startLocked(next)
	s.publishLocked()
	s.mu.Unlock()
	s.opts.Logger.Info("rolling update: new replica started", "agent", spec.name, "replica", i)

	if err := s.waitReady(ctx, next); err != nil {
		s.mu.Lock()
		next.leaving = true
		s.changeLocked(next, func(*discovery.Endpoint) {})
		s.publishLocked()
		done := s.retireLocked(a, []*replica{next}, false)
		s.mu.Unlock()
		<-done
		return fmt.Errorf("the new process of replica %s did not become ready: %w", next.name, err)
	}
	s.mu.Lock()
	old.leaving = true
	s.changeLocked(old, func(*discovery.Endpoint) {})
	s.publishLocked()
	done := s.retireLocked(a, []*replica{old}, false)
	s.mu.Unlock()
	<-done
	s.opts.Logger.Info("rolling update: old replica stopped", "agent", spec.name, "replica", i)
	return nil
}

// waitReady waits until r is ready.
func (s *Supervisor) waitReady(ctx context.Context, r *replica) error {
	deadline := time.NewTimer(s.opts.ProgressDeadline)
	defer deadline.Stop()
	for {
		ch := s.Changed()
		s.mu.Lock()
		e := r.ep
		s.mu.Unlock()
		if e.Ready {
			return nil
		}
		if e.Restarts >= maxRolloutCrashes {
			return fmt.Errorf("it exited %d times (last: %s)", e.Restarts, e.LastExit)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.shutdown:
			return ErrStopped
		case <-deadline.C:
			return fmt.Errorf("not ready within %v (state %s)", s.opts.ProgressDeadline, e.State)
		}
	}
}

// retireLocked stops replicas rs of a, which the caller has marked leaving and published, then
// removes them (and a, if removeAgent) from the snapshots. The returned channel is closed once
// that is done; Update waits for it before the next change.
func (s *Supervisor) retireLocked(a *agent, rs []*replica, removeAgent bool) <-chan struct{} {
	var running []*replica
	for _, r := range rs {
		if r.done != nil {
			running = append(running, r)
		}
	}
	done := make(chan struct{})
	s.retiring = append(s.retiring, done)
	finish := func() {
		a.replicas = slices.DeleteFunc(a.replicas, func(r *replica) bool { return slices.Contains(rs, r) })
		if removeAgent {
			s.agents = slices.DeleteFunc(s.agents, func(x *agent) bool { return x == a })
		}
		s.publishLocked()
		close(done)
	}
	if len(running) == 0 {
		finish()
		return done
	}
	// Each replica is drained of its tasks (the gateway no longer routes to it), then stopped.
	drain := s.opts.Drain
	for _, r := range running {
		url := r.ep.URL
		go func() {
			if drain != nil && url != "" {
				ctx, cancel := context.WithTimeout(context.Background(), s.opts.DrainTimeout)
				go func() { // on shutdown, replicas stop at once
					select {
					case <-s.shutdown:
						cancel()
					case <-ctx.Done():
					}
				}()
				drain(ctx, url)
				cancel()
			}
			s.mu.Lock()
			r.cancel()
			s.mu.Unlock()
		}()
	}
	go func() {
		for _, r := range running {
			<-r.done
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		finish()
	}()
	return done
}

// waitRetired waits until every replica stopped by an earlier Apply is gone.
func (s *Supervisor) waitRetired(ctx context.Context) error {
	s.mu.Lock()
	pending := s.retiring
	s.retiring = nil
	s.mu.Unlock()
	for i, ch := range pending {
		select {
		case <-ch:
		case <-ctx.Done():
			s.mu.Lock()
			s.retiring = append(s.retiring, pending[i:]...)
			s.mu.Unlock()
			return ctx.Err()
		}
	}
	return nil
}

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/discovery"
)

// Options configure a Supervisor. Only DataDir is required.
type Options struct {
	// DataDir holds logs/<agent>/<agent>-<i>.log (appended to) and run/<agent>-<i>.pid.
	DataDir string
	// Executable replaces spec.command[0] when that is "agentplane"; default os.Executable().
	Executable string
	// Host is the address replicas listen on and are probed at; default "127.0.0.1".
	Host string
	// Grace is how long a replica may take to exit after SIGTERM on shutdown before its process
	// group gets SIGKILL; default 10s.
	Grace time.Duration
	// Backoff is the restart policy; zero fields take the defaults.
	Backoff Backoff
	// Launcher starts processes; default ExecLauncher.
	Launcher Launcher
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Clock gives the time for status timestamps and the backoff reset; default time.Now.
	Clock func() time.Time
}

// Defaults for Options.
const (
	DefaultHost  = "127.0.0.1"
	DefaultGrace = 10 * time.Second
)

// inheritedEnv are the only variables of the supervisor's environment that replicas inherit.
var inheritedEnv = []string{"PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"}

// Supervisor runs the replicas of a fixed set of agents as local processes. It is a
// discovery.Source, and reports every replica as Pending until Start runs it.
type Supervisor struct {
	opts     Options
	agents   []agentSpec // sorted by name, as in the snapshots
	prober   *prober
	runDir   string
	started  atomic.Bool
	inherits []string // "KEY=value" of inheritedEnv, read once

	// probeUnit is how long one "second" of a probe's periodSeconds lasts. Tests shorten it.
	probeUnit time.Duration

	mu       sync.Mutex
	status   []discovery.Agent // the working copy, guarded by mu
	stopping bool              // once set, no endpoint is ready or leaves Terminating; guarded by mu
	changed  chan struct{}     // closed and replaced on every publish, guarded by mu
	snap     atomic.Pointer[[]discovery.Agent]
}

var _ discovery.Source = (*Supervisor)(nil)

// agentSpec is what the supervisor needs of an Agent, resolved once.
type agentSpec struct {
	name     string
	argv     []string // command and args, with "agentplane" resolved
	env      []string // spec.env as "KEY=value"
	replicas int
	startup  v1alpha1.Probe
	ready    v1alpha1.Probe
	live     v1alpha1.Probe
}

// New returns a Supervisor for agents, which must be defaulted and valid. It starts nothing.
func New(agents []v1alpha1.Agent, opts Options) (*Supervisor, error) {
	if opts.DataDir == "" {
		return nil, errors.New("supervisor: DataDir is required")
	}
	if opts.Host == "" {
		opts.Host = DefaultHost
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	opts.Backoff = opts.Backoff.withDefaults()
	if opts.Launcher == nil {
		opts.Launcher = ExecLauncher{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	s := &Supervisor{
		opts:      opts,
		prober:    newProber(),
		runDir:    filepath.Join(opts.DataDir, "run"),
		probeUnit: time.Second,
		changed:   make(chan struct{}),
	}
	for _, k := range inheritedEnv {
		if v, ok := os.LookupEnv(k); ok {
			s.inherits = append(s.inherits, k+"="+v)
		}
	}

	seen := map[string]bool{}
	for i := range agents {
		a := &agents[i]
		if seen[a.Name] {
			return nil, fmt.Errorf("supervisor: agent %q is defined twice", a.Name)
		}
		seen[a.Name] = true
		if len(a.Spec.Command) == 0 {
			return nil, fmt.Errorf("supervisor: agent %q has no spec.command, which embedded mode needs", a.Name)
		}
		argv := slices.Concat(a.Spec.Command, a.Spec.Args)
		if argv[0] == "agentplane" {
			if s.opts.Executable == "" {
				exe, err := os.Executable()
				if err != nil {
					return nil, fmt.Errorf("supervisor: agent %q runs agentplane, but its path is unknown: %w", a.Name, err)
				}
				s.opts.Executable = exe
			}
			argv[0] = s.opts.Executable
		}
		spec := agentSpec{name: a.Name, argv: argv, replicas: a.DesiredReplicas()}
		for _, e := range a.Spec.Env {
			spec.env = append(spec.env, e.Name+"="+e.Value)
		}
		var p v1alpha1.Probes
		if a.Spec.Probes != nil {
			p = *a.Spec.Probes
		}
		spec.startup = probeWithDefaults(p.Startup, v1alpha1.DefaultStartupPeriodSeconds, v1alpha1.DefaultStartupFailureThreshold)
		spec.ready = probeWithDefaults(p.Readiness, v1alpha1.DefaultPeriodSeconds, v1alpha1.DefaultFailureThreshold)
		spec.live = probeWithDefaults(p.Liveness, v1alpha1.DefaultPeriodSeconds, v1alpha1.DefaultFailureThreshold)
		s.agents = append(s.agents, spec)

		st := discovery.Agent{
			Name:           a.Name,
			Description:    a.Spec.Description,
			State:          string(a.Spec.State),
			MaxConcurrency: int(a.Spec.MaxConcurrency),
			Desired:        spec.replicas,
			Endpoints:      make([]discovery.Endpoint, spec.replicas),
		}
		var site string
		if pl := a.Spec.Placement; pl != nil {
			site = pl.Site
			st.AllowedSites = slices.Clone(pl.AllowedSites)
		}
		now := opts.Clock()
		for r := range st.Endpoints {
			name := replicaName(a.Name, r)
			st.Endpoints[r] = discovery.Endpoint{
				Agent:   a.Name,
				Name:    name,
				Index:   r,
				State:   discovery.StatePending,
				Site:    site,
				Since:   now,
				LogPath: filepath.Join(opts.DataDir, "logs", a.Name, name+".log"),
			}
		}
		s.status = append(s.status, st)
	}
	// Keep specs and status in the same order, sorted by agent name.
	order := make([]int, len(s.agents))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int { return strings.Compare(s.agents[i].name, s.agents[j].name) })
	specs, status := make([]agentSpec, 0, len(order)), make([]discovery.Agent, 0, len(order))
	for _, i := range order {
		specs, status = append(specs, s.agents[i]), append(status, s.status[i])
	}
	s.agents, s.status = specs, status

	s.mu.Lock()
	s.publishLocked()
	s.mu.Unlock()
	return s, nil
}

func probeWithDefaults(p *v1alpha1.Probe, period, failures int32) v1alpha1.Probe {
	var out v1alpha1.Probe
	if p != nil {
		out = *p
	}
	if out.Path == "" {
		out.Path = v1alpha1.DefaultProbePath
	}
	if out.PeriodSeconds <= 0 {
		out.PeriodSeconds = period
	}
	if out.TimeoutSeconds <= 0 {
		out.TimeoutSeconds = v1alpha1.DefaultTimeoutSeconds
	}
	if out.FailureThreshold <= 0 {
		out.FailureThreshold = failures
	}
	return out
}

func replicaName(agent string, index int) string { return fmt.Sprintf("%s-%d", agent, index) }

// Snapshot returns the agents and their replicas, sorted by agent name then replica index.
// Callers must not modify it.
func (s *Supervisor) Snapshot() []discovery.Agent { return *s.snap.Load() }

// Changed returns a channel that is closed at the next change after the call.
func (s *Supervisor) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Start runs every replica and supervises it until ctx is cancelled. Then it marks every
// replica Terminating and not ready, and publishes that before it stops anything, so that the
// gateway stops routing first; sends SIGTERM to each replica's process group, SIGKILL after
// Options.Grace, waits for all of them and returns nil. It returns an error only when it cannot
// start at all. Start may be called once.
func (s *Supervisor) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("supervisor: Start called twice")
	}
	if err := os.MkdirAll(s.runDir, 0o755); err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	for _, a := range s.agents {
		if err := os.MkdirAll(filepath.Join(s.opts.DataDir, "logs", a.name), 0o755); err != nil {
			return fmt.Errorf("supervisor: %w", err)
		}
	}
	cleanStalePidFiles(s.runDir, s.opts.Logger)

	// Replicas run on their own context: on shutdown, the Terminating state must be published
	// before any of them sees a cancellation.
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	var wg sync.WaitGroup
	if ctx.Err() == nil {
		for ai := range s.agents {
			for ri := range s.agents[ai].replicas {
				wg.Go(func() { s.runReplica(runCtx, ai, ri) })
			}
		}
	}
	<-ctx.Done()

	s.opts.Logger.Info("stopping replicas", "grace", s.opts.Grace)
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	s.updateAll(func(e *discovery.Endpoint) { e.NextStart = time.Time{} })
	stop()
	wg.Wait()
	s.prober.transport.CloseIdleConnections()
	s.mu.Lock()
	s.stopping = false
	s.mu.Unlock()
	s.updateAll(func(e *discovery.Endpoint) {
		e.Ready = false
		e.State = discovery.StateStopped
		e.PID = 0
	})
	s.opts.Logger.Info("all replicas stopped")
	return nil
}

// update changes one endpoint and publishes the result.
func (s *Supervisor) update(ai, ri int, f func(e *discovery.Endpoint)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changeLocked(&s.status[ai].Endpoints[ri], f)
	s.publishLocked()
}

// updateAll changes every endpoint and publishes once.
func (s *Supervisor) updateAll(f func(e *discovery.Endpoint)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ai := range s.status {
		for ri := range s.status[ai].Endpoints {
			s.changeLocked(&s.status[ai].Endpoints[ri], f)
		}
	}
	s.publishLocked()
}

func (s *Supervisor) changeLocked(e *discovery.Endpoint, f func(e *discovery.Endpoint)) {
	state := e.State
	f(e)
	if s.stopping {
		e.Ready = false
		e.State = discovery.StateTerminating
	}
	if e.State != state {
		e.Since = s.opts.Clock()
	}
}

// publishLocked stores a fresh copy of the status and wakes the watchers.
func (s *Supervisor) publishLocked() {
	snap := make([]discovery.Agent, len(s.status))
	for i, a := range s.status {
		a.Endpoints = slices.Clone(a.Endpoints) // AllowedSites is never modified, so it is shared
		snap[i] = a
	}
	s.snap.Store(&snap)
	close(s.changed)
	s.changed = make(chan struct{})
}

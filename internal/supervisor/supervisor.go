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
	"syscall"
	"time"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/autoscale"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/manifest"
)

// Options configure a Supervisor. Only DataDir is required.
type Options struct {
	// DataDir holds logs/<agent>/<agent>-<i>.log (appended to), run/<agent>-<i>.<pid>.pid and,
	// for stateful agents, memory/<agent>/<agent>-<i>/: each replica's memory, kept across its
	// restarts and updates as a StatefulSet's volume claim is (and, like one, when the agent is
	// scaled down or removed).
	DataDir string
	// Executable replaces spec.command[0] when that is "agentplane"; default os.Executable().
	Executable string
	// Host is the address replicas listen on and are probed at; default "127.0.0.1".
	Host string
	// Grace is how long a replica may take to exit after SIGTERM, on shutdown or when Apply
	// stops it, before its process group gets SIGKILL; default 10s.
	Grace time.Duration
	// ProgressDeadline bounds how long Apply waits for one new replica of a rolling update to
	// become ready before it gives up on the update; default 5m.
	ProgressDeadline time.Duration
	// Backoff is the restart policy; zero fields take the defaults.
	Backoff Backoff
	// Launcher starts processes; default ExecLauncher.
	Launcher Launcher
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Clock gives the time for status timestamps and the backoff reset; default time.Now.
	Clock func() time.Time
	// ReplicaEnv, when set, gives extra environment variables for each start of a replica (such
	// as its own gateway credential) and a function called when that process has exited.
	ReplicaEnv func(agent string, replica int) (env []string, done func(), err error)
	// Site is the site of replicas whose agent sets no spec.placement.site: this machine's.
	Site string
	// Drain, when set, is called for a replica that Apply or Scale stops for good (scaled down
	// or removed), after it is published Terminating and before it gets SIGTERM: it should
	// return once the replica has no task left, or when ctx ends (after DrainTimeout).
	Drain func(ctx context.Context, url string)
	// DrainTimeout bounds Drain; default DefaultDrainTimeout.
	DrainTimeout time.Duration
}

// Defaults for Options.
const (
	DefaultHost             = "127.0.0.1"
	DefaultGrace            = 10 * time.Second
	DefaultProgressDeadline = 5 * time.Minute
	DefaultDrainTimeout     = 5 * time.Minute
)

// inheritedEnv are the only variables of the supervisor's environment that replicas inherit.
var inheritedEnv = []string{"PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"}

// ErrInvalid is wrapped by the errors of New and Apply about agents that embedded mode cannot
// run. Such an Apply changes nothing.
var ErrInvalid = errors.New("invalid agents")

// ErrStopped is returned by Apply once Start is stopping or has returned.
var ErrStopped = errors.New("supervisor is stopping")

// Supervisor runs the replicas of agents as local processes. It is a discovery.Source, and
// reports every replica as Pending until Start runs it. Apply changes the agents while it runs.
type Supervisor struct {
	opts      Options
	prober    *prober
	runDir    string
	inherits  []string // "KEY=value" of inheritedEnv, read once
	exeErr    error    // why os.Executable failed, when Options.Executable was not given
	cwd       string   // what relative paths of an agent not read from a file are relative to
	started   atomic.Bool
	probeUnit time.Duration // how long one "second" of a probe's periodSeconds lasts; tests shorten it

	applyMu sync.Mutex // serializes Apply and Update
	// scaled is the replicas Scale set for autoscaled agents, by name; guarded by applyMu.
	scaled  map[string]int
	reasons map[string]scaleReason // why, for the snapshots; guarded by applyMu

	// thread starts every process (see osThread); set by Start before any replica runs.
	thread *osThread

	mu       sync.Mutex
	agents   []*agent // sorted by name, as in the snapshots; guarded by mu
	phase    phase    // guarded by mu
	runCtx   context.Context
	wg       sync.WaitGroup        // one per replica goroutine; Add only under mu in phaseRunning
	shutdown chan struct{}         // closed when Start begins to stop everything
	retiring []chan struct{}       // closed once replicas being stopped by Apply are gone; guarded by mu
	seq      uint64                // creation order of replicas; guarded by mu
	changed  chan struct{}         // closed and replaced on every publish, guarded by mu
	procs    map[*Process]struct{} // every process started and not yet reaped; guarded by mu
	killed   bool                  // KillAll was called; guarded by mu
	snap     atomic.Pointer[[]discovery.Agent]
}

var _ discovery.Source = (*Supervisor)(nil)

type phase int

const (
	phaseNew      phase = iota // before Start: replicas are Pending
	phaseRunning               // Start runs replicas
	phaseStopping              // Start's context ended: every replica is Terminating
	phaseStopped               // Start has returned
)

// agent is one agent as applied, with its replicas.
type agent struct {
	def  *v1alpha1.Agent // as applied and defaulted, without status; never modified
	spec *agentSpec
	info discovery.Agent // the agent's fields of the snapshot, without Endpoints
	// replicas are sorted by index, then by creation: during a rolling update the new process
	// of a replica follows the old one, under the same name.
	replicas []*replica
	removed  bool // Apply removes it once its replicas are gone
}

// agentSpec is what the supervisor needs of an Agent, resolved once.
type agentSpec struct {
	name           string
	program        string   // the absolute path of spec.command[0], or of this binary for "agentplane"
	dir            string   // the absolute working directory
	argv           []string // command and args, with "agentplane" resolved
	env            []string // spec.env as "KEY=value"
	replicas       int
	maxConcurrency int
	autoscale      *autoscale.Spec // nil unless the agent scales on task load
	scaled         scaleReason     // the autoscaler's last change
	stateful       bool            // each replica keeps a memory directory across restarts
	site           string
	startup        v1alpha1.Probe
	ready          v1alpha1.Probe
	live           v1alpha1.Probe
}

// sameProcess reports whether replicas of a and b run the same way, so that a change from one to
// the other needs no restart.
func (a *agentSpec) sameProcess(b *agentSpec) bool {
	return a.program == b.program && a.dir == b.dir && slices.Equal(a.argv, b.argv) && slices.Equal(a.env, b.env) && a.maxConcurrency == b.maxConcurrency && a.stateful == b.stateful &&
		a.startup == b.startup && a.ready == b.ready && a.live == b.live
}

// replica is one process slot of an agent: started once, restarted by its own goroutine until
// it is stopped. A rolling update replaces it with a new replica of the same index.
type replica struct {
	spec  *agentSpec
	index int
	name  string
	seq   uint64

	// guarded by Supervisor.mu
	ep      discovery.Endpoint
	leaving bool               // being stopped for good: Terminating, never ready again
	cancel  context.CancelFunc // nil until started
	done    chan struct{}      // closed when its goroutine has returned; nil until started
}

// New returns a Supervisor for agents, which are defaulted and validated again. It starts
// nothing.
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
	if opts.ProgressDeadline <= 0 {
		opts.ProgressDeadline = DefaultProgressDeadline
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
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
		shutdown:  make(chan struct{}),
		changed:   make(chan struct{}),
		procs:     map[*Process]struct{}{},
		scaled:    map[string]int{},
		reasons:   map[string]scaleReason{},
	}
	if s.opts.Executable == "" {
		s.opts.Executable, s.exeErr = os.Executable()
	}
	var err error
	if s.cwd, err = os.Getwd(); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	for _, k := range inheritedEnv {
		if v, ok := os.LookupEnv(k); ok {
			s.inherits = append(s.inherits, k+"="+v)
		}
	}
	defs, specs, err := s.resolve(agents)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range defs {
		s.insertAgentLocked(s.newAgentLocked(defs[i], specs[i]))
	}
	s.publishLocked()
	return s, nil
}

// resolve defaults and validates agents for embedded mode, and resolves what their replicas run.
// It reports every problem it finds, wrapped with ErrInvalid.
func (s *Supervisor) resolve(agents []v1alpha1.Agent) ([]*v1alpha1.Agent, []*agentSpec, error) {
	var (
		errs  []error
		defs  []*v1alpha1.Agent
		specs []*agentSpec
		seen  = map[string]bool{}
	)
	for i := range agents {
		a := agents[i].DeepCopy()
		a.Status = v1alpha1.AgentStatus{}
		a.SetDefaults()
		if fe := a.Validate(); len(fe) > 0 {
			errs = append(errs, fmt.Errorf("agent %q: %w", a.Name, fe.ToAggregate()))
			continue
		}
		if seen[a.Name] {
			errs = append(errs, fmt.Errorf("agent %q is defined twice", a.Name))
			continue
		}
		seen[a.Name] = true
		if len(a.Spec.Command) == 0 {
			errs = append(errs, fmt.Errorf("agent %q has no spec.command, which embedded mode needs", a.Name))
			continue
		}
		paths, fe := manifest.ResolvePaths(a, s.cwd)
		if len(fe) > 0 {
			errs = append(errs, fmt.Errorf("agent %q: %w", a.Name, fe.ToAggregate()))
			continue
		}
		argv := slices.Concat(a.Spec.Command, a.Spec.Args)
		if paths.Program == manifest.SelfCommand {
			if s.opts.Executable == "" {
				errs = append(errs, fmt.Errorf("agent %q runs agentplane, but its path is unknown: %w", a.Name, s.exeErr))
				continue
			}
			argv[0], paths.Program = s.opts.Executable, s.opts.Executable
		}
		spec := &agentSpec{name: a.Name, program: paths.Program, dir: paths.Dir, argv: argv, replicas: a.DesiredReplicas(),
			maxConcurrency: int(a.Spec.MaxConcurrency), stateful: a.Spec.State == v1alpha1.Stateful}
		if as, ok := autoscale.SpecOf(a); ok {
			spec.autoscale = &as
			spec.replicas = s.autoscaledReplicas(a, as)
			spec.scaled = s.reasons[a.Name]
		}
		for _, e := range a.Spec.Env {
			spec.env = append(spec.env, e.Name+"="+e.Value)
		}
		spec.site = s.opts.Site
		if pl := a.Spec.Placement; pl != nil && pl.Site != "" {
			spec.site = pl.Site
		}
		var p v1alpha1.Probes
		if a.Spec.Probes != nil {
			p = *a.Spec.Probes
		}
		spec.startup = probeWithDefaults(p.Startup, v1alpha1.DefaultStartupPeriodSeconds, v1alpha1.DefaultStartupFailureThreshold)
		spec.ready = probeWithDefaults(p.Readiness, v1alpha1.DefaultPeriodSeconds, v1alpha1.DefaultFailureThreshold)
		spec.live = probeWithDefaults(p.Liveness, v1alpha1.DefaultPeriodSeconds, v1alpha1.DefaultFailureThreshold)
		defs, specs = append(defs, a), append(specs, spec)
	}
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("supervisor: %w:\n%w", ErrInvalid, errors.Join(errs...))
	}
	return defs, specs, nil
}

// scaleReason is why and when Scale last changed an agent's replicas.
type scaleReason struct {
	why string
	at  time.Time
}

// autoscaledReplicas is how many replicas an agent that scales on task load runs: what Scale
// last set, or spec.replicas to begin with (as on Kubernetes, where it is the workload's first
// count), within the bounds.
func (s *Supervisor) autoscaledReplicas(a *v1alpha1.Agent, as autoscale.Spec) int {
	n, ok := s.scaled[a.Name]
	if !ok {
		n = a.DesiredReplicas()
	}
	return min(max(n, as.MinReplicas), as.MaxReplicas)
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

// agentInfo is the snapshot's view of an agent, without its endpoints.
func agentInfo(def *v1alpha1.Agent, spec *agentSpec) discovery.Agent {
	info := discovery.Agent{
		Name:           def.Name,
		Description:    def.Spec.Description,
		State:          string(def.Spec.State),
		MaxConcurrency: spec.maxConcurrency,
		Desired:        spec.replicas,
	}
	if as := spec.autoscale; as != nil {
		info.Autoscaled, info.MinReplicas, info.MaxReplicas = true, as.MinReplicas, as.MaxReplicas
		info.ScaleReason, info.ScaledAt = spec.scaled.why, spec.scaled.at
	}
	if def.Spec.TaskTimeout != nil {
		info.TaskTimeout = def.Spec.TaskTimeout.Duration
	}
	if pl := def.Spec.Placement; pl != nil {
		info.AllowedSites = slices.Clone(pl.AllowedSites)
	}
	return info
}

// newAgentLocked returns an agent with its replicas, not started.
func (s *Supervisor) newAgentLocked(def *v1alpha1.Agent, spec *agentSpec) *agent {
	a := &agent{def: def, spec: spec, info: agentInfo(def, spec)}
	for i := range spec.replicas {
		a.replicas = append(a.replicas, s.newReplicaLocked(spec, i))
	}
	return a
}

// newReplicaLocked returns a Pending replica, not started.
func (s *Supervisor) newReplicaLocked(spec *agentSpec, index int) *replica {
	s.seq++
	name := replicaName(spec.name, index)
	return &replica{
		spec: spec, index: index, name: name, seq: s.seq,
		ep: discovery.Endpoint{
			Agent:   spec.name,
			Name:    name,
			Index:   index,
			State:   discovery.StatePending,
			Site:    spec.site,
			Since:   s.opts.Clock(),
			LogPath: filepath.Join(s.opts.DataDir, "logs", spec.name, name+".log"),
		},
	}
}

func (s *Supervisor) insertAgentLocked(a *agent) {
	i, _ := slices.BinarySearchFunc(s.agents, a.spec.name, func(x *agent, name string) int { return strings.Compare(x.spec.name, name) })
	s.agents = slices.Insert(s.agents, i, a)
}

func (s *Supervisor) lookupLocked(name string) *agent {
	i, ok := slices.BinarySearchFunc(s.agents, name, func(x *agent, name string) int { return strings.Compare(x.spec.name, name) })
	if !ok {
		return nil
	}
	return s.agents[i]
}

// addReplicaLocked adds r to a, in index then creation order.
func (a *agent) addReplicaLocked(r *replica) {
	i := len(a.replicas)
	for i > 0 && a.replicas[i-1].index > r.index {
		i--
	}
	a.replicas = slices.Insert(a.replicas, i, r)
}

// Snapshot returns the agents and their replicas, sorted by agent name then replica index.
// Callers must not modify it.
func (s *Supervisor) Snapshot() []discovery.Agent { return *s.snap.Load() }

// Changed returns a channel that is closed at the next change after the call.
func (s *Supervisor) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Agents returns the agents the supervisor runs, as last given to New or Apply: defaulted,
// sorted by name, without status. Agents being removed are not among them.
func (s *Supervisor) Agents() []v1alpha1.Agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]v1alpha1.Agent, 0, len(s.agents))
	for _, a := range s.agents {
		if !a.removed {
			out = append(out, *a.def.DeepCopy())
		}
	}
	return out
}

// Agent returns the agent called name, as Agents does, and whether there is one.
func (s *Supervisor) Agent(name string) (v1alpha1.Agent, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.lookupLocked(name); a != nil && !a.removed {
		return *a.def.DeepCopy(), true
	}
	return v1alpha1.Agent{}, false
}

// Outdated returns the names of the replicas of agent name that run an older spec than the
// agent's: those a rolling update has not replaced (yet, or because it failed).
func (s *Supervisor) Outdated(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupLocked(name)
	if a == nil {
		return nil
	}
	var out []string
	for _, r := range a.replicas {
		if !r.leaving && !r.spec.sameProcess(a.spec) {
			out = append(out, r.name)
		}
	}
	return out
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
	cleanStalePidFiles(s.runDir, s.opts.Logger)

	// Replicas run on their own context: on shutdown, the Terminating state must be published
	// before any of them sees a cancellation.
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	// The thread outlives every replica: all of them have exited when s.wg.Wait returns.
	s.thread = startOSThread()
	defer s.thread.stop()
	s.mu.Lock()
	if ctx.Err() == nil {
		s.runCtx = runCtx
		s.phase = phaseRunning
		for _, a := range s.agents {
			for _, r := range a.replicas {
				if !r.leaving {
					s.startLocked(r)
				}
			}
		}
	}
	s.mu.Unlock()
	<-ctx.Done()

	s.opts.Logger.Info("stopping replicas", "grace", s.opts.Grace)
	s.mu.Lock()
	s.phase = phaseStopping
	close(s.shutdown)
	s.changeAllLocked(func(e *discovery.Endpoint) { e.NextStart = time.Time{} })
	s.publishLocked()
	s.mu.Unlock()
	stop()
	s.wg.Wait()
	s.prober.transport.CloseIdleConnections()
	s.mu.Lock()
	s.phase = phaseStopped
	s.changeAllLocked(func(e *discovery.Endpoint) {
		e.Ready = false
		e.State = discovery.StateStopped
		e.PID = 0
	})
	s.publishLocked()
	s.mu.Unlock()
	s.opts.Logger.Info("all replicas stopped")
	return nil
}

// KillAll sends SIGKILL to the process group of every replica process at once, and to every one
// started after the call, without draining or waiting. It is for a forced exit (a second Ctrl-C),
// when there is no time to stop replicas one by one; the supervisor goes on as if they had
// crashed until Start is stopped.
func (s *Supervisor) KillAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killed = true
	for p := range s.procs {
		if err := (*p).Signal(syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			s.opts.Logger.Error("cannot kill replica", "pid", (*p).PID(), "err", err)
		}
	}
}

// launch starts a process on the supervisor's thread, and tracks it for KillAll until the
// returned function is called, once the process has exited. The process is killed at once if
// KillAll was called.
func (s *Supervisor) launch(ctx context.Context, spec ProcessSpec) (Process, func(), error) {
	var (
		proc Process
		err  error
	)
	if !s.thread.do(func() { proc, err = s.opts.Launcher.Launch(ctx, spec) }) {
		return nil, nil, ErrStopped
	}
	if err != nil {
		return nil, nil, err
	}
	key := &proc // one key per start, whatever Process is
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs[key] = struct{}{}
	if s.killed {
		_ = proc.Signal(syscall.SIGKILL)
	}
	return proc, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.procs, key)
	}, nil
}

// startLocked starts r's goroutine if replicas run, and does nothing before Start.
func (s *Supervisor) startLocked(r *replica) {
	if s.phase != phaseRunning || r.done != nil {
		return
	}
	ctx, cancel := context.WithCancel(s.runCtx)
	r.cancel, r.done = cancel, make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(r.done)
		defer cancel()
		s.runReplica(ctx, r)
	}()
}

// update changes one endpoint and publishes the result.
func (s *Supervisor) update(r *replica, f func(e *discovery.Endpoint)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changeLocked(r, f)
	s.publishLocked()
}

// changeAllLocked changes every endpoint; the caller publishes.
func (s *Supervisor) changeAllLocked(f func(e *discovery.Endpoint)) {
	for _, a := range s.agents {
		for _, r := range a.replicas {
			s.changeLocked(r, f)
		}
	}
}

func (s *Supervisor) changeLocked(r *replica, f func(e *discovery.Endpoint)) {
	e := &r.ep
	state := e.State
	f(e)
	if r.leaving || s.phase == phaseStopping {
		e.Ready = false
		e.State = discovery.StateTerminating
	}
	if e.State != state {
		e.Since = s.opts.Clock()
	}
}

// publishLocked stores a fresh copy of the status and wakes the watchers.
func (s *Supervisor) publishLocked() {
	snap := make([]discovery.Agent, len(s.agents))
	for i, a := range s.agents {
		info := a.info // AllowedSites is never modified, so it is shared
		info.Endpoints = make([]discovery.Endpoint, len(a.replicas))
		for j, r := range a.replicas {
			info.Endpoints[j] = r.ep
		}
		snap[i] = info
	}
	s.snap.Store(&snap)
	close(s.changed)
	s.changed = make(chan struct{})
}

package controller

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/autoscale"
	"github.com/agentplane/agentplane/internal/controller/demand"
)

// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch

// AutoscalerOptions configure the task-based autoscaler.
type AutoscalerOptions struct {
	// Gateways are the gateways asked for demand. Required.
	Gateways demand.Source
	// Interval between polls of the gateways; default 2s.
	Interval time.Duration
	// Token, when set, authenticates the polls to gateways whose admin API needs it.
	Token string
	// Timeout bounds one gateway's answer, and the listing of gateways; default 1s.
	Timeout time.Duration
	// KeepFor is how long a gateway's last answer stands in for answers it fails to give;
	// default 5 × Interval.
	KeepFor time.Duration
	// Client makes the requests to the gateways; default http.DefaultClient (each request has
	// Timeout).
	Client *http.Client
	// Clock; default the real one.
	Clock clock.WithTicker
}

// Autoscaler scales the Agents that scale on task load: every Interval it asks the gateways for
// each agent's tasks in flight and queued, keeps a short history per agent, decides with
// autoscale.Desired, and records a changed decision in the Agent's status, which makes the
// reconciler set the workload's replicas. It never scales down on incomplete demand (a gateway
// that has not answered for KeepFor, or no gateway at all): it then only scales up, and forgets
// the history, so that scaling down waits for a full window of known demand.
//
// It runs on the leader only.
type Autoscaler struct {
	r       *AgentReconciler
	opts    AutoscalerOptions
	log     logr.Logger
	poller  demand.Poller
	history map[types.NamespacedName]*autoscale.History
	// noGateways remembers that the last poll found no gateway, to log changes only.
	noGateways bool
}

var _ manager.LeaderElectionRunnable = (*Autoscaler)(nil)

// NewAutoscaler returns an Autoscaler that reads and writes Agents through r's client and tells
// of decisions through r's recorder.
func NewAutoscaler(r *AgentReconciler, opts AutoscalerOptions, logger logr.Logger) *Autoscaler {
	opts.Interval = cmp.Or(opts.Interval, 2*time.Second)
	opts.Timeout = cmp.Or(opts.Timeout, time.Second)
	opts.KeepFor = cmp.Or(opts.KeepFor, 5*opts.Interval)
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	registerMetrics()
	return &Autoscaler{
		r:    r,
		opts: opts,
		log:  logger,
		poller: demand.Poller{
			Client:  opts.Client,
			Token:   opts.Token,
			Timeout: opts.Timeout,
			KeepFor: opts.KeepFor,
			Logger:  slog.New(logr.ToSlogHandler(logger)),
		},
		history: map[types.NamespacedName]*autoscale.History{},
	}
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: one operator scales at a time.
func (s *Autoscaler) NeedLeaderElection() bool { return true }

// Start polls until ctx ends: every Interval, and at once when a gateway says a task of an
// autoscaled agent waits for a replica (see watchWaiting), so that a task for an agent at zero
// replicas does not wait for the next poll.
//
// Polls are put on a grid of Interval (mid-way between its points, sampled at the point
// before), which keeps the samples of the decision windows evenly spaced.
func (s *Autoscaler) Start(ctx context.Context) error {
	waiting := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() { defer close(done); s.watchWaiting(ctx, waiting) }()
	defer func() { <-done }()
	iv := s.opts.Interval
	now := s.opts.Clock.Now()
	phase := now.Truncate(iv).Add(iv / 2)
	if phase.Before(now) {
		phase = phase.Add(iv)
	}
	select {
	case <-ctx.Done():
		return nil
	case <-s.opts.Clock.After(phase.Sub(now)):
	}
	t := s.opts.Clock.NewTicker(iv)
	defer t.Stop()
	for {
		now := s.opts.Clock.Now()
		s.step(ctx, now.Truncate(iv), now)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		case <-waiting:
		}
	}
}

// longPoll is how long one wait at a gateway for a waiting task lasts.
const longPoll = 20 * time.Second

// watchWaiting waits at every gateway for a task of an autoscaled agent to find no replica, and
// then signals waiting (without blocking), until ctx ends. A gateway that cannot wait (an older
// one, or one that does not answer) is asked again after Interval.
func (s *Autoscaler) watchWaiting(ctx context.Context, waiting chan<- struct{}) {
	for ctx.Err() == nil {
		lctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
		gws, err := s.opts.Gateways.Gateways(lctx)
		cancel()
		if err != nil || len(gws) == 0 {
			s.sleep(ctx, s.opts.Interval)
			continue
		}
		wctx, stop := context.WithCancel(ctx)
		type result struct{ waiting, failed bool }
		results := make(chan result, len(gws))
		for _, g := range gws {
			go func() {
				w, err := s.poller.Wait(wctx, g.URL, longPoll)
				results <- result{waiting: w && err == nil, failed: err != nil && wctx.Err() == nil}
			}()
		}
		woken, failed := false, 0
		for range gws {
			r := <-results
			if r.failed {
				failed++
			}
			if r.waiting && !woken {
				woken = true
				stop() // one is enough: the poll then asks them all
				select {
				case waiting <- struct{}{}:
				default:
				}
			}
		}
		stop()
		switch {
		case woken:
			// The rest of a burst arrives just after its first task: decide once more on it.
			s.sleep(ctx, s.opts.Interval/10)
			select {
			case waiting <- struct{}{}:
			default:
			}
		case failed == len(gws):
			s.sleep(ctx, s.opts.Interval) // none can wait (older gateways, or down): do not spin
		}
	}
}

func (s *Autoscaler) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-s.opts.Clock.After(d):
	}
}

// step is one poll: demand from the gateways at sample time at, a decision per task-based Agent
// recorded at now.
func (s *Autoscaler) step(ctx context.Context, at, now time.Time) {
	lctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	gws, err := s.opts.Gateways.Gateways(lctx)
	cancel()
	if none := err != nil || len(gws) == 0; none != s.noGateways {
		s.noGateways = none
		if none {
			s.log.Info("no gateway to ask for task demand; not scaling down until one answers", "error", errText(err))
		} else {
			s.log.Info("gateways found", "gateways", len(gws))
		}
	}
	byNS := map[string][]demand.Gateway{}
	for _, g := range gws {
		byNS[g.Namespace] = append(byNS[g.Namespace], g)
	}
	tasks := map[string]map[string]demand.Tasks{}
	complete := map[string]bool{}
	for ns, g := range byNS {
		tasks[ns], complete[ns] = s.poller.Poll(ctx, g, at)
	}

	var agents v1alpha1.AgentList
	if err := s.r.Client.List(ctx, &agents); err != nil {
		s.log.Error(err, "list agents")
		return
	}
	known := map[types.NamespacedName]bool{}
	for i := range agents.Items {
		a := &agents.Items[i]
		spec, ok := autoscale.SpecOf(a)
		if !ok || a.Status.Autoscaling == nil || !a.DeletionTimestamp.IsZero() {
			continue // not task-based, or the reconciler has not set it up yet
		}
		key := types.NamespacedName{Namespace: a.Namespace, Name: a.Name}
		t := tasks[a.Namespace][a.Name]
		x := autoscale.Sample{At: at, InFlight: t.InFlight, Queued: t.Queued}
		current := int(a.Status.Autoscaling.DesiredReplicas)
		var d autoscale.Decision
		if complete[a.Namespace] {
			demandGauge.WithLabelValues(a.Namespace, a.Name, "in_flight").Set(float64(t.InFlight))
			demandGauge.WithLabelValues(a.Namespace, a.Name, "queued").Set(float64(t.Queued))
			h := s.history[key]
			if h == nil {
				h = &autoscale.History{}
				s.history[key] = h
			}
			h.Add(x, spec)
			known[key] = true
			d = autoscale.Desired(h.Samples(), current, spec, at)
		} else {
			// Part of the demand is unknown: what is known can only ask for more.
			d = autoscale.Desired([]autoscale.Sample{x}, current, spec, at)
			if d.Replicas < current {
				continue
			}
		}
		if d.Replicas == current {
			continue
		}
		if err := s.r.recordDecision(ctx, a, d, now); err != nil {
			// Most often the Agent changed since the cache read it: decide again next poll.
			s.log.V(1).Info("autoscaling decision not recorded; deciding again next poll", "agent", key.String(), "error", err.Error())
			continue
		}
		s.log.Info("scaled", "agent", key.String(), "replicas", d.Replicas, "reason", d.Reason)
	}
	for key := range s.history {
		if !known[key] {
			delete(s.history, key)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// SetupAutoscaler adds an Autoscaler to mgr, sharing the reconciler's client and event recorder.
func SetupAutoscaler(mgr ctrl.Manager, opts AutoscalerOptions) error {
	r := &AgentReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder(FieldOwner)}
	return mgr.Add(NewAutoscaler(r, opts, mgr.GetLogger().WithName("autoscaler")))
}

package gateway

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
	"k8s.io/utils/lru"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/fleet"
	"github.com/agentplane/agentplane/internal/gateway/admission"
	"github.com/agentplane/agentplane/internal/gateway/balancer"
	"github.com/agentplane/agentplane/internal/gateway/balancer/policies"
	"github.com/agentplane/agentplane/internal/gateway/health"
	"github.com/agentplane/agentplane/internal/gateway/retry"
	"github.com/agentplane/agentplane/internal/gateway/upstream"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/telemetry"
)

// Defaults for Options.
const (
	DefaultMaxBodyBytes     = 8 << 20
	DefaultTaskTimeout      = 10 * time.Minute
	DefaultDrainTimeout     = 30 * time.Second
	DefaultMaxAttempts      = 3
	DefaultAsyncConcurrency = 64
	DefaultQueueTimeout     = 10 * time.Minute
)

// Options configure a Gateway. Zero values take the defaults.
type Options struct {
	// Source tells which agents and replicas exist. Required.
	Source discovery.Source
	// Journal records every accepted task. Required.
	Journal store.Journal
	// Auth authenticates, authorizes and rate-limits callers. Nil means no authentication:
	// every caller may do everything, which is only safe on loopback.
	Auth *auth.Stack
	// AdminGroup may use the admin API when Auth is set; default DefaultAdminGroup.
	AdminGroup string
	// Admin, when set, serves the admin endpoints of embedded mode (POST /api/v1/apply,
	// GET /api/v1/logs/{replica}, GET /api/v1/agents/{name}), behind the same admin check as the
	// gateway's own admin API.
	Admin http.Handler
	// Audit receives a record of every call; nil means no audit log.
	Audit audit.Sink
	// Redact masks patient identifiers in text that agents return and the gateway keeps or shows
	// (failure reasons in the journal, the task list and the dashboard); nil keeps it as is.
	Redact func(string) string
	// Metrics records what the gateway does; nil means no metrics.
	Metrics *telemetry.Metrics
	// AgentHosts gives agents origins of their own (host-based routing); zero: none.
	AgentHosts configv1.AgentHosts
	// Site is the gateway's own site: its replicas are preferred, others used only when they
	// are saturated or down. Empty prefers none. With a Site, a task of an agent whose
	// allowedSites exclude it is refused here: its request may not be journaled at this site.
	Site string
	// Fleet makes the gateway a member of a fleet of gateways (package fleet): it reports its
	// load in the fleet's heartbeats, owns the tasks it runs by a lease, and claims those of
	// gateways of its journal that leave. Nil: a gateway on its own.
	Fleet *fleet.Fleet
	// FleetSigner signs and verifies the tokens of tasks gateways forward to each other. With a
	// Fleet, it turns spilling on; without it the gateway forwards no task and takes none.
	FleetSigner *fleet.Signer
	// SpillAfter is how long a task may expect to wait for this site's replicas before it goes
	// to a peer gateway with room (default DefaultSpillAfter); negative never spills. A task
	// also spills when no replica here is ready.
	SpillAfter time.Duration
	// MaxQueue bounds the tasks waiting per agent for a replica slot; more are refused (429).
	// 0 means the admission package's default.
	MaxQueue int
	// MaxConcurrentRequests bounds the requests served at once; more get 503. 0 means 10000.
	MaxConcurrentRequests int
	// Server limits; zero values take the defaults in parentheses. Slow clients are cut off by
	// the header and read timeouts (slowloris); there is no write timeout, since streams last.
	MaxHeaderBytes          int           // 64 KiB
	ReadHeaderTimeout       time.Duration // 10s
	ReadTimeout             time.Duration // 60s
	IdleTimeout             time.Duration // 120s
	MaxStreamsPerConnection int           // HTTP/2 streams per connection (100)
	// TLS, when set, serves HTTPS; with ClientCAs it also verifies client certificates.
	TLS *tls.Config
	// AdvertiseURL is the gateway's external base URL, used in rewritten agent cards. When empty,
	// it is derived from each request's Host.
	AdvertiseURL string
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64
	// MaxJSONDepth bounds the nesting of a request body (default 64, as in GatewayConfig).
	MaxJSONDepth int
	// MaxSSELineBytes bounds one line of an agent's event stream (default 4 MiB, as in
	// GatewayConfig); a longer line ends the stream with an error.
	MaxSSELineBytes int
	// TaskTimeout bounds one dispatch of a task to a replica, streaming included. A replica that
	// takes longer is taken for hung: it is ejected and the task goes to another replica.
	TaskTimeout time.Duration
	// AsyncConcurrency bounds the queued tasks dispatched at once.
	AsyncConcurrency int
	// QueueTimeout is how long a queued task may wait for a ready replica before it fails.
	QueueTimeout time.Duration
	// DrainTimeout bounds how long Start waits for in-flight requests after its context ends.
	DrainTimeout time.Duration
	// MaxAttempts bounds how many replicas one request is tried on.
	MaxAttempts int
	// Listener is where Start serves. Required for Start (not for Handler).
	Listener net.Listener
	// Push configures push notifications: which networks webhooks may reach, timeouts, retries.
	Push PushOptions
	// ScaleUp, when set, is called when a task of an autoscaled agent finds no ready replica
	// and waits for one: the autoscaler can start a replica at once rather than at its next
	// look. It must not block.
	ScaleUp func(agent string)
	// Transport carries requests to replicas; tests inject faults here.
	Transport http.RoundTripper
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Clock is the gateway's one clock: the admission queue's deadlines and timers, card ages,
	// ejections and latencies all read it. Default the real clock.
	Clock clock.Clock
	// Now is Clock.Now unless set; kept for callers that only fake the time of day.
	Now func() time.Time
}

// Gateway is the HTTP front door: it reads, authenticates, authorizes and audits each call and
// hands tasks to its dispatcher, which owns them to their end.
type Gateway struct {
	opts    Options
	log     *slog.Logger
	tasks   *dispatcher
	handler http.Handler
	// draining is set when Start stops accepting; /readyz reports it. drainStarted is closed
	// then, ending long polls.
	draining     atomic.Bool
	drainStarted chan struct{}
	// auditBroken is set when an audit record could not be written.
	auditBroken atomic.Bool
	// stopAllTasks ends every task still running when the drain deadline passes.
	stopAllTasks context.CancelFunc
	// webhooks decides which push notification webhooks may be called; pusher calls them.
	webhooks webhookPolicy
	pusher   *pusher
	// local is the source of this site's replicas (opts.Source without peer gateways).
	local discovery.Source
}

// New returns a Gateway. It does not listen; see Start and Handler.
func New(opts Options) (*Gateway, error) {
	if opts.Source == nil {
		return nil, errors.New("gateway: Options.Source is required")
	}
	if opts.Journal == nil {
		return nil, errors.New("gateway: Options.Journal is required")
	}
	opts = withDefaults(opts)
	local := opts.Source
	if opts.Fleet != nil {
		opts.Source = &fleetSource{local: local, fleet: opts.Fleet, spill: opts.FleetSigner != nil && opts.SpillAfter >= 0}
	}
	g := &Gateway{opts: opts, log: opts.Logger, local: local, drainStarted: make(chan struct{})}
	client := upstream.NewClient(opts.Transport, opts.Now)
	p := &pool{
		source:       opts.Source,
		policies:     policies.Default(policies.Options{Site: opts.Site, Seed: uint64(opts.Now().UnixNano())}),
		latency:      balancer.NewEWMA(0),
		queue:        admission.New(admission.Options{MaxQueue: opts.MaxQueue, Clock: opts.Clock}),
		tracker:      balancer.NewTracker(),
		ejector:      health.NewEjector(0, 0),
		client:       client,
		metrics:      opts.Metrics,
		log:          opts.Logger,
		now:          opts.Now,
		queueTimeout: opts.QueueTimeout,
		spillAfter:   opts.SpillAfter,
		scaleUp:      opts.ScaleUp,
		warm:         lru.New(warmConversations),
	}
	j := &journal{store: opts.Journal, now: opts.Now, log: opts.Logger, metrics: opts.Metrics,
		recent: newRecentTasks(), watch: &watchers{},
		backoff: []time.Duration{50 * time.Millisecond, 250 * time.Millisecond, time.Second}}
	if opts.Fleet != nil {
		j.self, j.alive = opts.Fleet.ID(), opts.Fleet.Alive
		opts.Fleet.Report(func() map[string]fleet.Load { return p.fleetLoad(local) }, g.draining.Load)
	}
	hardStop, stop := context.WithCancel(context.Background())
	g.stopAllTasks = stop
	g.tasks = &dispatcher{pool: p, journal: j, client: client, budget: retry.NewBudget(0, 0, 0),
		metrics: opts.Metrics, log: opts.Logger, now: opts.Now, redact: opts.Redact, charge: tokenCharger(opts.Auth, opts.Metrics, opts.Now),
		maxAttempts: opts.MaxAttempts, taskTimeout: opts.TaskTimeout, queueTimeout: opts.QueueTimeout,
		maxSSELine: opts.MaxSSELineBytes, maxJSONDepth: opts.MaxJSONDepth, asyncWorkers: opts.AsyncConcurrency,
		hardStop: hardStop, signer: opts.FleetSigner, site: opts.Site, fleet: opts.Fleet}
	g.webhooks = webhookPolicy{allowed: opts.Push.AllowedNetworks}
	g.pusher = &pusher{journal: opts.Journal, client: g.webhooks.client(opts.Push.Timeout), retries: defaultPushRetry(opts.Push.GiveUpAfter),
		metrics: opts.Metrics, log: opts.Logger, now: time.Now}
	opts.Metrics.SetSnapshot(p.snapshot)
	g.handler = g.routes()
	return g, nil
}

// withDefaults fills the zero values of opts.
func withDefaults(opts Options) Options {
	if opts.Redact == nil {
		opts.Redact = func(s string) string { return s }
	}
	opts.AdminGroup = cmp.Or(opts.AdminGroup, DefaultAdminGroup)
	if opts.MaxConcurrentRequests <= 0 {
		opts.MaxConcurrentRequests = 10000
	}
	opts.MaxHeaderBytes = cmp.Or(opts.MaxHeaderBytes, 64<<10)
	opts.MaxJSONDepth = cmp.Or(opts.MaxJSONDepth, configv1.DefaultMaxJSONDepth)
	opts.MaxSSELineBytes = cmp.Or(opts.MaxSSELineBytes, configv1.DefaultMaxSSELineBytes)
	opts.ReadHeaderTimeout = cmp.Or(opts.ReadHeaderTimeout, 10*time.Second)
	opts.ReadTimeout = cmp.Or(opts.ReadTimeout, 60*time.Second)
	opts.IdleTimeout = cmp.Or(opts.IdleTimeout, 120*time.Second)
	opts.MaxStreamsPerConnection = cmp.Or(opts.MaxStreamsPerConnection, 100)
	if opts.AsyncConcurrency <= 0 {
		opts.AsyncConcurrency = DefaultAsyncConcurrency
	}
	if opts.QueueTimeout <= 0 {
		opts.QueueTimeout = DefaultQueueTimeout
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.TaskTimeout <= 0 {
		opts.TaskTimeout = DefaultTaskTimeout
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SpillAfter == 0 {
		opts.SpillAfter = DefaultSpillAfter
	}
	opts.Push.Timeout = cmp.Or(opts.Push.Timeout, DefaultPushTimeout)
	opts.Push.GiveUpAfter = cmp.Or(opts.Push.GiveUpAfter, DefaultPushGiveUpAfter)
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Now == nil {
		opts.Now = opts.Clock.Now
	}
	return opts
}

// Handler returns the gateway's HTTP handler.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Start re-queues the tasks a previous run left in flight, runs queued tasks and keeps its view
// of the replicas current, and serves on Options.Listener until ctx ends. Then it stops
// accepting, marks itself not ready, waits up to DrainTimeout for in-flight requests (streams
// included) and queued tasks being run, and ends what is left; unfinished tasks stay in the
// journal and are re-dispatched by the next run.
func (g *Gateway) Start(ctx context.Context) error {
	ln := g.opts.Listener
	if ln == nil {
		return errors.New("gateway: Options.Listener is required to Start")
	}
	defer g.stopAllTasks()
	if err := g.tasks.recover(ctx); err != nil {
		return fmt.Errorf("recovering tasks from the journal: %w", err)
	}
	consumeCtx, stopConsuming := context.WithCancel(ctx)
	defer stopConsuming()
	poolCtx, stopPool := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer func() { stopPool(); bg.Wait() }()
	bg.Go(func() {
		if err := g.tasks.Start(consumeCtx); err != nil {
			g.log.Warn("async dispatch stopped with an error", "err", err)
		}
	})
	bg.Go(func() { _ = g.tasks.pool.Start(poolCtx) })
	bg.Go(func() {
		if err := g.pusher.Start(poolCtx); err != nil {
			g.log.Warn("push notification delivery stopped with an error", "err", err)
		}
	})
	if f := g.opts.Fleet; f != nil {
		// Heartbeats go on while the gateway drains (its leases hold until its tasks end);
		// claiming other gateways' tasks stops when it starts to drain.
		bg.Go(func() { _ = f.Start(poolCtx) })
		bg.Go(func() { g.tasks.claimOrphans(consumeCtx, f) })
	}

	srv := &http.Server{
		Handler:           g.handler,
		ReadHeaderTimeout: g.opts.ReadHeaderTimeout,
		ReadTimeout:       g.opts.ReadTimeout, // bodies are small; a client trickling one is cut off
		IdleTimeout:       g.opts.IdleTimeout,
		MaxHeaderBytes:    g.opts.MaxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: g.opts.MaxStreamsPerConnection},
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if g.opts.TLS != nil {
		srv.TLSConfig = g.opts.TLS
		ln = tls.NewListener(ln, g.opts.TLS)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	return g.drain(srv, errc, stopConsuming)
}

// drain stops accepting, then waits up to DrainTimeout for in-flight work before ending it.
func (g *Gateway) drain(srv *http.Server, served <-chan error, stopConsuming func()) error {
	g.draining.Store(true)
	close(g.drainStarted)
	g.log.Info("gateway draining", "timeout", g.opts.DrainTimeout)
	stopConsuming()
	sctx, cancel := context.WithTimeout(context.Background(), g.opts.DrainTimeout)
	defer cancel()
	stopTasks := context.AfterFunc(sctx, g.stopAllTasks) // at the deadline, end what still runs
	defer stopTasks()
	err := srv.Shutdown(sctx)
	if err != nil {
		g.log.Warn("gateway drain timed out; closing remaining connections", "err", err)
		err = srv.Close()
	}
	<-served
	g.log.Info("gateway stopped")
	return err
}

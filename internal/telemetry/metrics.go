package telemetry

import (
	"context"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
)

// Namespace prefixes every metric agentplane registers.
const Namespace = "agentplane"

// DefaultMaxSubjects bounds the distinct subject label values of agentplane_tokens_total.
const DefaultMaxSubjects = 1000

// OtherSubject is the subject label value of every subject beyond Options.MaxSubjects.
const OtherSubject = "other"

// Token kinds, the kind label of agentplane_tokens_total. Any other value is counted as
// TokensOther.
const (
	TokensInput  = "input"
	TokensOutput = "output"
	TokensOther  = "other"
)

// DurationBuckets are the histogram buckets, in seconds, of task, dispatch and queue-wait
// durations: agent tasks take from milliseconds (a cached answer, a refusal) to ten minutes (the
// default task timeout).
var DurationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// Options configure Metrics. Zero values take the defaults.
type Options struct {
	// Version is the agentplane version, exported as agentplane_build_info{version}.
	Version string
	// MaxSubjects bounds the distinct subjects counted by Tokens; later subjects are counted as
	// OtherSubject. Default DefaultMaxSubjects.
	MaxSubjects int
	// NoRuntimeCollectors leaves out the Go runtime and process collectors (tests, benchmarks).
	NoRuntimeCollectors bool
}

// Metrics holds agentplane's Prometheus instruments in a registry of its own. It is safe for
// concurrent use, and every method of a nil *Metrics does nothing.
type Metrics struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	tasksStarted    *prometheus.CounterVec
	tasksFinished   *prometheus.CounterVec
	taskDuration    *prometheus.HistogramVec
	dispatches      *prometheus.CounterVec
	dispatchDur     *prometheus.HistogramVec
	redispatches    *prometheus.CounterVec
	ejections       *prometheus.CounterVec
	restarts        *prometheus.CounterVec
	queueWait       *prometheus.HistogramVec
	queueRefusals   *prometheus.CounterVec
	tokens          *prometheus.CounterVec
	push            *prometheus.CounterVec

	snapshot *snapshotCollector

	subjectsMu  sync.RWMutex
	subjects    map[string]struct{}
	maxSubjects int
}

// NewMetrics returns Metrics registered in a new registry, with the Go runtime and process
// collectors unless Options.NoRuntimeCollectors.
func NewMetrics(opts Options) *Metrics {
	if opts.MaxSubjects <= 0 {
		opts.MaxSubjects = DefaultMaxSubjects
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	m := &Metrics{
		reg:         prometheus.NewRegistry(),
		subjects:    map[string]struct{}{},
		maxSubjects: opts.MaxSubjects,
	}
	counter := func(name string) *prometheus.CounterVec {
		mi := lookup(name)
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: mi.Name, Help: mi.Help}, mi.Labels)
	}
	histogram := func(name string) *prometheus.HistogramVec {
		mi := lookup(name)
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: mi.Name, Help: mi.Help, Buckets: DurationBuckets}, mi.Labels)
	}
	m.requests = counter("agentplane_requests_total")
	m.requestDuration = histogram("agentplane_request_duration_seconds")
	m.tasksStarted = counter("agentplane_tasks_started_total")
	m.tasksFinished = counter("agentplane_tasks_finished_total")
	m.taskDuration = histogram("agentplane_task_duration_seconds")
	m.dispatches = counter("agentplane_dispatches_total")
	m.dispatchDur = histogram("agentplane_dispatch_duration_seconds")
	m.redispatches = counter("agentplane_redispatches_total")
	m.ejections = counter("agentplane_replica_ejections_total")
	m.restarts = counter("agentplane_replica_restarts_total")
	m.queueWait = histogram("agentplane_queue_wait_seconds")
	m.queueRefusals = counter("agentplane_queue_refusals_total")
	m.tokens = counter("agentplane_tokens_total")
	m.push = counter("agentplane_push_notifications_total")
	m.snapshot = newSnapshotCollector()

	bi := lookup("agentplane_build_info")
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: bi.Name, Help: bi.Help,
		ConstLabels: prometheus.Labels{"version": opts.Version, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)

	m.reg.MustRegister(m.requests, m.requestDuration, m.tasksStarted, m.tasksFinished, m.taskDuration,
		m.dispatches, m.dispatchDur, m.redispatches, m.ejections, m.restarts, m.queueWait,
		m.queueRefusals, m.tokens, m.push, m.snapshot, buildInfo)
	if !opts.NoRuntimeCollectors {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Registry is the registry the metrics are in, for other parts to register their own
// collectors (with Namespace as prefix).
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler serves the metrics in the Prometheus text format, or OpenMetrics (with exemplars
// linking latencies to traces) when the scraper asks for it. Mount it at /metrics.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            m.reg,
		EnableOpenMetrics:   true,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
}

// Request counts one answered A2A JSON-RPC request. outcome is the gateway's word for how it
// ended (ok, failed, queued, invalid, unavailable, ...); d runs from receipt to the end of the
// answer. ctx links the observation to its trace as an exemplar.
func (m *Metrics) Request(ctx context.Context, agent, method, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(agent, method, outcome).Inc()
	observe(ctx, m.requestDuration.WithLabelValues(agent, method), d)
}

// TaskStarted counts a task accepted and journaled.
func (m *Metrics) TaskStarted(agent, method string) {
	if m == nil {
		return
	}
	m.tasksStarted.WithLabelValues(agent, method).Inc()
}

// TaskFinished counts a task that reached its final state; outcome is that state (completed,
// failed, canceled, rejected, input-required). d runs from acceptance to the final state.
func (m *Metrics) TaskFinished(ctx context.Context, agent, method, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.tasksFinished.WithLabelValues(agent, method, outcome).Inc()
	observe(ctx, m.taskDuration.WithLabelValues(agent, method, outcome), d)
}

// Dispatch counts one attempt to run a task on a replica, which took d. result is "ok" or the
// failure's class (refused, dropped, hung, upstream_5xx, card_error, canceled).
func (m *Metrics) Dispatch(ctx context.Context, agent, replica, result string, d time.Duration) {
	if m == nil {
		return
	}
	m.dispatches.WithLabelValues(agent, replica, result).Inc()
	observe(ctx, m.dispatchDur.WithLabelValues(agent, replica), d)
}

// Redispatch counts a task sent to another replica because reason (a Dispatch result class).
func (m *Metrics) Redispatch(agent, reason string) {
	if m == nil {
		return
	}
	m.redispatches.WithLabelValues(agent, reason).Inc()
}

// Results of a push notification, the result label of agentplane_push_notifications_total.
const (
	PushSent    = "sent"     // the webhook answered 2xx
	PushFailed  = "failed"   // the POST failed; it is retried
	PushGivenUp = "given_up" // retried for too long; dropped
)

// PushNotification counts one push notification POST of a task of agent, or one given up.
func (m *Metrics) PushNotification(agent, result string) {
	if m == nil {
		return
	}
	m.push.WithLabelValues(agent, result).Inc()
}

// Ejection counts a replica ejected from balancing.
func (m *Metrics) Ejection(agent, replica string) {
	if m == nil {
		return
	}
	m.ejections.WithLabelValues(agent, replica).Inc()
}

// ReplicaRestart counts a replica restarted by the supervisor.
func (m *Metrics) ReplicaRestart(agent, replica string) {
	if m == nil {
		return
	}
	m.restarts.WithLabelValues(agent, replica).Inc()
}

// QueueWait observes how long a task waited in the gateway for a replica slot. Call it for every
// task that went through admission, with 0 when it did not wait, so that the histogram's count
// is the number of admitted tasks.
func (m *Metrics) QueueWait(ctx context.Context, agent string, d time.Duration) {
	if m == nil {
		return
	}
	observe(ctx, m.queueWait.WithLabelValues(agent), d)
}

// QueueRefused counts a task refused by admission; reason is queue_full, deadline or
// expected_wait.
func (m *Metrics) QueueRefused(agent, reason string) {
	if m == nil {
		return
	}
	m.queueRefusals.WithLabelValues(agent, reason).Inc()
}

// Tokens counts n model tokens of kind (TokensInput or TokensOutput) used by subject on agent.
// Only the first MaxSubjects distinct subjects get a label of their own.
func (m *Metrics) Tokens(agent, subject, kind string, n int) {
	if m == nil || n <= 0 {
		return
	}
	if kind != TokensInput && kind != TokensOutput {
		kind = TokensOther
	}
	m.tokens.WithLabelValues(agent, m.subjectLabel(subject), kind).Add(float64(n))
}

// subjectLabel returns subject while fewer than maxSubjects distinct subjects were seen or it is
// one of them, and OtherSubject otherwise.
func (m *Metrics) subjectLabel(subject string) string {
	m.subjectsMu.RLock()
	_, seen := m.subjects[subject]
	full := len(m.subjects) >= m.maxSubjects
	m.subjectsMu.RUnlock()
	if seen {
		return subject
	}
	if full {
		return OtherSubject
	}
	m.subjectsMu.Lock()
	defer m.subjectsMu.Unlock()
	if _, seen := m.subjects[subject]; seen {
		return subject
	}
	if len(m.subjects) >= m.maxSubjects {
		return OtherSubject
	}
	m.subjects[subject] = struct{}{}
	return subject
}

// SetSnapshot installs the function that reports the current gauges (replicas' in-flight tasks,
// capacity, readiness, state; queue depths). It is called at every scrape, so the values are
// exact at scrape time; it must be cheap and safe for concurrent use. Replacing it is allowed.
func (m *Metrics) SetSnapshot(f func() Snapshot) {
	if m == nil {
		return
	}
	m.snapshot.fn.Store(&f)
}

// observe records d in o, with the trace of ctx as an exemplar when ctx holds a sampled span.
func observe(ctx context.Context, o prometheus.Observer, d time.Duration) {
	s := d.Seconds()
	if ctx != nil {
		if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
			if eo, ok := o.(prometheus.ExemplarObserver); ok {
				eo.ObserveWithExemplar(s, prometheus.Labels{"trace_id": sc.TraceID().String()})
				return
			}
		}
	}
	o.Observe(s)
}

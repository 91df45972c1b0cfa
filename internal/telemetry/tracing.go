package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// InstrumentationName names agentplane's tracer.
const InstrumentationName = "github.com/agentplane/agentplane"

// Span attribute keys agentplane sets. Task ids are span attributes, never metric labels.
const (
	AttrAgent   = attribute.Key("agentplane.agent")
	AttrTaskID  = attribute.Key("agentplane.task.id")
	AttrReplica = attribute.Key("agentplane.replica")
	AttrAttempt = attribute.Key("agentplane.attempt")
	AttrMethod  = attribute.Key("rpc.method")
	AttrSystem  = attribute.Key("rpc.system")
)

// Exporter protocols SetupTracing may choose.
const (
	protocolNone = ""
	protocolHTTP = "http/protobuf"
	protocolGRPC = "grpc"
)

// tracesProtocol reads the OTEL_* variables through getenv and says which exporter to run:
// protocolNone (tracing off), protocolHTTP or protocolGRPC. Tracing is on when
// OTEL_TRACES_EXPORTER is "otlp", or when it is unset and an OTLP endpoint is configured;
// OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none turn it off.
func tracesProtocol(getenv func(string) string) (string, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return protocolNone, nil
	}
	on := false
	switch exp := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))); exp {
	case "":
		on = getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	case "none":
		return protocolNone, nil
	case "otlp":
		on = true
	default:
		return protocolNone, fmt.Errorf("OTEL_TRACES_EXPORTER=%q is not supported; use otlp or none", exp)
	}
	if !on {
		return protocolNone, nil
	}
	proto := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	if proto == "" {
		proto = strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	switch strings.ToLower(proto) {
	case "", protocolHTTP:
		return protocolHTTP, nil
	case protocolGRPC:
		return protocolGRPC, nil
	}
	return protocolNone, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q is not supported; use http/protobuf or grpc", proto)
}

// SetupTracing installs the global W3C trace-context and baggage propagator and, when the
// standard OTEL_* environment variables ask for it, an OpenTelemetry tracer provider that
// exports spans over OTLP (see tracesProtocol for when; endpoint, headers, timeout and TLS come
// from OTEL_EXPORTER_OTLP_*, sampling from OTEL_TRACES_SAMPLER, batching from OTEL_BSP_*,
// resource attributes from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES). Otherwise the
// provider is a no-op: spans cost next to nothing, and an incoming traceparent is still passed
// on unchanged by Inject.
//
// shutdown flushes buffered spans; call it once, with a deadline, when the process stops.
func SetupTracing(ctx context.Context, serviceName string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(Propagator())
	proto, err := tracesProtocol(os.Getenv)
	if err != nil {
		return nil, err
	}
	if proto == protocolNone {
		otel.SetTracerProvider(noop.NewTracerProvider())
		return func(context.Context) error { return nil }, nil
	}
	var exp sdktrace.SpanExporter
	switch proto {
	case protocolGRPC:
		exp, err = otlptracegrpc.New(ctx)
	default:
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("creating the OTLP trace exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", serviceName)),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithFromEnv(), // last, so that OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("building the trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		slog.Warn("opentelemetry export failed", "err", err)
	}))
	return tp.Shutdown, nil
}

// Propagator is the W3C trace-context and baggage propagator SetupTracing installs.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// cachedTracer is the tracer of the current global provider, looked up again only when the
// provider changes.
type cachedTracer struct {
	tp trace.TracerProvider
	t  trace.Tracer
	// off is true for the no-op provider SetupTracing installs when tracing is off: spans then
	// only carry the caller's span context, and building their names and attributes is skipped.
	off bool
}

var tracerCache atomic.Pointer[cachedTracer]

func tracer() *cachedTracer {
	tp := otel.GetTracerProvider()
	if c := tracerCache.Load(); c != nil && c.tp == tp {
		return c
	}
	_, off := tp.(noop.TracerProvider)
	c := &cachedTracer{tp: tp, t: tp.Tracer(InstrumentationName), off: off}
	tracerCache.Store(c)
	return c
}

// StartTask starts the server span of one A2A request to agent: the root of the gateway's part
// of a trace, a child of the caller's span when the request carried a traceparent (see Extract).
// taskID may be empty and set later with SetTaskID, once the gateway has issued it.
func StartTask(ctx context.Context, agent, method, taskID string) (context.Context, trace.Span) {
	tr := tracer()
	if tr.off {
		return tr.t.Start(ctx, "task")
	}
	attrs := []attribute.KeyValue{AttrSystem.String("a2a"), AttrMethod.String(method), AttrAgent.String(agent)}
	if taskID != "" {
		attrs = append(attrs, AttrTaskID.String(taskID))
	}
	return tr.t.Start(ctx, method+" "+agent, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
}

// SetTaskID records the gateway's task id on the span in ctx.
func SetTaskID(ctx context.Context, taskID string) {
	trace.SpanFromContext(ctx).SetAttributes(AttrTaskID.String(taskID))
}

// StartQueue starts the span of a task's wait for a free replica slot; end it when a slot is
// granted or the wait is given up.
func StartQueue(ctx context.Context) (context.Context, trace.Span) {
	return tracer().t.Start(ctx, "queue", trace.WithSpanKind(trace.SpanKindInternal))
}

// StartDispatch starts the client span of one attempt (0-based) to run a task on replica.
// Inject the returned context into the request to the replica, so that the agent's spans are
// its children.
func StartDispatch(ctx context.Context, replica string, attempt int, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	tr := tracer()
	if tr.off {
		return tr.t.Start(ctx, "dispatch")
	}
	attrs = append(attrs, AttrReplica.String(replica), AttrAttempt.Int(attempt))
	return tr.t.Start(ctx, "dispatch", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// End ends span, marking it failed with err when err is not nil.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Inject writes the trace context of ctx (traceparent, tracestate, baggage) into h, replacing
// any value there. With tracing off it writes the caller's context unchanged, if there was one.
func Inject(ctx context.Context, h http.Header) {
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(h))
}

// Extract returns r's context with the caller's trace context from r's headers, if any.
func Extract(r *http.Request) context.Context {
	return otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
}

// TraceCarrier returns the trace context of ctx as a small map, to store with a queued task so
// that the run that takes it from the queue continues the same trace (see ContextFromCarrier).
// It is nil when ctx has no trace context.
func TraceCarrier(ctx context.Context) map[string]string {
	m := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, m)
	if len(m) == 0 {
		return nil
	}
	return m
}

// ContextFromCarrier returns ctx with the trace context stored by TraceCarrier.
func ContextFromCarrier(ctx context.Context, carrier map[string]string) context.Context {
	if len(carrier) == 0 {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(carrier))
}

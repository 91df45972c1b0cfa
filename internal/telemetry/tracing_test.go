package telemetry

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

func TestTracesProtocol(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
		err  bool
	}{
		{name: "off by default", env: nil, want: protocolNone},
		{name: "endpoint turns it on", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, want: protocolHTTP},
		{name: "traces endpoint turns it on", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, want: protocolHTTP},
		{name: "exporter otlp without endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, want: protocolHTTP},
		{name: "grpc", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, want: protocolGRPC},
		{name: "traces protocol wins", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, want: protocolHTTP},
		{name: "exporter none wins over endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, want: protocolNone},
		{name: "sdk disabled wins", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, want: protocolNone},
		{name: "sdk disabled false", env: map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, want: protocolHTTP},
		{name: "unsupported exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: true},
		{name: "unsupported protocol", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tracesProtocol(func(k string) string { return tc.env[k] })
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error: %v", err, tc.err)
			}
			if got != tc.want {
				t.Fatalf("protocol = %q, want %q", got, tc.want)
			}
		})
	}
}

// clearOTelEnv makes the test independent of the environment it runs in, and restores the
// global tracer provider afterwards.
func clearOTelEnv(t testing.TB) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_EXPORTER_OTLP_HEADERS"} {
		t.Setenv(k, "")
	}
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
}

// TestTracingOffPassesTraceparentThrough shows that with tracing off (the default) the gateway's
// spans cost nothing and the client's traceparent reaches the agent unchanged.
func TestTracingOffPassesTraceparentThrough(t *testing.T) {
	clearOTelEnv(t)
	shutdown, err := SetupTracing(t.Context(), "agentplane")
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(t.Context())
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	r := httptest.NewRequest(http.MethodPost, "/agents/a", nil)
	r.Header.Set("Traceparent", tp)
	r.Header.Set("Tracestate", "vendor=x")
	ctx, span := StartTask(Extract(r), "a", "SendMessage", "t1")
	if span.IsRecording() {
		t.Fatal("span records with tracing off")
	}
	dctx, ds := StartDispatch(ctx, "a-0", 0)
	out := http.Header{}
	Inject(dctx, out)
	End(ds, nil)
	End(span, nil)
	if got := out.Get("Traceparent"); got != tp {
		t.Fatalf("traceparent forwarded as %q, want %q", got, tp)
	}
	if got := out.Get("Tracestate"); got != "vendor=x" {
		t.Fatalf("tracestate forwarded as %q", got)
	}
	out = http.Header{}
	Inject(t.Context(), out)
	if len(out) != 0 {
		t.Fatalf("a request without trace context got headers %v", out)
	}
}

func TestSpanHelpers(t *testing.T) {
	clearOTelEnv(t)
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	otel.SetTextMapPropagator(Propagator())

	ctx, task := StartTask(t.Context(), "triage", "SendMessage", "")
	SetTaskID(ctx, "task-1")
	_, q := StartQueue(ctx)
	End(q, nil)
	dctx, d := StartDispatch(ctx, "triage-1", 1)
	End(d, errors.New("connection refused"))
	End(task, nil)

	// The queued-task hand-off: the trace context survives a trip through a map.
	carrier := TraceCarrier(dctx)
	if carrier["traceparent"] == "" {
		t.Fatalf("carrier %v has no traceparent", carrier)
	}
	_, later := StartDispatch(ContextFromCarrier(context.Background(), carrier), "triage-0", 2)
	later.End()

	spans := rec.Ended()
	if len(spans) != 4 {
		t.Fatalf("%d spans, want 4", len(spans))
	}
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		if s.SpanContext().TraceID() != task.SpanContext().TraceID() {
			t.Errorf("span %s is in another trace", s.Name())
		}
		byName[s.Name()] = s
	}
	ts := byName["SendMessage triage"]
	if ts == nil || ts.SpanKind() != trace.SpanKindServer {
		t.Fatalf("no server span named after method and agent: %v", spans)
	}
	attrs := map[string]string{}
	for _, a := range ts.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	if attrs["agentplane.task.id"] != "task-1" || attrs["agentplane.agent"] != "triage" || attrs["rpc.method"] != "SendMessage" {
		t.Fatalf("task span attributes %v", attrs)
	}
	if d := spans[1]; d.Name() != "dispatch" || d.Status().Code != codes.Error || d.Parent().SpanID() != spans[2].SpanContext().SpanID() {
		t.Fatalf("failed dispatch: name %s status %v parent %v", d.Name(), d.Status(), d.Parent())
	}
	if l := spans[3]; l.Parent().SpanID() != spans[1].SpanContext().SpanID() {
		t.Fatalf("span started from the carrier is not a child of the dispatch that stored it")
	}
}

// otlpReceiver is an in-process OTLP/HTTP trace receiver.
type otlpReceiver struct {
	mu       sync.Mutex
	spans    []*tracepb.Span
	services []string
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "unexpected request", http.StatusBadRequest)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				o.services = append(o.services, a.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			o.spans = append(o.spans, ss.GetSpans()...)
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// TestDelegationIsOneTrace sends a task to a "planner" agent through a gateway built from the
// helpers; the planner delegates to a "worker" agent through the same gateway, passing on the
// trace context it received. With OTLP export on, a real OTLP/HTTP receiver gets one trace:
// client → planner task → dispatch → worker task → dispatch.
func TestDelegationIsOneTrace(t *testing.T) {
	clearOTelEnv(t)
	recv := &otlpReceiver{}
	collector := httptest.NewServer(recv)
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_SERVICE_NAME", "gateway-under-test")
	shutdown, err := SetupTracing(t.Context(), "agentplane")
	if err != nil {
		t.Fatal(err)
	}

	var gatewayURL string
	agents := map[string]http.HandlerFunc{
		"worker": func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "done") },
		"planner": func(w http.ResponseWriter, r *http.Request) {
			// An agent that delegates: its outgoing call carries the context it was called with.
			req, _ := http.NewRequestWithContext(Extract(r), http.MethodPost, gatewayURL+"/agents/worker", nil)
			Inject(req.Context(), req.Header)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			_, _ = io.Copy(w, resp.Body)
		},
	}
	agentSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		agents[strings.TrimPrefix(r.URL.Path, "/")](w, r)
	}))
	defer agentSrv.Close()

	// The gateway's task flow, reduced to its spans.
	mux := http.NewServeMux()
	mux.HandleFunc("POST /agents/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		ctx, task := StartTask(r.Context(), name, "SendMessage", "")
		SetTaskID(ctx, "task-"+name)
		_, q := StartQueue(ctx)
		End(q, nil)
		dctx, d := StartDispatch(ctx, name+"-0", 0)
		up, _ := http.NewRequestWithContext(dctx, http.MethodPost, agentSrv.URL+"/"+name, nil)
		Inject(dctx, up.Header)
		resp, err := http.DefaultClient.Do(up)
		End(d, err)
		if err != nil {
			End(task, err)
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		_, _ = io.Copy(w, resp.Body)
		End(task, nil)
	})
	gw := httptest.NewServer(HTTPMiddleware(mux))
	defer gw.Close()
	gatewayURL = gw.URL

	cctx, client := tracer().t.Start(t.Context(), "client", trace.WithSpanKind(trace.SpanKindClient))
	req, _ := http.NewRequestWithContext(cctx, http.MethodPost, gw.URL+"/agents/planner", nil)
	Inject(cctx, req.Header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	client.End()
	if string(body) != "done" {
		t.Fatalf("answer %q", body)
	}

	sctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := shutdown(sctx); err != nil {
		t.Fatal(err)
	}

	recv.mu.Lock()
	defer recv.mu.Unlock()
	if len(recv.services) == 0 || recv.services[0] != "gateway-under-test" {
		t.Errorf("service names %v: OTEL_SERVICE_NAME not applied", recv.services)
	}
	if len(recv.spans) != 7 {
		t.Fatalf("receiver got %d spans, want 7 (client, 2 × task, queue, dispatch)", len(recv.spans))
	}
	traceID := hex.EncodeToString(recv.spans[0].GetTraceId())
	byID := map[string]*tracepb.Span{}
	for _, s := range recv.spans {
		if got := hex.EncodeToString(s.GetTraceId()); got != traceID {
			t.Errorf("span %s is in trace %s, want %s", s.GetName(), got, traceID)
		}
		byID[hex.EncodeToString(s.GetSpanId())] = s
	}
	// Walk up from the worker's dispatch to the root.
	var leaf *tracepb.Span
	for _, s := range recv.spans {
		if s.GetName() == "dispatch" && attr(s, "agentplane.replica") == "worker-0" {
			leaf = s
		}
	}
	if leaf == nil {
		t.Fatal("no dispatch span for worker-0")
	}
	var chain []string
	for s := leaf; s != nil; s = byID[hex.EncodeToString(s.GetParentSpanId())] {
		chain = append(chain, s.GetName())
	}
	want := []string{"dispatch", "SendMessage worker", "dispatch", "SendMessage planner", "client"}
	if strings.Join(chain, " <- ") != strings.Join(want, " <- ") {
		t.Fatalf("parent chain %v, want %v", chain, want)
	}
}

func attr(s *tracepb.Span, key string) string {
	for _, a := range s.GetAttributes() {
		if a.GetKey() == key {
			return a.GetValue().GetStringValue()
		}
	}
	return ""
}

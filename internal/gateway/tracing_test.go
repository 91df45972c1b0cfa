package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/agentplane/agentplane/internal/simagent"
	"github.com/agentplane/agentplane/internal/telemetry"
	"github.com/agentplane/agentplane/internal/testutil"
)

// TestDelegatedTaskIsOneTraceThroughTheGateway: a client calls a planner agent through the real
// gateway; the planner delegates to a worker agent through the same gateway, passing on the
// trace context it received. All spans land in one trace, with the worker's task a descendant of
// the planner's dispatch. (internal/telemetry tests the same chain through a real OTLP receiver.)
func TestDelegatedTaskIsOneTraceThroughTheGateway(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })

	worker := startAgent(t, "worker", "0", simagent.Config{})
	var gatewayURL string
	var planner *httptest.Server
	planner = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			fmt.Fprintf(w, `{"name":"planner","supportedInterfaces":[{"url":%q,"protocolBinding":"JSONRPC","protocolVersion":"1.0"}]}`, planner.URL)
			return
		}
		// Delegate to the worker through the gateway, in the trace this call belongs to.
		ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gatewayURL+"/agents/worker", strings.NewReader(sendV1(2, "sub-task")))
		req.Header.Set("Content-Type", "application/json")
		otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(req.Header))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"jsonrpc":"2.0","id":1,"result":{"task":{"id":"planner-task-1","contextId":"c","status":{"state":"TASK_STATE_COMPLETED"}}}}`)
	}))
	defer planner.Close()

	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("planner", 4, planner.URL), testutil.Agent("worker", 4, worker)))
	gatewayURL = srv.URL

	ctx, root := tp.Tracer("test").Start(context.Background(), "client")
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/agents/planner", strings.NewReader(sendV1(1, "plan")))
	req.Header.Set("Content-Type", "application/json")
	telemetry.Inject(ctx, req.Header)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	root.End()
	if !strings.Contains(string(raw), "TASK_STATE_COMPLETED") {
		t.Fatalf("planner answered %s", raw)
	}

	spans := exp.GetSpans()
	byID := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		if s.SpanContext.TraceID() != root.SpanContext().TraceID() {
			t.Errorf("span %q is in another trace", s.Name)
		}
		byID[s.SpanContext.SpanID().String()] = s
	}
	var leaf *tracetest.SpanStub
	for i, s := range spans {
		if s.Name == "SendMessage worker" {
			leaf = &spans[i]
		}
	}
	if leaf == nil {
		t.Fatalf("no span for the worker's task among %d spans", len(spans))
	}
	var chain []string
	for s, ok := *leaf, true; ok; s, ok = byID[s.Parent.SpanID().String()] {
		chain = append(chain, s.Name)
	}
	want := "SendMessage worker <- dispatch <- SendMessage planner <- client"
	if got := strings.Join(chain, " <- "); got != want {
		t.Fatalf("parent chain %q, want %q", got, want)
	}
}

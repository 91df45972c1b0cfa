package telemetry

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestLoggerAddsRequestAndTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, LogFormatJSON, slog.LevelInfo).With("component", "gateway")
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(WithRequestID(t.Context(), "req-1"),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))

	log.InfoContext(ctx, "task finished", "agent", "triage")
	log.Info("no context")
	log.DebugContext(ctx, "below the level")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"msg": "task finished", "component": "gateway", "agent": "triage",
		LogKeyRequestID: "req-1", LogKeyTraceID: tid.String(), LogKeySpanID: sid.String()} {
		if rec[k] != want {
			t.Errorf("%s = %v, want %q", k, rec[k], want)
		}
	}
	if strings.Contains(lines[1], LogKeyRequestID) || strings.Contains(lines[1], LogKeyTraceID) {
		t.Errorf("a record without context got ids: %s", lines[1])
	}
}

func TestLoggerFormats(t *testing.T) {
	var buf bytes.Buffer
	NewLogger(&buf, LogFormatText, slog.LevelInfo).Info("hello", "k", "v")
	if !strings.HasPrefix(buf.String(), "time=") || !strings.Contains(buf.String(), "k=v") {
		t.Fatalf("text format wrote %q", buf.String())
	}
	buf.Reset()
	// auto on something that is not a terminal is JSON
	NewLogger(&buf, LogFormatAuto, slog.LevelInfo).Info("hello")
	if !json.Valid(buf.Bytes()) {
		t.Fatalf("auto format on a buffer wrote %q", buf.String())
	}
}

func TestHTTPMiddlewareRequestID(t *testing.T) {
	var seen []string
	h := HTTPMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if RequestID(r.Context()) != r.Header.Get(HeaderRequestID) {
			t.Errorf("context id %q, header %q", RequestID(r.Context()), r.Header.Get(HeaderRequestID))
		}
		seen = append(seen, RequestID(r.Context()))
	}))
	for _, tc := range []struct {
		in   string
		keep bool
	}{
		{"0f9a1c2e-7b3d-4e5f-8a9b-0c1d2e3f4a5b", true},
		{"4bf92f3577b34da6a3ce929d0e0e4736", true},
		{"00f067aa0ba902b7", true},
		{"abc-123_x:y.z", false},
		// Patient identifiers a client might put in its request id never reach the logs.
		{"MRN-993177", false},
		{"jane.roe.1970-01-01", false},
		{"1234567890123456789", false},
		{"", false},
		{"evil\nlevel=ERROR", false},
		{"has space", false},
		{strings.Repeat("a", 129), false},
	} {
		seen = nil
		r := httptest.NewRequest(http.MethodPost, "/agents/a", nil)
		if tc.in != "" {
			r.Header.Set(HeaderRequestID, tc.in)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		got := w.Header().Get(HeaderRequestID)
		if got != seen[0] {
			t.Errorf("%q: response id %q, handler saw %q", tc.in, got, seen[0])
		}
		if tc.keep && got != tc.in {
			t.Errorf("valid id %q replaced by %q", tc.in, got)
		}
		if !tc.keep && (got == tc.in || !validRequestID(got) || len(got) != 32) {
			t.Errorf("invalid id %q not replaced by a new one: %q", tc.in, got)
		}
	}
}

func TestHTTPMiddlewareExtractsTraceContext(t *testing.T) {
	clearOTelEnv(t)
	if _, err := SetupTracing(t.Context(), "x"); err != nil {
		t.Fatal(err)
	}
	var sc trace.SpanContext
	h := HTTPMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc = trace.SpanContextFromContext(r.Context())
	}))
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if !sc.IsRemote() || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("span context %v", sc)
	}
}

package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"os"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/term"
)

// Log formats of NewLogger.
const (
	LogFormatAuto = "auto"
	LogFormatJSON = "json"
	LogFormatText = "text"
)

// Keys of the attributes ContextHandler adds.
const (
	LogKeyRequestID = "request_id"
	LogKeyTraceID   = "trace_id"
	LogKeySpanID    = "span_id"
)

// HeaderRequestID carries a request id from clients to the gateway and on to agents.
const HeaderRequestID = "X-Request-Id"

// NewLogger returns a logger writing to w at level and above, as JSON (format "json"), as
// key=value text ("text"), or as text when w is a terminal and JSON otherwise ("auto"; also
// any other value). Records logged with a context carry its request_id, trace_id and span_id.
func NewLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if format == LogFormatText || (format != LogFormatJSON && isTerminal(w)) {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(NewContextHandler(h))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// ContextHandler adds the request id and the trace and span ids found in a record's context to
// the record, then passes it to the handler it wraps.
type ContextHandler struct{ next slog.Handler }

var _ slog.Handler = ContextHandler{}

// NewContextHandler wraps next.
func NewContextHandler(next slog.Handler) ContextHandler { return ContextHandler{next: next} }

// Enabled reports whether next handles level.
func (h ContextHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle adds request_id, trace_id and span_id, when ctx has them, and passes r on. Inside a
// group (WithGroup) they are added to the group, like any attribute.
func (h ContextHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if id := RequestID(ctx); id != "" {
			r.AddAttrs(slog.String(LogKeyRequestID, id))
		}
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r.AddAttrs(slog.String(LogKeyTraceID, sc.TraceID().String()), slog.String(LogKeySpanID, sc.SpanID().String()))
		}
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs returns a ContextHandler around next.WithAttrs(attrs).
func (h ContextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return ContextHandler{next: h.next.WithAttrs(attrs)}
}

// WithGroup returns a ContextHandler around next.WithGroup(name).
func (h ContextHandler) WithGroup(name string) slog.Handler {
	return ContextHandler{next: h.next.WithGroup(name)}
}

type requestIDKey struct{}

// WithRequestID returns ctx carrying the request id id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID is the request id carried by ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// NewRequestID returns a random request id: 32 hex digits.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validRequestID reports whether a client's request id may be used as is: a UUID, or 16 or 32
// hex digits (a W3C trace or span id, or an id of this gateway's own form). Anything else is
// replaced by a new id, which the response's X-Request-Id carries back: a free-form id could
// forge log lines or headers, or carry a patient identifier (an MRN, a name) into every log line
// of the request.
func validRequestID(id string) bool {
	switch len(id) {
	case 16, 32:
		return isHex(id)
	case 36:
		return id[8] == '-' && id[13] == '-' && id[18] == '-' && id[23] == '-' &&
			isHex(id[:8]+id[9:13]+id[14:18]+id[19:23]+id[24:])
	}
	return false
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return s != ""
}

// HTTPMiddleware gives every request a request id, the client's X-Request-Id when it is valid or
// a new one, put in the request's context (for logs), in its X-Request-Id header (so that the
// gateway forwards it to agents) and in the response's X-Request-Id header; and it puts the
// caller's trace context (traceparent, tracestate, baggage) into the request's context, so that
// spans started from it (StartTask) continue the caller's trace.
func HTTPMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(HeaderRequestID)
		if !validRequestID(id) {
			id = NewRequestID()
		}
		r.Header.Set(HeaderRequestID, id)
		w.Header().Set(HeaderRequestID, id)
		ctx := WithRequestID(Extract(r), id)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/agentplane/agentplane/internal/telemetry"
)

// The gateway of `agentplane gateway` and of `up` log the request id of the request they serve.
func TestNewLoggerAddsTheRequestID(t *testing.T) {
	var out, warnings bytes.Buffer
	logger := newLogger(slog.LevelInfo, &out, &warnings)
	ctx := telemetry.WithRequestID(t.Context(), "req-1")
	logger.InfoContext(ctx, "dispatched", "agent", "triage")
	logger.WarnContext(ctx, "replica ejected")
	logger.Debug("not at info")

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("JSON log has %d records, want 2:\n%s", len(lines), out.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec[telemetry.LogKeyRequestID] != "req-1" || rec["msg"] != "dispatched" || rec["agent"] != "triage" {
		t.Fatalf("record %v", rec)
	}
	if w := warnings.String(); !strings.Contains(w, "replica ejected") || !strings.Contains(w, "request_id=req-1") || strings.Contains(w, "dispatched") {
		t.Fatalf("warnings got %q, want only the warning, with its request id", w)
	}
}

func TestNewLoggerWithoutWarnings(t *testing.T) {
	var out bytes.Buffer
	logger := newLogger(slog.LevelDebug, &out, nil)
	logger.DebugContext(telemetry.WithRequestID(t.Context(), "req-2"), "probe")
	if !strings.Contains(out.String(), `"request_id":"req-2"`) {
		t.Fatalf("log %q has no request id", out.String())
	}
}

func TestParseLogLevel(t *testing.T) {
	if l, err := parseLogLevel("warn"); err != nil || l != slog.LevelWarn {
		t.Fatalf("parseLogLevel(warn) = %v, %v", l, err)
	}
	_, err := parseLogLevel("loud")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), "--log-level") {
		t.Fatalf("err = %v, want a usage error naming --log-level", err)
	}
}

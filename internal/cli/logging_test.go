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

// TestConsoleLeavesOutWhatUpPrints checks the console's share of the log: warnings and errors,
// but not the supervisor's warnings, which reportStatus prints as friendly lines; its errors
// still show. The log file has everything.
func TestConsoleLeavesOutWhatUpPrints(t *testing.T) {
	var out, console bytes.Buffer
	logger := newLogger(slog.LevelInfo, &out, &console)
	sup := logger.With(logComponent, componentSupervisor).With("agent", "triage")
	sup.Warn("replica exited", "exit", "exit status 3")
	sup.Info("replica started")
	sup.Error("cannot kill replica")
	logger.Warn("journal slow")
	logger.With(logComponent, "gateway").Warn("replica ejected")
	logger.Info("listening")

	got := console.String()
	for _, want := range []string{"cannot kill replica", "journal slow", "replica ejected"} {
		if !strings.Contains(got, want) {
			t.Errorf("console lacks %q:\n%s", want, got)
		}
	}
	for _, not := range []string{"replica exited", "replica started", "listening"} {
		if strings.Contains(got, not) {
			t.Errorf("console has %q:\n%s", not, got)
		}
	}
	if n := strings.Count(out.String(), "\n"); n != 6 {
		t.Errorf("the log file has %d records, want all 6:\n%s", n, out.String())
	}
}

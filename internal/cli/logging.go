package cli

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/agentplane/agentplane/internal/telemetry"
)

// parseLogLevel reads --log-level: debug, info, warn or error.
func parseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, &exitError{code: 2, err: fmt.Errorf("--log-level: %w", err)}
	}
	return l, nil
}

// newLogger is the logger of every long-running command (up, gateway, operator): JSON records at
// level and above to w and, when warnings is not nil, records at warn and above as text to
// warnings too (up logs to a file and shows problems on the terminal). Records logged with a
// request's context carry its request, trace and span ids (telemetry.ContextHandler).
func newLogger(level slog.Level, w, warnings io.Writer) *slog.Logger {
	var h slog.Handler = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	if warnings != nil {
		h = slog.NewMultiHandler(h, slog.NewTextHandler(warnings, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(telemetry.NewContextHandler(h))
}

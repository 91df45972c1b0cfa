package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"

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
// level and above to w and, when console is not nil, records at warn and above as text to
// console too (up logs to a file and shows problems on the terminal) — except the warnings of a
// logger made with With(logComponent, c) for a c in quietOnConsole, whose events up already
// prints as friendly lines (its errors still show). Records logged with a request's context
// carry its request, trace and span ids (telemetry.ContextHandler).
func newLogger(level slog.Level, w, console io.Writer) *slog.Logger {
	var h slog.Handler = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	if console != nil {
		h = slog.NewMultiHandler(h, consoleHandler{h: slog.NewTextHandler(console, &slog.HandlerOptions{Level: slog.LevelWarn})})
	}
	return slog.New(telemetry.NewContextHandler(h))
}

// logComponent is the key of the attribute that names the part of agentplane a logger is for.
const logComponent = "component"

// quietOnConsole are the components whose warnings stay off the console: every event of theirs
// that the console should show has a friendly line there already (reportStatus prints the
// supervisor's replica events from its snapshots), and the same event twice is noise.
var quietOnConsole = []string{componentSupervisor}

const componentSupervisor = "supervisor"

// consoleHandler passes on the records at warn and above, and for a quiet component only
// errors.
type consoleHandler struct {
	h     slog.Handler
	quiet bool
}

func (c consoleHandler) min() slog.Level {
	if c.quiet {
		return slog.LevelError
	}
	return slog.LevelWarn
}

func (c consoleHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= c.min() && c.h.Enabled(ctx, l)
}

func (c consoleHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < c.min() {
		return nil
	}
	return c.h.Handle(ctx, r)
}

func (c consoleHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	quiet := c.quiet
	for _, a := range attrs {
		if a.Key == logComponent && slices.Contains(quietOnConsole, a.Value.String()) {
			quiet = true
		}
	}
	return consoleHandler{h: c.h.WithAttrs(attrs), quiet: quiet}
}

func (c consoleHandler) WithGroup(name string) slog.Handler {
	return consoleHandler{h: c.h.WithGroup(name), quiet: c.quiet}
}

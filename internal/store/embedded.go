package store

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startEmbedded starts a JetStream server in the process with its files under opts.DataDir. It
// listens on no port: the journal talks to it through an in-process connection.
func startEmbedded(ctx context.Context, opts Options, log *slog.Logger) (*server.Server, error) {
	sopts := &server.Options{
		ServerName:         "agentplane-journal",
		DontListen:         true,
		JetStream:          true,
		StoreDir:           opts.DataDir,
		SyncAlways:         opts.Sync == SyncAlways,
		MaxPayload:         maxPayload,
		JetStreamMaxMemory: 64 << 20, // only the short-lived scan consumers of Pending live in memory
		NoSigs:             true,
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("store: embedded server: %w", err)
	}
	srv.SetLoggerV2(serverLogger{log}, false, false, false)
	srv.Start()
	wait := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("store: embedded server in %s did not start within %s", opts.DataDir, wait)
	}
	return srv, nil
}

// serverLogger sends the embedded server's log to slog: notices at debug level (the server is
// an implementation detail of the gateway), warnings and errors as they are.
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) Noticef(format string, v ...any) {
	l.log.Debug("journal server", "detail", fmt.Sprintf(format, v...))
}
func (l serverLogger) Warnf(format string, v ...any) {
	l.log.Warn("journal server", "detail", fmt.Sprintf(format, v...))
}
func (l serverLogger) Fatalf(format string, v ...any) {
	l.log.Error("journal server fatal", "detail", fmt.Sprintf(format, v...))
}
func (l serverLogger) Errorf(format string, v ...any) {
	l.log.Error("journal server", "detail", fmt.Sprintf(format, v...))
}
func (l serverLogger) Debugf(format string, v ...any) {}
func (l serverLogger) Tracef(format string, v ...any) {}

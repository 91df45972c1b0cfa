package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startEmbedded starts a JetStream server in the process with its files under opts.DataDir. It
// listens on no port: the journal talks to it through an in-process connection.
func startEmbedded(ctx context.Context, opts Options, log *slog.Logger) (*server.Server, error) {
	if err := checkKey(opts.DataDir, opts.EncryptionKey); err != nil {
		return nil, err
	}
	sopts := &server.Options{
		ServerName:         "agentplane-journal",
		DontListen:         true,
		JetStream:          true,
		StoreDir:           opts.DataDir,
		SyncAlways:         opts.Sync == SyncAlways,
		MaxPayload:         opts.maxPayload,
		JetStreamMaxMemory: 64 << 20, // only the short-lived scan consumers of Pending live in memory
		NoSigs:             true,
	}
	if opts.EncryptionKey != "" {
		sopts.JetStreamKey, sopts.JetStreamCipher = opts.EncryptionKey, server.AES
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
	if err := writeKeyCheck(opts.DataDir, opts.EncryptionKey); err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, err
	}
	return srv, nil
}

// MinKeyLength is the shortest encryption key the journal takes, in bytes.
const MinKeyLength = 32

// CheckKey refuses an encryption key shorter than MinKeyLength.
func CheckKey(key string) error {
	if len(key) < MinKeyLength {
		return fmt.Errorf("the encryption key has %d bytes; it needs at least %d (for example: head -c 32 /dev/urandom | base64)", len(key), MinKeyLength)
	}
	return nil
}

// keyCheckFile records, beside the embedded server's files, whether the journal is encrypted and
// an HMAC that tells whether a key is the one it was written with. Without it a wrong key would
// look to the server like a journal with nothing in it, and the tasks would be silently lost.
const keyCheckFile = "journal-encryption"

func keyCheck(key string) string {
	if key == "" {
		return "none\n"
	}
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("agentplane journal encryption key v1"))
	return "aes-gcm " + hex.EncodeToString(m.Sum(nil)) + "\n"
}

// checkKey refuses a key that differs from the one the journal in dir was written with, and a
// journal with data that records no key at all when a key is given (or the other way round).
func checkKey(dir, key string) error {
	b, err := os.ReadFile(filepath.Join(dir, keyCheckFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if hasData(dir) && key != "" {
			return fmt.Errorf("store: the journal in %s was written without encryption; it cannot be encrypted in place: move it away (its tasks are lost) or run without an encryption key", dir)
		}
		return nil
	case err != nil:
		return fmt.Errorf("store: %w", err)
	}
	was := string(b)
	if hmac.Equal([]byte(was), []byte(keyCheck(key))) {
		return nil
	}
	switch {
	case was == keyCheck(""):
		return fmt.Errorf("store: the journal in %s is not encrypted; it cannot be encrypted in place: move it away (its tasks are lost) or run without an encryption key", dir)
	case key == "":
		return fmt.Errorf("store: the journal in %s is encrypted: give its encryption key", dir)
	default:
		return fmt.Errorf("store: the journal in %s was encrypted with another key", dir)
	}
}

func writeKeyCheck(dir, key string) error {
	path := filepath.Join(dir, keyCheckFile)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.WriteFile(path, []byte(keyCheck(key)), 0o600); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// hasData reports whether the embedded server has stored anything in dir.
func hasData(dir string) bool {
	entries, err := os.ReadDir(filepath.Join(dir, "jetstream"))
	return err == nil && len(entries) > 0
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

package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/store/storetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testOptions are embedded-server options with timings short enough for tests.
func testOptions(dir string) store.Options {
	return store.FastTimings(store.Options{DataDir: dir, Logger: quiet},
		time.Second, 20*time.Millisecond, 500*time.Millisecond)
}

func open(t *testing.T, opts store.Options) *store.JetStream {
	t.Helper()
	j, err := store.Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := j.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return j
}

func TestJetStreamEmbeddedConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Journal { return open(t, testOptions(t.TempDir())) })
}

// startExternal starts a separate JetStream server listening on a random loopback port.
func startExternal(t testing.TB) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("external server did not start")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

func TestJetStreamExternalConformance(t *testing.T) {
	srv := startExternal(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) store.Journal {
		opts := testOptions("")
		opts.URL = srv.ClientURL()
		opts.Prefix = fmt.Sprintf("test%d", n.Add(1)) // each subtest its own bucket and queue
		return open(t, opts)
	})
}

func TestJetStreamSurvivesRestart(t *testing.T) {
	ctx := t.Context()
	for _, mode := range []string{store.SyncInterval, store.SyncAlways} {
		t.Run(mode, func(t *testing.T) {
			opts := testOptions(t.TempDir())
			opts.Sync = mode
			j, err := store.Open(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := j.SyncAlwaysForTest(); !ok || got != (mode == store.SyncAlways) {
				t.Errorf("embedded server SyncAlways = %v, want %v", got, mode == store.SyncAlways)
			}
			live, done := storetest.NewTask("live"), storetest.NewTask("done")
			done.State = store.StateCompleted
			for _, task := range []*store.Task{live, done} {
				if err := j.Create(ctx, task); err != nil {
					t.Fatal(err)
				}
			}
			live.Attempts = 1
			if err := j.Update(ctx, live); err != nil {
				t.Fatal(err)
			}
			if err := j.Enqueue(ctx, "live"); err != nil {
				t.Fatal(err)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}

			j = open(t, opts)
			got, err := j.Get(ctx, "live")
			if err != nil {
				t.Fatal(err)
			}
			if got.Attempts != 1 || got.Revision != live.Revision {
				t.Errorf("after restart: attempts %d revision %d, want 1 and %d", got.Attempts, got.Revision, live.Revision)
			}
			if _, err := j.Get(ctx, "done"); err != nil {
				t.Errorf("terminal task lost in restart: %v", err)
			}
			pending, err := j.Pending(ctx)
			if err != nil || len(pending) != 1 || pending[0].ID != "live" {
				t.Errorf("Pending after restart = %v, %v; want [live]", pending, err)
			}
			var ids []string
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			var mu sync.Mutex
			errc := make(chan error, 1)
			go func() {
				errc <- j.Consume(cctx, 1, func(_ context.Context, id string) error {
					mu.Lock()
					ids = append(ids, id)
					mu.Unlock()
					return nil
				})
			}()
			storetest.Eventually(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(ids) == 1 },
				"queued id not delivered after restart")
			cancel()
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestJetStreamRedeliverAfterCrash: an id whose handler never returned (the journal was closed
// under it) is delivered again by the next process.
func TestJetStreamRedeliverAfterCrash(t *testing.T) {
	ctx := t.Context()
	opts := testOptions(t.TempDir())
	j1, err := store.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := j1.Enqueue(ctx, "stuck"); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	release := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- j1.Consume(ctx, 1, func(context.Context, string) error {
			close(started)
			<-release // never returns while the journal is open
			return nil
		})
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("stuck never delivered")
	}
	if err := j1.Close(); err != nil { // the process "dies" with the handler running
		t.Fatal(err)
	}

	j2 := open(t, opts)
	got := make(chan string, 1)
	cctx, cancel := context.WithCancel(ctx)
	errc2 := make(chan error, 1)
	go func() {
		errc2 <- j2.Consume(cctx, 1, func(_ context.Context, id string) error {
			select {
			case got <- id:
			default:
			}
			return nil
		})
	}()
	select {
	case id := <-got:
		if id != "stuck" {
			t.Errorf("redelivered %q, want stuck", id)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("id of a handler that never returned was not delivered again")
	}
	cancel()
	if err := <-errc2; err != nil {
		t.Fatal(err)
	}
	// The old consumer returns once its handler does, reporting the closed journal.
	close(release)
	select {
	case err := <-errc:
		if err == nil {
			t.Error("Consume on a closed journal returned nil")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Consume on a closed journal did not return")
	}
}

// TestJetStreamRetention: terminal tasks expire after Retention, others stay, and an expired
// id can be created again.
func TestJetStreamRetention(t *testing.T) {
	ctx := t.Context()
	opts := testOptions(t.TempDir())
	opts.Retention = time.Second
	j := open(t, opts)
	live, done := storetest.NewTask("live"), storetest.NewTask("done")
	if err := j.Create(ctx, live); err != nil {
		t.Fatal(err)
	}
	if err := j.Create(ctx, done); err != nil {
		t.Fatal(err)
	}
	done.State = store.StateCompleted
	if err := j.Update(ctx, done); err != nil {
		t.Fatal(err)
	}
	storetest.Eventually(t, 10*time.Second, func() bool {
		_, err := j.Get(ctx, "done")
		return errors.Is(err, store.ErrNotFound)
	}, "terminal task did not expire")
	if _, err := j.Get(ctx, "live"); err != nil {
		t.Fatalf("non-terminal task expired: %v", err)
	}
	pending, err := j.Pending(ctx)
	if err != nil || len(pending) != 1 || pending[0].ID != "live" {
		t.Fatalf("Pending = %v, %v; want [live]", pending, err)
	}
	again := storetest.NewTask("done")
	if err := j.Create(ctx, again); err != nil {
		t.Fatalf("Create of an expired id: %v", err)
	}
	if err := j.Create(ctx, storetest.NewTask("done")); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Create of a re-created id: %v, want ErrExists", err)
	}
}

func TestOpenValidates(t *testing.T) {
	for name, opts := range map[string]store.Options{
		"no data dir":       {},
		"bad sync":          {DataDir: t.TempDir(), Sync: "sometimes"},
		"bad prefix":        {DataDir: t.TempDir(), Prefix: "a.b"},
		"embedded replicas": {DataDir: t.TempDir(), Replicas: 3},
		"short retention":   {DataDir: t.TempDir(), Retention: time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			opts.Logger = quiet
			if j, err := store.Open(t.Context(), opts); err == nil {
				j.Close()
				t.Fatal("Open succeeded")
			}
		})
	}
}

func TestKeyEncoding(t *testing.T) {
	for _, tc := range []struct{ id, key string }{
		{"3f2b8c1e-0d4a-4c1e-9f3a-2b7c9d1e5a60", "3f2b8c1e-0d4a-4c1e-9f3a-2b7c9d1e5a60"},
		{"task_01HZX", "task_01HZX"},
		{"a.b", "=YS5i"},
		{"=", "=PQ"},
		{"a/b", "=YS9i"},
	} {
		key, err := store.EncodeKey(tc.id)
		if err != nil || key != tc.key {
			t.Errorf("EncodeKey(%q) = %q, %v; want %q", tc.id, key, err, tc.key)
		}
	}
	if _, err := store.EncodeKey(""); !errors.Is(err, store.ErrInvalidID) {
		t.Errorf("EncodeKey(\"\") = %v, want ErrInvalidID", err)
	}
	for _, bad := range []string{"", "a.b", "=", "=!!"} {
		if _, err := store.DecodeKey(bad); err == nil {
			t.Errorf("DecodeKey(%q) succeeded", bad)
		}
	}
}

func FuzzKeyEncoding(f *testing.F) {
	for _, s := range []string{"plain", "a.b", "..", "=", "=abc", "über", "a b", "*", ">", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		key, err := store.EncodeKey(id)
		if id == "" || len(id) > store.MaxIDLen {
			if err == nil {
				t.Fatalf("EncodeKey(%q) accepted", id)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if !validKVKey(key) {
			t.Fatalf("EncodeKey(%q) = %q, not a valid KV key", id, key)
		}
		back, err := store.DecodeKey(key)
		if err != nil || back != id {
			t.Fatalf("DecodeKey(EncodeKey(%q)) = %q, %v", id, back, err)
		}
	})
}

// validKVKey is nats.go's rule for KV keys.
func validKVKey(k string) bool {
	if k == "" || k[0] == '.' || k[len(k)-1] == '.' {
		return false
	}
	return !slices.ContainsFunc([]byte(k), func(c byte) bool {
		return !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '/' || c == '=' || c == '.')
	})
}

// TestJetStreamLongHandlerKeepsID: a handler running for several ack waits keeps its id; a
// second gateway sharing the queue does not get it meanwhile.
func TestJetStreamLongHandlerKeepsID(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	srv := startExternal(t)
	opts := store.FastTimings(store.Options{URL: srv.ClientURL(), Logger: quiet},
		300*time.Millisecond, 20*time.Millisecond, 200*time.Millisecond)
	a, b := open(t, opts), open(t, opts)
	if err := a.Enqueue(ctx, "long"); err != nil {
		t.Fatal(err)
	}
	var calls, finished atomic.Int64
	handle := func(context.Context, string) error {
		calls.Add(1)
		time.Sleep(4 * 300 * time.Millisecond) // simulated work outlasting the ack wait four times
		finished.Add(1)
		return nil
	}
	var wg sync.WaitGroup
	for _, j := range []*store.JetStream{a, b} {
		wg.Go(func() {
			if err := j.Consume(ctx, 2, handle); err != nil {
				t.Error(err)
			}
		})
	}
	storetest.Eventually(t, 10*time.Second, func() bool { return finished.Load() == 1 }, "long never finished")
	// Give a wrongly redelivered copy the time to arrive: one more ack wait and poll.
	deadline := time.Now().Add(600 * time.Millisecond)
	for time.Now().Before(deadline) && calls.Load() == 1 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("handled %d times, want 1", n)
	}
}

func BenchmarkCreateUpdate(b *testing.B) {
	for _, mode := range []string{store.SyncInterval, store.SyncAlways} {
		b.Run("sync="+mode, func(b *testing.B) {
			j, err := store.Open(b.Context(), store.Options{DataDir: b.TempDir(), Sync: mode, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			ctx := b.Context()
			for i := 0; b.Loop(); i++ {
				task := storetest.NewTask(fmt.Sprintf("bench-%d", i))
				if err := j.Create(ctx, task); err != nil {
					b.Fatal(err)
				}
				task.State = store.StateDispatched
				if err := j.Update(ctx, task); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpenClose measures starting the embedded server on an existing data directory,
// binding the bucket, stream and consumer, and shutting it down.
func BenchmarkOpenClose(b *testing.B) {
	dir := b.TempDir()
	for b.Loop() {
		j, err := store.Open(b.Context(), store.Options{DataDir: dir, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		if err := j.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPending: 10,000 tasks of which 1,000 are not terminal.
func BenchmarkPending(b *testing.B) {
	ctx := b.Context()
	j, err := store.Open(ctx, store.Options{DataDir: b.TempDir(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	for i := range 10_000 {
		task := storetest.NewTask(fmt.Sprintf("t-%05d", i))
		task.Request = make([]byte, 2048)
		if i%10 != 0 {
			task.State = store.StateCompleted
		}
		if err := j.Create(ctx, task); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		ts, err := j.Pending(ctx)
		if err != nil || len(ts) != 1000 {
			b.Fatalf("Pending = %d tasks, %v", len(ts), err)
		}
	}
}

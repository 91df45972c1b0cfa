package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/store/storetest"
)

// TestJetStreamLargeSurvivesRestart: a task with a 7 MiB request and a 7 MiB answer is read
// back byte for byte after the embedded server restarts on the same directory, and recovered
// by Pending.
func TestJetStreamLargeSurvivesRestart(t *testing.T) {
	ctx := t.Context()
	opts := testOptions(t.TempDir())
	j, err := store.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	task := storetest.NewTask("large")
	task.Request = storetest.Bytes(storetest.LargeSize, 1)
	if err := j.Create(ctx, task); err != nil {
		t.Fatal(err)
	}
	task.State, task.Result = store.StateInputReq, storetest.Bytes(storetest.LargeSize, 2)
	if err := j.Update(ctx, task); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	j = open(t, opts)
	pending, err := j.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 1 || pending[0].Revision != task.Revision {
		t.Fatalf("Pending after restart = %d tasks, want the large one at revision %d", len(pending), task.Revision)
	}
	got := pending[0]
	if !bytes.Equal(got.Request, task.Request) || !bytes.Equal(got.Result, task.Result) {
		t.Fatalf("after restart: request %d bytes, result %d bytes, not those stored", len(got.Request), len(got.Result))
	}
	// And it can be finished.
	got.State = store.StateCompleted
	if err := j.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
}

// blobOptions: chunks of 64 KiB, so that a 300 KiB field takes five; retention and grace of a
// second.
func blobOptions(t *testing.T) store.Options {
	opts := store.BlobOptions(testOptions(t.TempDir()), 64<<10, time.Second)
	opts.Retention = time.Second
	return opts
}

func chunks(t *testing.T, j *store.JetStream) int {
	t.Helper()
	n, err := j.BlobChunksForTest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestJetStreamBlobsDoNotLeak: only the blobs the current record names stay; a failed write
// leaves none; a terminal task's blobs expire with it.
func TestJetStreamBlobsDoNotLeak(t *testing.T) {
	ctx := t.Context()
	j := open(t, blobOptions(t))
	const size = 300 << 10 // 5 chunks
	task := storetest.NewTask("t1")
	task.Request, task.Result = storetest.Bytes(size, 1), nil
	if err := j.Create(ctx, task); err != nil {
		t.Fatal(err)
	}
	if n := chunks(t, j); n != 5 {
		t.Fatalf("after Create: %d chunks, want 5", n)
	}
	stale := *task
	for i := range 3 {
		task.Result = storetest.Bytes(size, uint64(10+i))
		task.Attempts++
		if err := j.Update(ctx, task); err != nil {
			t.Fatal(err)
		}
		if n := chunks(t, j); n != 10 {
			t.Fatalf("after update %d: %d chunks, want 10 (request and the last result)", i, n)
		}
	}
	// A write that loses the compare-and-set, or is refused, leaves nothing behind.
	stale.Result = storetest.Bytes(2*size, 99)
	if err := j.Update(ctx, &stale); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale Update: %v, want ErrConflict", err)
	}
	if err := j.Create(ctx, storetest.NewTask("t1")); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	dup := storetest.NewTask("t1")
	dup.Request = storetest.Bytes(size, 7)
	if err := j.Create(ctx, dup); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second large Create: %v, want ErrExists", err)
	}
	if n := chunks(t, j); n != 10 {
		t.Fatalf("after failed writes: %d chunks, want 10", n)
	}
	// Shrinking back to one message removes the blobs.
	small := storetest.NewTask("t2")
	small.Request = storetest.Bytes(size, 3)
	if err := j.Create(ctx, small); err != nil {
		t.Fatal(err)
	}
	small.Request = []byte(`{}`)
	if err := j.Update(ctx, small); err != nil {
		t.Fatal(err)
	}
	if n := chunks(t, j); n != 10 {
		t.Fatalf("after t2 became small: %d chunks, want 10", n)
	}
	// A terminal task and its blobs expire.
	task.State = store.StateCompleted
	if err := j.Update(ctx, task); err != nil {
		t.Fatal(err)
	}
	if n := chunks(t, j); n != 10 {
		t.Fatalf("after completion: %d chunks, want 10", n)
	}
	storetest.Eventually(t, 15*time.Second, func() bool { return chunks(t, j) == 0 }, "the blobs of an expired task stay")
	if _, err := j.Get(ctx, "t1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired task: %v", err)
	}
}

// TestJetStreamCollectsStrayBlobs: what a writer that crashed between its blobs and its record
// left behind is removed by the next Open once older than the grace period; the blobs of
// stored tasks stay.
func TestJetStreamCollectsStrayBlobs(t *testing.T) {
	ctx := t.Context()
	opts := blobOptions(t)
	j, err := store.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	task := storetest.NewTask("kept")
	task.Request = storetest.Bytes(100<<10, 1) // 2 chunks
	if err := j.Create(ctx, task); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"kept", "never-stored"} {
		if err := j.PutStrayBlobForTest(ctx, id, []byte("stray")); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// Within the grace period a stray blob may still be on its way to a record.
	j = open(t, store.BlobOptions(opts, 64<<10, time.Hour))
	if n := chunks(t, j); n != 4 {
		t.Fatalf("right after the crash: %d chunks, want 4", n)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = open(t, store.BlobOptions(opts, 64<<10, time.Nanosecond))
	if n := chunks(t, j); n != 2 {
		t.Fatalf("after the grace period: %d chunks, want the 2 of the stored task", n)
	}
	got, err := j.Get(ctx, "kept")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Request, task.Request) {
		t.Fatal("the stored task's request changed")
	}
}

// TestJetStreamExternalDefaultMaxPayload: the external conformance suite runs against a server
// with NATS's default max payload (1 MiB), so that its large tasks prove chunking.
func TestJetStreamExternalDefaultMaxPayload(t *testing.T) {
	srv := startExternal(t)
	opts := testOptions("")
	opts.URL = srv.ClientURL()
	j := open(t, opts)
	if got := j.ChunkSize(); got >= server.MAX_PAYLOAD_SIZE {
		t.Fatalf("chunk size %d on a server with the default max payload %d", got, server.MAX_PAYLOAD_SIZE)
	}
	task := storetest.NewTask("large")
	task.Request = storetest.Bytes(3*server.MAX_PAYLOAD_SIZE, 1)
	if err := j.Create(t.Context(), task); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkTaskSize writes a task with a request of each size, then its answer of the same
// size, and reads it back: chunked (as stored now, on the embedded server and on an external
// one over loopback with the default 1 MiB max payload) and whole in one message (the
// embedded server's max payload raised to 64 MiB).
func BenchmarkTaskSize(b *testing.B) {
	sizes := []int{1 << 10, 1 << 20, 7 << 20}
	type setup struct {
		name string
		opts func(b *testing.B) store.Options
	}
	for _, s := range []setup{
		{"chunked-embedded", func(b *testing.B) store.Options { return store.Options{DataDir: b.TempDir(), Logger: quiet} }},
		{"chunked-256KiB-embedded", func(b *testing.B) store.Options {
			return store.MaxPayloadForTest(store.Options{DataDir: b.TempDir(), Logger: quiet}, 8<<20, 256<<10)
		}},
		{"chunked-4MiB-embedded", func(b *testing.B) store.Options {
			return store.MaxPayloadForTest(store.Options{DataDir: b.TempDir(), Logger: quiet}, 8<<20, 4<<20)
		}},
		{"whole-embedded-64MiB", func(b *testing.B) store.Options {
			return store.MaxPayloadForTest(store.Options{DataDir: b.TempDir(), Logger: quiet}, 64<<20, 64<<20)
		}},
		{"chunked-external-1MiB", func(b *testing.B) store.Options {
			return store.Options{URL: startExternal(b).ClientURL(), Logger: quiet}
		}},
	} {
		for _, size := range sizes {
			b.Run(fmt.Sprintf("%s/%dKiB", s.name, size>>10), func(b *testing.B) {
				j, err := store.Open(b.Context(), s.opts(b))
				if err != nil {
					b.Fatal(err)
				}
				defer j.Close()
				ctx := b.Context()
				req, res := storetest.Bytes(size, 1), storetest.Bytes(size, 2)
				var create, update, get time.Duration
				n := 0
				for b.Loop() {
					task := storetest.NewTask(fmt.Sprintf("bench-%d", n))
					task.Request, task.Result = req, nil
					t0 := time.Now()
					if err := j.Create(ctx, task); err != nil {
						b.Fatal(err)
					}
					t1 := time.Now()
					task.State, task.Result = store.StateCompleted, res
					if err := j.Update(ctx, task); err != nil {
						b.Fatal(err)
					}
					t2 := time.Now()
					if _, err := j.Get(ctx, task.ID); err != nil {
						b.Fatal(err)
					}
					create, update, get = create+t1.Sub(t0), update+t2.Sub(t1), get+time.Since(t2)
					n++
				}
				b.ReportMetric(float64(create.Microseconds())/float64(n), "create-µs")
				b.ReportMetric(float64(update.Microseconds())/float64(n), "update-µs")
				b.ReportMetric(float64(get.Microseconds())/float64(n), "get-µs")
			})
		}
	}
}

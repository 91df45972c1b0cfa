// Package storetest is the conformance suite every store.Journal implementation passes: the
// semantics the gateway relies on, written once and run against each backend.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/testutil"
)

// Run runs the suite. open returns a new, empty journal for one subtest and arranges for it to
// be closed when that subtest ends.
func Run(t *testing.T, open func(t *testing.T) store.Journal) {
	t.Run("CreateGet", func(t *testing.T) { testCreateGet(t, open(t)) })
	t.Run("Exists", func(t *testing.T) { testExists(t, open(t)) })
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, open(t)) })
	t.Run("UpdateCAS", func(t *testing.T) { testUpdateCAS(t, open(t)) })
	t.Run("ConcurrentUpdates", func(t *testing.T) { testConcurrentUpdates(t, open(t)) })
	t.Run("Pending", func(t *testing.T) { testPending(t, open(t)) })
	t.Run("List", func(t *testing.T) { testList(t, open(t)) })
	t.Run("IDs", func(t *testing.T) { testIDs(t, open(t)) })
	t.Run("ConsumeAll", func(t *testing.T) { testConsumeAll(t, open(t)) })
	t.Run("RedeliverOnError", func(t *testing.T) { testRedeliverOnError(t, open(t)) })
	t.Run("ConsumeMax", func(t *testing.T) { testConsumeMax(t, open(t)) })
	t.Run("NoConcurrentDuplicate", func(t *testing.T) { testNoConcurrentDuplicate(t, open(t)) })
	t.Run("EnqueueWaitingIsNoop", func(t *testing.T) { testEnqueueWaitingIsNoop(t, open(t)) })
	t.Run("ConsumeCancel", func(t *testing.T) { testConsumeCancel(t, open(t)) })
	t.Run("Large", func(t *testing.T) { testLarge(t, open(t)) })
	t.Run("LargeConcurrent", func(t *testing.T) { testLargeConcurrent(t, open(t)) })
	t.Run("TooLarge", func(t *testing.T) { testTooLarge(t, open(t)) })
	t.Run("Notify", func(t *testing.T) { testNotify(t, open(t)) })
}

// LargeSize is the size of a large task's request and result: under the gateway's default
// 8 MiB request limit, and larger than one message on any NATS server's default max payload.
const LargeSize = 7 << 20

// Bytes returns n pseudo-random bytes (they do not compress) made from seed.
func Bytes(n int, seed uint64) []byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(b) // never fails
	return b
}

// equalLarge compares two tasks, their Request and Result byte for byte.
func equalLarge(t *testing.T, got, want *store.Task) {
	t.Helper()
	if !bytes.Equal(got.Request, want.Request) {
		t.Errorf("request: got %d bytes, want %d, not the same", len(got.Request), len(want.Request))
	}
	if !bytes.Equal(got.Result, want.Result) {
		t.Errorf("result: got %d bytes, want %d, not the same", len(got.Result), len(want.Result))
	}
	g, w := *got, *want
	g.Request, g.Result, w.Request, w.Result = nil, nil, nil, nil
	equalTask(t, &g, &w)
}

func testLarge(t *testing.T, j store.Journal) {
	ctx := t.Context()
	want := NewTask("large")
	want.Request = Bytes(LargeSize, 1)
	want.Result = nil
	if err := j.Create(ctx, want); err != nil {
		t.Fatal(err)
	}
	get := func() *store.Task {
		t.Helper()
		got, err := j.Get(ctx, "large")
		if err != nil {
			t.Fatal(err)
		}
		equalLarge(t, got, want)
		return got
	}
	get()
	// The answer, as large again.
	want.State, want.Result = store.StateDispatched, Bytes(LargeSize, 2)
	if err := j.Update(ctx, want); err != nil {
		t.Fatal(err)
	}
	got := get()
	// An update of other fields of the task read back keeps both.
	got.Attempts = 3
	if err := j.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	want = got
	get()
	pending, err := j.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 1 {
		t.Fatalf("Pending returned %d tasks, want 1", len(pending))
	}
	equalLarge(t, pending[0], want)
	// A smaller final answer replaces the large one.
	want.State, want.Result = store.StateCompleted, []byte(`{"kind":"task"}`)
	if err := j.Update(ctx, want); err != nil {
		t.Fatal(err)
	}
	get()
	if pending, err := j.Pending(ctx); err != nil || len(pending) != 0 {
		t.Fatalf("Pending after completion = %d tasks, %v", len(pending), err)
	}
}

// testLargeConcurrent: writers replace a large task's result while readers read it; every read
// is one whole revision.
func testLargeConcurrent(t *testing.T, j store.Journal) {
	ctx := t.Context()
	const writers, size = 3, 3 << 19
	task := NewTask("large")
	task.Request = Bytes(size, 100)
	task.Result = Bytes(size, 0)
	if err := j.Create(ctx, task); err != nil {
		t.Fatal(err)
	}
	results := map[[32]byte]bool{sha256.Sum256(task.Result): true}
	for w := range writers {
		results[sha256.Sum256(Bytes(size, uint64(w+1)))] = true
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	for w := range writers {
		wg.Go(func() {
			for {
				cur, err := j.Get(ctx, "large")
				if err != nil {
					errs <- err
					return
				}
				cur.Result = Bytes(size, uint64(w+1))
				err = j.Update(ctx, cur)
				if errors.Is(err, store.ErrConflict) {
					continue
				}
				if err != nil {
					errs <- err
				}
				return
			}
		})
	}
	done := make(chan struct{})
	var reads atomic.Int64
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			got, err := j.Get(ctx, "large")
			if err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got.Request, task.Request) || !results[sha256.Sum256(got.Result)] {
				errs <- fmt.Errorf("read a task that no write stored (request %d bytes, result %d bytes)", len(got.Request), len(got.Result))
				return
			}
			reads.Add(1)
		}
	})
	wg.Wait()
	close(done)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d consistent reads", reads.Load())
}

func testTooLarge(t *testing.T, j store.Journal) {
	ctx := t.Context()
	limits, ok := store.LimitsOf(j)
	if !ok {
		t.Fatal("the journal does not tell its limits")
	}
	if limits.MaxRequestBytes < 8<<20 || limits.MaxResultBytes < 64<<20 {
		t.Errorf("default limits %+v are below the gateway's 8 MiB requests and 64 MiB answers", limits)
	}
	check := func(err error, field string, size, limit int64) {
		t.Helper()
		if !errors.Is(err, store.ErrTooLarge) {
			t.Fatalf("got %v, want ErrTooLarge", err)
		}
		var tl *store.TooLargeError
		if !errors.As(err, &tl) || tl.Field != field || tl.Size != size || tl.Limit != limit {
			t.Fatalf("got %#v, want %s of %d bytes over %d", tl, field, size, limit)
		}
		if !strings.Contains(err.Error(), fmt.Sprint(limit)) {
			t.Errorf("error %q does not tell the limit", err)
		}
	}

	big := NewTask("big")
	big.Request = make([]byte, limits.MaxRequestBytes+1)
	check(j.Create(ctx, big), "request", limits.MaxRequestBytes+1, limits.MaxRequestBytes)
	if _, err := j.Get(ctx, "big"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused task was stored: %v", err)
	}

	long := NewTask("long-reason")
	long.Reason = strings.Repeat("r", store.MaxRecordBytes)
	if err := j.Create(ctx, long); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("a task with a %d-byte reason: got %v, want ErrTooLarge", len(long.Reason), err)
	}

	task := NewTask("t1")
	if err := j.Create(ctx, task); err != nil {
		t.Fatal(err)
	}
	rev := task.Revision
	answer := *task
	answer.State, answer.Result = store.StateCompleted, make([]byte, limits.MaxResultBytes+1)
	check(j.Update(ctx, &answer), "result", limits.MaxResultBytes+1, limits.MaxResultBytes)
	if answer.Revision != rev {
		t.Error("a refused Update changed Revision")
	}
	got, err := j.Get(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	equalTask(t, got, task)
}

// NewTask returns a task in state accepted with every field set.
func NewTask(id string) *store.Task {
	now := time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)
	return &store.Task{
		ID: id, Agent: "echo", Subject: "alice", Tenant: "acme", ContextID: "ctx-1", MessageID: "msg-1",
		Method: "message/send", Dialect: "1.0", Async: true,
		Request: []byte(`{"jsonrpc":"2.0","id":1,"method":"message/send","params":{}}`),
		Replica: "echo-0", ReplicaURL: "http://127.0.0.1:9000", UpstreamID: "up-1",
		State: store.StateAccepted, Result: []byte(`{"kind":"task"}`),
		Push:      []store.PushConfig{{ID: "p-1", URL: "https://hooks.example/a2a", Token: "tok", AuthScheme: "Bearer", Credentials: "secret"}},
		CreatedAt: now, UpdatedAt: now.Add(time.Second),
	}
}

// Eventually polls cond until it holds or the deadline passes.
func Eventually(t testing.TB, within time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	testutil.Eventually(t, within, 5*time.Millisecond, func() error { return testutil.Check(cond(), msg, args...) })
}

func equalTask(t *testing.T, got, want *store.Task) {
	t.Helper()
	g, w := *got, *want
	if !g.CreatedAt.Equal(w.CreatedAt) || !g.UpdatedAt.Equal(w.UpdatedAt) {
		t.Errorf("times: got %v/%v, want %v/%v", g.CreatedAt, g.UpdatedAt, w.CreatedAt, w.UpdatedAt)
	}
	g.CreatedAt, g.UpdatedAt, w.CreatedAt, w.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	gs, ws := fmt.Sprintf("%+v", g), fmt.Sprintf("%+v", w)
	if gs != ws {
		t.Errorf("task:\n got  %s\n want %s", gs, ws)
	}
}

func testCreateGet(t *testing.T, j store.Journal) {
	ctx := t.Context()
	want := NewTask("3f2b8c1e-0d4a-4c1e-9f3a-2b7c9d1e5a60")
	if err := j.Create(ctx, want); err != nil {
		t.Fatal(err)
	}
	if want.Revision == 0 {
		t.Fatal("Create did not set Revision")
	}
	got, err := j.Get(ctx, want.ID)
	if err != nil {
		t.Fatal(err)
	}
	equalTask(t, got, want)
	// The journal keeps its own copy.
	want.Request[0] = 'X'
	got, err = j.Get(ctx, want.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Request[0] != '{' {
		t.Error("journal shares the caller's Request bytes")
	}
}

func testExists(t *testing.T, j store.Journal) {
	ctx := t.Context()
	if err := j.Create(ctx, NewTask("t1")); err != nil {
		t.Fatal(err)
	}
	dup := NewTask("t1")
	dup.Agent = "other"
	if err := j.Create(ctx, dup); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Create: got %v, want ErrExists", err)
	}
	got, err := j.Get(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Agent != "echo" {
		t.Errorf("failed Create overwrote the task: agent %q", got.Agent)
	}
}

func testNotFound(t *testing.T, j store.Journal) {
	ctx := t.Context()
	_, err := j.Get(ctx, "missing-id")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get: got %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "missing-id") {
		t.Errorf("error %q does not name the id", err)
	}
	u := NewTask("missing-id")
	u.Revision = 7
	if err := j.Update(ctx, u); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Update of a missing task: got %v, want ErrNotFound", err)
	}
	u.Revision = 0
	if err := j.Update(ctx, u); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Update of a missing task at revision 0: got %v, want ErrNotFound", err)
	}
	if _, err := j.Get(ctx, "missing-id"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Update created the task: %v", err)
	}
	if err := j.Create(ctx, NewTask("")); !errors.Is(err, store.ErrInvalidID) {
		t.Errorf("Create with empty id: got %v, want ErrInvalidID", err)
	}
}

func testUpdateCAS(t *testing.T, j store.Journal) {
	ctx := t.Context()
	a := NewTask("t1")
	if err := j.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	b, err := j.Get(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	rev0 := a.Revision
	a.State, a.Replica = store.StateDispatched, "echo-1"
	if err := j.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	if a.Revision == rev0 {
		t.Error("Update did not change Revision")
	}
	b.State = store.StateFailed
	if err := j.Update(ctx, b); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale Update: got %v, want ErrConflict", err)
	}
	if b.Revision != rev0 {
		t.Error("failed Update changed Revision")
	}
	b.Revision = 0
	if err := j.Update(ctx, b); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Update at revision 0: got %v, want ErrConflict", err)
	}
	got, err := j.Get(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	equalTask(t, got, a)
}

func testConcurrentUpdates(t *testing.T, j store.Journal) {
	ctx := t.Context()
	if err := j.Create(ctx, NewTask("t1")); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	var conflicts atomic.Int64
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			for {
				cur, err := j.Get(ctx, "t1")
				if err != nil {
					errs <- err
					return
				}
				cur.Attempts++
				err = j.Update(ctx, cur)
				if errors.Is(err, store.ErrConflict) {
					conflicts.Add(1)
					continue
				}
				if err != nil {
					errs <- err
				}
				return
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := j.Get(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Attempts != n {
		t.Fatalf("Attempts = %d, want %d (lost updates)", got.Attempts, n)
	}
	t.Logf("%d conflicts retried", conflicts.Load())
}

func testPending(t *testing.T, j store.Journal) {
	ctx := t.Context()
	if ts, err := j.Pending(ctx); err != nil || len(ts) != 0 {
		t.Fatalf("empty journal: Pending = %v, %v", ts, err)
	}
	states := []store.TaskState{
		store.StateAccepted, store.StateDispatched, store.StateInputReq,
		store.StateCompleted, store.StateFailed, store.StateCanceled, store.StateRejected,
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, s := range states {
		task := NewTask(fmt.Sprintf("task-%d", i))
		task.State = s
		task.CreatedAt = base.Add(-time.Duration(i) * time.Minute) // newest first
		if err := j.Create(ctx, task); err != nil {
			t.Fatal(err)
		}
	}
	// A task that finished after it was created, and one that went back to work.
	done := NewTask("later-done")
	if err := j.Create(ctx, done); err != nil {
		t.Fatal(err)
	}
	done.State = store.StateCompleted
	if err := j.Update(ctx, done); err != nil {
		t.Fatal(err)
	}
	back := NewTask("input-then-working")
	back.State = store.StateInputReq
	if err := j.Create(ctx, back); err != nil {
		t.Fatal(err)
	}
	back.State = store.StateDispatched
	if err := j.Update(ctx, back); err != nil {
		t.Fatal(err)
	}

	got, err := j.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, g := range got {
		ids = append(ids, g.ID)
		if g.Revision == 0 {
			t.Errorf("Pending task %s has no Revision", g.ID)
		}
	}
	// Oldest first: task-2, task-1, task-0, then the two created at NewTask's time.
	wantOrder := []string{"task-2", "task-1", "task-0", "input-then-working"}
	if !slices.Equal(ids, wantOrder) {
		t.Fatalf("Pending = %v, want %v", ids, wantOrder)
	}
	// A Pending task can be updated with the revision it came with.
	got[0].State = store.StateCompleted
	if err := j.Update(ctx, got[0]); err != nil {
		t.Fatalf("Update of a Pending task: %v", err)
	}
}

func testIDs(t *testing.T, j store.Journal) {
	ctx := t.Context()
	ids := []string{
		"plain", "with.dot", "a/b", "..", ".", "*", ">", "a b", "über", "=plain", "=",
		"tab\there", "new\nline", "$KV.x", strings.Repeat("x", store.MaxIDLen),
	}
	for i, id := range ids {
		task := NewTask(id)
		task.Attempts = i
		if err := j.Create(ctx, task); err != nil {
			t.Fatalf("Create(%q): %v", id, err)
		}
	}
	for i, id := range ids {
		got, err := j.Get(ctx, id)
		if err != nil {
			t.Fatalf("Get(%q): %v", id, err)
		}
		if got.ID != id || got.Attempts != i {
			t.Errorf("Get(%q) returned task %q attempts %d", id, got.ID, got.Attempts)
		}
	}
	pending, err := j.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != len(ids) {
		t.Errorf("Pending returned %d tasks, want %d", len(pending), len(ids))
	}
	if err := j.Create(ctx, NewTask(strings.Repeat("x", store.MaxIDLen+1))); !errors.Is(err, store.ErrInvalidID) {
		t.Errorf("over-long id: got %v, want ErrInvalidID", err)
	}
	// Ids are queued and delivered intact.
	want := []string{"a/b", "über", "=plain"}
	for _, id := range want {
		if err := j.Enqueue(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	got := consumeN(t, j, len(want))
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("consumed %q, want %q", got, want)
	}
}

// consumeN consumes until n ids were handled successfully and returns them.
func consumeN(t *testing.T, j store.Journal, n int) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var mu sync.Mutex
	var got []string
	done := make(chan error, 1)
	go func() {
		done <- j.Consume(ctx, 4, func(_ context.Context, id string) error {
			mu.Lock()
			got = append(got, id)
			mu.Unlock()
			return nil
		})
	}()
	Eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= n
	}, "fewer than %d ids handled", n)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Consume: %v", err)
	}
	return got
}

func testConsumeAll(t *testing.T, j store.Journal) {
	ctx := t.Context()
	var want []string
	for i := range 25 {
		id := fmt.Sprintf("async-%02d", i)
		want = append(want, id)
		if err := j.Enqueue(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	got := consumeN(t, j, len(want))
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("consumed %v, want each of %v once", got, want)
	}
	// Acknowledged ids are gone: a new consumer sees only what is enqueued next.
	if err := j.Enqueue(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	if got := consumeN(t, j, 1); !slices.Equal(got, []string{"after"}) {
		t.Fatalf("second consume got %v, want [after]", got)
	}
}

func testRedeliverOnError(t *testing.T, j store.Journal) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for _, id := range []string{"flaky", "fine"} {
		if err := j.Enqueue(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	calls := map[string]int{}
	okCount := map[string]int{}
	done := make(chan error, 1)
	go func() {
		done <- j.Consume(ctx, 2, func(_ context.Context, id string) error {
			mu.Lock()
			defer mu.Unlock()
			calls[id]++
			if id == "flaky" && calls[id] < 3 {
				return errors.New("upstream unavailable")
			}
			okCount[id]++
			return nil
		})
	}()
	Eventually(t, 15*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return okCount["flaky"] == 1 && okCount["fine"] == 1
	}, "flaky and fine not both handled")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls["flaky"] != 3 || calls["fine"] != 1 {
		t.Errorf("calls = %v, want flaky:3 fine:1", calls)
	}
}

func testConsumeMax(t *testing.T, j store.Journal) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	const max, n = 3, 12
	for i := range n {
		if err := j.Enqueue(ctx, fmt.Sprintf("m-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var active, peak, handled atomic.Int64
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- j.Consume(ctx, max, func(_ context.Context, id string) error {
			a := active.Add(1)
			for {
				p := peak.Load()
				if a <= p || peak.CompareAndSwap(p, a) {
					break
				}
			}
			<-release
			active.Add(-1)
			handled.Add(1)
			return nil
		})
	}()
	Eventually(t, 10*time.Second, func() bool { return active.Load() == max }, "never reached %d handlers", max)
	close(release)
	Eventually(t, 10*time.Second, func() bool { return handled.Load() == n }, "not all %d ids handled", n)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p := peak.Load(); p != max {
		t.Fatalf("peak concurrency %d, want %d", p, max)
	}
}

func testNoConcurrentDuplicate(t *testing.T, j store.Journal) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if err := j.Enqueue(ctx, "dup"); err != nil {
		t.Fatal(err)
	}
	var active, overlap, calls atomic.Int64
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- j.Consume(ctx, 4, func(_ context.Context, id string) error {
			calls.Add(1)
			if id != "dup" {
				return nil
			}
			if active.Add(1) > 1 {
				overlap.Add(1)
			}
			entered <- struct{}{}
			<-release
			active.Add(-1)
			return nil
		})
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("dup never delivered")
	}
	// Queued again while being handled: it must be handled again, but not at the same time.
	if err := j.Enqueue(ctx, "dup"); err != nil {
		t.Fatal(err)
	}
	if err := j.Enqueue(ctx, "other"); err != nil { // something else can still run meanwhile
		t.Fatal(err)
	}
	close(release)
	Eventually(t, 10*time.Second, func() bool { return calls.Load() == 3 }, "dup and other not handled 3 times in all")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if overlap.Load() != 0 {
		t.Fatal("the same id was handled twice at once")
	}
}

func testEnqueueWaitingIsNoop(t *testing.T, j store.Journal) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for _, id := range []string{"once", "once", "once", "marker"} {
		if err := j.Enqueue(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	calls := map[string]int{}
	done := make(chan error, 1)
	go func() {
		done <- j.Consume(ctx, 1, func(_ context.Context, id string) error {
			mu.Lock()
			calls[id]++
			mu.Unlock()
			return nil
		})
	}()
	Eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return calls["marker"] == 1
	}, "marker not handled")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if calls["once"] != 1 {
		t.Fatalf("an id enqueued three times while waiting was handled %d times, want 1", calls["once"])
	}
}

func testConsumeCancel(t *testing.T, j store.Journal) {
	ctx, cancel := context.WithCancel(t.Context())
	if err := j.Enqueue(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var returned atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- j.Consume(ctx, 2, func(hctx context.Context, id string) error {
			close(started)
			<-hctx.Done() // the handler sees the cancellation
			returned.Store(true)
			return hctx.Err()
		})
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("slow never delivered")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Consume after cancel: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Consume did not return after its context was cancelled")
	}
	if !returned.Load() {
		t.Fatal("Consume returned before its handler did")
	}
	// An idle Consume returns too.
	ctx2, cancel2 := context.WithCancel(t.Context())
	go func() { done <- j.Consume(ctx2, 1, func(context.Context, string) error { return nil }) }()
	cancel2()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("idle Consume did not return after cancel")
	}
}

func testList(t *testing.T, j store.Journal) {
	ctx := t.Context()
	if es, err := j.List(ctx, "echo"); err != nil || len(es) != 0 {
		t.Fatalf("empty journal: List = %v, %v", es, err)
	}
	a := NewTask("a")
	b := NewTask("b")
	b.Subject, b.ContextID = "bob", "ctx-2"
	other := NewTask("other-agent")
	other.Agent = "triage"
	for _, task := range []*store.Task{a, b, other} {
		if err := j.Create(ctx, task); err != nil {
			t.Fatal(err)
		}
	}
	a.State, a.UpdatedAt = store.StateCompleted, a.UpdatedAt.Add(time.Minute)
	if err := j.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	es, err := j.List(ctx, "echo")
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(es, func(x, y store.Entry) int { return strings.Compare(x.ID, y.ID) })
	want := []store.Entry{
		{ID: "a", Agent: "echo", State: store.StateCompleted, Tenant: store.Digest("acme"), Owner: store.Digest("acme", "alice"),
			Context: store.Digest("ctx-1"), UpdatedAt: a.UpdatedAt},
		{ID: "b", Agent: "echo", State: store.StateAccepted, Tenant: store.Digest("acme"), Owner: store.Digest("acme", "bob"),
			Context: store.Digest("ctx-2"), UpdatedAt: b.UpdatedAt},
	}
	if len(es) != len(want) {
		t.Fatalf("List(echo) = %+v, want %+v", es, want)
	}
	for i := range want {
		if es[i].ID != want[i].ID || es[i].State != want[i].State || es[i].Tenant != want[i].Tenant || es[i].Owner != want[i].Owner ||
			es[i].Context != want[i].Context || !es[i].UpdatedAt.Equal(want[i].UpdatedAt) || es[i].Agent != want[i].Agent {
			t.Errorf("List(echo)[%d] = %+v, want %+v", i, es[i], want[i])
		}
	}
	if store.Digest("acme", "alice") == store.Digest("acmealice") || store.Digest("acme", "alice") == store.Digest("acm", "ealice") {
		t.Error("Digest does not keep its parts apart")
	}
}

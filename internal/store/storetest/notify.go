package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/store"
)

// testNotify: a notice keeps its task id, revision and first queue time across deliveries,
// comes back after the delay its handler asks for, and is gone once handled.
func testNotify(t *testing.T, j store.Journal) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	before := time.Now().Add(-time.Second)
	if err := j.Notify(ctx, "task-1", 7); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen []store.Notice
		at   []time.Time
	)
	done := make(chan error, 1)
	go func() {
		done <- j.ConsumeNotifications(ctx, 4, func(_ context.Context, n store.Notice) error {
			mu.Lock()
			defer mu.Unlock()
			seen, at = append(seen, n), append(at, time.Now())
			if len(seen) < 3 {
				return store.RetryAfter(200*time.Millisecond, errors.New("receiver down"))
			}
			return nil
		})
	}()
	Eventually(t, 15*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 3
	}, "notice not delivered three times")
	time.Sleep(300 * time.Millisecond) // nothing comes back after a success: give it the chance
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 {
		t.Fatalf("delivered %d times, want 3", len(seen))
	}
	for i, n := range seen {
		if n.TaskID != "task-1" || n.Revision != 7 || n.Delivery != i+1 || n.Queued.Before(before) || !n.Queued.Equal(seen[0].Queued) {
			t.Errorf("delivery %d: %+v", i+1, n)
		}
		if i > 0 && at[i].Sub(at[i-1]) < 150*time.Millisecond {
			t.Errorf("delivery %d came %s after the one before; the handler asked for 200ms", i+1, at[i].Sub(at[i-1]))
		}
	}
}

package store_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/agentplane/agentplane/internal/store"
)

// Update with compare-and-set: read, change, write, and on ErrConflict read again.
func Example() {
	ctx := context.Background()
	var j store.Journal = store.NewMemory() // or store.Open(ctx, store.Options{DataDir: dir})

	_ = j.Create(ctx, &store.Task{ID: "t1", Agent: "echo", State: store.StateAccepted})
	for {
		t, err := j.Get(ctx, "t1")
		if err != nil {
			panic(err)
		}
		t.State, t.Replica, t.Attempts = store.StateDispatched, "echo-0", t.Attempts+1
		err = j.Update(ctx, t)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			panic(err)
		}
		break
	}
	pending, _ := j.Pending(ctx)
	fmt.Println(len(pending), pending[0].State, pending[0].Attempts)
	// Output: 1 dispatched 1
}

// What the journal cannot store is refused before dispatch (HTTP 413), never as a temporary
// failure: a retry cannot succeed.
func ExampleTooLargeError() {
	ctx := context.Background()
	var j store.Journal = store.NewMemoryWithLimits(store.Limits{MaxRequestBytes: 1 << 10})
	body := make([]byte, 2<<10)

	// Up front, from the limits...
	if l, ok := store.LimitsOf(j); ok && int64(len(body)) > l.MaxRequestBytes {
		fmt.Println("413: the gateway journals requests of at most", l.MaxRequestBytes, "bytes")
	}
	// ...or from Create, which stores nothing.
	err := j.Create(ctx, &store.Task{ID: "t1", Request: body})
	var tl *store.TooLargeError
	if errors.As(err, &tl) {
		fmt.Println(errors.Is(err, store.ErrTooLarge), tl.Field, tl.Size, tl.Limit)
	}
	// Output:
	// 413: the gateway journals requests of at most 1024 bytes
	// true request 2048 1024
}

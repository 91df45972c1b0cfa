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

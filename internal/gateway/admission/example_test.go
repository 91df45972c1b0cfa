package admission_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentplane/agentplane/internal/gateway/admission"
	"github.com/agentplane/agentplane/internal/gateway/balancer"
)

func Example() {
	q := admission.New(admission.Options{MaxQueue: 100})
	tracker := balancer.NewTracker()

	// The gateway's TryFunc: pick a replica with the agent's policy and take a slot on it.
	try := func() (func(), error) {
		release, ok := tracker.TryAcquire("http://127.0.0.1:9001", 1)
		if !ok {
			return nil, admission.ErrNoSlot
		}
		return release, nil
	}
	req := admission.Request{Agent: "triage", Tenant: "clinic-a", Priority: admission.Urgent,
		Deadline: time.Now().Add(30 * time.Second)}
	release, err := q.Acquire(context.Background(), req, try)
	var refused *admission.RefusedError
	switch {
	case errors.As(err, &refused):
		fmt.Println("refused, retry after", refused.RetryAfter)
	case err != nil:
		fmt.Println("error:", err)
	default:
		fmt.Println("forwarding; waiting now:", q.Depth("triage"))
		release() // when the task leaves the replica: the slot goes to the best waiter
	}
	// Output: forwarding; waiting now: 0
}

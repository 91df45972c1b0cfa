package run_test

import (
	"context"
	"fmt"

	"github.com/agentplane/agentplane/internal/run"
)

func ExampleGroup() {
	ctx, stop := context.WithCancel(context.Background())
	var g run.Group
	// Added first, stopped last: the replicas keep serving while the gateway drains.
	g.Add("supervisor", run.Func(func(ctx context.Context) error {
		<-ctx.Done()
		fmt.Println("supervisor stopped")
		return nil
	}))
	g.Add("gateway", run.Func(func(ctx context.Context) error {
		stop() // say the gateway was asked to stop, as by a signal
		<-ctx.Done()
		fmt.Println("gateway drained")
		return ctx.Err()
	}))
	fmt.Println("error:", g.Start(ctx))
	// Output:
	// gateway drained
	// supervisor stopped
	// error: <nil>
}

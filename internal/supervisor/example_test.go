package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/supervisor"
)

// The supervisor runs until its context ends; meanwhile the gateway reads it as a
// discovery.Source.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var agents []v1alpha1.Agent // read from the manifest, then SetDefaults and Validate
	sup, err := supervisor.New(agents, supervisor.Options{DataDir: ".agentplane"})
	if err != nil {
		panic(err)
	}
	go func() {
		for {
			changed := sup.Changed()
			for _, a := range sup.Snapshot() {
				fmt.Printf("%s: %d/%d ready\n", a.Name, a.ReadyCount(), a.Desired)
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := sup.Start(ctx); err != nil { // returns once every replica has stopped
		panic(err)
	}
}

// Apply changes the running agents: here it scales one up, and reports what it did.
func ExampleSupervisor_Apply() {
	ctx := context.Background()
	var sup *supervisor.Supervisor // from supervisor.New, running: go sup.Start(ctx)
	var agents []v1alpha1.Agent    // the whole new set, read from the manifests
	diff, err := sup.Apply(ctx, agents)
	if errors.Is(err, supervisor.ErrInvalid) {
		fmt.Println("nothing changed:", err)
		return
	}
	for _, s := range diff.Scaled {
		fmt.Printf("%s scaled from %d to %d\n", s.Agent, s.From, s.To)
	}
}

// Command agentplane runs AI agents with fault tolerance and load balancing: embedded on one
// machine (`agentplane up`), or as the gateway and operator on Kubernetes.
package main

import (
	"os"

	"github.com/agentplane/agentplane/internal/cli"
)

func main() {
	ctx, stop := cli.SignalContext()
	defer stop()
	code := cli.Main(ctx, os.Args[1:], cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}

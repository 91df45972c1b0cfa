package cli

import (
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/agentplane/agentplane/internal/gateway"
)

// The shared gateway flags reach the gateway's options: a queue timeout set below the clients'
// own timeout is what turns their waits into prompt refusals.
func TestGatewayFlagsReachTheGateway(t *testing.T) {
	var g gatewayFlags
	f := pflag.NewFlagSet("up", pflag.ContinueOnError)
	g.bind(f)
	if err := f.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if o := g.options(nil, nil, nil); o.QueueTimeout != gateway.DefaultQueueTimeout || o.MaxQueue != 0 {
		t.Errorf("defaults: queue timeout %v, max queue %d; want %v, 0", o.QueueTimeout, o.MaxQueue, gateway.DefaultQueueTimeout)
	}
	if err := f.Parse([]string{"--queue-timeout", "20s", "--max-queue", "50"}); err != nil {
		t.Fatal(err)
	}
	if o := g.options(nil, nil, nil); o.QueueTimeout != 20*time.Second || o.MaxQueue != 50 {
		t.Errorf("--queue-timeout 20s --max-queue 50: queue timeout %v, max queue %d", o.QueueTimeout, o.MaxQueue)
	}
}

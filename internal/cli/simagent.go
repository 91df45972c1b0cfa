package cli

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/agentplane/agentplane/internal/simagent"
)

func newSimagentCommand(streams Streams) *cobra.Command {
	var cfg simagent.Config
	cmd := &cobra.Command{
		Use:   "simagent",
		Short: "Run a simulated A2A agent (for examples, tests and benchmarks)",
		Long: `Run a simulated A2A agent built on the official A2A Go SDK. It listens on $PORT (or --listen),
serves its agent card, answers SendMessage and SendStreamingMessage (and the v0.3 names) after a
latency drawn from --latency, works on at most --max-concurrency tasks at once (more wait), and
can inject faults: --fail-rate, --hang-rate, --crash-after.

With --llm the service time comes from a model of an LLM server instead of --latency: prefill per
prompt token, output tokens that slow down as the replica's batch grows, a per-replica context
cache that speeds up a conversation's next turn (same contextId) on the replica that served it,
and a speed factor per replica (--llm-* flags; bench/README.md, "Model", gives the defaults'
sources).`,
		Example: `  PORT=9000 agentplane simagent --latency lognormal:2s,15s --max-concurrency 2
  PORT=9001 agentplane simagent --llm --max-concurrency 8 --llm-speed 1,1,0.25 --seed 7`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := slog.New(slog.NewJSONHandler(streams.Err, nil))
			return simagent.Run(cmd.Context(), cfg, logger)
		},
	}
	cfg.BindFlags(cmd.Flags())
	return cmd
}

package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/fleet"
	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/telemetry"
)

// gatewayFlags are the gateway settings `up` and `gateway` share. Each command binds its own
// --data-dir, --log-level and --site, whose defaults and meaning differ between the two.
type gatewayFlags struct {
	listen         string
	dataDir        string
	advertiseURL   string
	configFile     string
	natsURL        string
	journalSync    string
	journalReplica int
	journalKeyFile string
	journalKey     string // read from journalKeyFile by checkJournal
	site           string
	gatewayID      string
	fleetURL       string
	fleetKeyFile   string
	fleetBeat      time.Duration
	spillAfter     time.Duration
	logLevel       string
	drainTimeout   time.Duration
	taskTimeout    time.Duration
	maxBody        int64
	maxQueue       int
	queueTimeout   time.Duration
	insecureRemote bool
	pprofListen    string
	listenSet      bool // --listen was given, so it wins over the config file's listener
	maxBodySet     bool // --max-body-bytes was given, so it wins over the config file's limit
}

// bind registers the shared flags on f.
func (g *gatewayFlags) bind(f *pflag.FlagSet) {
	f.StringVar(&g.listen, "listen", "127.0.0.1:8080", "gateway listen address")
	f.StringVar(&g.advertiseURL, "advertise-url", "", "external base URL of the gateway for agent cards (default: from each request's Host)")
	f.StringVar(&g.configFile, "config", "", "GatewayConfig file: listeners and TLS, authentication, policies, limits, rate limits, audit (see docs/security.md)")
	f.StringVar(&g.natsURL, "nats-url", "", "external NATS JetStream server for the task journal (default: one embedded in this process, stored in DATA_DIR/jetstream)")
	f.StringVar(&g.journalKeyFile, "journal-key-file", "", "file holding the key (at least 32 bytes) that encrypts the embedded task journal at rest with AES-GCM; tasks hold requests, which may hold patient data (default: not encrypted)")
	f.StringVar(&g.journalSync, "journal-sync", "interval", `"always": fsync every journal write before answering (survives power loss; slower); "interval": let the OS flush (survives a crash of agentplane, not of the machine)`)
	f.IntVar(&g.journalReplica, "journal-replicas", 1, "copies of the task journal on an external NATS cluster (--nats-url): 3 on a 3-server cluster keeps every task when a server, or a site of a stretched cluster, is lost")
	f.DurationVar(&g.drainTimeout, "drain-timeout", gateway.DefaultDrainTimeout, "on shutdown, how long in-flight tasks may take to finish")
	f.DurationVar(&g.taskTimeout, "task-timeout", gateway.DefaultTaskTimeout, "longest one dispatch of a task may take, unless the agent sets spec.taskTimeout; a replica that takes longer is taken for hung and the task goes to another replica")
	f.Int64Var(&g.maxBody, "max-body-bytes", gateway.DefaultMaxBodyBytes, "largest request body the gateway accepts")
	f.IntVar(&g.maxQueue, "max-queue", 0, "tasks that may wait per agent for a free replica slot before more are refused with 429 (0: 1000)")
	f.DurationVar(&g.queueTimeout, "queue-timeout", gateway.DefaultQueueTimeout, "longest a task waits for a free replica slot (or a ready replica) before it is refused with 503 and Retry-After; a task expected to wait longer is refused at once. Set it below your clients' timeout")
	f.StringVar(&g.pprofListen, "pprof-listen", "", "serve Go's profiling endpoints (/debug/pprof/) on this loopback address, e.g. 127.0.0.1:6060 (default: off)")
	f.StringVar(&g.gatewayID, "gateway-id", "", "this gateway's id in its fleet, stable across restarts so that it takes back its own unfinished tasks (default: the host name, or for up an id kept in DATA_DIR)")
	f.StringVar(&g.fleetURL, "fleet-url", "", "base URL at which the other gateways of the fleet reach this one to hand it tasks (default: --advertise-url; empty: it takes none)")
	f.StringVar(&g.fleetKeyFile, "fleet-key-file", "", "file holding the key (at least 32 bytes) every gateway of the fleet shares to sign the tasks they forward to each other; without it no task spills to or from another gateway (docs/sites.md)")
	f.DurationVar(&g.fleetBeat, "fleet-heartbeat", fleet.DefaultInterval, "how often this gateway tells the fleet it is alive and what it can serve; it is taken for dead, and its tasks are taken over, after 3 missed")
	f.DurationVar(&g.spillAfter, "spill-after", gateway.DefaultSpillAfter, "send a task to another site's gateway when it would wait longer than this for a replica here (negative: never)")
	f.BoolVar(&g.insecureRemote, "insecure-listen-remote", false, "allow a non-loopback --listen address although the gateway has no authentication configured")
}

// noteChanged records which flags were given explicitly; call it at the start of RunE.
func (g *gatewayFlags) noteChanged(cmd *cobra.Command) {
	g.listenSet = cmd.Flags().Changed("listen")
	g.maxBodySet = cmd.Flags().Changed("max-body-bytes")
}

// checkJournal refuses a --journal-sync other than always or interval, a --journal-key-file
// that cannot be read or holds too short a key, and a --queue-timeout that is not positive,
// before anything starts.
func (g *gatewayFlags) checkJournal() error {
	if g.queueTimeout <= 0 {
		return &exitError{code: 2, err: fmt.Errorf("--queue-timeout %s: must be positive", g.queueTimeout)}
	}
	switch g.journalSync {
	case store.SyncAlways, store.SyncInterval:
	default:
		return &exitError{code: 2, err: fmt.Errorf("--journal-sync %q: must be always or interval", g.journalSync)}
	}
	if g.journalKeyFile != "" {
		b, err := os.ReadFile(g.journalKeyFile)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--journal-key-file: %w", err)}
		}
		g.journalKey = strings.TrimRight(string(b), "\r\n")
		if err := store.CheckKey(g.journalKey); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--journal-key-file %s: %w", g.journalKeyFile, err)}
		}
	}
	return nil
}

// journalRequestLimit is the largest request the journal keeps unless --max-body-bytes asks for more.
const journalRequestLimit = 64 << 20

// openJournal opens the task journal (embedded in DATA_DIR, or --nats-url) and returns the
// function that closes it.
func (g *gatewayFlags) openJournal(ctx context.Context, logger *slog.Logger) (*store.JetStream, func(), error) {
	// The journal keeps any request the gateway accepts: the body limit is the gateway's (flag
	// or config file), and the journal's is set well above any sane one, so that it never
	// refuses what the gateway let in (a request it cannot keep is still refused, with 413).
	opts := store.Options{URL: g.natsURL, DataDir: g.dataDir, Replicas: g.journalReplica, Sync: g.journalSync, EncryptionKey: g.journalKey, Logger: logger,
		Limits: store.Limits{MaxRequestBytes: max(journalRequestLimit, 2*g.maxBody)}}
	j, err := store.Open(ctx, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("task journal: %w", err)
	}
	return j, func() {
		if err := j.Close(); err != nil {
			logger.Warn("closing the task journal", "err", err)
		}
	}, nil
}

// joinFleet makes the gateway a member of the fleet of gateways that share the NATS system of
// an external journal (--nats-url): heartbeats, leases, and with --fleet-key-file spilling. It
// returns a nil Fleet for the embedded journal, which no other gateway shares.
func (g *gatewayFlags) joinFleet(ctx context.Context, j *store.JetStream, defaultID func() (string, error), logger *slog.Logger) (*fleet.Fleet, *fleet.Signer, error) {
	if g.natsURL == "" {
		if g.fleetKeyFile != "" || g.fleetURL != "" {
			return nil, nil, &exitError{code: 2, err: errors.New("--fleet-key-file and --fleet-url need --nats-url: gateways form a fleet through a NATS server they share")}
		}
		return nil, nil, nil
	}
	if g.fleetBeat < 100*time.Millisecond {
		return nil, nil, &exitError{code: 2, err: fmt.Errorf("--fleet-heartbeat %s: must be at least 100ms", g.fleetBeat)}
	}
	id := g.gatewayID
	if id == "" {
		var err error
		if id, err = defaultID(); err != nil {
			return nil, nil, err
		}
	}
	var signer *fleet.Signer
	if g.fleetKeyFile != "" {
		b, err := os.ReadFile(g.fleetKeyFile)
		if err != nil {
			return nil, nil, &exitError{code: 2, err: fmt.Errorf("--fleet-key-file: %w", err)}
		}
		if signer, err = fleet.NewSigner([]byte(strings.TrimRight(string(b), "\r\n")), nil); err != nil {
			return nil, nil, &exitError{code: 2, err: fmt.Errorf("--fleet-key-file %s: %w", g.fleetKeyFile, err)}
		}
	}
	url := cmp.Or(g.fleetURL, g.advertiseURL)
	f, err := fleet.New(ctx, fleet.Options{Conn: j.Conn(), ID: id, Site: g.site, URL: strings.TrimSuffix(url, "/"),
		Interval: g.fleetBeat, Logger: logger})
	if err != nil {
		return nil, nil, &exitError{code: 2, err: err}
	}
	return f, signer, nil
}

// options is the gateway's configuration from the shared flags; security is applied on top.
func (g *gatewayFlags) options(src discovery.Source, journal store.Journal, logger *slog.Logger) gateway.Options {
	return gateway.Options{
		Source: src, Journal: journal, AdvertiseURL: g.advertiseURL, MaxBodyBytes: g.maxBody,
		TaskTimeout: g.taskTimeout, DrainTimeout: g.drainTimeout, Logger: logger,
		Metrics: telemetry.NewMetrics(telemetry.Options{Version: Version}),
		Site:    g.site, MaxQueue: g.maxQueue, QueueTimeout: g.queueTimeout, SpillAfter: g.spillAfter,
	}
}

// startDiagnostics turns on tracing (when the OTEL_* environment asks for it) and the profiling
// endpoints (--pprof-listen), and returns the function that stops both.
func (g *gatewayFlags) startDiagnostics(ctx context.Context, logger *slog.Logger) (func(), error) {
	stopTracing, err := setupTracing(ctx, logger)
	if err != nil {
		return nil, err
	}
	stopPprof, err := startPprof(g.pprofListen, logger)
	if err != nil {
		stopTracing()
		return nil, err
	}
	return func() { stopPprof(); stopTracing() }, nil
}

// setupTracing turns on OpenTelemetry tracing when the OTEL_* environment asks for it, and
// returns the function that flushes and stops it.
func setupTracing(ctx context.Context, logger *slog.Logger) (func(), error) {
	shutdown, err := telemetry.SetupTracing(ctx, "agentplane")
	if err != nil {
		return nil, &exitError{code: 2, err: fmt.Errorf("tracing (OTEL_* environment): %w", err)}
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			logger.Warn("flushing traces", "err", err)
		}
	}, nil
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentplane/agentplane/internal/discovery/kubernetes"
	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/telemetry"
)

type kgatewayOptions struct {
	configFile     string
	dataDir        string
	natsURL        string
	journalSync    string
	maxQueue       int
	maxBodySet     bool
	kubeconfig     string
	namespace      string
	site           string
	listen         string
	advertiseURL   string
	drainTimeout   time.Duration
	taskTimeout    time.Duration
	syncTimeout    time.Duration
	maxBody        int64
	logLevel       string
	insecureRemote bool
}

func newGatewayCommand(streams Streams) *cobra.Command {
	o := kgatewayOptions{}
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run the A2A gateway in front of the Agents of a Kubernetes namespace",
		Long: `Run the A2A gateway for the Agents of one Kubernetes namespace. It watches the Agents, their pods
and EndpointSlices and the nodes they run on, and sends each task straight to a ready pod
(http://POD_IP:PORT), balancing by live load and failing over when a replica dies.

It uses the in-cluster service account, else --kubeconfig, $KUBECONFIG or ~/.kube/config. It needs
get/list/watch on agents, pods and endpointslices in the namespace, and on nodes.`,
		Example: `  agentplane gateway --kubeconfig ~/.kube/config --namespace clinic
  agentplane gateway --listen :8080 --insecure-listen-remote   # in a pod`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.maxBodySet = cmd.Flags().Changed("max-body-bytes")
			return runKubeGateway(cmd.Context(), streams, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.configFile, "config", "", "GatewayConfig file: authentication, policies, limits, rate limits, audit (see docs/security.md)")
	f.StringVar(&o.dataDir, "data-dir", "/var/lib/agentplane", "directory for the embedded task journal and the audit log")
	f.StringVar(&o.natsURL, "nats-url", "", "external NATS JetStream server for the task journal (default: one embedded in this process, in DATA_DIR/jetstream)")
	f.StringVar(&o.journalSync, "journal-sync", "interval", `embedded journal: "always" fsyncs every write, "interval" lets the OS flush`)
	f.IntVar(&o.maxQueue, "max-queue", 0, "tasks that may wait per agent for a free replica slot before more are refused with 429 (0: 1000)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster, $KUBECONFIG, ~/.kube/config)")
	f.StringVarP(&o.namespace, "namespace", "n", "", "namespace whose Agents to serve (default: the pod's, else the kubeconfig context's)")
	f.StringVar(&o.site, "site", "", "the gateway's own site (its replicas are preferred), and the site of replicas whose node has no agentplane.io/site label")
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "gateway listen address")
	f.StringVar(&o.advertiseURL, "advertise-url", "", "external base URL of the gateway for agent cards (default: from each request's Host)")
	f.DurationVar(&o.drainTimeout, "drain-timeout", gateway.DefaultDrainTimeout, "on shutdown, how long in-flight tasks may take to finish")
	f.DurationVar(&o.taskTimeout, "task-timeout", gateway.DefaultTaskTimeout, "longest a task may take before the gateway gives up on it")
	f.DurationVar(&o.syncTimeout, "sync-timeout", time.Minute, "how long to wait for the first complete view of the cluster before giving up")
	f.Int64Var(&o.maxBody, "max-body-bytes", gateway.DefaultMaxBodyBytes, "largest request body the gateway accepts")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.BoolVar(&o.insecureRemote, "insecure-listen-remote", false, "allow a non-loopback --listen address although the gateway has no authentication yet")
	return cmd
}

func runKubeGateway(ctx context.Context, streams Streams, o kgatewayOptions) error {
	sec, err := loadSecurity(o.configFile)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if err := checkListen(o.listen, o.insecureRemote || sec.authenticated()); err != nil {
		return &exitError{code: 2, err: err}
	}
	switch o.journalSync {
	case "always", "interval":
	default:
		return &exitError{code: 2, err: fmt.Errorf("--journal-sync %q: must be always or interval", o.journalSync)}
	}
	logger, err := newSlogLogger(streams, o.logLevel)
	if err != nil {
		return err
	}
	cfg, ns, err := kubeClientConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	cfg.UserAgent = "agentplane-gateway/" + Version
	if o.namespace == "" {
		o.namespace = ns
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	src, err := kubernetes.New(cfg, kubernetes.Options{Namespace: o.namespace, DefaultSite: o.site, Logger: logger})
	if err != nil {
		return err
	}
	srcCtx, stopSrc := context.WithCancel(ctx)
	defer stopSrc()
	srcDone := make(chan error, 1)
	go func() { srcDone <- src.Start(srcCtx) }()
	select {
	case <-src.Synced():
	case err := <-srcDone:
		return fmt.Errorf("kubernetes discovery: %w", err)
	case <-time.After(o.syncTimeout):
		return fmt.Errorf("kubernetes discovery: no complete view of namespace %s within %v (is the Agent CRD installed, and may this identity list agents, pods, endpointslices and nodes?)", o.namespace, o.syncTimeout)
	case <-ctx.Done():
		return nil
	}

	journal, err := store.Open(ctx, store.Options{URL: o.natsURL, DataDir: o.dataDir, Sync: o.journalSync, Logger: logger})
	if err != nil {
		return fmt.Errorf("task journal: %w", err)
	}
	defer func() {
		if err := journal.Close(); err != nil {
			logger.Warn("closing the task journal", "err", err)
		}
	}()
	gopts := gateway.Options{
		Source: src, Journal: journal, AdvertiseURL: o.advertiseURL, MaxBodyBytes: o.maxBody,
		TaskTimeout: o.taskTimeout, DrainTimeout: o.drainTimeout, Logger: logger,
		Metrics: telemetry.NewMetrics(telemetry.Options{Version: Version}),
		Site:    o.site, MaxQueue: o.maxQueue,
	}
	closeSecurity, err := sec.apply(&gopts, o.dataDir, logger, o.maxBodySet)
	if err != nil {
		return err
	}
	defer closeSecurity()
	gw, err := gateway.New(gopts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("gateway cannot listen on %s: %w", o.listen, err)
	}
	logger.Info("gateway listening", "addr", ln.Addr().String(), "namespace", o.namespace, "agents", len(src.Snapshot()))
	fmt.Fprintf(streams.Err, "agentplane gateway listening on %s for the agents of namespace %s\n", ln.Addr(), o.namespace)

	// Discovery outlives the gateway's drain, so in-flight tasks can still be failed over.
	gwErr := gw.Start(ctx, ln)
	stopSrc()
	if err := <-srcDone; err != nil && !errors.Is(err, context.Canceled) && gwErr == nil {
		gwErr = fmt.Errorf("kubernetes discovery: %w", err)
	}
	if errors.Is(gwErr, context.Canceled) {
		gwErr = nil
	}
	return gwErr
}

package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentplane/agentplane/internal/discovery/kubernetes"
	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/run"
)

type kgatewayOptions struct {
	gatewayFlags
	kubeconfig  string
	namespace   string
	syncTimeout time.Duration
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
			o.noteChanged(cmd)
			return runKubeGateway(cmd.Context(), streams, o)
		},
	}
	f := cmd.Flags()
	o.bind(f)
	f.StringVar(&o.dataDir, "data-dir", "/var/lib/agentplane", "directory for the embedded task journal and the audit log")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&o.site, "site", "", "the gateway's own site (its replicas are preferred), and the site of replicas whose node has no agentplane.io/site label")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster, $KUBECONFIG, ~/.kube/config)")
	f.StringVarP(&o.namespace, "namespace", "n", "", "namespace whose Agents to serve (default: the pod's, else the kubeconfig context's)")
	f.DurationVar(&o.syncTimeout, "sync-timeout", time.Minute, "how long to wait for the first complete view of the cluster before giving up")
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
	if err := o.checkJournal(); err != nil {
		return err
	}
	level, err := parseLogLevel(o.logLevel)
	if err != nil {
		return err
	}
	logger := newLogger(level, streams.Err, nil)
	stopDiagnostics, err := o.startDiagnostics(ctx, logger)
	if err != nil {
		return err
	}
	defer stopDiagnostics()
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
	// Discovery is added first, so it stops last: in-flight tasks can still be failed over while
	// the gateway drains.
	var g run.Group
	g.Add("kubernetes discovery", src)
	g.Add("gateway", run.Func(func(ctx context.Context) error {
		return serveKubeGateway(ctx, streams, o, sec, src, logger)
	}))
	return g.Start(ctx)
}

// serveKubeGateway waits for the first complete view of the cluster, then opens the journal and
// serves the gateway until ctx ends.
func serveKubeGateway(ctx context.Context, streams Streams, o kgatewayOptions, sec security, src *kubernetes.Source, logger *slog.Logger) error {
	timeout := time.NewTimer(o.syncTimeout)
	defer timeout.Stop()
	select {
	case <-src.Synced():
	case <-timeout.C:
		return fmt.Errorf("kubernetes discovery: no complete view of namespace %s within %v (is the Agent CRD installed, and may this identity list agents, pods, endpointslices and nodes?)", o.namespace, o.syncTimeout)
	case <-ctx.Done():
		return nil
	}

	journal, closeJournal, err := o.openJournal(ctx, logger)
	if err != nil {
		return err
	}
	defer closeJournal()
	fl, signer, err := o.joinFleet(ctx, journal, hostID, logger)
	if err != nil {
		return err
	}
	gopts := o.options(src, journal, logger)
	gopts.Fleet, gopts.FleetSigner = fl, signer
	closeSecurity, err := sec.apply(&gopts, o.dataDir, logger, o.maxBodySet)
	if err != nil {
		return err
	}
	defer closeSecurity()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", o.listen, err)
	}
	gopts.Listener = ln
	gw, err := gateway.New(gopts)
	if err != nil {
		ln.Close()
		return err
	}
	logger.Info("gateway listening", "addr", ln.Addr().String(), "namespace", o.namespace, "agents", len(src.Snapshot()))
	fmt.Fprintf(streams.Err, "agentplane gateway listening on %s for the agents of namespace %s\n", ln.Addr(), o.namespace)
	return gw.Start(ctx)
}

// hostID is the gateway's default fleet id on Kubernetes: its pod's name.
func hostID() (string, error) {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "", fmt.Errorf("gateway id: no host name (%v): set --gateway-id", err)
	}
	return h, nil
}

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
	logger, err := newSlogLogger(streams, o.logLevel)
	if err != nil {
		return err
	}
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

	journal, closeJournal, err := o.openJournal(ctx, logger)
	if err != nil {
		return err
	}
	defer closeJournal()
	gopts := o.options(src, journal, logger)
	closeSecurity, err := sec.apply(&gopts, o.dataDir, logger, o.maxBodySet)
	if err != nil {
		return err
	}
	defer closeSecurity()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("gateway cannot listen on %s: %w", o.listen, err)
	}
	gopts.Listener = ln
	gw, err := gateway.New(gopts)
	if err != nil {
		ln.Close()
		return err
	}
	logger.Info("gateway listening", "addr", ln.Addr().String(), "namespace", o.namespace, "agents", len(src.Snapshot()))
	fmt.Fprintf(streams.Err, "agentplane gateway listening on %s for the agents of namespace %s\n", ln.Addr(), o.namespace)

	// Discovery outlives the gateway's drain, so in-flight tasks can still be failed over.
	gwErr := gw.Start(ctx)
	stopSrc()
	if err := <-srcDone; err != nil && !errors.Is(err, context.Canceled) && gwErr == nil {
		gwErr = fmt.Errorf("kubernetes discovery: %w", err)
	}
	if errors.Is(gwErr, context.Canceled) {
		gwErr = nil
	}
	return gwErr
}

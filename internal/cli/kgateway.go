package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentplane/agentplane/internal/discovery/kubernetes"
	"github.com/agentplane/agentplane/internal/gateway"
)

type kgatewayOptions struct {
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
		RunE: func(cmd *cobra.Command, _ []string) error { return runKubeGateway(cmd.Context(), streams, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster, $KUBECONFIG, ~/.kube/config)")
	f.StringVarP(&o.namespace, "namespace", "n", "", "namespace whose Agents to serve (default: the pod's, else the kubeconfig context's)")
	f.StringVar(&o.site, "site", "", "site of replicas whose node has no agentplane.io/site label")
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
	if err := checkListen(o.listen, o.insecureRemote); err != nil {
		return &exitError{code: 2, err: err}
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

	gw, err := gateway.New(gateway.Options{
		Source: src, AdvertiseURL: o.advertiseURL, MaxBodyBytes: o.maxBody,
		TaskTimeout: o.taskTimeout, DrainTimeout: o.drainTimeout, Logger: logger,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("gateway cannot listen on %s: %w", o.listen, err)
	}
	logger.Info("gateway listening", "addr", ln.Addr().String(), "namespace", o.namespace, "agents", len(src.Snapshot()))
	fmt.Fprintf(streams.Err, "agentplane gateway listening on http://%s for the agents of namespace %s\n", ln.Addr(), o.namespace)

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

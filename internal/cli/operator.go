package cli

import (
	"fmt"
	"os"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/agentplane/agentplane/internal/controller"
	"github.com/agentplane/agentplane/internal/run"
)

type operatorOptions struct {
	kubeconfig        string
	namespaces        []string
	gatewayNamespace  string
	leaderElect       bool
	leaderElectionNS  string
	metricsAddr       string
	metricsSecure     bool
	healthAddr        string
	logLevel          string
	maxConcurrentRecs int
}

func newOperatorCommand(streams Streams) *cobra.Command {
	o := operatorOptions{}
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Run the Kubernetes operator that turns Agents into Deployments, Services and more",
		Long: `Run the agentplane operator: for each Agent it applies a ServiceAccount, a Deployment (stateless)
or StatefulSet (stateful), a Service, a PodDisruptionBudget, a HorizontalPodAutoscaler (when
spec.autoscaling is set) and a NetworkPolicy admitting only the gateway, and keeps the Agent's
status current. Run two or more replicas with --leader-elect; one reconciles at a time.

It uses the in-cluster service account, else --kubeconfig, $KUBECONFIG or ~/.kube/config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runOperator(cmd, streams, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster, $KUBECONFIG, ~/.kube/config)")
	f.StringSliceVar(&o.namespaces, "namespace", nil, "only reconcile Agents in these namespaces (repeatable; default all)")
	f.StringVar(&o.gatewayNamespace, "gateway-namespace", os.Getenv("POD_NAMESPACE"), "namespace of the gateway that agents' NetworkPolicies admit, unless an Agent names one (default $POD_NAMESPACE, else each agent's own)")
	f.BoolVar(&o.leaderElect, "leader-elect", true, "elect a leader among replicas through a Lease, so that one reconciles at a time")
	f.StringVar(&o.leaderElectionNS, "leader-election-namespace", "", "namespace of the leader-election Lease (default: the pod's, else the kubeconfig context's)")
	f.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443", `address of the Prometheus metrics endpoint; "0" turns it off`)
	f.BoolVar(&o.metricsSecure, "metrics-secure", true, "serve metrics over HTTPS, to callers the API server authenticates and authorizes for GET /metrics")
	f.StringVar(&o.healthAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.IntVar(&o.maxConcurrentRecs, "max-concurrent-reconciles", 2, "Agents reconciled in parallel")
	return cmd
}

// kubeClientConfig loads a client config the way kubectl does, falling back to in-cluster, and
// returns it with the namespace of the context (or of the pod).
func kubeClientConfig(path string) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubernetes client config: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil || ns == "" {
		ns = "default"
	}
	return cfg, ns, nil
}

func runOperator(cmd *cobra.Command, streams Streams, o operatorOptions) error {
	level, err := parseLogLevel(o.logLevel)
	if err != nil {
		return err
	}
	logger := newLogger(level, streams.Err, nil)
	lr := logr.FromSlogHandler(logger.Handler())
	ctrl.SetLogger(lr)
	klog.SetLogger(lr)

	cfg, ns, err := kubeClientConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	cfg.UserAgent = "agentplane-operator/" + Version
	if o.leaderElectionNS == "" {
		o.leaderElectionNS = ns
	}
	metrics := metricsserver.Options{BindAddress: o.metricsAddr, SecureServing: o.metricsSecure}
	if o.metricsSecure {
		metrics.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        controller.NewScheme(),
		Cache:                         controller.CacheOptions(o.namespaces...),
		Metrics:                       metrics,
		HealthProbeBindAddress:        o.healthAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "agentplane-operator",
		LeaderElectionNamespace:       o.leaderElectionNS,
		LeaderElectionReleaseOnCancel: true,
		Logger:                        lr,
	})
	if err != nil {
		return fmt.Errorf("operator: %w", err)
	}
	if err := controller.Setup(mgr, controller.Options{GatewayNamespace: o.gatewayNamespace, MaxConcurrentReconciles: o.maxConcurrentRecs}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	logger.Info("operator starting", "version", Version, "host", cfg.Host, "leaderElect", o.leaderElect,
		"leaderElectionNamespace", o.leaderElectionNS, "namespaces", o.namespaces, "gatewayNamespace", o.gatewayNamespace)
	var g run.Group
	g.Add("operator", mgr)
	return g.Start(cmd.Context())
}

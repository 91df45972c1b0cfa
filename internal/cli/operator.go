package cli

import (
	"fmt"
	"os"
	"strings"
	"time"

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
	"github.com/agentplane/agentplane/internal/controller/demand"
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

	autoscaleInterval  time.Duration
	gatewayURLs        []string
	gatewayTokenFile   string
	gatewayServiceNS   string
	gatewayAgentsNS    string
	gatewayPollTimeout time.Duration
}

func newOperatorCommand(streams Streams) *cobra.Command {
	o := operatorOptions{}
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Run the Kubernetes operator that turns Agents into Deployments, Services and more",
		Long: `Run the agentplane operator: for each Agent it applies a ServiceAccount, a Deployment (stateless)
or StatefulSet (stateful), a Service, a PodDisruptionBudget, a HorizontalPodAutoscaler (when
spec.autoscaling scales on CPU) and a NetworkPolicy admitting only the gateway, and keeps the
Agent's status current. Run two or more replicas with --leader-elect; one reconciles at a time.

Agents whose spec.autoscaling scales on task load (the default) are scaled by the operator
itself: every --autoscale-interval it asks each gateway (GET /api/v1/agents) for the tasks in
flight and queued per agent, and sets the workload's replicas from their sum. Gateways are the
ready endpoints of the gateway Service (label app.kubernetes.io/name=agentplane-gateway) in
--gateway-service-namespace, or the --gateway-url list.

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
	f.DurationVar(&o.autoscaleInterval, "autoscale-interval", 2*time.Second, "how often the task-based autoscaler asks the gateways for demand")
	f.StringArrayVar(&o.gatewayURLs, "gateway-url", nil, "base URL of a gateway to ask for demand, instead of the gateway Service's endpoints (repeatable)")
	f.StringVar(&o.gatewayTokenFile, "gateway-token-file", "", "file holding a bearer token for the gateways' admin API, when their authentication is on")
	f.StringVar(&o.gatewayServiceNS, "gateway-service-namespace", os.Getenv("POD_NAMESPACE"), "namespace of the gateway Service whose endpoints are asked for demand (default $POD_NAMESPACE, else the kubeconfig context's)")
	f.StringVar(&o.gatewayAgentsNS, "gateway-agents-namespace", "", "namespace whose Agents the gateways serve (default --gateway-service-namespace)")
	f.DurationVar(&o.gatewayPollTimeout, "gateway-poll-timeout", time.Second, "how long one gateway may take to answer a poll")
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
	if o.autoscaleInterval <= 0 || o.gatewayPollTimeout <= 0 {
		return &exitError{code: 2, err: fmt.Errorf("--autoscale-interval and --gateway-poll-timeout must be positive")}
	}
	var token string
	if o.gatewayTokenFile != "" {
		b, err := os.ReadFile(o.gatewayTokenFile)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--gateway-token-file: %w", err)}
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return &exitError{code: 2, err: fmt.Errorf("--gateway-token-file %s is empty", o.gatewayTokenFile)}
		}
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
	if o.gatewayServiceNS == "" {
		o.gatewayServiceNS = ns
	}
	if o.gatewayAgentsNS == "" {
		o.gatewayAgentsNS = o.gatewayServiceNS
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        controller.NewScheme(),
		Cache:                         controller.CacheOptions(o.gatewayServiceNS, o.namespaces...),
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
	var gateways demand.Source = &demand.EndpointSlices{Reader: mgr.GetClient(), Namespace: o.gatewayServiceNS, Serves: o.gatewayAgentsNS}
	if len(o.gatewayURLs) > 0 {
		gateways = demand.Static(o.gatewayAgentsNS, o.gatewayURLs...)
	}
	if err := controller.SetupAutoscaler(mgr, controller.AutoscalerOptions{
		Gateways: gateways, Interval: o.autoscaleInterval, Token: token, Timeout: o.gatewayPollTimeout,
	}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	logger.Info("operator starting", "version", Version, "host", cfg.Host, "leaderElect", o.leaderElect,
		"leaderElectionNamespace", o.leaderElectionNS, "namespaces", o.namespaces, "gatewayNamespace", o.gatewayNamespace,
		"autoscaleInterval", o.autoscaleInterval, "gatewayServiceNamespace", o.gatewayServiceNS, "gatewayAgentsNamespace", o.gatewayAgentsNS,
		"gatewayURLs", len(o.gatewayURLs), "gatewayToken", token != "")
	var g run.Group
	g.Add("operator", mgr)
	return g.Start(cmd.Context())
}

// Package kubernetes is the gateway's discovery.Source on Kubernetes: it watches the Agents of one
// namespace, their pods and EndpointSlices, and the nodes the pods run on, and turns them into
// the agents and replicas the gateway routes to.
//
// A replica's URL is its pod's IP and port, so the gateway balances tasks over pods itself rather
// than through the Service's virtual IP. Ready comes from the EndpointSlice (which is what the
// readiness probe decides), state and restarts from the pod, zone and site from the node's
// labels. It reads through informer caches and never writes.
package kubernetes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/discovery"
)

// Options configure a Source.
type Options struct {
	// Namespace whose Agents are served. Required: agent names are the gateway's routes, and
	// they are unique only within a namespace.
	Namespace string
	// DefaultSite is the site of replicas whose node has no agentplane.io/site label.
	DefaultSite string
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Source is a discovery.Source fed by informers. Start it, then read Snapshot.
type Source struct {
	opts    Options
	cache   cache.Cache
	log     *slog.Logger
	snap    atomic.Pointer[[]discovery.Agent]
	dirty   chan struct{}
	synced  chan struct{}
	mu      sync.Mutex
	changed chan struct{}
}

var _ discovery.Source = (*Source)(nil)

// New returns a Source reading the cluster that cfg points at. It does not contact the API server
// until Start.
func New(cfg *rest.Config, opts Options) (*Source, error) {
	if opts.Namespace == "" {
		return nil, errors.New("kubernetes discovery: Options.Namespace is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	ofAgents, err := labels.NewRequirement(v1alpha1.LabelAgent, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	ours := cache.ByObject{Label: labels.NewSelector().Add(*ofAgents)}
	c, err := cache.New(cfg, cache.Options{
		Scheme:            scheme,
		Mapper:            restMapper(),
		DefaultNamespaces: map[string]cache.Config{opts.Namespace: {}},
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:                ours,
			&discoveryv1.EndpointSlice{}: ours,
		},
		// Only what Snapshot reads: a pod's status and a node's labels, not managed fields.
		DefaultTransform: cache.TransformStripManagedFields(),
	})
	if err != nil {
		return nil, fmt.Errorf("kubernetes discovery: %w", err)
	}
	s := &Source{
		opts:    opts,
		cache:   c,
		log:     opts.Logger,
		dirty:   make(chan struct{}, 1),
		synced:  make(chan struct{}),
		changed: make(chan struct{}),
	}
	empty := []discovery.Agent{}
	s.snap.Store(&empty)
	return s, nil
}

// restMapper knows the four kinds discovery watches, so that neither New nor Start needs the API
// server to tell whether they are namespaced. The informers then start whether or not the API
// server answers yet (it may start after the gateway, or restart with it), and keep trying until
// it does; the caller bounds the wait for the first sync (--sync-timeout).
func restMapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper(nil)
	for _, k := range []struct {
		gvk   schema.GroupVersionKind
		scope meta.RESTScope
	}{
		{v1alpha1.GroupVersion.WithKind("Agent"), meta.RESTScopeNamespace},
		{corev1.SchemeGroupVersion.WithKind("Pod"), meta.RESTScopeNamespace},
		{discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice"), meta.RESTScopeNamespace},
		{corev1.SchemeGroupVersion.WithKind("Node"), meta.RESTScopeRoot},
	} {
		m.Add(k.gvk, k.scope)
		// As client-go's discovery mapper does: the list kind, for the cache's scope checks.
		m.Add(k.gvk.GroupVersion().WithKind(k.gvk.Kind+"List"), k.scope)
	}
	return m
}

// nodeMeta is how nodes are watched: metadata only, since only their labels matter.
func nodeMeta() *metav1.PartialObjectMetadata {
	n := &metav1.PartialObjectMetadata{}
	n.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
	return n
}

// Start runs the informers and keeps the snapshot current until ctx ends.
func (s *Source) Start(ctx context.Context) error {
	h := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.markDirty() },
		UpdateFunc: func(any, any) { s.markDirty() },
		DeleteFunc: func(any) { s.markDirty() },
	}
	for _, o := range []client.Object{&v1alpha1.Agent{}, &corev1.Pod{}, &discoveryv1.EndpointSlice{}, nodeMeta()} {
		inf, err := s.cache.GetInformer(ctx, o)
		if err != nil {
			return fmt.Errorf("kubernetes discovery: informer for %T: %w", o, err)
		}
		if _, err := inf.AddEventHandler(h); err != nil {
			return fmt.Errorf("kubernetes discovery: %w", err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- s.cache.Start(ctx) }()
	if !s.cache.WaitForCacheSync(ctx) {
		if err := ctx.Err(); err != nil {
			return <-errc
		}
		return errors.New("kubernetes discovery: caches did not sync")
	}
	s.rebuild(ctx)
	close(s.synced)
	for {
		select {
		case <-ctx.Done():
			return <-errc
		case err := <-errc:
			return err
		case <-s.dirty:
			s.rebuild(ctx)
		}
	}
}

// Synced is closed once the caches have synced and the first snapshot is in place.
func (s *Source) Synced() <-chan struct{} { return s.synced }

// Snapshot implements discovery.Source.
func (s *Source) Snapshot() []discovery.Agent { return *s.snap.Load() }

// Changed implements discovery.Source.
func (s *Source) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *Source) markDirty() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

func (s *Source) rebuild(ctx context.Context) {
	agents, err := s.build(ctx)
	if err != nil {
		s.log.WarnContext(ctx, "kubernetes discovery: cannot build snapshot", "err", err)
		return
	}
	if reflect.DeepEqual(agents, *s.snap.Load()) {
		return
	}
	s.snap.Store(&agents)
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// build assembles the snapshot from the caches.
func (s *Source) build(ctx context.Context) ([]discovery.Agent, error) {
	ns := client.InNamespace(s.opts.Namespace)
	var agents v1alpha1.AgentList
	if err := s.cache.List(ctx, &agents, ns); err != nil {
		return nil, err
	}
	var pods corev1.PodList
	if err := s.cache.List(ctx, &pods, ns); err != nil {
		return nil, err
	}
	var eps discoveryv1.EndpointSliceList
	if err := s.cache.List(ctx, &eps, ns); err != nil {
		return nil, err
	}
	podsOf := map[string][]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		podsOf[p.Labels[v1alpha1.LabelAgent]] = append(podsOf[p.Labels[v1alpha1.LabelAgent]], p)
	}
	// Endpoints by pod, from the slices of each agent's Service (named after the agent).
	type sliceEndpoint struct {
		ep   discoveryv1.Endpoint
		port int32
	}
	endpointOf := map[string]sliceEndpoint{} // key: agent/pod
	for i := range eps.Items {
		sl := &eps.Items[i]
		agent := sl.Labels[v1alpha1.LabelAgent]
		if agent == "" || sl.Labels[discoveryv1.LabelServiceName] != agent {
			continue
		}
		if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var port int32
		for _, p := range sl.Ports {
			if p.Port != nil && (port == 0 || p.Name != nil && *p.Name == "a2a") {
				port = *p.Port
			}
		}
		for _, ep := range sl.Endpoints {
			if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" || len(ep.Addresses) == 0 {
				continue
			}
			endpointOf[agent+"/"+ep.TargetRef.Name] = sliceEndpoint{ep: ep, port: port}
		}
	}
	nodeLabels := func(name string) map[string]string {
		if name == "" {
			return nil
		}
		n := nodeMeta()
		if err := s.cache.Get(ctx, types.NamespacedName{Name: name}, n); err != nil {
			return nil
		}
		return n.Labels
	}

	out := make([]discovery.Agent, 0, len(agents.Items))
	for i := range agents.Items {
		a := &agents.Items[i]
		d := discovery.Agent{
			Name:           a.Name,
			Description:    a.Spec.Description,
			State:          string(cmp.Or(a.Spec.State, v1alpha1.Stateless)),
			MaxConcurrency: int(cmp.Or(a.Spec.MaxConcurrency, v1alpha1.DefaultMaxConcurrency)),
			Desired:        desired(a),
		}
		if as := a.Spec.Autoscaling; as.TaskBased() {
			d.Autoscaled = true
			d.MinReplicas = int(ptr.Deref(as.MinReplicas, 1))
			d.MaxReplicas = int(as.MaxReplicas)
			if st := a.Status.Autoscaling; st != nil {
				d.ScaleReason = st.Reason
				if st.LastScaleTime != nil {
					d.ScaledAt = st.LastScaleTime.Time
				}
			}
		}
		if a.Spec.TaskTimeout != nil {
			d.TaskTimeout = a.Spec.TaskTimeout.Duration
		}
		if pl := a.Spec.Placement; pl != nil {
			d.AllowedSites = slices.Clone(pl.AllowedSites)
		}
		ps := podsOf[a.Name]
		sortPods(ps)
		d.Endpoints = make([]discovery.Endpoint, 0, len(ps))
		for idx, p := range ps {
			se, inSlice := endpointOf[a.Name+"/"+p.Name]
			e := endpoint(a, p, idx)
			if inSlice {
				port := se.port
				if port == 0 {
					port = cmp.Or(a.Spec.Port, v1alpha1.DefaultPort)
				}
				e.URL = "http://" + net.JoinHostPort(se.ep.Addresses[0], strconv.Itoa(int(port)))
				// A nil condition means ready (EndpointSlice API); a terminating pod takes no new tasks.
				e.Ready = (se.ep.Conditions.Ready == nil || *se.ep.Conditions.Ready) &&
					(se.ep.Conditions.Terminating == nil || !*se.ep.Conditions.Terminating) &&
					p.DeletionTimestamp == nil
				if se.ep.Zone != nil {
					e.Zone = *se.ep.Zone
				}
			}
			nl := nodeLabels(p.Spec.NodeName)
			if z := nl[corev1.LabelTopologyZone]; z != "" {
				e.Zone = z
			}
			e.Site = cmp.Or(nl[v1alpha1.LabelSite], s.opts.DefaultSite)
			d.Endpoints = append(d.Endpoints, e)
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(x, y discovery.Agent) int { return cmp.Compare(x.Name, y.Name) })
	return out, nil
}

// desired is how many replicas the agent should have: spec.replicas, or, under autoscaling, what
// the autoscaler last asked for (within its bounds): the task-based autoscaler's decision in
// status.autoscaling (0 when scaled to zero), or the replicas a CPU autoscaler left.
func desired(a *v1alpha1.Agent) int {
	as := a.Spec.Autoscaling
	if as == nil {
		return a.DesiredReplicas()
	}
	lo := ptr.Deref(as.MinReplicas, 1)
	clamp := func(n int32) int { return int(min(max(n, lo), as.MaxReplicas)) }
	if as.TaskBased() {
		if st := a.Status.Autoscaling; st != nil {
			return clamp(st.DesiredReplicas)
		}
		return clamp(int32(a.DesiredReplicas()))
	}
	return clamp(a.Status.Replicas)
}

// sortPods orders replicas by StatefulSet ordinal, else by age then name, so that indexes are
// stable while the set of pods does not change.
func sortPods(ps []*corev1.Pod) {
	ordinal := func(p *corev1.Pod) int {
		if v, ok := p.Labels["apps.kubernetes.io/pod-index"]; ok {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
		return -1
	}
	slices.SortStableFunc(ps, func(x, y *corev1.Pod) int {
		if c := cmp.Compare(ordinal(x), ordinal(y)); c != 0 {
			return c
		}
		if c := x.CreationTimestamp.Compare(y.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Compare(x.Name, y.Name)
	})
}

// endpoint describes pod p as replica idx of a, without its address and readiness, which come
// from the EndpointSlice.
func endpoint(a *v1alpha1.Agent, p *corev1.Pod, idx int) discovery.Endpoint {
	e := discovery.Endpoint{
		Agent: a.Name,
		Name:  p.Name,
		Index: idx,
		State: discovery.StatePending,
		Since: p.CreationTimestamp.Time,
	}
	if v, ok := p.Labels["apps.kubernetes.io/pod-index"]; ok {
		if n, err := strconv.Atoi(v); err == nil {
			e.Index = n
		}
	}
	cs := agentContainer(p)
	if cs != nil {
		e.Restarts = int(cs.RestartCount)
		if t := cs.LastTerminationState.Terminated; t != nil {
			e.LastExit = exitText(t)
		}
	}
	switch {
	case p.DeletionTimestamp != nil:
		e.State, e.Since = discovery.StateTerminating, p.DeletionTimestamp.Time
	case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
		e.State = discovery.StateStopped
		if cs != nil && cs.State.Terminated != nil {
			e.Since, e.LastExit = cs.State.Terminated.FinishedAt.Time, exitText(cs.State.Terminated)
		}
	case cs == nil:
		// not scheduled or not started yet
	case cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff":
		e.State = discovery.StateCrashLoopBackOff
	case cs.State.Running != nil && (cs.Started == nil || *cs.Started):
		e.State, e.Since = discovery.StateRunning, cs.State.Running.StartedAt.Time
	case cs.State.Running != nil:
		e.State, e.Since = discovery.StateStarting, cs.State.Running.StartedAt.Time
	}
	if e.State == discovery.StateRunning {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.LastTransitionTime.After(e.Since) {
				e.Since = c.LastTransitionTime.Time
			}
		}
	}
	e.Since = e.Since.Truncate(time.Second)
	return e
}

// agentContainer is the status of the pod's agent container (the one named "agent", else the
// first).
func agentContainer(p *corev1.Pod) *corev1.ContainerStatus {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == "agent" {
			return &p.Status.ContainerStatuses[i]
		}
	}
	if len(p.Status.ContainerStatuses) > 0 {
		return &p.Status.ContainerStatuses[0]
	}
	return nil
}

func exitText(t *corev1.ContainerStateTerminated) string {
	switch {
	case t.Signal != 0:
		return fmt.Sprintf("signal %d (%s)", t.Signal, t.Reason)
	case t.Reason != "":
		return fmt.Sprintf("exit code %d (%s)", t.ExitCode, t.Reason)
	default:
		return fmt.Sprintf("exit code %d", t.ExitCode)
	}
}

package k8scluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// How much of each thing a diagnosis shows: enough to see what went wrong, little enough to read
// in a CI log.
const (
	diagEvents   = 30  // the most recent events of each namespace
	diagLogLines = 40  // the last lines of each log
	diagLineMax  = 400 // characters of one log line
)

// Diagnosis says what to show when a wait on the cluster fails: what a person would look at
// first. Diagnose always adds the nodes (conditions, taints, what is requested of the real node)
// and, with a real node, the kubelet's log.
type Diagnosis struct {
	// Objects are what was waited on: their status and conditions are shown.
	Objects []ObjectRef
	// Namespaces whose pods (phase, conditions, container states), leases and recent events are
	// shown. The objects' namespaces are always included.
	Namespaces []string
	// Logs are the tails of the components that act on the objects (operator, gateway).
	Logs []LogSource
}

// ObjectRef is an object as kubectl names it ("agent/intake", "deployment/agentplane-gateway"),
// in Namespace.
type ObjectRef struct {
	Namespace, Ref string
}

// LogSource is a component's log: a file on the host (a component run by the test process), or
// the containers of the pods matching Selector in Namespace.
type LogSource struct {
	Name                string
	File                string
	Namespace, Selector string
}

// Diagnose describes the cluster as d asks, starting with which of its processes still run. It
// never fails: what it cannot read, it says so.
func (c *Cluster) Diagnose(ctx context.Context, d Diagnosis) string {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var b strings.Builder
	b.WriteString("=== diagnosis at " + time.Now().UTC().Format("15:04:05.000") + " ===\n")
	namespaces := append([]string(nil), d.Namespaces...)
	for _, o := range d.Objects {
		c.describeObject(ctx, &b, o)
		if o.Namespace != "" && !slices.Contains(namespaces, o.Namespace) {
			namespaces = append(namespaces, o.Namespace)
		}
	}
	c.describeProcesses(&b)
	c.describeNodes(ctx, &b)
	for _, ns := range namespaces {
		c.describePods(ctx, &b, ns)
		c.describeLeases(ctx, &b, ns)
		c.describeEvents(ctx, &b, ns)
	}
	for _, l := range d.Logs {
		c.describeLog(ctx, &b, l)
	}
	if c.kubelet != nil {
		fmt.Fprintf(&b, "--- kubelet log (%s), last %d lines:\n%s", c.kubelet.log, diagLogLines, tailLines(c.kubelet.log, diagLogLines))
	}
	b.WriteString("=== end of diagnosis ===")
	return b.String()
}

// describeObject shows an object's generation and status, conditions included; a reference to a
// kind ("agents") shows every object of the kind in the namespace.
func (c *Cluster) describeObject(ctx context.Context, b *strings.Builder, o ObjectRef) {
	args := []string{"get", o.Ref, "-o", "json"}
	where := ""
	if o.Namespace != "" {
		args = append(args, "-n", o.Namespace)
		where = " in " + o.Namespace
	}
	out, err := c.Kubectl(ctx, nil, args...)
	if err != nil {
		fmt.Fprintf(b, "--- %s%s: cannot read it: %v\n", o.Ref, where, firstLine(err.Error()))
		return
	}
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	items := []json.RawMessage{json.RawMessage(out)}
	if json.Unmarshal([]byte(out), &list) == nil && list.Items != nil {
		items = list.Items
		if len(items) == 0 {
			fmt.Fprintf(b, "--- %s%s: none\n", o.Ref, where)
		}
	}
	for _, raw := range items {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name              string  `json:"name"`
				Generation        int64   `json:"generation"`
				DeletionTimestamp *string `json:"deletionTimestamp"`
			} `json:"metadata"`
			Status json.RawMessage `json:"status"`
		}
		if err := json.Unmarshal(raw, &obj); err != nil {
			fmt.Fprintf(b, "--- %s%s: not JSON: %v\n", o.Ref, where, err)
			return
		}
		fmt.Fprintf(b, "--- %s/%s%s, generation %d", strings.ToLower(obj.Kind), obj.Metadata.Name, where, obj.Metadata.Generation)
		if obj.Metadata.DeletionTimestamp != nil {
			fmt.Fprintf(b, ", being deleted since %s", *obj.Metadata.DeletionTimestamp)
		}
		b.WriteString(":\n")
		if len(obj.Status) == 0 {
			b.WriteString("  no status\n")
			continue
		}
		st, err := yaml.JSONToYAML(obj.Status)
		if err != nil {
			st = obj.Status
		}
		b.WriteString(indent(string(st), "  "))
	}
}

// describeProcesses says which of the cluster's processes still run, with the end of the log of
// any that exited: a control plane that lost its scheduler or controller manager schedules or
// reconciles nothing, and the API server says nothing about it.
func (c *Cluster) describeProcesses(b *strings.Builder) {
	var running []string
	for _, p := range c.procs {
		select {
		case <-p.done:
			fmt.Fprintf(b, "--- %s EXITED (%v); its log (%s) ends:\n%s", p.name, p.err, p.log, tailLines(p.log, diagLogLines))
		default:
			running = append(running, p.name)
		}
	}
	fmt.Fprintf(b, "--- processes running: %s\n", strings.Join(running, ", "))
}

// describeNodes shows each node's readiness, pressure, taints and, for the real node, what its
// pods request of what it can give.
func (c *Cluster) describeNodes(ctx context.Context, b *strings.Builder) {
	var nodes corev1.NodeList
	if err := c.Client.List(ctx, &nodes); err != nil {
		fmt.Fprintf(b, "--- nodes: cannot list: %v\n", err)
		return
	}
	fmt.Fprintf(b, "--- nodes (%d):\n", len(nodes.Items))
	for _, n := range nodes.Items {
		var conds []string
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				conds = append(conds, fmt.Sprintf("Ready=%s (%s)", cond.Status, cond.Reason))
			} else if cond.Status != corev1.ConditionFalse {
				conds = append(conds, fmt.Sprintf("%s=%s (%s: %s)", cond.Type, cond.Status, cond.Reason, cond.Message))
			}
		}
		var taints []string
		for _, t := range n.Spec.Taints {
			taints = append(taints, t.ToString())
		}
		line := fmt.Sprintf("  %s: %s", n.Name, strings.Join(conds, ", "))
		if n.Spec.Unschedulable {
			line += ", cordoned"
		}
		if len(taints) > 0 {
			line += ", taints " + strings.Join(taints, " ")
		}
		b.WriteString(line + "\n")
		if n.Name == c.NodeName {
			b.WriteString("    " + c.nodeRequests(ctx, &n) + "\n")
			// More networks than pods: some answer for addresses the IPAM hands out again.
			if links, err := bridgeLinks(); err == nil {
				fmt.Fprintf(b, "    pod networks on the bridge %s: %d\n", cniBridge, len(links))
			}
		}
	}
}

// nodeRequests sums what the pods bound to node request, against its allocatable resources.
func (c *Cluster) nodeRequests(ctx context.Context, n *corev1.Node) string {
	var pods corev1.PodList
	if err := c.Client.List(ctx, &pods); err != nil {
		return "pods: " + err.Error()
	}
	cpu, mem := resource.Quantity{}, resource.Quantity{}
	count := 0
	for _, p := range pods.Items {
		if p.Spec.NodeName != n.Name || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		count++
		for _, ctr := range p.Spec.Containers {
			cpu.Add(ctr.Resources.Requests[corev1.ResourceCPU])
			mem.Add(ctr.Resources.Requests[corev1.ResourceMemory])
		}
	}
	a := n.Status.Allocatable
	return fmt.Sprintf("requested by its %d pods: cpu %s of %s, memory %s of %s; pods %d of %s",
		count, cpu.String(), qty(a, corev1.ResourceCPU), mem.String(), qty(a, corev1.ResourceMemory), count, qty(a, corev1.ResourcePods))
}

func qty(l corev1.ResourceList, name corev1.ResourceName) string {
	q, ok := l[name]
	if !ok {
		return "?"
	}
	return q.String()
}

// describePods shows every pod of ns: phase, node, the conditions that are not true, and each
// container's state.
func (c *Cluster) describePods(ctx context.Context, b *strings.Builder, ns string) {
	var pods corev1.PodList
	if err := c.Client.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		fmt.Fprintf(b, "--- pods in %s: cannot list: %v\n", ns, err)
		return
	}
	fmt.Fprintf(b, "--- pods in %s (%d):\n", ns, len(pods.Items))
	sort.Slice(pods.Items, func(i, j int) bool { return pods.Items[i].Name < pods.Items[j].Name })
	for _, p := range pods.Items {
		line := fmt.Sprintf("  %s: %s on %q, IP %q, created %s", p.Name, p.Status.Phase, p.Spec.NodeName, p.Status.PodIP,
			p.CreationTimestamp.UTC().Format("15:04:05"))
		if p.DeletionTimestamp != nil {
			line += ", deleting since " + p.DeletionTimestamp.UTC().Format("15:04:05")
		}
		if p.Status.Reason != "" || p.Status.Message != "" {
			line += fmt.Sprintf(", %s: %s", p.Status.Reason, p.Status.Message)
		}
		b.WriteString(line + "\n")
		for _, cond := range p.Status.Conditions {
			if cond.Status != corev1.ConditionTrue {
				fmt.Fprintf(b, "    %s=%s since %s %s %s\n", cond.Type, cond.Status, cond.LastTransitionTime.UTC().Format("15:04:05"), cond.Reason, cond.Message)
			}
		}
		for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			line := fmt.Sprintf("    container %s: %s, ready %v, restarts %d", cs.Name, containerState(cs.State), cs.Ready, cs.RestartCount)
			if cs.LastTerminationState.Terminated != nil {
				line += ", last " + containerState(cs.LastTerminationState)
			}
			b.WriteString(line + "\n")
		}
	}
}

func containerState(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running since " + s.Running.StartedAt.UTC().Format("15:04:05")
	case s.Waiting != nil:
		return fmt.Sprintf("waiting (%s: %s)", s.Waiting.Reason, s.Waiting.Message)
	case s.Terminated != nil:
		t := s.Terminated
		return fmt.Sprintf("terminated at %s, exit code %d (%s: %s)", t.FinishedAt.UTC().Format("15:04:05"), t.ExitCode, t.Reason, firstLine(t.Message))
	}
	return "no state"
}

// describeLeases shows who holds each lease of ns (leader election) and when it last renewed.
func (c *Cluster) describeLeases(ctx context.Context, b *strings.Builder, ns string) {
	var leases coordinationv1.LeaseList
	if err := c.Client.List(ctx, &leases, client.InNamespace(ns)); err != nil || len(leases.Items) == 0 {
		return
	}
	fmt.Fprintf(b, "--- leases in %s:\n", ns)
	for _, l := range leases.Items {
		holder, renewed := "nobody", "never"
		if l.Spec.HolderIdentity != nil {
			holder = *l.Spec.HolderIdentity
		}
		if l.Spec.RenewTime != nil {
			renewed = l.Spec.RenewTime.UTC().Format("15:04:05.000")
		}
		var transitions int32
		if l.Spec.LeaseTransitions != nil {
			transitions = *l.Spec.LeaseTransitions
		}
		fmt.Fprintf(b, "  %s: held by %s, renewed %s, %d transitions\n", l.Name, holder, renewed, transitions)
	}
}

// describeEvents shows the most recent events of ns, oldest first.
func (c *Cluster) describeEvents(ctx context.Context, b *strings.Builder, ns string) {
	var events corev1.EventList
	if err := c.Client.List(ctx, &events, client.InNamespace(ns)); err != nil {
		fmt.Fprintf(b, "--- events in %s: cannot list: %v\n", ns, err)
		return
	}
	at := func(e *corev1.Event) time.Time {
		switch {
		case e.Series != nil:
			return e.Series.LastObservedTime.Time
		case !e.LastTimestamp.IsZero():
			return e.LastTimestamp.Time
		case !e.EventTime.IsZero():
			return e.EventTime.Time
		}
		return e.CreationTimestamp.Time
	}
	sort.SliceStable(events.Items, func(i, j int) bool { return at(&events.Items[i]).Before(at(&events.Items[j])) })
	items := events.Items
	if len(items) > diagEvents {
		items = items[len(items)-diagEvents:]
	}
	fmt.Fprintf(b, "--- events in %s (the last %d of %d):\n", ns, len(items), len(events.Items))
	for i := range items {
		e := &items[i]
		count := e.Count
		if e.Series != nil {
			count = e.Series.Count
		}
		times := ""
		if count > 1 {
			times = fmt.Sprintf(" (×%d)", count)
		}
		fmt.Fprintf(b, "  %s %s %s %s/%s: %s%s\n", at(e).UTC().Format("15:04:05"), e.Type, e.Reason,
			strings.ToLower(e.InvolvedObject.Kind), e.InvolvedObject.Name, truncateLine(strings.TrimSpace(e.Message)), times)
	}
}

// describeLog shows the end of a component's log: its file, or the logs of its pods' containers
// (and of their previous containers, when they restarted).
func (c *Cluster) describeLog(ctx context.Context, b *strings.Builder, l LogSource) {
	if l.File != "" {
		fmt.Fprintf(b, "--- %s log (%s), last %d lines:\n%s", l.Name, l.File, diagLogLines, tailLines(l.File, diagLogLines))
		return
	}
	var pods corev1.PodList
	sel, err := parseSelector(l.Selector)
	if err == nil {
		err = c.Client.List(ctx, &pods, client.InNamespace(l.Namespace), client.MatchingLabels(sel))
	}
	if err != nil {
		fmt.Fprintf(b, "--- %s log: cannot list its pods (%s in %s): %v\n", l.Name, l.Selector, l.Namespace, err)
		return
	}
	if len(pods.Items) == 0 {
		fmt.Fprintf(b, "--- %s log: no pod %s in %s\n", l.Name, l.Selector, l.Namespace)
	}
	for _, p := range pods.Items {
		var restarts int32
		for _, cs := range p.Status.ContainerStatuses {
			restarts += cs.RestartCount
		}
		if restarts > 0 {
			out, err := c.Kubectl(ctx, nil, "logs", "-n", l.Namespace, p.Name, "--all-containers", "--previous", "--tail", "20")
			if err != nil {
				out = firstLine(err.Error()) + "\n"
			}
			fmt.Fprintf(b, "--- %s log, pod %s, previous container (restarts %d), last 20 lines:\n%s", l.Name, p.Name, restarts, clip(out))
		}
		out, err := c.Kubectl(ctx, nil, "logs", "-n", l.Namespace, p.Name, "--all-containers", "--tail", fmt.Sprint(diagLogLines))
		if err != nil {
			out = firstLine(err.Error()) + "\n"
		}
		fmt.Fprintf(b, "--- %s log, pod %s, last %d lines:\n%s", l.Name, p.Name, diagLogLines, clip(out))
	}
}

// parseSelector reads a selector of the form k=v,k2=v2.
func parseSelector(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("selector %q: want key=value[,key=value]", s)
		}
		out[k] = v
	}
	return out, nil
}

// tailLines is the end of a file, n lines, each cut to diagLineMax characters.
func tailLines(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")\n"
	}
	lines := bytes.Split(bytes.TrimRight(raw, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(truncateLine(string(l)) + "\n")
	}
	return b.String()
}

// clip cuts each line of s to diagLineMax characters.
func clip(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(truncateLine(l) + "\n")
	}
	return b.String()
}

func truncateLine(s string) string {
	if len(s) > diagLineMax {
		return s[:diagLineMax] + "…"
	}
	return s
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func indent(s, prefix string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + l + "\n")
	}
	return b.String()
}

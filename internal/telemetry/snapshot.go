package telemetry

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Snapshot is the state behind agentplane's gauges at one instant.
type Snapshot struct {
	Replicas []ReplicaSample
	Queues   []QueueSample
	Agents   []AgentSample
}

// AgentSample is an agent's desired replicas.
type AgentSample struct {
	Agent      string
	Desired    int
	Autoscaled bool
}

// ReplicaSample is one replica as the gateway sees it.
type ReplicaSample struct {
	Agent, Replica, Site, Zone string
	// State is the replica's discovery state (Running, CrashLoopBackOff, ...).
	State string
	// Ready is true when the replica takes tasks; Ejected when the gateway routes around it.
	Ready, Ejected bool
	// InFlight is the number of tasks the gateway has on the replica; Capacity its
	// maxConcurrency.
	InFlight, Capacity int
}

// QueueSample is an agent's admission queue.
type QueueSample struct {
	Agent string
	// Depth is the number of tasks waiting for a slot.
	Depth int
	// OldestWait is how long the oldest waiting task has waited; 0 when none waits.
	OldestWait time.Duration
}

// ReplicaStates are the values of agentplane_replica_state's state label; every replica has one
// series per state, 1 for its current state and 0 for the others, so that the absence of a
// state reads as 0 rather than as no data. A state outside this list is reported as "Unknown".
var ReplicaStates = []string{"Pending", "Starting", "Running", "CrashLoopBackOff", "Terminating", "Stopped", "Unknown"}

// snapshotCollector turns a Snapshot taken at scrape time into gauges.
type snapshotCollector struct {
	fn atomic.Pointer[func() Snapshot]

	inFlight, capacity, ready, ejected, state, depth, oldest, desired *prometheus.Desc
}

func newSnapshotCollector() *snapshotCollector {
	desc := func(name string) *prometheus.Desc {
		mi := lookup(name)
		return prometheus.NewDesc(mi.Name, mi.Help, mi.Labels, nil)
	}
	return &snapshotCollector{
		inFlight: desc("agentplane_replica_in_flight"),
		capacity: desc("agentplane_replica_capacity"),
		ready:    desc("agentplane_replica_ready"),
		ejected:  desc("agentplane_replica_ejected"),
		state:    desc("agentplane_replica_state"),
		depth:    desc("agentplane_queue_depth"),
		oldest:   desc("agentplane_queue_oldest_wait_seconds"),
		desired:  desc("agentplane_agent_desired_replicas"),
	}
}

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.inFlight, c.capacity, c.ready, c.ejected, c.state, c.depth, c.oldest, c.desired} {
		ch <- d
	}
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.fn.Load()
	if f == nil {
		return
	}
	s := (*f)()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	// A duplicate label set would fail the whole scrape; the first sample wins.
	seen := make(map[[2]string]bool, len(s.Replicas))
	for _, r := range s.Replicas {
		k := [2]string{r.Agent, r.Replica}
		if seen[k] {
			continue
		}
		seen[k] = true
		l := []string{r.Agent, r.Replica, r.Site, r.Zone}
		gauge(c.inFlight, float64(r.InFlight), l...)
		gauge(c.capacity, float64(r.Capacity), l...)
		gauge(c.ready, b2f(r.Ready), l...)
		gauge(c.ejected, b2f(r.Ejected), l...)
		st := r.State
		known := false
		for _, s := range ReplicaStates {
			known = known || s == st
		}
		if !known {
			st = "Unknown"
		}
		for _, s := range ReplicaStates {
			gauge(c.state, b2f(s == st), r.Agent, r.Replica, s)
		}
	}
	seenQ := make(map[string]bool, len(s.Queues))
	for _, q := range s.Queues {
		if seenQ[q.Agent] {
			continue
		}
		seenQ[q.Agent] = true
		gauge(c.depth, float64(q.Depth), q.Agent)
		gauge(c.oldest, q.OldestWait.Seconds(), q.Agent)
	}
	seenA := make(map[string]bool, len(s.Agents))
	for _, a := range s.Agents {
		if seenA[a.Agent] {
			continue
		}
		seenA[a.Agent] = true
		gauge(c.desired, float64(a.Desired), a.Agent, strconv.FormatBool(a.Autoscaled))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

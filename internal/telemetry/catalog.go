package telemetry

import "slices"

// MetricInfo describes one metric family that Metrics registers.
type MetricInfo struct {
	// Name is the family's name; a histogram's series add _bucket, _sum and _count.
	Name string
	// Type is counter, gauge or histogram.
	Type string
	// Labels are the family's label names, in order.
	Labels []string
	Help   string
}

// Series are the names a PromQL expression may use for the family: Name, and for a histogram
// also Name_bucket, Name_sum and Name_count.
func (mi MetricInfo) Series() []string {
	if mi.Type != "histogram" {
		return []string{mi.Name}
	}
	return []string{mi.Name, mi.Name + "_bucket", mi.Name + "_sum", mi.Name + "_count"}
}

var (
	agentMethod = []string{"agent", "method"}
	replicaKey  = []string{"agent", "replica", "site", "zone"}
)

// catalog is the single list of agentplane's own metrics: NewMetrics builds its instruments from
// it, and the docs and the Grafana dashboard are checked against it.
var catalog = []MetricInfo{
	{"agentplane_requests_total", "counter", []string{"agent", "method", "outcome"}, "A2A JSON-RPC requests answered by the gateway, by outcome."},
	{"agentplane_request_duration_seconds", "histogram", agentMethod, "Time from receiving an A2A JSON-RPC request to the end of its answer (streams included)."},
	{"agentplane_tasks_started_total", "counter", agentMethod, "Tasks accepted and journaled by the gateway."},
	{"agentplane_tasks_finished_total", "counter", []string{"agent", "method", "outcome"}, "Tasks that reached a final state, by outcome (completed, failed, canceled, rejected, input-required, ...)."},
	{"agentplane_task_duration_seconds", "histogram", []string{"agent", "method", "outcome"}, "Time from a task's acceptance to its final state, queueing and re-dispatches included."},
	{"agentplane_dispatches_total", "counter", []string{"agent", "replica", "result"}, "Attempts to run a task on a replica, by result."},
	{"agentplane_dispatch_duration_seconds", "histogram", []string{"agent", "replica"}, "Duration of one attempt to run a task on a replica."},
	{"agentplane_redispatches_total", "counter", []string{"agent", "reason"}, "Tasks sent to another replica after one failed, by the failure's reason."},
	{"agentplane_replica_ejections_total", "counter", []string{"agent", "replica"}, "Times a replica was ejected from balancing after failures."},
	{"agentplane_replica_restarts_total", "counter", []string{"agent", "replica"}, "Times a replica's process was restarted by the supervisor."},
	{"agentplane_queue_wait_seconds", "histogram", []string{"agent"}, "Time tasks waited in the gateway for a free replica slot."},
	{"agentplane_queue_refusals_total", "counter", []string{"agent", "reason"}, "Tasks refused by admission (queue full, deadline passed), by reason."},
	{"agentplane_push_notifications_total", "counter", []string{"agent", "result"}, "Push notifications POSTed to clients' webhooks, by result: sent, failed (retried later), given_up."},
	{"agentplane_tokens_total", "counter", []string{"agent", "subject", "kind"}, "Model tokens reported by agents, by subject (capped; the rest is \"other\") and kind (input, output)."},
	{"agentplane_replica_in_flight", "gauge", replicaKey, "Tasks the gateway has in flight on a replica."},
	{"agentplane_replica_capacity", "gauge", replicaKey, "Tasks a replica takes at once (maxConcurrency)."},
	{"agentplane_replica_ready", "gauge", replicaKey, "1 when a replica is ready to take tasks."},
	{"agentplane_replica_ejected", "gauge", replicaKey, "1 while the gateway routes around a replica after failures."},
	{"agentplane_replica_state", "gauge", []string{"agent", "replica", "state"}, "1 for a replica's current state, 0 for the others."},
	{"agentplane_queue_depth", "gauge", []string{"agent"}, "Tasks waiting in the gateway for a free replica slot."},
	{"agentplane_queue_oldest_wait_seconds", "gauge", []string{"agent"}, "How long the oldest waiting task has waited."},
	{"agentplane_agent_desired_replicas", "gauge", []string{"agent", "autoscaled"}, "Replicas an agent should have: its spec, or its autoscaler's decision (autoscaled=\"true\")."},
	{"agentplane_build_info", "gauge", []string{"version", "goversion"}, "Always 1; labels name the agentplane version and the Go version it was built with."},
}

// Catalog lists the metric families agentplane registers itself (the Go runtime's go_* and the
// process' process_* families come on top, unless Options.NoRuntimeCollectors).
func Catalog() []MetricInfo {
	out := slices.Clone(catalog)
	for i := range out {
		out[i].Labels = slices.Clone(out[i].Labels)
	}
	return out
}

func lookup(name string) MetricInfo {
	for _, mi := range catalog {
		if mi.Name == name {
			return mi
		}
	}
	panic("telemetry: metric " + name + " is not in the catalog")
}

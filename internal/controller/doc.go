// Package controller is the Kubernetes operator: it turns each Agent into the standard objects
// that run it — a ServiceAccount, a Deployment (stateless) or a StatefulSet with a memory volume
// per replica (stateful), a Service, a PodDisruptionBudget, a HorizontalPodAutoscaler when it
// scales on CPU, and a NetworkPolicy that admits only the gateway — and reports what it sees in
// the Agent's status.
//
// Objects are written with server-side apply under one field owner, so fields that other
// controllers own (a HorizontalPodAutoscaler's replicas, a mutating webhook's additions) are left
// alone. Every object carries a controller owner reference to its Agent, so deleting the Agent
// deletes them through Kubernetes' garbage collector.
//
// Agents that scale on task load are scaled by the operator itself: the Autoscaler asks the
// gateways for each agent's tasks in flight and queued (package demand), decides with package
// autoscale, and keeps the decision in status.autoscaling, from which the reconciler sets the
// workload's replicas.
//
// It does not schedule, restart or route anything: placement and restarts are Kubernetes' job,
// task routing is the gateway's.
package controller

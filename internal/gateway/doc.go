// Package gateway is agentplane's A2A front door. It assembles the HTTP server and the order of
// its stages: limits → JSON-RPC parse → pick a replica → forward (SSE streamed through) →
// remember which replica holds which task. It serves the agents' cards with their URLs rewritten
// to the gateway, health endpoints and the admin API used by `agentplane get`.
//
// Replicas come from a discovery.Source (the supervisor in embedded mode); the choice of replica
// is made by balancer, the passive health view by health. The gateway does not start or probe
// agents itself.
package gateway

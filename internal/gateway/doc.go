// Package gateway is agentplane's A2A front door. *Gateway is the HTTP part: it authenticates,
// bounds, parses, authorizes and audits every call, serves the agents' cards with their URLs
// rewritten to the gateway, health endpoints and the admin API used by `agentplane get`.
// A2A calls come in two bindings, JSON-RPC and HTTP+JSON (rest.go); both are read into one
// JSON-RPC request and served by the same call path (serveCall in rpc.go), and the HTTP+JSON
// binding's writer turns the JSON-RPC answer into its own.
//
// Tasks are owned by the dispatcher (dispatch.go, taskops.go): from acceptance to their end it
// runs each one through a single attempt loop — retry budget → admission slot → pick a replica
// → send → classify the failure → journal → retry or end — and hands what the agent says to the
// task's sink (sink.go): a blocking call, a stream, or no client at all for a queued task. Every
// change to a task is a transition of the state machine in package tasks, written through the
// journal wrapper (journal.go), whose errors are never ignored. The replica view — readiness,
// ejection, load, latency and the admission queue — is the pool (pool.go); sending to replicas
// and typing their failures is package upstream.
//
// Push notifications belong to the gateway, not the agents: push.go answers the A2A push
// config methods from the journal and takes configs out of sends, the journal queues a durable
// notice at each journaled state change of a task with configs, and the pusher
// (pushdeliver.go) POSTs the task to the webhooks with retries, through a client that refuses
// non-public addresses unless allowed (pushnet.go).
//
// Replicas come from a discovery.Source (the supervisor in embedded mode, EndpointSlices on
// Kubernetes); the gateway does not start agents itself.
package gateway

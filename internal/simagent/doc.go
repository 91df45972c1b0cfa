// Package simagent implements a simulated A2A agent for exercising agentplane
// end to end without a real model behind it.
//
// A simulated agent is a real A2A server built on the official A2A Go SDK
// (github.com/a2aproject/a2a-go/v2): it serves an agent card, the A2A v1.0
// JSON-RPC binding on "/" and the A2A v0.3 JSON-RPC dialect on "/v0.3", both
// backed by one SDK request handler and one in-memory task store. Instead of
// calling a model it waits for a concurrency slot (queueing like a model
// server), sleeps a configurable service time, streams a configurable number
// of artifact chunks and reports made-up token usage in task metadata. It can
// be told to fail, hang or crash a fraction of tasks so that gateway retry,
// timeout, cancellation and failover paths can be tested.
//
// With --llm (Config.LLM) the service time comes from a model of an LLM
// server instead: prefill per prompt token, then output tokens whose time
// grows with the number of tasks the replica works on at once (continuous
// batching), a per-replica context cache keyed by the A2A contextId that
// makes a conversation's next turn cheaper on the replica that served it,
// and a speed factor per replica. Token counts come from message metadata
// (promptTokens, maxTokens, contextTokens) or the text's length. The model,
// its defaults and their sources are described in bench/README.md, "Model".
//
// What it is not: it does not look at message content beyond counting words
// (with --llm, characters and token-count metadata), does not echo the
// input, does not persist tasks (the SDK's in-memory store grows for the life
// of the process), does not implement push notifications or authentication,
// and is not meant to be exposed to untrusted networks.
// Request and response bodies are never logged.
//
// Besides the A2A endpoints it serves GET /healthz and GET /simagent/stats
// (counters used by tests to prove that capacity was never exceeded).
package simagent

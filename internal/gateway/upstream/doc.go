// Package upstream carries the gateway's requests to agent replicas: it reads and caches each
// replica's agent card to learn where it takes JSON-RPC for each A2A dialect, posts requests with
// the headers a replica may see, and classifies every failure by type, so that the dispatcher
// decides retry safety with errors.As instead of inspecting error text:
//
//   - *DialError: the request never reached the replica (connection refused, dial timeout, its
//     card unreadable). Retrying elsewhere is always safe and costs the agent nothing.
//   - *StatusError: the replica answered 502, 503 or 504, which another replica may not.
//   - *ResponseError: the request may have reached the replica, and the answer broke (reset
//     mid-body, connection closed, an event stream cut short). Retrying is at-least-once.
//   - ErrHung: the replica did not finish within the dispatch deadline.
//   - ErrDialectUnsupported: the replica's card lists no JSON-RPC interface for the dialect;
//     no retry can help.
//
// It is not a balancer and keeps no per-replica health: that is the dispatcher's.
package upstream

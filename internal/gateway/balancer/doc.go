// Package balancer chooses which replica of an agent gets the next task.
//
// Agent tasks last seconds to minutes and vary tenfold, so the gateway balances by live load, not
// by connection or turn. It tracks the tasks in flight on every replica (Tracker) and their
// recent durations (EWMA), describes each replica as a Candidate, and a Policy chooses: Filters
// drop the replicas that must not or should not serve (residency, readiness, ejection, capacity,
// locality), Scorers rate the rest (load, latency), and a Picker chooses among them — P2C, the
// better of two random replicas, or for stateful agents a KeyPicker that keeps a conversation on
// its replica (bounded-load consistent hashing, package chash).
//
// The interfaces and the core live here; the plugins live in filter, scorer and chash, and
// policies builds the named policies from them in one explicit function.
//
// The package decides; it does not probe replicas, forward requests or queue them (see
// admission for the queue).
package balancer

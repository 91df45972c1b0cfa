// Package balancer chooses which replica of an agent gets the next task.
//
// Agent tasks last seconds to minutes and vary tenfold, so the gateway balances by live load, not
// by connection or turn: it tracks the tasks in flight on every replica (Tracker) and a Picker
// chooses among the eligible replicas. The default picker, P2C, takes the less loaded of two
// random replicas, with load measured relative to the agent's maxConcurrency.
//
// The package decides; it does not probe replicas, forward requests or queue them.
package balancer

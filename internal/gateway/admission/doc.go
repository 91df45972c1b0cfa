// Package admission is the gateway's waiting room. When every eligible replica of an agent is at
// its maxConcurrency, a task waits here — urgent before normal before batch, round robin across
// tenants within a class, in arrival order within a tenant — until a slot frees for it, its
// deadline passes or its client leaves. A full queue or a passed deadline is refused with a
// *RefusedError carrying a Retry-After hint.
//
// The queue does not know replicas: the caller's TryFunc takes a slot (the balancer's policy
// and Tracker.TryAcquire) and the queue decides who may try, and when. It does not parse
// requests, rate-limit subjects or forward anything.
package admission

// Package fleet joins gateways into one fleet over NATS: membership, load and leases for task
// ownership, and the signed tokens gateways use to hand each other tasks.
//
// Each gateway publishes a Heartbeat every Interval — its id, site, the URL peers send it tasks
// at, the journal it writes, and per agent its ready replicas, slots, tasks in flight and
// queued, and recent latency — on the subject "<prefix>.fleet.hb.<id>" and into the KV bucket
// "<prefix>_fleet" of its JetStream domain, whose TTL drops it when it stops. The subject
// crosses clusters and leaf-node links, so a hub sees the load of its clinics; the bucket is
// what an operator reads with `nats kv ls`.
//
// A member that misses Missed heartbeats in a row (3 s by default) is dead: its leases are over.
// A gateway owns a task while it is the task's Owner in the journal and alive; when its owner
// dies, gateways of the same journal learn it on Left and claim the task by compare-and-set
// (package gateway). A gateway that stops says so at once ("<prefix>.fleet.bye.<id>").
//
// Forwarded tasks carry a Signer's token in Header: an HMAC-SHA256 JWT under the fleet's shared
// key naming the origin gateway and the original caller, valid for a minute.
package fleet

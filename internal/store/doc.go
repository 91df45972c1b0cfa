// Package store is the gateway's task journal: the durable record of every accepted task (who
// asked which agent what, which replica has it, what state it is in, and the original request
// so that it can be sent again), and the queue of asynchronous tasks waiting for dispatch.
//
// The Journal interface is what the gateway uses. JetStream implements it with NATS JetStream:
// a server embedded in the process (file storage under the data directory, no port opened,
// nothing to install) or an external JetStream cluster. Memory implements it in memory for the
// gateway's unit tests, and package storetest holds the conformance suite both pass.
//
// It is not a general database: there are no queries beyond Get by id and Pending, no
// secondary indexes, and no transactions across tasks. Task contents (Request, Result) are
// stored as they are and never logged.
//
// # Records
//
// Tasks live in the KV bucket "<prefix>_tasks" as JSON, one key per task, history 1. Every write
// is a compare-and-set on the record's revision (the stream sequence), so two gateways never
// silently overwrite each other: Create expects no record, Update expects the revision it read,
// and a mismatch is ErrConflict. Task ids made of ASCII letters, digits, '-' and '_' are their
// own keys; any other id is stored under "=" plus its base64url encoding. Ids are at most
// MaxIDLen bytes.
//
// The bucket has no TTL, so a task that is not terminal never expires. A terminal record is
// written with a per-message TTL of Options.Retention (default 7 days), after which it
// disappears and its id may be used again. Per-message TTLs need nats-server 2.11 or later.
// Each record also carries its state in a header, so Pending reads headers only for finished
// tasks: about 80 ms per 10,000 records on the embedded server, plus one read per pending task.
//
// # Queue
//
// Asynchronous task ids go to the work-queue stream "<prefix>_async" (subject
// "<prefix>.async") and are read by the durable pull consumer "<prefix>-dispatch", shared by
// every gateway using the same prefix. A delivered id stays with its handler while the handler
// runs (the 30 s ack wait is extended every 10 s); it is removed when the handler returns nil,
// and delivered again after an error (after 1 s, doubling per delivery up to a minute) or when
// the process dies without an answer (after the ack wait). Delivery is at least once: a handler
// must tolerate seeing an id again, which it does by reading the task and updating it with
// compare-and-set. Within one process an id is never handled twice at once.
//
// # Durability: Options.Sync
//
// With SyncInterval (the default) a write is acknowledged once the server has written it to
// the operating system, which flushes it to disk in the background; the embedded server also
// fsyncs every two minutes. An acknowledged task survives a crash or kill -9 of the gateway,
// but a crash of the machine or a power loss can lose what was acknowledged in the last
// interval. With SyncAlways every write is fsynced before it is acknowledged, so nothing
// acknowledged is lost even on power loss; each Create or Update then costs a disk flush
// (about 2.5 ms instead of 0.1 ms for a Create+Update pair on the embedded server, measured on
// a cloud VM; slower disks cost more).
//
// # External cluster
//
// With Options.URL the journal connects to an existing NATS deployment with JetStream instead
// of starting a server, and creates the bucket, stream and consumer there if they are missing
// (the account needs permission to). Options.Replicas (3 is recommended on a cluster) sets how
// many servers hold each write; a write is acknowledged once a majority has it, so it survives
// the loss of a minority of servers. Options.Sync does not apply: the servers' own
// jetstream.sync_interval setting decides when they fsync. Several gateways may share one
// prefix: they then share the records and the queue, and compare-and-set keeps their writes
// apart. The connection reconnects forever; calls made while it is down fail after their
// deadline (the caller's ctx, at most 10 s per call).
package store

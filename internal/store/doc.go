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
// # Large tasks
//
// A task holds its request (the gateway accepts 8 MiB by default) and its answer (the gateway
// relays up to 64 MiB), while one NATS message holds at most the server's max_payload: 1 MiB
// by default on an external server, 8 MiB on the embedded one. A record that does not fit one
// message (less 4 KiB for headers, and at most 1 MiB) keeps its other fields in the bucket and
// moves Request and Result, larger first, to blobs: raw 1 MiB chunks on the subjects
// "$KV.<bucket>.<key>.<blob id>.<n>" of the bucket's own stream, written before the record
// that names them with their size and SHA-256, both checked on read. So blobs have the
// bucket's replicas, encryption at rest and TTLs, and any task within Limits is stored on any
// server whatever its max_payload (the connection learns it from the server). A task over
// Limits (Options.Limits: 8 MiB request, 64 MiB answer, 512 KiB for the other fields) is
// refused with ErrTooLarge before anything is written.
//
// Measured on the embedded server (2 shared cores, under load; BenchmarkTaskSize), a 7 MiB
// request takes ~70 ms to Create and a 7 MiB answer ~60 ms to Get; one whole 19 MiB message
// (max_payload raised to 64 MiB) took ~150 ms and ~500 ms. Records under 1 MiB are stored
// whole as before (~60 µs for 1 KiB).
//
// Blobs never outlive their use: Update keeps an unchanged request's blob while the task is
// not terminal; once a record is stored, the blobs of its key it does not name and that are
// older than it are purged; a failed write purges its own; a terminal task's blobs carry its
// retention TTL (plus five minutes), so they expire with it; and Open removes blobs no record
// names once they are five minutes old, which is what a crash mid-write leaves.
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
// runs (the 10 s ack wait is extended every 3 s); it is removed when the handler returns nil,
// and delivered again after an error (after 1 s, doubling per delivery up to 10 s) or when
// the process dies without an answer (after the ack wait). Delivery is at least once: a handler
// must tolerate seeing an id again, which it does by reading the task and updating it with
// compare-and-set. Within one process an id is never handled twice at once.
//
// # Push notifications
//
// Notify queues a push notification for a task in the work-queue stream "<prefix>_notify"
// (subject "<prefix>.notify"), read by the durable pull consumer "<prefix>-notify" with the
// task queue's ack wait and at-least-once delivery, so a notification survives a crash or
// kill -9 of the gateway. A message holds the task id and, in a header, the revision it was
// queued for; the handler reads the task when it runs. A handler asks for its next delivery
// with a *RetryError (the gateway's own backoff); it alone decides when to give up. The task's
// push configs (Task.Push) are stored in its record, encrypted at rest like the rest of it.
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
// deadline (the caller's ctx, at most 10 s per request to the server and a minute per Create,
// Get or Update).
package store

// Package audit is the gateway's audit trail: one record per call — who, which tenant, which
// agent and method, which task, the outcome, the HTTP status, the latency, which replica and site
// — in append-only, hash-chained JSON Lines. It never records message content.
//
// Each record carries the hash of the one before it (prevHash) and its own hash, SHA-256 over its
// canonical JSON without the hash field, or HMAC-SHA-256 with a secret key. Files rotate at a
// size; every file starts with a header record naming the file before it and carrying the last
// hash of that file, so that the chain runs across files. Verify re-reads files and names the
// first record (file and line) that was edited, deleted, inserted or reordered, and any file
// missing from the middle of the chain.
//
// What the chain does and does not prove is in docs/security.md: without a key it catches
// accidental and naive edits but not someone who rewrites every hash after their edit; with a key
// kept away from the log, it catches that too. Cutting whole records off the end of the newest
// file, or deleting the newest files, is only visible against an outside copy of the head: the
// Writer's signed checkpoints (CheckpointOptions, kept in a second file elsewhere, checked by
// VerifyCheckpoints) or Writer.Head published by other means. Records written after the newest
// checkpoint remain uncovered.
//
// This package is not a debug log: it is kept apart from slog output, and callers must not put
// request or response bodies, tokens or patient identifiers into a Record.
package audit

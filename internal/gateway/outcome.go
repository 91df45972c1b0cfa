package gateway

import (
	"context"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/telemetry"
)

// outcome is how one call to the gateway ended: the label of agentplane_requests_total and the
// outcome of its audit record. The set is closed: every handler returns one of these.
type outcome string

// Outcomes of a call.
const (
	outcomeOK              outcome = "ok"              // answered by a replica
	outcomeJournal         outcome = "ok-journal"      // answered from the journal
	outcomeQueued          outcome = "queued"          // accepted to run later
	outcomeUnauthenticated outcome = "unauthenticated" // 401
	outcomeForbidden       outcome = "forbidden"       // 403
	outcomeRateLimited     outcome = "rate-limited"    // 429 by the caller's rate limit
	outcomeBadRequest      outcome = "bad-request"     // unreadable body, not JSON-RPC, wrong Content-Type
	outcomeTooLarge        outcome = "too-large"       // 413: larger than the body limit or the journal's
	outcomeInvalid         outcome = "invalid"         // JSON-RPC params the gateway refuses
	outcomeAgentNotFound   outcome = "agent-not-found" // no such agent
	outcomeTaskNotFound    outcome = "task-not-found"  // no such task for this caller
	outcomeNotCancelable   outcome = "not-cancelable"  // the task has already ended
	outcomeTaskLost        outcome = "task-lost"       // its replica (and the task's state) is gone
	outcomeRefused         outcome = "refused"         // at capacity or residency, before dispatch
	outcomeUnsupported     outcome = "unsupported"     // the agent does not speak the dialect
	outcomeUnavailable     outcome = "unavailable"     // no replica answered
	outcomeFailed          outcome = "failed"          // the task ended failed
	outcomeJournalError    outcome = "journal-error"   // the journal could not be written
	outcomeStopped         outcome = "gateway-stopped" // the gateway stopped first; the task stays journaled
	outcomeRequeue         outcome = "requeued"        // a queued task waits for a ready replica
)

// succeeded reports whether the call did what it was asked.
func (o outcome) succeeded() bool {
	return o == outcomeOK || o == outcomeJournal || o == outcomeQueued
}

// startQueuedTask continues the trace of the request that queued t.
func startQueuedTask(ctx context.Context, t *store.Task) (context.Context, func()) {
	ctx, span := telemetry.StartTask(telemetry.ContextFromCarrier(ctx, t.Trace), t.Agent, t.Method, t.ID)
	return ctx, func() { telemetry.End(span, nil) }
}

// Package telemetry is how agentplane reports what it does: Prometheus metrics (Metrics, served
// by Metrics.Handler at /metrics), OpenTelemetry traces (SetupTracing and the span helpers
// StartTask, StartQueue, StartDispatch, Inject, Extract) and structured logs (NewLogger, with
// request and trace ids taken from the context; RequestIDMiddleware).
//
// It holds instruments and wiring only: it does not decide outcomes, pick replicas or write the
// audit trail (internal/audit). Label values are the caller's promise of bounded cardinality:
// agent, replica, site, zone, method (a known A2A method name), outcome, result and reason are
// small closed sets; task ids, context ids and message ids never become labels. The one
// client-controlled label, the subject of Metrics.Tokens, is capped (Options.MaxSubjects).
//
// Every method of a nil *Metrics is a no-op, so that code paths and tests without metrics need
// no checks.
package telemetry

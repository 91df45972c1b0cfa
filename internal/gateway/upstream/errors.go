package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// DialError means the request never reached the replica: the connection could not be made, or
// the replica's card (where its endpoint is) could not be read.
type DialError struct{ Err error }

func (e *DialError) Error() string { return "replica unreachable: " + e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// StatusError is an HTTP status from a replica that another replica may not give (502, 503,
// 504).
type StatusError struct{ Code int }

func (e *StatusError) Error() string { return fmt.Sprintf("replica answered HTTP %d", e.Code) }

// ResponseError means the request may have reached the replica and its answer did not arrive
// whole: the connection was reset or closed mid-answer, or its event stream ended early.
type ResponseError struct{ Err error }

func (e *ResponseError) Error() string { return "replica's answer broke off: " + e.Err.Error() }
func (e *ResponseError) Unwrap() error { return e.Err }

// Errors that are not about a connection.
var (
	// ErrHung means a replica did not finish a task within the dispatch deadline.
	ErrHung = errors.New("replica did not finish the task within the task timeout")
	// ErrDialectUnsupported means a replica's card lists no JSON-RPC interface for a dialect.
	ErrDialectUnsupported = errors.New("dialect not supported by the agent")
	// ErrStreamCut means a replica's event stream ended before the task did.
	ErrStreamCut = errors.New("the replica's event stream ended before the task did")
)

// NeverSent reports whether err means the request cannot have reached the agent, so that
// sending it to another replica costs the agent nothing and needs no retry budget.
func NeverSent(err error) bool {
	var d *DialError
	return errors.As(err, &d)
}

// Retryable reports whether another replica may succeed where this one failed: a connection
// failure, a 502/503/504, a broken answer or a hang. An answer the agent gave (even an error),
// a dialect it does not speak and a stopped gateway are not retried.
func Retryable(err error) bool {
	var (
		d *DialError
		s *StatusError
		r *ResponseError
	)
	if errors.Is(err, context.Canceled) {
		return false
	}
	return errors.As(err, &d) || errors.As(err, &s) || errors.As(err, &r) || errors.Is(err, ErrHung)
}

// EjectNow reports whether a replica that failed with err should leave rotation at once (it
// could not be reached or dropped the connection), as opposed to after several such failures
// in a row (a hang or a 5xx: one slow task does not make a replica sick).
func EjectNow(err error) bool {
	var (
		d *DialError
		r *ResponseError
	)
	return errors.As(err, &d) || (errors.As(err, &r) && !errors.Is(err, ErrStreamCut))
}

// Result names how one attempt ended, for metrics labels and re-dispatch reasons.
type Result string

// Results of an attempt.
const (
	ResultOK       Result = "ok"
	ResultHung     Result = "hung"
	ResultRefused  Result = "refused"
	ResultStatus   Result = "upstream_5xx"
	ResultDropped  Result = "dropped"
	ResultCanceled Result = "canceled"
	ResultOther    Result = "error"
)

// ResultOf classifies err.
func ResultOf(err error) Result {
	var (
		d *DialError
		s *StatusError
		r *ResponseError
	)
	switch {
	case err == nil:
		return ResultOK
	case errors.Is(err, ErrHung):
		return ResultHung
	case errors.As(err, &d):
		return ResultRefused
	case errors.As(err, &s):
		return ResultStatus
	case errors.Is(err, context.Canceled):
		return ResultCanceled
	case errors.As(err, &r):
		return ResultDropped
	}
	return ResultOther
}

// classify wraps an error of http.Client.Do: a failure to connect is a DialError, anything
// else may have happened after the request was written.
func classify(err error) error {
	var (
		d  *DialError
		op *net.OpError
	)
	switch {
	case errors.As(err, &d):
		return d
	case errors.As(err, &op) && op.Op == "dial", errors.Is(err, syscall.ECONNREFUSED):
		return &DialError{Err: err}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err // the caller's deadline: it decides whether that was a hang
	}
	return &ResponseError{Err: err}
}

package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/agentplane/agentplane/internal/a2a"
)

// JSON-RPC codes of the gateway's own refusals.
const (
	CodeForbidden   = -32053 // the caller may not call this agent
	CodeRateLimited = -32054 // the caller's rate or token limit
	CodeAtCapacity  = -32055 // every replica busy and the queue full or the wait too long
	CodeResidency   = -32056 // no replica in an allowed site
)

// refusedError is an answer with its own HTTP status: a task the gateway refuses before any
// replica saw it (its queue is full or its wait passed the deadline: retry later; no allowed
// site can serve it; it is too large to journal), or a journal that cannot be written.
type refusedError struct {
	status     int
	retryAfter time.Duration
	err        *a2a.Error
}

func (e *refusedError) Error() string { return e.err.Message }

// rpcError writes a JSON-RPC error with an HTTP status.
func rpcError(w http.ResponseWriter, status int, id json.RawMessage, e *a2a.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if (status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests) && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	_, _ = w.Write(a2a.ErrorResponse(id, e))
}

// rpcErrorFor answers a failed or refused task with the right status and code.
func rpcErrorFor(w http.ResponseWriter, id json.RawMessage, err error) {
	var ref *refusedError
	if errors.As(err, &ref) {
		if ref.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64(max(time.Second, ref.retryAfter+time.Second-1)/time.Second), 10))
		}
		rpcError(w, ref.status, id, ref.err)
		return
	}
	ae := asRPCError(err)
	status := http.StatusOK
	if ae.Code == a2a.CodeAgentUnavailable {
		status = http.StatusServiceUnavailable
	}
	rpcError(w, status, id, ae)
}

// asRPCError is the JSON-RPC error of err.
func asRPCError(err error) *a2a.Error {
	var ref *refusedError
	if errors.As(err, &ref) {
		return ref.err
	}
	var ae *a2a.Error
	if errors.As(err, &ae) {
		return ae
	}
	return a2a.Errorf(a2a.CodeAgentUnavailable, "%v", err)
}

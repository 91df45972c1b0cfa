package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/agentplane/agentplane/internal/a2a"
)

// The A2A v1.0 HTTP+JSON binding at each agent's URL: POST message:send, GET tasks/{id}, ... Each
// call is read into the v1.0 JSON-RPC request that asks the same thing and goes down the JSON-RPC
// call path (authentication, limits, authorization, rate limits, the journal, failover, the
// audit); restWriter turns its JSON-RPC answer into the binding's: the bare result, or a
// google.rpc.Status error with the HTTP status the spec gives the error.

// serveREST is the A2A HTTP+JSON front door.
func (g *Gateway) serveREST(w http.ResponseWriter, r *http.Request) { g.serveCall(w, r, restBinding{}) }

// restBinding is the HTTP+JSON binding.
type restBinding struct{}

func (restBinding) route() string { return "a2a-rest" }

func (restBinding) writer(w http.ResponseWriter) (http.ResponseWriter, func()) {
	rw := &restWriter{w: w}
	return rw, rw.finish
}

// crossOrigin refuses browser requests from other origins that change something. A bodiless
// POST (cancel, subscribe) or a DELETE has no Content-Type for the JSON-RPC binding's check to
// refuse, yet a page on another origin may send one without a preflight.
var crossOrigin = http.NewCrossOriginProtection()

func (restBinding) read(g *Gateway, c *call) (*a2a.Request, outcome) {
	rt, err := a2a.MatchREST(c.r.Method, c.r.PathValue("rest"))
	if err != nil {
		status := http.StatusNotFound
		if re := (*a2a.RESTRouteError)(nil); errors.As(err, &re) {
			status = re.Status()
			if len(re.Allow) > 0 {
				c.w.Header().Set("Allow", strings.Join(re.Allow, ", "))
			}
		}
		rpcError(c.w, status, nil, a2a.Errorf(a2a.CodeMethodNotFound, "%v", err))
		return nil, outcomeBadRequest
	}
	if err := crossOrigin.Check(c.r); err != nil {
		rpcError(c.w, http.StatusForbidden, nil, a2a.Errorf(a2a.CodeInvalidRequest, "%v", err))
		return nil, outcomeForbidden
	}
	// A body, or a route that takes one, needs the JSON-RPC binding's Content-Type.
	if rt.Body == a2a.BodyRequired || c.r.ContentLength != 0 || len(c.r.Header.Values("Content-Type")) > 0 {
		if o := requireJSON(c.w, c.r); o != "" {
			return nil, o
		}
	}
	body, o := g.readBody(c)
	if o != "" {
		return nil, o
	}
	req, perr := rt.Request(c.r.URL.Query(), body, g.opts.MaxJSONDepth)
	if perr != nil {
		rpcError(c.w, http.StatusOK, nil, perr)
		return nil, outcomeBadRequest
	}
	return req, ""
}

// restWriter takes the JSON-RPC answers of the call path and writes HTTP+JSON ones. A JSON
// answer is held until the call ends (finish), then written as its result alone or as an error
// with its HTTP status; an event stream is passed on event by event, each event's data unwrapped
// the same way.
type restWriter struct {
	w      http.ResponseWriter
	status int
	stream bool
	buf    bytes.Buffer // a JSON answer, or the part of a stream's next event written so far
}

func (rw *restWriter) Header() http.Header { return rw.w.Header() }

func (rw *restWriter) WriteHeader(code int) {
	if rw.status != 0 {
		return
	}
	rw.status = code
	if code == http.StatusOK && strings.HasPrefix(rw.w.Header().Get("Content-Type"), "text/event-stream") {
		rw.stream = true
		rw.w.WriteHeader(code)
	}
}

func (rw *restWriter) Write(b []byte) (int, error) {
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	rw.buf.Write(b)
	if !rw.stream {
		return len(b), nil
	}
	for {
		i := bytes.Index(rw.buf.Bytes(), []byte("\n\n"))
		if i < 0 {
			return len(b), nil
		}
		ev := rw.buf.Next(i + 2)
		if _, err := rw.w.Write(restEvent(ev)); err != nil {
			return 0, err
		}
	}
}

// FlushError flushes a stream; a JSON answer is written whole by finish.
func (rw *restWriter) FlushError() error {
	if !rw.stream {
		return nil
	}
	return http.NewResponseController(rw.w).Flush()
}

// finish writes the held JSON answer.
func (rw *restWriter) finish() {
	if rw.stream || rw.status == 0 {
		return
	}
	status, body := restAnswer(rw.status, rw.buf.Bytes())
	h := rw.w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	rw.w.WriteHeader(status)
	_, _ = rw.w.Write(body)
}

// restEvent rewrites one server-sent event: a comment passes as it is; data that is a JSON-RPC
// response becomes its result, or {"error": ...} as the SDK's REST stream reads errors.
func restEvent(ev []byte) []byte {
	var data []byte
	for line := range bytes.SplitSeq(bytes.TrimRight(ev, "\n"), []byte("\n")) {
		d, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		if data != nil {
			data = append(data, '\n')
		}
		data = append(data, bytes.TrimPrefix(d, []byte(" "))...)
	}
	if data == nil {
		return ev
	}
	var resp a2a.Response
	var out []byte
	if json.Unmarshal(data, &resp) != nil || (resp.Result == nil && resp.Error == nil) {
		out = restStreamError(http.StatusBadGateway, a2a.Errorf(a2a.CodeInvalidAgentResponse, "the agent sent an event that is not a JSON-RPC response"))
	} else if resp.Error != nil {
		out = restStreamError(http.StatusOK, resp.Error)
	} else {
		var buf bytes.Buffer
		if json.Compact(&buf, resp.Result) != nil {
			out = restStreamError(http.StatusBadGateway, a2a.Errorf(a2a.CodeInvalidAgentResponse, "the agent sent an event that is not JSON"))
		} else {
			out = buf.Bytes()
		}
	}
	return append(append([]byte("data: "), out...), '\n', '\n')
}

func restStreamError(status int, e *a2a.Error) []byte {
	_, body := restError(status, e)
	return body
}

// restAnswer turns a JSON-RPC answer written with status into an HTTP+JSON one.
func restAnswer(status int, body []byte) (int, []byte) {
	var resp a2a.Response
	if json.Unmarshal(body, &resp) != nil || (resp.Result == nil && resp.Error == nil) {
		return restError(http.StatusBadGateway, a2a.Errorf(a2a.CodeInvalidAgentResponse, "the agent's answer is not a JSON-RPC response"))
	}
	if resp.Error != nil {
		return restError(status, resp.Error)
	}
	if bytes.Equal(bytes.TrimSpace(resp.Result), []byte("null")) {
		return http.StatusOK, []byte("{}\n") // google.protobuf.Empty, as for a deleted push config
	}
	return http.StatusOK, append(resp.Result, '\n')
}

// restDomain is the ErrorInfo domain of the gateway's own reasons; the A2A ones are the spec's.
const restDomain = "agentplane.io"

// restCode is how HTTP+JSON answers one JSON-RPC error code: the HTTP status (when the call
// path did not choose one), the google.rpc.Code name, and the ErrorInfo reason and domain the
// SDK's clients turn back into their typed errors (a2a.ErrTaskNotFound, ...).
type restCode struct {
	status int
	grpc   string
	reason string
	domain string
}

// A2A codes the gateway has no use for but to map them.
const (
	codeServerError               = -32000
	codeExtendedCardNotConfigured = -32007
	codeExtensionSupportRequired  = -32008
	codeVersionNotSupported       = -32009
	codeUnauthenticated           = -31401
	codeUnauthorized              = -31403
)

// restCodes follows a2a-go's internal/rest error mapping for the A2A codes.
var restCodes = map[int]restCode{
	a2a.CodeParseError:              {http.StatusBadRequest, "INVALID_ARGUMENT", "PARSE_ERROR", a2aDomain},
	a2a.CodeInvalidRequest:          {http.StatusBadRequest, "INVALID_ARGUMENT", "INVALID_REQUEST", a2aDomain},
	a2a.CodeMethodNotFound:          {http.StatusNotImplemented, "UNIMPLEMENTED", "METHOD_NOT_FOUND", a2aDomain},
	a2a.CodeInvalidParams:           {http.StatusBadRequest, "INVALID_ARGUMENT", "INVALID_PARAMS", a2aDomain},
	a2a.CodeInternalError:           {http.StatusInternalServerError, "INTERNAL", "INTERNAL_ERROR", a2aDomain},
	codeServerError:                 {http.StatusInternalServerError, "INTERNAL", "SERVER_ERROR", a2aDomain},
	a2a.CodeTaskNotFound:            {http.StatusNotFound, "NOT_FOUND", "TASK_NOT_FOUND", a2aDomain},
	a2a.CodeTaskNotCancelable:       {http.StatusBadRequest, "FAILED_PRECONDITION", "TASK_NOT_CANCELABLE", a2aDomain},
	a2a.CodePushNotSupported:        {http.StatusBadRequest, "FAILED_PRECONDITION", "PUSH_NOTIFICATION_NOT_SUPPORTED", a2aDomain},
	a2a.CodeUnsupportedOp:           {http.StatusBadRequest, "FAILED_PRECONDITION", "UNSUPPORTED_OPERATION", a2aDomain},
	a2a.CodeContentTypeNotSupported: {http.StatusBadRequest, "INVALID_ARGUMENT", "CONTENT_TYPE_NOT_SUPPORTED", a2aDomain},
	a2a.CodeInvalidAgentResponse:    {http.StatusInternalServerError, "INTERNAL", "INVALID_AGENT_RESPONSE", a2aDomain},
	codeExtendedCardNotConfigured:   {http.StatusBadRequest, "FAILED_PRECONDITION", "EXTENDED_AGENT_CARD_NOT_CONFIGURED", a2aDomain},
	codeExtensionSupportRequired:    {http.StatusBadRequest, "FAILED_PRECONDITION", "EXTENSION_SUPPORT_REQUIRED", a2aDomain},
	codeVersionNotSupported:         {http.StatusBadRequest, "FAILED_PRECONDITION", "VERSION_NOT_SUPPORTED", a2aDomain},
	codeUnauthenticated:             {http.StatusUnauthorized, "UNAUTHENTICATED", "UNAUTHENTICATED", a2aDomain},
	codeUnauthorized:                {http.StatusForbidden, "PERMISSION_DENIED", "UNAUTHORIZED", a2aDomain},

	a2a.CodeAgentNotFound:    {http.StatusNotFound, "NOT_FOUND", "AGENT_NOT_FOUND", restDomain},
	a2a.CodeAgentUnavailable: {http.StatusServiceUnavailable, "UNAVAILABLE", "AGENT_UNAVAILABLE", restDomain},
	a2a.CodeRequestTooLarge:  {http.StatusRequestEntityTooLarge, "INVALID_ARGUMENT", "REQUEST_TOO_LARGE", restDomain},
	CodeForbidden:            {http.StatusForbidden, "PERMISSION_DENIED", "UNAUTHORIZED", a2aDomain},
	CodeRateLimited:          {http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "RATE_LIMITED", restDomain},
	CodeAtCapacity:           {http.StatusServiceUnavailable, "UNAVAILABLE", "AT_CAPACITY", restDomain},
	CodeResidency:            {http.StatusServiceUnavailable, "FAILED_PRECONDITION", "RESIDENCY", restDomain},
}

const a2aDomain = "a2a-protocol.org"

// grpcNames names the google.rpc.Code of an HTTP status the call path chose itself.
var grpcNames = map[int]string{
	http.StatusBadRequest:            "INVALID_ARGUMENT",
	http.StatusUnauthorized:          "UNAUTHENTICATED",
	http.StatusForbidden:             "PERMISSION_DENIED",
	http.StatusNotFound:              "NOT_FOUND",
	http.StatusMethodNotAllowed:      "UNIMPLEMENTED",
	http.StatusRequestEntityTooLarge: "INVALID_ARGUMENT",
	http.StatusUnsupportedMediaType:  "INVALID_ARGUMENT",
	http.StatusTooManyRequests:       "RESOURCE_EXHAUSTED",
	http.StatusNotImplemented:        "UNIMPLEMENTED",
	http.StatusBadGateway:            "UNAVAILABLE",
	http.StatusServiceUnavailable:    "UNAVAILABLE",
	http.StatusGatewayTimeout:        "DEADLINE_EXCEEDED",
}

// restError is a JSON-RPC error written with status as an HTTP+JSON error: a google.rpc.Status
// body ({"error": {code, status, message, details}}) with an ErrorInfo detail that names the
// reason. A status other than 200 is the call path's own choice and is kept; 200 (a JSON-RPC
// error answered in a successful exchange) takes the code's status.
func restError(status int, e *a2a.Error) (int, []byte) {
	rc, known := restCodes[e.Code]
	if !known {
		rc = restCodes[a2a.CodeInternalError]
	}
	switch {
	case status == http.StatusOK || status == 0:
		status = rc.status
	case status == http.StatusUnauthorized:
		rc = restCodes[codeUnauthenticated]
	case status != rc.status:
		if name, ok := grpcNames[status]; ok {
			rc.grpc = name
		} else if status >= 500 {
			rc.grpc = "INTERNAL"
		}
	}
	details := []any{}
	// The agent's typed details pass on, but not its ErrorInfo: the gateway states the reason.
	if raw, err := json.Marshal(e.Data); err == nil {
		var items []map[string]any
		if json.Unmarshal(raw, &items) == nil {
			for _, it := range items {
				if t, _ := it["@type"].(string); t != "" && t != errorInfoType {
					details = append(details, it)
				}
			}
		}
	}
	details = append(details, map[string]any{"@type": errorInfoType, "reason": rc.reason, "domain": rc.domain})
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"code": status, "status": rc.grpc, "message": e.Message, "details": details,
	}})
	return status, append(body, '\n')
}

const errorInfoType = "type.googleapis.com/google.rpc.ErrorInfo"

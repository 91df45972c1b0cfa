package a2a

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The A2A v1.0 HTTP+JSON binding names each method by a verb and a path below the agent's URL,
// with the request's fields in the path, the query or the body. RESTRoute and its Request turn
// such a call into the v1.0 JSON-RPC request that asks the same thing, so that both bindings are
// one request to whoever serves them. Paths and query names are those of the spec as the official
// Go SDK (a2a-go v2.4) serves and sends them.

// BodyRule says whether a REST route carries a JSON body.
type BodyRule int

// Body rules.
const (
	BodyNone     BodyRule = iota // no body: everything is in the path and query
	BodyOptional                 // a JSON object whose fields join those of the path
	BodyRequired                 // the request's JSON object itself
)

// RESTRoute is one HTTP+JSON call as its verb and path name it.
type RESTRoute struct {
	Method   string // the v1.0 JSON-RPC method it is
	TaskID   string // from /tasks/{id}...
	ConfigID string // from .../pushNotificationConfigs/{configId}
	Body     BodyRule
}

// RESTRouteError is why a verb and path name no route: none at that path (Allow empty: 404),
// or not with that verb (405, Allow lists the verbs the path takes).
type RESTRouteError struct {
	Path  string
	Allow []string
	Note  string // a hint for a path the gateway knows but does not serve
}

func (e *RESTRouteError) Error() string {
	if len(e.Allow) > 0 {
		return fmt.Sprintf("%s takes %s", e.Path, strings.Join(e.Allow, ", "))
	}
	if e.Note != "" {
		return fmt.Sprintf("no A2A HTTP+JSON route %s: %s", e.Path, e.Note)
	}
	return fmt.Sprintf("no A2A HTTP+JSON route %s: the v1.0 routes are message:send, message:stream, tasks, tasks/{id}, tasks/{id}:cancel, tasks/{id}:subscribe, tasks/{id}/pushNotificationConfigs[/{configId}] and extendedAgentCard", e.Path)
}

// Status is the HTTP status of the refusal.
func (e *RESTRouteError) Status() int {
	if len(e.Allow) > 0 {
		return http.StatusMethodNotAllowed
	}
	return http.StatusNotFound
}

// MatchREST finds the route of an HTTP+JSON call: verb, and path relative to the agent's URL
// ("message:send", "/tasks/abc:cancel").
func MatchREST(verb, path string) (RESTRoute, error) {
	path = strings.TrimPrefix(path, "/")
	notFound := &RESTRouteError{Path: "/" + path}
	allow := func(r RESTRoute, verbs ...string) (RESTRoute, error) {
		for _, v := range verbs {
			if v == verb {
				return r, nil
			}
		}
		return RESTRoute{}, &RESTRouteError{Path: "/" + path, Allow: verbs}
	}
	seg := strings.Split(path, "/")
	switch {
	case path == "message:send":
		return allow(RESTRoute{Method: "SendMessage", Body: BodyRequired}, http.MethodPost)
	case path == "message:stream":
		return allow(RESTRoute{Method: "SendStreamingMessage", Body: BodyRequired}, http.MethodPost)
	case path == "tasks":
		return allow(RESTRoute{Method: "ListTasks"}, http.MethodGet)
	case path == "extendedAgentCard":
		return allow(RESTRoute{Method: "GetExtendedAgentCard"}, http.MethodGet)
	case seg[0] == "v1":
		notFound.Note = "the /v1 paths are the A2A v0.3 HTTP+JSON binding (proto-JSON payloads), which this gateway does not serve; use the v1.0 paths without /v1, or JSON-RPC"
		return RESTRoute{}, notFound
	case seg[0] != "tasks" || len(seg) < 2 || len(seg) > 4:
		return RESTRoute{}, notFound
	}
	id := seg[1]
	switch len(seg) {
	case 2:
		if before, ok := strings.CutSuffix(id, ":cancel"); ok {
			return allow(RESTRoute{Method: "CancelTask", TaskID: before, Body: BodyOptional}, http.MethodPost)
		}
		if before, ok := strings.CutSuffix(id, ":subscribe"); ok {
			r := RESTRoute{Method: "SubscribeToTask", TaskID: before}
			if verb == http.MethodPost {
				r.Body = BodyOptional
			}
			return allow(r, http.MethodGet, http.MethodPost)
		}
		return allow(RESTRoute{Method: "GetTask", TaskID: id}, http.MethodGet)
	case 3:
		if seg[2] != "pushNotificationConfigs" {
			return RESTRoute{}, notFound
		}
		if verb == http.MethodPost {
			return RESTRoute{Method: "CreateTaskPushNotificationConfig", TaskID: id, Body: BodyRequired}, nil
		}
		return allow(RESTRoute{Method: "ListTaskPushNotificationConfigs", TaskID: id}, http.MethodGet, http.MethodPost)
	default:
		if seg[2] != "pushNotificationConfigs" {
			return RESTRoute{}, notFound
		}
		if verb == http.MethodDelete {
			return RESTRoute{Method: "DeleteTaskPushNotificationConfig", TaskID: id, ConfigID: seg[3]}, nil
		}
		return allow(RESTRoute{Method: "GetTaskPushNotificationConfig", TaskID: id, ConfigID: seg[3]}, http.MethodGet, http.MethodDelete)
	}
}

// RESTRequestID is the JSON-RPC id of every request made from an HTTP+JSON call: the binding has
// no ids, and the answer's is dropped.
var RESTRequestID = json.RawMessage(`1`)

// Request builds the v1.0 JSON-RPC request of the call, from its query and its body (empty when
// there is none), and parses it as any JSON-RPC request is parsed, with the same nesting limit.
// The Error carries the code to answer with, as for ParseRequest.
func (rt RESTRoute) Request(query url.Values, body []byte, maxDepth int) (*Request, *Error) {
	if rt.TaskID == "" && rt.needsTask() {
		return nil, Errorf(CodeInvalidRequest, "%s needs a task id in the path", rt.Method)
	}
	if rt.ConfigID == "" && (rt.Method == "GetTaskPushNotificationConfig" || rt.Method == "DeleteTaskPushNotificationConfig") {
		return nil, Errorf(CodeInvalidRequest, "%s needs a push notification config id in the path", rt.Method)
	}
	if !utf8.ValidString(rt.TaskID) || !utf8.ValidString(rt.ConfigID) {
		return nil, Errorf(CodeInvalidRequest, "the ids in the path must be UTF-8")
	}
	params, err := rt.params(query, bytes.TrimSpace(body))
	if err != nil {
		return nil, err
	}
	env, merr := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Method  string          `json:"method"`
		Params  json.RawMessage `json:"params"`
	}{Version, RESTRequestID, rt.Method, params})
	if merr != nil {
		return nil, Errorf(CodeParseError, "invalid JSON: %v", merr)
	}
	return ParseRequestLimit(env, maxDepth)
}

// needsTask reports whether the route names a task in its path.
func (rt RESTRoute) needsTask() bool {
	switch rt.Method {
	case "SendMessage", "SendStreamingMessage", "ListTasks", "GetExtendedAgentCard":
		return false
	}
	return true
}

// params is the request's params object: the body for a send or a new push config, else the
// fields of the path and query (over those of an optional body).
func (rt RESTRoute) params(q url.Values, body []byte) (json.RawMessage, *Error) {
	var fields map[string]json.RawMessage
	switch {
	case len(body) == 0 && rt.Body == BodyRequired:
		return nil, Errorf(CodeInvalidRequest, "%s needs a JSON object body", rt.Method)
	case len(body) > 0 && rt.Body == BodyNone:
		return nil, Errorf(CodeInvalidRequest, "%s takes no body: its fields are in the path and query", rt.Method)
	case len(body) > 0:
		if !json.Valid(body) {
			return nil, Errorf(CodeParseError, "the body is not valid JSON")
		}
		if body[0] != '{' {
			return nil, Errorf(CodeInvalidParams, "the body must be a JSON object")
		}
		if err := checkCanonical(body); err != nil {
			return nil, Errorf(CodeInvalidRequest, "ambiguous JSON: %v; send each key once, spelled as the protocol spells it", err)
		}
		if !rt.needsTask() { // a send: the body is the params as they are
			return body, nil
		}
		if err := json.Unmarshal(body, &fields); err != nil {
			return nil, Errorf(CodeParseError, "invalid JSON: %v", err)
		}
	}
	if fields == nil {
		fields = map[string]json.RawMessage{}
	}
	set := func(k string, v any) {
		b, _ := json.Marshal(v)
		fields[k] = b
	}
	var bad *Error
	integer := func(k string) {
		if v := q.Get(k); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				bad = Errorf(CodeInvalidRequest, "query parameter %s must be an integer, not %q", k, v)
				return
			}
			set(k, n)
		}
	}
	text := func(k string) {
		if v := q.Get(k); v != "" {
			if !utf8.ValidString(v) {
				bad = Errorf(CodeInvalidRequest, "query parameter %s must be UTF-8", k)
				return
			}
			set(k, v)
		}
	}
	switch rt.Method {
	case "GetTask":
		set("id", rt.TaskID)
		integer("historyLength")
	case "CancelTask", "SubscribeToTask":
		set("id", rt.TaskID)
	case "ListTasks":
		text("contextId")
		text("status")
		text("pageToken")
		integer("pageSize")
		integer("historyLength")
		// The spec's name is statusTimestampAfter; the SDK's client sends lastUpdatedAfter.
		for _, k := range []string{"statusTimestampAfter", "lastUpdatedAfter"} {
			if v := q.Get(k); v != "" {
				if _, err := time.Parse(time.RFC3339, v); err != nil {
					return nil, Errorf(CodeInvalidRequest, "query parameter %s must be an RFC 3339 time, not %q", k, v)
				}
				set("statusTimestampAfter", v)
			}
		}
		if v := q.Get("includeArtifacts"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, Errorf(CodeInvalidRequest, "query parameter includeArtifacts must be true or false, not %q", v)
			}
			set("includeArtifacts", b)
		}
	case "CreateTaskPushNotificationConfig":
		set("taskId", rt.TaskID)
	case "ListTaskPushNotificationConfigs":
		set("taskId", rt.TaskID)
		integer("pageSize")
		text("pageToken")
	case "GetTaskPushNotificationConfig", "DeleteTaskPushNotificationConfig":
		set("taskId", rt.TaskID)
		set("id", rt.ConfigID)
	}
	if bad != nil {
		return nil, bad
	}
	out, err := json.Marshal(fields)
	if err != nil {
		return nil, Errorf(CodeInternalError, "%v", err)
	}
	return out, nil
}

package a2a

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Version is the JSON-RPC version every message must carry.
const Version = "2.0"

// MaxDepth bounds the nesting of a request body by default; deeper JSON is refused before it is
// decoded.
const MaxDepth = 64

// Request is a parsed JSON-RPC request. Params is kept raw so that it can be forwarded unchanged.
type Request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`

	// Info describes Method; set by ParseRequest.
	Info Method `json:"-"`
}

// ParseRequest parses and checks one JSON-RPC request of either A2A dialect. On failure the
// returned Error carries the JSON-RPC code to answer with, and the id when it could be read.
func ParseRequest(body []byte) (*Request, *Error) { return ParseRequestLimit(body, MaxDepth) }

// ParseRequestLimit is ParseRequest with another nesting limit (maxDepth <= 0: MaxDepth).
func ParseRequestLimit(body []byte, maxDepth int) (*Request, *Error) {
	if maxDepth <= 0 {
		maxDepth = MaxDepth
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, Errorf(CodeInvalidRequest, "empty body: expected a JSON-RPC 2.0 request object")
	}
	if d := depth(body); d > maxDepth {
		return nil, Errorf(CodeInvalidRequest, "JSON nested %d levels deep; the limit is %d", d, maxDepth)
	}
	if body[0] == '[' {
		return nil, Errorf(CodeInvalidRequest, "JSON-RPC batches are not supported by A2A: send one request per call")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, Errorf(CodeParseError, "invalid JSON: %v", err)
	}
	if err := checkCanonical(body); err != nil {
		return nil, Errorf(CodeInvalidRequest, "ambiguous JSON: %v; send each key once, spelled as the protocol spells it", err)
	}
	if raw == nil {
		return nil, Errorf(CodeInvalidRequest, "expected a JSON-RPC 2.0 request object")
	}
	r := &Request{ID: raw["id"]}
	if !validID(r.ID) {
		return nil, Errorf(CodeInvalidRequest, "id must be a string or a number")
	}
	if err := json.Unmarshal(raw["jsonrpc"], &r.JSONRPC); err != nil || r.JSONRPC != Version {
		return nil, Errorf(CodeInvalidRequest, `"jsonrpc" must be "2.0"`)
	}
	if err := json.Unmarshal(raw["method"], &r.Method); err != nil || r.Method == "" {
		return nil, Errorf(CodeInvalidRequest, `"method" must be a non-empty string`)
	}
	m, ok := LookupMethod(r.Method)
	if !ok {
		return nil, Errorf(CodeMethodNotFound, "method %q is not an A2A method (v1.0 or v0.3)", r.Method)
	}
	r.Info = m
	if p, ok := raw["params"]; ok && !bytes.Equal(p, []byte("null")) {
		if len(p) == 0 || p[0] != '{' {
			return nil, Errorf(CodeInvalidParams, `"params" must be an object`)
		}
		r.Params = p
	}
	if r.Info.TaskScoped() {
		if _, err := r.TaskID(); err != nil {
			return nil, Errorf(CodeInvalidParams, "%v", err)
		}
	}
	if r.Info.NewTask() && r.Params == nil {
		return nil, Errorf(CodeInvalidParams, `"params.message" is required`)
	}
	return r, nil
}

// ErrorID returns the request id to echo in an error response, when the body had a valid one.
func ErrorID(body []byte) json.RawMessage {
	var env struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(body, &env) != nil || !validID(env.ID) {
		return nil
	}
	return env.ID
}

// TaskID returns params.id of a task-scoped request.
func (r *Request) TaskID() (string, error) {
	var p struct {
		ID *string `json:"id"`
	}
	if r.Params == nil || json.Unmarshal(r.Params, &p) != nil || p.ID == nil || *p.ID == "" {
		return "", fmt.Errorf(`%s needs "params.id", the task id as a string`, r.Method)
	}
	return *p.ID, nil
}

// Marshal encodes the request, with Params unchanged. Strings keep their bytes: json.Marshal
// would escape <, > and & in the id and params ("&" becomes "\u0026"), so that an agent would be
// sent an id that is not byte for byte the client's.
func (r *Request) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func validID(id json.RawMessage) bool {
	if len(id) == 0 {
		return false // A2A calls are requests, never notifications
	}
	switch id[0] {
	case '"':
		var s string
		return json.Unmarshal(id, &s) == nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		var n json.Number
		return json.Unmarshal(id, &n) == nil
	}
	return false
}

// depth returns the maximum nesting of arrays and objects in a JSON text, ignoring brackets in
// strings. It does not validate; it only bounds the work json.Unmarshal is asked to do.
func depth(b []byte) int {
	d, max, inStr, esc := 0, 0, false, false
	for _, c := range b {
		switch {
		case esc:
			esc = false
		case inStr:
			if c == '\\' {
				esc = true
			} else if c == '"' {
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			d++
			if d > max {
				max = d
			}
		case c == '}' || c == ']':
			d--
		}
	}
	return max
}

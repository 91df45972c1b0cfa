package a2a

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// State is a task state in the gateway's own words, the same for both dialects.
type State string

// Task states. Terminal ones end the task.
const (
	StateSubmitted     State = "submitted"
	StateWorking       State = "working"
	StateInputRequired State = "input-required"
	StateAuthRequired  State = "auth-required"
	StateCompleted     State = "completed"
	StateFailed        State = "failed"
	StateCanceled      State = "canceled"
	StateRejected      State = "rejected"
	StateUnknown       State = ""
)

// Terminal reports whether the state ends the task.
func (s State) Terminal() bool {
	switch s {
	case StateCompleted, StateFailed, StateCanceled, StateRejected:
		return true
	}
	return false
}

// ParseState reads a state in either dialect ("TASK_STATE_COMPLETED" or "completed").
func ParseState(s string) State {
	s = strings.ToLower(strings.TrimPrefix(s, "TASK_STATE_"))
	s = strings.ReplaceAll(s, "_", "-")
	if s == "cancelled" {
		s = "canceled"
	}
	switch st := State(s); st {
	case StateSubmitted, StateWorking, StateInputRequired, StateAuthRequired, StateCompleted, StateFailed, StateCanceled, StateRejected:
		return st
	}
	return StateUnknown
}

// Wire returns the state as a dialect spells it.
func (s State) Wire(d Dialect) string {
	if d == V03 {
		return string(s)
	}
	return "TASK_STATE_" + strings.ToUpper(strings.ReplaceAll(string(s), "-", "_"))
}

// MessageInfo is what routing needs of a send's params.message.
type MessageInfo struct {
	MessageID string
	ContextID string
	TaskID    string // set when the message continues an existing task
	// Blocking is false when the client asked to return at once (v1.0 returnImmediately: true,
	// v0.3 blocking: false).
	Blocking bool
	// Metadata holds the string values of params.metadata, overlaid by those of
	// params.message.metadata.
	Metadata map[string]string
}

type sendParams struct {
	Message *struct {
		MessageID string            `json:"messageId"`
		ContextID string            `json:"contextId"`
		TaskID    string            `json:"taskId"`
		Metadata  map[string]any    `json:"metadata"`
		Role      *string           `json:"role"`
		Parts     []json.RawMessage `json:"parts"`
	} `json:"message"`
	Metadata      map[string]any `json:"metadata"`
	Configuration *struct {
		ReturnImmediately *bool `json:"returnImmediately"`
		Blocking          *bool `json:"blocking"`
	} `json:"configuration"`
}

// ErrNoMessageID means a send's message has no messageId, which the protocol requires.
var ErrNoMessageID = errors.New(`"params.message.messageId" is required: a unique id of the message, which the agent uses to recognize a message sent again`)

// ErrNoMessage means a send has no params.message object.
var ErrNoMessage = errors.New(`"params.message" is required`)

// ParseMessageInfo reads params of SendMessage / message/send and their streaming variants.
func ParseMessageInfo(params json.RawMessage, d Dialect) (MessageInfo, error) {
	var p sendParams
	if err := json.Unmarshal(params, &p); err != nil {
		return MessageInfo{}, err
	}
	if p.Message == nil {
		return MessageInfo{}, ErrNoMessage
	}
	if p.Message.MessageID == "" {
		// Refused before anything is journaled: the agent would refuse it after a dispatch, and
		// a re-dispatched task is de-duplicated by it.
		return MessageInfo{}, ErrNoMessageID
	}
	if err := checkMessage(p.Message.Role, p.Message.Parts, d); err != nil {
		return MessageInfo{}, err
	}
	mi := MessageInfo{MessageID: p.Message.MessageID, ContextID: p.Message.ContextID, TaskID: p.Message.TaskID, Blocking: true,
		Metadata: map[string]string{}}
	for _, md := range []map[string]any{p.Metadata, p.Message.Metadata} {
		for k, v := range md {
			if s, ok := v.(string); ok {
				mi.Metadata[k] = s
			}
		}
	}
	if c := p.Configuration; c != nil {
		if d == V1 && c.ReturnImmediately != nil && *c.ReturnImmediately {
			mi.Blocking = false
		}
		if d == V03 && c.Blocking != nil && !*c.Blocking {
			mi.Blocking = false
		}
	}
	return mi, nil
}

// Roles and part kinds each dialect defines.
var (
	roles = map[Dialect][]string{V1: {"ROLE_USER", "ROLE_AGENT"}, V03: {"user", "agent"}}
	// partContent is the content fields of a v1.0 part, of which it has exactly one.
	partContent = []string{"text", "raw", "url", "data"}
	// partKinds is the v0.3 part kinds, named by the part's "kind".
	partKinds = []string{"text", "file", "data"}
)

// checkMessage refuses a message the protocol calls invalid before the gateway journals it: a
// role the dialect does not define, no parts, or a part of no known kind. Each error names the
// field.
func checkMessage(role *string, parts []json.RawMessage, d Dialect) error {
	if role == nil || !slices.Contains(roles[d], *role) {
		got := "missing"
		if role != nil {
			got = strconv.Quote(*role)
		}
		return fmt.Errorf(`"params.message.role" must be one of %s, got %s`, strings.Join(roles[d], ", "), got)
	}
	if len(parts) == 0 {
		return errors.New(`"params.message.parts" must hold at least one part`)
	}
	for i, raw := range parts {
		var part map[string]json.RawMessage
		if json.Unmarshal(raw, &part) != nil || part == nil {
			return fmt.Errorf(`"params.message.parts[%d]" must be an object`, i)
		}
		if d == V03 {
			var kind string
			_ = json.Unmarshal(part["kind"], &kind)
			if !slices.Contains(partKinds, kind) {
				return fmt.Errorf(`"params.message.parts[%d].kind" must be one of %s, got %s`, i, strings.Join(partKinds, ", "), strconv.Quote(kind))
			}
			continue
		}
		n := 0
		for _, k := range partContent {
			if v, ok := part[k]; ok && string(v) != "null" {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf(`"params.message.parts[%d]" must have exactly one of %s, has %d`, i, strings.Join(partContent, ", "), n)
		}
	}
	return nil
}

// EditSend returns params with params.message fields set where value is not empty, and with
// the call made blocking (or not). Other fields are kept as they are.
func EditSend(params json.RawMessage, d Dialect, contextID, taskID string, blocking *bool) (json.RawMessage, error) {
	var p map[string]json.RawMessage
	if err := json.Unmarshal(params, &p); err != nil {
		return nil, err
	}
	var msg map[string]json.RawMessage
	if err := json.Unmarshal(p["message"], &msg); err != nil || msg == nil {
		return nil, ErrNoMessage
	}
	set := func(m map[string]json.RawMessage, k string, v any) {
		b, _ := json.Marshal(v)
		m[k] = b
	}
	if contextID != "" {
		set(msg, "contextId", contextID)
	}
	if taskID != "" {
		set(msg, "taskId", taskID)
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	p["message"] = b
	if blocking != nil {
		var cfg map[string]json.RawMessage
		if c, ok := p["configuration"]; ok && !bytes.Equal(c, []byte("null")) {
			if err := json.Unmarshal(c, &cfg); err != nil {
				return nil, err
			}
		}
		if cfg == nil {
			cfg = map[string]json.RawMessage{}
		}
		if d == V03 {
			set(cfg, "blocking", *blocking)
			delete(cfg, "returnImmediately")
		} else {
			set(cfg, "returnImmediately", !*blocking)
			delete(cfg, "blocking")
		}
		if p["configuration"], err = json.Marshal(cfg); err != nil {
			return nil, err
		}
	}
	return json.Marshal(p)
}

// WithParamID returns params with "id" set, for GetTask, CancelTask and SubscribeToTask.
func WithParamID(params json.RawMessage, id string) (json.RawMessage, error) {
	var p map[string]json.RawMessage
	if err := json.Unmarshal(params, &p); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(id)
	p["id"] = b
	return json.Marshal(p)
}

// Envelope re-encodes a request with new params, keeping its id and method.
func (r *Request) WithParams(params json.RawMessage) ([]byte, error) {
	c := *r
	c.Params = params
	return c.Marshal()
}

// plainID reports whether id is at least 8 of [A-Za-z0-9._:-], which JSON never escapes.
func plainID(id string) bool {
	if len(id) < 8 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// ReplaceID rewrites every JSON string equal to from into to, in an encoded payload. Task ids are
// opaque strings that agents generate (UUIDs in practice); a byte-level replacement keeps the
// payload as the agent wrote it. Ids that are short or contain characters needing JSON escapes
// are replaced by walking the decoded payload instead.
func ReplaceID(payload []byte, from, to string) []byte {
	if from == "" || from == to {
		return payload
	}
	if plainID(from) && plainID(to) {
		return bytes.ReplaceAll(payload, []byte(`"`+from+`"`), []byte(`"`+to+`"`))
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return payload
	}
	out, err := json.Marshal(replaceIn(v, from, to))
	if err != nil {
		return payload
	}
	return out
}

func replaceIn(v any, from, to string) any {
	switch t := v.(type) {
	case string:
		if t == from {
			return to
		}
	case []any:
		for i := range t {
			t[i] = replaceIn(t[i], from, to)
		}
	case map[string]any:
		for k := range t {
			t[k] = replaceIn(t[k], from, to)
		}
	}
	return v
}

// TaskSummary is what the gateway reads of a task, a status update or a message in a result.
type TaskSummary struct {
	TaskID    string
	ContextID string
	State     State
	IsTask    bool            // the result is (or wraps) a full Task object
	Task      json.RawMessage // the bare Task object when IsTask
	Final     bool            // a v0.3 status-update with final: true
}

// Summarize reads a JSON-RPC result or stream event of either dialect.
func Summarize(result json.RawMessage) TaskSummary {
	var obj map[string]json.RawMessage
	if json.Unmarshal(result, &obj) != nil {
		return TaskSummary{}
	}
	if k, inner, ok := wrapped(obj); ok {
		return summarizeIn(k, inner, Summarize(inner))
	}
	var f summaryFields
	if json.Unmarshal(result, &f) != nil {
		return TaskSummary{}
	}
	return f.summary(result)
}

// wrapperKeys are the keys under which a result wraps what it carries, in the order Summarize
// looks for them.
var wrapperKeys = [...]string{"task", "statusUpdate", "artifactUpdate", "message"}

// wrapped returns the first of wrapperKeys that obj has, and its value.
func wrapped(obj map[string]json.RawMessage) (string, json.RawMessage, bool) {
	for _, k := range wrapperKeys {
		if inner, ok := obj[k]; ok {
			return k, inner, true
		}
	}
	return "", nil, false
}

// summarizeIn is the summary of a result whose key k wraps inner, summarized as s.
func summarizeIn(k string, inner json.RawMessage, s TaskSummary) TaskSummary {
	if k == "task" {
		s.IsTask, s.Task = true, inner
	}
	return s
}

// summaryFields is what Summarize reads of an object that wraps nothing.
type summaryFields struct {
	ID        string `json:"id"`
	TaskID    string `json:"taskId"`
	ContextID string `json:"contextId"`
	Kind      string `json:"kind"`
	Final     bool   `json:"final"`
	Status    *struct {
		State string `json:"state"`
	} `json:"status"`
}

func (f *summaryFields) summary(result json.RawMessage) TaskSummary {
	s := TaskSummary{TaskID: f.TaskID, ContextID: f.ContextID, Final: f.Final}
	if f.Status != nil {
		s.State = ParseState(f.Status.State)
		if f.TaskID == "" && f.ID != "" { // a Task object
			s.TaskID, s.IsTask, s.Task = f.ID, true, result
		}
	}
	return s
}

// StatusEvent encodes a JSON-RPC response carrying a status update, as the gateway emits when it
// moves a streamed task to another replica.
func StatusEvent(d Dialect, reqID json.RawMessage, taskID, contextID string, st State, text string, meta map[string]any) []byte {
	msg := map[string]any{"messageId": "agentplane-" + taskID + "-" + string(st), "role": "ROLE_AGENT",
		"parts": []any{map[string]any{"text": text}}, "taskId": taskID, "contextId": contextID}
	status := map[string]any{"state": st.Wire(d), "message": msg}
	update := map[string]any{"taskId": taskID, "contextId": contextID, "status": status, "metadata": meta}
	var result any = map[string]any{"statusUpdate": update}
	if d == V03 {
		msg["role"] = "agent"
		msg["kind"] = "message"
		msg["parts"] = []any{map[string]any{"kind": "text", "text": text}}
		update["kind"] = "status-update"
		update["final"] = st.Terminal()
		result = update
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": Version, "id": reqID, "result": result})
	return b
}

// TaskObject encodes a minimal Task object in a dialect, for tasks the gateway answers for
// itself (accepted asynchronous tasks, tasks whose replica is gone).
func TaskObject(d Dialect, taskID, contextID string, st State, text string, meta map[string]any) json.RawMessage {
	status := map[string]any{"state": st.Wire(d)}
	if text != "" {
		msg := map[string]any{"messageId": "agentplane-" + taskID + "-" + string(st), "role": "ROLE_AGENT",
			"parts": []any{map[string]any{"text": text}}, "taskId": taskID}
		if d == V03 {
			msg["role"], msg["kind"] = "agent", "message"
			msg["parts"] = []any{map[string]any{"kind": "text", "text": text}}
		}
		status["message"] = msg
	}
	t := map[string]any{"id": taskID, "contextId": contextID, "status": status}
	if meta != nil {
		t["metadata"] = meta
	}
	if d == V03 {
		t["kind"] = "task"
	}
	b, _ := json.Marshal(t)
	return b
}

// Result wraps a value as a JSON-RPC success response.
func Result(id json.RawMessage, result json.RawMessage) []byte {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(Response{JSONRPC: Version, ID: id, Result: result})
	return b
}

// SendResult wraps a Task as the result of SendMessage in a dialect: {"task": {...}} in v1.0,
// the Task itself in v0.3.
func SendResult(d Dialect, task json.RawMessage) json.RawMessage {
	if d == V03 {
		return task
	}
	b, _ := json.Marshal(map[string]json.RawMessage{"task": task})
	return b
}

// MetaUsage is the task metadata key under which agents report token usage:
// {"inputTokens": N, "outputTokens": M}.
const MetaUsage = "agentplane.io/usage"

// Usage reads the token usage an agent reported in the metadata of a task or status update.
func Usage(result json.RawMessage) (in, out int64, ok bool) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(result, &obj) != nil {
		return 0, 0, false
	}
	for _, k := range []string{"task", "statusUpdate"} {
		if inner, found := obj[k]; found {
			return Usage(inner)
		}
	}
	var m struct {
		Metadata map[string]json.RawMessage `json:"metadata"`
	}
	if json.Unmarshal(result, &m) != nil {
		return 0, 0, false
	}
	return usageIn(m.Metadata)
}

// usageIn reads the token usage in a task's or status update's metadata.
func usageIn(meta map[string]json.RawMessage) (in, out int64, ok bool) {
	var u struct {
		In  int64 `json:"inputTokens"`
		Out int64 `json:"outputTokens"`
	}
	if raw, found := meta[MetaUsage]; !found || json.Unmarshal(raw, &u) != nil {
		return 0, 0, false
	}
	return u.In, u.Out, true
}

// Tokens is the token usage an agent reported; OK is false when it reported none.
type Tokens struct {
	In, Out int64
	OK      bool
}

// SummarizeWithUsage returns Summarize(result) and Usage(result), decoding result once where
// the two read the same object (a Task or a status update, wrapped or not) rather than twice,
// and finding the wrapper by scanning the object's keys rather than decoding them into a map.
func SummarizeWithUsage(result json.RawMessage) (TaskSummary, Tokens) {
	if !json.Valid(result) {
		return TaskSummary{}, Tokens{}
	}
	return summarizeWithUsage(result)
}

// summarizeWithUsage is SummarizeWithUsage of valid JSON.
func summarizeWithUsage(result json.RawMessage) (TaskSummary, Tokens) {
	k, inner, obj, ok := wrappedIn(result)
	if !ok { // not an object whose keys the scan reads: as Summarize and Usage do
		var m map[string]json.RawMessage
		if json.Unmarshal(result, &m) != nil {
			return TaskSummary{}, Tokens{}
		}
		k, inner, obj = "", nil, true
		if wk, wi, found := wrapped(m); found {
			k, inner = wk, wi
		}
	}
	if !obj {
		return TaskSummary{}, Tokens{}
	}
	if k != "" {
		if k == "task" || k == "statusUpdate" { // Usage reads the same inner object
			s, u := summarizeWithUsage(inner)
			return summarizeIn(k, inner, s), u
		}
		var u Tokens
		u.In, u.Out, u.OK = Usage(result)
		return summarizeIn(k, inner, Summarize(inner)), u
	}
	var f struct {
		summaryFields
		Metadata map[string]json.RawMessage `json:"metadata"`
	}
	if json.Unmarshal(result, &f) != nil {
		// One of the fields has a type the other function does not read: ask each.
		var u Tokens
		u.In, u.Out, u.OK = Usage(result)
		return Summarize(result), u
	}
	var u Tokens
	u.In, u.Out, u.OK = usageIn(f.Metadata)
	return f.summaryFields.summary(result), u
}

// wrappedIn is wrapped for valid JSON b, read without decoding it: the first of wrapperKeys
// that b's top-level object has (the last value when a key repeats, as a decoded map keeps
// it), and whether b is an object at all. ok is false when the scan cannot tell exactly what
// decoding would: b is not an object, or a key holds an escape.
func wrappedIn(b []byte) (k string, inner []byte, obj, ok bool) {
	var found [len(wrapperKeys)][]byte
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return "", nil, false, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return "", nil, true, true
	}
	for i < len(b) && b[i] == '"' {
		end := i + 1
		for end < len(b) && b[end] != '"' {
			if b[end] == '\\' {
				return "", nil, false, false
			}
			end++
		}
		key := b[i+1 : end]
		i = skipSpace(b, end+1) + 1 // past the colon
		vs := skipSpace(b, i)
		ve := skipValue(b, vs)
		for w, wk := range wrapperKeys {
			if string(key) == wk {
				found[w] = b[vs:ve]
			}
		}
		i = skipSpace(b, ve)
		if i >= len(b) || b[i] != ',' {
			break // the closing brace: b is valid
		}
		i = skipSpace(b, i+1)
	}
	for w, v := range found {
		if v != nil {
			return wrapperKeys[w], v, true, true
		}
	}
	return "", nil, true, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the valid JSON value that starts at b[i].
func skipValue(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch c := b[i]; c {
		case '"':
			i++
			for i < len(b) && b[i] != '"' {
				if b[i] == '\\' {
					i++
				}
				i++
			}
			i++
		case '{', '[':
			depth++
			i++
		case '}', ']':
			depth--
			i++
		default:
			if depth == 0 {
				for i < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[i])) {
					i++
				}
				return i
			}
			i++
		}
		if depth == 0 {
			return i
		}
	}
	return i
}

package a2a

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestParseStateBothDialects(t *testing.T) {
	for in, want := range map[string]State{
		"TASK_STATE_COMPLETED": StateCompleted, "completed": StateCompleted,
		"TASK_STATE_INPUT_REQUIRED": StateInputRequired, "input-required": StateInputRequired,
		"TASK_STATE_CANCELED": StateCanceled, "cancelled": StateCanceled, "weird": StateUnknown, "": StateUnknown,
	} {
		if got := ParseState(in); got != want {
			t.Errorf("ParseState(%q) = %q, want %q", in, got, want)
		}
	}
	if StateInputRequired.Wire(V1) != "TASK_STATE_INPUT_REQUIRED" || StateInputRequired.Wire(V03) != "input-required" {
		t.Fatal("Wire spelled a state wrong")
	}
}

func TestParseMessageInfoAndEditSend(t *testing.T) {
	v1 := json.RawMessage(`{"message":{"messageId":"m1","role":"ROLE_USER","parts":[{"text":"hi"}]},"configuration":{"returnImmediately":true,"historyLength":2}}`)
	mi, err := ParseMessageInfo(v1, V1)
	if err != nil || mi.MessageID != "m1" || mi.Blocking || mi.ContextID != "" {
		t.Fatalf("ParseMessageInfo(v1) = %+v, %v", mi, err)
	}
	yes := true
	out, err := EditSend(v1, V1, "ctx-1", "", &yes)
	if err != nil {
		t.Fatal(err)
	}
	mi, _ = ParseMessageInfo(out, V1)
	if !mi.Blocking || mi.ContextID != "ctx-1" || mi.MessageID != "m1" || !strings.Contains(string(out), `"historyLength":2`) || !strings.Contains(string(out), `"parts"`) {
		t.Fatalf("EditSend(v1) = %s", out)
	}

	v03 := json.RawMessage(`{"message":{"kind":"message","messageId":"m2","contextId":"c","taskId":"t","role":"user","parts":[{"kind":"text","text":"yes"}]},"configuration":{"blocking":false}}`)
	mi, err = ParseMessageInfo(v03, V03)
	if err != nil || mi.Blocking || mi.TaskID != "t" || mi.ContextID != "c" {
		t.Fatalf("ParseMessageInfo(v03) = %+v, %v", mi, err)
	}
	out, _ = EditSend(v03, V03, "", "upstream-t", &yes)
	if mi, _ = ParseMessageInfo(out, V03); !mi.Blocking || mi.TaskID != "upstream-t" || mi.ContextID != "c" {
		t.Fatalf("EditSend(v03) = %s", out)
	}
	if _, err := ParseMessageInfo(json.RawMessage(`{}`), V1); err == nil {
		t.Fatal("a send without a message parsed")
	}
}

func TestReplaceID(t *testing.T) {
	in := []byte(`{"result":{"task":{"id":"01a1fc10-aaaa-bbbb","contextId":"c","status":{"message":{"taskId":"01a1fc10-aaaa-bbbb","parts":[{"text":"see 01a1fc10-aaaa-bbbb-x"}]}}}}}`)
	out := string(ReplaceID(in, "01a1fc10-aaaa-bbbb", "gw-0000-1111"))
	if strings.Count(out, `"gw-0000-1111"`) != 2 || !strings.Contains(out, "see 01a1fc10-aaaa-bbbb-x") {
		t.Fatalf("ReplaceID = %s", out)
	}
	// Short or unusual ids are replaced structurally, only as whole strings.
	out = string(ReplaceID([]byte(`{"id":"t1","text":"t1 is here","list":["t1"]}`), "t1", "gw"))
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil || v["id"] != "gw" || v["text"] != "t1 is here" || v["list"].([]any)[0] != "gw" {
		t.Fatalf("ReplaceID(short) = %s", out)
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		in    string
		id    string
		state State
		task  bool
	}{
		{`{"task":{"id":"a","status":{"state":"TASK_STATE_WORKING"}}}`, "a", StateWorking, true},
		{`{"kind":"task","id":"b","status":{"state":"completed"}}`, "b", StateCompleted, true},
		{`{"statusUpdate":{"taskId":"c","status":{"state":"TASK_STATE_FAILED"}}}`, "c", StateFailed, false},
		{`{"kind":"status-update","taskId":"d","final":true,"status":{"state":"input-required"}}`, "d", StateInputRequired, false},
		{`{"artifactUpdate":{"taskId":"e","artifact":{}}}`, "e", StateUnknown, false},
		{`{"message":{"messageId":"m","role":"ROLE_AGENT","parts":[]}}`, "", StateUnknown, false},
	}
	for _, tt := range tests {
		s := Summarize(json.RawMessage(tt.in))
		if s.TaskID != tt.id || s.State != tt.state || s.IsTask != tt.task {
			t.Errorf("Summarize(%s) = %+v", tt.in, s)
		}
	}
}

func TestGatewayEventsParseInTheirDialect(t *testing.T) {
	for _, d := range []Dialect{V1, V03} {
		var r Response
		if err := json.Unmarshal(StatusEvent(d, json.RawMessage("7"), "gw-1", "ctx", StateWorking, "moved", map[string]any{"k": true}), &r); err != nil {
			t.Fatal(err)
		}
		if s := Summarize(r.Result); s.TaskID != "gw-1" || s.State != StateWorking || string(r.ID) != "7" {
			t.Fatalf("StatusEvent(%s) summarized as %+v", d, s)
		}
		task := TaskObject(d, "gw-2", "ctx", StateCanceled, "canceled by the client", nil)
		if s := Summarize(SendResult(d, task)); s.TaskID != "gw-2" || s.State != StateCanceled || !s.IsTask {
			t.Fatalf("TaskObject(%s) summarized as %+v", d, s)
		}
	}
}

func TestUsage(t *testing.T) {
	for in, want := range map[string][2]int64{
		`{"task":{"id":"a","metadata":{"agentplane.io/usage":{"inputTokens":3,"outputTokens":6}}}}`:             {3, 6},
		`{"statusUpdate":{"taskId":"a","metadata":{"agentplane.io/usage":{"inputTokens":1,"outputTokens":2}}}}`: {1, 2},
		`{"kind":"task","id":"b","metadata":{"agentplane.io/usage":{"inputTokens":7,"outputTokens":0}}}`:        {7, 0},
	} {
		i, o, ok := Usage(json.RawMessage(in))
		if !ok || i != want[0] || o != want[1] {
			t.Errorf("Usage(%s) = %d, %d, %v", in, i, o, ok)
		}
	}
	if _, _, ok := Usage(json.RawMessage(`{"task":{"id":"a"}}`)); ok {
		t.Error("Usage found usage where there is none")
	}
}

func TestInvalidMessagesNameTheField(t *testing.T) {
	for _, tc := range []struct {
		d      Dialect
		params string
		field  string
	}{
		{V1, `{"message":{"messageId":"m","parts":[{"text":"x"}]}}`, `"params.message.role"`},
		{V1, `{"message":{"messageId":"m","role":"user","parts":[{"text":"x"}]}}`, `"params.message.role"`},
		{V1, `{"message":{"messageId":"m","role":"ROLE_USER"}}`, `"params.message.parts"`},
		{V1, `{"message":{"messageId":"m","role":"ROLE_USER","parts":[]}}`, `"params.message.parts"`},
		{V1, `{"message":{"messageId":"m","role":"ROLE_USER","parts":["x"]}}`, `"params.message.parts[0]"`},
		{V1, `{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"text":"a"},{"image":"b"}]}}`, `"params.message.parts[1]"`},
		{V1, `{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"text":"a","url":"http://x"}]}}`, `"params.message.parts[0]"`},
		{V03, `{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"kind":"text","text":"x"}]}}`, `"params.message.role"`},
		{V03, `{"message":{"messageId":"m","role":"user","parts":[{"text":"x"}]}}`, `"params.message.parts[0].kind"`},
		{V03, `{"message":{"messageId":"m","role":"user","parts":[{"kind":"image"}]}}`, `"params.message.parts[0].kind"`},
	} {
		_, err := ParseMessageInfo(json.RawMessage(tc.params), tc.d)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("ParseMessageInfo(%s, %s) = %v, want an error naming %s", tc.d, tc.params, err, tc.field)
		}
	}
	for _, ok := range []struct {
		d      Dialect
		params string
	}{
		{V1, `{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"text":"x"},{"url":"https://x/y.png","mediaType":"image/png"},{"data":{"a":1}},{"raw":"AAE="}]}}`},
		{V03, `{"message":{"messageId":"m","role":"agent","parts":[{"kind":"text","text":"x"},{"kind":"file","file":{"uri":"https://x"}},{"kind":"data","data":{}}]}}`},
	} {
		if _, err := ParseMessageInfo(json.RawMessage(ok.params), ok.d); err != nil {
			t.Errorf("ParseMessageInfo(%s, %s) refused a valid message: %v", ok.d, ok.params, err)
		}
	}
}

// summarizeWithUsageCases are results of every shape Summarize and Usage read, and some they
// refuse, as seeds of FuzzSummarizeWithUsage.
var summarizeWithUsageCases = []string{
	`{"task":{"id":"a","status":{"state":"TASK_STATE_COMPLETED"},"metadata":{"agentplane.io/usage":{"inputTokens":3,"outputTokens":6}}}}`,
	`{"statusUpdate":{"taskId":"a","status":{"state":"TASK_STATE_WORKING"},"metadata":{"agentplane.io/usage":{"inputTokens":1,"outputTokens":2}}}}`,
	`{"kind":"task","id":"b","status":{"state":"completed"},"metadata":{"agentplane.io/usage":{"inputTokens":7,"outputTokens":0}}}`,
	`{"artifactUpdate":{"taskId":"e","artifact":{}},"metadata":{"agentplane.io/usage":{"inputTokens":4,"outputTokens":5}}}`,
	`{"message":{"messageId":"m","role":"ROLE_AGENT","parts":[]}}`,
	`{"task":{"task":{"id":"nested","status":{"state":"TASK_STATE_FAILED"}}}}`,
	`{"task":{"id":"a","status":{"state":"TASK_STATE_COMPLETED"},"metadata":{"agentplane.io/usage":"many"}}}`,
	`{"task":{"id":7,"status":{"state":"TASK_STATE_COMPLETED"},"metadata":{"agentplane.io/usage":{"inputTokens":1,"outputTokens":1}}}}`,
	`{"task":{"id":"a","status":{"state":"TASK_STATE_COMPLETED"},"metadata":[1]}}`,
	`{"Task":{"id":"a"},"ID":"x","Status":{"State":"completed"}}`,
	`{"task":null}`,
	` { "task" : { "id" : "a\"}" , "status":{"state":"completed"}} , "task": {"id":"b","status":{"state":"TASK_STATE_WORKING"}} } `,
	`{"t\u0061sk":{"id":"a","status":{"state":"completed"}}}`,
	`{"x":[1,{"task":2}],"n":-1.5e3,"b":true,"z":null,"s":"\\","statusUpdate":{"taskId":"s"}}`,
	`{}`,
	`null`,
	`[1,2]`,
	`"text"`,
	`{`,
}

func TestSummarizeWithUsageIsBoth(t *testing.T) {
	for _, in := range summarizeWithUsageCases {
		checkSummarizeWithUsage(t, in)
	}
}

// FuzzSummarizeWithUsage checks that SummarizeWithUsage reads every input as Summarize and
// Usage do.
func FuzzSummarizeWithUsage(f *testing.F) {
	for _, in := range summarizeWithUsageCases {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in string) { checkSummarizeWithUsage(t, in) })
}

func checkSummarizeWithUsage(t *testing.T, in string) {
	t.Helper()
	s, u := SummarizeWithUsage(json.RawMessage(in))
	ws := Summarize(json.RawMessage(in))
	var wu Tokens
	wu.In, wu.Out, wu.OK = Usage(json.RawMessage(in))
	if s.TaskID != ws.TaskID || s.ContextID != ws.ContextID || s.State != ws.State || s.IsTask != ws.IsTask ||
		s.Final != ws.Final || !bytes.Equal(s.Task, ws.Task) || u != wu {
		t.Errorf("SummarizeWithUsage(%s) = %+v, %+v; Summarize and Usage say %+v, %+v", in, s, u, ws, wu)
	}
}

func TestPlainID(t *testing.T) {
	for id, want := range map[string]bool{"0193a7b2-8c1e-7f00-9abc-0123456789ab": true, "abc.def:ghi_jk": true,
		"short": false, "": false, "with space in it": false, `quote"inside-it`: false, "ünïcödé-id": false} {
		if got := plainID(id); got != want {
			t.Errorf("plainID(%q) = %v, want %v", id, got, want)
		}
	}
}

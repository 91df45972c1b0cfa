package a2a

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantCode int // 0 = success
		wantKind Kind
		wantDial Dialect
	}{
		{"v1 send", `{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{}}}`, 0, KindSend, V1},
		{"v1 stream", `{"jsonrpc":"2.0","id":"a","method":"SendStreamingMessage","params":{"message":{}}}`, 0, KindStream, V1},
		{"v1 get", `{"jsonrpc":"2.0","id":2,"method":"GetTask","params":{"id":"t1"}}`, 0, KindGetTask, V1},
		{"v1 cancel", `{"jsonrpc":"2.0","id":2,"method":"CancelTask","params":{"id":"t1"}}`, 0, KindCancel, V1},
		{"v1 subscribe", `{"jsonrpc":"2.0","id":2,"method":"SubscribeToTask","params":{"id":"t1"}}`, 0, KindSubscribe, V1},
		{"v03 send", `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{}}}`, 0, KindSend, V03},
		{"v03 stream", `{"jsonrpc":"2.0","id":1,"method":"message/stream","params":{"message":{}}}`, 0, KindStream, V03},
		{"v03 get", `{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"id":"x"}}`, 0, KindGetTask, V03},
		{"v03 cancel", `{"jsonrpc":"2.0","id":1,"method":"tasks/cancel","params":{"id":"x"}}`, 0, KindCancel, V03},
		{"v03 resubscribe", `{"jsonrpc":"2.0","id":1,"method":"tasks/resubscribe","params":{"id":"x"}}`, 0, KindSubscribe, V03},
		{"whitespace", " \n{\"jsonrpc\":\"2.0\",\"id\":-1.5e3,\"method\":\"ListTasks\"}\n", 0, KindList, V1},

		{"empty", ``, CodeInvalidRequest, 0, ""},
		{"not json", `{"jsonrpc":`, CodeParseError, 0, ""},
		{"garbage", `hello`, CodeParseError, 0, ""},
		{"array batch", `[{"jsonrpc":"2.0","id":1,"method":"GetTask"}]`, CodeInvalidRequest, 0, ""},
		{"null", `null`, CodeInvalidRequest, 0, ""},
		{"string", `"x"`, CodeParseError, 0, ""},
		{"wrong version", `{"jsonrpc":"1.0","id":1,"method":"GetTask","params":{"id":"t"}}`, CodeInvalidRequest, 0, ""},
		{"no id", `{"jsonrpc":"2.0","method":"GetTask","params":{"id":"t"}}`, CodeInvalidRequest, 0, ""},
		{"object id", `{"jsonrpc":"2.0","id":{},"method":"GetTask","params":{"id":"t"}}`, CodeInvalidRequest, 0, ""},
		{"null id", `{"jsonrpc":"2.0","id":null,"method":"GetTask","params":{"id":"t"}}`, CodeInvalidRequest, 0, ""},
		{"no method", `{"jsonrpc":"2.0","id":1}`, CodeInvalidRequest, 0, ""},
		{"numeric method", `{"jsonrpc":"2.0","id":1,"method":5}`, CodeInvalidRequest, 0, ""},
		{"unknown method", `{"jsonrpc":"2.0","id":1,"method":"tasks/delete"}`, CodeMethodNotFound, 0, ""},
		{"params array", `{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":[1]}`, CodeInvalidParams, 0, ""},
		{"send without params", `{"jsonrpc":"2.0","id":1,"method":"SendMessage"}`, CodeInvalidParams, 0, ""},
		{"get without id", `{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{}}`, CodeInvalidParams, 0, ""},
		{"get numeric id", `{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"id":7}}`, CodeInvalidParams, 0, ""},
		{"too deep", `{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":` + strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70) + `}`, CodeInvalidRequest, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, e := ParseRequest([]byte(tt.body))
			if tt.wantCode != 0 {
				if e == nil {
					t.Fatalf("ParseRequest() error = nil, want code %d", tt.wantCode)
				}
				if e.Code != tt.wantCode {
					t.Fatalf("ParseRequest() code = %d (%s), want %d", e.Code, e.Message, tt.wantCode)
				}
				return
			}
			if e != nil {
				t.Fatalf("ParseRequest() error = %v", e)
			}
			if r.Info.Kind != tt.wantKind || r.Info.Dialect != tt.wantDial {
				t.Fatalf("ParseRequest() = %+v, want kind %v dialect %v", r.Info, tt.wantKind, tt.wantDial)
			}
		})
	}
}

func TestDepthIgnoresStrings(t *testing.T) {
	body := `{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"text":"` + strings.Repeat("[{", 200) + `"}}}`
	if _, e := ParseRequest([]byte(body)); e != nil {
		t.Fatalf("brackets inside a string counted as nesting: %v", e)
	}
}

func TestErrorResponse(t *testing.T) {
	got := ErrorResponse(nil, Errorf(CodeMethodNotFound, "nope"))
	want := `{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"nope"}}`
	if string(got) != want {
		t.Fatalf("ErrorResponse() = %s, want %s", got, want)
	}
	if id := ErrorID([]byte(`{"id":"x-1","method":5}`)); string(id) != `"x-1"` {
		t.Fatalf("ErrorID() = %s", id)
	}
}

func TestResultTaskID(t *testing.T) {
	tests := map[string]string{
		`{"kind":"task","id":"t1","contextId":"c","status":{"state":"completed"}}`: "t1",
		`{"task":{"id":"t2","status":{"state":"TASK_STATE_WORKING"}}}`:             "t2",
		`{"statusUpdate":{"taskId":"t3","status":{}}}`:                             "t3",
		`{"artifactUpdate":{"taskId":"t4"}}`:                                       "t4",
		`{"kind":"status-update","taskId":"t5"}`:                                   "t5",
		`{"message":{"messageId":"m","role":"ROLE_AGENT","parts":[]}}`:             "",
		`{"kind":"message","messageId":"m","taskId":"t6"}`:                         "t6",
		`[1,2]`: "",
		`"x"`:   "",
	}
	for in, want := range tests {
		if got := ResultTaskID(json.RawMessage(in)); got != want {
			t.Errorf("ResultTaskID(%s) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseRequest: no input panics the parser, and an accepted request survives
// marshal → parse with the same method, id and params.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"role":"user"}}}`,
		`{"jsonrpc":"2.0","id":"x","method":"tasks/get","params":{"id":"t"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"message/stream","params":{"message":{}}}`,
		`[]`, `{}`, `{"jsonrpc":"2.0","id":1e400,"method":"GetTask"}`, "\"\\u0000\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, e := ParseRequest(body)
		if e != nil {
			if r != nil {
				t.Fatal("both a request and an error")
			}
			if e.Code == 0 || e.Message == "" {
				t.Fatalf("error without code or message: %+v", e)
			}
			return
		}
		out, err := r.Marshal()
		if err != nil {
			t.Fatalf("Marshal() error = %v", err)
		}
		again, e := ParseRequest(out)
		if e != nil {
			t.Fatalf("re-parse of %s failed: %v", out, e)
		}
		if again.Method != r.Method || !bytes.Equal(again.ID, r.ID) || !jsonEqual(again.Params, r.Params) {
			t.Fatalf("round trip changed the request: %s → %s", body, out)
		}
	})
}

func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

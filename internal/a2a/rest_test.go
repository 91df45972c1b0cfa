package a2a

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"
)

// restCases are HTTP+JSON calls and the JSON-RPC requests they are; the paths are those
// a2a-go v2.4's client sends (internal/rest PathBuilder) and its server routes.
var restCases = []struct {
	verb, path, query, body string
	method, params          string // params "" when the call is refused
	code                    int    // the refusal's JSON-RPC code
}{
	{"POST", "message:send", "", `{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"text":"hi"}]}}`,
		"SendMessage", `{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"text":"hi"}]}}`, 0},
	{"POST", "/message:stream", "", `{"message":{"messageId":"m","role":"ROLE_USER","parts":[]},"configuration":{"returnImmediately":true}}`,
		"SendStreamingMessage", `{"message":{"messageId":"m","role":"ROLE_USER","parts":[]},"configuration":{"returnImmediately":true}}`, 0},
	{"GET", "/tasks/t1", "", "", "GetTask", `{"id":"t1"}`, 0},
	{"GET", "/tasks/t1", "historyLength=3", "", "GetTask", `{"historyLength":3,"id":"t1"}`, 0},
	{"GET", "/tasks", "contextId=c&status=TASK_STATE_WORKING&pageSize=10&pageToken=p&historyLength=2&lastUpdatedAfter=2026-01-02T03:04:05Z&includeArtifacts=true", "",
		"ListTasks", `{"contextId":"c","historyLength":2,"includeArtifacts":true,"pageSize":10,"pageToken":"p","status":"TASK_STATE_WORKING","statusTimestampAfter":"2026-01-02T03:04:05Z"}`, 0},
	{"GET", "/tasks", "statusTimestampAfter=2026-01-02T03:04:05Z", "", "ListTasks", `{"statusTimestampAfter":"2026-01-02T03:04:05Z"}`, 0},
	{"GET", "/tasks", "", "", "ListTasks", `{}`, 0},
	{"POST", "/tasks/t1:cancel", "", "", "CancelTask", `{"id":"t1"}`, 0},
	{"POST", "/tasks/t1:cancel", "", `{"id":"other","metadata":{"why":"dup"}}`, "CancelTask", `{"id":"t1","metadata":{"why":"dup"}}`, 0},
	{"POST", "/tasks/t1:subscribe", "", "", "SubscribeToTask", `{"id":"t1"}`, 0},
	{"GET", "/tasks/t1:subscribe", "", "", "SubscribeToTask", `{"id":"t1"}`, 0},
	{"POST", "/tasks/t1/pushNotificationConfigs", "", `{"url":"https://hook.test/x","token":"k"}`,
		"CreateTaskPushNotificationConfig", `{"taskId":"t1","token":"k","url":"https://hook.test/x"}`, 0},
	{"GET", "/tasks/t1/pushNotificationConfigs", "pageSize=5&pageToken=n", "", "ListTaskPushNotificationConfigs", `{"pageSize":5,"pageToken":"n","taskId":"t1"}`, 0},
	{"GET", "/tasks/t1/pushNotificationConfigs/c1", "", "", "GetTaskPushNotificationConfig", `{"id":"c1","taskId":"t1"}`, 0},
	{"DELETE", "/tasks/t1/pushNotificationConfigs/c1", "", "", "DeleteTaskPushNotificationConfig", `{"id":"c1","taskId":"t1"}`, 0},
	{"GET", "/extendedAgentCard", "", "", "GetExtendedAgentCard", `{}`, 0},

	{"POST", "message:send", "", "", "SendMessage", "", CodeInvalidRequest},
	{"POST", "message:send", "", `{"message":`, "SendMessage", "", CodeParseError},
	{"POST", "message:send", "", `{"a":1} {"b":2}`, "SendMessage", "", CodeParseError},
	{"POST", "message:send", "", `"hi"`, "SendMessage", "", CodeInvalidParams},
	{"POST", "message:send", "", `{"message":{}, "message":{}}`, "SendMessage", "", CodeInvalidRequest},
	{"POST", "message:send", "", `{}`, "SendMessage", `{}`, 0},
	{"GET", "/tasks/t1", "historyLength=x", "", "GetTask", "", CodeInvalidRequest},
	{"GET", "/tasks/t1", "", `{}`, "GetTask", "", CodeInvalidRequest},
	{"GET", "/tasks/", "", "", "GetTask", "", CodeInvalidRequest},
	{"POST", "/tasks/:cancel", "", "", "CancelTask", "", CodeInvalidRequest},
	{"GET", "/tasks/t1/pushNotificationConfigs/", "", "", "GetTaskPushNotificationConfig", "", CodeInvalidRequest},
	{"GET", "/tasks", "pageSize=ten", "", "ListTasks", "", CodeInvalidRequest},
	{"GET", "/tasks", "lastUpdatedAfter=yesterday", "", "ListTasks", "", CodeInvalidRequest},
	{"GET", "/tasks", "includeArtifacts=maybe", "", "ListTasks", "", CodeInvalidRequest},
}

func TestRESTRoutesAreTheirJSONRPCMethods(t *testing.T) {
	for _, tc := range restCases {
		rt, err := MatchREST(tc.verb, tc.path)
		if err != nil || rt.Method != tc.method {
			t.Errorf("%s %s: route %+v, %v; want %s", tc.verb, tc.path, rt, err, tc.method)
			continue
		}
		q, _ := url.ParseQuery(tc.query)
		req, perr := rt.Request(q, []byte(tc.body), 0)
		if tc.params == "" {
			if perr == nil || perr.Code != tc.code {
				t.Errorf("%s %s?%s %s: %+v, %v; want code %d", tc.verb, tc.path, tc.query, tc.body, req, perr, tc.code)
			}
			continue
		}
		if perr != nil {
			t.Errorf("%s %s?%s %s: %v", tc.verb, tc.path, tc.query, tc.body, perr)
			continue
		}
		if req.Method != tc.method || req.Info.Dialect != V1 || string(req.Params) != tc.params || string(req.ID) != string(RESTRequestID) {
			t.Errorf("%s %s?%s: %s %s, want %s %s", tc.verb, tc.path, tc.query, req.Method, req.Params, tc.method, tc.params)
		}
	}
}

func TestRESTPathsThatAreNoRoute(t *testing.T) {
	for _, tc := range []struct {
		verb, path string
		status     int
		allow      string
	}{
		{"GET", "", 404, ""},
		{"GET", "/", 404, ""},
		{"POST", "/message:publish", 404, ""},
		{"POST", "/message", 404, ""},
		{"POST", "/v1/message:send", 404, ""},
		{"GET", "/tasks/t1/history", 404, ""},
		{"GET", "/tasks/t1/pushNotificationConfigs/c1/x", 404, ""},
		{"GET", "/.well-known/agent.json", 404, ""},
		{"GET", "/message:send", 405, "POST"},
		{"PUT", "/message:stream", 405, "POST"},
		{"POST", "/tasks", 405, "GET"},
		{"DELETE", "/tasks/t1", 405, "GET"},
		{"POST", "/tasks/t1", 405, "GET"},
		{"GET", "/tasks/t1:cancel", 405, "POST"},
		{"DELETE", "/tasks/t1:subscribe", 405, "GET,POST"},
		{"DELETE", "/tasks/t1/pushNotificationConfigs", 405, "GET,POST"},
		{"POST", "/tasks/t1/pushNotificationConfigs/c1", 405, "GET,DELETE"},
		{"POST", "/extendedAgentCard", 405, "GET"},
	} {
		_, err := MatchREST(tc.verb, tc.path)
		var re *RESTRouteError
		if !errors.As(err, &re) || re.Status() != tc.status || joinComma(re.Allow) != tc.allow || re.Error() == "" {
			t.Errorf("%s %q: %v, want %d allow %q", tc.verb, tc.path, err, tc.status, tc.allow)
		}
	}
}

func joinComma(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ","
		}
		out += v
	}
	return out
}

// FuzzRESTRequest checks that no HTTP+JSON call panics the parser, and that every call it
// accepts is one JSON-RPC request of the route's method and no other: what the gateway forwards
// re-parses to the same method and params (no method smuggling through the body).
func FuzzRESTRequest(f *testing.F) {
	for _, tc := range restCases {
		f.Add(tc.verb, tc.path, tc.query, []byte(tc.body))
	}
	f.Add("POST", "message:send", "", []byte(`{"message":{}},"method":"CancelTask","x":{`))
	f.Fuzz(func(t *testing.T, verb, path, query string, body []byte) {
		rt, err := MatchREST(verb, path)
		if err != nil {
			var re *RESTRouteError
			if !errors.As(err, &re) || (re.Status() != http.StatusNotFound && re.Status() != http.StatusMethodNotAllowed) {
				t.Fatalf("MatchREST(%q, %q): %v", verb, path, err)
			}
			return
		}
		q, _ := url.ParseQuery(query)
		req, perr := rt.Request(q, body, 0)
		if perr != nil {
			return
		}
		if req.Method != rt.Method {
			t.Fatalf("%s %s became %s", verb, path, req.Method)
		}
		wire, merr := req.Marshal()
		if merr != nil {
			t.Fatal(merr)
		}
		again, perr := ParseRequest(wire)
		if perr != nil {
			t.Fatalf("re-parse of %s: %v", wire, perr)
		}
		if again.Method != req.Method || string(again.Params) != string(req.Params) {
			t.Fatalf("re-parse changed %s %s into %s %s", req.Method, req.Params, again.Method, again.Params)
		}
		if rt.TaskID != "" && (rt.Method == "GetTask" || rt.Method == "CancelTask" || rt.Method == "SubscribeToTask") {
			if id, _ := req.TaskID(); id != rt.TaskID {
				t.Fatalf("task %q of the path became %q", rt.TaskID, id)
			}
		}
		var p map[string]json.RawMessage
		if json.Unmarshal(req.Params, &p) != nil {
			t.Fatalf("params %s are not an object", req.Params)
		}
	})
}

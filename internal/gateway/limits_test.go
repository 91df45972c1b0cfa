package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/simagent"
	"github.com/agentplane/agentplane/internal/testutil"
)

// nested is a SendMessage whose metadata nests depth-3 levels of arrays, for a body depth of depth.
func nested(depth int) string {
	inner := strings.Repeat("[", depth-3) + strings.Repeat("]", depth-3)
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"text":"x"}]},"metadata":{"deep":%s}}}`, inner)
}

// The JSON depth limit is the configured one, not a constant.
func TestConfiguredJSONDepth(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, a0)), func(o *Options) { o.MaxJSONDepth = 10 })
	r := post(t, srv.URL+"/agents/triage", nested(12))
	if r.resp.Error == nil || r.resp.Error.Code != a2a.CodeInvalidRequest || !strings.Contains(r.resp.Error.Message, "the limit is 10") {
		t.Fatalf("12 levels deep with a limit of 10: %s", r.raw)
	}
	r = post(t, srv.URL+"/agents/triage", nested(10))
	if _, state := taskState(t, r.resp.Result); state != "TASK_STATE_COMPLETED" {
		t.Fatalf("10 levels deep with a limit of 10: %s", r.raw)
	}
}

// An event stream line longer than the configured limit is not relayed: the stream ends with an
// error event. Under the default limit the same stream is relayed whole.
func TestConfiguredSSELineLimit(t *testing.T) {
	long := strings.Repeat("x", 2048)
	agent := streamingAgent(t, func(w http.ResponseWriter) {
		fmt.Fprint(w, "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"task\":{\"id\":\"t1\",\"status\":{\"state\":\"TASK_STATE_WORKING\"}}}}\n\n")
		fmt.Fprintf(w, "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"statusUpdate\":{\"taskId\":\"t1\",\"status\":{\"state\":\"TASK_STATE_COMPLETED\",\"message\":{\"messageId\":\"a\",\"role\":\"ROLE_AGENT\",\"parts\":[{\"text\":%q}]}}}}}\n\n", long)
	})
	stream := func(limit int) string {
		t.Helper()
		_, gw := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, agent)), func(o *Options) { o.MaxSSELineBytes = limit })
		return postStream(t, gw.URL+"/agents/triage",
			`{"jsonrpc":"2.0","id":1,"method":"SendStreamingMessage","params":{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"text":"x"}]}}}`)
	}
	if got := stream(0); !strings.Contains(got, long) || !strings.Contains(got, "TASK_STATE_COMPLETED") {
		t.Fatalf("default limit: the long event was not relayed:\n%.300s", got)
	}
	got := stream(1024)
	if strings.Contains(got, long) || !strings.Contains(got, `"error"`) {
		t.Fatalf("limit 1024: want the long line dropped and an error event, got:\n%.500s", got)
	}
}

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/simagent"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/testutil"
)

// restClient is the official SDK's client for the agent, made from the card the gateway serves
// with HTTP+JSON preferred: what a client of the SDK's REST transport does.
func restClient(t *testing.T, base, agent string, hc *http.Client) *a2aclient.Client {
	t.Helper()
	var card sdk.AgentCard
	getJSON(t, base+"/agents/"+agent+"/.well-known/agent-card.json", &card)
	c, err := a2aclient.NewFromCard(t.Context(), &card, a2aclient.WithRESTTransport(hc),
		a2aclient.WithConfig(a2aclient.Config{PreferredTransports: []sdk.TransportProtocol{sdk.TransportProtocolHTTPJSON}}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// restTransport is the SDK's REST transport at the agent's gateway URL, for calls the card
// cannot be read for.
func restTransport(t *testing.T, base, agent string, hc *http.Client) a2aclient.Transport {
	t.Helper()
	u, err := url.Parse(base + "/agents/" + agent)
	if err != nil {
		t.Fatal(err)
	}
	return a2aclient.NewRESTTransport(u, hc)
}

func userMessage(text string) *sdk.SendMessageRequest {
	return &sdk.SendMessageRequest{Message: sdk.NewMessage(sdk.MessageRoleUser, sdk.NewTextPart(text))}
}

// recordingClient remembers the verb and path of every request it sends.
type recordingClient struct {
	mu   sync.Mutex
	urls []string
}

func (r *recordingClient) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.urls = append(r.urls, req.Method+" "+req.URL.Path)
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func TestRESTBindingServesTheSDKClient(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{Chunks: 3})
	a1 := startAgent(t, "triage", "1", simagent.Config{Chunks: 3})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, a0, a1)))
	rec := &recordingClient{}
	c := restClient(t, srv.URL, "triage", &http.Client{Transport: rec})
	ctx := t.Context()

	res, err := c.SendMessage(ctx, userMessage("chest pain since this morning"))
	if err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	task, ok := res.(*sdk.Task)
	if !ok || task.Status.State != sdk.TaskStateCompleted || task.ID == "" {
		t.Fatalf("SendMessage = %#v, want a completed task", res)
	}

	got, err := c.GetTask(ctx, &sdk.GetTaskRequest{ID: task.ID})
	if err != nil || got.ID != task.ID || got.Status.State != sdk.TaskStateCompleted || len(got.Artifacts) == 0 {
		t.Fatalf("GetTask = %+v, %v", got, err)
	}

	var events []sdk.Event
	for ev, err := range c.SendStreamingMessage(ctx, userMessage("and a fever")) {
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		events = append(events, ev)
	}
	if len(events) < 4 {
		t.Fatalf("stream: %d events, want the task, working, 3 chunks and the end", len(events))
	}
	last, ok := events[len(events)-1].(*sdk.TaskStatusUpdateEvent)
	if !ok || last.Status.State != sdk.TaskStateCompleted {
		t.Fatalf("last event %#v is not the completion", events[len(events)-1])
	}
	if first := events[0].TaskInfo().TaskID; first == "" || last.TaskID != first {
		t.Fatalf("stream task ids %q and %q: want one gateway task id", first, last.TaskID)
	}

	// Unknown task: the SDK's typed error, from the HTTP+JSON error body.
	_, err = c.GetTask(ctx, &sdk.GetTaskRequest{ID: "no-such-task"})
	if !errors.Is(err, sdk.ErrTaskNotFound) {
		t.Fatalf("GetTask of an unknown task: %v, want ErrTaskNotFound", err)
	}
	_, err = c.CancelTask(ctx, &sdk.CancelTaskRequest{ID: task.ID})
	if !errors.Is(err, sdk.ErrTaskNotCancelable) {
		t.Fatalf("CancelTask of a completed task: %v, want ErrTaskNotCancelable", err)
	}

	want := []string{"POST /agents/triage/message:send", "GET /agents/triage/tasks/" + string(task.ID),
		"POST /agents/triage/message:stream", "GET /agents/triage/tasks/no-such-task", "POST /agents/triage/tasks/" + string(task.ID) + ":cancel"}
	if strings.Join(rec.urls, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the client did not speak HTTP+JSON:\n%s", strings.Join(rec.urls, "\n"))
	}
}

// Failover is the call path's: a dead replica is ejected and the task runs on the live one.
func TestRESTSendFailsOverToALiveReplica(t *testing.T) {
	dead := testutil.ClosedURL(t)
	live := startAgent(t, "triage", "1", simagent.Config{})
	g, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, dead, live)))
	for range 3 { // load the live replica so that the first task goes to the dead one
		defer g.tasks.pool.tracker.Acquire(live)()
	}
	tr := restTransport(t, srv.URL, "triage", nil)
	for i := range 5 {
		res, err := tr.SendMessage(t.Context(), nil, userMessage("x"))
		if task, ok := res.(*sdk.Task); err != nil || !ok || task.Status.State != sdk.TaskStateCompleted {
			t.Fatalf("send %d: %#v, %v", i, res, err)
		}
	}
	if !g.tasks.pool.ejector.Ejected(dead, time.Now()) {
		t.Fatal("the dead replica is not ejected")
	}
}

// An error after the stream started is an {"error": ...} event, which the SDK's REST stream
// turns into its typed error.
func TestRESTMidStreamFailureIsAnErrorEvent(t *testing.T) {
	agent := streamingAgent(t, func(w http.ResponseWriter) {
		fmt.Fprint(w, "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"task\":{\"id\":\"t1\",\"contextId\":\"c\",\"status\":{\"state\":\"TASK_STATE_WORKING\"}}}}\n\n")
		w.(http.Flusher).Flush()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close() // the replica dies mid-stream
		}
	})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, agent)))
	var events []sdk.Event
	var last error
	for ev, err := range restTransport(t, srv.URL, "triage", nil).SendStreamingMessage(t.Context(), nil, userMessage("x")) {
		if err != nil {
			last = err
			break
		}
		events = append(events, ev)
	}
	// The gateway's own reasons are outside the A2A domain: the SDK reports them as internal.
	if len(events) != 1 || !errors.Is(last, sdk.ErrInternalError) || !strings.Contains(last.Error(), "broke off") {
		t.Fatalf("stream: %d events, then %v; want the agent's event, then the gateway's error", len(events), last)
	}
	if task, ok := events[0].(*sdk.Task); !ok || task.ID == "t1" {
		t.Fatalf("first event %#v: want the task under the gateway's id", events[0])
	}
}

func TestRESTCancelAndSubscribeToAWorkingTask(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{Latency: latency(t, "700ms")})
	g, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, a0)))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.tasks.Start(ctx) }()
	defer func() { cancel(); <-done }()
	c := restClient(t, srv.URL, "triage", nil)

	send := func(text string) sdk.TaskID {
		req := userMessage(text)
		req.Config = &sdk.SendMessageConfig{ReturnImmediately: true}
		res, err := c.SendMessage(t.Context(), req)
		if err != nil {
			t.Fatalf("SendMessage: %v", err)
		}
		task, ok := res.(*sdk.Task)
		if !ok {
			t.Fatalf("SendMessage = %#v, want a task", res)
		}
		journaled(t, g, string(task.ID), store.StateDispatched)
		return task.ID
	}

	id := send("chest pain")
	var states []sdk.TaskState
	for ev, err := range c.SubscribeToTask(t.Context(), &sdk.SubscribeToTaskRequest{ID: id}) {
		if err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		switch e := ev.(type) {
		case *sdk.Task:
			states = append(states, e.Status.State)
		case *sdk.TaskStatusUpdateEvent:
			states = append(states, e.Status.State)
		}
	}
	if len(states) < 2 || states[len(states)-1] != sdk.TaskStateCompleted {
		t.Fatalf("subscription states %v: want the snapshot and the completion", states)
	}

	id = send("fever")
	task, err := c.CancelTask(t.Context(), &sdk.CancelTaskRequest{ID: id})
	if err != nil || task.ID != id || task.Status.State != sdk.TaskStateCanceled {
		t.Fatalf("CancelTask = %+v, %v", task, err)
	}
}

// restCall sends one raw HTTP+JSON request and decodes a google.rpc.Status error body.
func restCall(t *testing.T, method, u, contentType, body string, header ...string) (int, http.Header, restErrorBody) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var e restErrorBody
	_ = json.NewDecoder(res.Body).Decode(&e)
	return res.StatusCode, res.Header, e
}

type restErrorBody struct {
	Error struct {
		Code    int    `json:"code"`
		Status  string `json:"status"`
		Message string `json:"message"`
		Details []struct {
			Type   string `json:"@type"`
			Reason string `json:"reason"`
			Domain string `json:"domain"`
		} `json:"details"`
	} `json:"error"`
}

func (e restErrorBody) reason() string {
	for _, d := range e.Error.Details {
		if d.Type == errorInfoType {
			return d.Reason
		}
	}
	return ""
}

func TestRESTRefusals(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, a0)), func(o *Options) { o.MaxBodyBytes = 1024 })
	base := srv.URL + "/agents/triage"
	send := `{"message":{"messageId":"m1","role":"ROLE_USER","parts":[{"text":"x"}]}}`
	for _, tc := range []struct {
		name, method, path, contentType, body string
		header                                []string
		status                                int
		reason                                string
	}{
		{"unknown path", "GET", "/tasks/x/history", "", "", nil, 404, "METHOD_NOT_FOUND"},
		{"unknown root", "POST", "/message:publish", "application/json", send, nil, 404, "METHOD_NOT_FOUND"},
		{"v0.3 binding", "POST", "/v1/message:send", "application/json", send, nil, 404, "METHOD_NOT_FOUND"},
		{"wrong verb", "GET", "/message:send", "", "", nil, 405, "METHOD_NOT_FOUND"},
		{"wrong verb on a task", "DELETE", "/tasks/x", "", "", nil, 405, "METHOD_NOT_FOUND"},
		{"bad JSON", "POST", "/message:send", "application/json", `{"message":`, nil, 400, "PARSE_ERROR"},
		{"body not an object", "POST", "/message:send", "application/json", `[1]`, nil, 400, "INVALID_PARAMS"},
		{"duplicate keys", "POST", "/message:send", "application/json", `{"message":{},"message":{}}`, nil, 400, "INVALID_REQUEST"},
		{"no body", "POST", "/message:send", "application/json", "", nil, 400, "INVALID_REQUEST"},
		{"no Content-Type", "POST", "/message:send", "", send, nil, 415, "INVALID_REQUEST"},
		{"text Content-Type", "POST", "/message:send", "text/plain", send, nil, 415, "INVALID_REQUEST"},
		{"oversized", "POST", "/message:send", "application/json", `{"message":{"x":"` + strings.Repeat("a", 2048) + `"}}`, nil, 413, "REQUEST_TOO_LARGE"},
		{"body on a GET", "GET", "/tasks/x", "application/json", `{}`, nil, 400, "INVALID_REQUEST"},
		{"bad historyLength", "GET", "/tasks/x?historyLength=many", "", "", nil, 400, "INVALID_REQUEST"},
		{"unknown task", "GET", "/tasks/x", "", "", nil, 404, "TASK_NOT_FOUND"},
		{"cross-origin cancel", "POST", "/tasks/x:cancel", "", "", []string{"Sec-Fetch-Site", "cross-site"}, 403, "INVALID_REQUEST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, header, e := restCall(t, tc.method, base+tc.path, tc.contentType, tc.body, tc.header...)
			if status != tc.status || e.Error.Code != tc.status || e.reason() != tc.reason || e.Error.Message == "" {
				t.Fatalf("%s %s: %d %+v, want %d %s", tc.method, tc.path, status, e, tc.status, tc.reason)
			}
			if ct := header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			if status == 405 && header.Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}

	status, _, e := restCall(t, "GET", srv.URL+"/agents/nope/tasks/x", "", "")
	if status != http.StatusNotFound || e.reason() != "AGENT_NOT_FOUND" || !strings.Contains(e.Error.Message, "nope") {
		t.Fatalf("unknown agent: %d %+v", status, e)
	}
	_, err := restTransport(t, srv.URL, "nope", nil).GetTask(t.Context(), nil, &sdk.GetTaskRequest{ID: "x"})
	if err == nil || errors.Is(err, sdk.ErrTaskNotFound) {
		t.Fatalf("unknown agent through the SDK: %v, want an error that is not a missing task", err)
	}
}

func TestRESTIsAuthenticatedAuthorizedAndAudited(t *testing.T) {
	s := newSecureGateway(t)
	tr := restTransport(t, s.url, "triage", nil)
	ctx := t.Context()
	if _, err := tr.GetTask(ctx, nil, &sdk.GetTaskRequest{ID: "x"}); !errors.Is(err, sdk.ErrUnauthenticated) {
		t.Fatalf("no credentials: %v, want ErrUnauthenticated", err)
	}
	status, header, e := restCall(t, "GET", s.url+"/agents/triage/tasks/x", "", "")
	if status != http.StatusUnauthorized || header.Get("WWW-Authenticate") == "" || e.reason() != "UNAUTHENTICATED" {
		t.Fatalf("no credentials: %d %+v", status, e)
	}
	alice := a2aclient.ServiceParams{"Authorization": {"Bearer " + keyAlice}}
	if _, err := tr.GetTask(ctx, alice, &sdk.GetTaskRequest{ID: "x"}); !errors.Is(err, sdk.ErrTaskNotFound) {
		t.Fatalf("alice, unknown task: %v", err)
	}
	// Alice may not call billing.
	_, err := restTransport(t, s.url, "billing", nil).GetTask(ctx, alice, &sdk.GetTaskRequest{ID: "x"})
	if !errors.Is(err, sdk.ErrUnauthorized) {
		t.Fatalf("alice on billing: %v, want ErrUnauthorized", err)
	}
	res, err := tr.SendMessage(ctx, alice, userMessage("hello"))
	if err != nil {
		t.Fatalf("alice SendMessage: %v", err)
	}
	task := res.(*sdk.Task)
	// Another tenant's task is not found, as over JSON-RPC.
	bob := a2aclient.ServiceParams{"Authorization": {"Bearer key-bob-0123456789abcdef0123456789"}}
	if _, err := tr.GetTask(ctx, bob, &sdk.GetTaskRequest{ID: task.ID}); !errors.Is(err, sdk.ErrTaskNotFound) {
		t.Fatalf("bob reads alice's task: %v, want ErrTaskNotFound", err)
	}

	var got []string
	for _, r := range auditRecords(t, s.auditDir) {
		if r.Route == "a2a-rest" {
			got = append(got, r.Subject+" "+r.Agent+" "+r.Method+" "+r.Outcome)
		}
	}
	want := []string{
		"anonymous triage  unauthenticated", "anonymous triage  unauthenticated",
		"alice triage GetTask task-not-found", "alice billing GetTask forbidden",
		"alice triage SendMessage ok", "bob triage GetTask task-not-found",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit of HTTP+JSON calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Methods the gateway passes to a replica (ListTasks, push notification configs, the extended
// card) reach it as their JSON-RPC twins do, and their answers, results or errors, reach the
// SDK in the binding's shapes.
func TestRESTPassesOtherMethodsOn(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, a0)))
	tr := restTransport(t, srv.URL, "triage", nil)
	ctx := t.Context()
	answered := func(what string, err error) {
		t.Helper()
		// An error body the SDK cannot read as the binding's is an internal error to it.
		var ae *sdk.Error
		if err != nil && (!errors.As(err, &ae) || errors.Is(err, sdk.ErrInternalError)) {
			t.Fatalf("%s: %v, want a result or a typed A2A error", what, err)
		}
	}
	_, err := tr.ListTasks(ctx, nil, &sdk.ListTasksRequest{PageSize: 5})
	answered("ListTasks", err)
	_, err = tr.GetExtendedAgentCard(ctx, nil, &sdk.GetExtendedAgentCardRequest{})
	answered("GetExtendedAgentCard", err)
	_, err = tr.CreateTaskPushConfig(ctx, nil, &sdk.PushConfig{TaskID: "x", URL: "https://hook.test/x"})
	answered("CreateTaskPushConfig", err)
	_, err = tr.ListTaskPushConfigs(ctx, nil, &sdk.ListTaskPushConfigRequest{TaskID: "x"})
	answered("ListTaskPushConfigs", err)
	_, err = tr.GetTaskPushConfig(ctx, nil, &sdk.GetTaskPushConfigRequest{TaskID: "x", ID: "y"})
	answered("GetTaskPushConfig", err)
	answered("DeleteTaskPushConfig", tr.DeleteTaskPushConfig(ctx, nil, &sdk.DeleteTaskPushConfigRequest{TaskID: "x", ID: "y"}))
}

// The A2A reasons are the SDK's own, so that its clients type the errors.
func TestRESTReasonsAreTheSDKs(t *testing.T) {
	for code, sentinel := range map[int]error{
		a2a.CodeParseError: sdk.ErrParseError, a2a.CodeInvalidRequest: sdk.ErrInvalidRequest, a2a.CodeMethodNotFound: sdk.ErrMethodNotFound,
		a2a.CodeInvalidParams: sdk.ErrInvalidParams, a2a.CodeInternalError: sdk.ErrInternalError, codeServerError: sdk.ErrServerError,
		a2a.CodeTaskNotFound: sdk.ErrTaskNotFound, a2a.CodeTaskNotCancelable: sdk.ErrTaskNotCancelable,
		a2a.CodePushNotSupported: sdk.ErrPushNotificationNotSupported, a2a.CodeUnsupportedOp: sdk.ErrUnsupportedOperation,
		a2a.CodeContentTypeNotSupported: sdk.ErrUnsupportedContentType, a2a.CodeInvalidAgentResponse: sdk.ErrInvalidAgentResponse,
		codeExtendedCardNotConfigured: sdk.ErrExtendedCardNotConfigured, codeExtensionSupportRequired: sdk.ErrExtensionSupportRequired,
		codeVersionNotSupported: sdk.ErrVersionNotSupported, codeUnauthenticated: sdk.ErrUnauthenticated,
		codeUnauthorized: sdk.ErrUnauthorized, CodeForbidden: sdk.ErrUnauthorized,
	} {
		if rc := restCodes[code]; rc.reason != sdk.ErrorReason(sentinel) || rc.domain != sdk.ProtocolDomain {
			t.Errorf("code %d: reason %s in %s, the SDK's is %s", code, rc.reason, rc.domain, sdk.ErrorReason(sentinel))
		}
	}
}

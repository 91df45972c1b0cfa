package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/simagent"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/telemetry"
	"github.com/agentplane/agentplane/internal/testutil"
)

// webhook is a push notification receiver that records every POST.
type webhook struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []notification
	// fail decides the answer to a POST from what it carries: true answers 500.
	fail func(n notification, earlier []notification) bool
}

type notification struct {
	id, token, auth string
	state           string // the task's state in the body
	taskID          string
	body            []byte
	failed          bool
}

func newWebhook(t *testing.T, fail func(n notification, earlier []notification) bool) *webhook {
	t.Helper()
	w := &webhook{fail: fail}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := notification{id: r.Header.Get(HeaderNotificationID), token: r.Header.Get(HeaderNotificationToken),
			auth: r.Header.Get("Authorization"), body: body}
		n.taskID, n.state, _ = testutil.TaskIDAndState(body) // v1.0 {"task": …}, or the v0.3 Task itself
		w.mu.Lock()
		n.failed = w.fail != nil && w.fail(n, w.got)
		w.got = append(w.got, n)
		w.mu.Unlock()
		if n.failed {
			http.Error(rw, "not now", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhook) received() []notification {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]notification(nil), w.got...)
}

// loopbackAllowed lets webhooks on this machine be called, as tests need.
func loopbackAllowed(o *Options) {
	o.Push.AllowedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
}

// startPusher runs the gateway's push delivery with quick retries until the test ends.
func startPusher(t *testing.T, g *Gateway) {
	t.Helper()
	g.pusher.retries = pushRetry{first: 10 * time.Millisecond, max: 50 * time.Millisecond, giveUpAfter: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.pusher.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("pusher: %v", err)
		}
	})
}

func asyncSendV1WithPush(id int, hook, extra string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"SendMessage","params":{"message":{"messageId":"m-%d","role":"ROLE_USER","parts":[{"text":"CT head, pre-read"}]},`+
		`"configuration":{"returnImmediately":true,"taskPushNotificationConfig":{"url":%q%s}}}}`, id, id, hook, extra)
}

// A webhook that fails gets the task again until it takes it, with its token and credentials,
// and the same notification id on every retry of one state; the final state arrives.
func TestPushNotificationIsRetriedUntilTheWebhookTakesIt(t *testing.T) {
	const failures = 3
	hook := newWebhook(t, func(n notification, earlier []notification) bool {
		failedDone := 0
		for _, e := range earlier {
			if e.failed && e.state == "TASK_STATE_COMPLETED" {
				failedDone++
			}
		}
		return n.state != "TASK_STATE_COMPLETED" || failedDone < failures
	})
	a0 := startAgent(t, "radiology", "0", simagent.Config{Latency: latency(t, "50ms")})
	g, srv := newGateway(t, testutil.NewSource(testutil.Agent("radiology", 4, a0)), loopbackAllowed)
	startPusher(t, g)
	go func() { _ = g.tasks.Start(t.Context()) }() // the async queue

	r := post(t, srv.URL+"/agents/radiology", asyncSendV1WithPush(1, hook.srv.URL+"/a2a/push?case=7",
		`,"token":"tok-1","authentication":{"scheme":"Bearer","credentials":"cred-1"}`))
	id, _ := taskState(t, r.resp.Result)
	if r.resp.Error != nil || id == "" {
		t.Fatalf("SendMessage: %s", r.raw)
	}
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		for _, n := range hook.received() {
			if !n.failed && n.state == "TASK_STATE_COMPLETED" {
				return nil
			}
		}
		return errors.New("the completed task has not been taken by the webhook")
	})
	var doneIDs []string
	for _, n := range hook.received() {
		if n.token != "tok-1" || n.auth != "Bearer cred-1" || n.taskID != id {
			t.Errorf("notification: token %q, authorization %q, task %q; want tok-1, Bearer cred-1, %s", n.token, n.auth, n.taskID, id)
		}
		if !strings.HasPrefix(n.id, id+":") {
			t.Errorf("notification id %q does not start with the task id", n.id)
		}
		if n.state == "TASK_STATE_COMPLETED" {
			doneIDs = append(doneIDs, n.id)
		}
	}
	if len(doneIDs) != failures+1 {
		t.Fatalf("the completed task was POSTed %d times, want %d (3 failures, then success)", len(doneIDs), failures+1)
	}
	for _, nid := range doneIDs {
		if nid != doneIDs[0] {
			t.Errorf("notification ids of one state differ across retries: %v", doneIDs)
		}
	}
	var body struct {
		Task json.RawMessage `json:"task"`
	}
	last := hook.received()[len(hook.received())-1]
	if err := json.Unmarshal(last.body, &body); err != nil || len(body.Task) == 0 || !strings.Contains(string(body.Task), "processed") {
		t.Errorf("the v1.0 notification is not a StreamResponse with the agent's task: %s", last.body)
	}
	// Nothing more comes once the webhook took the final state.
	n := len(hook.received())
	time.Sleep(200 * time.Millisecond)
	if len(hook.received()) != n {
		t.Errorf("%d more notifications after the final one was taken", len(hook.received())-n)
	}
}

// A v0.3 task is notified with the v0.3 Task object itself.
func TestPushNotificationV03(t *testing.T) {
	hook := newWebhook(t, nil)
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	g, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, a0)), loopbackAllowed)
	startPusher(t, g)
	go func() { _ = g.tasks.Start(t.Context()) }()
	r := post(t, srv.URL+"/agents/triage", fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"kind":"message","messageId":"m-1","role":"user","parts":[{"kind":"text","text":"hi"}]},`+
		`"configuration":{"blocking":false,"pushNotificationConfig":{"url":%q,"token":"t03"}}}}`, hook.srv.URL))
	id, _ := taskState(t, r.resp.Result)
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		for _, n := range hook.received() {
			if n.state == "completed" && n.taskID == id && n.token == "t03" && bytes.Contains(n.body, []byte(`"kind":"task"`)) {
				return nil
			}
		}
		return fmt.Errorf("no v0.3 completed task among %d notifications", len(hook.received()))
	})
}

// recordingProxy passes requests to an agent and keeps their bodies.
func recordingProxy(t *testing.T, agent string) (string, func() []string) {
	t.Helper()
	u, _ := url.Parse(agent)
	rp := httputil.NewSingleHostReverseProxy(u)
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), bodies...) }
}

// A config given with the message is stored with the task, and the agent never sees it.
func TestPushConfigInSendIsStoredAndNotForwarded(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	proxy, bodies := recordingProxy(t, a0)
	g, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, proxy)), loopbackAllowed)
	const hook = "http://127.0.0.1:9/secret-path"
	body := strings.Replace(asyncSendV1WithPush(1, hook, `,"id":"cfg-1","token":"tok-secret"`), `"returnImmediately":true`, `"returnImmediately":false`, 1)
	r := post(t, srv.URL+"/agents/triage", body)
	id, state := taskState(t, r.resp.Result)
	if r.resp.Error != nil || state != "TASK_STATE_COMPLETED" {
		t.Fatalf("SendMessage: %s", r.raw)
	}
	stored, err := g.tasks.journal.store.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored.Push) != 1 || stored.Push[0].ID != "cfg-1" || stored.Push[0].URL != hook || stored.Push[0].Token != "tok-secret" {
		t.Errorf("stored push configs = %+v", stored.Push)
	}
	if strings.Contains(string(stored.Request), "secret") {
		t.Errorf("the journaled request (sent again on re-dispatch) holds the config: %s", stored.Request)
	}
	sent := bodies()
	if len(sent) == 0 {
		t.Fatal("the agent got nothing")
	}
	for _, b := range sent {
		if strings.Contains(b, "secret") || strings.Contains(b, "PushNotification") {
			t.Errorf("the agent saw the push config: %s", b)
		}
	}
	// The client reads it back.
	g2 := post(t, srv.URL+"/agents/triage", fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"ListTaskPushNotificationConfigs","params":{"taskId":%q}}`, id))
	if !strings.Contains(g2.raw, `"cfg-1"`) {
		t.Errorf("ListTaskPushNotificationConfigs: %s", g2.raw)
	}
}

func rpcCall(t *testing.T, url, method, params string) rpcReply {
	t.Helper()
	return post(t, url, fmt.Sprintf(`{"jsonrpc":"2.0","id":9,"method":%q,"params":%s}`, method, params))
}

// The four methods in both dialects, answered by the gateway from the journal.
func TestPushConfigMethodsRoundTrip(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, a0)), loopbackAllowed) // the queue is not consumed: tasks stay submitted
	agent := srv.URL + "/agents/triage"
	r := post(t, agent, strings.Replace(sendV1(1, "x"), `"params":{`, `"params":{"configuration":{"returnImmediately":true},`, 1))
	id, _ := taskState(t, r.resp.Result)

	// v1.0: create with and without an id, get, list, delete.
	c := rpcCall(t, agent, "CreateTaskPushNotificationConfig", fmt.Sprintf(`{"taskId":%q,"url":"http://127.0.0.1:1/a","token":"t1","authentication":{"scheme":"Bearer","credentials":"c1"}}`, id))
	var created struct {
		ID, TaskID, URL, Token string
		Authentication         struct{ Scheme, Credentials string }
	}
	if c.resp.Error != nil || json.Unmarshal(c.resp.Result, &created) != nil || created.ID == "" || created.TaskID != id ||
		created.URL != "http://127.0.0.1:1/a" || created.Token != "t1" || created.Authentication.Scheme != "Bearer" {
		t.Fatalf("create: %s", c.raw)
	}
	if c := rpcCall(t, agent, "CreateTaskPushNotificationConfig", fmt.Sprintf(`{"taskId":%q,"id":"mine","url":"http://127.0.0.1:1/b"}`, id)); c.resp.Error != nil || !strings.Contains(c.raw, `"id":"mine"`) {
		t.Fatalf("create with id: %s", c.raw)
	}
	if g := rpcCall(t, agent, "GetTaskPushNotificationConfig", fmt.Sprintf(`{"taskId":%q,"id":%q}`, id, created.ID)); g.resp.Error != nil || !strings.Contains(g.raw, `"url":"http://127.0.0.1:1/a"`) {
		t.Fatalf("get: %s", g.raw)
	}
	var list struct{ Configs []json.RawMessage }
	if l := rpcCall(t, agent, "ListTaskPushNotificationConfigs", fmt.Sprintf(`{"taskId":%q}`, id)); json.Unmarshal(l.resp.Result, &list) != nil || len(list.Configs) != 2 {
		t.Fatalf("list: %s", l.raw)
	}
	if d := rpcCall(t, agent, "DeleteTaskPushNotificationConfig", fmt.Sprintf(`{"taskId":%q,"id":"mine"}`, id)); d.resp.Error != nil || string(d.resp.Result) != "{}" {
		t.Fatalf("delete: %s", d.raw)
	}
	if g := rpcCall(t, agent, "GetTaskPushNotificationConfig", fmt.Sprintf(`{"taskId":%q,"id":"mine"}`, id)); g.resp.Error == nil || g.resp.Error.Code != a2a.CodeInvalidParams {
		t.Fatalf("get after delete: %s", g.raw)
	}

	// v0.3 sees the same configs in its own shape.
	s := rpcCall(t, agent, "tasks/pushNotificationConfig/set", fmt.Sprintf(`{"taskId":%q,"pushNotificationConfig":{"id":"old","url":"http://127.0.0.1:1/c","authentication":{"schemes":["Basic"],"credentials":"dXNlcjpwdw=="}}}`, id))
	if s.resp.Error != nil || !strings.Contains(s.raw, `"pushNotificationConfig":{"id":"old"`) || !strings.Contains(s.raw, `"schemes":["Basic"]`) {
		t.Fatalf("v0.3 set: %s", s.raw)
	}
	var list03 []json.RawMessage
	if l := rpcCall(t, agent, "tasks/pushNotificationConfig/list", fmt.Sprintf(`{"id":%q}`, id)); json.Unmarshal(l.resp.Result, &list03) != nil || len(list03) != 2 {
		t.Fatalf("v0.3 list: %s", l.raw)
	}
	if g := rpcCall(t, agent, "tasks/pushNotificationConfig/get", fmt.Sprintf(`{"id":%q,"pushNotificationConfigId":"old"}`, id)); g.resp.Error != nil || !strings.Contains(g.raw, `"url":"http://127.0.0.1:1/c"`) {
		t.Fatalf("v0.3 get: %s", g.raw)
	}
	if d := rpcCall(t, agent, "tasks/pushNotificationConfig/delete", fmt.Sprintf(`{"id":%q,"pushNotificationConfigId":"old"}`, id)); d.resp.Error != nil || string(d.resp.Result) != "null" {
		t.Fatalf("v0.3 delete: %s", d.raw)
	}

	// At most MaxPushConfigs per task; re-setting an id replaces it.
	for i := range MaxPushConfigs + 1 {
		c := rpcCall(t, agent, "CreateTaskPushNotificationConfig", fmt.Sprintf(`{"taskId":%q,"id":"n%d","url":"http://127.0.0.1:1/n"}`, id, i%(MaxPushConfigs-1)))
		if c.resp.Error != nil {
			t.Fatalf("create n%d: %s", i, c.raw)
		}
	}
	if c := rpcCall(t, agent, "CreateTaskPushNotificationConfig", fmt.Sprintf(`{"taskId":%q,"id":"one-too-many","url":"http://127.0.0.1:1/n"}`, id)); c.resp.Error == nil || c.resp.Error.Code != a2a.CodeInvalidParams {
		t.Fatalf("config beyond the limit: %s", c.raw)
	}

	// Refused webhooks, each with the reason.
	for _, tc := range []struct{ url, why string }{
		{"http://169.254.169.254/latest/meta-data", "link-local"},
		{"http://10.1.2.3/hook", "private"},
		{"ftp://hooks.example/x", "scheme"},
		{"/relative", "scheme"},
		{"http:///x", "absolute"},
		{"http://user:pw@127.0.0.1/x", "user"},
	} {
		c := rpcCall(t, agent, "CreateTaskPushNotificationConfig", fmt.Sprintf(`{"taskId":%q,"url":%q}`, id, tc.url))
		if c.resp.Error == nil || c.resp.Error.Code != a2a.CodeInvalidParams || !strings.Contains(c.resp.Error.Message, tc.why) {
			t.Errorf("create %s: %s, want -32602 naming %q", tc.url, c.raw, tc.why)
		}
	}
	// A task that does not exist.
	if c := rpcCall(t, agent, "ListTaskPushNotificationConfigs", `{"taskId":"no-such-task"}`); c.resp.Error == nil || c.resp.Error.Code != a2a.CodeTaskNotFound {
		t.Errorf("list of an unknown task: %s", c.raw)
	}
}

// Another tenant's task answers TaskNotFound to every push config method, and no token reaches
// the logs.
func TestPushConfigOfAnotherTenantsTaskIsNotFound(t *testing.T) {
	s := newSecureGateway(t)
	const alice, bob = "key-alice-0123456789abcdef0123456789", "key-bob-0123456789abcdef0123456789"
	_, _, r, raw := s.post(t, "triage", alice, asyncSendV1WithPush(1, "https://203.0.113.7/hook", `,"id":"a1","token":"tok-secret-alice"`))
	if r.Error != nil {
		t.Fatalf("alice's send: %s", raw)
	}
	id, _ := taskState(t, r.Result)
	for _, m := range []struct{ method, params string }{
		{"GetTaskPushNotificationConfig", fmt.Sprintf(`{"taskId":%q,"id":"a1"}`, id)},
		{"ListTaskPushNotificationConfigs", fmt.Sprintf(`{"taskId":%q}`, id)},
		{"CreateTaskPushNotificationConfig", fmt.Sprintf(`{"taskId":%q,"url":"https://203.0.113.8/bob"}`, id)},
		{"DeleteTaskPushNotificationConfig", fmt.Sprintf(`{"taskId":%q,"id":"a1"}`, id)},
		{"tasks/pushNotificationConfig/get", fmt.Sprintf(`{"id":%q}`, id)},
	} {
		_, _, r, raw := s.post(t, "triage", bob, fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":%q,"params":%s}`, m.method, m.params))
		if r.Error == nil || r.Error.Code != a2a.CodeTaskNotFound || strings.Contains(raw, "tok-secret") {
			t.Errorf("bob's %s on alice's task: %s", m.method, raw)
		}
	}
	if _, _, r, raw := s.post(t, "triage", alice, fmt.Sprintf(`{"jsonrpc":"2.0","id":3,"method":"ListTaskPushNotificationConfigs","params":{"taskId":%q}}`, id)); r.Error != nil || !strings.Contains(raw, "tok-secret-alice") {
		t.Errorf("alice's own list: %s", raw)
	}
	if strings.Contains(s.logs.String(), "tok-secret") {
		t.Error("a push notification token reached the logs")
	}
}

func TestWebhookPolicy(t *testing.T) {
	none := webhookPolicy{}
	some := webhookPolicy{allowed: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}}
	for _, tc := range []struct {
		addr        string
		none, other bool // allowed with no allowance, with "some"
	}{
		{"203.0.113.7", true, true},
		{"2001:db8::1", true, true},
		{"127.0.0.1", false, true},
		{"127.0.0.2", false, false},
		{"::1", false, false},
		{"::ffff:127.0.0.1", false, true}, // IPv4-mapped: judged as the IPv4 address
		{"0.0.0.0", false, false},
		{"::", false, false},
		{"10.20.30.40", false, true},
		{"172.16.0.1", false, false},
		{"172.31.255.255", false, false},
		{"172.32.0.1", true, true},
		{"192.168.1.1", false, false},
		{"fd12:3456::1", false, false},
		{"169.254.169.254", false, false},
		{"fe80::1%eth0", false, false},
		{"100.64.0.1", false, false},
		{"100.127.255.255", false, false},
		{"100.128.0.1", true, true},
		{"224.0.0.1", false, false},
		{"ff02::1", false, false},
		{"255.255.255.255", false, false},
	} {
		a := netip.MustParseAddr(tc.addr)
		if got := none.checkAddr(a) == nil; got != tc.none {
			t.Errorf("%s with no allowance: allowed = %v, want %v", tc.addr, got, tc.none)
		}
		if got := some.checkAddr(a) == nil; got != tc.other {
			t.Errorf("%s with 10/8 and 127.0.0.1/32 allowed: allowed = %v, want %v", tc.addr, got, tc.other)
		}
		if err := none.checkURL(t.Context(), "http://"+netip.AddrPortFrom(a.WithZone(""), 80).String()+"/x"); (err == nil) != tc.none {
			t.Errorf("URL of %s: err = %v", tc.addr, err)
		}
	}
	for _, u := range []string{"http://localhost:8080/x", "mailto:x@example.com", "http://[::1]/", "https:///x", "http://u@203.0.113.7/", "javascript:alert(1)"} {
		if err := none.checkURL(t.Context(), u); !errors.Is(err, errWebhookRefused) {
			t.Errorf("%s: err = %v, want a refusal", u, err)
		}
	}
}

// A name that resolves to a refused address is refused when the connection is made, whatever
// it resolved to when the config was created (DNS rebinding).
func TestWebhookDialRefusesLoopbackByName(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, port, _ := strings.Cut(srv.Listener.Addr().String(), ":")
	hook := store.PushConfig{ID: "c", URL: "http://localhost:" + port + "/hook"}
	p := &pusher{client: webhookPolicy{}.client(2 * time.Second)}
	err := p.post(t.Context(), hook, "t:1", []byte(`{}`))
	if !errors.Is(err, errWebhookRefused) {
		t.Fatalf("POST to localhost: err = %v, want a refusal", err)
	}
	if strings.Contains(err.Error(), "/hook") {
		t.Errorf("the error shows the URL: %v", err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the receiver on loopback got %d requests", n)
	}
	// Allowed, the same POST goes through.
	p.client = webhookPolicy{allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}.client(2 * time.Second)
	if err := p.post(t.Context(), hook, "t:1", []byte(`{}`)); err != nil || hits.Load() != 1 {
		t.Errorf("allowed POST: err = %v, hits = %d", err, hits.Load())
	}
}

func TestPushRetryPolicy(t *testing.T) {
	r := pushRetry{first: time.Second, max: 5 * time.Minute, giveUpAfter: 24 * time.Hour}
	q := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		delivery int
		now      time.Time
		want     time.Duration
		ok       bool
	}{
		{1, q, time.Second, true},
		{2, q.Add(time.Second), 2 * time.Second, true},
		{5, q.Add(time.Minute), 16 * time.Second, true},
		{9, q.Add(time.Hour), 256 * time.Second, true},
		{10, q.Add(time.Hour), 5 * time.Minute, true},
		{1000, q.Add(2 * time.Hour), 5 * time.Minute, true},
		{300, q.Add(24*time.Hour - time.Minute), time.Minute, true}, // the last retry at the give-up time
		{301, q.Add(24 * time.Hour), 0, false},
		{2, q.Add(48 * time.Hour), 0, false},
	} {
		got, ok := r.next(tc.delivery, q, tc.now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("next(%d, +%s) = %s, %v; want %s, %v", tc.delivery, tc.now.Sub(q), got, ok, tc.want, tc.ok)
		}
	}
}

func TestCardAdvertisesPushNotifications(t *testing.T) {
	for _, card := range []string{
		`{"name":"x","supportedInterfaces":[{"url":"http://a","protocolBinding":"JSONRPC","protocolVersion":"1.0"}],"capabilities":{"streaming":true}}`,
		`{"name":"x","url":"http://a","protocolVersion":"0.3.0"}`,
	} {
		out, _, err := rewriteCard([]byte(card), "http://gw/agents/x", testutil.Agent("x", 1))
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Capabilities map[string]any `json:"capabilities"`
		}
		if err := json.Unmarshal(out, &c); err != nil || c.Capabilities["pushNotifications"] != true {
			t.Errorf("card %s: capabilities %v", out, c.Capabilities)
		}
		if strings.Contains(card, "streaming") && c.Capabilities["streaming"] != true {
			t.Errorf("the agent's own capabilities were lost: %s", out)
		}
	}
}

// A webhook that never takes a notification is given up on after GiveUpAfter: logged and
// counted, never with its URL or token in the log.
func TestPushNotificationIsGivenUp(t *testing.T) {
	hook := newWebhook(t, func(notification, []notification) bool { return true })
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	logs := &syncBuf{}
	metrics := telemetry.NewMetrics(telemetry.Options{NoRuntimeCollectors: true})
	g, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, a0)), loopbackAllowed, func(o *Options) {
		o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.Metrics = metrics
	})
	startPusher(t, g)
	g.pusher.retries.giveUpAfter = 300 * time.Millisecond
	go func() { _ = g.tasks.Start(t.Context()) }()
	r := post(t, srv.URL+"/agents/triage", asyncSendV1WithPush(1, hook.srv.URL+"/secret-path", `,"token":"tok-never-logged"`))
	if r.resp.Error != nil {
		t.Fatalf("send: %s", r.raw)
	}
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		return testutil.Check(strings.Contains(logs.String(), "push notification given up"), "not given up yet")
	})
	// Every notice of the task (one per state) gives up within its 300ms: then the webhook
	// hears nothing more.
	last, since := len(hook.received()), time.Now()
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := len(hook.received()); n != last {
			last, since = n, time.Now()
		}
		return testutil.Check(time.Since(since) > 500*time.Millisecond, "the webhook still gets POSTs")
	})
	if given := counterValue(t, metrics, "agentplane_push_notifications_total", "triage", telemetry.PushGivenUp); given < 1 {
		t.Errorf("given-up notifications counted: %v", given)
	}
	if l := logs.String(); strings.Contains(l, "tok-never-logged") || strings.Contains(l, "secret-path") {
		t.Errorf("the log shows the webhook's token or URL:\n%s", l)
	}
}

// counterValue reads one series of a counter from the gateway's registry; labels in name order.
func counterValue(t *testing.T, m *telemetry.Metrics, name string, labels ...string) float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			var vals []string
			for _, lp := range s.GetLabel() {
				vals = append(vals, lp.GetValue())
			}
			if strings.Join(vals, ",") == strings.Join(labels, ",") {
				return s.GetCounter().GetValue()
			}
		}
	}
	return 0
}

package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/simagent"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/testutil"
)

// tenantGateway runs a gateway with API keys for subjects of two tenants and a tenant admin, in
// front of a real simulated agent.
func tenantGateway(t *testing.T, mod ...func(*Options)) (url string, keys map[string]string) {
	_, url, keys = tenantGatewayOf(t, mod...)
	return url, keys
}

func tenantGatewayOf(t *testing.T, mod ...func(*Options)) (g *Gateway, url string, keys map[string]string) {
	t.Helper()
	cfg, err := configv1.Decode([]byte(`apiVersion: agentplane.io/v1alpha1
kind: GatewayConfig
auth:
  apiKeys:
  - {subject: alice, tenant: clinic-a, groups: [nurses], keyEnv: LIST_KEY_ALICE}
  - {subject: alma, tenant: clinic-a, groups: [nurses], keyEnv: LIST_KEY_ALMA}
  - {subject: bob, tenant: clinic-b, groups: [nurses], keyEnv: LIST_KEY_BOB}
  - {subject: head, tenant: clinic-a, groups: [heads], keyEnv: LIST_KEY_HEAD}
policies:
- {name: nurses, groups: [nurses], agents: [triage]}
- {name: heads, groups: [heads], agents: [triage], tenantAdmin: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	keys = map[string]string{}
	for _, s := range []string{"alice", "alma", "bob", "head"} {
		keys[s] = "list-key-" + s + "-0123456789abcdef0123456789"
		t.Setenv("LIST_KEY_"+strings.ToUpper(s), keys[s])
	}
	st, err := auth.FromConfig(cfg, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	o := Options{Source: testutil.NewSource(testutil.Agent("triage", 8, a0)), Journal: store.NewMemory(), Auth: st}
	for _, m := range mod {
		m(&o)
	}
	g, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	return g, srv.URL, keys
}

func rpc(t *testing.T, url, key, body string) a2a.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var r a2a.Response
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return r
}

type listed struct {
	Tasks []struct {
		ID        string                 `json:"id"`
		ContextID string                 `json:"contextId"`
		Status    struct{ State string } `json:"status"`
		History   []json.RawMessage      `json:"history"`
		Artifacts []json.RawMessage      `json:"artifacts"`
	} `json:"tasks"`
	TotalSize     int    `json:"totalSize"`
	PageSize      int    `json:"pageSize"`
	NextPageToken string `json:"nextPageToken"`
}

func list(t *testing.T, url, key, params string) listed {
	t.Helper()
	r := rpc(t, url, key, `{"jsonrpc":"2.0","id":1,"method":"ListTasks","params":`+params+`}`)
	if r.Error != nil {
		t.Fatalf("ListTasks(%s): %+v", params, r.Error)
	}
	var l listed
	if err := json.Unmarshal(r.Result, &l); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l listed) ids() []string {
	var out []string
	for _, t := range l.Tasks {
		out = append(out, t.ID)
	}
	return out
}

// ListTasks lists the caller's own tasks of the agent from the journal, with gateway ids,
// newest first, page by page; a tenant admin sees the tenant's; nobody sees another tenant's.
func TestListTasksFromTheJournal(t *testing.T) {
	url, keys := tenantGateway(t)
	agent := url + "/agents/triage"
	var alice []string // newest first
	for i := range 7 {
		ctx := "ctx-a"
		if i%2 == 1 {
			ctx = "ctx-b"
		}
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"SendMessage","params":{"message":{"messageId":"m-%d","contextId":%q,"role":"ROLE_USER","parts":[{"text":"hi"}]}}}`, i, i, ctx)
		r := rpc(t, agent, keys["alice"], body)
		if r.Error != nil {
			t.Fatal(r.Error)
		}
		id, state := taskState(t, r.Result)
		if state != "TASK_STATE_COMPLETED" {
			t.Fatalf("task %d: %s", i, state)
		}
		alice = append([]string{id}, alice...)
		time.Sleep(2 * time.Millisecond) // distinct update times
	}
	r := rpc(t, agent, keys["alma"], sendV1(100, "alma's"))
	almaID, _ := taskState(t, r.Result)
	r = rpc(t, agent, keys["bob"], sendV1(101, "bob's"))
	bobID, _ := taskState(t, r.Result)

	all := list(t, agent, keys["alice"], `{}`)
	if !slices.Equal(all.ids(), alice) || all.TotalSize != 7 || all.PageSize != 50 || all.NextPageToken != "" {
		t.Fatalf("alice's list = %v total %d page %d next %q, want %v", all.ids(), all.TotalSize, all.PageSize, all.NextPageToken, alice)
	}
	if len(all.Tasks[0].Artifacts) != 0 {
		t.Error("artifacts listed without includeArtifacts")
	}
	// Pages of 3 walk the same list.
	var walked []string
	tok, pages := "", 0
	for {
		p := list(t, agent, keys["alice"], fmt.Sprintf(`{"pageSize":3,"pageToken":%q}`, tok))
		if p.TotalSize != 7 || p.PageSize != 3 {
			t.Fatalf("page %d: total %d size %d", pages, p.TotalSize, p.PageSize)
		}
		walked = append(walked, p.ids()...)
		pages++
		if tok = p.NextPageToken; tok == "" {
			break
		}
	}
	if !slices.Equal(walked, alice) || pages != 3 {
		t.Fatalf("paged walk = %v in %d pages, want %v in 3", walked, pages, alice)
	}
	// Filters: context, state, time.
	if got := list(t, agent, keys["alice"], `{"contextId":"ctx-b"}`); got.TotalSize != 3 || !slices.Equal(got.ids(), []string{alice[1], alice[3], alice[5]}) {
		t.Errorf("contextId filter: %v", got.ids())
	}
	if got := list(t, agent, keys["alice"], `{"status":"TASK_STATE_WORKING"}`); got.TotalSize != 0 {
		t.Errorf("status filter: %v", got.ids())
	}
	if got := list(t, agent, keys["alice"], `{"status":"TASK_STATE_COMPLETED","includeArtifacts":true,"historyLength":0}`); got.TotalSize != 7 || len(got.Tasks[0].History) != 0 {
		t.Errorf("status completed: %d tasks, history %d", got.TotalSize, len(got.Tasks[0].History))
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if got := list(t, agent, keys["alice"], `{"statusTimestampAfter":"`+future+`"}`); got.TotalSize != 0 {
		t.Errorf("statusTimestampAfter in the future: %v", got.ids())
	}
	// Other subjects, other tenants, the tenant admin.
	if got := list(t, agent, keys["alma"], `{}`).ids(); !slices.Equal(got, []string{almaID}) {
		t.Errorf("alma sees %v", got)
	}
	if got := list(t, agent, keys["bob"], `{}`).ids(); !slices.Equal(got, []string{bobID}) {
		t.Errorf("bob (another tenant) sees %v", got)
	}
	if got := list(t, agent, keys["head"], `{}`); got.TotalSize != 8 || slices.Contains(got.ids(), bobID) || !slices.Contains(got.ids(), almaID) {
		t.Errorf("the tenant admin sees %v", got.ids())
	}
	// The same in v0.3.
	r = rpc(t, agent, keys["alice"], `{"jsonrpc":"2.0","id":9,"method":"tasks/list","params":{"pageSize":2}}`)
	var v03 listed
	if r.Error != nil || json.Unmarshal(r.Result, &v03) != nil || v03.TotalSize != 7 || len(v03.Tasks) != 2 || v03.Tasks[0].Status.State != "completed" {
		t.Errorf("tasks/list: %+v %s", r.Error, r.Result)
	}
}

func TestListTasksRefusesInvalidParams(t *testing.T) {
	url, keys := tenantGateway(t)
	for params, field := range map[string]string{
		`{"pageSize":0}`:                       "pageSize",
		`{"pageSize":101}`:                     "pageSize",
		`{"pageSize":2.5}`:                     "pageSize",
		`{"pageToken":"not-a-token"}`:          "pageToken",
		`{"pageToken":"MTIzOg"}`:               "pageToken",
		`{"status":"TASK_STATE_DONE"}`:         "status",
		`{"status":"completed"}`:               "status",
		`{"statusTimestampAfter":"yesterday"}`: "statusTimestampAfter",
		`{"historyLength":-1}`:                 "historyLength",
		`{"contextId":5}`:                      "params",
	} {
		r := rpc(t, url+"/agents/triage", keys["alice"], `{"jsonrpc":"2.0","id":1,"method":"ListTasks","params":`+params+`}`)
		if r.Error == nil || r.Error.Code != a2a.CodeInvalidParams || !strings.Contains(r.Error.Message, field) {
			t.Errorf("ListTasks(%s) = %+v %s, want -32602 naming %s", params, r.Error, r.Result, field)
		}
	}
}

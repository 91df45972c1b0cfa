package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/testutil"
)

// turnAgent is a multi-turn A2A agent (v1.0 JSON-RPC): a new message opens a task that asks for
// input; a message carrying that task's id completes it. Its tasks live in its memory only, so
// forget is what a restart does to them.
type turnAgent struct {
	url string
	mu  sync.Mutex
	n   int
	// tasks holds the open tasks by id; continued counts continuation messages received.
	tasks     map[string]bool
	continued int
}

func newTurnAgent(t *testing.T) *turnAgent {
	a := &turnAgent{tasks: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/agent-card.json", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"name":"intake","supportedInterfaces":[{"url":"http://%s/","protocolBinding":"JSONRPC","protocolVersion":"1.0"}]}`, r.Host)
	})
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID     json.RawMessage `json:"id"`
			Params struct {
				Message struct {
					TaskID    string `json:"taskId"`
					ContextID string `json:"contextId"`
				} `json:"message"`
			} `json:"params"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		m := req.Params.Message
		a.mu.Lock()
		defer a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		task := func(id, state string) {
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"task":{"id":%q,"contextId":%q,"status":{"state":%q}}}}`, req.ID, id, m.ContextID, state)
		}
		switch {
		case m.TaskID == "":
			a.n++
			id := fmt.Sprintf("up-%d", a.n)
			a.tasks[id] = true
			task(id, "TASK_STATE_INPUT_REQUIRED")
		case a.tasks[m.TaskID]:
			a.continued++
			delete(a.tasks, m.TaskID)
			task(m.TaskID, "TASK_STATE_COMPLETED")
		default:
			a.continued++
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":%d,"message":"task not found"}}`, req.ID, a2a.CodeTaskNotFound)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	a.url = srv.URL
	return a
}

func (a *turnAgent) forget() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tasks = map[string]bool{}
}

func (a *turnAgent) continuations() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.continued
}

func continueV1(id int, taskID, text string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"SendMessage","params":{"message":{"messageId":"c-%d","role":"ROLE_USER","taskId":%q,"parts":[{"text":%q}]}}}`, id, id, taskID, text)
}

// A task that asks for input is continued on the replica that holds it, under the gateway's task
// id. Once that replica has restarted (same name and address, a new process that has lost its
// tasks), the gateway says so itself instead of sending the message to a process that never
// heard of the task; for a stateful agent, which may have kept it, it still asks the replica.
func TestMultiTurnTaskStaysOnItsReplica(t *testing.T) {
	agents := []*turnAgent{newTurnAgent(t), newTurnAgent(t)}
	intake := testutil.Agent("intake", 4, agents[0].url, agents[1].url)
	src := testutil.NewSource(intake)
	_, srv := newGateway(t, src)
	url := srv.URL + "/agents/intake"
	holder := func(r rpcReply) int {
		t.Helper()
		for i, e := range intake.Endpoints {
			if e.Name == r.replica {
				return i
			}
		}
		t.Fatalf("answer from unknown replica %q", r.replica)
		return -1
	}
	open := func(n int) (string, int) {
		t.Helper()
		r := post(t, url, sendV1(n, "I need to move my appointment"))
		id, state := taskState(t, r.resp.Result)
		if r.resp.Error != nil || state != "TASK_STATE_INPUT_REQUIRED" || id == "" || strings.HasPrefix(id, "up-") {
			t.Fatalf("first turn: %s", r.raw)
		}
		return id, holder(r)
	}

	for n := range 6 {
		id, h := open(n)
		r := post(t, url, continueV1(100+n, id, "Tuesday morning"))
		gotID, state := taskState(t, r.resp.Result)
		if state != "TASK_STATE_COMPLETED" || gotID != id {
			t.Fatalf("second turn of %s: %s", id, r.raw)
		}
		if holder(r) != h {
			t.Fatalf("task %s opened on %s was continued on %s", id, intake.Endpoints[h].Name, r.replica)
		}
	}

	// The holder restarts: same URL, restart count up, its tasks gone.
	id, h := open(50)
	agents[h].forget()
	restarted := intake
	restarted.Endpoints = append([]discovery.Endpoint(nil), intake.Endpoints...)
	restarted.Endpoints[h].Restarts++
	src.Set(restarted)
	before := agents[h].continuations()
	r := post(t, url, continueV1(51, id, "Tuesday morning"))
	if r.resp.Error == nil || r.resp.Error.Code != a2a.CodeTaskNotFound || !strings.Contains(r.resp.Error.Message, "has restarted") {
		t.Fatalf("continuing a task whose replica restarted: %s", r.raw)
	}
	if agents[h].continuations() != before {
		t.Fatal("the gateway sent the continuation to the restarted replica")
	}

	// A stateful agent may have kept its tasks across the restart: the replica answers.
	stateful := restarted
	stateful.State = discovery.AgentStateful
	src.Set(stateful)
	id, h = open(60)
	stateful.Endpoints = append([]discovery.Endpoint(nil), stateful.Endpoints...)
	stateful.Endpoints[h].Restarts++
	src.Set(stateful)
	r = post(t, url, continueV1(61, id, "Tuesday morning"))
	if _, state := taskState(t, r.resp.Result); state != "TASK_STATE_COMPLETED" {
		t.Fatalf("continuing a stateful agent's task after a restart: %s", r.raw)
	}
}

package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/simagent"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/testutil"
)

// GET /api/v1/tasks/{id} shows a re-dispatched task's attempts, replicas and state changes in
// order, and nothing of its messages or results.
func TestTaskDetailShowsItsHistoryAndNoContent(t *testing.T) {
	var refused atomic.Int32
	bad := countingUpstream(t, http.StatusServiceUnavailable, &refused)
	good := startAgent(t, "triage", "1", simagent.Config{})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, bad, good)))

	// The balancer picks at random: send until a task went to the refusing replica first.
	var id string
	for i := range 40 {
		before := refused.Load()
		r := post(t, srv.URL+"/agents/triage", sendV1(i, "patient MRN-555 reports chest pain"))
		if r.status != http.StatusOK || r.resp.Error != nil {
			t.Fatalf("task %d: %d %s", i, r.status, r.raw)
		}
		if refused.Load() > before {
			id, _ = taskState(t, r.resp.Result)
			break
		}
	}
	if id == "" {
		t.Fatal("no task went to the refusing replica first")
	}

	var d TaskDetail
	getJSON(t, srv.URL+"/api/v1/tasks/"+id, &d)
	if d.ID != id || d.Agent != "triage" || d.State != "completed" || d.Attempts != 2 || d.Method != "SendMessage" || d.CreatedAt.IsZero() {
		t.Fatalf("task detail: %+v", d)
	}
	var steps []string
	for _, e := range d.History {
		steps = append(steps, fmt.Sprintf("%s@%s#%d", e.State, e.Replica, e.Attempt))
		if e.At.Before(d.CreatedAt) || e.At.After(d.UpdatedAt) {
			t.Errorf("event %+v outside the task's life %s..%s", e, d.CreatedAt, d.UpdatedAt)
		}
	}
	want := "submitted@#0 working@triage-0#1 working@triage-1#2 completed@triage-1#2"
	if got := strings.Join(steps, " "); got != want {
		t.Errorf("history %s, want %s", got, want)
	}

	res, err := http.Get(srv.URL + "/api/v1/tasks/" + id)
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 64<<10)
	n, _ := res.Body.Read(raw)
	res.Body.Close()
	for _, secret := range []string{"MRN-555", "chest pain", `"request"`, `"result"`} {
		if strings.Contains(string(raw[:n]), secret) {
			t.Errorf("the task detail shows %q:\n%s", secret, raw[:n])
		}
	}

	if code := getStatus(t, srv.URL+"/api/v1/tasks/no-such-task"); code != http.StatusNotFound {
		t.Errorf("an unknown task: %d, want 404", code)
	}
}

// A task's history keeps its first events and its latest when it changes very often.
func TestTaskHistoryIsBounded(t *testing.T) {
	r := newRecentTasks()
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	task := &store.Task{ID: "t", Agent: "a", State: store.StateAccepted, CreatedAt: now, UpdatedAt: now}
	r.note(task)
	r.note(task) // unchanged: no event
	for i := 1; i <= 100; i++ {
		task.State, task.Attempts, task.Replica, task.UpdatedAt = store.StateDispatched, i, fmt.Sprintf("a-%d", i%3), now.Add(time.Duration(i)*time.Second)
		r.note(task)
	}
	ev, truncated := r.events("t")
	if len(ev) != maxTaskEvents || !truncated || ev[0].State != "submitted" || ev[1].Attempt != 1 || ev[len(ev)-1].Attempt != 100 {
		t.Fatalf("%d events, truncated %v: first %+v, last %+v", len(ev), truncated, ev[0], ev[len(ev)-1])
	}
}

package gateway

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/tasks"
)

// recentSize is how many tasks GET /api/v1/tasks can list.
const recentSize = 500

// maxTaskEvents bounds the history kept of one task: its first events and its latest.
const maxTaskEvents = 64

// TaskSummary is one entry of GET /api/v1/tasks: what an operator needs to see of a task,
// never its content.
type TaskSummary struct {
	ID        string    `json:"id"`
	Agent     string    `json:"agent"`
	State     string    `json:"state"`
	Replica   string    `json:"replica,omitempty"`
	Attempts  int       `json:"attempts"`
	Async     bool      `json:"async,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// LatencyMs is from CreatedAt to UpdatedAt: for a task still submitted or working, to its
	// last change, not to now.
	LatencyMs int64 `json:"latencyMs"`
}

// TaskEvent is one change of a task that this gateway made: its state, the replica holding it
// and the attempt, from then on.
type TaskEvent struct {
	At      time.Time `json:"at"`
	State   string    `json:"state"`
	Replica string    `json:"replica,omitempty"`
	Attempt int       `json:"attempt"`
	Reason  string    `json:"reason,omitempty"`
}

// TaskDetail is the answer of GET /api/v1/tasks/{id}: a task's summary, who asked and how, and
// the changes this gateway saw, oldest first. Never the task's messages or results.
type TaskDetail struct {
	TaskSummary
	Method   string `json:"method,omitempty"`
	Priority string `json:"priority,omitempty"`
	Subject  string `json:"subject,omitempty"`
	Tenant   string `json:"tenant,omitempty"`
	// Owner is the gateway of the fleet that runs the task; Origin the one that forwarded it.
	Owner  string `json:"owner,omitempty"`
	Origin string `json:"origin,omitempty"`
	// History is empty for a task this gateway did not run since it started (it is then read
	// from the journal, which keeps the task's current record only).
	History []TaskEvent `json:"history"`
	// HistoryTruncated says that events between the first and the latest were left out.
	HistoryTruncated bool `json:"historyTruncated,omitempty"`
}

// recentTasks keeps the latest summaries of the tasks this gateway touched, newest last, with
// each one's history of changes.
type recentTasks struct {
	mu      sync.Mutex
	order   []string
	by      map[string]TaskSummary
	history map[string]*taskHistory
}

type taskHistory struct {
	events    []TaskEvent
	truncated bool
}

func newRecentTasks() *recentTasks {
	return &recentTasks{by: map[string]TaskSummary{}, history: map[string]*taskHistory{}}
}

func summarize(t *store.Task) TaskSummary {
	return TaskSummary{ID: t.ID, Agent: t.Agent, State: string(tasks.WireState(t.State)), Replica: t.Replica, Attempts: t.Attempts,
		Async: t.Async, Reason: t.Reason, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
		LatencyMs: t.UpdatedAt.Sub(t.CreatedAt).Milliseconds()}
}

func (r *recentTasks) note(t *store.Task) {
	s := summarize(t)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.by[t.ID]; !ok {
		r.order = append(r.order, t.ID)
		if len(r.order) > recentSize {
			delete(r.by, r.order[0])
			delete(r.history, r.order[0])
			r.order = r.order[1:]
		}
	}
	r.by[t.ID] = s
	h := r.history[t.ID]
	if h == nil {
		h = &taskHistory{}
		r.history[t.ID] = h
	}
	ev := TaskEvent{At: t.UpdatedAt, State: s.State, Replica: t.Replica, Attempt: t.Attempts, Reason: t.Reason}
	if n := len(h.events); n > 0 {
		if l := h.events[n-1]; l.State == ev.State && l.Replica == ev.Replica && l.Attempt == ev.Attempt && l.Reason == ev.Reason {
			return // nothing an operator would see changed
		}
	}
	if len(h.events) == maxTaskEvents {
		// Keep the first half (how it began) and the latest.
		h.events = append(h.events[:maxTaskEvents/2], h.events[maxTaskEvents/2+1:]...)
		h.truncated = true
	}
	h.events = append(h.events, ev)
}

// list returns up to limit summaries, newest first, of agent (all agents when empty).
func (r *recentTasks) list(agent string, limit int) []TaskSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []TaskSummary{}
	for i := len(r.order) - 1; i >= 0 && len(out) < limit; i-- {
		if s := r.by[r.order[i]]; agent == "" || s.Agent == agent {
			out = append(out, s)
		}
	}
	return out
}

// events returns the history of task id this gateway saw, oldest first.
func (r *recentTasks) events(id string) (events []TaskEvent, truncated bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.history[id]
	if h == nil {
		return []TaskEvent{}, false
	}
	return append([]TaskEvent{}, h.events...), h.truncated
}

func (a *adminAPI) tasks(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > recentSize {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be a number from 1 to " + strconv.Itoa(recentSize)})
			return
		}
		limit = n
	}
	// now lets a client show the time a running task has taken by the gateway's clock.
	writeJSON(w, http.StatusOK, map[string]any{"tasks": a.recent.list(r.URL.Query().Get("agent"), limit), "now": a.pool.now()})
}

// task answers one task from the journal, with the history this gateway saw of it.
func (a *adminAPI) task(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	t, err := a.journal.Get(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no task " + strconv.Quote(id) + " in the journal"})
		return
	case err != nil:
		a.log.Error("reading a task from the journal", "task", id, "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "the task journal cannot be read"})
		return
	}
	d := TaskDetail{TaskSummary: summarize(t), Method: t.Method, Priority: t.Priority, Subject: t.Subject, Tenant: t.Tenant,
		Owner: t.Owner, Origin: t.Origin}
	d.History, d.HistoryTruncated = a.recent.events(id)
	writeJSON(w, http.StatusOK, d)
}

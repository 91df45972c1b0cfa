package gateway

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/tasks"
)

// recentSize is how many tasks GET /api/v1/tasks can list.
const recentSize = 500

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
	LatencyMs int64     `json:"latencyMs"`
}

// recentTasks keeps the latest summaries of the tasks this gateway touched, newest last.
type recentTasks struct {
	mu    sync.Mutex
	order []string
	by    map[string]TaskSummary
}

func newRecentTasks() *recentTasks { return &recentTasks{by: map[string]TaskSummary{}} }

func (r *recentTasks) note(t *store.Task) {
	s := TaskSummary{ID: t.ID, Agent: t.Agent, State: string(tasks.WireState(t.State)), Replica: t.Replica, Attempts: t.Attempts,
		Async: t.Async, Reason: t.Reason, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
		LatencyMs: t.UpdatedAt.Sub(t.CreatedAt).Milliseconds()}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.by[t.ID]; !ok {
		r.order = append(r.order, t.ID)
		if len(r.order) > recentSize {
			delete(r.by, r.order[0])
			r.order = r.order[1:]
		}
	}
	r.by[t.ID] = s
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
	writeJSON(w, http.StatusOK, map[string]any{"tasks": a.recent.list(r.URL.Query().Get("agent"), limit)})
}

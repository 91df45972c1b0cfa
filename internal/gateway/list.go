package gateway

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/tasks"
)

// Bounds of ListTasks, as the A2A specification sets them.
const (
	defaultPageSize = 50
	maxPageSize     = 100
)

// listParams are the params of ListTasks (v1.0) and tasks/list (v0.3).
type listParams struct {
	Tenant               string       `json:"tenant"`
	ContextID            string       `json:"contextId"`
	Status               string       `json:"status"`
	PageSize             *json.Number `json:"pageSize"`
	PageToken            string       `json:"pageToken"`
	HistoryLength        *json.Number `json:"historyLength"`
	StatusTimestampAfter string       `json:"statusTimestampAfter"`
	IncludeArtifacts     bool         `json:"includeArtifacts"`
}

// listQuery is a ListTasks request, checked.
type listQuery struct {
	context       string // Digest of the context id; empty: any
	states        []store.TaskState
	after         time.Time
	pageSize      int
	cursor        *listCursor
	historyLength int // -1: all
	artifacts     bool
}

// listCursor is where a page ends: the last task it listed, in the listing's order.
type listCursor struct {
	updated time.Time
	id      string
}

func (c listCursor) token() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.updated.UnixNano(), 10) + ":" + c.id))
}

func parseCursor(tok string) (*listCursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	ns, id, ok := strings.Cut(string(raw), ":")
	n, nerr := strconv.ParseInt(ns, 10, 64)
	if err != nil || !ok || nerr != nil || id == "" || len(id) > maxTaskID {
		return nil, errors.New(`"params.pageToken" is not a page token this gateway gave: pass the nextPageToken of the previous page, or none for the first`)
	}
	return &listCursor{updated: time.Unix(0, n).UTC(), id: id}, nil
}

// parseList checks params, answering with the field at fault.
func parseList(params json.RawMessage, d a2a.Dialect) (listQuery, error) {
	q := listQuery{pageSize: defaultPageSize, historyLength: -1}
	var p listParams
	if len(params) > 0 {
		if err := json.Unmarshal(params, &p); err != nil {
			return q, fmt.Errorf("params: %v", err)
		}
	}
	if p.ContextID != "" {
		q.context = store.Digest(p.ContextID)
	}
	if p.Status != "" && p.Status != "TASK_STATE_UNSPECIFIED" {
		st := a2a.ParseState(p.Status)
		if st == a2a.StateUnknown || st.Wire(d) != p.Status && !(d == a2a.V03 && p.Status == "cancelled") {
			return q, fmt.Errorf(`"params.status" %q is not a task state of A2A %s`, p.Status, d)
		}
		q.states = storeStates(st)
	}
	if p.PageSize != nil {
		n, err := p.PageSize.Int64()
		if err != nil || n < 1 || n > maxPageSize {
			return q, fmt.Errorf(`"params.pageSize" must be an integer from 1 to %d, got %s`, maxPageSize, p.PageSize.String())
		}
		q.pageSize = int(n)
	}
	if p.HistoryLength != nil {
		n, err := p.HistoryLength.Int64()
		if err != nil || n < 0 || n > 1<<20 {
			return q, fmt.Errorf(`"params.historyLength" must be an integer of 0 or more, got %s`, p.HistoryLength.String())
		}
		q.historyLength = int(n)
	}
	if p.StatusTimestampAfter != "" {
		t, err := time.Parse(time.RFC3339Nano, p.StatusTimestampAfter)
		if err != nil {
			return q, fmt.Errorf(`"params.statusTimestampAfter" must be an RFC 3339 timestamp such as 2026-10-27T10:00:00Z, got %q`, p.StatusTimestampAfter)
		}
		q.after = t
	}
	if p.PageToken != "" {
		c, err := parseCursor(p.PageToken)
		if err != nil {
			return q, err
		}
		q.cursor = c
	}
	q.artifacts = p.IncludeArtifacts
	return q, nil
}

// storeStates are the journal states a task is in when it shows st.
func storeStates(st a2a.State) []store.TaskState {
	switch st {
	case a2a.StateSubmitted:
		return []store.TaskState{store.StateAccepted}
	case a2a.StateWorking:
		return []store.TaskState{store.StateDispatched}
	case a2a.StateInputRequired:
		return []store.TaskState{store.StateInputReq}
	case a2a.StateAuthRequired:
		return []store.TaskState{} // the journal does not keep it apart: no task matches
	}
	return []store.TaskState{store.TaskState(st)}
}

// serveList answers ListTasks from the journal: the caller's own tasks of this agent (a tenant
// admin's: every task of the tenant), newest change first, a page at a time, with gateway ids.
func (g *Gateway) serveList(c *call) outcome {
	d := c.req.Info.Dialect
	q, err := parseList(c.req.Params, d)
	if err != nil {
		rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeInvalidParams, "%v", err))
		return outcomeInvalid
	}
	ctx := c.r.Context()
	entries, err := g.tasks.journal.store.List(ctx, c.agent.Name)
	if err != nil {
		g.log.Error("task journal read failed", "err", err)
		rpcError(c.w, http.StatusServiceUnavailable, c.req.ID, a2a.Errorf(a2a.CodeInternalError, "the task journal is unavailable; try again"))
		return outcomeJournalError
	}
	tenant, owner := store.Digest(c.subject.Tenant), store.Digest(c.subject.Tenant, c.subject.Name)
	everyone := g.opts.Auth == nil || g.opts.Auth.Authorizer.IsTenantAdmin(c.subject)
	entries = slices.DeleteFunc(entries, func(e store.Entry) bool {
		switch {
		case g.opts.Auth != nil && e.Tenant != tenant, !everyone && e.Owner != owner:
			return true
		case q.context != "" && e.Context != q.context:
			return true
		case q.states != nil && !slices.Contains(q.states, e.State):
			return true
		}
		return !q.after.IsZero() && e.UpdatedAt.Before(q.after)
	})
	// Newest change first; ties by id, so that the order is total and a cursor is exact.
	slices.SortFunc(entries, func(a, b store.Entry) int {
		return cmp.Or(b.UpdatedAt.Compare(a.UpdatedAt), strings.Compare(b.ID, a.ID))
	})
	total := len(entries)
	if q.cursor != nil {
		at, _ := slices.BinarySearchFunc(entries, *q.cursor, func(e store.Entry, c listCursor) int {
			return cmp.Or(c.updated.Compare(e.UpdatedAt), strings.Compare(c.id, e.ID))
		})
		if at < len(entries) && entries[at].ID == q.cursor.id {
			at++
		}
		entries = entries[at:]
	}
	next := ""
	if len(entries) > q.pageSize {
		entries = entries[:q.pageSize]
		last := entries[len(entries)-1]
		next = listCursor{updated: last.UpdatedAt, id: last.ID}.token()
	}
	views, err := g.readViews(c, entries, d, q)
	if err != nil {
		g.log.Error("task journal read failed", "err", err)
		rpcError(c.w, http.StatusServiceUnavailable, c.req.ID, a2a.Errorf(a2a.CodeInternalError, "the task journal is unavailable; try again"))
		return outcomeJournalError
	}
	out, _ := json.Marshal(map[string]any{"tasks": views, "totalSize": total, "pageSize": q.pageSize, "nextPageToken": next})
	writeAnswer(c.w, nil, http.StatusOK, discovery.Endpoint{}, a2a.Result(c.req.ID, out))
	return outcomeJournal
}

// readViews reads the tasks of a page, a few at a time, and returns them as the caller's
// dialect shows them. A task that expired since the listing is left out.
func (g *Gateway) readViews(c *call, entries []store.Entry, d a2a.Dialect, q listQuery) ([]json.RawMessage, error) {
	views := make([]json.RawMessage, len(entries))
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, 8)
	)
	for i, e := range entries {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t, err := g.tasks.journal.store.Get(c.r.Context(), e.ID)
			switch {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				mu.Lock()
				first = cmp.Or(first, err)
				mu.Unlock()
			case t.Agent == c.agent.Name && canSee(g.opts.Auth, c.subject, t):
				views[i] = listView(t, d, q)
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return slices.DeleteFunc(views, func(v json.RawMessage) bool { return v == nil }), nil
}

// listView is t as ListTasks shows it in dialect d: the task as the journal knows it, its
// history cut to q.historyLength messages (the latest) and its artifacts only when asked for.
// A task started in the other dialect shows its id, context and state.
func listView(t *store.Task, d a2a.Dialect, q listQuery) json.RawMessage {
	if a2a.Dialect(t.Dialect) != d {
		return a2a.TaskObject(d, t.ID, t.ContextID, tasks.WireState(t.State), t.Reason, nil)
	}
	view := taskView(t)
	var obj map[string]json.RawMessage
	if json.Unmarshal(view, &obj) != nil {
		return view
	}
	if !q.artifacts {
		delete(obj, "artifacts")
	}
	if h, ok := obj["history"]; ok && q.historyLength >= 0 {
		var msgs []json.RawMessage
		if json.Unmarshal(h, &msgs) == nil {
			if len(msgs) > q.historyLength {
				msgs = msgs[len(msgs)-q.historyLength:]
			}
			if len(msgs) == 0 {
				delete(obj, "history")
			} else {
				obj["history"], _ = json.Marshal(msgs)
			}
		}
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return view
	}
	return out
}

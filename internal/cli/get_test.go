package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testutil"
)

// fakeTasks serves GET /api/v1/tasks with two tasks, of two agents, and records the queries.
// With detail, it also serves GET /api/v1/tasks/{id} for t-2, with its history, as a gateway
// with that endpoint does; without, it answers that path as the mux of an older one.
func fakeTasks(t *testing.T, queries chan<- string, detail bool) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		queries <- r.URL.RawQuery
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"tasks":[
 {"id":"t-2","agent":"radiology","state":"TASK_STATE_FAILED","replica":"radiology-1","attempts":3,"reason":"retry budget exhausted",
  "createdAt":"2026-05-01T12:00:00Z","updatedAt":"2026-05-01T12:00:02.5Z","latencyMs":2500},
 {"id":"t-1","agent":"triage","state":"TASK_STATE_COMPLETED","replica":"triage-0","attempts":1,
  "createdAt":"2026-05-01T11:59:00Z","updatedAt":"2026-05-01T11:59:00.2Z","latencyMs":200}]}`)
	})
	if detail {
		mux.HandleFunc("GET /api/v1/tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
			queries <- r.URL.Path
			w.Header().Set("Content-Type", "application/json")
			if r.PathValue("id") != "t-2" {
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprintf(w, `{"error":%q}`, "no task "+strconv.Quote(r.PathValue("id"))+" in the journal")
				return
			}
			fmt.Fprint(w, `{"id":"t-2","agent":"radiology","state":"TASK_STATE_FAILED","replica":"radiology-1","attempts":3,
 "reason":"retry budget exhausted","createdAt":"2026-05-01T12:00:00Z","updatedAt":"2026-05-01T12:00:02.5Z","latencyMs":2500,
 "method":"SendMessage","subject":"nurse-a","tenant":"clinic-a","history":[
  {"at":"2026-05-01T12:00:00Z","state":"TASK_STATE_SUBMITTED","attempt":0},
  {"at":"2026-05-01T12:00:00.1Z","state":"TASK_STATE_WORKING","replica":"radiology-0","attempt":1},
  {"at":"2026-05-01T12:00:02.5Z","state":"TASK_STATE_FAILED","replica":"radiology-1","attempt":3,"reason":"retry budget exhausted"}]}`)
		})
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// get task ID shows one task's state, agent, replica, attempts, timings and reason, never its
// messages: from GET /api/v1/tasks/{id} with its history, or, from a gateway without that
// endpoint, looked for among all the recent tasks it keeps. get tasks --agent asks the gateway
// for that agent's.
func TestGetTask(t *testing.T) {
	t.Setenv(envConfig, filepath.Join(t.TempDir(), "none.yaml"))
	summary := []string{"ID:        t-2", "Agent:     radiology", "State:     TASK_STATE_FAILED", "Replica:   radiology-1",
		"Attempts:  3", "Duration:  2.5s", "Reason:    retry budget exhausted", "Created:   2026-05-01T12:00:00Z"}

	t.Run("from the list", func(t *testing.T) {
		queries := make(chan string, 10)
		srv := fakeTasks(t, queries, false)
		out, errs, code := runCLI(t.Context(), t, newGetCommand, "task", "t-2", "--gateway", srv.URL)
		if code != 0 {
			t.Fatal(errs)
		}
		for _, want := range summary {
			if !strings.Contains(out, want) {
				t.Errorf("get task t-2: no %q in\n%s", want, out)
			}
		}
		if q := <-queries; q != "limit=500" {
			t.Errorf("get task asked for %q, want all the gateway keeps", q)
		}
		if out, _, _ := runCLI(t.Context(), t, newGetCommand, "task", "t-1", "--gateway", srv.URL, "-o", "json"); !strings.Contains(out, `"id": "t-1"`) || strings.Contains(out, "t-2") {
			t.Errorf("get task t-1 -o json:\n%s", out)
		}
		<-queries
		if _, errs, code := runCLI(t.Context(), t, newGetCommand, "task", "t-9", "--gateway", srv.URL); code != 1 || !strings.Contains(errs, `no task "t-9" among the last 500`) {
			t.Errorf("an unknown task: %d %q", code, errs)
		}
		<-queries
		if _, _, code := runCLI(t.Context(), t, newGetCommand, "tasks", "--agent", "triage", "--gateway", srv.URL); code != 0 {
			t.Fatal("get tasks --agent")
		}
		if q := <-queries; q != "agent=triage&limit=50" {
			t.Errorf("get tasks --agent triage asked for %q", q)
		}
		if _, errs, code := runCLI(t.Context(), t, newGetCommand, "agents", "triage", "--gateway", srv.URL); code != 2 || !strings.Contains(errs, "takes no name") {
			t.Errorf("get agents NAME: %d %q", code, errs)
		}
	})

	t.Run("from the task endpoint", func(t *testing.T) {
		queries := make(chan string, 10)
		srv := fakeTasks(t, queries, true)
		out, errs, code := runCLI(t.Context(), t, newGetCommand, "task", "t-2", "--gateway", srv.URL)
		if code != 0 {
			t.Fatal(errs)
		}
		for _, want := range append(summary, "Method:    SendMessage", "Asked by:  nurse-a (tenant clinic-a)", "History:",
			"TASK_STATE_WORKING    radiology-0  1") {
			if !strings.Contains(out, want) {
				t.Errorf("get task t-2: no %q in\n%s", want, out)
			}
		}
		if q := <-queries; q != "/api/v1/tasks/t-2" {
			t.Errorf("get task asked for %q", q)
		}
		if _, errs, code := runCLI(t.Context(), t, newGetCommand, "task", "t-9", "--gateway", srv.URL); code != 1 || !strings.Contains(errs, `no task "t-9" in the journal`) {
			t.Errorf("a task not in the journal: %d %q", code, errs)
		}
		if len(queries) != 1 { // the 404 of the endpoint is the answer: no fallback to the list
			t.Errorf("queries: %d", len(queries))
		}
	})
}

// --watch prints the list, then again only when it changed, reading it each interval with a
// deadline each, until the context ends; a 401 ends it at once; a gateway that stops answering
// is reported once, not once a second.
func TestGetWatch(t *testing.T) {
	t.Setenv(envConfig, filepath.Join(t.TempDir(), "none.yaml"))
	var reads, state atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reads.Add(1)
		switch state.Load() {
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "draining")
			return
		case 3:
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		ready := 1 + state.Load()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"agents":[{"name":"triage","state":"Running","desired":2,"ready":%d,"maxConcurrency":4}]}`, ready)
	}))
	defer srv.Close()
	target, err := resolveTarget(targetFlags{gateway: srv.URL}, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	var out, errb lockedBuffer
	streams := Streams{Out: &out, Err: &errb}
	o := getOptions{gateway: target, output: "table", limit: 50}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- watch(ctx, streams, o, getKinds("")["agents"], 5*time.Millisecond) }()

	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
		return testutil.Check(reads.Load() >= 5, "%d reads", reads.Load())
	})
	if n := strings.Count(out.String(), "NAME"); n != 1 {
		t.Fatalf("printed %d times while nothing changed:\n%s", n, out.String())
	}
	state.Store(1) // one more replica ready
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
		return testutil.Check(strings.Contains(out.String(), "2/2"), "the change is not printed:\n%s", out.String())
	})
	state.Store(2) // the gateway answers 503 for a while
	r := reads.Load()
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
		return testutil.Check(reads.Load() >= r+5, "%d reads", reads.Load())
	})
	if n := strings.Count(errb.String(), "503"); n != 1 {
		t.Errorf("the failing gateway was reported %d times:\n%s", n, errb.String())
	}
	state.Store(0) // back, with one replica ready again: printed again
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
		return testutil.Check(strings.Count(out.String(), "1/2") == 2, "not printed again:\n%s", out.String())
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch ended by its context: %v", err)
	}

	state.Store(3)
	err = watch(t.Context(), streams, o, getKinds("")["agents"], 5*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("watch on a 401: %v", err)
	}
}

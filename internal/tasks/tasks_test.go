package tasks

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/store"
)

func TestTransitions(t *testing.T) {
	r := Replica{Name: "triage-0", URL: "http://127.0.0.1:9000", Restarts: 2}
	const (
		acc  = store.StateAccepted
		disp = store.StateDispatched
		inp  = store.StateInputReq
		done = store.StateCompleted
		fail = store.StateFailed
		canc = store.StateCanceled
		rej  = store.StateRejected
	)
	type transition struct {
		name    string
		from    store.TaskState
		started bool
		change  Change
		want    store.TaskState
		err     error
	}
	cases := []transition{
		{"first dispatch", acc, false, Dispatch(Dispatcher, r), disp, nil},
		{"re-dispatch after a failure", disp, true, Dispatch(Dispatcher, r), disp, nil},
		{"recovery re-dispatches", disp, true, Dispatch(Recovery, r), disp, nil},
		{"input-required is not re-dispatched", inp, true, Dispatch(Dispatcher, r), inp, ErrNotAllowed},
		{"answer completed", disp, false, Answer("up-1", a2a.StateCompleted, nil), done, nil},
		{"answer failed", disp, false, Answer("up-1", a2a.StateFailed, nil), fail, nil},
		{"answer canceled", disp, false, Answer("up-1", a2a.StateCanceled, nil), canc, nil},
		{"answer rejected", disp, false, Answer("up-1", a2a.StateRejected, nil), rej, nil},
		{"answer working keeps it dispatched", disp, false, Answer("up-1", a2a.StateWorking, nil), disp, nil},
		{"answer input-required", disp, false, Answer("up-1", a2a.StateInputRequired, nil), inp, nil},
		{"answer auth-required waits like input-required", disp, false, Answer("up-1", a2a.StateAuthRequired, nil), inp, nil},
		{"a plain message answer completes the exchange", disp, false, Answer("", a2a.StateUnknown, nil), done, nil},
		{"no answer before a dispatch", acc, false, Answer("up-1", a2a.StateCompleted, nil), acc, ErrNotAllowed},
		{"answer to a continuation", disp, true, Answer("up-1", a2a.StateCompleted, nil), done, nil},
		{"client continues input-required", inp, true, Continue(), disp, nil},
		{"client cannot continue a working task", disp, true, Continue(), disp, ErrNotAllowed},
		{"dispatcher cannot continue", inp, true, Change{Kind: KindContinue, By: Dispatcher}, inp, ErrNotAllowed},
		{"client cancels an accepted task", acc, false, End(Client, CanceledByClient, "", nil), canc, nil},
		{"client cancels input-required", inp, true, End(Client, CanceledByClient, "", nil), canc, nil},
		{"client cannot fail a task", disp, true, End(Client, Exhausted, "", nil), disp, ErrNotAllowed},
		{"client cannot dispatch", acc, false, Dispatch(Client, r), acc, ErrNotAllowed},
		{"recovery ends an unreadable task", acc, false, End(Recovery, Unrecoverable, "", nil), fail, nil},
		{"recovery cannot complete", acc, false, Answer("x", a2a.StateCompleted, nil), acc, ErrNotAllowed},
		{"agent error before the agent took it: rejected", disp, false, End(Dispatcher, AgentError, "", nil), rej, nil},
		{"agent error after it took it: failed", disp, true, End(Dispatcher, AgentError, "", nil), fail, nil},
		{"invalid answer fails", disp, false, End(Dispatcher, InvalidAnswer, "", nil), fail, nil},
		{"unsupported dialect rejects", disp, false, End(Dispatcher, Unsupported, "", nil), rej, nil},
		{"at capacity rejects", acc, false, End(Dispatcher, AtCapacity, "", nil), rej, nil},
		{"residency rejects", acc, false, End(Dispatcher, Residency, "", nil), rej, nil},
		{"no replica could run it: failed", disp, true, End(Dispatcher, Exhausted, "", nil), fail, nil},
		{"queue timeout fails", acc, false, End(Dispatcher, QueueTimeout, "", nil), fail, nil},
		{"agent removed fails", acc, false, End(Dispatcher, AgentRemoved, "", nil), fail, nil},
	}
	for _, terminal := range []store.TaskState{done, fail, canc, rej} {
		for _, c := range []Change{Dispatch(Dispatcher, r), Answer("x", a2a.StateWorking, nil), End(Client, CanceledByClient, "", nil), Continue(), End(Dispatcher, Exhausted, "", nil)} {
			cases = append(cases, transition{"terminal " + string(terminal) + " never changes: " + c.Kind.String(), terminal, true, c, terminal, ErrEnded})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "recovery cannot complete" {
				tc.change.By = Recovery
			}
			got, err := Next(tc.from, tc.change, tc.started)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Next(%s, %s by %s) error = %v, want %v", tc.from, tc.change.Kind, tc.change.By, err, tc.err)
			}
			if got != tc.want {
				t.Fatalf("Next(%s, %s by %s) = %s, want %s", tc.from, tc.change.Kind, tc.change.By, got, tc.want)
			}
		})
	}
}

func TestApplyRecordsWhatEachChangeSays(t *testing.T) {
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	task := &store.Task{ID: "t1", Method: "SendStreamingMessage", State: store.StateAccepted}
	if err := Apply(task, Dispatch(Dispatcher, Replica{Name: "a-0", URL: "http://a0", Restarts: 1}), now); err != nil {
		t.Fatal(err)
	}
	if task.Replica != "a-0" || task.ReplicaURL != "http://a0" || task.ReplicaRestarts != 1 || task.Attempts != 1 || task.State != store.StateDispatched {
		t.Fatalf("after dispatch: %+v", task)
	}
	if err := Apply(task, Answer("up-1", a2a.StateWorking, nil), now); err != nil {
		t.Fatal(err)
	}
	if task.UpstreamID != "up-1" {
		t.Fatalf("upstream id not recorded: %+v", task)
	}
	// A re-dispatch forgets the old replica's id for the task.
	if err := Apply(task, Dispatch(Dispatcher, Replica{Name: "a-1", URL: "http://a1"}), now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if task.UpstreamID != "" || task.Attempts != 2 || task.Replica != "a-1" {
		t.Fatalf("after re-dispatch: %+v", task)
	}
	res := json.RawMessage(`{"id":"t1"}`)
	if err := Apply(task, Answer("up-2", a2a.StateCompleted, res), now.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if task.State != store.StateCompleted || string(task.Result) != string(res) || !task.UpdatedAt.Equal(now.Add(2*time.Second)) {
		t.Fatalf("after the answer: %+v", task)
	}
	before := *task
	if err := Apply(task, End(Client, CanceledByClient, "too late", nil), now.Add(3*time.Second)); !errors.Is(err, ErrEnded) {
		t.Fatalf("cancel after the end: %v", err)
	}
	if task.Reason != before.Reason || !task.UpdatedAt.Equal(before.UpdatedAt) {
		t.Fatal("a refused change modified the task")
	}
}

func TestJournaled(t *testing.T) {
	r := Replica{Name: "a-0"}
	for _, tc := range []struct {
		method string
		async  bool
		change Change
		want   bool
	}{
		{"SendMessage", false, Dispatch(Dispatcher, r), false}, // the client waits; the answer records it
		{"message/send", false, Dispatch(Dispatcher, r), false},
		{"SendMessage", true, Dispatch(Dispatcher, r), true}, // a queued task is claimed by its dispatch
		{"SendStreamingMessage", false, Dispatch(Dispatcher, r), true},
		{"message/stream", false, Dispatch(Dispatcher, r), true},
		{"SendMessage", false, Answer("x", a2a.StateCompleted, nil), true},
		{"SendMessage", false, End(Dispatcher, Exhausted, "", nil), true},
		{"SendMessage", false, End(Client, CanceledByClient, "", nil), true},
	} {
		task := &store.Task{Method: tc.method, Async: tc.async}
		if got := Journaled(task, tc.change); got != tc.want {
			t.Errorf("Journaled(%s async=%v, %s) = %v, want %v", tc.method, tc.async, tc.change.Kind, got, tc.want)
		}
	}
}

func TestEveryEndingHasOneTerminalState(t *testing.T) {
	for e := AgentError; e <= AgentRemoved; e++ {
		for _, started := range []bool{false, true} {
			if s := e.State(started); !s.Terminal() {
				t.Errorf("%s (started=%v) ends in %s, not a terminal state", e, started, s)
			}
		}
		if e.String() == "" || e.String()[0] == 'E' {
			t.Errorf("ending %d has no name", int(e))
		}
	}
}

func TestWireState(t *testing.T) {
	for s, want := range map[store.TaskState]a2a.State{
		store.StateAccepted: a2a.StateSubmitted, store.StateDispatched: a2a.StateWorking,
		store.StateInputReq: a2a.StateInputRequired, store.StateCompleted: a2a.StateCompleted,
		store.StateFailed: a2a.StateFailed, store.StateCanceled: a2a.StateCanceled, store.StateRejected: a2a.StateRejected,
	} {
		if got := WireState(s); got != want {
			t.Errorf("WireState(%s) = %s, want %s", s, got, want)
		}
	}
}

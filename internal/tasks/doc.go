// Package tasks is the life of a gateway task as a pure type: the states a task goes through,
// the transitions between them and who may make each, what ends a task in which state, and what
// the journal records at each step. It does no I/O: the gateway's dispatcher applies these
// changes to a store.Task and writes the result to the journal.
//
// The state machine (journal states; the A2A wire state in brackets):
//
//		                 ┌──────────── End: refused, residency, canceled, invalid ─────────────┐
//		                 │                                                                      ▼
//		  Accept ──▶ accepted ──Dispatch──▶ dispatched ──Answer(completed|failed|…)──▶  completed
//		          [submitted]       ▲       [working]  │                                 failed
//		                            │          │  ▲    └──Answer(input-required)──┐      canceled
//		                            └─Dispatch─┘  │                             ▼      rejected
//		                         (re-dispatch after│                      input-required   (terminal:
//		                          a replica failed)│                      [input-required]  no change
//		                                           └──────Continue──────────────┘          after)
//
//	  - Accept creates the record with the original request: the journal write that makes the
//	    task exist. A task that cannot be written is refused, never run.
//	  - Dispatch names the replica, counts the attempt and clears the replica's task id. It is
//	    journaled for queued and streaming tasks (a client may re-subscribe, another gateway may
//	    take the task over); a blocking task's dispatch stays in memory, since its client is
//	    connected and a crash recovers accepted and dispatched tasks the same way.
//	  - Answer records what the agent said: its task id, its state and, when it sent one, its
//	    task object. A state the agent reports as final ends the task.
//	  - End is decided in one place, by Ending: every way a task can end maps to exactly one
//	    journal state, the same for blocking, streaming and queued tasks.
//
// Who may make a change: the dispatcher that owns the task makes every change; a client may
// only cancel (End with Canceled) and continue an input-required task; recovery after a
// restart re-dispatches what was accepted or dispatched. A terminal task never changes again,
// whoever asks.
package tasks

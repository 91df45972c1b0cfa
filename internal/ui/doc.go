// Package ui is the gateway's dashboard: a static page (HTML, CSS and plain JavaScript, no build
// step, no external fonts or scripts) embedded in the binary and served under /ui/ by Handler.
//
// The page reads the gateway's admin API every second with same-origin requests relative to
// /ui/: GET /api/v1/agents, GET /api/v1/replicas, GET /api/v1/tasks?limit=50 and, every fifth
// poll, GET /api/v1/audit?limit=50 (the audit section shows only when that answers 200). A
// replica's "log" link (#log=REPLICA) follows GET /api/v1/logs/{replica}?follow=true as a
// stream; a task's link (#task=ID) shows GET /api/v1/tasks/{id}: its attempts, replicas,
// timings and state changes, never its messages. Every replica that cannot take tasks (crash-
// looping, starting for more than 10 s, failing readiness, ejected) counts as unhealthy and is
// listed with why; a last exit followed by 10 minutes of ready running is shown muted. When
// the API answers 401 it asks for an API key, keeps it in the tab's session storage and sends it
// as "Authorization: Bearer". It renders data with textContent only, and Handler sends a strict
// Content-Security-Policy (no inline script or style, no other origin).
//
// The package serves files; it does not serve the API the page reads.
package ui

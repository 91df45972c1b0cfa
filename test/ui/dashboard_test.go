// Package ui_test drives the dashboard (internal/ui) in a real headless Chromium: against a fake
// admin API whose data changes while the page is open (every state and layout at once: sites,
// zones, an ejected replica, the fleet, the audit trail, an API key), and against a real
// `agentplane up` with agents that cannot start (live_test.go).
//
// It needs Debian's chromium (apt-get install -y chromium; AGENTPLANE_CHROMIUM names another
// binary). Without one the test skips, except under CI=true, where it fails. Screenshots go to
// $AGENTPLANE_TEST_ARTIFACTS, or test/ui/artifacts/ (gitignored).
package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/ui"
)

// agentStatus is GET /api/v1/agents' entry, with the queue depth the dashboard shows.
type agentStatus struct {
	gateway.AgentStatus
	Queued int `json:"queued"`
}

// taskStatus is GET /api/v1/tasks' entry.
type taskStatus = gateway.TaskSummary

// fakeAPI serves the admin endpoints the dashboard reads, with data the test changes.
type fakeAPI struct {
	mu          sync.Mutex
	agents      []discovery.Agent
	inFlight    map[string]int // by replica name
	ejected     map[string]bool
	queued      map[string]int
	tasks       []taskStatus
	auditStatus int
	polls       int
	// apiKey, when set, is the bearer token every API call must carry.
	apiKey string
}

// authorized answers 401 unless the request carries the API key, when one is set.
func (f *fakeAPI) authorized(w http.ResponseWriter, r *http.Request) bool {
	if f.apiKey == "" || r.Header.Get("Authorization") == "Bearer "+f.apiKey {
		return true
	}
	http.Error(w, "unauthorized", http.StatusUnauthorized)
	return false
}

func newFakeAPI() *fakeAPI {
	since := time.Now().Add(-42 * time.Minute)
	ep := func(agent string, i int, site, zone string) discovery.Endpoint {
		return discovery.Endpoint{Agent: agent, Name: fmt.Sprintf("%s-%d", agent, i), Index: i,
			URL: fmt.Sprintf("http://127.0.0.1:%d", 41000+len(agent)*10+i), Ready: true, State: discovery.StateRunning,
			Site: site, Zone: zone, PID: 4100 + len(agent)*10 + i, Since: since}
	}
	f := &fakeAPI{
		agents: []discovery.Agent{
			{Name: "triage", Description: "Symptom triage assistant", State: "stateless", MaxConcurrency: 4, Desired: 3,
				Endpoints: []discovery.Endpoint{ep("triage", 0, "clinic-a", "a1"), ep("triage", 1, "clinic-a", "a1"), ep("triage", 2, "clinic-a", "a2")}},
			{Name: "radiology", Description: "Radiology pre-read", State: "stateless", MaxConcurrency: 2, Desired: 2,
				Endpoints: []discovery.Endpoint{ep("radiology", 0, "clinic-a", "a1"), ep("radiology", 1, "hospital", "h1")}},
			{Name: "scheduling", Description: "Appointment scheduling", State: "stateful", MaxConcurrency: 8, Desired: 2,
				Autoscaled: true, MinReplicas: 0, MaxReplicas: 4, ScaleReason: "scaled 1→2: load 0.90 over target 0.70", ScaledAt: time.Now().Add(-30 * time.Second),
				Endpoints: []discovery.Endpoint{ep("scheduling", 0, "clinic-a", "a1"), ep("scheduling", 1, "clinic-a", "a2")}},
		},
		inFlight:    map[string]int{"triage-0": 3, "triage-1": 2, "triage-2": 4, "radiology-0": 2, "radiology-1": 1, "scheduling-0": 1},
		ejected:     map[string]bool{"radiology-1": true},
		queued:      map[string]int{"triage": 2},
		auditStatus: http.StatusForbidden,
	}
	// triage-2 was killed long ago and has run fine since: its last exit is history.
	f.agents[0].Endpoints[2].Restarts, f.agents[0].Endpoints[2].LastExit = 1, "signal: killed"
	now := time.Now()
	states := []string{"completed", "completed", "working", "failed", "completed", "input-required", "completed", "canceled"}
	for i, st := range states {
		a := f.agents[i%3]
		t := taskStatus{ID: fmt.Sprintf("0199c3e0-7a5b-7c1e-9f00-00000000%04d", 100-i), Agent: a.Name, State: st,
			Replica: a.Endpoints[i%len(a.Endpoints)].Name, Attempts: 1, CreatedAt: now.Add(-time.Duration(i+1) * 7 * time.Second),
			LatencyMs: int64(350 + i*1700)}
		t.UpdatedAt = t.CreatedAt.Add(time.Duration(t.LatencyMs) * time.Millisecond)
		switch st {
		case "failed":
			t.Attempts = 3
			t.Reason = `no replica could run the task after 3 attempt(s): the agent sent an error: <img src=x onerror="window.__xss=1">`
		case "working":
			t.LatencyMs = 0
		}
		if i == 4 {
			t.Attempts = 2
			t.Reason = "re-dispatched after replica radiology-1 failed: connection refused"
		}
		f.tasks = append(f.tasks, t)
	}
	return f
}

func (f *fakeAPI) routes(mux *http.ServeMux) {
	write := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /api/v1/agents", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if !f.authorized(w, r) {
			return
		}
		f.polls++
		out := []agentStatus{}
		for _, a := range f.agents {
			s := agentStatus{AgentStatus: gateway.AgentStatus{Name: a.Name, Description: a.Description, State: a.State,
				Desired: a.Desired, Ready: a.ReadyCount(), MaxConcurrency: a.MaxConcurrency}, Queued: f.queued[a.Name]}
			if a.Autoscaled {
				s.Autoscaling = &gateway.AutoscalingStatus{MinReplicas: a.MinReplicas, MaxReplicas: a.MaxReplicas, Reason: a.ScaleReason, ScaledAt: a.ScaledAt}
			}
			for _, e := range a.Endpoints {
				s.InFlight += f.inFlight[e.Name]
				s.Restarts += e.Restarts
				if e.Site != "" && !strings.Contains(strings.Join(s.Sites, ","), e.Site) {
					s.Sites = append(s.Sites, e.Site)
				}
			}
			out = append(out, s)
		}
		write(w, map[string]any{"agents": out})
	})
	mux.HandleFunc("GET /api/v1/replicas", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if !f.authorized(w, r) {
			return
		}
		out := []gateway.ReplicaStatus{}
		for _, a := range f.agents {
			for _, e := range a.Endpoints {
				out = append(out, gateway.ReplicaStatus{Endpoint: e, InFlight: f.inFlight[e.Name], Ejected: f.ejected[e.Name]})
			}
		}
		write(w, map[string]any{"replicas": out})
	})
	mux.HandleFunc("GET /api/v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("limit") != "50" {
			http.Error(w, "the dashboard asks for limit=50", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if !f.authorized(w, r) {
			return
		}
		// A new task arrives at every poll, so the list keeps changing.
		now := time.Now()
		n := len(f.tasks)
		f.tasks = append([]taskStatus{{ID: fmt.Sprintf("0199c3e0-7a5b-7c1e-9f00-1%011d", n), Agent: "triage", State: "completed",
			Replica: fmt.Sprintf("triage-%d", n%3), Attempts: 1, CreatedAt: now.Add(-900 * time.Millisecond), UpdatedAt: now,
			LatencyMs: 900}}, f.tasks...)
		if len(f.tasks) > 50 {
			f.tasks = f.tasks[:50]
		}
		write(w, map[string]any{"tasks": f.tasks})
	})
	mux.HandleFunc("GET /api/v1/fleet", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if !f.authorized(w, r) {
			return
		}
		now := time.Now().UTC()
		write(w, map[string]any{"self": "gw-clinic-a", "site": "clinic-a", "members": []map[string]any{
			{"id": "gw-clinic-a", "site": "clinic-a", "url": "https://gw.clinic-a.example", "self": true, "lastSeen": now,
				"agents": map[string]any{"triage": map[string]any{"ready": 3, "slots": 12, "inFlight": 5, "queued": 0}}},
			{"id": "gw-hub", "site": "hospital", "url": "https://gw.hospital.example", "lastSeen": now, "rtt": 38_000_000,
				"agents": map[string]any{"triage": map[string]any{"ready": 4, "slots": 16, "inFlight": 2}, "radiology": map[string]any{"ready": 2, "slots": 4, "queued": 1}}},
		}})
	})
	mux.HandleFunc("GET /api/v1/audit", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if !f.authorized(w, r) {
			return
		}
		if f.auditStatus != http.StatusOK {
			http.Error(w, "forbidden", f.auditStatus)
			return
		}
		now := time.Now().UTC()
		recs := []map[string]any{{"seq": 0, "kind": "file", "time": now.Add(-time.Hour), "file": "audit-1.jsonl", "prevHash": ""}}
		latest := f.tasks[:min(len(f.tasks), 6)]
		for i, t := range latest {
			recs = append(recs, map[string]any{"seq": len(latest) - i, "time": t.UpdatedAt.UTC(), "subject": "clinician-7", "tenant": "clinic-a",
				"agent": t.Agent, "method": "SendMessage", "taskId": t.ID, "outcome": map[bool]string{true: "ok", false: "failed"}[t.State != "failed"],
				"httpStatus": 200, "latencyMs": t.LatencyMs, "replica": t.Replica, "site": "clinic-a", "prevHash": "abc", "hash": "def"})
		}
		write(w, map[string]any{"records": recs})
	})
}

// chromium finds the browser, or skips (fails under CI=true) when there is none.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("AGENTPLANE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed; CI must run: apt-get install -y chromium")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium); skipping the browser test")
	return ""
}

func artifactsDir(t *testing.T) string {
	dir := os.Getenv("AGENTPLANE_TEST_ARTIFACTS")
	if dir == "" {
		dir = "artifacts"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// waitFor evaluates a JavaScript expression until it is true or timeout passes. (chromedp's
// Poll builds its predicate with new Function, which the page's CSP rightly refuses.)
func waitFor(ctx context.Context, t *testing.T, what, expr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		lastErr = err
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not happen within %v (last error: %v)", what, timeout, lastErr)
}

func eval[T any](ctx context.Context, t *testing.T, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

func TestDashboardShowsAgentsAndFollowsAKilledReplica(t *testing.T) {
	exe := chromium(t)
	api := newFakeAPI()
	api.apiKey = "s3cret-admin-key"
	mux := http.NewServeMux()
	api.routes(mux)
	mux.Handle("GET /ui/", ui.Handler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	base := "http://" + ln.Addr().String()

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	// The audit endpoint answers 403 on purpose: the page must then hide its section. Until the
	// key is given the API answers 401, which the page handles by asking for it.
	bctx, pageErrors := startBrowser(ctx, t, exe, func(e *cdplog.Entry) bool {
		return e.Source == cdplog.EntrySourceNetwork && (strings.Contains(e.URL, "/api/v1/audit") || strings.Contains(e.Text, "status of 401"))
	})

	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1440, 1000), chromedp.Navigate(base+"/ui/")); err != nil {
		t.Fatal(err)
	}

	// The API wants a key: the page asks for one, and uses it once given.
	waitFor(bctx, t, "the API key form", `!document.getElementById("auth").hidden && document.querySelector("#conn").className.includes("conn-stale")`, 10*time.Second)
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`(() => {
		document.getElementById("auth-key").value = "s3cret-admin-key";
		document.getElementById("auth-form").requestSubmit();
		return true;
	})()`)); err != nil {
		t.Fatal(err)
	}

	// The example agents and their replicas appear, grouped by site and zone.
	waitFor(bctx, t, "7 replicas on the page", `document.querySelectorAll("[data-replica]").length === 7`, 10*time.Second)
	for _, a := range []string{"triage", "radiology", "scheduling"} {
		if !eval[bool](bctx, t, fmt.Sprintf(`!!document.querySelector('article[data-agent=%q] h3') && document.querySelector('article[data-agent=%q] h3').textContent === %q`, a, a, a)) {
			t.Errorf("agent %s is not shown", a)
		}
	}
	if !eval[bool](bctx, t, `document.getElementById("auth").hidden && document.getElementById("auth-key").value === ""`) {
		t.Error("the key form is still shown, or still holds the key, after the key worked")
	}
	if got := eval[string](bctx, t, `document.querySelector('[data-replica="radiology/radiology-1"]').dataset.health`); got != "Ejected" {
		t.Errorf("radiology-1 shows %q, want Ejected", got)
	}
	if got := eval[string](bctx, t, `[...document.querySelectorAll('article[data-agent="radiology"] .site h4')].map(e => e.textContent).join(",")`); got != "Site clinic-a,Site hospital" {
		t.Errorf("radiology's sites: %q", got)
	}
	if got := eval[string](bctx, t, `[...document.querySelectorAll('article[data-agent="triage"] .zone h5')].map(e => e.textContent).join(",")`); got != "Zone a1,Zone a2" {
		t.Errorf("triage's zones: %q", got)
	}
	// An autoscaled agent shows its bounds, desired vs ready, and why it scaled.
	if got := eval[string](bctx, t, `document.querySelector('[data-autoscale="scheduling"]').textContent`); !strings.Contains(got, "Autoscaling 0–4 on task load") ||
		!strings.Contains(got, "2 desired, 2 ready") || !strings.Contains(got, "scaled 1→2: load 0.90 over target 0.70 (3") || !strings.HasSuffix(got, "s ago)") {
		t.Errorf("the autoscaling line of scheduling: %q", got)
	}
	if got := eval[string](bctx, t, `String(document.querySelectorAll('[data-autoscale]').length)`); got != "1" {
		t.Errorf("%s agents show an autoscaling line, want only scheduling", got)
	}
	// An old exit of a replica running fine since is shown muted, not as an alarm.
	if got := eval[string](bctx, t, `(() => { const e = document.querySelector('[data-replica="triage/triage-2"] [data-role="exit"]');
		return e ? e.dataset.stale + "|" + e.className + "|" + e.textContent : "none"; })()`); got != "true|exit stale|last exit: signal: killed" {
		t.Errorf("triage-2's old exit: %q", got)
	}
	// A running task shows the time it has run, not 0 ms.
	if got := eval[string](bctx, t, `(() => { const c = document.querySelector('#tasks tr[data-state="working"] td.live');
		return c ? c.textContent : "none"; })()`); got == "none" || got == "0 ms" || got == "—" {
		t.Errorf("the working task's time: %q", got)
	}
	if got := eval[string](bctx, t, `document.querySelector('[data-metric="Unhealthy"]').firstChild.textContent`); got != "1" {
		t.Errorf("unhealthy replicas: %s, want 1 (the ejected radiology-1)", got)
	}
	if got := eval[string](bctx, t, `document.querySelector('[data-queued="triage"]').textContent`); got != "2" {
		t.Errorf("triage's queue shows %q, want 2", got)
	}

	// Recent tasks update live, and API data is shown as text, never parsed as HTML.
	waitFor(bctx, t, "the fleet: this gateway and its peer at the hospital", `!document.getElementById("fleet-section").hidden && document.querySelectorAll("#fleet tbody tr[data-gateway]").length === 2`, 5*time.Second)
	if got := eval[string](bctx, t, `[...document.querySelectorAll("#fleet tbody tr[data-gateway='gw-hub'] td")].map(e => e.textContent).join("|")`); !strings.Contains(got, "hospital") || !strings.Contains(got, "radiology, triage") || !strings.Contains(got, "2 / 20") || !strings.Contains(got, "38 ms") {
		t.Errorf("the hub's fleet row: %q", got)
	}
	waitFor(bctx, t, "the task list", `document.querySelectorAll("#tasks tbody tr[data-task]").length >= 9`, 5*time.Second)
	first := eval[string](bctx, t, `document.querySelector("#tasks tbody tr[data-task]").dataset.task`)
	waitFor(bctx, t, "a newer task at the top", fmt.Sprintf(`document.querySelector("#tasks tbody tr[data-task]").dataset.task !== %q`, first), 5*time.Second)
	if eval[bool](bctx, t, `!!document.querySelector("#tasks img") || window.__xss === 1`) {
		t.Fatal("a task's reason was rendered as HTML")
	}
	if !eval[bool](bctx, t, `[...document.querySelectorAll("#tasks td.reason")].some(td => td.textContent.includes('<img src=x onerror='))`) {
		t.Error("the reason with markup is not shown as text")
	}
	if !eval[bool](bctx, t, `[...document.querySelectorAll("#tasks td.redispatched")].some(td => td.textContent.includes("↻2"))`) {
		t.Error("a task tried 3 times is not marked as re-dispatched twice")
	}
	// The audit endpoint answers 403: the section stays hidden.
	if !eval[bool](bctx, t, `document.getElementById("audit-section").hidden`) {
		t.Error("the audit section shows although the API refused it")
	}

	// Kill a replica: the supervisor reports CrashLoopBackOff and the gateway stops routing to it.
	api.mu.Lock()
	for i := range api.agents[0].Endpoints {
		e := &api.agents[0].Endpoints[i]
		if e.Name == "triage-1" {
			e.State, e.Ready, e.PID, e.Restarts, e.LastExit = discovery.StateCrashLoopBackOff, false, 0, 1, "signal: killed"
			e.Since, e.NextStart = time.Now(), time.Now().Add(4*time.Second)
		}
	}
	api.inFlight["triage-1"] = 0
	api.auditStatus = http.StatusOK // and an admin's audit view becomes available
	api.mu.Unlock()

	waitFor(bctx, t, "triage-1 shown in CrashLoopBackOff", `(() => {
		const r = document.querySelector('[data-replica="triage/triage-1"]');
		return !!r && r.dataset.health === "CrashLoopBackOff" && r.dataset.ready === "false" &&
			r.querySelector('[data-role="health"]').textContent === "CrashLoopBackOff" &&
			r.textContent.includes("signal: killed");
	})()`, 5*time.Second)
	waitFor(bctx, t, "2 unhealthy replicas, each with why", `document.querySelector('[data-metric="Unhealthy"]').firstChild.textContent === "2" &&
		document.querySelector('[data-unhealthy="triage-1"]').textContent.includes("crash-looping (last exit: signal: killed, restarts: 1)") &&
		document.querySelector('[data-unhealthy="radiology-1"]').textContent.includes("ejected")`, 5*time.Second)
	if got := eval[string](bctx, t, `document.querySelector('article[data-agent="triage"] .agent-head .badge').textContent`); got != "2/3 ready" {
		t.Errorf("triage's readiness shows %q, want 2/3 ready", got)
	}
	waitFor(bctx, t, "the audit section", `!document.getElementById("audit-section").hidden && document.querySelectorAll("#audit tbody tr[data-seq]").length === 6`, 8*time.Second)
	if got := eval[string](bctx, t, `document.querySelector("#conn").className`); !strings.Contains(got, "conn-live") {
		t.Errorf("connection indicator is %q", got)
	}

	dir := artifactsDir(t)
	shoot := func(name string) {
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
	shoot("dashboard-light.png")
	if err := chromedp.Do(bctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
		})
		return err
	})); err != nil {
		t.Logf("dark mode emulation unavailable: %v", err)
	} else {
		shoot("dashboard-dark.png")
	}

	// The gateway going away shows as a stale page, not as old data presented as live.
	_ = srv.Close()
	waitFor(bctx, t, "the stale indicator", `document.querySelector("#conn").className.includes("conn-stale")`, 5*time.Second)

	var unexpected []string
	for _, e := range pageErrors() {
		// After the server is closed, failed fetches are expected.
		if !strings.Contains(e, "ERR_CONNECTION_REFUSED") && !strings.Contains(e, "Failed to fetch") {
			unexpected = append(unexpected, e)
		}
	}
	if len(unexpected) > 0 {
		t.Errorf("the page reported errors:\n%s", strings.Join(unexpected, "\n"))
	}
}

// startBrowser starts a headless Chromium for the test and returns its context, and a function
// that returns what the page reported as errors so far: exceptions, console.error, and browser
// log errors (which include Content-Security-Policy violations) that expected does not accept.
func startBrowser(ctx context.Context, t *testing.T, exe string, expected func(*cdplog.Entry) bool) (context.Context, func() []string) {
	t.Helper()
	profile, err := os.MkdirTemp("", "agentplane-ui-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Chromium's helpers may still write there for a moment after it exits.
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.WindowSize(1440, 1000),
	)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(cancelBrowser)

	// Collect what the page reports as errors: exceptions, console.error, and browser log
	// errors, which include Content-Security-Policy violations.
	var mu sync.Mutex
	var pageErrors []string
	if err := chromedp.Listen(bctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			pageErrors = append(pageErrors, "exception: "+ev.ExceptionDetails.Text+" "+exceptionText(ev.ExceptionDetails))
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				pageErrors = append(pageErrors, "console.error")
			}
		case *cdplog.EventEntryAdded:
			e := ev.Entry
			if e.Level == cdplog.EntryLevelError && !expected(e) {
				pageErrors = append(pageErrors, fmt.Sprintf("%s: %s (%s)", e.Source, e.Text, e.URL))
			}
		}
	}); err != nil {
		t.Fatal(err)
	}

	return bctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(pageErrors)
	}
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d.Exception != nil && d.Exception.Description != "" {
		return d.Exception.Description
	}
	return ""
}

//go:build e2esites

package sites

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testutil"
	"github.com/agentplane/agentplane/test/sites/lab"
)

var binary string

func TestMain(m *testing.M) {
	// Built without -race: the suite runs a dozen gateways, replicas and servers on a small
	// machine, and measures how long takeovers take; the race detector runs in `make test`.
	os.Exit(testutil.RunWithAgentplane(m, false, &binary))
}

// Ports inside every site.
const (
	clientPort  = 4222
	clusterPort = 6222
	leafPort    = 7422
	monitorPort = 8222
	gatewayPort = 8080
)

// Timing of the fleet in the suite: heartbeats every 500 ms, so a gateway is taken for dead
// 1.5 s after its last one.
const (
	heartbeat = 500 * time.Millisecond
	interSite = 20 * time.Millisecond // one-way latency between sites
	fleetKey  = "sites-suite-fleet-key-0123456789abcdef"
)

// world is one run's sites and what runs in them.
type world struct {
	t   *testing.T
	lab *lab.Lab
	dir string
	key string // fleet key file
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, lab: lab.New(t, lab.Options{}), dir: t.TempDir()}
	w.key = filepath.Join(w.dir, "fleet.key")
	if err := os.WriteFile(w.key, []byte(fleetKey), 0o600); err != nil {
		t.Fatal(err)
	}
	return w
}

// natsServer starts a nats-server in site from cfg (a lab.ClusterConfig or lab.LeafConfig).
func (w *world) natsServer(site *lab.Site, name string, write func(path string), monitor string) *lab.Proc {
	w.t.Helper()
	conf := filepath.Join(w.dir, name, "nats.conf")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		w.t.Fatal(err)
	}
	write(conf)
	p := site.Start(w.t, "nats-server@"+name, filepath.Join(w.dir, name, "nats.log"), lab.NATSServer(w.t), "-c", conf)
	lab.WaitHealthy(w.t, monitor, 60*time.Second)
	return p
}

// agentSpec is one agent of a site's manifest.
type agentSpec struct {
	name           string
	replicas       int
	maxConcurrency int
	latency        string
	allowedSites   []string
}

func (w *world) manifest(name string, agents ...agentSpec) string {
	w.t.Helper()
	var b strings.Builder
	for _, a := range agents {
		fmt.Fprintf(&b, "---\napiVersion: agentplane.io/v1alpha1\nkind: Agent\nmetadata:\n  name: %s\nspec:\n  replicas: %d\n  maxConcurrency: %d\n  command: [agentplane, simagent]\n  args: [\"--latency\", %q]\n",
			a.name, a.replicas, a.maxConcurrency, a.latency)
		if len(a.allowedSites) > 0 {
			fmt.Fprintf(&b, "  placement:\n    allowedSites: [%s]\n", strings.Join(a.allowedSites, ", "))
		}
	}
	path := filepath.Join(w.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		w.t.Fatal(err)
	}
	return path
}

// gateway is one `agentplane up` of a site.
type gateway struct {
	id, site string
	s        *lab.Site
	addr     string // ip:port
	natsURL  string
	manifest string
	extra    []string
	proc     *lab.Proc
	w        *world
}

func (g *gateway) url() string { return "http://" + g.addr }

// startGateway runs `agentplane up` in site s as gateway id, with the fleet on natsURL.
func (w *world) startGateway(s *lab.Site, id string, port int, natsURL, manifest string, extra ...string) *gateway {
	w.t.Helper()
	g := &gateway{id: id, site: s.Name(), s: s, addr: s.Addr(port), natsURL: natsURL, manifest: manifest, extra: extra, w: w}
	g.start()
	return g
}

func (g *gateway) start() {
	t := g.w.t
	t.Helper()
	args := []string{binary, "up", "-f", g.manifest, "--listen", g.addr, "--insecure-listen-remote",
		"--data-dir", filepath.Join(g.w.dir, g.id), "--site", g.site, "--gateway-id", g.id,
		"--nats-url", g.natsURL, "--journal-replicas", "1", "--fleet-key-file", g.w.key, "--fleet-url", g.url(),
		"--fleet-heartbeat", heartbeat.String(), "--drain-timeout", "2s", "--restart-backoff", "200ms"}
	args = append(args, g.extra...)
	g.proc = g.s.Start(t, "agentplane@"+g.id, filepath.Join(g.w.dir, g.id+".log"), args...)
	testutil.Eventually(t, 60*time.Second, 200*time.Millisecond, func() error {
		var agents struct {
			Agents []struct {
				Name           string `json:"name"`
				Ready, Desired int
			} `json:"agents"`
		}
		if err := lab.GetJSON(t.Context(), g.url()+"/api/v1/agents", 3*time.Second, &agents); err != nil {
			return err
		}
		for _, a := range agents.Agents {
			if a.Desired > 0 && a.Ready < a.Desired {
				return fmt.Errorf("gateway %s: agent %s has %d of %d replicas ready", g.id, a.Name, a.Ready, a.Desired)
			}
		}
		return nil
	})
}

// waitFleet waits until g sees the gateways ids in its fleet.
func (g *gateway) waitFleet(ids ...string) {
	t := g.w.t
	t.Helper()
	testutil.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		seen, err := g.fleet()
		if err != nil {
			return err
		}
		for _, id := range ids {
			if !slices.Contains(seen, id) {
				return fmt.Errorf("gateway %s sees %v, not %s", g.id, seen, id)
			}
		}
		return nil
	})
}

func (g *gateway) fleet() ([]string, error) {
	var f struct {
		Members []struct {
			ID string `json:"id"`
		} `json:"members"`
	}
	if err := lab.GetJSON(g.w.t.Context(), g.url()+"/api/v1/fleet", 3*time.Second, &f); err != nil {
		return nil, err
	}
	var ids []string
	for _, m := range f.Members {
		ids = append(ids, m.ID)
	}
	return ids, nil
}

// metric returns the sum of a counter's samples whose labels contain match, from g's /metrics.
func (g *gateway) metric(name, match string) (float64, error) {
	ctx, cancel := context.WithTimeout(g.w.t.Context(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.url()+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name) && strings.Contains(line, match) {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v); err == nil {
				sum += v
			}
		}
	}
	return sum, nil
}

// --- clients ---------------------------------------------------------------------------------

// rpcAnswer is a JSON-RPC answer as the suite reads it.
type rpcAnswer struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

var seq atomic.Int64

// call POSTs one JSON-RPC request to agent at base with client c, within ctx.
func call(ctx context.Context, c *http.Client, base, agent, body string) (rpcAnswer, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/agents/"+agent, strings.NewReader(body))
	if err != nil {
		return rpcAnswer{}, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return rpcAnswer{}, 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return rpcAnswer{}, resp.StatusCode, err
	}
	var a rpcAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		return a, resp.StatusCode, fmt.Errorf("HTTP %d, not JSON-RPC: %.200s", resp.StatusCode, raw)
	}
	return a, resp.StatusCode, nil
}

// sendAsync sends a message that returns at once, with a task id.
func sendAsync(ctx context.Context, c *http.Client, base, agent string) (id string, a rpcAnswer, err error) {
	n := seq.Add(1)
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"SendMessage","params":{"message":{"messageId":"sites-%d","role":"ROLE_USER","parts":[{"text":"study %d"}]},"configuration":{"returnImmediately":true}}}`, n, n, n)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	a, _, err = call(ctx, c, base, agent, body)
	if err != nil || a.Error != nil {
		return "", a, err
	}
	var r struct {
		Task struct {
			ID string `json:"id"`
		} `json:"task"`
		ID string `json:"id"`
	}
	_ = json.Unmarshal(a.Result, &r)
	return cmpOr(r.Task.ID, r.ID), a, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// getTask reads a task's state at base.
func getTask(ctx context.Context, c *http.Client, base, agent, id string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	a, _, err := call(ctx, c, base, agent, fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":%q}}`, id))
	if err != nil {
		return "", err
	}
	if a.Error != nil {
		return "", fmt.Errorf("GetTask: %d %s", a.Error.Code, a.Error.Message)
	}
	var r struct {
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := json.Unmarshal(a.Result, &r); err != nil {
		return "", err
	}
	return r.Status.State, nil
}

// outcome of one logical task of a load.
type taskResult struct {
	accepted   bool
	acceptedBy string
	id         string
	state      string // terminal state, or "" when never known
	refused    *rpcAnswer
	took       time.Duration
	finished   time.Time
	streamed   bool // sent as a stream that the gateway took
}

// tally is a scenario's count, printed as the line the suite promises.
type tally struct {
	tasks, completed, failed, lost, violations int
}

func (tl tally) line(name string) string {
	return fmt.Sprintf("sites: scenario=%s tasks=%d completed=%d failed=%d lost=%d residency_violations=%d",
		name, tl.tasks, tl.completed, tl.failed, tl.lost, tl.violations)
}

// count tallies results: a task accepted but never ended is lost; a task refused, or ended in
// another state than completed, failed.
func count(results []*taskResult) tally {
	var tl tally
	for _, r := range results {
		tl.tasks++
		switch {
		case r.state == "TASK_STATE_COMPLETED":
			tl.completed++
		case r.accepted && r.state == "":
			tl.lost++
		default:
			tl.failed++
		}
	}
	return tl
}

// report logs and prints the scenario line and checks its promise.
func report(t *testing.T, name string, tl tally, extra string, lostOnes ...*taskResult) {
	t.Helper()
	line := tl.line(name)
	fmt.Println(line)
	if extra != "" {
		fmt.Printf("sites: scenario=%s measured %s\n", name, extra)
	}
	if tl.lost != 0 || tl.violations != 0 || tl.tasks != tl.completed+tl.failed+tl.lost {
		for _, r := range lostOnes {
			t.Logf("lost: task %s accepted by %s", r.id, r.acceptedBy)
		}
		t.Errorf("%s: a task was lost, or ran where it may not", line)
	}
}

// load is an open-loop load of async tasks: n tasks at a fixed rate, each sent to the next
// gateway of targets() that takes it (a client retries another gateway when one refuses or
// cannot be reached), then read by id from any gateway of readers() until it ends.
type load struct {
	agent   string
	n       int
	every   time.Duration
	targets func() []string // base URLs to send to, in order of preference
	readers func() []string // base URLs a task can be read from
	client  *http.Client
	within  time.Duration // how long a task may take to end once accepted
	// blocking sends wait for the task's end on the gateway that took it (which runs it, or
	// spills it), instead of returning at once to be read by id: queued tasks are taken by
	// whichever gateway of the journal is free, which is load sharing of another kind.
	blocking bool
	// streaming sends half the tasks as streams (SendStreamingMessage): its first event
	// carries the task id, so a client whose stream breaks with its gateway reads the result
	// by id from another.
	streaming bool
}

func (l load) run(ctx context.Context) []*taskResult {
	if l.client == nil {
		l.client = &http.Client{}
	}
	if l.within == 0 {
		l.within = 60 * time.Second
	}
	results := make([]*taskResult, l.n)
	var wg sync.WaitGroup
	tick := time.NewTicker(l.every)
	defer tick.Stop()
	for i := range l.n {
		r := &taskResult{}
		results[i] = r
		wg.Go(func() { l.one(ctx, i, r) })
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	wg.Wait()
	return results
}

func (l load) one(ctx context.Context, i int, r *taskResult) {
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	for !r.accepted && time.Now().Before(deadline) && ctx.Err() == nil {
		targets := l.targets()
		if len(targets) == 0 {
			break
		}
		base := targets[i%len(targets)]
		if l.blocking {
			if l.sendBlocking(ctx, base, r, start) {
				return
			}
			i++
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if l.streaming && i%4 < 2 { // half the tasks, to every gateway
			if done, ok := l.sendStream(ctx, base, r, start); done {
				return
			} else if ok {
				break // accepted: the stream broke; read it by id below
			}
			i++
			time.Sleep(200 * time.Millisecond)
			continue
		}
		id, a, err := sendAsync(ctx, l.client, base, l.agent)
		switch {
		case err == nil && a.Error == nil && id != "":
			r.accepted, r.acceptedBy, r.id = true, base, id
		case err == nil && a.Error != nil:
			r.refused = &a
			if a.Error.Code == -32056 { // residency: final, no other gateway may take it either
				return
			}
			fallthrough
		default:
			i++ // the next gateway
			time.Sleep(200 * time.Millisecond)
		}
	}
	if !r.accepted {
		return
	}
	end := time.Now().Add(l.within)
	for time.Now().Before(end) && ctx.Err() == nil {
		// The gateway that took the task first; when it cannot be reached, any other.
		for _, base := range append([]string{r.acceptedBy}, l.readers()...) {
			st, err := getTask(ctx, l.client, base, l.agent, r.id)
			if err != nil {
				continue
			}
			switch st {
			case "TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED", "TASK_STATE_REJECTED":
				r.state, r.took, r.finished = st, time.Since(start), time.Now()
				return
			}
			break // still running: read again later
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// sendStream sends a streaming message and reads its events. done: the task ended on the
// stream. ok: the gateway took it (an event named its id), even if the stream then broke.
func (l load) sendStream(ctx context.Context, base string, r *taskResult, start time.Time) (done, ok bool) {
	n := seq.Add(1)
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"SendStreamingMessage","params":{"message":{"messageId":"sites-%d","role":"ROLE_USER","parts":[{"text":"study %d"}]}}}`, n, n, n)
	ctx, cancel := context.WithTimeout(ctx, l.within)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/agents/"+l.agent, strings.NewReader(body))
	if err != nil {
		return false, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := l.client.Do(req)
	if err != nil {
		return false, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line, found := strings.CutPrefix(sc.Text(), "data:")
		if !found {
			continue
		}
		var ev struct {
			Result struct {
				Task struct {
					ID     string                 `json:"id"`
					Status struct{ State string } `json:"status"`
				} `json:"task"`
				StatusUpdate struct {
					TaskID string                 `json:"taskId"`
					Status struct{ State string } `json:"status"`
				} `json:"statusUpdate"`
			} `json:"result"`
			Error *struct{ Code int } `json:"error"`
		}
		if json.Unmarshal([]byte(strings.TrimSpace(line)), &ev) != nil || ev.Error != nil {
			return false, r.accepted
		}
		if id := cmpOr(ev.Result.Task.ID, ev.Result.StatusUpdate.TaskID); id != "" && !r.accepted {
			r.accepted, r.acceptedBy, r.id, r.streamed = true, base, id, true
		}
		switch st := cmpOr(ev.Result.Task.Status.State, ev.Result.StatusUpdate.Status.State); st {
		case "TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED", "TASK_STATE_REJECTED":
			r.state, r.took, r.finished = st, time.Since(start), time.Now()
			return true, true
		}
	}
	return false, r.accepted
}

// sendBlocking sends a blocking message and records its end; it returns false when the
// gateway could not be reached or refused it, for the caller to try another.
func (l load) sendBlocking(ctx context.Context, base string, r *taskResult, start time.Time) bool {
	n := seq.Add(1)
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"SendMessage","params":{"message":{"messageId":"sites-%d","role":"ROLE_USER","parts":[{"text":"study %d"}]}}}`, n, n, n)
	ctx, cancel := context.WithTimeout(ctx, l.within)
	defer cancel()
	a, _, err := call(ctx, l.client, base, l.agent, body)
	if err != nil {
		return false
	}
	if a.Error != nil {
		r.refused = &a
		return false
	}
	var res struct {
		Task struct {
			ID     string `json:"id"`
			Status struct {
				State string `json:"state"`
			} `json:"status"`
		} `json:"task"`
	}
	_ = json.Unmarshal(a.Result, &res)
	r.accepted, r.acceptedBy, r.id = true, base, res.Task.ID
	r.state, r.took, r.finished = res.Task.Status.State, time.Since(start), time.Now()
	return true
}

// percentile of the durations of completed tasks.
func percentile(results []*taskResult, p float64) time.Duration {
	var d []time.Duration
	for _, r := range results {
		if r.state == "TASK_STATE_COMPLETED" {
			d = append(d, r.took)
		}
	}
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[min(len(d)-1, int(p*float64(len(d))))]
}

// siteClient is an HTTP client whose connections start inside site s.
func siteClient(s *lab.Site) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: s.DialContext}}
}

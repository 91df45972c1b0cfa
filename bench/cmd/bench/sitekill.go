package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentplane/agentplane/bench/internal/procfs"
)

// The sitekill scenario: two sites on 127.0.0.1, each one `agentplane up` gateway with its own
// replicas, lose one site (its gateway and replicas SIGKILLed together) while tasks run.
//
//   - haproxy, haproxy-resend: two independent gateways (each its own embedded journal) behind
//     HAProxy with health checks; clients send blocking SendMessage through HAProxy. Without
//     re-sending, a task in flight on the lost site dies with it (HAProxy answers 502); with
//     `retry-on empty-response`, HAProxy sends the request again to the other site
//     (at-least-once: the lost site may have done part of the work).
//   - agentplane-fleet: both gateways share one journal on a nats-server (a fleet); clients send
//     with returnImmediately, then poll GetTask at their gateway, and at the other one when
//     theirs is gone. The surviving gateway takes over the lost one's tasks once its lease is
//     over (3 missed heartbeats).

// sitesLatency is the service time of the sitekill scenario: long enough that many tasks are in
// flight when the site is lost.
const sitesLatency = "lognormal:500ms,3s"

// siteTargets are the sitekill scenario's targets for the -targets the run was given.
func siteTargets(targets []string) []string {
	var out []string
	if slices.Contains(targets, "haproxy") {
		out = append(out, "haproxy", "haproxy-resend")
	}
	if slices.Contains(targets, "agentplane") {
		out = append(out, "agentplane-fleet")
	}
	return out
}

// sitesReplicas is how many replicas each of the two sites runs: half of -replicas, so that the
// two sites together have the capacity of the other scenarios' replicas.
func sitesReplicas(cfg config) int { return max(1, cfg.replicas/2) }

// site is one `agentplane up` (gateway and supervisor) with its replicas, standing for a site.
type site struct {
	name string
	p    *proc
	base string // http://host:port
	mu   sync.Mutex
	pids map[int]bool // replica pids seen
}

func (s *site) agentURL() string { return s.base + "/agents/bench" }

// note records the pids of the site's replicas.
func (s *site) note() {
	reps, err := getReplicas(s.base)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range reps {
		if r.PID > 0 && !r.Gateway {
			s.pids[r.PID] = true
		}
	}
}

func (s *site) replicaPIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for pid := range s.pids {
		out = append(out, pid)
	}
	return out
}

// kill loses the site: SIGKILL to the gateway's process group and to every replica (each in
// a process group of its own) at once.
func (s *site) kill() (string, error) {
	s.note()
	pids := s.replicaPIDs()
	err := syscall.Kill(-s.p.pid(), syscall.SIGKILL)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return fmt.Sprintf("site %s: gateway (pid %d) and %d replicas", s.name, s.p.pid(), len(pids)), err
}

// startSite starts `agentplane up` for a site with n replicas, the bench's replicas first to
// first+n-1, and extra flags (--listen among them), and waits until all its replicas are ready.
func startSite(ctx context.Context, e env, sc scenario, dir, name string, n, first int, extra []string) (*site, error) {
	sdir := filepath.Join(dir, "site-"+name)
	if err := os.MkdirAll(sdir, 0o755); err != nil {
		return nil, err
	}
	mpath, err := writeManifest(e, sc, sdir, n, first)
	if err != nil {
		return nil, err
	}
	addr := extra[slices.Index(extra, "--listen")+1]
	s := &site{name: name, base: "http://" + addr, pids: map[int]bool{}}
	argv := append([]string{e.bin, "up", "-f", mpath,
		"--data-dir", filepath.Join(sdir, "data"), "--drain-timeout", "2s", "--grace", "2s", "--task-timeout", "120s", "--log-level", "warn"}, extra...)
	if s.p, err = e.ps.start("agentplane-"+name, sdir, nil, argv...); err != nil {
		return nil, err
	}
	s.p.extra = s.replicaPIDs
	allReady := func(*http.Response) bool {
		reps, err := getReplicas(s.base)
		if err != nil {
			return false
		}
		ready := 0
		for _, x := range reps {
			if x.Ready && !x.Gateway {
				ready++
			}
		}
		return ready == n // in a fleet, the other sites' gateways are listed too
	}
	if err := waitHTTP(ctx, s.p, s.base+"/healthz", 30*time.Second, allReady); err != nil {
		s.stop()
		return nil, err
	}
	s.note()
	return s, nil
}

func (s *site) stop() { s.note(); s.p.stop(8 * time.Second) }

// natsServer returns a nats-server of the version the repository's go.mod requires, built once
// into ~/.cache/agentplane/bin as the multi-site tests do (test/sites/lab).
func natsServer(ctx context.Context, repo string) (string, error) {
	const module = "github.com/nats-io/nats-server/v2"
	list := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}}", module)
	list.Dir = repo
	out, err := list.Output()
	if err != nil {
		return "", fmt.Errorf("nats-server version from go.mod: %w", err)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(home, ".cache", "agentplane", "bin")
	path := filepath.Join(dir, "nats-server-"+strings.TrimSpace(string(out)))
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp := path + ".bench-build"
	logf("building %s", path)
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", tmp, module)
	build.Dir, build.Stdout, build.Stderr = repo, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("go build nats-server: %w", err)
	}
	return path, os.Rename(tmp, path)
}

// startNATS starts a nats-server with JetStream on 127.0.0.1 and returns its URL.
func startNATS(ctx context.Context, e env, dir string) (*proc, string, error) {
	bin, err := natsServer(ctx, e.cfg.repo)
	if err != nil {
		return nil, "", err
	}
	port, err1 := procfs.FreePort()
	mon, err2 := procfs.FreePort()
	if err := errors.Join(err1, err2); err != nil {
		return nil, "", err
	}
	p, err := e.ps.start("nats-server", dir, nil, bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port),
		"-m", strconv.Itoa(mon), "-js", "-sd", filepath.Join(dir, "jetstream"))
	if err != nil {
		return nil, "", err
	}
	if err := waitHTTP(ctx, p, fmt.Sprintf("http://127.0.0.1:%d/healthz", mon), 15*time.Second, status200); err != nil {
		p.stop(3 * time.Second)
		return nil, "", err
	}
	return p, fmt.Sprintf("nats://127.0.0.1:%d", port), nil
}

// runSites runs the sitekill scenario against one of siteTargets.
func runSites(ctx context.Context, e env, sc scenario, target string) (summary, error) {
	dir := filepath.Join(e.workDir, sc.name+"-"+target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return summary{}, err
	}
	logf("%s / %s: starting", sc.name, target)
	var s summary
	var err error
	if target == "agentplane-fleet" {
		s, err = runFleet(ctx, e, sc, dir)
	} else {
		s, err = runHAProxySites(ctx, e, sc, dir, target == "haproxy-resend")
	}
	if err != nil {
		return s, err
	}
	logf("%s / %s: %d sent, %d ok, %d errors, %d lost; p50 %v p99 %v; %d in flight on the lost site, %d of them completed, first after %v",
		sc.name, target, s.Sent, s.OK, s.Errors, s.Lost, s.P50.Round(time.Millisecond), s.P99.Round(time.Millisecond),
		s.Orphaned, s.OrphansDone, s.Takeover.Round(time.Millisecond))
	if ctx.Err() != nil {
		return s, errors.New("interrupted")
	}
	return s, nil
}

// startTwoSites starts sites a and b, each with its share of the replicas and the flags
// extra(name, address) returns for it.
func startTwoSites(ctx context.Context, e env, sc scenario, dir string, extra func(name, addr string) []string) ([]*site, error) {
	n := sitesReplicas(e.cfg)
	var sites []*site
	for i, name := range []string{"a", "b"} {
		port, err := procfs.FreePort()
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		s, err := startSite(ctx, e, sc, dir, name, n, i*n, append([]string{"--listen", addr}, extra(name, addr)...))
		if err != nil {
			for _, s := range sites {
				s.stop()
			}
			return nil, err
		}
		sites = append(sites, s)
	}
	return sites, nil
}

// runHAProxySites: two independent gateways behind HAProxy; resend turns on HAProxy's re-send
// of a request whose server closed the connection without an answer.
func runHAProxySites(ctx context.Context, e env, sc scenario, dir string, resend bool) (summary, error) {
	sites, err := startTwoSites(ctx, e, sc, dir, func(string, string) []string { return nil })
	if err != nil {
		return summary{}, err
	}
	defer func() {
		for _, s := range sites {
			s.stop()
		}
	}()
	port, err := procfs.FreePort()
	if err != nil {
		return summary{}, err
	}
	var servers strings.Builder
	for i, s := range sites {
		fmt.Fprintf(&servers, "    server site-%s %s\n", []string{"a", "b"}[i], strings.TrimPrefix(s.base, "http://"))
	}
	// The bench's HAProxy configuration, in front of gateways instead of replicas: no maxconn
	// (each gateway queues its own tasks), a log line per request with its retries.
	cfg := fmt.Sprintf(haproxyConfig, e.cfg.proxyThreads, dir, port, "", servers.String(), "    balance leastconn\n", e.cfg.queueTimeout.Milliseconds())
	cfg = strings.Replace(cfg, "global\n", "global\n    log stdout format raw local0\n", 1)
	cfg = strings.Replace(cfg, "defaults\n", "defaults\n    log global\n    log-format \"%s %ST %rc %Tt\"\n", 1)
	if !resend {
		cfg = strings.Replace(cfg, "retry-on conn-failure empty-response", "retry-on conn-failure", 1)
	}
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return summary{}, err
	}
	hp, err := e.ps.start("haproxy", dir, nil, "haproxy", "-db", "-f", cfgPath)
	if err != nil {
		return summary{}, err
	}
	defer hp.stop(3 * time.Second)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := waitHTTP(ctx, hp, base+"/healthz", 10*time.Second, status200); err != nil {
		return summary{}, err
	}
	url := func() string { return base + "/agents/bench" }
	c := newClient(e.cfg.timeout)
	defer c.CloseIdleConnections()
	warm(ctx, c, url, 4*sitesReplicas(e.cfg))
	logLines := countLines(filepath.Join(dir, "haproxy.log"))

	var killed string
	kill := func() {
		who, err := sites[0].kill()
		if err != nil {
			logf("kill: %v", err)
		}
		killed = who
	}
	ss := openLoopFunc(ctx, sc, e.cfg, func(id int) sample { return send(ctx, c, url(), sc.name, id) }, kill)
	// A 502 is HAProxy saying the gateway closed the connection under the request: the task
	// was accepted and died with the site.
	for i := range ss {
		if ss[i].out == refused && ss[i].why == "HTTP 502" {
			ss[i].out, ss[i].why = lost, "HTTP 502 (the site died with the task)"
		}
	}
	name := "haproxy"
	if resend {
		name = "haproxy-resend"
	}
	s := summarize(name, ss, sc.duration)
	s.Killed, s.Restarts, s.CPUSeconds = killed, -1, -1
	s.Resent = haproxyRetried(filepath.Join(dir, "haproxy.log"), logLines)
	s.Orphaned = s.Lost + s.Resent
	s.OrphansDone = s.Resent
	return s, nil
}

func countLines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
	}
	return n
}

// haproxyRetried counts the requests HAProxy's log (log-format "%s %ST %rc %Tt") shows re-sent,
// after the first skip lines (the warm-up).
func haproxyRetried(path string, skip int) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n, line := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line++
		if line <= skip {
			continue
		}
		fs := strings.Fields(sc.Text())
		if len(fs) != 4 {
			continue
		}
		if r, err := strconv.Atoi(strings.TrimPrefix(fs[2], "+")); err == nil && r > 0 {
			n++
		}
	}
	return n
}

// fleetTask is one task a fleet client sent, as the client saw it.
type fleetTask struct {
	gw       int           // the gateway that accepted it
	done     time.Duration // when the client saw it end, from the start of the run; 0 before
	ok       bool
	preKill  bool // it had ended before the site was lost
	accepted time.Duration
}

// fleetLoad is the clients of the agentplane-fleet target.
type fleetLoad struct {
	c       *http.Client
	urls    []string // agent URL per gateway
	start   time.Time
	poll    time.Duration
	timeout time.Duration
	run     string
	mu      sync.Mutex
	tasks   map[string]*fleetTask
}

// rpc posts a JSON-RPC request and returns its result, or the outcome and reason of its failure.
func rpc(ctx context.Context, c *http.Client, url, body string) (json.RawMessage, outcome, string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		s := classify(err, 0)
		return nil, s.out, s.why
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		s := classify(err, 0)
		return nil, s.out, s.why
	}
	if resp.StatusCode != http.StatusOK {
		return nil, refused, fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	var v struct {
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if json.Unmarshal(b, &v) != nil || len(v.Error) > 0 || len(v.Result) == 0 {
		return nil, refused, "JSON-RPC error"
	}
	return v.Result, ok, ""
}

// taskState reads the id and state of a SendMessage result ({"task": …}) or a Task.
func taskState(result json.RawMessage) (id, state string) {
	var v struct {
		Task *struct {
			ID     string `json:"id"`
			Status struct {
				State string `json:"state"`
			} `json:"status"`
		} `json:"task"`
		ID     string `json:"id"`
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if json.Unmarshal(result, &v) != nil {
		return "", ""
	}
	if v.Task != nil {
		return v.Task.ID, v.Task.Status.State
	}
	return v.ID, v.Status.State
}

func terminal(state string) bool {
	switch state {
	case "TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED", "TASK_STATE_REJECTED":
		return true
	}
	return false
}

const asyncBody = `{"jsonrpc":"2.0","id":%d,"method":"SendMessage","params":{"message":{"messageId":"bench-%s-%d","role":"ROLE_USER","parts":[{"text":"patient reports chest pain since this morning"}]},"configuration":{"returnImmediately":true}}}`

const getTaskBody = `{"jsonrpc":"2.0","id":%d,"method":"GetTask","params":{"id":%q}}`

// do is one client: send to gateway id%2 (the other when that one refuses the connection, or
// drops it — then the task may run twice), then poll GetTask until the task ends, at the other
// gateway whenever the one polled fails.
func (f *fleetLoad) do(ctx context.Context, n int) sample {
	began := time.Now()
	deadline := began.Add(f.timeout)
	body := fmt.Sprintf(asyncBody, n, f.run, n)
	var id, state, why string
	gw := n % 2
	out := refused
	resent := false
	for k := range 2 {
		g := (n + k) % 2
		res, o, w := rpc(ctx, f.c, f.urls[g], body)
		if o == ok {
			id, state = taskState(res)
			gw, out = g, ok
			break
		}
		out, why = o, w
		resent = resent || o == lost
	}
	if out != ok {
		return sample{latency: time.Since(began), out: out, why: "send: " + why}
	}
	if id == "" {
		return sample{latency: time.Since(began), out: refused, why: "send: no task id"}
	}
	t := &fleetTask{gw: gw, accepted: time.Since(f.start)}
	f.mu.Lock()
	f.tasks[id] = t
	f.mu.Unlock()
	at := gw
	for !terminal(state) {
		if time.Now().After(deadline) {
			if why == "" {
				why = "never ended (client timeout)"
			}
			return sample{latency: time.Since(began), out: lost, why: why}
		}
		select {
		case <-ctx.Done():
			return sample{latency: time.Since(began), out: lost, why: "canceled"}
		case <-time.After(f.poll):
		}
		res, o, w := rpc(ctx, f.c, f.urls[at], fmt.Sprintf(getTaskBody, n, id))
		if o != ok {
			at, why = 1-at, "GetTask: "+w // poll the other gateway
			continue
		}
		_, state = taskState(res)
	}
	d := time.Since(began)
	f.mu.Lock()
	t.done, t.ok = time.Since(f.start), state == "TASK_STATE_COMPLETED"
	f.mu.Unlock()
	s := sample{latency: d, out: ok}
	if !t.ok {
		s.out, s.why = refused, "task "+state
	}
	if resent {
		s.why = "re-sent after a dropped connection"
	}
	return s
}

// runFleet: both gateways share one journal on a nats-server and form a fleet.
func runFleet(ctx context.Context, e env, sc scenario, dir string) (summary, error) {
	nats, natsURL, err := startNATS(ctx, e, dir)
	if err != nil {
		return summary{}, err
	}
	defer nats.stop(3 * time.Second)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keyPath := filepath.Join(dir, "fleet.key")
	if err := os.WriteFile(keyPath, []byte(hex.EncodeToString(key)), 0o600); err != nil {
		return summary{}, err
	}
	sites, err := startTwoSites(ctx, e, sc, dir, func(name, addr string) []string {
		return []string{"--nats-url", natsURL, "--gateway-id", "site-" + name, "--site", name,
			"--fleet-url", "http://" + addr, "--fleet-key-file", keyPath,
			"--fleet-heartbeat", e.cfg.fleetHeartbeat.String()}
	})
	if err != nil {
		return summary{}, err
	}
	defer func() {
		for _, s := range sites {
			s.stop()
		}
	}()
	c := newClient(e.cfg.timeout)
	defer c.CloseIdleConnections()
	for _, s := range sites {
		warm(ctx, c, s.agentURL, 2*sitesReplicas(e.cfg))
	}
	f := &fleetLoad{c: c, urls: []string{sites[0].agentURL(), sites[1].agentURL()}, poll: e.cfg.poll,
		timeout: e.cfg.timeout, run: sc.name, tasks: map[string]*fleetTask{}}
	var killed string
	var killAt time.Duration
	kill := func() {
		killAt = time.Since(f.start)
		who, err := sites[0].kill()
		if err != nil {
			logf("kill: %v", err)
		}
		killed = who
		// Tasks of the lost site that had already ended are no orphans: ask the other gateway
		// now, long before it can take over any (a lease lasts 3 heartbeats).
		f.mu.Lock()
		var open []string
		for id, t := range f.tasks {
			if t.gw == 0 && t.done == 0 {
				open = append(open, id)
			}
		}
		f.mu.Unlock()
		ended := map[string]bool{}
		for _, id := range open {
			if res, o, _ := rpc(ctx, c, f.urls[1], fmt.Sprintf(getTaskBody, 0, id)); o == ok {
				_, st := taskState(res)
				ended[id] = terminal(st)
			}
		}
		f.mu.Lock()
		for id, t := range f.tasks {
			if t.gw == 0 && (ended[id] || (t.done > 0 && t.done < killAt)) {
				t.preKill = true
			}
		}
		f.mu.Unlock()
	}
	f.start = time.Now()
	ss := openLoopFunc(ctx, sc, e.cfg, func(n int) sample { return f.do(ctx, n) }, kill)
	s := summarize("agentplane-fleet", ss, sc.duration)
	s.Killed, s.Restarts, s.CPUSeconds = killed, -1, -1
	for _, x := range ss {
		if strings.HasPrefix(x.why, "re-sent") {
			s.Resent++
		}
	}
	first, last := time.Duration(0), time.Duration(0)
	for _, t := range f.tasks {
		if killAt == 0 || t.gw != 0 || t.preKill || t.accepted > killAt {
			continue
		}
		s.Orphaned++
		if t.ok {
			s.OrphansDone++
			d := t.done - killAt
			if first == 0 || d < first {
				first = d
			}
			last = max(last, d)
		}
	}
	s.Takeover, s.TakeoverLast = first, last
	return s, nil
}

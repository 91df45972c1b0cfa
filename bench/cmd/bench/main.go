// Command bench runs the same load against direct replica choice, HAProxy, nginx and
// agentplane, and writes a markdown table and a latency plot under results/. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	repo, results    string
	scenarios        []string
	targets          []string
	replicas         int
	maxConc          int
	latency          string
	duration         time.Duration
	overheadDuration time.Duration
	overheadConc     []int
	timeout          time.Duration
	queueTimeout     time.Duration
	maxInflight      int
	proxyThreads     int
	haproxyMaxconn   bool
	seed             int
	keep             bool
	poll             time.Duration
	fleetHeartbeat   time.Duration
	noInstall        bool
	ceilingConc      []int
	ceilingStep      time.Duration
	priorityDuration time.Duration
	llmDuration      time.Duration
	convUsers        int
	convTurnsMin     int
	convTurnsMax     int
	think            time.Duration
}

var (
	allScenarios = []string{"a70", "a90", "slow", "kill", "burst", "sitekill", "overhead", "conversations", "mixed", "priority", "ceiling"}
	allTargets   = []string{"direct", "haproxy", "nginx", "agentplane"}
)

func main() { os.Exit(run()) }

func run() int {
	var cfg config
	var scen, targ string
	flag.StringVar(&cfg.repo, "repo", "..", "agentplane repository root (built with go build ./cmd/agentplane)")
	flag.StringVar(&cfg.results, "results", "results", "directory for results.md, results.json and latency.png")
	flag.StringVar(&scen, "scenarios", strings.Join(allScenarios, ","), "scenarios to run: "+strings.Join(allScenarios, ","))
	flag.StringVar(&targ, "targets", strings.Join(allTargets, ","), "targets: "+strings.Join(allTargets, ","))
	flag.IntVar(&cfg.replicas, "replicas", 4, "simagent replicas")
	flag.IntVar(&cfg.maxConc, "max-concurrency", 8, "tasks per replica (simagent --max-concurrency, agentplane maxConcurrency, HAProxy maxconn)")
	flag.StringVar(&cfg.latency, "latency", "lognormal:200ms,2s", "simagent service time")
	flag.DurationVar(&cfg.duration, "duration", 20*time.Second, "arrival window of each open-loop scenario per target")
	flag.DurationVar(&cfg.overheadDuration, "overhead-duration", 10*time.Second, "closed-loop run per target in the overhead scenario")
	var conc string
	flag.StringVar(&conc, "overhead-concurrency", "1,16", "closed-loop clients in the overhead scenario, one run per value")
	flag.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "client timeout per request")
	flag.DurationVar(&cfg.queueTimeout, "queue-timeout", 15*time.Second, "longest a task waits for a replica slot in agentplane (--queue-timeout) and HAProxy (timeout queue) before it is refused; below -timeout, so that a long wait ends in an answer the client sees")
	flag.IntVar(&cfg.maxInflight, "max-inflight", 5000, "bound on the client's requests in flight")
	flag.IntVar(&cfg.proxyThreads, "proxy-threads", 2, "HAProxy nbthread and nginx worker_processes")
	flag.BoolVar(&cfg.haproxyMaxconn, "haproxy-maxconn", true, "give HAProxy servers maxconn = max-concurrency (HAProxy queues the rest)")
	flag.IntVar(&cfg.seed, "seed", 1, "random seed of arrivals and service times")
	flag.DurationVar(&cfg.poll, "poll", 100*time.Millisecond, "sitekill: how often a fleet client polls GetTask")
	flag.DurationVar(&cfg.fleetHeartbeat, "fleet-heartbeat", time.Second, "sitekill: the fleet gateways' --fleet-heartbeat (a site is taken for lost after 3 missed)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the scratch directory (configs, logs)")
	flag.BoolVar(&cfg.noInstall, "no-install", false, "do not apt-get install missing haproxy/nginx")
	var ceil string
	flag.StringVar(&ceil, "ceiling-concurrency", "1,4,16,64,256", "ceiling: closed-loop clients, one level after another")
	flag.DurationVar(&cfg.ceilingStep, "ceiling-step", 5*time.Second, "ceiling: how long each concurrency level runs")
	flag.DurationVar(&cfg.priorityDuration, "priority-duration", 60*time.Second, "priority: arrival window of the overload")
	flag.DurationVar(&cfg.llmDuration, "llm-duration", 60*time.Second, "conversations, mixed: arrival window per target (LLM tasks are few per second: a p99 needs more than -duration gives)")
	flag.IntVar(&cfg.convUsers, "conv-users", 200, "conversations: at most this many conversations at once (more arrivals are dropped, counted overflown)")
	flag.IntVar(&cfg.convTurnsMin, "conv-turns-min", 4, "conversations: fewest turns of a conversation")
	flag.IntVar(&cfg.convTurnsMax, "conv-turns-max", 8, "conversations: most turns of a conversation")
	flag.DurationVar(&cfg.think, "think", time.Second, "conversations: mean think time between turns (exponential)")
	flag.Parse()
	for _, c := range split(ceil) {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			return fail(fmt.Errorf("-ceiling-concurrency: %q is not a positive number", c))
		}
		cfg.ceilingConc = append(cfg.ceilingConc, n)
	}
	if cfg.convTurnsMin < 1 || cfg.convTurnsMax < cfg.convTurnsMin {
		return fail(errors.New("-conv-turns-min/-conv-turns-max: want 1 <= min <= max"))
	}
	cfg.scenarios, cfg.targets = split(scen), split(targ)
	for _, c := range split(conc) {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			return fail(fmt.Errorf("-overhead-concurrency: %q is not a positive number", c))
		}
		cfg.overheadConc = append(cfg.overheadConc, n)
	}
	for _, s := range cfg.scenarios {
		if !slices.Contains(allScenarios, s) {
			return fail(fmt.Errorf("unknown scenario %q", s))
		}
	}
	for _, t := range cfg.targets {
		if starters[t] == nil {
			return fail(fmt.Errorf("unknown target %q", t))
		}
	}
	mean, err := meanLatency(cfg.latency)
	if err != nil {
		return fail(err)
	}

	// First signal: stop the load and clean up; second: kill everything and exit at once.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps := &procs{}
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigc
		fmt.Fprintln(os.Stderr, "\ninterrupted: stopping (again to kill at once)")
		cancel()
		<-sigc
		ps.stopAll(0)
		os.Exit(130)
	}()
	defer ps.stopAll(3 * time.Second)

	began := time.Now()
	if err := ensureTools(ctx, cfg); err != nil {
		return fail(err)
	}
	work, err := os.MkdirTemp("", "agentplane-bench-")
	if err != nil {
		return fail(err)
	}
	_ = os.Chmod(work, 0o755) // nginx workers may run as another user
	defer func() {
		ps.stopAll(3 * time.Second) // before removing their directory
		if cfg.keep {
			logf("scratch directory kept: %s", work)
		} else {
			os.RemoveAll(work)
		}
	}()
	bin := filepath.Join(work, "agentplane")
	logf("building agentplane from %s", cfg.repo)
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/agentplane")
	build.Dir, build.Stdout, build.Stderr = cfg.repo, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fail(fmt.Errorf("go build: %w", err))
	}
	e := env{bin: bin, workDir: work, ps: ps, cfg: cfg}

	rep := &report{cfg: cfg, mean: mean, began: began, bin: bin}
	for _, sc := range scenarios(cfg, mean) {
		if !slices.Contains(cfg.scenarios, strings.SplitN(sc.name, "-", 2)[0]) {
			continue
		}
		res := scenarioResult{sc: sc}
		targets, run := cfg.targets, runOne
		if sc.sites {
			targets, run = siteTargets(cfg.targets), runSites
		}
		if len(sc.targets) > 0 {
			targets = scenarioTargets(sc.targets, cfg.targets)
		}
		for _, target := range targets {
			if ctx.Err() != nil {
				break
			}
			s, err := run(ctx, e, sc, target)
			if err != nil {
				logf("%s/%s: %v", sc.name, target, err)
				res.failed = append(res.failed, fmt.Sprintf("%s: %v", target, err))
				continue
			}
			res.sums = append(res.sums, s)
		}
		rep.results = append(rep.results, res)
		if ctx.Err() != nil {
			break
		}
	}
	rep.took = time.Since(began)
	if err := rep.write(); err != nil {
		return fail(err)
	}
	logf("done in %v: %s", rep.took.Round(time.Second), filepath.Join(cfg.results, "results.md"))
	if ctx.Err() != nil {
		return 130
	}
	return 0
}

// runOne starts target for sc, loads it, measures it and stops it.
func runOne(ctx context.Context, e env, sc scenario, target string) (summary, error) {
	dir := filepath.Join(e.workDir, sc.name+"-"+target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return summary{}, err
	}
	logf("%s / %s: starting", sc.name, target)
	d, err := starters[target](ctx, e, sc, dir)
	if err != nil {
		return summary{}, err
	}
	defer d.stop()
	c := newClient(e.cfg.timeout)
	defer c.CloseIdleConnections()
	warm(ctx, c, d.url, 2*e.cfg.replicas)
	pids := d.proxyPIDs()
	before := sumTicks(pids)
	var killed string
	var ss []sample
	var window time.Duration
	t0 := time.Now()
	switch {
	case len(sc.ceiling) > 0:
		return runCeiling(ctx, c, d, sc, target, pids)
	case sc.kind == "conversations":
		ss = conversations(ctx, c, d, sc, e.cfg)
		window = sc.duration
	case sc.llm:
		ss = llmSingle(ctx, c, d, sc, e.cfg)
		window = sc.duration
	case sc.closed:
		ss = closedLoop(ctx, c, d, sc.concurrency, sc.duration, sc.name)
		window = time.Since(t0)
	default:
		kill := func() {
			who, err := d.killReplica()
			if err != nil {
				logf("kill: %v", err)
			}
			killed = who
		}
		ss = openLoop(ctx, c, d, sc, e.cfg, kill)
		window = sc.duration
	}
	elapsed := time.Since(t0)
	after := sumTicks(pids)
	s := summarize(target, ss, window)
	s.Killed = killed
	s.Restarts = d.restarts()
	if len(pids) > 0 && s.Sent > 0 {
		s.CPUSeconds = float64(after-before) / 100
		s.CPUPerReq = time.Duration(s.CPUSeconds / float64(s.Sent) * float64(time.Second))
	} else {
		s.CPUSeconds = -1
	}
	more := ""
	if sc.llm {
		more = fmt.Sprintf("; %d refused; TTFT p50 %v p99 %v; cache hits %s", s.Refused, s.TTFT50.Round(time.Millisecond), s.TTFT99.Round(time.Millisecond), hits(s))
	}
	logf("%s / %s: %d sent, %d ok, %d errors, %d lost; p50 %v p99 %v; %.1f/s (%v)%s", sc.name, target,
		s.Sent, s.OK, s.Errors, s.Lost, s.P50.Round(time.Millisecond), s.P99.Round(time.Millisecond), s.Throughput, elapsed.Round(time.Second), more)
	if ctx.Err() != nil {
		return s, errors.New("interrupted")
	}
	return s, nil
}

// scenarioTargets are a scenario's own targets that the user asked for: by name, or by the
// name of the peer they vary (haproxy for haproxy-hash).
func scenarioTargets(own, asked []string) []string {
	var out []string
	for _, t := range own {
		base, _, _ := strings.Cut(t, "-")
		if slices.Contains(asked, t) || slices.Contains(asked, base) {
			out = append(out, t)
		}
	}
	return out
}

// runCeiling runs closed loops of rising concurrency against one deployment, a level after
// another, and returns the level of highest throughput with every level in Levels.
func runCeiling(ctx context.Context, c *http.Client, d *deployment, sc scenario, target string, pids []int) (summary, error) {
	var best summary
	var levels []summary
	for _, n := range sc.ceiling {
		if ctx.Err() != nil {
			return best, errors.New("interrupted")
		}
		before := sumTicks(pids)
		t0 := time.Now()
		ss := closedLoop(ctx, c, d, n, sc.duration, fmt.Sprintf("ceiling-c%d", n))
		s := summarize(target, ss, time.Since(t0))
		s.Conc, s.Latencies, s.PerSecondOK = n, nil, nil
		s.CPUSeconds = -1
		if len(pids) > 0 && s.Sent > 0 {
			s.CPUSeconds = float64(sumTicks(pids)-before) / 100
			s.CPUPerReq = time.Duration(s.CPUSeconds / float64(s.Sent) * float64(time.Second))
		}
		logf("%s / %s: %d clients: %.0f/s, p50 %v p99 %v, %d errors, %d lost", sc.name, target, n, s.Throughput,
			s.P50.Round(time.Microsecond), s.P99.Round(time.Microsecond), s.Errors, s.Lost)
		levels = append(levels, s)
		if s.Throughput > best.Throughput || best.Target == "" {
			best = s
		}
	}
	best.Levels = levels
	return best, nil
}

// ensureTools installs HAProxy and nginx from Debian packages when a target needs them.
func ensureTools(ctx context.Context, cfg config) error {
	var missing []string
	for _, t := range []struct{ target, bin, pkg string }{{"haproxy", "haproxy", "haproxy"}, {"nginx", "nginx", "nginx"}} {
		if !slices.Contains(cfg.targets, t.target) {
			continue
		}
		if _, err := exec.LookPath(t.bin); err != nil {
			missing = append(missing, t.pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if cfg.noInstall {
		return fmt.Errorf("missing %v (and -no-install given)", missing)
	}
	logf("installing %v from Debian packages", missing)
	for _, argv := range [][]string{{"apt-get", "update", "-qq"}, append([]string{"apt-get", "install", "-y", "-qq"}, missing...)} {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
		}
	}
	return nil
}

func split(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "bench:", err)
	return 1
}

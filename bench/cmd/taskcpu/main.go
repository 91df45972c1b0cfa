// Command taskcpu measures the gateway's CPU time per task: it runs `agentplane up` with one
// trivial agent (simagent, --latency 0), sends a closed loop of blocking A2A v1.0 SendMessage
// requests to it, and divides the gateway process's own CPU time (utime+stime from
// /proc/PID/stat; its replica children are not counted) by the tasks that completed.
//
// It builds nothing: -bin names an agentplane binary built beforehand. Linux only.
//
//	go run ./cmd/taskcpu -bin ../agentplane -sync interval -runs 3
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/agentplane/agentplane/bench/internal/procfs"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; 100 on every Linux
// architecture Go supports.
const clockTicks = 100

type config struct {
	bin, sync, pprof string
	n, c, runs       int
	warmup           int
	pprofSeconds     int
	keep             bool
}

func main() {
	var cfg config
	flag.StringVar(&cfg.bin, "bin", "", "agentplane binary to run (required; taskcpu builds nothing)")
	flag.StringVar(&cfg.sync, "sync", "interval", `--journal-sync of the gateway: "interval" or "always"`)
	flag.IntVar(&cfg.n, "n", 10000, "tasks measured per run")
	flag.IntVar(&cfg.c, "c", 8, "concurrent clients (closed loop: each sends its next request when the last is answered)")
	flag.IntVar(&cfg.runs, "runs", 3, "runs, each with a fresh gateway and data directory")
	flag.IntVar(&cfg.warmup, "warmup", 500, "tasks sent before measuring, per run")
	flag.StringVar(&cfg.pprof, "pprof", "", "write a CPU profile of the gateway, taken during the last run's measured tasks, to this file")
	flag.IntVar(&cfg.pprofSeconds, "pprof-seconds", 5, "length of the -pprof profile")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary data directories (logs) after the runs")
	flag.Parse()
	if cfg.bin == "" || (cfg.sync != "interval" && cfg.sync != "always") || cfg.n <= 0 || cfg.c <= 0 || cfg.runs <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var per []float64
	for i := range cfg.runs {
		r, err := run(ctx, cfg, i == cfg.runs-1 && cfg.pprof != "")
		if err != nil {
			fmt.Fprintf(os.Stderr, "taskcpu: run %d: %v\n", i+1, err)
			os.Exit(1)
		}
		per = append(per, r.usPerTask)
		fmt.Printf("run %d: sync=%s tasks=%d failed=%d wall=%v cpu=%v  %.0f µs CPU/task  %.0f tasks/s\n",
			i+1, cfg.sync, r.ok, r.failed, r.wall.Round(time.Millisecond), r.cpu, r.usPerTask, float64(r.ok)/r.wall.Seconds())
	}
	lo, hi := per[0], per[0]
	for _, v := range per {
		lo, hi = min(lo, v), max(hi, v)
	}
	fmt.Printf("sync=%s: %.0f–%.0f µs CPU/task over %d runs\n", cfg.sync, lo, hi, len(per))
}

type result struct {
	ok, failed int64
	wall, cpu  time.Duration
	usPerTask  float64
}

func run(ctx context.Context, cfg config, profile bool) (result, error) {
	dir, err := os.MkdirTemp("", "taskcpu-")
	if err != nil {
		return result{}, err
	}
	if !cfg.keep {
		defer os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "taskcpu: data in %s\n", dir)
	}
	manifest := filepath.Join(dir, "agent.json") // JSON is YAML
	m := map[string]any{"apiVersion": "agentplane.io/v1alpha1", "kind": "Agent",
		"metadata": map[string]any{"name": "cpu"},
		"spec": map[string]any{"command": []string{cfg.bin, "simagent"}, "args": []string{"--latency", "0", "--max-concurrency", "1000"},
			"replicas": 1, "maxConcurrency": 1000}}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(manifest, b, 0o644); err != nil {
		return result{}, err
	}
	port, err := procfs.FreePort()
	if err != nil {
		return result{}, err
	}
	args := []string{"up", "-f", manifest, "--listen", "127.0.0.1:" + strconv.Itoa(port),
		"--data-dir", filepath.Join(dir, "data"), "--journal-sync", cfg.sync, "--log-level", "warn",
		"--drain-timeout", "2s", "--grace", "2s"}
	var pprofBase string
	if profile {
		pp, err := procfs.FreePort()
		if err != nil {
			return result{}, err
		}
		pprofBase = "http://127.0.0.1:" + strconv.Itoa(pp)
		args = append(args, "--pprof-listen", "127.0.0.1:"+strconv.Itoa(pp))
	}
	logf, err := os.Create(filepath.Join(dir, "up.log"))
	if err != nil {
		return result{}, err
	}
	defer logf.Close()
	cmd := exec.Command(cfg.bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}()

	base := "http://127.0.0.1:" + strconv.Itoa(port)
	if err := waitReady(ctx, base, exited); err != nil {
		return result{}, fmt.Errorf("%w (log: %s)", err, filepath.Join(dir, "up.log"))
	}
	url := base + "/agents/cpu"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.c, MaxConnsPerHost: cfg.c}, Timeout: 30 * time.Second}
	if _, failed := load(ctx, client, url, cfg.warmup, cfg.c); failed > int64(cfg.warmup/10) {
		return result{}, fmt.Errorf("%d of %d warm-up tasks failed", failed, cfg.warmup)
	}

	var prof []byte
	var profErr error
	var profWG sync.WaitGroup
	if profile {
		profWG.Add(1)
		go func() {
			defer profWG.Done()
			prof, profErr = get(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", pprofBase, cfg.pprofSeconds), time.Duration(cfg.pprofSeconds+10)*time.Second)
		}()
	}
	pid := cmd.Process.Pid
	t0, err := procfs.CPUTicks(pid)
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	ok, failed := load(ctx, client, url, cfg.n, cfg.c)
	wall := time.Since(start)
	t1, err := procfs.CPUTicks(pid)
	if err != nil {
		return result{}, err
	}
	if profile {
		profWG.Wait()
		if profErr != nil {
			return result{}, fmt.Errorf("pprof: %w", profErr)
		}
		if err := os.WriteFile(cfg.pprof, prof, 0o644); err != nil {
			return result{}, err
		}
	}
	if ok == 0 {
		return result{}, errors.New("no task completed")
	}
	cpu := time.Duration(t1-t0) * time.Second / clockTicks
	return result{ok: ok, failed: failed, wall: wall, cpu: cpu,
		usPerTask: float64(cpu.Microseconds()) / float64(ok)}, nil
}

// load sends n blocking SendMessage requests from c clients in a closed loop and returns how
// many ended in a completed task and how many did not.
func load(ctx context.Context, client *http.Client, url string, n, c int) (ok, failed int64) {
	var next atomic.Int64
	var okN, failN atomic.Int64
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) || ctx.Err() != nil {
					return
				}
				if send(ctx, client, url, i) {
					okN.Add(1)
				} else {
					failN.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return okN.Load(), failN.Load()
}

const body = `{"jsonrpc":"2.0","id":%d,"method":"SendMessage","params":{"message":{"messageId":"taskcpu-%d-%d","role":"ROLE_USER","parts":[{"text":"patient reports chest pain since this morning"}]}}}`

var runID = time.Now().UnixNano()

func send(ctx context.Context, client *http.Client, url string, i int64) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(fmt.Sprintf(body, i, runID, i)))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return false
	}
	return bytes.Contains(b, []byte("TASK_STATE_COMPLETED"))
}

// waitReady waits until the gateway answers /healthz and lists the agent's replica as ready.
func waitReady(ctx context.Context, base string, exited <-chan struct{}) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := get(ctx, base+"/api/v1/replicas?agent=cpu", 2*time.Second)
		if err == nil {
			var out struct {
				Replicas []struct {
					Ready bool `json:"ready"`
				} `json:"replicas"`
			}
			if json.Unmarshal(b, &out) == nil && len(out.Replicas) == 1 && out.Replicas[0].Ready {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("gateway not ready after 60s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return errors.New("agentplane up exited before it was ready")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func get(ctx context.Context, url string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

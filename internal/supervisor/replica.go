package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/discovery"
)

// runReplica starts replica r again and again, with backoff, until ctx ends. It logs a line
// per change, not per try: a replica that keeps exiting the same way is logged when it first
// exits, once more when it is seen to loop, then only when the way it exits changes or once it
// has been ready again.
func (s *Supervisor) runReplica(ctx context.Context, r *replica) {
	log := s.opts.Logger.With("agent", r.spec.name, "replica", r.index)
	crashes := 0
	var (
		logged  string // how the last exit logged at warn went
		looping bool   // "keeps exiting" was logged for it
	)
	for attempt := 1; ; attempt++ {
		out := s.runOnce(ctx, log, r, attempt, logged != "")
		if ctx.Err() != nil {
			if out.pid != 0 {
				log.Info("replica stopped", "pid", out.pid, "exit", out.exit)
			}
			s.update(r, func(e *discovery.Endpoint) {
				e.Ready = false
				e.PID = 0
				if out.exit != "" {
					e.LastExit = out.exit
				}
			})
			return
		}
		if out.readyFor > 0 {
			logged, looping = "", false
		}
		crashes = s.opts.Backoff.Crashes(crashes, out.readyFor)
		delay := s.opts.Backoff.Delay(crashes)
		next := s.opts.Clock().Add(delay)
		restarts := 0
		s.update(r, func(e *discovery.Endpoint) {
			e.Ready = false
			e.State = discovery.StateCrashLoopBackOff
			e.PID = 0
			e.Restarts++
			e.LastExit = out.exit
			e.NextStart = next
			e.Reason, e.Message, e.StderrTail = out.reason, out.message, joinLines(out.stderr)
			restarts = e.Restarts
		})
		args := []any{"pid", out.pid, "exit", out.exit, "reason", out.reason, "message", out.message, "restarts", restarts, "restartIn", delay}
		if n := len(out.stderr); n > 0 {
			args = append(args, "stderr", out.stderr[n-1])
		}
		// The same way is the same reason and exit: a message may name a new port each time.
		switch summary := out.reason + ": " + out.exit; {
		case summary != logged:
			log.Warn("replica exited", args...)
			logged, looping = summary, false
		case !looping:
			log.Warn("replica keeps exiting", args...)
			looping = true
		default:
			log.Debug("replica exited", args...)
		}

		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// outcome is how one run of a replica ended.
type outcome struct {
	pid      int           // 0 if no process started
	exit     string        // such as "exit status 3" or "liveness probe failed"
	reason   string        // a discovery.Reason* constant
	message  string        // why, in a sentence
	stderr   []string      // the last lines of its stderr
	readyFor time.Duration // how long it ran after passing its startup probe
}

// runOnce starts the replica's process once and supervises it until it exits, it is killed
// for failing a probe, or ctx ends. It returns only after the process has exited.
// quiet logs its start at debug level: the replica is crash-looping, which is logged already.
func (s *Supervisor) runOnce(ctx context.Context, log *slog.Logger, rep *replica, attempt int, quiet bool) outcome {
	a, name := rep.spec, rep.name

	port, err := freePort(s.opts.Host)
	if err != nil {
		return startFailed("no free port: " + err.Error())
	}
	url := "http://" + net.JoinHostPort(s.opts.Host, strconv.Itoa(port))

	logPath := filepath.Join(s.opts.DataDir, "logs", a.name, name+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return startFailed("cannot create the log directory: " + err.Error())
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return startFailed("cannot open log: " + err.Error())
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "--- agentplane: start %s attempt %d at %s ---\n", name, attempt, s.opts.Clock().Format(time.RFC3339))

	var extra []string
	if s.opts.ReplicaEnv != nil {
		e, done, err := s.opts.ReplicaEnv(a.name, rep.index)
		if err != nil {
			return startFailed("credentials: " + err.Error())
		}
		defer done() // the replica's credentials end with its process
		extra = e
	}
	if a.stateful {
		dir := filepath.Join(s.opts.DataDir, "memory", a.name, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return startFailed("cannot create the memory directory: " + err.Error())
		}
		extra = append(extra, v1alpha1.EnvMemoryDir+"="+dir)
	}
	env := slices.Concat(s.inherits, a.env, extra, []string{
		"PORT=" + strconv.Itoa(port),
		"AGENTPLANE_AGENT=" + a.name,
		"AGENTPLANE_REPLICA=" + strconv.Itoa(rep.index),
		"AGENTPLANE_LISTEN_HOST=127.0.0.1", // reached only through the gateway
	})
	stderr, err := newStderrPipe(logFile)
	if err != nil {
		return startFailed("stderr: " + err.Error())
	}
	proc, untrack, err := s.launch(ctx, ProcessSpec{
		Path: a.program, Args: a.argv, Dir: a.dir, Env: env, Stdout: logFile, Stderr: stderr.w,
	})
	stderr.started()
	if err != nil {
		stderr.finish(0)
		fmt.Fprintf(logFile, "--- agentplane: %s did not start: %v ---\n", name, err)
		return startFailed("start failed: " + err.Error())
	}
	pid := proc.PID()

	// The pid is part of the name: during a rolling update, two processes run as one replica.
	pidPath := filepath.Join(s.runDir, fmt.Sprintf("%s.%d.pid", name, pid))
	if pf, err := newPidFile(pid, a.argv); err != nil {
		log.Warn("cannot describe replica for its pid file", "pid", pid, "err", err)
	} else if err := writePidFile(pidPath, pf); err != nil {
		log.Warn("cannot write pid file", "path", pidPath, "err", err)
	}

	// The waiter ends when the process exits; everything below waits for that before returning.
	exited := make(chan struct{})
	procCtx, procDone := context.WithCancel(ctx) // ends probes in flight when the process exits
	defer procDone()
	var waitErr error
	go func() {
		waitErr = proc.Wait()
		procDone()
		close(exited)
	}()

	s.update(rep, func(e *discovery.Endpoint) {
		e.State = discovery.StateStarting
		e.Ready = false
		e.URL = url
		e.PID = pid
		e.NextStart = time.Time{}
	})
	if quiet {
		log.Debug("replica started", "pid", pid, "port", port, "attempt", attempt)
	} else {
		log.Info("replica started", "pid", pid, "port", port, "attempt", attempt)
	}

	r := &run{s: s, log: log, rep: rep, spec: a, url: url, proc: proc, exited: exited, procCtx: procCtx}
	out := r.supervise(ctx)
	<-exited
	if out.exit == "" {
		out.exit = describeExit(waitErr)
		out.reason, out.message = discovery.ReasonExited, out.exit
	}
	// Whatever the process left in its group goes with it.
	_ = proc.Signal(syscall.SIGKILL)
	untrack()
	_ = os.Remove(pidPath)
	stderr.finish(200 * time.Millisecond)
	out.stderr = stderr.tail.Lines()
	fmt.Fprintf(logFile, "--- agentplane: %s exited: %s ---\n", name, out.exit)
	out.pid = pid
	return out
}

// startFailed is the outcome of a replica whose process could not be started.
func startFailed(why string) outcome {
	return outcome{exit: why, reason: discovery.ReasonStartFailed, message: why}
}

// run is one started process of a replica.
type run struct {
	s       *Supervisor
	log     *slog.Logger
	rep     *replica
	spec    *agentSpec
	url     string
	proc    Process
	exited  <-chan struct{}
	procCtx context.Context // ends when the process exits or ctx ends
}

// supervise probes the process until it exits, is killed for failing a probe (outcome.exit
// says why), or ctx ends (then it stops the process). The process may still be exiting when it
// returns.
func (r *run) supervise(ctx context.Context) outcome {
	// Startup: probe at once, then every 20ms (not counted as failures) until a period has
	// passed, then every period, until the first success: a replica that listens within
	// milliseconds is ready within milliseconds, which is most of a cold start from zero
	// replicas. A local probe costs next to nothing.
	sp := r.spec.startup
	timer := time.NewTimer(0)
	defer timer.Stop()
	started := time.Now()
	eagerUntil := started.Add(r.period(sp))
	lastErr := ""
	for failures := 0; ; {
		select {
		case <-ctx.Done():
			r.terminate()
			return outcome{}
		case <-r.exited:
			return outcome{}
		case <-timer.C:
		}
		err := r.probe(sp)
		if err == nil {
			break
		}
		if r.procCtx.Err() != nil {
			continue // exited or stopping: the select above tells which
		}
		if time.Now().Before(eagerUntil) {
			timer.Reset(20 * time.Millisecond)
			continue
		}
		if failures++; failures >= int(sp.FailureThreshold) {
			msg := fmt.Sprintf("no answer to its startup probe within %s, %d tries (does it listen on $PORT?): %v",
				time.Since(started).Round(100*time.Millisecond), failures, err)
			r.log.Warn("startup probe failed, killing replica", "failures", failures, "err", err)
			out := r.kill("startup probe failed")
			out.reason, out.message = discovery.ReasonStartupProbeFailed, msg
			return out
		}
		// Said once per different error, not per try: each change wakes every watcher.
		if msg := "startup probe failing: " + err.Error(); msg != lastErr {
			lastErr = msg
			r.s.update(r.rep, func(e *discovery.Endpoint) {
				e.Reason, e.Message = discovery.ReasonStartupProbeFailing, msg
			})
		}
		timer.Reset(r.period(sp))
	}

	runningSince := r.s.opts.Clock()
	readyFor := func() time.Duration { return r.s.opts.Clock().Sub(runningSince) }
	r.s.update(r.rep, func(e *discovery.Endpoint) {
		e.State = discovery.StateRunning
		e.Ready = true
		e.Reason, e.Message, e.StderrTail = "", "", ""
	})
	r.log.Info("replica ready", "url", r.url)

	rp, lp := r.spec.ready, r.spec.live
	readyT, liveT := time.NewTimer(r.period(rp)), time.NewTimer(r.period(lp))
	defer readyT.Stop()
	defer liveT.Stop()
	ready, readyFails, liveFails := true, 0, 0
	for {
		select {
		case <-ctx.Done():
			r.terminate()
			return outcome{readyFor: readyFor()}
		case <-r.exited:
			return outcome{readyFor: readyFor()}

		case <-readyT.C:
			err := r.probe(rp)
			if r.procCtx.Err() != nil {
				continue
			}
			switch {
			case err == nil:
				readyFails = 0
				if !ready {
					ready = true
					r.s.update(r.rep, func(e *discovery.Endpoint) {
						e.Ready = true
						e.Reason, e.Message = "", ""
					})
					r.log.Info("replica ready", "url", r.url)
				}
			case ready:
				if readyFails++; readyFails >= int(rp.FailureThreshold) {
					ready = false
					r.s.update(r.rep, func(e *discovery.Endpoint) {
						e.Ready = false
						e.Reason, e.Message = discovery.ReasonReadinessProbeFailing, "readiness probe failing: "+err.Error()
					})
					r.log.Warn("replica not ready", "failures", readyFails, "err", err)
				}
			}
			readyT.Reset(r.period(rp))

		case <-liveT.C:
			err := r.probe(lp)
			if r.procCtx.Err() != nil {
				continue
			}
			if err == nil {
				liveFails = 0
			} else if liveFails++; liveFails >= int(lp.FailureThreshold) {
				r.log.Warn("liveness probe failed, killing replica", "failures", liveFails, "err", err)
				out := r.kill("liveness probe failed")
				out.reason, out.message = discovery.ReasonLivenessProbeFailed, fmt.Sprintf("liveness probe failed %d times: %v", liveFails, err)
				out.readyFor = readyFor()
				return out
			}
			liveT.Reset(r.period(lp))
		}
	}
}

func (r *run) probe(p v1alpha1.Probe) error {
	return r.s.prober.probe(r.procCtx, r.url+p.Path, time.Duration(p.TimeoutSeconds)*time.Second)
}

func (r *run) period(p v1alpha1.Probe) time.Duration {
	return time.Duration(p.PeriodSeconds) * r.s.probeUnit
}

func (r *run) setReady(ready bool) {
	r.s.update(r.rep, func(e *discovery.Endpoint) { e.Ready = ready })
}

// kill ends the process group at once, for a failed probe.
func (r *run) kill(reason string) outcome {
	r.setReady(false)
	if err := r.proc.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		r.log.Error("cannot kill replica", "pid", r.proc.PID(), "err", err)
	}
	<-r.exited
	return outcome{exit: reason}
}

// terminate stops the process group on shutdown or when Apply stops it: SIGTERM, then SIGKILL once the grace period
// is over. It waits for the group's leader to exit and, within the grace period, for the rest
// of the group.
func (r *run) terminate() {
	pid := r.proc.PID()
	if err := r.proc.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		r.log.Error("cannot signal replica", "pid", pid, "err", err)
	}
	deadline := time.NewTimer(r.s.opts.Grace)
	defer deadline.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	exited := r.exited // set to nil once the leader exited, to wait for the rest of the group
	for {
		select {
		case <-exited:
			exited = nil
		case <-poll.C:
		case <-deadline.C:
			r.log.Warn("replica did not stop in time, killing it", "pid", pid, "grace", r.s.opts.Grace)
			_ = r.proc.Signal(syscall.SIGKILL)
			<-r.exited
			return
		}
		if exited == nil && errors.Is(r.proc.Signal(0), syscall.ESRCH) {
			return
		}
	}
}

// describeExit words how a process ended, as Kubernetes and exec do: "exit status 3",
// "signal: killed".
func describeExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.Error()
	}
	return err.Error()
}

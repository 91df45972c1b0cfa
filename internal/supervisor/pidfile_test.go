package supervisor

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startHelper starts the helper agent in its own process group, as the supervisor would.
func startHelper(t *testing.T, mode string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(testExe, "stale")
	cmd.Env = []string{"SUPERVISOR_TEST_AGENT=" + mode, "PORT=0"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd
}

// deadOwner is the pid and start time of a process that has exited and been reaped.
func deadOwner(t *testing.T) (int, string) {
	cmd := exec.Command(testExe)
	cmd.Env = []string{"SUPERVISOR_TEST_AGENT=crash"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	st, err := procStartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	return cmd.Process.Pid, st
}

// exitsWithin waits for cmd to end and reports how, or "" if it did not end in time.
func exitsWithin(cmd *exec.Cmd, limit time.Duration) string {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return describeExit(err)
	case <-time.After(limit):
		return ""
	}
}

func TestStalePidFiles(t *testing.T) {
	dataDir := t.TempDir()
	runDir := filepath.Join(dataDir, "run")
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	owner, ownerStart := deadOwner(t)
	write := func(name string, cmd *exec.Cmd, change func(*pidFile)) {
		t.Helper()
		pf, err := newPidFile(cmd.Process.Pid, cmd.Args)
		if err != nil {
			t.Fatal(err)
		}
		pf.Owner, pf.OwnerStartTime = owner, ownerStart
		if change != nil {
			change(&pf)
		}
		if err := writePidFile(filepath.Join(runDir, name), pf); err != nil {
			t.Fatal(err)
		}
	}

	leftover := startHelper(t, "ok")
	write("old-0.pid", leftover, nil)
	if !strings.Contains(readFile(t, filepath.Join(runDir, "old-0.pid")), `"cmdline":"`+testExe+`\u0000stale"`) {
		t.Errorf("pid file does not hold the command line: %s", readFile(t, filepath.Join(runDir, "old-0.pid")))
	}
	otherCommand := startHelper(t, "ok")
	write("other-0.pid", otherCommand, func(pf *pidFile) { pf.Cmdline = "/usr/bin/something-else" })
	reused := startHelper(t, "ok")
	write("reused-0.pid", reused, func(pf *pidFile) { pf.StartTime = "1" })
	ownerAlive := startHelper(t, "ok")
	write("alive-0.pid", ownerAlive, func(pf *pidFile) {
		pf.Owner = os.Getpid()
		pf.OwnerStartTime, _ = procStartTime(os.Getpid())
	})
	if err := os.WriteFile(filepath.Join(runDir, "agentplane.pid"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	s, err := New(nil, Options{DataDir: dataDir, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}

	if how := exitsWithin(leftover, 5*time.Second); how != "signal: killed" {
		t.Errorf("leftover replica: %q, want it killed", how)
	}
	for name, cmd := range map[string]*exec.Cmd{"other command": otherCommand, "other start time": reused, "live owner": ownerAlive} {
		if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
			t.Errorf("%s: process was killed: %v", name, err)
		}
	}
	for name, wantKept := range map[string]bool{"old-0.pid": false, "other-0.pid": false, "reused-0.pid": false, "alive-0.pid": true, "agentplane.pid": true} {
		_, err := os.Stat(filepath.Join(runDir, name))
		if kept := !errors.Is(err, os.ErrNotExist); kept != wantKept {
			t.Errorf("%s: kept %v, want %v", name, kept, wantKept)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

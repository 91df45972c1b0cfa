//go:build linux

package lab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StopGrace is how long Proc.Stop waits after SIGTERM before it kills the process group.
const StopGrace = 10 * time.Second

// Proc is a process running inside a site, in its own process group.
type Proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed once the main process has exited and been reaped
	err  error         // how it exited, once done is closed
}

// Start runs argv inside the site (through ip netns exec, which execs argv in place, so the
// process's pid is the one Start returns) in a new process group, with stdout and stderr
// appended to logPath. It dies with the test binary (Pdeathsig), and its group is killed when t
// ends; if t failed, the last lines of the log are printed then. name labels it in messages.
func (s *Site) Start(t testing.TB, name, logPath string, argv ...string) *Proc {
	t.Helper()
	if len(argv) == 0 {
		t.Fatalf("start %s in site %s: no command given", name, s.name)
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		t.Fatalf("start %s in site %s: create its log directory: %v", name, s.name, err)
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("start %s in site %s: open its log: %v", name, s.name, err)
	}
	defer log.Close() // the process has its own copy once started
	_, _ = fmt.Fprintf(log, "=== %s: %s in site %s: %s\n", time.Now().Format(time.RFC3339Nano), name, s.name, strings.Join(argv, " "))
	cmd := exec.Command(s.lab.ip, append([]string{"netns", "exec", s.ns}, argv...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s in site %s: %v", name, s.name, err)
	}
	p := &Proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.lab.mu.Lock()
	s.lab.procs = append(s.lab.procs, p)
	s.lab.mu.Unlock()
	t.Cleanup(func() { p.cleanup(t, s.lab.opts.LogTail) })
	return p
}

// Name is the name given to Start.
func (p *Proc) Name() string { return p.name }

// Pid is the main process's pid, which is also its process group's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// LogPath is the file that has the process's output.
func (p *Proc) LogPath() string { return p.log }

// Exited is closed once the main process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.done }

// Wait waits for the main process to exit and returns how it did, as exec.Cmd.Wait does: nil
// for exit status 0.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Kill9 sends SIGKILL to the main process only, as kill -9 of it would: a crash. Its children
// live on unless they die with it (Pdeathsig). It is a no-op once the process has exited.
func (p *Proc) Kill9() error {
	select {
	case <-p.done:
		return nil // its pid may belong to another process by now
	default:
	}
	return p.kill(p.Pid())
}

// Kill sends SIGKILL to the whole process group. It does not wait: see Wait and Exited.
func (p *Proc) Kill() error {
	return p.kill(-p.Pid())
}

// Stop sends SIGTERM to the process group, waits up to StopGrace for the main process to exit,
// then sends SIGKILL to the group (whatever of it is left), and returns how the main process
// exited, as Wait does.
func (p *Proc) Stop() error {
	if err := p.signal(-p.Pid(), syscall.SIGTERM); err != nil {
		return err
	}
	grace := time.NewTimer(StopGrace)
	defer grace.Stop()
	select {
	case <-p.done:
	case <-grace.C:
	}
	if err := p.kill(-p.Pid()); err != nil {
		return err
	}
	return p.Wait()
}

// kill sends SIGKILL to pid, or to a process group when pid is negative.
func (p *Proc) kill(pid int) error {
	return p.signal(pid, syscall.SIGKILL)
}

// signal sends sig to pid; a process or group that is already gone is not an error.
func (p *Proc) signal(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("send %v to %s (pid %d): %w", sig, p.name, pid, err)
	}
	return nil
}

// cleanup kills the process group, waits for the main process, and prints the log's tail if
// the test failed.
func (p *Proc) cleanup(t testing.TB, tail int) {
	if err := p.Kill(); err != nil {
		t.Errorf("%v", err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("%s (pid %d) did not exit 10s after SIGKILL", p.name, p.Pid())
	}
	if !t.Failed() {
		return
	}
	lines, err := lastLines(p.log, tail)
	if err != nil {
		t.Logf("log of %s: %v", p.name, err)
		return
	}
	t.Logf("last %d lines of %s (%s):\n%s", tail, p.name, p.log, lines)
}

// lastLines returns the last n lines of a file, reading at most its last 256 KiB.
func lastLines(path string, n int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	const most = 256 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > most {
		if _, err := f.Seek(-most, io.SeekEnd); err != nil {
			return "", err
		}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return "", err
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n"))), nil
}

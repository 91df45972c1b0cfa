package supervisor

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// ProcessSpec is what to start for one replica.
type ProcessSpec struct {
	// Path is the program to run; without a slash it is looked up in PATH.
	Path string
	// Args is the full argument vector, Args[0] included.
	Args []string
	// Env is the complete environment, as "KEY=value" entries.
	Env []string
	// Dir is the working directory; empty means the supervisor's.
	Dir string
	// Stdout and Stderr receive the process's output; nil discards it.
	Stdout io.Writer
	Stderr io.Writer
}

// Launcher starts processes. Each process must be the leader of a new process group, so that
// Process.Signal reaches the process and everything it started.
type Launcher interface {
	Launch(ctx context.Context, spec ProcessSpec) (Process, error)
}

// LauncherFunc adapts a function to a Launcher.
type LauncherFunc func(ctx context.Context, spec ProcessSpec) (Process, error)

// Launch calls f.
func (f LauncherFunc) Launch(ctx context.Context, spec ProcessSpec) (Process, error) {
	return f(ctx, spec)
}

// Process is a started process.
type Process interface {
	// PID is the process's id, which is also its process group id.
	PID() int
	// Wait blocks until the process exits and returns how it ended, as exec.Cmd.Wait does. It is
	// called exactly once.
	Wait() error
	// Signal sends sig to the whole process group. It may be called after Wait returned, to
	// reach children the process left behind. Signal(0) tells whether any process of the group
	// is left: it returns an error wrapping syscall.ESRCH when none is.
	Signal(sig syscall.Signal) error
}

// ExecLauncher starts processes with os/exec, each in its own process group. On Linux each
// process also gets SIGKILL from the kernel when the OS thread that launched it exits, so call
// Launch from a goroutine locked to a thread that outlives the processes: the Supervisor starts
// every replica from one such thread (osThread), which lives until Start returns.
type ExecLauncher struct{}

var _ Launcher = ExecLauncher{}

// Launch starts the process. ctx bounds the start only; stopping the process is up to the
// caller, through Signal.
func (ExecLauncher) Launch(ctx context.Context, spec ProcessSpec) (Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	path := spec.Path
	if !strings.Contains(path, "/") {
		p, err := exec.LookPath(path)
		if err != nil {
			return nil, err
		}
		path = p
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        spec.Args,
		Env:         spec.Env,
		Dir:         spec.Dir,
		Stdout:      spec.Stdout,
		Stderr:      spec.Stderr,
		SysProcAttr: sysProcAttr(),
	}
	if len(cmd.Args) == 0 {
		cmd.Args = []string{spec.Path}
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &execProcess{cmd: cmd}, nil
}

type execProcess struct{ cmd *exec.Cmd }

func (p *execProcess) PID() int    { return p.cmd.Process.Pid }
func (p *execProcess) Wait() error { return p.cmd.Wait() }

func (p *execProcess) Signal(sig syscall.Signal) error {
	pgid := p.cmd.Process.Pid
	if err := syscall.Kill(-pgid, sig); err != nil || sig != 0 {
		return err
	}
	// kill(2) counts zombies, and orphans stay zombies for good under an init that does not
	// reap them, as in some containers. Only live members count.
	if !groupHasLiveMember(pgid) {
		return fmt.Errorf("process group %d has only zombies left: %w", pgid, syscall.ESRCH)
	}
	return nil
}

// groupHasLiveMember reports whether a process that is not a zombie is in process group pgid.
// It errs on the side of yes when /proc cannot be read.
func groupHasLiveMember(pgid int) bool {
	dir, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, d := range dir {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue // gone meanwhile
		}
		if st.pgrp == pgid && st.state != "Z" && st.state != "X" {
			return true
		}
	}
	return false
}

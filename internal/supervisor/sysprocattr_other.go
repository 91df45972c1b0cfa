//go:build !linux

package supervisor

import "syscall"

// sysProcAttr puts the process in a new process group. Only Linux has a parent-death signal:
// elsewhere, replicas of a supervisor that was killed run on until the next run's pid files
// find them.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// onMainThread reports false: without a parent-death signal, which thread starts a process
// does not matter.
func onMainThread() bool { return false }

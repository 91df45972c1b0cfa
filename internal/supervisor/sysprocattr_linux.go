package supervisor

import "syscall"

// sysProcAttr puts the process in a new process group and has the kernel send it SIGKILL when
// the thread that started it exits: when `agentplane up` dies, even by SIGKILL, its replicas
// die with it instead of running on unsupervised. The signal reaches the replica's own process,
// not the children it started; those are left to the group kill of a clean stop and to the
// pid files of the next run.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// onMainThread reports whether the caller runs on the process's first thread.
func onMainThread() bool { return syscall.Gettid() == syscall.Getpid() }

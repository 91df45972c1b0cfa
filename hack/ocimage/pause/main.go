//go:build linux

// Command pause is a minimal pod sandbox ("pause") process, packed into an
// image by hack/ocimage -pause. It blocks until SIGTERM or SIGINT and, when it
// runs as PID 1, reaps zombie children (as the upstream Kubernetes pause does).
// It must stay dependency free: hack/ocimage embeds this file and builds it in
// a throwaway module with CGO_ENABLED=0.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
		fmt.Println("agentplane-pause")
		return
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	pid1 := os.Getpid() == 1
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		if pid1 {
			reap()
		}
	}
}

// reap collects every exited child without blocking.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}

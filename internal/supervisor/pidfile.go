package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// pidFile records a running replica so that the next supervisor can kill it if this one dies
// without cleaning up. A process is only ever killed when its pid, start time, boot and
// command line all still match, so a reused pid never leads to killing an unrelated process.
type pidFile struct {
	PID int `json:"pid"`
	// StartTime is field 22 of /proc/<pid>/stat: clock ticks after boot.
	StartTime string `json:"startTime"`
	// BootID is /proc/sys/kernel/random/boot_id; pids mean nothing across reboots.
	BootID string `json:"bootID"`
	// Cmdline is /proc/<pid>/cmdline just after the start, arguments separated by NUL.
	Cmdline string `json:"cmdline"`
	// Owner and OwnerStartTime identify the supervisor that started the process: while it is
	// alive, the process is not stale.
	Owner          int    `json:"owner"`
	OwnerStartTime string `json:"ownerStartTime"`
}

// newPidFile describes the running process pid, started by this process.
func newPidFile(pid int, argv []string) (pidFile, error) {
	pf := pidFile{PID: pid, Owner: os.Getpid(), BootID: bootID()}
	var err error
	if pf.StartTime, err = procStartTime(pid); err != nil {
		return pf, err
	}
	if pf.OwnerStartTime, err = procStartTime(pf.Owner); err != nil {
		return pf, err
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && len(b) > 0 {
		pf.Cmdline = string(bytes.TrimSuffix(b, []byte{0}))
	} else {
		pf.Cmdline = strings.Join(argv, "\x00")
	}
	if pf.BootID == "" {
		return pf, errors.New("cannot read the boot id")
	}
	return pf, nil
}

func writePidFile(path string, pf pidFile) error {
	b, err := json.Marshal(pf)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// check reports whether the supervisor that wrote the pid file still runs, and whether the
// process it recorded still does.
func (pf pidFile) check() (ownerAlive, processAlive bool) {
	if pf.BootID == "" || pf.BootID != bootID() {
		return false, false
	}
	if st, err := procStartTime(pf.Owner); err == nil && st == pf.OwnerStartTime {
		ownerAlive = true
	}
	st, err := procStartTime(pf.PID)
	if err != nil || st != pf.StartTime {
		return ownerAlive, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pf.PID))
	if err != nil || string(bytes.TrimSuffix(b, []byte{0})) != pf.Cmdline {
		return ownerAlive, false
	}
	return ownerAlive, true
}

// cleanStalePidFiles kills the process groups of replicas left behind by a supervisor that
// died, and removes their pid files. Files it does not understand are left alone; so are
// those of a supervisor that still runs.
func cleanStalePidFiles(dir string, log *slog.Logger) {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var pf pidFile
		if json.Unmarshal(b, &pf) != nil || pf.PID <= 1 || pf.Owner <= 0 {
			continue
		}
		ownerAlive, processAlive := pf.check()
		if ownerAlive {
			log.Warn("pid file belongs to a running supervisor, leaving it", "path", path, "pid", pf.PID, "owner", pf.Owner)
			continue
		}
		if processAlive {
			// Replicas lead their own process group; anything else gets no group kill.
			target := pf.PID
			if pgid, err := syscall.Getpgid(pf.PID); err == nil && pgid == pf.PID {
				target = -pf.PID
			}
			if err := syscall.Kill(target, syscall.SIGKILL); err != nil {
				log.Warn("cannot kill replica left by a previous run", "path", path, "pid", pf.PID, "err", err)
			} else {
				log.Warn("killed replica left by a previous run", "path", path, "pid", pf.PID, "group", target < 0)
			}
		}
		_ = os.Remove(path)
	}
}

// procStartTime returns field 22 of /proc/<pid>/stat, the process's start time after boot.
// A zombie has no start time worth matching: it is an error.
func procStartTime(pid int) (string, error) {
	st, err := readStat(pid)
	if err != nil {
		return "", err
	}
	if st.state == "Z" || st.state == "X" {
		return "", fmt.Errorf("process %d is a zombie", pid)
	}
	return st.startTime, nil
}

// procStat is what the supervisor reads of /proc/<pid>/stat.
type procStat struct {
	state     string // field 3
	pgrp      int    // field 5
	startTime string // field 22, clock ticks after boot
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name in field 2 may hold spaces and parentheses; it ends at the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	pgrp, err := strconv.Atoi(f[2])
	if err != nil {
		return procStat{}, fmt.Errorf("malformed /proc/%d/stat: %w", pid, err)
	}
	return procStat{state: f[0], pgrp: pgrp, startTime: f[19]}, nil
}

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

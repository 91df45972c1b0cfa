package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildAgentplane builds the agentplane command into a new temporary directory, with the race
// detector when race is set, and returns its path and the function that removes it. The end-to-end
// suites call it from TestMain.
func BuildAgentplane(race bool) (string, func(), error) {
	root, err := RepoRoot()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "agentplane-bin-")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "agentplane")
	args := []string{"build"}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "-o", bin, "./cmd/agentplane")...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building agentplane: %w", err)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// RunWithAgentplane is a TestMain for the end-to-end suites: it builds agentplane (see
// BuildAgentplane), sets *binary to its path, runs the tests and removes it. It returns the exit
// code for os.Exit.
func RunWithAgentplane(m *testing.M, race bool, binary *string) int {
	bin, remove, err := BuildAgentplane(race)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer remove()
	*binary = bin
	return m.Run()
}

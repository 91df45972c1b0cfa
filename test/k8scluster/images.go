package k8scluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Image names of the real node's images: imported from tarballs, never pulled, so pods that use
// them set imagePullPolicy: Never.
const (
	AgentImage = "agentplane.local/agentplane:dev"
	PauseImage = "agentplane.local/pause:dev"
)

// Images are the tarballs BuildImages made and the static binary in the agent image.
type Images struct {
	Binary string // the static agentplane binary (also runs the operator and gateway on the host)
	Agent  string // AgentImage's tarball: the binary at /agentplane, its entrypoint
	Pause  string // PauseImage's tarball
}

// BuildImages builds a static agentplane binary from the repository at root and packs it, and a
// pause binary, into single-layer OCI image tarballs with hack/ocimage: no base image, no
// registry.
func BuildImages(ctx context.Context, root, outDir string) (Images, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return Images{}, err
	}
	img := Images{
		Binary: filepath.Join(outDir, "agentplane"),
		Agent:  filepath.Join(outDir, "agentplane.tar"),
		Pause:  filepath.Join(outDir, "pause.tar"),
	}
	steps := [][]string{
		{"build", "-trimpath", "-o", img.Binary, "./cmd/agentplane"},
		{"run", "./hack/ocimage", "-binary", img.Binary, "-name", AgentImage, "-entrypoint", "/agentplane", "-out", img.Agent},
		{"run", "./hack/ocimage", "-pause", "-name", PauseImage, "-out", img.Pause},
	}
	for _, args := range steps {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return Images{}, fmt.Errorf("go %v: %w\n%s", args, err, out)
		}
	}
	return img, nil
}

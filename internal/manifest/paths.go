package manifest

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/agentplane/agentplane/api/v1alpha1"
)

// SelfCommand is the spec.command[0] that means the agentplane binary itself; ResolvePaths
// leaves it to the caller.
const SelfCommand = "agentplane"

// Paths are where the replicas of an agent run in embedded mode, and what.
type Paths struct {
	// Dir is the absolute working directory of its replicas.
	Dir string
	// Program is the program to start: an absolute path, or SelfCommand.
	Program string
}

// ResolvePaths finds, on this machine, the working directory and the program of a's replicas
// in embedded mode, and checks that they are there. Relative paths are relative to the
// manifest's directory (the annotation v1alpha1.AnnotationManifestDir, which Load sets), or to
// base for an agent without one: spec.workingDir (default: that directory itself) and a
// spec.command[0] with a slash in it; a command without a slash is looked up in $PATH, as a
// shell does. Every problem is returned, with its field. An agent without spec.command (one
// for Kubernetes only) gets its Dir and no Program.
func ResolvePaths(a *v1alpha1.Agent, base string) (Paths, field.ErrorList) {
	if d := a.Annotations[v1alpha1.AnnotationManifestDir]; d != "" {
		base = d
	}
	var (
		p    Paths
		errs field.ErrorList
		spec = field.NewPath("spec")
	)
	p.Dir = base
	if wd := a.Spec.WorkingDir; wd != "" {
		p.Dir = join(base, wd)
	}
	if p.Dir == "" {
		p.Dir, _ = os.Getwd()
	}
	if !filepath.IsAbs(p.Dir) {
		if abs, err := filepath.Abs(p.Dir); err == nil {
			p.Dir = abs
		}
	}
	if fi, err := os.Stat(p.Dir); err != nil || !fi.IsDir() {
		what := a.Spec.WorkingDir
		if what == "" {
			what = p.Dir
		}
		errs = append(errs, field.Invalid(spec.Child("workingDir"), what, "no such directory: "+p.Dir))
	}
	if len(a.Spec.Command) == 0 {
		return p, errs
	}
	cmd, at := a.Spec.Command[0], spec.Child("command").Index(0)
	switch {
	case cmd == SelfCommand:
		p.Program = cmd
	case strings.Contains(cmd, "/"):
		p.Program = join(base, cmd)
		if msg, missing := notExecutable(p.Program); msg != "" {
			if missing && !filepath.IsAbs(cmd) {
				msg += " (a relative command is relative to the manifest's directory, " + base + ")"
			}
			errs = append(errs, field.Invalid(at, cmd, msg))
		}
	default:
		path, err := exec.LookPath(cmd)
		if err != nil {
			errs = append(errs, field.Invalid(at, cmd, "no such program in $PATH"))
			break
		}
		if p.Program, err = filepath.Abs(path); err != nil {
			p.Program = path
		}
	}
	return p, errs
}

func join(base, p string) string {
	if filepath.IsAbs(p) || base == "" {
		return filepath.Clean(p)
	}
	return filepath.Join(base, p)
}

// notExecutable says why path is not a program that can be run, and whether it is missing;
// "" when it is one.
func notExecutable(path string) (why string, missing bool) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file: " + path, true
	case err != nil:
		return err.Error(), false
	case fi.IsDir():
		return path + " is a directory", false
	case fi.Mode()&0o111 == 0:
		return path + " is not executable (chmod +x)", false
	}
	return "", false
}

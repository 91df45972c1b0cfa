package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentplane/agentplane/internal/manifest"
	"github.com/agentplane/agentplane/internal/supervisor"
)

type applyOptions struct {
	gateway gatewayTarget
	files   []string
	prune   bool
	reload  bool
	output  string
	timeout time.Duration
}

func newApplyCommand(streams Streams) *cobra.Command {
	o := applyOptions{}
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR...",
		Short: "Add, change, scale or remove agents of a running agentplane up",
		Long: `Send manifests to a running agentplane up, which applies them without a restart: new agents
start; an agent whose replicas changed is scaled (replicas that go are drained first: no new
tasks, SIGTERM, SIGKILL after the grace period); an agent whose command, args, env, probes or
maxConcurrency changed has its replicas replaced one at a time, each new one ready before an old
one stops, so capacity never drops. Other changes take effect at once.

Agents not in the manifests are left alone, unless --prune is given: then the manifests are the
whole set, and agents not in them are removed. --reload applies again, as the whole set, the
manifests agentplane up was started with.

The manifests are checked here first; apply returns once the change is done and prints what
changed, one line per agent.`,
		Example: `  agentplane apply -f examples/clinic/triage.yaml
  agentplane apply -f examples/clinic --prune
  agentplane apply --reload`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runApply(cmd.Context(), streams, o) },
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.files, "file", "f", nil, "manifest file or directory (repeatable)")
	f.BoolVar(&o.prune, "prune", false, "remove the running agents that are not in the manifests")
	f.BoolVar(&o.reload, "reload", false, "apply again the manifests agentplane up was started with")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text, json or yaml")
	f.DurationVar(&o.timeout, "timeout", 15*time.Minute, "how long to wait for the change, rolling updates included")
	gatewayFlag(cmd, &o.gateway)
	return cmd
}

func runApply(ctx context.Context, streams Streams, o applyOptions) error {
	switch o.output {
	case "text", "json", "yaml":
	default:
		return &exitError{code: 2, err: fmt.Errorf("-o %q: must be text, json or yaml", o.output)}
	}
	switch {
	case o.reload && len(o.files) > 0:
		return &exitError{code: 2, err: errors.New("--reload takes no -f: it reads the manifests agentplane up was started with")}
	case !o.reload && len(o.files) == 0:
		return &exitError{code: 2, err: errors.New("no manifests: give -f FILE|DIR, or --reload")}
	}
	var body []byte
	path := "/api/v1/apply"
	if o.reload {
		path += "?reload=true"
	} else {
		// Check here first, for errors that name the file.
		if _, err := manifest.Load(o.files...); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("invalid manifests:\n%w", err)}
		}
		var err error
		if body, err = readManifests(o.files); err != nil {
			return err
		}
		if o.prune {
			path += "?prune=true"
		}
	}

	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var diff supervisor.Diff
	if err := adminDo(ctx, http.MethodPost, o.gateway, path, body, &diff); err != nil {
		return err
	}
	if o.output != "text" {
		return printData(streams.Out, o.output, diff)
	}
	return printDiff(streams.Out, diff)
}

// readManifests reads the files, and the *.yaml and *.yml files of the directories, as
// manifest.Load does, into one YAML stream.
func readManifests(paths []string) ([]byte, error) {
	files, err := manifest.Files(paths...)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if buf.Len() > 0 {
			buf.WriteString("\n---\n")
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// printDiff prints a line per agent, in the words of kubectl apply.
func printDiff(w io.Writer, d supervisor.Diff) error {
	type line struct{ agent, what string }
	var lines []line
	for _, a := range d.Added {
		lines = append(lines, line{a, "created"})
	}
	for _, a := range d.Removed {
		lines = append(lines, line{a, "deleted"})
	}
	for _, s := range d.Scaled {
		lines = append(lines, line{s.Agent, fmt.Sprintf("scaled from %d to %d replicas", s.From, s.To)})
	}
	for _, a := range d.Rolled {
		lines = append(lines, line{a, "rolled out"})
	}
	for _, a := range d.Updated {
		lines = append(lines, line{a, "configured"})
	}
	for _, a := range d.Unchanged {
		lines = append(lines, line{a, "unchanged"})
	}
	slices.SortStableFunc(lines, func(a, b line) int { return strings.Compare(a.agent, b.agent) })
	for _, l := range lines {
		if _, err := fmt.Fprintf(w, "agent/%s %s\n", l.agent, l.what); err != nil {
			return err
		}
	}
	return nil
}

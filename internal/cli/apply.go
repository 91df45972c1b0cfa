package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/agentplane/agentplane/api/v1alpha1"
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
	// wait is how long to wait, after the change is applied, for the agents it started or
	// changed to be ready; 0 does not wait.
	wait waitFlag
	// poll is how often the agents are checked while waiting.
	poll time.Duration
}

// defaultApplyWait is how long apply waits for the agents it changed when --wait has no value.
const defaultApplyWait = 5 * time.Minute

// waitFlag is --wait[=true|false|TIMEOUT]: a boolean that may be given as a duration instead.
type waitFlag struct{ d time.Duration }

var _ pflag.Value = (*waitFlag)(nil)

func (w *waitFlag) String() string {
	if w.d == 0 {
		return "false"
	}
	return w.d.String()
}

func (w *waitFlag) Set(v string) error {
	if b, err := strconv.ParseBool(v); err == nil {
		w.d = 0
		if b {
			w.d = defaultApplyWait
		}
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q is neither true, false nor a positive duration such as 2m", v)
	}
	w.d = d
	return nil
}

func (w *waitFlag) Type() string { return "timeout" }

func newApplyCommand(streams Streams) *cobra.Command {
	o := applyOptions{wait: waitFlag{defaultApplyWait}, poll: 250 * time.Millisecond}
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

The manifests are checked here first. apply prints what changed, one line per agent (created,
configured, scaled, rolled out, deleted or unchanged; the same words with -o json), then waits
until every agent it created, scaled or rolled out is ready: all its desired replicas ready and
running the new spec (an autoscaled agent at zero replicas is ready). So a task sent right after
apply finds its agent ready. If that takes longer than --wait (5m), apply names the replicas that
are not ready and why, and exits 1; --wait=false returns as soon as the change is applied.`,
		Example: `  agentplane apply -f examples/clinic/triage.yaml
  agentplane apply -f examples/clinic --prune
  agentplane apply -f examples/clinic/triage.yaml --wait=30s
  agentplane apply --reload --wait=false`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runApply(cmd.Context(), streams, o) },
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.files, "file", "f", nil, "manifest file or directory (repeatable)")
	f.BoolVar(&o.prune, "prune", false, "remove the running agents that are not in the manifests")
	f.BoolVar(&o.reload, "reload", false, "apply again the manifests agentplane up was started with")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text, json or yaml")
	f.DurationVar(&o.timeout, "timeout", 15*time.Minute, "how long the gateway may take to apply the change, rolling updates included")
	f.Var(&o.wait, "wait", "then wait until the agents changed are ready: true, false, or how long (--wait=2m)")
	f.Lookup("wait").NoOptDefVal = "true"
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
		// Load here, for errors that name the file, and send what it read: each agent
		// carries its manifest's directory, which its relative paths are relative to.
		agents, err := manifest.Load(o.files...)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("invalid manifests:\n%w", err)}
		}
		if body, err = encodeManifests(agents); err != nil {
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
	var err error
	if o.output != "text" {
		err = printData(streams.Out, o.output, ApplyResult{Agents: appliedAgents(diff)})
	} else {
		err = printDiff(streams.Out, diff)
	}
	if err != nil || o.wait.d == 0 {
		return err
	}
	return waitApplied(ctx, streams, o.gateway, toWaitFor(diff), o.wait.d, o.poll)
}

// encodeManifests writes agents as one YAML stream, as the gateway's apply reads it.
func encodeManifests(agents []v1alpha1.Agent) ([]byte, error) {
	var buf bytes.Buffer
	for _, a := range agents {
		a.Status = v1alpha1.AgentStatus{}
		b, err := yaml.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("agent %s: %w", a.Name, err)
		}
		if buf.Len() > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// Action is what apply did to an agent, in the words of kubectl apply. Text and -o json|yaml
// use the same words.
type Action string

// Actions.
const (
	ActionCreated    Action = "created"
	ActionConfigured Action = "configured" // changed in fields that need no restart
	ActionScaled     Action = "scaled"
	ActionRolledOut  Action = "rolled out" // replicas replaced one at a time for a new spec
	ActionDeleted    Action = "deleted"
	ActionUnchanged  Action = "unchanged"
)

// ApplyResult is what apply prints with -o json or yaml.
type ApplyResult struct {
	Agents []AppliedAgent `json:"agents"`
}

// AppliedAgent is what apply did to one agent.
type AppliedAgent struct {
	Agent  string `json:"agent"`
	Action Action `json:"action"`
	// From and To are the replicas before and after, for ActionScaled.
	From *int `json:"from,omitempty"`
	To   *int `json:"to,omitempty"`
}

// appliedAgents turns the supervisor's diff into a line per agent, by agent name.
func appliedAgents(d supervisor.Diff) []AppliedAgent {
	out := []AppliedAgent{}
	add := func(names []string, a Action) {
		for _, n := range names {
			out = append(out, AppliedAgent{Agent: n, Action: a})
		}
	}
	add(d.Added, ActionCreated)
	add(d.Removed, ActionDeleted)
	for _, s := range d.Scaled {
		out = append(out, AppliedAgent{Agent: s.Agent, Action: ActionScaled, From: &s.From, To: &s.To})
	}
	add(d.Rolled, ActionRolledOut)
	add(d.Updated, ActionConfigured)
	add(d.Unchanged, ActionUnchanged)
	slices.SortStableFunc(out, func(a, b AppliedAgent) int { return strings.Compare(a.Agent, b.Agent) })
	return out
}

// printDiff prints a line per agent, in the words of kubectl apply.
func printDiff(w io.Writer, d supervisor.Diff) error {
	for _, a := range appliedAgents(d) {
		what := string(a.Action)
		if a.Action == ActionScaled {
			what = fmt.Sprintf("scaled from %d to %d replicas", *a.From, *a.To)
		}
		if _, err := fmt.Fprintf(w, "agent/%s %s\n", a.Agent, what); err != nil {
			return err
		}
	}
	return nil
}

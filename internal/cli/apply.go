package cli

import (
	"bytes"
	"context"
	"encoding/json"
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

// gatewayTarget is the gateway a command talks to, and the credential it presents.
type gatewayTarget struct {
	URL string
	// Token is sent as "Authorization: Bearer <token>": an API key or a JWT. Empty sends none.
	Token string
}

// authorize adds the target's credential to req.
func (g gatewayTarget) authorize(req *http.Request) {
	if g.Token != "" {
		req.Header.Set("Authorization", "Bearer "+g.Token)
	}
}

// gatewayFlag adds --gateway, defaulting to $AGENTPLANE_GATEWAY or the default address of up,
// and --token, defaulting to $AGENTPLANE_TOKEN, for a gateway with authentication on. The
// token's value is never printed (not even as the flag's default in --help).
func gatewayFlag(cmd *cobra.Command, target *gatewayTarget) {
	gw := os.Getenv("AGENTPLANE_GATEWAY")
	if gw == "" {
		gw = defaultGatewayURL
	}
	cmd.Flags().StringVar(&target.URL, "gateway", gw, "gateway base URL (env AGENTPLANE_GATEWAY)")
	cmd.Flags().StringVar(&target.Token, "token", "", "API key or bearer JWT for a gateway with authentication on (env AGENTPLANE_TOKEN)")
	cmd.PreRun = chainPreRun(cmd.PreRun, func(*cobra.Command, []string) {
		if target.Token == "" {
			target.Token = os.Getenv("AGENTPLANE_TOKEN")
		}
	})
}

// chainPreRun runs a, then b.
func chainPreRun(a, b func(*cobra.Command, []string)) func(*cobra.Command, []string) {
	if a == nil {
		return b
	}
	return func(c *cobra.Command, args []string) { a(c, args); b(c, args) }
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

// adminDo sends a request to an admin endpoint of the gateway and decodes its JSON answer into
// v. An error answer becomes an error with the gateway's message.
func adminDo(ctx context.Context, method string, gw gatewayTarget, path string, body []byte, v any) error {
	base := gw.URL
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, bytes.NewReader(body))
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("--gateway %q: %w", base, err)}
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/yaml")
	}
	gw.authorize(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no answer from the gateway at %s in time: %w", base, err)
		}
		return fmt.Errorf("cannot reach the gateway at %s: %w (is agentplane up running? set --gateway)", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return adminResponseError(resp)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("the gateway answered something else than JSON: %w", err)
	}
	return nil
}

// adminResponseError turns an error answer of an admin endpoint into an error.
func adminResponseError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e adminErrorBody
	if json.Unmarshal(raw, &e) != nil || e.Error == "" {
		msg := strings.TrimSpace(string(raw))
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
			return fmt.Errorf("the gateway answered %s to %s: is it an agentplane up with the admin API? (%s)", resp.Status, resp.Request.URL.Path, msg)
		}
		return fmt.Errorf("the gateway answered %s: %s", resp.Status, msg)
	}
	err := fmt.Errorf("%s", e.Error)
	if d := e.Diff; d != nil && d.Changed() {
		var b strings.Builder
		_ = printDiff(&b, *d)
		err = fmt.Errorf("%s\nwhat it set out to do:\n%s", e.Error, strings.TrimSpace(b.String()))
	}
	if resp.StatusCode == http.StatusBadRequest {
		return &exitError{code: 2, err: err}
	}
	return err
}

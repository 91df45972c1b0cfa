package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/agentplane/agentplane/internal/gateway"
)

type logsOptions struct {
	gateway gatewayTarget
	replica int
	follow  bool
	tail    int
}

func newLogsCommand(streams Streams) *cobra.Command {
	o := logsOptions{}
	cmd := &cobra.Command{
		Use:   "logs REPLICA|AGENT",
		Short: "Print the log of a replica of a running agentplane up",
		Long: `Print the log of a replica: what its process wrote to stdout and stderr, and a line from
agentplane at each start and exit. Name a replica (triage-0), or an agent and pick its replica with
--replica (default: its first one). With -f, keep printing lines as they are written until Ctrl-C.`,
		Example: `  agentplane logs triage-1
  agentplane logs triage --replica 2 --tail 50 -f`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.tail < -1 {
				return &exitError{code: 2, err: fmt.Errorf("--tail %d: must be 0 or more (or -1 for the whole log)", o.tail)}
			}
			if cmd.Flags().Changed("replica") && o.replica < 0 {
				return &exitError{code: 2, err: fmt.Errorf("--replica %d: must be 0 or more", o.replica)}
			}
			return runLogs(cmd.Context(), streams, o, args[0], cmd.Flags().Changed("replica"))
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.replica, "replica", 0, "index of the agent's replica, when AGENT is given")
	f.BoolVarP(&o.follow, "follow", "f", false, "keep printing lines as they are appended")
	f.IntVar(&o.tail, "tail", -1, "print only the last N lines (-1: the whole log)")
	gatewayFlag(cmd, &o.gateway)
	return cmd
}

func runLogs(ctx context.Context, streams Streams, o logsOptions, arg string, replicaSet bool) error {
	name, err := resolveReplica(ctx, streams, o.gateway, arg, o.replica, replicaSet)
	if err != nil {
		return err
	}
	q := url.Values{}
	if o.tail >= 0 {
		q.Set("tail", strconv.Itoa(o.tail))
	}
	if o.follow {
		q.Set("follow", "true")
	}
	u := strings.TrimSuffix(o.gateway.URL, "/") + "/api/v1/logs/" + url.PathEscape(name)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("--gateway %q: %w", o.gateway.URL, err)}
	}
	// The answer's headers must come within 10 seconds; with -f its body then lasts until Ctrl-C.
	headers := time.AfterFunc(10*time.Second, cancel)
	resp, err := o.gateway.send(req)
	headers.Stop()
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return o.gateway.statusError(resp)
	}
	if _, err := io.Copy(streams.Out, resp.Body); err != nil && ctx.Err() == nil {
		return fmt.Errorf("reading the log of %s: %w", name, err)
	}
	return nil
}

// resolveReplica names the replica whose log to print: ARG-N with --replica; else ARG if a
// replica is called so, else the first replica of agent ARG, else ARG if it looks like the
// name of a replica (that may have been removed; its log stays).
func resolveReplica(ctx context.Context, streams Streams, gw gatewayTarget, arg string, index int, indexSet bool) (string, error) {
	if indexSet {
		if msgs := validation.IsDNS1035Label(arg); len(msgs) > 0 {
			return "", &exitError{code: 2, err: fmt.Errorf("%q is not an agent name: %s", arg, strings.Join(msgs, "; "))}
		}
		return fmt.Sprintf("%s-%d", arg, index), nil
	}
	var resp struct {
		Replicas []gateway.ReplicaStatus `json:"replicas"`
	}
	if err := fetchJSON(ctx, gw, "/api/v1/replicas", &resp); err != nil {
		return "", err
	}
	var ofAgent []gateway.ReplicaStatus
	for _, r := range resp.Replicas {
		if r.Name == arg {
			return arg, nil
		}
		if r.Agent == arg {
			ofAgent = append(ofAgent, r)
		}
	}
	if len(ofAgent) > 0 {
		first := slices.MinFunc(ofAgent, func(a, b gateway.ReplicaStatus) int { return a.Index - b.Index })
		if len(ofAgent) > 1 {
			fmt.Fprintf(streams.Err, "agent %s has %d replicas; showing %s (choose with --replica N)\n", arg, len(ofAgent), first.Name)
		}
		return first.Name, nil
	}
	if _, ok := splitReplica(arg); ok {
		return arg, nil
	}
	return "", errors.New("no agent or replica called " + strconv.Quote(arg) + " (see agentplane get replicas)")
}

package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/agentplane/agentplane/internal/gateway"
)

const defaultGatewayURL = "http://127.0.0.1:8080"

type getOptions struct {
	gateway gatewayTarget
	output  string
	agent   string
	limit   int
}

func newGetCommand(streams Streams) *cobra.Command {
	o := getOptions{}
	cmd := &cobra.Command{
		Use:   "get agents|replicas|tasks|gateways|sites",
		Short: "List agents, replicas, recent tasks, or the gateways and sites of the fleet, of a running gateway",
		Example: `  agentplane get agents
  agentplane get replicas --agent triage -o json
  agentplane get tasks --limit 20
  agentplane get gateways`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"agents", "replicas", "tasks", "gateways", "sites"},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch o.output {
			case "table", "json", "yaml":
			default:
				return &exitError{code: 2, err: fmt.Errorf("-o %q: must be table, json or yaml", o.output)}
			}
			switch args[0] {
			case "agents", "agent", "ag":
				return getAgents(cmd.Context(), streams, o)
			case "replicas", "replica":
				return getReplicas(cmd.Context(), streams, o)
			case "tasks", "task":
				return getTasks(cmd.Context(), streams, o)
			case "gateways", "gateway", "gw":
				return getGateways(cmd.Context(), streams, o)
			case "sites", "site":
				return getSites(cmd.Context(), streams, o)
			}
			return &exitError{code: 2, err: fmt.Errorf("unknown resource %q: use agents, replicas, tasks, gateways or sites", args[0])}
		},
	}
	gatewayFlag(cmd, &o.gateway)
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	cmd.Flags().StringVar(&o.agent, "agent", "", "only replicas or tasks of this agent")
	cmd.Flags().IntVar(&o.limit, "limit", 50, "how many recent tasks to list")
	return cmd
}

// fetchJSON GETs an admin endpoint of the gateway, within 5 seconds, and decodes its answer into v.
func fetchJSON(ctx context.Context, gw gatewayTarget, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return adminDo(ctx, http.MethodGet, gw, path, nil, v)
}

func printData(w io.Writer, format string, v any) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return fmt.Errorf("unknown format %q", format)
}

func getAgents(ctx context.Context, streams Streams, o getOptions) error {
	var resp struct {
		Agents []gateway.AgentStatus `json:"agents"`
	}
	if err := fetchJSON(ctx, o.gateway, "/api/v1/agents", &resp); err != nil {
		return err
	}
	if o.output != "table" {
		return printData(streams.Out, o.output, resp.Agents)
	}
	tw := tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tREADY\tSTATE\tMAX-CONCURRENCY\tIN-FLIGHT\tRESTARTS\tSITES")
	for _, a := range resp.Agents {
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%d\t%d\t%d\t%s\n", a.Name, a.Ready, a.Desired, a.State, a.MaxConcurrency,
			a.InFlight, a.Restarts, orDash(strings.Join(a.Sites, ",")))
	}
	return tw.Flush()
}

func getReplicas(ctx context.Context, streams Streams, o getOptions) error {
	var resp struct {
		Replicas []gateway.ReplicaStatus `json:"replicas"`
	}
	path := "/api/v1/replicas"
	if o.agent != "" {
		path += "?agent=" + url.QueryEscape(o.agent)
	}
	if err := fetchJSON(ctx, o.gateway, path, &resp); err != nil {
		return err
	}
	if o.output != "table" {
		return printData(streams.Out, o.output, resp.Replicas)
	}
	tw := tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\tREPLICA\tADDRESS\tPID\tSTATE\tREADY\tRESTARTS\tIN-FLIGHT\tAGE")
	now := time.Now()
	for _, r := range resp.Replicas {
		state := r.State
		if r.Ejected {
			state += " (ejected)"
		}
		pid := "-"
		if r.PID > 0 {
			pid = strconv.Itoa(r.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\t%d\t%d\t%s\n", r.Agent, r.Name, orDash(strings.TrimPrefix(r.URL, "http://")),
			pid, state, r.Ready, r.Restarts, r.InFlight, age(now, r.Since))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func age(now, since time.Time) string {
	if since.IsZero() {
		return "-"
	}
	d := now.Sub(since)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	default:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
}

func getTasks(ctx context.Context, streams Streams, o getOptions) error {
	var resp struct {
		Tasks []gateway.TaskSummary `json:"tasks"`
	}
	q := url.Values{"limit": {strconv.Itoa(o.limit)}}
	if o.agent != "" {
		q.Set("agent", o.agent)
	}
	if err := fetchJSON(ctx, o.gateway, "/api/v1/tasks?"+q.Encode(), &resp); err != nil {
		return err
	}
	if o.output != "table" {
		return printData(streams.Out, o.output, resp.Tasks)
	}
	tw := tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGENT\tSTATE\tREPLICA\tATTEMPTS\tLATENCY\tAGE\tREASON")
	now := time.Now()
	for _, t := range resp.Tasks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", t.ID, t.Agent, t.State, orDash(t.Replica), t.Attempts,
			(time.Duration(t.LatencyMs) * time.Millisecond).String(), age(now, t.CreatedAt), orDash(t.Reason))
	}
	return tw.Flush()
}

func getGateways(ctx context.Context, streams Streams, o getOptions) error {
	var resp gateway.FleetStatus
	if err := fetchJSON(ctx, o.gateway, "/api/v1/fleet", &resp); err != nil {
		return err
	}
	if o.output != "table" {
		return printData(streams.Out, o.output, resp.Members)
	}
	if len(resp.Members) == 0 {
		fmt.Fprintln(streams.Err, "this gateway is in no fleet (it uses the embedded journal; see docs/sites.md)")
		return nil
	}
	tw := tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GATEWAY\tSITE\tURL\tAGENTS\tREADY\tIN-FLIGHT/SLOTS\tQUEUED\tRTT\tLAST-SEEN\tAGE")
	now := time.Now()
	for _, m := range resp.Members {
		var ready, slots, inFlight, queued int
		for _, l := range m.Agents {
			ready += l.Ready
			slots += l.Slots
			inFlight += l.InFlight
			queued += l.Queued
		}
		name, rtt := m.ID, "-"
		if m.Self {
			name += " (this)"
		} else if m.RTT > 0 {
			rtt = m.RTT.Round(100 * time.Microsecond).String()
		}
		if m.Draining {
			name += " (draining)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d/%d\t%d\t%s\t%s\t%s\n", name, orDash(m.Site), orDash(m.URL), len(m.Agents),
			ready, inFlight, slots, queued, rtt, age(now, m.LastSeen), age(now, m.Started))
	}
	return tw.Flush()
}

// SiteStatus is one entry of `agentplane get sites -o json`: the live gateways of a site and
// what they serve together.
type SiteStatus struct {
	Site     string   `json:"site"`
	Gateways []string `json:"gateways"`
	Agents   []string `json:"agents"`
	Ready    int      `json:"ready"`
	Slots    int      `json:"slots"`
	InFlight int      `json:"inFlight"`
	Queued   int      `json:"queued"`
}

func getSites(ctx context.Context, streams Streams, o getOptions) error {
	var resp gateway.FleetStatus
	if err := fetchJSON(ctx, o.gateway, "/api/v1/fleet", &resp); err != nil {
		return err
	}
	by := map[string]*SiteStatus{}
	var sites []*SiteStatus
	for _, m := range resp.Members {
		s, ok := by[m.Site]
		if !ok {
			s = &SiteStatus{Site: m.Site}
			by[m.Site] = s
			sites = append(sites, s)
		}
		s.Gateways = append(s.Gateways, m.ID)
		for name, l := range m.Agents {
			if !slices.Contains(s.Agents, name) {
				s.Agents = append(s.Agents, name)
			}
			s.Ready += l.Ready
			s.Slots += l.Slots
			s.InFlight += l.InFlight
			s.Queued += l.Queued
		}
	}
	for _, s := range sites {
		slices.Sort(s.Agents)
	}
	slices.SortFunc(sites, func(a, b *SiteStatus) int { return strings.Compare(a.Site, b.Site) })
	if o.output != "table" {
		return printData(streams.Out, o.output, sites)
	}
	if len(sites) == 0 {
		fmt.Fprintln(streams.Err, "this gateway is in no fleet (it uses the embedded journal; see docs/sites.md)")
		return nil
	}
	tw := tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tGATEWAYS\tAGENTS\tREADY\tIN-FLIGHT/SLOTS\tQUEUED")
	for _, s := range sites {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d/%d\t%d\n", orDash(s.Site), len(s.Gateways), orDash(strings.Join(s.Agents, ",")),
			s.Ready, s.InFlight, s.Slots, s.Queued)
	}
	return tw.Flush()
}

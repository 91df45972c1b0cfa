package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
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
	watch   bool
}

// maxRecentTasks is how many tasks GET /api/v1/tasks can list: the latest the gateway touched.
const maxRecentTasks = 500

// Watching: how often a list is read again, and after how many failed reads in a row the watch
// gives up.
const (
	watchInterval = time.Second
	watchGiveUp   = 30
)

// getKind is one kind of thing `get` shows: how it is read from the gateway (each read within
// 5 seconds) and how it is printed.
type getKind struct {
	fetch func(ctx context.Context, o getOptions) ([]byte, error)
	print func(streams Streams, o getOptions, raw []byte) error
}

// at reads the admin endpoint path(o).
func at(path func(o getOptions) string) func(context.Context, getOptions) ([]byte, error) {
	return func(ctx context.Context, o getOptions) ([]byte, error) { return fetchRaw(ctx, o.gateway, path(o)) }
}

func getKinds(id string) map[string]getKind {
	agents := getKind{at(func(getOptions) string { return "/api/v1/agents" }), printAgents}
	replicas := getKind{at(func(o getOptions) string {
		if o.agent != "" {
			return "/api/v1/replicas?agent=" + url.QueryEscape(o.agent)
		}
		return "/api/v1/replicas"
	}), printReplicas}
	tasks := getKind{at(func(o getOptions) string {
		q := url.Values{"limit": {strconv.Itoa(o.limit)}}
		if o.agent != "" {
			q.Set("agent", o.agent)
		}
		return "/api/v1/tasks?" + q.Encode()
	}), printTasks}
	if id != "" {
		tasks = getKind{func(ctx context.Context, o getOptions) ([]byte, error) { return fetchTask(ctx, o, id) }, printTask}
	}
	fleet := at(func(getOptions) string { return "/api/v1/fleet" })
	gateways := getKind{fleet, printGateways}
	sites := getKind{fleet, printSites}
	return map[string]getKind{
		"agents": agents, "agent": agents, "ag": agents,
		"replicas": replicas, "replica": replicas,
		"tasks": tasks, "task": tasks,
		"gateways": gateways, "gateway": gateways, "gw": gateways,
		"sites": sites, "site": sites,
	}
}

func newGetCommand(streams Streams) *cobra.Command {
	o := getOptions{}
	cmd := &cobra.Command{
		Use:   "get agents|replicas|tasks|gateways|sites | get task ID",
		Short: "List agents, replicas, recent tasks, or the gateways and sites of the fleet, of a running gateway; or show one task",
		Long: `List agents, replicas, recent tasks, or the gateways and sites of the fleet, of a running gateway.
"get task ID" shows one task: its state, agent, replica, attempts, timings and why it ended so;
never what it was asked or answered. With --watch, the list is read again every second and
printed again when it changed, until Ctrl-C.`,
		Example: `  agentplane get agents
  agentplane get replicas --agent triage -o json
  agentplane get tasks --agent triage --limit 20 --watch
  agentplane get task 0b7c5cf4-41d1-4c1e-9d2e-5e1f1b8f2a10
  agentplane get gateways`,
		Args:      cobra.RangeArgs(1, 2),
		ValidArgs: []string{"agents", "replicas", "tasks", "gateways", "sites"},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch o.output {
			case "table", "json", "yaml":
			default:
				return &exitError{code: 2, err: fmt.Errorf("-o %q: must be table, json or yaml", o.output)}
			}
			if o.limit < 1 || o.limit > maxRecentTasks {
				return &exitError{code: 2, err: fmt.Errorf("--limit %d: must be from 1 to %d", o.limit, maxRecentTasks)}
			}
			var id string
			if len(args) == 2 {
				if args[0] != "task" && args[0] != "tasks" {
					return &exitError{code: 2, err: fmt.Errorf("get %s takes no name: only get task ID does", args[0])}
				}
				id = args[1]
			}
			k, ok := getKinds(id)[args[0]]
			if !ok {
				return &exitError{code: 2, err: fmt.Errorf("unknown resource %q: use agents, replicas, tasks, gateways or sites", args[0])}
			}
			if o.watch {
				return watch(cmd.Context(), streams, o, k, watchInterval)
			}
			raw, err := k.fetch(cmd.Context(), o)
			if err != nil {
				return err
			}
			return k.print(streams, o, raw)
		},
	}
	gatewayFlag(cmd, &o.gateway)
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	cmd.Flags().StringVar(&o.agent, "agent", "", "only replicas or tasks of this agent")
	cmd.Flags().IntVar(&o.limit, "limit", 50, "how many recent tasks to list")
	cmd.Flags().BoolVarP(&o.watch, "watch", "w", false, "read the list again every second and print it again when it changed, until Ctrl-C")
	return cmd
}

// watch prints what k lists, then again each time it changed, reading it every interval until
// ctx ends. Each read has its own deadline. A refused request (401, 403, a bad request) ends
// the watch at once; other failures are reported once and retried, up to watchGiveUp in a row.
func watch(ctx context.Context, streams Streams, o getOptions, k getKind, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var (
		last, lastErr []byte
		failed        int
		printed       bool
	)
	for {
		raw, err := k.fetch(ctx, o)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			if _, ok := errors.AsType[*exitError](err); ok {
				return err
			}
			if failed++; failed >= watchGiveUp {
				return fmt.Errorf("gave up after %d failed reads in a row: %w", failed, err)
			}
			if msg := []byte(err.Error()); !bytes.Equal(msg, lastErr) {
				fmt.Fprintln(streams.Err, "Error:", err, "(retrying)")
				lastErr = msg
			}
		case !bytes.Equal(raw, last):
			failed, lastErr, last = 0, nil, raw
			if printed {
				sep := "\n"
				if o.output == "yaml" {
					sep = "---\n"
				}
				if o.output != "json" {
					fmt.Fprint(streams.Out, sep)
				}
			}
			if err := k.print(streams, o, raw); err != nil {
				return err
			}
			printed = true
		default:
			failed, lastErr = 0, nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// fetchRaw GETs an admin endpoint of the gateway, within 5 seconds.
func fetchRaw(ctx context.Context, gw gatewayTarget, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return adminRaw(ctx, http.MethodGet, gw, path, nil)
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

func printAgents(streams Streams, o getOptions, raw []byte) error {
	var resp struct {
		Agents []gateway.AgentStatus `json:"agents"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return fmt.Errorf("the gateway answered something else than JSON: %w", err)
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

func printReplicas(streams Streams, o getOptions, raw []byte) error {
	var resp struct {
		Replicas []gateway.ReplicaStatus `json:"replicas"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return fmt.Errorf("the gateway answered something else than JSON: %w", err)
	}
	if o.output != "table" {
		return printData(streams.Out, o.output, resp.Replicas)
	}
	tw := tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\tREPLICA\tADDRESS\tPID\tSTATE\tREADY\tRESTARTS\tIN-FLIGHT\tAGE\tREASON")
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
		// Why it is not ready, in a word; describe says more.
		reason := r.Reason
		if r.Ready {
			reason = ""
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\t%d\t%d\t%s\t%s\n", r.Agent, r.Name, orDash(strings.TrimPrefix(r.URL, "http://")),
			pid, state, r.Ready, r.Restarts, r.InFlight, age(now, r.Since), orDash(reason))
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

func printTasks(streams Streams, o getOptions, raw []byte) error {
	var resp struct {
		Tasks []gateway.TaskSummary `json:"tasks"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return fmt.Errorf("the gateway answered something else than JSON: %w", err)
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

func printGateways(streams Streams, o getOptions, raw []byte) error {
	var resp gateway.FleetStatus
	if err := json.Unmarshal(raw, &resp); err != nil {
		return fmt.Errorf("the gateway answered something else than JSON: %w", err)
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

func printSites(streams Streams, o getOptions, raw []byte) error {
	var resp gateway.FleetStatus
	if err := json.Unmarshal(raw, &resp); err != nil {
		return fmt.Errorf("the gateway answered something else than JSON: %w", err)
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

// taskDetail is what get task shows of one task: the answer of GET /api/v1/tasks/{id} (the
// task's record in the journal, and the changes this gateway saw of it), or, from a gateway
// without that endpoint, its entry in GET /api/v1/tasks. Never its messages or results.
type taskDetail struct {
	gateway.TaskSummary
	Method   string `json:"method,omitempty"`
	Priority string `json:"priority,omitempty"`
	Subject  string `json:"subject,omitempty"`
	Tenant   string `json:"tenant,omitempty"`
	Owner    string `json:"owner,omitempty"`
	Origin   string `json:"origin,omitempty"`
	History  []struct {
		At      time.Time `json:"at"`
		State   string    `json:"state"`
		Replica string    `json:"replica,omitempty"`
		Attempt int       `json:"attempt"`
		Reason  string    `json:"reason,omitempty"`
	} `json:"history,omitempty"`
	HistoryTruncated bool `json:"historyTruncated,omitempty"`
}

// fetchTask reads task id: from GET /api/v1/tasks/{id}, or, when the gateway has no such
// endpoint (it answers the mux's plain 404), from the recent tasks it lists.
func fetchTask(ctx context.Context, o getOptions, id string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(o.gateway.URL, "/")+"/api/v1/tasks/"+url.PathEscape(id), nil)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	resp, err := o.gateway.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case resp.StatusCode == http.StatusOK:
		return io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	case resp.StatusCode != http.StatusNotFound || ct == "application/json":
		return nil, o.gateway.statusError(resp)
	}
	q := url.Values{"limit": {strconv.Itoa(maxRecentTasks)}}
	if o.agent != "" {
		q.Set("agent", o.agent)
	}
	raw, err := adminRaw(ctx, http.MethodGet, o.gateway, "/api/v1/tasks?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	var list struct {
		Tasks []gateway.TaskSummary `json:"tasks"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("the gateway answered something else than JSON: %w", err)
	}
	i := slices.IndexFunc(list.Tasks, func(t gateway.TaskSummary) bool { return t.ID == id })
	if i < 0 {
		return nil, fmt.Errorf("no task %q among the last %d tasks this gateway handled (it keeps no older ones; see agentplane get tasks)",
			id, maxRecentTasks)
	}
	return json.Marshal(taskDetail{TaskSummary: list.Tasks[i]})
}

// printTask prints a taskDetail as describe does.
func printTask(streams Streams, o getOptions, raw []byte) error {
	var t taskDetail
	if err := json.Unmarshal(raw, &t); err != nil {
		return fmt.Errorf("the gateway answered something else than JSON: %w", err)
	}
	if o.output != "table" {
		return printData(streams.Out, o.output, t)
	}
	tw := tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
	field := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	field("ID", t.ID)
	field("Agent", t.Agent)
	field("State", t.State)
	field("Replica", orDash(t.Replica))
	field("Attempts", strconv.Itoa(t.Attempts))
	if t.Method != "" {
		field("Method", t.Method)
	}
	if t.Subject != "" {
		field("Asked by", t.Subject+orEmpty(" (tenant ", t.Tenant, ")"))
	}
	if t.Priority != "" {
		field("Priority", t.Priority)
	}
	if t.Async {
		field("Async", "yes (returnImmediately: queued durably)")
	}
	field("Created", t.CreatedAt.Format(time.RFC3339Nano))
	field("Updated", t.UpdatedAt.Format(time.RFC3339Nano))
	field("Duration", (time.Duration(t.LatencyMs) * time.Millisecond).String())
	field("Reason", orDash(t.Reason))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(t.History) == 0 {
		return nil
	}
	fmt.Fprintln(streams.Out, "History:")
	tw = tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  AT\tSTATE\tREPLICA\tATTEMPT\tREASON")
	for i, e := range t.History {
		if t.HistoryTruncated && i == len(t.History)/2 {
			fmt.Fprintln(tw, "  ...\t\t\t\t")
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", e.At.Format(time.RFC3339Nano), e.State, orDash(e.Replica), e.Attempt, orDash(e.Reason))
	}
	return tw.Flush()
}

// orEmpty is prefix+s+suffix, or "" when s is.
func orEmpty(prefix, s, suffix string) string {
	if s == "" {
		return ""
	}
	return prefix + s + suffix
}

package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentplane/agentplane/api/v1alpha1"
)

type describeOptions struct {
	gateway gatewayTarget
	output  string
}

func newDescribeCommand(streams Streams) *cobra.Command {
	o := describeOptions{}
	cmd := &cobra.Command{
		Use:   "describe agent NAME",
		Short: "Show an agent of a running agentplane up in detail",
		Long: `Show an agent in detail: its spec as applied (defaults filled in), its conditions (Ready,
Available, Progressing, Degraded, computed from its replicas) and its replicas with their state,
restarts and last exit; for each replica that is not ready, why (such as its startup probe's
last error) and the last lines it wrote to stderr.`,
		Example: `  agentplane describe agent triage
  agentplane describe agent triage -o yaml`,
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"agent"},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch o.output {
			case "table", "json", "yaml":
			default:
				return &exitError{code: 2, err: fmt.Errorf("-o %q: must be table, json or yaml", o.output)}
			}
			switch args[0] {
			case "agent", "agents", "ag":
			default:
				return &exitError{code: 2, err: fmt.Errorf("unknown resource %q: use agent", args[0])}
			}
			return runDescribe(cmd.Context(), streams, o, args[1])
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	gatewayFlag(cmd, &o.gateway)
	return cmd
}

func runDescribe(ctx context.Context, streams Streams, o describeOptions, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var d AgentDescription
	if err := adminDo(ctx, http.MethodGet, o.gateway, "/api/v1/agents/"+url.PathEscape(name), nil, &d); err != nil {
		return err
	}
	if o.output != "table" {
		return printData(streams.Out, o.output, d)
	}
	return printDescription(streams.Out, d, time.Now())
}

// printDescription writes d as kubectl describe does.
func printDescription(w io.Writer, d AgentDescription, now time.Time) error {
	a, s := d.Agent, d.Agent.Spec
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	field := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	field("Name", a.Name)
	field("Description", orDash(s.Description))
	field("State", string(s.State))
	desired := a.DesiredReplicas()
	if as := a.Status.Autoscaling; as != nil {
		desired = int(as.DesiredReplicas)
	}
	field("Replicas", fmt.Sprintf("%d desired | %d total | %d ready", desired, a.Status.Replicas, a.Status.ReadyReplicas))
	if as := s.Autoscaling; as != nil {
		field("Autoscaling", describeAutoscaling(as, a.Status.Autoscaling, now))
	}
	field("Max concurrency", strconv.Itoa(int(s.MaxConcurrency)))
	field("Command", orDash(shellJoin(append(append([]string{}, s.Command...), s.Args...))))
	if s.Image != "" {
		field("Image", s.Image)
	}
	if m := s.Memory; m != nil {
		field("Memory", m.Size)
	}
	if pl := s.Placement; pl != nil {
		var parts []string
		if pl.Site != "" {
			parts = append(parts, "site "+pl.Site)
		}
		if len(pl.AllowedSites) > 0 {
			parts = append(parts, "allowed sites "+strings.Join(pl.AllowedSites, ", "))
		}
		if len(pl.Zones) > 0 {
			parts = append(parts, "zones "+strings.Join(pl.Zones, ", "))
		}
		field("Placement", orDash(strings.Join(parts, "; ")))
	}
	if len(s.Env) == 0 {
		field("Environment", "<none>")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.Env) > 0 {
		fmt.Fprintln(w, "Environment:")
		for _, e := range s.Env {
			fmt.Fprintf(w, "  %s=%s\n", e.Name, e.Value)
		}
	}
	if p := s.Probes; p != nil {
		fmt.Fprintln(w, "Probes:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, pr := range []struct {
			name string
			p    *v1alpha1.Probe
		}{{"Startup", p.Startup}, {"Readiness", p.Readiness}, {"Liveness", p.Liveness}} {
			if pr.p != nil {
				fmt.Fprintf(tw, "  %s:\tGET %s every %ds, timeout %ds, %d failures in a row fail\n", pr.name,
					pr.p.Path, pr.p.PeriodSeconds, pr.p.TimeoutSeconds, pr.p.FailureThreshold)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintln(w, "Conditions:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TYPE\tSTATUS\tREASON\tMESSAGE")
	for _, c := range a.Status.Conditions {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if len(d.Replicas) == 0 {
		_, err := fmt.Fprintln(w, "Replicas: <none>")
		return err
	}
	fmt.Fprintln(w, "Replicas:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tSTATE\tREADY\tPID\tRESTARTS\tLAST EXIT\tAGE\tADDRESS")
	for _, r := range d.Replicas {
		pid := "-"
		if r.PID > 0 {
			pid = strconv.Itoa(r.PID)
		}
		state := r.State
		if !r.NextStart.IsZero() {
			state += fmt.Sprintf(" (restart in %s)", r.NextStart.Sub(now).Round(time.Second))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%t\t%s\t%d\t%s\t%s\t%s\n", r.Name, state, r.Ready, pid, r.Restarts,
			orDash(r.LastExit), age(now, r.Since), orDash(strings.TrimPrefix(r.URL, "http://")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Why the replicas that are not ready are not, with what they last wrote to stderr.
	header := false
	for _, r := range d.Replicas {
		if r.Reason == "" {
			continue
		}
		if !header {
			fmt.Fprintln(w, "Not ready:")
			header = true
		}
		fmt.Fprintf(w, "  %s: %s: %s\n", r.Name, r.Reason, orDash(r.Message))
		if tail := strings.TrimRight(r.StderrTail, "\n"); tail != "" {
			fmt.Fprintf(w, "    last lines of stderr:\n")
			for l := range strings.SplitSeq(tail, "\n") {
				fmt.Fprintf(w, "      %s\n", l)
			}
		}
	}
	return nil
}

// shellJoin quotes the arguments that a shell would split or expand.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~!") {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// describeAutoscaling is the Autoscaling line of describe: how the agent scales, and why it
// has the replicas it has.
func describeAutoscaling(as *v1alpha1.Autoscaling, st *v1alpha1.AutoscalingStatus, now time.Time) string {
	minReplicas := int32(1)
	if as.MinReplicas != nil {
		minReplicas = *as.MinReplicas
	}
	if !as.TaskBased() {
		return fmt.Sprintf("%d–%d replicas on CPU (target %d%%)", minReplicas, as.MaxReplicas, *as.TargetCPUUtilizationPercentage)
	}
	target := 0.7
	if as.TargetLoad != nil {
		target = *as.TargetLoad
	}
	out := fmt.Sprintf("%d–%d replicas on task load (target %.2f)", minReplicas, as.MaxReplicas, target)
	if st != nil && st.Reason != "" {
		out += "; " + st.Reason
		if st.LastScaleTime != nil {
			out += fmt.Sprintf(" (%s ago)", now.Sub(st.LastScaleTime.Time).Round(time.Second))
		}
	}
	return out
}

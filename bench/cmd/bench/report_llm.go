package main

import (
	"fmt"
	"strings"
	"time"
)

// llmTable writes an LLM scenario's table: end-to-end and TTFT percentiles, refusals, the cache
// hit rate, per-class rows when the scenario has classes, then the ratio lines.
func (r *report) llmTable(b *strings.Builder, res scenarioResult) {
	sc := res.sc
	fmt.Fprintf(b, "Arrivals: %s. Model: `--llm --llm-tpot %v --llm-prefill-per-token %v`, prompts lognormal (median %d, p99 %d tokens), answers lognormal (median %d, p99 %d), streamed (`SendStreamingMessage`).\n\n",
		sc.rateNote, llmTPOT, llmPrefill, promptMedian, promptP99, outputMedian, outputP99)
	fmt.Fprintf(b, "| target | sent | ok | errors | refused | lost | p50 | p90 | p99 | p99.9 | TTFT p50 | TTFT p90 | TTFT p99 | TTFT p99.9 | cache hits | ok/s | proxy CPU / task | notes |\n")
	fmt.Fprintf(b, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	row := func(name string, s summary, cpuCol string) {
		fmt.Fprintf(b, "| %s | %d | %d | %d | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.1f | %s | %s |\n", name, s.Sent, s.OK, s.Errors, s.Refused, s.Lost,
			ms(s.P50), ms(s.P90), ms(s.P99), ms(s.P999), ms(s.TTFT50), ms(s.TTFT90), ms(s.TTFT99), ms(s.TTFT999), hits(s), s.Throughput, cpuCol, notes(s))
	}
	for _, s := range res.sums {
		row(s.Target, s, cpu(s))
		for _, c := range s.Classes {
			row(s.Target+" / "+c.Target, c, "")
		}
	}
	for _, f := range res.failed {
		fmt.Fprintf(b, "\nFailed to run: %s\n", f)
	}
	b.WriteString("\n")
	p99Lines(b, res.sums, "p99")
	if sc.llm {
		ratioLine(b, res.sums, "TTFT p99", func(s summary) time.Duration { return s.TTFT99 })
	}
	if sc.classes {
		for _, c := range classes {
			var per []summary
			for _, s := range res.sums {
				for _, cs := range s.Classes {
					if cs.Target == c.name {
						cs.Target = s.Target
						per = append(per, cs)
					}
				}
			}
			p99Lines(b, per, c.name+" p99")
		}
	}
	b.WriteString("\n")
}

func hits(s summary) string {
	if s.hitRate() < 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f%% (%d/%d)", 100*s.hitRate(), s.Hits, s.Hits+s.Misses)
}

// ratioLine writes "agentplane/best-peer <what> = x".
func ratioLine(b *strings.Builder, sums []summary, what string, f func(summary) time.Duration) {
	ap, best := bestPeer(sums, f)
	if ap == nil || best == nil {
		return
	}
	fmt.Fprintf(b, "`agentplane/best-peer %s = %.2f` (agentplane %s, best peer %s %s)  \n", what, float64(f(*ap))/float64(f(*best)),
		ms(f(*ap)), best.Target, ms(f(*best)))
}

// p99Lines writes the end-to-end p99 ratio line and under it "floor/best-peer <what> = y": the
// p99 the best peer's completed tasks would have had with nothing in their way (Floor99) over
// its p99, how far below the best peer any balancer could go.
func p99Lines(b *strings.Builder, sums []summary, what string) {
	p99 := func(s summary) time.Duration { return s.P99 }
	ratioLine(b, sums, what, p99)
	if ap, best := bestPeer(sums, p99); ap != nil && best != nil && best.Floor99 > 0 {
		fmt.Fprintf(b, "`floor/best-peer %s = %.2f` (floor %s: %s's completed tasks each alone on a speed-1 replica, with a cache hit; no balancer goes lower)  \n",
			what, float64(best.Floor99)/float64(best.P99), ms(best.Floor99), best.Target)
	}
}

// bestPeer finds agentplane's summary and the other target's with the lowest f, among those
// that completed tasks.
func bestPeer(sums []summary, f func(summary) time.Duration) (ap, best *summary) {
	for i := range sums {
		s := &sums[i]
		if s.OK == 0 || f(*s) <= 0 {
			continue
		}
		if s.Target == "agentplane" {
			ap = s
		} else if best == nil || f(*s) < f(*best) {
			best = s
		}
	}
	return ap, best
}

// ceilingTable writes throughput per concurrency level and target, and each target's peak.
func (r *report) ceilingTable(b *strings.Builder, res scenarioResult) {
	sc := res.sc
	fmt.Fprintf(b, "%s; trivial backend (`simagent --latency 0`), blocking `SendMessage`. agentplane's are durable tasks/s "+
		"(`agentplane up` with its default embedded journal: each task written before it is forwarded), the others' plain requests/s. "+
		"Cells: completed/s (p99).\n\n", sc.rateNote)
	b.WriteString("| target |")
	for _, n := range sc.ceiling {
		fmt.Fprintf(b, " %d clients |", n)
	}
	b.WriteString(" peak | at | proxy CPU / task at peak | errors + lost |\n| --- |")
	for range sc.ceiling {
		b.WriteString(" ---: |")
	}
	b.WriteString(" ---: | ---: | ---: | ---: |\n")
	for _, s := range res.sums {
		fmt.Fprintf(b, "| %s |", s.Target)
		bad := 0
		for _, n := range sc.ceiling {
			cell := "—"
			for _, l := range s.Levels {
				if l.Conc == n {
					cell = fmt.Sprintf("%.0f (%s)", l.Throughput, ms(l.P99))
					bad += l.Errors + l.Lost + l.Refused
				}
			}
			fmt.Fprintf(b, " %s |", cell)
		}
		fmt.Fprintf(b, " **%.0f/s** | %d | %s | %d |\n", s.Throughput, s.Conc, cpu(s), bad)
	}
	for _, f := range res.failed {
		fmt.Fprintf(b, "\nFailed to run: %s\n", f)
	}
	b.WriteString("\n")
	var ap, best *summary
	for i := range res.sums {
		s := &res.sums[i]
		if s.Target == "agentplane" {
			ap = s
		} else if best == nil || s.Throughput > best.Throughput {
			best = s
		}
	}
	if ap != nil && best != nil && best.Throughput > 0 {
		fmt.Fprintf(b, "`agentplane/best-peer peak = %.2f` (agentplane %.0f durable tasks/s, best peer %s %.0f requests/s)\n\n",
			ap.Throughput/best.Throughput, ap.Throughput, best.Target, best.Throughput)
	}
}

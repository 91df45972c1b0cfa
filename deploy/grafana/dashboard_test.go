package grafana

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/agentplane/agentplane/internal/telemetry"
)

type panel struct {
	ID      int     `json:"id"`
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct{ H, W, X, Y int } `json:"gridPos"`
}

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// scrapeLabels are added by Prometheus to every series it scrapes.
var scrapeLabels = []string{"job", "instance"}

// knownMetrics maps each series name a query may use to its labels: the telemetry catalog
// (histograms with _bucket/_sum/_count) and the Go runtime and process collectors.
func knownMetrics(t *testing.T) map[string][]string {
	known := map[string][]string{}
	for _, mi := range telemetry.Catalog() {
		for _, s := range mi.Series() {
			labels := slices.Clone(mi.Labels)
			if strings.HasSuffix(s, "_bucket") {
				labels = append(labels, "le")
			}
			known[s] = labels
		}
	}
	families, err := telemetry.NewMetrics(telemetry.Options{}).Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if n := f.GetName(); strings.HasPrefix(n, "go_") || strings.HasPrefix(n, "process_") {
			var labels []string
			for _, lp := range f.GetMetric()[0].GetLabel() {
				labels = append(labels, lp.GetName())
			}
			known[n] = labels
		}
	}
	return known
}

var (
	metricRef = regexp.MustCompile(`\b((?:agentplane|go|process)_[a-zA-Z0-9_]+)\b(\{[^}]*\})?`)
	matcher   = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	grouping  = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// checkExpr reports every metric name or label in expr that the metrics do not have.
func checkExpr(errorf func(format string, args ...any), where, expr string, known map[string][]string) {
	refs := metricRef.FindAllStringSubmatch(expr, -1)
	if len(refs) == 0 {
		errorf("%s: %q uses no agentplane, go or process metric", where, expr)
		return
	}
	var all []string
	for _, m := range refs {
		labels, ok := known[m[1]]
		if !ok {
			errorf("%s: %q uses %s, which agentplane does not register", where, expr, m[1])
			continue
		}
		all = append(all, labels...)
		for _, lm := range matcher.FindAllStringSubmatch(m[2], -1) {
			if !slices.Contains(labels, lm[1]) && !slices.Contains(scrapeLabels, lm[1]) {
				errorf("%s: %s has no label %q (it has %v)", where, m[1], lm[1], labels)
			}
		}
	}
	for _, g := range grouping.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !slices.Contains(all, l) && !slices.Contains(scrapeLabels, l) {
				errorf("%s: %q groups by %q, which none of its metrics has", where, expr, l)
			}
		}
	}
	depth := 0
	for _, c := range expr {
		switch c {
		case '(', '{', '[':
			depth++
		case ')', '}', ']':
			depth--
		}
		if depth < 0 {
			break
		}
	}
	if depth != 0 {
		errorf("%s: %q has unbalanced brackets", where, expr)
	}
}

func TestDashboardUsesOnlyRegisteredMetrics(t *testing.T) {
	b, err := os.ReadFile("agentplane.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Fatal("dashboard has no uid or title")
	}
	known := knownMetrics(t)

	exprs, ids := 0, map[int]bool{}
	used := map[string]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := "panel " + p.Title
			if ids[p.ID] {
				t.Errorf("%s: duplicate id %d", where, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("%s: bad gridPos %+v", where, p.GridPos)
			}
			if p.Type != "row" {
				if len(p.Targets) == 0 {
					t.Errorf("%s: no queries", where)
				}
				if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
					t.Errorf("%s: data source is not the ${datasource} variable", where)
				}
			}
			for _, tg := range p.Targets {
				exprs++
				checkExpr(t.Errorf, where, tg.Expr, known)
				for _, m := range metricRef.FindAllStringSubmatch(tg.Expr, -1) {
					used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m[1], "_bucket"), "_sum"), "_count")] = true
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		exprs++
		checkExpr(t.Errorf, "variable "+v.Name, q.Query, known)
	}
	if exprs < 20 {
		t.Fatalf("only %d queries found; is the dashboard parsed right?", exprs)
	}
	// Every agentplane metric is on the dashboard, so that a new one is not forgotten.
	for _, mi := range telemetry.Catalog() {
		if !used[mi.Name] && mi.Name != "agentplane_build_info" {
			t.Errorf("no panel shows %s", mi.Name)
		}
	}
}

// TestCheckExprCatchesMistakes shows the checker fails on what it should.
func TestCheckExprCatchesMistakes(t *testing.T) {
	known := map[string][]string{"agentplane_x_total": {"agent"}}
	for _, expr := range []string{
		`rate(agentplane_y_total[5m])`,          // unknown metric
		`agentplane_x_total{replica="a"}`,       // unknown label
		`sum by (replica) (agentplane_x_total)`, // unknown grouping label
		`sum(rate(agentplane_x_total[5m])`,      // unbalanced
		`vector(1)`,                             // no metric at all
	} {
		var problems []string
		checkExpr(func(f string, a ...any) { problems = append(problems, fmt.Sprintf(f, a...)) }, "test", expr, known)
		if len(problems) == 0 {
			t.Errorf("%q passed the check", expr)
		}
	}
}

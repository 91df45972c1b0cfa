package telemetry

import (
	"os"
	"strings"
	"testing"
)

// TestDocsListEveryMetric keeps docs/observability.md's metric table in step with the catalog.
func TestDocsListEveryMetric(t *testing.T) {
	b, err := os.ReadFile("../../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, mi := range Catalog() {
		row := "| `" + mi.Name + "` | " + mi.Type + " | " + strings.Join(mi.Labels, ", ") + " |"
		if !strings.Contains(doc, row) {
			t.Errorf("docs/observability.md lacks the row %q", row)
		}
	}
}

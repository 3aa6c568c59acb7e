package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"
)

// The Grafana dashboard parses and queries only metrics that
// docs/metrics.md documents (and the series Prometheus adds itself).
func TestDashboardUsesDocumentedMetrics(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`(standbyd_[a-z_]+)`").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	b, err := os.ReadFile("../../deploy/grafana/standbyd.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if len(dash.Panels) < 8 {
		t.Fatalf("%d panels", len(dash.Panels))
	}
	name := regexp.MustCompile(`standbyd_[a-z_]+`)
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				base := regexp.MustCompile(`_(bucket|sum|count)$`).ReplaceAllString(n, "")
				if !documented[n] && !documented[base] {
					t.Errorf("panel %q queries %s, which docs/metrics.md does not document", p.Title, n)
				}
			}
		}
	}
}

package metrics_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/closeload/closeload/metrics"
)

// dashboardPath is the shipped Grafana dashboard.
var dashboardPath = filepath.Join("..", "deploy", "grafana", "closeload.json")

// panelQuery is one query of one dashboard panel.
type panelQuery struct {
	Panel, Expr string
}

// dashboardQueries decodes the dashboard and returns every panel query and
// the run_id variable's query.
func dashboardQueries(t *testing.T) (queries []panelQuery, variable string) {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.Expr == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
			queries = append(queries, panelQuery{p.Title, q.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Name == "run_id" {
			variable = v.Definition
		}
	}
	if len(queries) == 0 || variable == "" {
		t.Fatalf("%s: %d queries, run_id variable %q", dashboardPath, len(queries), variable)
	}
	return queries, variable
}

var seriesName = regexp.MustCompile(`\bcloseload_[a-z_]+\b`)

// TestDashboardNamesAreServed checks that every metric a dashboard query
// names is one the exporter serves, and that every family is on the
// dashboard.
func TestDashboardNamesAreServed(t *testing.T) {
	queries, _ := dashboardQueries(t)
	served := metrics.SeriesNames()
	used := map[string]bool{}
	for _, q := range queries {
		names := seriesName.FindAllString(q.Expr, -1)
		if len(names) == 0 {
			t.Errorf("panel %q: query names no closeload series: %s", q.Panel, q.Expr)
		}
		for _, n := range names {
			used[n] = true
			if !slices.Contains(served, n) {
				t.Errorf("panel %q uses %s, which the exporter does not serve", q.Panel, n)
			}
		}
		if !strings.Contains(q.Expr, `run_id=~"$run_id"`) {
			t.Errorf("panel %q does not select the run: %s", q.Panel, q.Expr)
		}
	}
	for _, n := range served {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
		if !used[n] && !used[base+"_bucket"] {
			t.Errorf("%s is served but on no panel", n)
		}
	}
}

// resolve fills a dashboard query's variables the way Grafana would for
// one run and a rate window.
func resolve(expr, runID, window string) string {
	return strings.NewReplacer("$run_id", regexp.QuoteMeta(runID), "$__rate_interval", window).Replace(expr)
}

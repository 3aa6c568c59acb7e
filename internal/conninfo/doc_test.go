package conninfo

import (
	"os"
	"strings"
	"testing"
)

// TestDocTable: docs/conninfo.md has exactly one row per keyword, with the
// versions, environment variable, action and words of Keywords.
func TestDocTable(t *testing.T) {
	b, err := os.ReadFile("../../docs/conninfo.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		name := strings.Trim(cells[0], "`")
		if _, dup := rows[name]; dup {
			t.Errorf("two rows for %s", name)
		}
		rows[name] = cells
	}
	for _, k := range Keywords {
		cells, ok := rows[k.Name]
		if !ok {
			t.Errorf("docs/conninfo.md has no row for %s", k.Name)
			continue
		}
		delete(rows, k.Name)
		env := "-"
		if k.Env != "" {
			env = "`" + k.Env + "`"
		}
		want := []string{"`" + k.Name + "`", k.Versions(), env, string(k.Action), k.How}
		if len(cells) != len(want) {
			t.Errorf("%s: %d cells, want %d", k.Name, len(cells), len(want))
			continue
		}
		for i := range want {
			if cells[i] != want[i] {
				t.Errorf("%s, column %d:\n doc:  %s\n code: %s", k.Name, i+1, cells[i], want[i])
			}
		}
	}
	for name := range rows {
		t.Errorf("docs/conninfo.md has a row for %s, which is no keyword", name)
	}
}

package docclaims

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// claimDocs are the documents whose behavioural statements carry claim ids,
// with the prefix their ids use.
var claimDocs = map[string]string{
	"README.md":         "readme.",
	"docs/liveness.md":  "liveness.",
	"docs/api.md":       "api.",
	"docs/extension.md": "extension.",
	"docs/protocol.md":  "protocol.",
	"docs/sqlcall.md":   "sqlcall.",
}

var (
	docClaim  = regexp.MustCompile(`<!-- claim: ([a-z0-9.-]+) -->`)
	testClaim = regexp.MustCompile(`//\s*claim: ([a-z0-9.-]+)\s*$`)
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found: %v", err)
	}
	return root
}

// docClaims returns every claim id in the documents, with where it is.
func docClaims(t *testing.T, root string) map[string]string {
	t.Helper()
	claims := map[string]string{}
	for doc, prefix := range claimDocs {
		b, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, m := range docClaim.FindAllStringSubmatch(line, -1) {
				id, at := m[1], doc+":"+strconv.Itoa(i+1)
				if !strings.HasPrefix(id, prefix) {
					t.Errorf("%s: claim %s must start with %q", at, id, prefix)
				}
				if prev, dup := claims[id]; dup {
					t.Errorf("%s: claim %s already made at %s", at, id, prev)
				}
				claims[id] = at
			}
		}
	}
	return claims
}

// testClaims returns every claim id that a Go test file names, with where.
func testClaims(t *testing.T, root string) map[string][]string {
	t.Helper()
	claims := map[string][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// build/ and dist/ hold copies of the sources (make deb): a tag
		// deleted from a test must not live on in a stale copy.
		outputs := p == filepath.Join(root, "build") || p == filepath.Join(root, "dist")
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || outputs) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") || strings.HasSuffix(p, filepath.Join("docclaims", "claims_test.go")) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		for i, line := range strings.Split(string(b), "\n") {
			if m := testClaim.FindStringSubmatch(line); m != nil {
				claims[m[1]] = append(claims[m[1]], rel+":"+strconv.Itoa(i+1))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return claims
}

// mismatches returns the claims no test names and the claims tests name
// that no doc makes.
func mismatches(docs map[string]string, tests map[string][]string) (untested, orphans []string) {
	for id, at := range docs {
		if len(tests[id]) == 0 {
			untested = append(untested, at+": "+id)
		}
	}
	for id, at := range tests {
		if _, ok := docs[id]; !ok {
			orphans = append(orphans, strings.Join(at, ", ")+": "+id)
		}
	}
	sort.Strings(untested)
	sort.Strings(orphans)
	return untested, orphans
}

// Every claim a doc makes has a test that names it, and every claim a test
// names is made by a doc.
func TestEveryClaimHasATestAndEveryTestAClaim(t *testing.T) {
	root := repoRoot(t)
	docs, tests := docClaims(t, root), testClaims(t, root)
	if len(docs) == 0 {
		t.Fatal("no claims found in the docs")
	}
	untested, orphans := mismatches(docs, tests)
	if len(untested) > 0 {
		t.Errorf("claims without a test naming them (// claim: <id>):\n%s", strings.Join(untested, "\n"))
	}
	if len(orphans) > 0 {
		t.Errorf("tests naming claims no doc makes:\n%s", strings.Join(orphans, "\n"))
	}
	t.Logf("%d claims in the docs, each named by a test", len(docs))
}

// The check sees both ways of drifting apart: a claim whose test is gone,
// and a test whose claim is gone.
func TestMismatchesFindsBothDirections(t *testing.T) {
	root := t.TempDir()
	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for doc := range claimDocs {
		write(doc, "nothing claimed\n")
	}
	write("docs/liveness.md", "A.\n<!-- claim: liveness.kept -->\nB. <!-- claim: liveness.untested -->\n")
	write("x/x_test.go", "package x\n// claim: liveness.kept\nfunc f() {}\n\t// claim: liveness.gone\n")
	// A copy of the sources in a build output names the untested claim: it
	// does not count.
	write("build/deb/src/x/x_test.go", "package x\n// claim: liveness.untested\n")
	write("dist/src/x/x_test.go", "package x\n// claim: liveness.untested\n")
	untested, orphans := mismatches(docClaims(t, root), testClaims(t, root))
	if strings.Join(untested, ";") != "docs/liveness.md:3: liveness.untested" {
		t.Errorf("untested: %q", untested)
	}
	if strings.Join(orphans, ";") != "x/x_test.go:4: liveness.gone" {
		t.Errorf("orphans: %q", orphans)
	}
}

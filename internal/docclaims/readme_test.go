package docclaims

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The compiler flags the README names are the ones every build of the
// extension uses: scripts/cluster.sh (make extension, make test),
// scripts/majors.sh (make test-majors) and the Debian package's rules.
// claim: readme.compiler-flags
func TestReadmeCompilerFlagsMatchTheBuild(t *testing.T) {
	root := repoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := regexp.MustCompile("warning-free with\\s+`COPT=([^`]+)`").FindSubmatch(readme)
	if doc == nil {
		t.Fatal("README.md names no COPT flags")
	}
	want := strings.Join(strings.Fields(string(doc[1])), " ")
	builds := []struct{ file, pattern string }{
		{"scripts/cluster.sh", `COPT="\$\{COPT:-([^}]+)\}"`},
		{"scripts/majors.sh", `(?m)^COPT_DEFAULT="([^"]+)"`},
		{"packaging/extension/debian/rules", `(?m)^export COPT := (.+)$`},
	}
	for _, b := range builds {
		script, err := os.ReadFile(filepath.Join(root, b.file))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(b.pattern).FindSubmatch(script)
		if m == nil {
			t.Errorf("%s sets no default COPT", b.file)
			continue
		}
		if got := strings.Join(strings.Fields(string(m[1])), " "); got != want {
			t.Errorf("README.md says COPT=%q, %s uses %q", want, b.file, got)
		}
	}
}

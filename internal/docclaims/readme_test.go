package docclaims

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The compiler flags the README names are the ones the build uses
// (scripts/cluster.sh, behind make extension and make test).
// claim: readme.compiler-flags
func TestReadmeCompilerFlagsMatchTheBuild(t *testing.T) {
	root := repoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(filepath.Join(root, "scripts/cluster.sh"))
	if err != nil {
		t.Fatal(err)
	}
	doc := regexp.MustCompile("warning-free with\\s+`COPT=([^`]+)`").FindSubmatch(readme)
	if doc == nil {
		t.Fatal("README.md names no COPT flags")
	}
	build := regexp.MustCompile(`COPT="\$\{COPT:-([^}]+)\}"`).FindSubmatch(script)
	if build == nil {
		t.Fatal("scripts/cluster.sh sets no default COPT")
	}
	if d, b := strings.Fields(string(doc[1])), strings.Fields(string(build[1])); strings.Join(d, " ") != strings.Join(b, " ") {
		t.Fatalf("README.md says %q, the build uses %q", d, b)
	}
}

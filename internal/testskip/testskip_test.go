package testskip

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// fakeT records what Skip does to a test.
type fakeT struct {
	testing.TB
	skipped, failed bool
}

func (f *fakeT) Helper()                        {}
func (f *fakeT) Skip(...any)                    { f.skipped = true }
func (f *fakeT) Fatalf(format string, a ...any) { f.failed = true }

func TestSkipFailsUnderCI(t *testing.T) {
	t.Setenv("CI", "true")
	f := &fakeT{}
	Skip(f, "no tool")
	if !f.failed || f.skipped {
		t.Fatalf("under CI: failed %v, skipped %v", f.failed, f.skipped)
	}
	t.Setenv("CI", "")
	f = &fakeT{}
	Skip(f, "no tool")
	if f.failed || !f.skipped {
		t.Fatalf("outside CI: failed %v, skipped %v", f.failed, f.skipped)
	}
}

// Every skip in the repository goes through Skip: a direct t.Skip would
// pass silently under CI.
func TestNoDirectSkips(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found: %v", err)
	}
	direct := regexp.MustCompile(`\.(Skip|Skipf|SkipNow)\(`)
	self, _ := filepath.Abs(".")
	var found []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// build/ and dist/ are build outputs (make deb copies the sources
		// there), not the project's code.
		outputs := p == filepath.Join(root, "build") || p == filepath.Join(root, "dist")
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || p == self || outputs) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if direct.MatchString(line) && !strings.Contains(line, "testskip.Skip(") {
				rel, _ := filepath.Rel(root, p)
				found = append(found, rel+":"+strconv.Itoa(i+1)+": "+strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) > 0 {
		t.Fatalf("skips that bypass testskip.Skip:\n%s", strings.Join(found, "\n"))
	}
}

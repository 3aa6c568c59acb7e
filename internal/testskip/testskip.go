// Package testskip is the one way a test skips: on a developer's machine a
// test may skip for lack of a tool, a server or a long mode; under CI (the
// CI environment variable set) the same test fails, so that a CI run cannot
// pass by skipping.
package testskip

import (
	"os"
	"testing"
)

// InCI reports whether the tests run under CI.
func InCI() bool { return os.Getenv("CI") != "" }

// Skip skips t with reason, or fails it under CI.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s (CI is set: a test that cannot run fails)", reason)
		return
	}
	t.Skip(reason)
}

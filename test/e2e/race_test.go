package e2e

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"testing"
)

// A process built with -race and run with raceEnv is caught by raceReport,
// through its output and its exit status; a clean run is not.
func TestRaceReportCatchesARace(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "racy")
	build := exec.Command("go", "build", "-race", "-o", bin, "./testdata/racy")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the racy program: %v\n%s", err, out)
	}
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Env = raceEnv()
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	if !builtWithRace(bin) {
		t.Fatal("builtWithRace does not see -race in the racy build")
	}
	log, err := run()
	if raceReport(err, log) == nil {
		t.Fatalf("a race went unnoticed: %v\n%s", err, log)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != raceExitCode {
		t.Fatalf("GORACE exitcode not applied: %v", err)
	}
	if log, err := run("-clean"); raceReport(err, log) != nil || err != nil {
		t.Fatalf("a clean run reported: %v %v\n%s", raceReport(err, log), err, log)
	}
}

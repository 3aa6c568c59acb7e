package scripts_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/testskip"
)

// PGXS tracks no header dependencies: without them in extension/Makefile,
// a struct changed in a header links objects compiled with its old layout,
// and the primary crashes at the first call that touches it (a handler
// whose function was dropped did, through SbdHandler). Every object is
// rebuilt when any header is newer.
func TestExtensionObjectsDependOnHeaders(t *testing.T) {
	pgConfig := "/usr/lib/postgresql/15/bin/pg_config"
	if _, err := os.Stat(pgConfig); err != nil {
		testskip.Skip(t, "PostgreSQL 15's pg_config is not installed (postgresql-server-dev-15)")
	}
	if _, err := exec.LookPath("make"); err != nil {
		testskip.Skip(t, "make is not installed")
	}
	src, err := filepath.Abs("../extension")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	var objects []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, ".c") || strings.HasSuffix(name, ".h") || name == "Makefile") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, ".c") {
			// An object built after its source: up to date but for headers.
			o := filepath.Join(dir, strings.TrimSuffix(name, ".c")+".o")
			if err := os.WriteFile(o, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			mid := old.Add(time.Minute)
			if err := os.Chtimes(o, mid, mid); err != nil {
				t.Fatal(err)
			}
			objects = append(objects, filepath.Base(o))
		}
	}
	if len(objects) < 2 {
		t.Fatalf("found %d C files in %s", len(objects), src)
	}
	// One header changes after the objects were built.
	h := filepath.Join(dir, "standbyd_handlers.h")
	if err := os.Chtimes(h, time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, o := range objects {
		cmd := exec.Command("make", "-q", "PG_CONFIG="+pgConfig, o)
		cmd.Dir = dir
		err := cmd.Run()
		var ee *exec.ExitError
		if err == nil {
			t.Errorf("%s counts as up to date although standbyd_handlers.h is newer", o)
		} else if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("make -q %s: %v", o, err)
		}
	}
}

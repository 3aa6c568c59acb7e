package reload

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/standbyd/standbyd/internal/config"
	"github.com/standbyd/standbyd/internal/upstream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// claim: readme.config-files-watched
func TestReloadKeepsStateOnFailureAndSignalsConnectionChanges(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "standbyd.yaml")
	os.WriteFile(file, []byte("v1"), 0o600)
	conninfo := "host=a"
	var fail atomic.Bool
	load := func() (*State, error) {
		if fail.Load() {
			return nil, errors.New("standbyd.yaml:3: bad")
		}
		return &State{Config: &config.Config{File: file}, Target: &upstream.Target{Conninfo: conninfo}}, nil
	}
	var loaded, changed []bool
	r, err := New(load, Hooks{
		Loaded:            func(ok bool) { loaded = append(loaded, ok) },
		ConnectionChanged: func(_, _ *State) { changed = append(changed, true) },
	}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	first := r.Current()

	fail.Store(true)
	if err := r.Reload("test"); err == nil || r.Current() != first {
		t.Fatalf("a failed reload must keep the state: %v", err)
	}
	fail.Store(false)
	if err := r.Reload("test"); err != nil || len(changed) != 0 {
		t.Fatalf("same conninfo: %v, changed %v", err, changed)
	}
	conninfo = "host=b"
	if err := r.Reload("test"); err != nil || len(changed) != 1 || r.Current().Target.Conninfo != "host=b" {
		t.Fatalf("changed conninfo: %v, changed %v", err, changed)
	}
	if len(loaded) != 3 || loaded[0] || !loaded[1] || !loaded[2] {
		t.Fatalf("loaded %v", loaded)
	}

	// A change to a watched file reloads (debounced). The watcher arms in
	// its own goroutine, unseen from here: the change is made again until
	// one is seen, never after a fixed sleep.
	conninfo = "host=c" // before the watcher starts: it reads it on reload
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Watch(ctx, 50*time.Millisecond) }()
	reloaded := func(within time.Duration) bool {
		until := time.Now().Add(within)
		for r.Current().Target.Conninfo != "host=c" {
			if time.Now().After(until) {
				return false
			}
			time.Sleep(10 * time.Millisecond)
		}
		return true
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		tmp := file + ".tmp"
		os.WriteFile(tmp, []byte("v2"), 0o600)
		os.Rename(tmp, file) // as editors and ALTER SYSTEM do
		if reloaded(500 * time.Millisecond) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the file change did not reload")
		}
	}
	cancel()
	<-done
}

// Package reload keeps standbyd's running configuration: its own config file
// and the standby's connection settings (primary_conninfo), reloaded on
// SIGHUP and when a watched file changes. A configuration that fails to load
// is reported (with the file and line at fault) and the running one stays
// in force; a changed primary_conninfo makes the channel reconnect, as
// PostgreSQL 13+ restarts its walreceiver.
package reload

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/standbyd/standbyd/internal/config"
	"github.com/standbyd/standbyd/internal/upstream"
)

// State is one loaded configuration.
type State struct {
	Config *config.Config
	Target *upstream.Target
}

// Files lists the files whose change triggers a reload.
func (s *State) Files() []string {
	var out []string
	if s.Config.File != "" {
		out = append(out, s.Config.File)
	}
	if s.Target != nil {
		out = append(out, s.Target.Files...)
	}
	return out
}

// Hooks are called after a reload.
type Hooks struct {
	// Loaded is called with the result of every reload attempt.
	Loaded func(ok bool)
	// ConnectionChanged is called when the new state connects elsewhere or
	// otherwise (the conninfo or the expected identity changed).
	ConnectionChanged func(old, new *State)
	// Applied is called with every new state that replaced the old one.
	Applied func(old, new *State)
}

// Reloader holds the current State.
type Reloader struct {
	load  func() (*State, error)
	hooks Hooks
	log   *zap.Logger
	cur   atomic.Pointer[State]
	mu    sync.Mutex // one reload at a time
}

// New loads the first state; an error here is fatal for the caller.
func New(load func() (*State, error), hooks Hooks, log *zap.Logger) (*Reloader, error) {
	st, err := load()
	if err != nil {
		return nil, err
	}
	r := &Reloader{load: load, hooks: hooks, log: log}
	r.cur.Store(st)
	return r, nil
}

// Current is the state in force.
func (r *Reloader) Current() *State { return r.cur.Load() }

// Reload loads the configuration again; on failure the current state stays.
func (r *Reloader) Reload(reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load()
	if err != nil {
		r.log.Error("configuration reload failed; the running configuration stays in force",
			zap.String("reason", reason), zap.Error(err))
		if r.hooks.Loaded != nil {
			r.hooks.Loaded(false)
		}
		return fmt.Errorf("reload: %w", err)
	}
	old := r.cur.Swap(st)
	if r.hooks.Loaded != nil {
		r.hooks.Loaded(true)
	}
	changed := old.Target.Conninfo != st.Target.Conninfo || old.Target.SystemIdentifier != st.Target.SystemIdentifier ||
		old.Config.Channel.Database != st.Config.Channel.Database
	r.log.Info("configuration reloaded", zap.String("reason", reason),
		zap.String("primary_conninfo_source", st.Target.Source), zap.Bool("connection_changed", changed))
	if r.hooks.Applied != nil {
		r.hooks.Applied(old, st)
	}
	if changed && r.hooks.ConnectionChanged != nil {
		r.hooks.ConnectionChanged(old, st)
	}
	return nil
}

// Watch reloads, after a quiet period of debounce, whenever one of the
// current state's files changes, until ctx ends. Directories are watched,
// not files, so that editors and ALTER SYSTEM (which write a new file and
// rename it) are seen.
func (r *Reloader) Watch(ctx context.Context, debounce time.Duration) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching configuration files: %w", err)
	}
	defer w.Close()
	watched := map[string]bool{}
	files := map[string]bool{}
	rewatch := func() {
		for _, f := range r.Current().Files() {
			abs, err := filepath.Abs(f)
			if err != nil {
				continue
			}
			files[abs] = true
			dir := filepath.Dir(abs)
			if !watched[dir] {
				if err := w.Add(dir); err != nil {
					r.log.Warn("cannot watch a configuration directory", zap.String("dir", dir), zap.Error(err))
					continue
				}
				watched[dir] = true
			}
		}
	}
	rewatch()
	var timer *time.Timer
	fire := make(chan struct{}, 1)
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if !files[filepath.Clean(ev.Name)] || ev.Op == fsnotify.Chmod {
				continue
			}
			if timer != nil {
				timer.Stop()
			}
			timer = time.AfterFunc(debounce, func() {
				select {
				case fire <- struct{}{}:
				default:
				}
			})
		case <-fire:
			_ = r.Reload("a configuration file changed")
			rewatch() // includes may have changed
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			r.log.Warn("watching configuration files", zap.Error(err))
		}
	}
}

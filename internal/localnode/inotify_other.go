//go:build !linux

package localnode

import "errors"

// dirWatch needs inotify; elsewhere the watcher polls.
type dirWatch struct{ events chan struct{} }

func watchDir(string) (*dirWatch, error) { return nil, errors.New("inotify: not on this system") }

func (w *dirWatch) broken() bool { return false }

func (w *dirWatch) close() {}

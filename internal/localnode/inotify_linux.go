package localnode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// dirWatch tells, through inotify, when a file that decides the node's
// role or timeline appears or goes: standby.signal in the data directory
// (PostgreSQL removes it at promotion; a rejoin puts it back) and a
// timeline history file in pg_wal (written at promotion, fetched when the
// standby follows a new timeline). Other names are ignored, so WAL segments
// and the server's own files wake nobody. The watcher then reads at once,
// instead of looking at the files many times a second, which kept an idle
// daemon's threads waking up.
type dirWatch struct {
	f      *os.File
	dirWd  int32
	walWd  int32
	events chan struct{} // buffered 1: changes coalesce until read
	lost   atomic.Bool   // a watch ended (directory gone) or events overflowed
	done   sync.WaitGroup
}

const (
	dirEvents = syscall.IN_CREATE | syscall.IN_DELETE | syscall.IN_MOVED_FROM | syscall.IN_MOVED_TO |
		syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF
	walEvents = syscall.IN_CREATE | syscall.IN_MOVED_TO | syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF
)

// watchDir watches dataDir and its pg_wal. An error means the caller must
// poll instead.
func watchDir(dataDir string) (*dirWatch, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	// Non-blocking: reads go through Go's poller, and Close wakes them.
	f := os.NewFile(uintptr(fd), "inotify")
	dirWd, err := syscall.InotifyAddWatch(fd, dataDir, dirEvents)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("inotify watch of %s: %w", dataDir, err)
	}
	walWd, err := syscall.InotifyAddWatch(fd, filepath.Join(dataDir, "pg_wal"), walEvents)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("inotify watch of %s: %w", filepath.Join(dataDir, "pg_wal"), err)
	}
	w := &dirWatch{f: f, dirWd: int32(dirWd), walWd: int32(walWd), events: make(chan struct{}, 1)}
	w.done.Add(1)
	go w.read()
	return w, nil
}

func (w *dirWatch) read() {
	defer w.done.Done()
	buf := make([]byte, 64*(syscall.SizeofInotifyEvent+syscall.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				w.lost.Store(true)
				w.notify()
			}
			return
		}
		if w.relevant(buf[:n]) {
			w.notify()
		}
	}
}

// relevant reports whether a batch of events names a file that matters,
// or says that the watch can no longer be trusted.
func (w *dirWatch) relevant(b []byte) bool {
	found := false
	for len(b) >= syscall.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(b[0:]))
		mask := binary.NativeEndian.Uint32(b[4:])
		nameLen := int(binary.NativeEndian.Uint32(b[12:]))
		end := syscall.SizeofInotifyEvent + nameLen
		if end > len(b) {
			break
		}
		name := strings.TrimRight(string(b[syscall.SizeofInotifyEvent:end]), "\x00")
		b = b[end:]
		switch {
		case mask&(syscall.IN_Q_OVERFLOW|syscall.IN_IGNORED|syscall.IN_DELETE_SELF|syscall.IN_MOVE_SELF) != 0:
			w.lost.Store(true)
			found = true
		case wd == w.dirWd && (name == "standby.signal" || name == "recovery.signal"):
			found = true
		case wd == w.walWd && strings.HasSuffix(name, ".history"):
			found = true
		}
	}
	return found
}

func (w *dirWatch) notify() {
	select {
	case w.events <- struct{}{}:
	default:
	}
}

// broken reports that the watch no longer sees every change: the caller
// closes it and watches again (or polls).
func (w *dirWatch) broken() bool { return w.lost.Load() }

func (w *dirWatch) close() {
	if w == nil {
		return
	}
	w.f.Close()
	w.done.Wait()
}

package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Peer is the process at the other end of an API connection, from
// SO_PEERCRED (the credentials it had when it connected).
type Peer struct {
	Known    bool
	UID, GID uint32
	PID      int32
}

func (p Peer) fields() []zap.Field {
	if !p.Known {
		return []zap.Field{zap.String("caller", "unknown")}
	}
	return []zap.Field{zap.Uint32("uid", p.UID), zap.Uint32("gid", p.GID), zap.Int32("pid", p.PID)}
}

func (p Peer) String() string {
	if !p.Known {
		return "an unidentified caller"
	}
	return fmt.Sprintf("uid %d (gid %d, pid %d)", p.UID, p.GID, p.PID)
}

func peerOf(c net.Conn) (Peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}, errors.New("not a Unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", err)
	}
	if cerr != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", cerr)
	}
	return Peer{Known: true, UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}, nil
}

// peerConn is an accepted connection with its peer's credentials and its
// place among the listener's connections, given back on Close.
type peerConn struct {
	net.Conn
	peer    Peer
	release func()
	once    sync.Once
	// pre holds the bytes read to tell the fast path from HTTP, given
	// back to the first reads.
	pre []byte
}

func (c *peerConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *peerConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// limitListener accepts at most cap(sem) connections at a time: more wait in
// the kernel's backlog, so that no caller can make the daemon hold an
// unbounded number of connections (and their buffers).
type limitListener struct {
	net.Listener
	sem   chan struct{}
	done  chan struct{}
	close sync.Once
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	p, _ := peerOf(c) // unknown credentials are refused where they matter
	return &peerConn{Conn: c, peer: p, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.close.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type peerKey struct{}

// connContext puts the connection's peer into every request's context.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if pc, ok := c.(*peerConn); ok {
		return context.WithValue(ctx, peerKey{}, pc.peer)
	}
	return ctx
}

func peerFrom(ctx context.Context) Peer {
	p, _ := ctx.Value(peerKey{}).(Peer)
	return p
}

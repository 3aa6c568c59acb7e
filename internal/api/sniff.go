package api

import (
	"errors"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/standbyd/standbyd/internal/api/fastproto"
)

// sniffTimeout bounds the wait for a new connection's first bytes, as
// ReadHeaderTimeout does for HTTP.
const sniffTimeout = 5 * time.Second

// splitListener serves one socket to two protocols: it accepts, reads a
// connection's first bytes in a goroutine of its own (a silent caller holds
// only itself), and hands the connection to the fast path when they are
// the fast path's magic, else to net/http (Accept) with the bytes put back.
type splitListener struct {
	inner *limitListener
	fast  func(c *peerConn, version byte)
	log   *zap.Logger

	http chan net.Conn
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup // the accept loop and the sniffers
}

func newSplitListener(inner *limitListener, log *zap.Logger, fast func(*peerConn, byte)) *splitListener {
	return &splitListener{inner: inner, fast: fast, log: log, http: make(chan net.Conn), done: make(chan struct{})}
}

// run accepts until the listener is closed.
func (l *splitListener) run() {
	defer l.wg.Done()
	for {
		c, err := l.inner.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				l.Close()
				return
			}
			l.log.Warn("accepting an api connection", zap.Error(err))
			time.Sleep(10 * time.Millisecond) // as net/http does on EMFILE and the like
			continue
		}
		l.wg.Add(1)
		go l.sniff(c.(*peerConn))
	}
}

// sniff decides on as few bytes as tell: the first byte that leaves the
// magic sends the connection to HTTP.
func (l *splitListener) sniff(c *peerConn) {
	defer l.wg.Done()
	var buf [fastproto.ClientPreambleSize]byte
	got := 0
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	for got < len(buf) {
		n, err := c.Read(buf[got:])
		got += n
		if m := min(got, len(fastproto.Magic)); string(buf[:m]) != fastproto.Magic[:m] {
			_ = c.SetReadDeadline(time.Time{})
			c.pre = append([]byte(nil), buf[:got]...)
			select {
			case l.http <- c:
			case <-l.done:
				c.Close()
			}
			return
		}
		if err != nil {
			// Gone or silent before saying anything that tells.
			c.Close()
			return
		}
	}
	v, err := fastproto.ParseClientPreamble(buf[:])
	if err != nil {
		l.log.Warn("api fast path: closing a connection whose preamble is not understood", append(c.peer.fields(), zap.Error(err))...)
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	l.fast(c, v)
}

// Accept gives net/http its connections.
func (l *splitListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.http:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *splitListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
	})
	return err
}

func (l *splitListener) Addr() net.Addr { return l.inner.Addr() }

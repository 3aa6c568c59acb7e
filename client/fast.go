package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/standbyd/standbyd/internal/api/fastproto"
)

// fastIdle is how long a fast path connection with nothing in flight is
// kept; the client, not the daemon, closes it, so that no request can
// cross the close.
var fastIdle = 30 * time.Second

// fastHandshake bounds the preamble exchange of a new connection.
const fastHandshake = 5 * time.Second

// errNoFastPath: the daemon answered the preamble as HTTP (a daemon older
// than the fast path); the client uses HTTP from then on.
var errNoFastPath = errors.New("the daemon does not speak the fast path")

// fastTransport carries every call of a Client on one connection at a
// time, dialled when first needed and again after it broke.
type fastTransport struct {
	socket   string
	maxReply int64

	mu     sync.Mutex
	conn   *fastConn
	noFast bool
}

type fastResult struct {
	payload []byte
	err     error
}

// fastConn is one connection: callers write their frames under wmu and
// wait for the reader to hand them the reply with their id.
type fastConn struct {
	c   net.Conn
	pre fastproto.ServerPreamble
	sem chan struct{} // the daemon's in-flight bound: a caller waits here, not in the daemon's busy answer

	wmu  sync.Mutex
	wbuf []byte

	mu      sync.Mutex
	pending map[uint32]chan fastResult
	nextID  uint32
	broken  error
	done    chan struct{} // the reader ended
}

// get returns the current connection, dialling one if there is none.
func (t *fastTransport) get(ctx context.Context) (*fastConn, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.noFast {
		return nil, false, errNoFastPath
	}
	if fc := t.conn; fc != nil {
		fc.mu.Lock()
		ok := fc.broken == nil
		fc.mu.Unlock()
		if ok {
			return fc, false, nil
		}
	}
	fc, err := t.dial(ctx)
	if err != nil {
		if errors.Is(err, errNoFastPath) {
			t.noFast = true
		}
		return nil, false, err
	}
	t.conn = fc
	return fc, true, nil
}

func (t *fastTransport) dial(ctx context.Context) (*fastConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", t.socket)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			err = op.Err
		}
		return nil, err
	}
	dl := time.Now().Add(fastHandshake)
	if cd, ok := ctx.Deadline(); ok && cd.Before(dl) {
		dl = cd
	}
	_ = c.SetDeadline(dl)
	if _, err := c.Write(fastproto.AppendClientPreamble(nil, fastproto.MaxVersion)); err != nil {
		c.Close()
		return nil, fmt.Errorf("fast path preamble: %w", err)
	}
	br := bufio.NewReaderSize(c, 64<<10)
	b, err := br.Peek(fastproto.ServerPreambleSize)
	if err != nil {
		c.Close()
		if len(b) >= 5 && string(b[:5]) == "HTTP/" {
			return nil, errNoFastPath
		}
		return nil, fmt.Errorf("fast path preamble: %w", err)
	}
	if string(b[:5]) == "HTTP/" {
		c.Close()
		return nil, errNoFastPath
	}
	pre, err := fastproto.ParseServerPreamble(b)
	if err == nil && pre.Version > fastproto.MaxVersion {
		err = fmt.Errorf("%w: the daemon answered version %d to an offer of %d", fastproto.ErrBadVersion, pre.Version, fastproto.MaxVersion)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("fast path preamble: %w", err)
	}
	_, _ = br.Discard(fastproto.ServerPreambleSize)
	_ = c.SetDeadline(time.Time{})
	fc := &fastConn{c: c, pre: pre, sem: make(chan struct{}, max(1, pre.MaxInFlight)),
		pending: map[uint32]chan fastResult{}, done: make(chan struct{})}
	go fc.read(br, t.maxReply)
	return fc, nil
}

// close ends the transport's connection and waits for its reader; a later
// call dials again.
func (t *fastTransport) close() {
	t.mu.Lock()
	fc := t.conn
	t.conn = nil
	t.mu.Unlock()
	if fc != nil {
		fc.fail(errors.New("client closed"))
		<-fc.done
	}
}

// call makes one call on the fast path. errNoFastPath sends it to HTTP.
func (t *fastTransport) call(ctx context.Context, op string, payload []byte) ([]byte, error) {
	req := fastproto.Request{Payload: payload}
	if v, err := strconv.ParseUint(op, 0, 16); err == nil && op != "" && op[0] >= '0' && op[0] <= '9' {
		req.Op = uint16(v)
	} else {
		if op == "" || len(op) > fastproto.MaxNameSize {
			return nil, &Error{HTTPStatus: http.StatusBadRequest, ErrorDetail: ErrorDetail{Kind: KindBadRequest,
				Message: fmt.Sprintf("op name of %d bytes: give 1 to %d", len(op), fastproto.MaxNameSize)}}
		}
		req.Name = op
	}
	if dl, ok := ctx.Deadline(); ok {
		d := time.Until(dl)
		if d <= 0 {
			return nil, fmt.Errorf("api call: %w: %w", ErrDaemonUnreachable, context.DeadlineExceeded)
		}
		req.TimeoutMS = uint32(min(max(d.Milliseconds(), 1), 1<<31))
	}
	for attempt := 0; ; attempt++ {
		fc, fresh, err := t.get(ctx)
		if err != nil {
			if errors.Is(err, errNoFastPath) {
				return nil, err
			}
			return nil, fmt.Errorf("%w at %s: %w", ErrDaemonUnreachable, t.socket, err)
		}
		out, err, retry := fc.call(ctx, req, t.socket)
		if retry && !fresh && attempt == 0 {
			continue // found dead before a byte was written: a new connection
		}
		return out, err
	}
}

// call sends req and waits for its reply; retry says nothing was written
// because the connection was already broken.
func (fc *fastConn) call(ctx context.Context, req fastproto.Request, socket string) ([]byte, error, bool) {
	size := fastproto.RequestSize(req.Name, len(req.Payload))
	if size > int(fc.pre.MaxFrame) {
		return nil, &Error{HTTPStatus: http.StatusRequestEntityTooLarge, ErrorDetail: ErrorDetail{Kind: KindPayloadTooLarge,
			Message: fmt.Sprintf("request frame of %d bytes is larger than the daemon's maximum of %d", size, fc.pre.MaxFrame)}}, false
	}
	select {
	case fc.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("api call: %w: waiting for one of the connection's %d request slots: %w", ErrDaemonUnreachable, cap(fc.sem), ctx.Err()), false
	}
	defer func() { <-fc.sem }()
	ch := make(chan fastResult, 1)
	fc.mu.Lock()
	if fc.broken != nil {
		fc.mu.Unlock()
		return nil, fmt.Errorf("%w at %s: %w", ErrDaemonUnreachable, socket, fc.broken), true
	}
	fc.nextID++
	req.ID = fc.nextID
	fc.pending[req.ID] = ch
	fc.mu.Unlock()
	forget := func() {
		fc.mu.Lock()
		delete(fc.pending, req.ID)
		fc.mu.Unlock()
	}

	fc.wmu.Lock()
	fc.wbuf = fastproto.AppendRequest(fc.wbuf[:0], req)
	n, err := fc.c.Write(fc.wbuf)
	if cap(fc.wbuf) > 1<<20 {
		fc.wbuf = nil
	}
	fc.wmu.Unlock()
	if err != nil {
		forget()
		// A frame cut short is never served: the daemon reads whole frames.
		fc.fail(fmt.Errorf("writing a request: %w", err))
		var op *net.OpError
		if errors.As(err, &op) {
			err = fmt.Errorf("%s: %w", op.Op, op.Err)
		}
		return nil, fmt.Errorf("%w at %s: %w", ErrDaemonUnreachable, socket, err), n == 0
	}

	// Past the deadline the daemon answers why (unavailable, outcome
	// unknown): wait a little longer for that answer. A caller's cancel
	// ends the wait at once. No timer unless the deadline passes.
	select {
	case r := <-ch:
		return r.payload, r.err, false
	case <-ctx.Done():
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		grace := time.NewTimer(responseGrace)
		defer grace.Stop()
		select {
		case r := <-ch:
			return r.payload, r.err, false
		case <-grace.C:
		}
	}
	forget()
	select { // a reply already here wins
	case r := <-ch:
		return r.payload, r.err, false
	default:
	}
	return nil, fmt.Errorf("api call: %w at %s: %w", ErrOutcomeUnknown, socket, ctx.Err()), false
}

// fail marks the connection broken and closes it; the reader then answers
// every pending call with an unknown outcome.
func (fc *fastConn) fail(err error) {
	fc.mu.Lock()
	if fc.broken == nil {
		fc.broken = err
	}
	fc.mu.Unlock()
	fc.c.Close()
}

// read hands each reply to its caller until the connection ends.
func (fc *fastConn) read(br *bufio.Reader, maxReply int64) {
	defer close(fc.done)
	var hdr [fastproto.HeaderSize]byte
	err := func() error {
		for {
			_ = fc.c.SetReadDeadline(time.Now().Add(fastIdle))
			if n, err := io.ReadFull(br, hdr[:]); err != nil {
				if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
					if fc.idle() {
						return errors.New("idle")
					}
					continue // calls in flight take long: keep waiting
				}
				return err
			}
			h := fastproto.ParseHeader(hdr[:])
			if h.Kind != fastproto.KindReply {
				return fmt.Errorf("the daemon sent a frame of kind %#02x", h.Kind)
			}
			var r fastResult
			limit := maxReply + fastproto.MaxNameSize + 6
			if h.Second == fastproto.StatusError {
				limit += 3 * (2 + 0xffff) // version 2's message, detail and hint
			}
			if int64(h.Length) > limit {
				if _, err := br.Discard(int(h.Length)); err != nil {
					return err
				}
				r.err = fmt.Errorf("%w (%d bytes)", ErrReplyTooLarge, maxReply)
			} else {
				_ = fc.c.SetReadDeadline(time.Time{})
				body := make([]byte, h.Length)
				if _, err := io.ReadFull(br, body); err != nil {
					return err
				}
				switch h.Second {
				case fastproto.StatusOK:
					if int64(len(body)) > maxReply {
						r.err = fmt.Errorf("%w (%d bytes)", ErrReplyTooLarge, maxReply)
					} else {
						r.payload = body
					}
				case fastproto.StatusError:
					e, err := fastproto.ParseErrorV(fc.pre.Version, body)
					if err != nil {
						return err
					}
					r.err = &Error{HTTPStatus: kindStatus(e.Kind), ErrorDetail: ErrorDetail{Kind: e.Kind, Message: e.Message,
						SQLState: e.SQLState, Detail: e.Detail, Hint: e.Hint}}
				default:
					return fmt.Errorf("the daemon sent a reply of status %d", h.Second)
				}
			}
			fc.mu.Lock()
			ch := fc.pending[h.ID]
			delete(fc.pending, h.ID)
			fc.mu.Unlock()
			if ch != nil {
				ch <- r
			}
		}
	}()
	fc.fail(err)
	fc.mu.Lock()
	pending := fc.pending
	fc.pending = map[uint32]chan fastResult{}
	fc.mu.Unlock()
	for _, ch := range pending {
		ch <- fastResult{err: fmt.Errorf("api call: %w: %w", ErrOutcomeUnknown, err)}
	}
}

// idle marks an idle connection broken, so that no new call uses it.
func (fc *fastConn) idle() bool {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.pending) > 0 {
		return false
	}
	if fc.broken == nil {
		fc.broken = errors.New("closed after being idle")
	}
	return true
}

// kindStatus is the HTTP status the HTTP API answers an error kind with.
func kindStatus(kind string) int {
	switch kind {
	case KindBadRequest:
		return http.StatusBadRequest
	case KindForbidden:
		return http.StatusForbidden
	case KindPayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case KindBusy:
		return http.StatusTooManyRequests
	case KindPrimaryError:
		return http.StatusUnprocessableEntity
	case KindChannelUnavailable, KindShuttingDown:
		return http.StatusServiceUnavailable
	case KindOutcomeUnknown:
		return http.StatusGatewayTimeout
	case KindNotStandby:
		return http.StatusConflict
	}
	return 0
}

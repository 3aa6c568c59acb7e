package conn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/standbyd/standbyd/internal/protocol"
)

// Pipelining (protocol version 2): the slot's goroutine writes up to
// MaxInFlight requests, a reader goroutine matches the replies, which the
// server sends strictly in order, to the oldest request in flight. The
// reader is the only one to receive from the connection and the writer the
// only one to write to it (straight to the socket, never through pgconn's
// buffers), so the two never share pgconn state. The reader also reads
// from pgconn's frontend directly, so pgconn's own state is left alone
// until the session is closed.

// goodbyeWait is how long a writer whose write failed leaves the reader to
// find a goodbye before it ends the session itself.
const goodbyeWait = 500 * time.Millisecond

// DefaultMaxInFlight bounds a pipelined session's requests in flight when
// the config says nothing.
const DefaultMaxInFlight = 16

// What became of a request's bytes, for its outcome if the session dies.
const (
	wireWriting   = iota // being written, or written
	wireUnwritten        // the write failed before any byte left
)

// inflight is one request on a pipelined session.
type inflight struct {
	id       uint32
	op       uint16
	r        *request // nil for a heartbeat ping
	start    time.Time
	deadline time.Time // its reply is due by then
	off      int       // where its bytes start in the write buffer
	wire     int
	slow     *time.Timer
}

// pipe is one pipelined session's shared state.
type pipe struct {
	s    *Supervisor
	sl   *slot
	sess *Session

	mu      sync.Mutex
	queue   []*inflight // in flight, oldest first
	err     error       // why the session is over; nil while it serves
	closing bool        // the writer stopped: the reader ends once the queue is empty

	batch []*inflight // added, not yet written (the writer's own)

	freed chan struct{} // a request left the queue (buffered 1)
	done  chan struct{} // closed when the reader returns
}

// servePipelined is serve for a version-2 session.
func (s *Supervisor) servePipelined(ctx context.Context, sl *slot, sess *Session, restart <-chan struct{}) error {
	p := &pipe{s: s, sl: sl, sess: sess, freed: make(chan struct{}, 1), done: make(chan struct{})}
	go p.read()
	hb := time.NewTicker(s.cfg.HeartbeatInterval)
	defer hb.Stop()
	limit := s.cfg.MaxInFlight
	if limit <= 0 {
		limit = DefaultMaxInFlight
	}
	refused := s.refusedSignal()
	// take puts a claimed caller's request in flight, unless the node
	// stopped being a standby while it waited: then it is not sent, and
	// take reports the refusal.
	take := func(r *request) error {
		if !r.claim() {
			return nil // the caller is gone: not sent
		}
		if err := s.refusal(); err != nil {
			r.done <- result{err: err}
			return err
		}
		p.add(r)
		return nil
	}
	// endRefused lets the requests already written get their replies,
	// then closes the session.
	endRefused := func() error {
		p.flush()
		err := p.stop(s.lastRefusal())
		s.closeRefused(sess)
		return err
	}
	for {
		sl.beat()
		if ctx.Err() != nil {
			return p.stop(nil)
		}
		reqs := s.requests
		if p.inFlight() >= limit {
			reqs = nil // full: wait for a reply before taking a caller
		}
		select {
		case <-ctx.Done():
			return p.stop(nil)
		case <-restart:
			return p.stop(errRestart)
		case <-p.done:
			return p.stop(nil)
		case <-p.freed:
		case <-refused:
			return endRefused()
		case r := <-reqs:
			if take(r) != nil {
				return endRefused()
			}
			// Callers ready now go out in the same write: fewer system
			// calls on both sides.
			for more := true; more && p.inFlight() < limit; {
				select {
				case r := <-s.requests:
					if take(r) != nil {
						return endRefused()
					}
				default:
					more = false
				}
			}
			p.flush()
		case <-hb.C:
			p.add(nil)
			p.flush()
		}
	}
}

func (p *pipe) inFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// add puts one request (r nil: a heartbeat ping) in flight and its frame in
// the write buffer; flush writes it. Failures end the session through
// fail; the request's outcome is then decided there.
func (p *pipe) add(r *request) {
	s, sess := p.s, p.sess
	op, payload := protocol.OpPing, []byte(nil)
	// The reader may take a new hello (maxFrame) meanwhile: under the lock.
	p.mu.Lock()
	if r != nil {
		op, payload = r.op, r.payload
		if r.refresh {
			op, payload = protocol.OpHello, sess.helloRequest()
		}
		if size := protocol.HeaderSize + len(payload); size > sess.maxFrame {
			max := sess.maxFrame
			p.mu.Unlock()
			r.done <- result{err: &CallError{Op: protocol.OpName(op), Err: &protocol.FrameTooLargeError{Size: size, Max: max}}}
			return
		}
	}
	now := time.Now()
	f := &inflight{op: op, r: r, start: now, deadline: now.Add(s.cfg.ReplyTimeout)}
	if p.err != nil {
		err := p.err
		p.mu.Unlock()
		if r != nil {
			r.done <- result{err: &CallError{Op: protocol.OpName(op), Err: fmt.Errorf("%w: %w", ErrSessionClosed, err), notSent: true}}
		}
		return
	}
	if len(p.queue) == 0 {
		// Idle: a backend that died without a goodbye (a crash, an older
		// extension) left an EOF that the reader may not have seen yet.
		// Found now, the request is known not to have been sent.
		if _, err := peekBeside(sess.netConn); err != nil {
			p.mu.Unlock()
			p.fail(err)
			if r != nil {
				r.done <- result{err: &CallError{Op: protocol.OpName(op), Err: err, notSent: true}}
			}
			return
		}
	}
	sess.nextID++
	f.id = sess.nextID
	if r != nil {
		// Set before f is in the queue, where the reader finds it.
		s.inFlight.Add(1)
		f.slow = time.AfterFunc(s.cfg.SlowThreshold, func() {
			p.sl.logger.Warn("request slow", zap.String("op", protocol.OpName(op)),
				zap.Duration("waiting", time.Since(now)), zap.Duration("reply_timeout", s.cfg.ReplyTimeout))
			s.cfg.Observer.SlowRequest(op)
		})
	}
	p.queue = append(p.queue, f)
	if len(p.queue) == 1 {
		// The reader may be waiting with no deadline: it has one now.
		_ = sess.netConn.SetReadDeadline(f.deadline)
	}
	p.mu.Unlock()

	if len(p.batch) == 0 {
		sess.wbuf = sess.wbuf[:0] // it may hold what Call sent last
	}
	// One CopyData message: 'd', its length, the frame.
	f.off = len(sess.wbuf)
	sess.wbuf = append(sess.wbuf, 'd', 0, 0, 0, 0)
	sess.wbuf = protocol.AppendRequest(sess.wbuf, op, f.id, payload)
	binary.BigEndian.PutUint32(sess.wbuf[f.off+1:f.off+5], uint32(len(sess.wbuf)-f.off-1))
	p.batch = append(p.batch, f)
}

// flush writes the frames add put in the buffer, in one write.
func (p *pipe) flush() {
	sess := p.sess
	if len(p.batch) == 0 {
		return
	}
	_ = sess.netConn.SetWriteDeadline(p.batch[0].deadline)
	n, err := sess.netConn.Write(sess.wbuf)
	if err != nil {
		// A frame of which no byte left was not sent.
		p.mu.Lock()
		for _, f := range p.batch {
			if n <= f.off {
				f.wire = wireUnwritten
			}
		}
		p.mu.Unlock()
		// A server that said goodbye before it went may have reset the
		// connection with its goodbye still unread here: the reader, who
		// will find it, or the connection's end, soon, decides the
		// outcomes first. The goodbye names the requests never read.
		select {
		case <-p.done:
		case <-time.After(goodbyeWait):
		}
		p.fail(fmt.Errorf("sending %d requests: %w", len(p.batch), timeoutErr(err)))
	}
	clear(p.batch)
	p.batch = p.batch[:0]
	sess.wbuf = sess.wbuf[:0]
}

// stop ends serving: the writer takes no more requests, the replies still
// due are read (each within its reply timeout), then the reader stops.
// reason is what serve returns when the session is still sound; a session
// that failed returns its error (and is aborted), unless a restart or a
// shutdown was asked for.
func (p *pipe) stop(reason error) error {
	p.mu.Lock()
	p.closing = true
	if len(p.queue) == 0 {
		// Wake the reader from its wait for a message that is not due.
		_ = p.sess.netConn.SetReadDeadline(time.Unix(1, 0))
	}
	p.mu.Unlock()
	<-p.done
	_ = p.sess.netConn.SetDeadline(time.Time{})
	p.mu.Lock()
	err := p.err
	p.mu.Unlock()
	if err != nil {
		p.sess.abort(err)
		if reason == nil {
			return err
		}
	}
	return reason
}

// read receives until the session ends or the writer stops with nothing
// due, and hands each reply to the oldest request in flight.
func (p *pipe) read() {
	defer close(p.done)
	for {
		p.mu.Lock()
		if p.closing && len(p.queue) == 0 {
			p.mu.Unlock()
			return
		}
		if len(p.queue) > 0 {
			_ = p.sess.netConn.SetReadDeadline(p.queue[0].deadline)
		} else if !p.closing {
			_ = p.sess.netConn.SetReadDeadline(time.Time{})
		}
		p.mu.Unlock()

		// Straight from the frontend: pgconn's ReceiveMessage would, on
		// EOF, close the connection in the background and send a cancel
		// request over a new one.
		msg, err := p.sess.pc.Frontend().Receive()
		if err != nil {
			p.mu.Lock()
			clean := p.closing && len(p.queue) == 0 && isTimeout(err)
			p.mu.Unlock()
			if clean {
				return
			}
			p.fail(timeoutErr(err))
			return
		}
		if m, ok := msg.(*pgproto3.CopyData); ok {
			if err := p.deliver(m.Data); err != nil {
				p.fail(err)
				return
			}
			continue
		}
		if err := channelEnded(msg); err != nil {
			p.fail(err)
			return
		}
	}
}

// deliver matches one frame from the server to the oldest request in
// flight. An error ends the session.
func (p *pipe) deliver(data []byte) error {
	if protocol.IsGoodbye(data) {
		g, err := protocol.ParseGoodbye(data)
		if err != nil {
			return &ProtocolError{Msg: fmt.Sprintf("malformed goodbye: %v", err)}
		}
		return &GoodbyeError{Goodbye: g}
	}
	reply, err := protocol.ParseReply(data)
	if err != nil {
		return &ProtocolError{Msg: fmt.Sprintf("malformed reply: %v", err)}
	}
	p.mu.Lock()
	if len(p.queue) == 0 {
		p.mu.Unlock()
		return &ProtocolError{Msg: fmt.Sprintf("reply for request %d op %s while no request was in flight",
			reply.ID, protocol.OpName(reply.Op))}
	}
	f := p.queue[0]
	if reply.ID != f.id || reply.Op != f.op {
		p.mu.Unlock()
		return &ProtocolError{Msg: fmt.Sprintf("reply for request %d op %s while waiting for request %d op %s",
			reply.ID, protocol.OpName(reply.Op), f.id, protocol.OpName(f.op))}
	}
	// A malformed error leaves the request in the queue: the session ends
	// and its outcome is unknown.
	se, err := reply.ServerErr(p.sess.hello.Version)
	if err != nil {
		p.mu.Unlock()
		return &ProtocolError{Msg: fmt.Sprintf("reply for request %d op %s: %v", reply.ID, protocol.OpName(reply.Op), err)}
	}
	p.queue[0] = nil
	p.queue = p.queue[1:]
	p.mu.Unlock()
	select {
	case p.freed <- struct{}{}:
	default:
	}
	var rerr error
	if se != nil {
		rerr = se
	}
	return p.finish(f, reply, rerr)
}

// finish hands a reply to whoever waits for it. A heartbeat's reply that
// cannot be read ends the session.
func (p *pipe) finish(f *inflight, reply protocol.Reply, rerr error) error {
	s := p.s
	if f.slow != nil {
		s.inFlight.Add(-1)
		f.slow.Stop()
	}
	if rerr == nil || isServerError(rerr) {
		s.noteReply()
	}
	if f.r == nil {
		if rerr != nil {
			return fmt.Errorf("heartbeat: %w", rerr)
		}
		ping, err := protocol.ParsePingReply(reply.Payload)
		if err != nil {
			return fmt.Errorf("heartbeat: %w", err)
		}
		s.cfg.Observer.Heartbeat(time.Since(f.start), ping)
		// An upstream behind the standby's timeline ends the session.
		return p.s.notePing(p.sl, ping)
	}
	var out []byte
	if rerr == nil {
		out = make([]byte, len(reply.Payload))
		copy(out, reply.Payload)
	}
	if rerr == nil && f.r.refresh {
		p.mu.Lock()
		err := p.sess.acceptHello(out)
		h := p.sess.hello
		p.mu.Unlock()
		if err != nil {
			f.r.done <- result{err: err}
			s.cfg.Observer.CallFinished(f.op, time.Since(f.start), err)
			return err
		}
		s.setHello(p.sl, h)
		s.cfg.Observer.OpsOffered(h.Ops)
		out = nil
	}
	f.r.done <- result{payload: out, err: rerr}
	s.cfg.Observer.CallFinished(f.op, time.Since(f.start), rerr)
	return nil
}

// fail ends the session once: every request still in flight gets its
// outcome. Written and unanswered is unknown, unless the server's goodbye
// says it never read it; a request whose write failed before any byte left
// was not sent. The socket is closed so that a blocked write returns.
func (p *pipe) fail(err error) {
	p.mu.Lock()
	if p.err != nil {
		p.mu.Unlock()
		return
	}
	p.err = err
	q := p.queue
	p.queue = nil
	var gb *GoodbyeError
	hasGoodbye := errors.As(err, &gb)
	// The writer marks unwritten frames under the lock.
	notSent := make([]bool, len(q))
	for i, f := range q {
		notSent[i] = f.wire == wireUnwritten || (hasGoodbye && f.id > gb.Goodbye.LastID)
	}
	p.mu.Unlock()
	_ = p.sess.netConn.Close()
	for i, f := range q {
		if f.slow != nil {
			p.s.inFlight.Add(-1)
			f.slow.Stop()
		}
		if f.r == nil {
			continue
		}
		notSent := notSent[i]
		cerr := &CallError{Op: protocol.OpName(f.op), Err: err, sent: !notSent, notSent: notSent}
		f.r.done <- result{err: cerr}
		p.s.cfg.Observer.CallFinished(f.op, time.Since(f.start), cerr)
	}
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// timeoutErr says that a socket deadline was a reply timeout, so that the
// session's end classifies as reply_timeout.
func timeoutErr(err error) error {
	if isTimeout(err) {
		return fmt.Errorf("%w: no reply within the reply timeout (%w)", context.DeadlineExceeded, err)
	}
	return err
}

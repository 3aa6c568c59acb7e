package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/api/fastproto"
	"github.com/standbyd/standbyd/internal/protocol"
)

// Fast path defaults (docs/api.md, "Limits").
const (
	DefaultFastMaxInFlight  = 128
	DefaultFastFrameTimeout = 5 * time.Second
	// fastBatch sizes the reply buffer a connection keeps between writes.
	fastBatch = 64 << 10
)

// fastMaxFrame is the largest request frame: a channel payload with the
// timeout and the longest name.
func (s *Server) fastMaxFrame() int {
	return fastproto.HeaderSize + fastproto.TimeoutSize + 1 + fastproto.MaxNameSize + s.cfg.MaxPayload
}

// fastReply is one reply for the connection's writer.
type fastReply struct {
	op      uint16
	id      uint32
	payload []byte
	err     *fastproto.ErrorReply
	// who made the request (nil: not a request, or nobody identified).
	who *sqlIdentity
}

// fastConn is one connection speaking the fast path: a reader (this
// goroutine), a goroutine per request in flight, and one writer at a time
// that gathers the replies into as few writes as it can.
type fastConn struct {
	s        *Server
	c        *peerConn
	br       *bufio.Reader
	version  byte
	inflight atomic.Int32
	// fields are the caller's log fields (peer credentials); who, the SQL
	// session of the last identify frame, nil before one (the reader's).
	fields []zap.Field
	who    *sqlIdentity
	// badIdentLogged: a malformed identify frame was logged (the reader's).
	badIdentLogged bool
	// The replies: whoever queues one while nobody writes becomes the
	// writer until the queue is empty, so that replies that come while a
	// write is under way go out together in the next one.
	wmu     sync.Mutex
	wcond   *sync.Cond
	pend    []byte
	spare   []byte
	writing bool
	wfailed bool
	calls   sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
	// draining: the daemon is stopping; the reader was woken to stop.
	draining atomic.Bool
	// gone: the caller closed the connection or stopped reading it; the
	// calls it left are withdrawn or their replies dropped.
	gone atomic.Bool
}

// serveFast answers a connection whose preamble offered version v.
func (s *Server) serveFast(c *peerConn, v byte) {
	fc := &fastConn{s: s, c: c, br: bufio.NewReaderSize(c, 32<<10), version: min(v, fastproto.MaxVersion),
		fields: slices.Clip(c.peer.fields())}
	fc.wcond = sync.NewCond(&fc.wmu)
	fc.ctx, fc.cancel = context.WithCancel(context.Background())
	defer fc.cancel()
	if !s.trackFast(fc, true) {
		c.Close()
		return
	}
	defer s.trackFast(fc, false)
	pre := fastproto.AppendServerPreamble(nil, fastproto.ServerPreamble{Version: fc.version,
		MaxFrame: uint32(s.fastMaxFrame()), MaxInFlight: uint32(s.cfg.FastMaxInFlight)})
	if _, err := c.Write(pre); err != nil {
		c.Close()
		return
	}
	if ce := s.log.Check(zap.DebugLevel, "api fast path: connection opened"); ce != nil {
		ce.Write(c.peer.fields()...)
	}
	if reason := fc.read(); reason != nil && !errors.Is(reason, errFraming) {
		// The caller is gone or stalled: what is still queued for it is
		// not sent; what is on the wire is read and dropped. After a
		// framing error the calls in flight go on and are answered.
		fc.callerGone()
	}
	fc.calls.Wait()
	fc.flushed()
	c.Close()
}

// errFraming ends a connection whose frames cannot be followed.
var errFraming = errors.New("fast path framing error")

// read reads frames until the connection ends; nil means a polite end (the
// daemon stopping).
func (fc *fastConn) read() error {
	s := fc.s
	var hdr [fastproto.HeaderSize]byte
	maxBody := s.fastMaxFrame() - fastproto.HeaderSize
	for {
		if fc.draining.Load() {
			return nil
		}
		// Idle between frames: no deadline. Once a frame has begun, all of
		// it must come within the frame timeout.
		if _, err := fc.br.Peek(1); err != nil {
			return fc.readEnded(err, 0)
		}
		armed := false
		arm := func(need int) {
			if !armed && fc.br.Buffered() < need {
				armed = true
				_ = fc.c.SetReadDeadline(time.Now().Add(s.cfg.FastFrameTimeout))
			}
		}
		arm(fastproto.HeaderSize)
		if n, err := io.ReadFull(fc.br, hdr[:]); err != nil {
			return fc.readEnded(err, n)
		}
		h := fastproto.ParseHeader(hdr[:])
		if h.Kind == fastproto.KindIdentify && fc.version >= fastproto.Version2 {
			arm(int(h.Length))
			if err := fc.identify(h); err != nil {
				return err
			}
			fc.disarm(armed)
			continue
		}
		if h.Kind != fastproto.KindRequest {
			fc.reply(h.Op, h.ID, nil, client.KindBadRequest, fmt.Sprintf("frame kind %#02x is not a request ('Q'): closing the connection", h.Kind))
			s.log.Warn("api fast path: closing a connection that sent a frame of unknown kind", fc.logFields()...)
			return fmt.Errorf("%w: %w", errFraming, fastproto.ErrWrongKind)
		}
		if int64(h.Length) > int64(maxBody) {
			fc.replyFor(fc.who, h.Op, h.ID, client.KindPayloadTooLarge,
				fmt.Sprintf("frame of %d bytes is larger than the maximum of %d: closing the connection", uint64(h.Length)+fastproto.HeaderSize, s.fastMaxFrame()))
			s.log.Warn("api fast path: closing a connection that sent a frame over the limit", fc.logFields()...)
			return fmt.Errorf("%w: frame over the limit", errFraming)
		}
		arm(int(h.Length))
		// Refused before the body is held: a flood costs a read, not memory.
		refusal := ""
		if fc.inflight.Load() >= int32(s.cfg.FastMaxInFlight) {
			refusal = fmt.Sprintf("%d requests of this connection are already in flight", s.cfg.FastMaxInFlight)
		} else if s.slots != nil {
			select {
			case s.slots <- struct{}{}:
			default:
				refusal = fmt.Sprintf("%d calls are already waiting or running", cap(s.slots))
			}
		}
		if refusal != "" {
			if n, err := fc.br.Discard(int(h.Length)); err != nil {
				return fc.readEnded(err, fastproto.HeaderSize+n)
			}
			fc.disarm(armed)
			fc.replyFor(fc.who, h.Op, h.ID, client.KindBusy, refusal)
			continue
		}
		body := make([]byte, h.Length)
		if n, err := io.ReadFull(fc.br, body); err != nil {
			fc.release()
			return fc.readEnded(err, fastproto.HeaderSize+n)
		}
		fc.disarm(armed)
		req, err := fastproto.ParseRequestBody(h, body)
		if err != nil {
			fc.release()
			fc.replyFor(fc.who, h.Op, h.ID, client.KindBadRequest, err.Error())
			continue
		}
		fc.inflight.Add(1)
		fc.calls.Add(1)
		go fc.call(req, fc.who)
	}
}

func (fc *fastConn) disarm(armed bool) {
	if armed {
		_ = fc.c.SetReadDeadline(time.Time{})
		if fc.draining.Load() {
			// drainFast's wake-up may have been overwritten by arm.
			_ = fc.c.SetReadDeadline(time.Now())
		}
	}
}

// release gives back the call slot taken for a request.
func (fc *fastConn) release() {
	if fc.s.slots != nil {
		<-fc.s.slots
	}
}

// readEnded says why reading stopped; partial is what had arrived of a
// frame that never completed.
func (fc *fastConn) readEnded(err error, partial int) error {
	if fc.draining.Load() {
		return nil
	}
	if fc.ctx.Err() != nil {
		return err // the writer found the caller gone
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		fc.s.log.Warn("api fast path: closing a connection whose frame did not arrive in time",
			append(fc.logFields(), zap.Duration("frame_timeout", fc.s.cfg.FastFrameTimeout), zap.Int("bytes_received", partial))...)
		return err
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		fc.s.log.Debug("api fast path: connection read", append(fc.logFields(), zap.Error(err))...)
	}
	return err
}

// call serves one request, as the HTTP handler does; who is the SQL
// session it was made for, if one was identified.
func (fc *fastConn) call(req fastproto.Request, who *sqlIdentity) {
	s := fc.s
	defer fc.calls.Done()
	defer fc.release()
	timeout := s.cfg.DefaultTimeout
	if req.TimeoutMS > 0 {
		timeout = min(time.Duration(req.TimeoutMS)*time.Millisecond, s.cfg.MaxTimeout)
	}
	ctx, cancel := context.WithTimeout(fc.ctx, timeout)
	defer cancel()
	op := req.Op
	name := req.Name
	if name != "" {
		var err error
		if op, err = s.ch.ResolveOp(ctx, name); err != nil {
			fc.answer(errorReply(who, 0, req.ID, client.KindBadRequest, err.Error()))
			return
		}
	} else {
		name = protocol.OpName(op)
	}
	peer := fc.c.peer
	// The fields are built once per connection or identify frame; append
	// copies them (their capacity is their length).
	fields := fc.fields
	if who != nil {
		fields = who.fields
	}
	if ce := s.log.Check(zap.DebugLevel, "call"); ce != nil {
		ce.Write(append(fields, zap.String("op", protocol.OpName(op)))...)
	}
	{
		if d := s.allowed(op, peer); !d.allowed {
			s.log.Warn("call refused by api.allow", append(fields, zap.String("op", protocol.OpName(op)))...)
			if s.cfg.Denied != nil {
				s.cfg.Denied(op)
			}
			fc.answer(errorReply(who, op, req.ID, client.KindForbidden, deniedMessage(name, peer)))
			return
		}
	}
	if len(req.Payload) > s.cfg.MaxPayload {
		fc.answer(errorReply(who, op, req.ID, client.KindPayloadTooLarge, fmt.Sprintf("payload larger than %d bytes", s.cfg.MaxPayload)))
		return
	}
	if s.cfg.SlowThreshold > 0 {
		start := time.Now()
		slow := time.AfterFunc(s.cfg.SlowThreshold, func() {
			s.log.Warn("call slow", append(fields, zap.String("op", protocol.OpName(op)), zap.Duration("waiting", time.Since(start)))...)
		})
		defer slow.Stop()
	}
	reply, err := s.ch.Call(ctx, op, req.Payload)
	if err != nil {
		_, d := classify(err)
		if fc.gone.Load() {
			fc.abandoned(fields, op, d.Kind)
		}
		fc.answer(fastReply{op: op, id: req.ID, who: who, err: &fastproto.ErrorReply{Kind: d.Kind, SQLState: d.SQLState,
			Message: d.Message, Detail: d.Detail, Hint: d.Hint}})
		return
	}
	fc.answer(fastReply{op: op, id: req.ID, who: who, payload: reply})
}

// callerGone withdraws the connection's calls: the caller closed it (a
// cancelled SQL statement closes its backend's connection) or stalled.
func (fc *fastConn) callerGone() {
	fc.gone.Store(true)
	if n := fc.inflight.Load(); n > 0 {
		fc.s.log.Info("api fast path: caller gone with requests in flight",
			append(fc.logFields(), zap.Int32("in_flight", n))...)
	}
	fc.cancel()
}

// abandoned logs what became of a call whose caller left: withdrawn
// before it was written to the primary, or sent, its outcome unknown and
// its reply dropped.
func (fc *fastConn) abandoned(fields []zap.Field, op uint16, kind string) {
	switch kind {
	case client.KindOutcomeUnknown:
		fc.s.log.Info("call abandoned by its caller after it was sent: its outcome on the primary is unknown, its reply is dropped",
			append(fields, zap.String("op", protocol.OpName(op)))...)
	case client.KindChannelUnavailable:
		fc.s.log.Info("call withdrawn: its caller left before it was sent to the primary",
			append(fields, zap.String("op", protocol.OpName(op)))...)
	}
}

// replyFor queues the reader's error answer to a request of who.
func (fc *fastConn) replyFor(who *sqlIdentity, op uint16, id uint32, kind, msg string) {
	fc.send(errorReply(who, op, id, kind, msg), true)
}

func errorReply(who *sqlIdentity, op uint16, id uint32, kind, msg string) fastReply {
	return fastReply{op: op, id: id, who: who, err: &fastproto.ErrorReply{Kind: kind, Message: msg}}
}

// answer queues a call's reply. The call stops counting as in flight
// first: a caller that has its reply and closes never counts as gone with
// that call in flight.
func (fc *fastConn) answer(r fastReply) {
	fc.inflight.Add(-1)
	fc.send(r, false)
}

// reply queues an answer; with a kind it is an error.
func (fc *fastConn) reply(op uint16, id uint32, payload []byte, kind, msg string) {
	r := fastReply{op: op, id: id, payload: payload}
	if kind != "" {
		r.err = &fastproto.ErrorReply{Kind: kind, Message: msg}
	}
	fc.send(r, true)
}

// maxPending bounds the reply bytes queued behind a write in progress
// before the reader stops reading (a caller that floods and does not read
// its replies holds its own connection, not the daemon's memory).
const maxPending = 1 << 20

// send queues a reply and writes the queue unless a write is under way.
// The reader (fromReader) waits while the queue is full; a call's reply
// is always taken, the in-flight bound limits those.
func (fc *fastConn) send(r fastReply, fromReader bool) {
	r.who.counted(r.err)
	fc.wmu.Lock()
	for fromReader && fc.writing && !fc.wfailed && len(fc.pend) >= maxPending {
		fc.wcond.Wait()
	}
	if fc.wfailed {
		fc.wmu.Unlock()
		return
	}
	fc.pend = appendFastReply(fc.pend, fc.version, r)
	if fc.writing {
		fc.wmu.Unlock()
		return
	}
	fc.writing = true
	for len(fc.pend) > 0 && !fc.wfailed {
		buf := fc.pend
		fc.pend = fc.spare[:0]
		fc.wmu.Unlock()
		_, err := fc.c.Write(buf)
		fc.wmu.Lock()
		if cap(buf) <= 4*fastBatch {
			fc.spare = buf[:0] // a large reply's buffer is not kept
		} else {
			fc.spare = nil
		}
		if err != nil {
			fc.wfailed = true
			fc.pend = nil
			fc.gone.Store(true)
			fc.cancel()
			// Wake the reader: the caller is gone.
			_ = fc.c.SetReadDeadline(time.Now())
		}
		fc.wcond.Broadcast()
	}
	fc.writing = false
	fc.wcond.Broadcast()
	fc.wmu.Unlock()
}

// flushed waits until no write is under way (every call has ended).
func (fc *fastConn) flushed() {
	fc.wmu.Lock()
	for fc.writing {
		fc.wcond.Wait()
	}
	fc.wmu.Unlock()
}

func appendFastReply(dst []byte, v byte, r fastReply) []byte {
	if r.err != nil {
		return fastproto.AppendErrorV(dst, v, r.op, r.id, *r.err)
	}
	return fastproto.AppendReply(dst, r.op, r.id, r.payload)
}

// trackFast adds or removes a connection from those Shutdown waits for;
// adding fails once the server stops.
func (s *Server) trackFast(fc *fastConn, add bool) bool {
	s.fastMu.Lock()
	defer s.fastMu.Unlock()
	if !add {
		delete(s.fastConns, fc)
		return true
	}
	if s.fastClosed {
		return false
	}
	s.fastConns[fc] = struct{}{}
	return true
}

// drainFast tells every fast connection to stop reading: the requests in
// flight are answered, then the connections close.
func (s *Server) drainFast() {
	s.fastMu.Lock()
	defer s.fastMu.Unlock()
	s.fastClosed = true
	for fc := range s.fastConns {
		fc.draining.Store(true)
		_ = fc.c.SetReadDeadline(time.Now())
	}
}

// closeFast ends every fast connection at once.
func (s *Server) closeFast() {
	s.fastMu.Lock()
	defer s.fastMu.Unlock()
	for fc := range s.fastConns {
		fc.cancel()
		fc.c.Close()
	}
}

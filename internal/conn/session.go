package conn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/standbyd/standbyd/internal/protocol"
)

// Mode says how the session talks to the primary.
type Mode int

const (
	// ModeExtension enters the channel with CALL standbyd.serve() and speaks
	// protocol v2, or v1 with an older extension (docs/protocol.md). The
	// default.
	ModeExtension Mode = iota
	// ModeRaw talks to a primary patched to answer CopyData on an idle
	// session: no CALL, no header, only the N operation.
	ModeRaw
)

func (m Mode) String() string {
	switch m {
	case ModeExtension:
		return "extension"
	case ModeRaw:
		return "raw"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode turns a config word into a Mode.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "extension":
		return ModeExtension, nil
	case "raw":
		return ModeRaw, nil
	}
	return 0, fmt.Errorf("unknown channel mode %q (want extension or raw)", s)
}

// DefaultProcedure is the procedure that enters the channel.
const DefaultProcedure = "standbyd.serve"

// DialOptions configure one session.
type DialOptions struct {
	// Config is the connection to the primary (from internal/conninfo).
	Config *pgconn.Config
	// Mode selects extension (default) or raw mode.
	Mode Mode
	// Procedure is the schema-qualified procedure to CALL; DefaultProcedure
	// when empty.
	Procedure string
	// ClientName is sent in hello (at most 64 bytes).
	ClientName string
	// MaxFrameSize is the largest frame this side accepts, header included;
	// protocol.DefaultMaxFrameSize when zero.
	MaxFrameSize int
	// OnConnected, if set, is called once the connection is authenticated,
	// before entering the channel.
	OnConnected func()
	// ExpectSystemIdentifier, when not zero, must equal the system
	// identifier the upstream reports in hello (the standby's own, from its
	// pg_control): a session to another cluster is refused.
	ExpectSystemIdentifier uint64
	// StatementTimeout, when positive, caps the channel backend's
	// statement_timeout before entering (see StatementTimeoutFor): the
	// extension arms it around each handler, so a handler slower than this
	// ends as an error reply (57014) whose work was rolled back, instead of
	// running on after standbyd gave up on the session.
	StatementTimeout time.Duration
	// MaxVersion is the highest protocol version offered in hello;
	// protocol.MaxVersion when zero. 1 keeps the session to one request in
	// flight and no goodbye, as with an older extension.
	MaxVersion uint16
}

// Session is one channel session: a PostgreSQL connection that has entered
// COPY BOTH and, in extension mode, exchanged hello. Call carries one
// request at a time and is not safe for concurrent use; a version-2 session
// may instead be driven by one writer and one reader at once (pipeline.go).
type Session struct {
	pc         *pgconn.PgConn
	netConn    net.Conn
	mode       Mode
	hello      protocol.HelloReply
	maxFrame   int
	maxVersion uint16
	nextID     uint32
	wbuf       []byte
	err        error // why the session ended; nil while usable
	name       string
	// fire cuts a call short when its context ends (made once: no
	// allocation per call); fired says it has finished.
	fire  func()
	fired chan struct{}
}

// Dial connects to the primary, enters the channel and says hello. The
// context bounds the whole sequence.
func Dial(ctx context.Context, opts DialOptions) (*Session, error) {
	if opts.Config == nil {
		return nil, errors.New("dial: no connection config")
	}
	maxFrame := opts.MaxFrameSize
	if maxFrame == 0 {
		maxFrame = protocol.DefaultMaxFrameSize
	}
	if maxFrame < protocol.MinMaxFrameSize {
		return nil, &ConfigError{Err: fmt.Errorf("max frame size %d is below the protocol's minimum of %d", maxFrame, protocol.MinMaxFrameSize)}
	}
	pc, err := pgconn.ConnectConfig(ctx, opts.Config)
	if err != nil {
		return nil, fmt.Errorf("connecting to the primary: %w", err)
	}
	maxVersion := opts.MaxVersion
	if maxVersion == 0 || maxVersion > protocol.MaxVersion {
		maxVersion = protocol.MaxVersion
	}
	s := &Session{
		pc:         pc,
		netConn:    pc.Conn(),
		mode:       opts.Mode,
		maxFrame:   maxFrame,
		maxVersion: maxVersion,
		name:       opts.ClientName,
	}
	// Refuse absurd messages from a confused peer before allocating them.
	pc.Frontend().SetMaxBodyLen(maxFrame + 64)
	if opts.OnConnected != nil {
		opts.OnConnected()
	}

	if opts.Mode == ModeRaw {
		return s, nil
	}

	proc := opts.Procedure
	if proc == "" {
		proc = DefaultProcedure
	}
	if d := opts.StatementTimeout; d > 0 {
		if err := s.capStatementTimeout(ctx, d); err != nil {
			s.abort(err)
			return nil, err
		}
	}
	if err := s.enter(ctx, proc); err != nil {
		s.abort(err)
		return nil, err
	}
	if err := s.sayHello(ctx); err != nil {
		s.abort(err)
		return nil, err
	}
	if want := opts.ExpectSystemIdentifier; want != 0 && s.hello.SystemIdentifier != want {
		err := &IdentityError{Want: want, Got: s.hello.SystemIdentifier}
		_ = s.Close(ctx)
		return nil, &ConfigError{Err: err}
	}
	return s, nil
}

// enter sends CALL in the simple Query protocol (the only one that works)
// and waits for CopyBothResponse.
func (s *Session) enter(ctx context.Context, proc string) error {
	defer s.unwatch(s.watch(ctx))

	s.pc.Frontend().Send(&pgproto3.Query{String: "CALL " + proc + "()"})
	if err := s.pc.Frontend().Flush(); err != nil {
		return fmt.Errorf("sending CALL %s(): %w", proc, s.ctxErr(ctx, err))
	}
	var refused error
	for {
		msg, err := s.pc.ReceiveMessage(context.Background())
		if err != nil {
			if refused != nil {
				return &EnterError{Err: refused}
			}
			return fmt.Errorf("entering the channel: %w", s.ctxErr(ctx, err))
		}
		switch m := msg.(type) {
		case *pgproto3.CopyBothResponse:
			if refused != nil {
				return &EnterError{Err: refused}
			}
			return nil
		case *pgproto3.ErrorResponse:
			refused = pgconn.ErrorResponseToPgError(m)
		case *pgproto3.ReadyForQuery:
			if refused == nil {
				refused = errors.New("the primary finished CALL without entering COPY BOTH")
			}
			return &EnterError{Err: refused}
		default:
			// NoticeResponse, ParameterStatus, CommandComplete: keep reading.
		}
	}
}

func (s *Session) sayHello(ctx context.Context) error {
	payload, err := s.Call(ctx, protocol.OpHello, s.helloRequest())
	if err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	return s.acceptHello(payload)
}

// helloRequest is the payload of this session's hello: versions 1 to
// maxVersion.
func (s *Session) helloRequest() []byte {
	req := protocol.HelloRequest{
		MinVersion:   protocol.Version1,
		MaxVersion:   s.maxVersion,
		MaxFrameSize: uint32(s.maxFrame),
		ClientName:   s.name,
	}
	return req.Append(nil)
}

// acceptHello checks a hello reply and takes its settings. A version
// change on a live session is refused: the session's rules (pipelining,
// goodbye) were chosen with the first hello.
func (s *Session) acceptHello(payload []byte) error {
	hello, err := protocol.ParseHelloReply(payload)
	if err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if hello.Version < protocol.Version1 || hello.Version > s.maxVersion {
		return &ProtocolError{Msg: fmt.Sprintf("primary chose protocol version %d, we asked for 1 to %d", hello.Version, s.maxVersion)}
	}
	if s.hello.Version != 0 && hello.Version != s.hello.Version {
		return &ProtocolError{Msg: fmt.Sprintf("primary changed the protocol version from %d to %d", s.hello.Version, hello.Version)}
	}
	if srv := int(hello.MaxFrameSize); srv > 0 && srv < protocol.MinMaxFrameSize {
		return &ProtocolError{Msg: fmt.Sprintf("primary's max frame size %d is below the protocol's minimum of %d", srv, protocol.MinMaxFrameSize)}
	}
	s.hello = hello
	if srv := int(hello.MaxFrameSize); srv > 0 && srv < s.maxFrame {
		s.maxFrame = srv
	}
	return nil
}

// Pipelined reports whether the session may carry several requests in
// flight: protocol version 2 (extension mode only).
func (s *Session) Pipelined() bool {
	return s.mode == ModeExtension && s.hello.Version >= protocol.Version2
}

// Rehello says hello again on a live session and returns the new answer:
// the op list then includes handlers registered since the session started.
// An answer the session cannot take (another version, a malformed reply)
// ends the session: its rules and its error layout came with the first
// hello, and the server may already speak the new ones.
func (s *Session) Rehello(ctx context.Context) (protocol.HelloReply, error) {
	if s.mode == ModeRaw {
		return s.hello, nil
	}
	payload, err := s.Call(ctx, protocol.OpHello, s.helloRequest())
	if err != nil {
		return s.hello, fmt.Errorf("hello: %w", err)
	}
	if err := s.acceptHello(payload); err != nil {
		var perr *ProtocolError
		if !errors.As(err, &perr) {
			perr = &ProtocolError{Msg: err.Error()}
		}
		s.abort(perr)
		return s.hello, perr
	}
	return s.hello, nil
}

// Hello is the primary's answer to hello (zero in raw mode).
func (s *Session) Hello() protocol.HelloReply { return s.hello }

// RemoteAddr is the address of the upstream as connected: ip:port, or the
// socket path.
func (s *Session) RemoteAddr() string {
	if a := s.netConn.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// Mode is the session's mode.
func (s *Session) Mode() Mode { return s.mode }

// MaxFrameSize is the largest frame both sides accept.
func (s *Session) MaxFrameSize() int { return s.maxFrame }

// BackendPID is the process id of the channel's backend on the primary.
func (s *Session) BackendPID() uint32 { return s.pc.PID() }

// Err reports why the session ended, or nil while it is usable.
func (s *Session) Err() error { return s.err }

// Call sends one request and waits for its reply, until ctx ends. It returns
// the reply payload (a fresh slice), a *protocol.ServerError when the primary
// answered with an error frame (the session goes on), or a *CallError when
// the session could not complete the exchange (the session is then over).
func (s *Session) Call(ctx context.Context, op uint16, payload []byte) ([]byte, error) {
	name := protocol.OpName(op)
	if s.err != nil {
		return nil, &CallError{Op: name, Err: fmt.Errorf("%w: %w", ErrSessionClosed, s.err)}
	}
	// A backend terminated while the session was idle has left a FATAL or
	// an EOF behind: find out before writing, so that the request is known
	// not to have been sent.
	if err := s.checkConn(); err != nil {
		s.abort(err)
		return nil, &CallError{Op: name, Err: err, notSent: true}
	}
	if s.mode == ModeRaw {
		return s.callRaw(ctx, op, payload)
	}
	if protocol.HeaderSize+len(payload) > s.maxFrame {
		return nil, &CallError{Op: name, Err: &protocol.FrameTooLargeError{Size: protocol.HeaderSize + len(payload), Max: s.maxFrame}}
	}

	s.nextID++
	id := s.nextID
	// One buffer: the CopyData message header ('d' + int32 length), then the frame.
	s.wbuf = append(s.wbuf[:0], 'd', 0, 0, 0, 0)
	s.wbuf = protocol.AppendRequest(s.wbuf, op, id, payload)
	data, err := s.exchange(ctx, name)
	if err != nil {
		return nil, err
	}
	if protocol.IsGoodbye(data) {
		return nil, s.goodbye(name, id, data)
	}
	reply, err := protocol.ParseReply(data)
	if err != nil {
		return nil, s.protocolError(name, fmt.Sprintf("malformed reply: %v", err))
	}
	if reply.ID != id || reply.Op != op {
		return nil, s.protocolError(name, fmt.Sprintf("reply for request %d op %s while waiting for request %d op %s",
			reply.ID, protocol.OpName(reply.Op), id, name))
	}
	se, err := reply.ServerErr(s.hello.Version)
	if err != nil {
		return nil, s.protocolError(name, fmt.Sprintf("reply for request %d op %s: %v", id, name, err))
	}
	if se != nil {
		return nil, se
	}
	out := make([]byte, len(reply.Payload))
	copy(out, reply.Payload)
	return out, nil
}

// callRaw speaks the original frame layout of a patched server: 'N' and three
// int32 out, three int32 back, nothing else.
func (s *Session) callRaw(ctx context.Context, op uint16, payload []byte) ([]byte, error) {
	name := protocol.OpName(op)
	if op != protocol.OpN {
		return nil, &CallError{Op: name, Err: fmt.Errorf("raw mode has only the N operation")}
	}
	args, err := protocol.ParseN(payload)
	if err != nil {
		return nil, &CallError{Op: name, Err: err}
	}
	s.wbuf = append(s.wbuf[:0], 'd', 0, 0, 0, 0)
	s.wbuf = protocol.AppendRawN(s.wbuf, args)
	data, err := s.exchange(ctx, name)
	if err != nil {
		return nil, err
	}
	res, err := protocol.ParseRawNReply(data)
	if err != nil {
		return nil, s.protocolError(name, fmt.Sprintf("malformed raw reply: %v", err))
	}
	return protocol.AppendN(nil, res), nil
}

// exchange sends the CopyData message in s.wbuf (its length field is filled
// in here) and returns the data of the next CopyData from the primary, valid
// until the next receive. Any failure ends the session; the request counts
// as sent.
func (s *Session) exchange(ctx context.Context, name string) ([]byte, error) {
	binary.BigEndian.PutUint32(s.wbuf[1:5], uint32(len(s.wbuf)-1))
	defer s.unwatch(s.watch(ctx))
	if err := s.pc.Frontend().SendUnbufferedEncodedCopyData(s.wbuf); err != nil {
		// A write that failed before any byte left is safe to send again
		// elsewhere; one that failed part way may have reached the primary.
		safe := pgconn.SafeToRetry(err)
		err = s.ctxErr(ctx, err)
		s.abort(err)
		return nil, &CallError{Op: name, Err: err, sent: !safe, notSent: safe}
	}
	for {
		msg, err := s.receive(ctx)
		if err != nil {
			return nil, &CallError{Op: name, Err: err, sent: true}
		}
		if data, ok := msg.(*pgproto3.CopyData); ok {
			return data.Data, nil
		}
		if err := s.nonCopyMessage(msg); err != nil {
			return nil, &CallError{Op: name, Err: err, sent: true}
		}
	}
}

// goodbye ends the session on the server's goodbye frame, received while
// request id waited: not sent when the server says it never read it.
func (s *Session) goodbye(name string, id uint32, data []byte) error {
	g, err := protocol.ParseGoodbye(data)
	if err != nil {
		return s.protocolError(name, fmt.Sprintf("malformed goodbye: %v", err))
	}
	gerr := &GoodbyeError{Goodbye: g}
	s.abort(gerr)
	notSent := id > g.LastID
	return &CallError{Op: name, Err: gerr, sent: !notSent, notSent: notSent}
}

// protocolError ends the session over something the protocol does not allow.
func (s *Session) protocolError(name, msg string) error {
	perr := &ProtocolError{Msg: msg}
	s.abort(perr)
	return &CallError{Op: name, Err: perr, sent: true}
}

// receive reads one message; any failure ends the session.
func (s *Session) receive(ctx context.Context) (pgproto3.BackendMessage, error) {
	msg, err := s.pc.ReceiveMessage(context.Background())
	if err != nil {
		err = s.ctxErr(ctx, err)
		s.abort(err)
		return nil, err
	}
	return msg, nil
}

// nonCopyMessage handles a message other than CopyData while waiting for a
// reply: notices and parameter changes are life signs; anything that means
// the channel ended closes the session.
func (s *Session) nonCopyMessage(msg pgproto3.BackendMessage) error {
	err := channelEnded(msg)
	if err != nil {
		s.abort(err)
	}
	return err
}

// channelEnded tells what a message other than CopyData means: nil for a
// life sign (notice, parameter change), else why the channel is over.
func channelEnded(msg pgproto3.BackendMessage) error {
	switch m := msg.(type) {
	case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus, *pgproto3.NotificationResponse:
		return nil
	case *pgproto3.ErrorResponse:
		return fmt.Errorf("the primary ended the channel: %w", pgconn.ErrorResponseToPgError(m))
	case *pgproto3.CopyDone:
		return errors.New("the primary ended the channel (CopyDone)")
	case *pgproto3.ReadyForQuery, *pgproto3.CommandComplete:
		return errors.New("the primary left COPY BOTH")
	default:
		return &ProtocolError{Msg: fmt.Sprintf("unexpected %T on the channel", msg)}
	}
}

// watch applies ctx's deadline and cancellation to the socket, so that a
// read or write stuck on a silent peer returns. unwatch undoes it with
// what watch returned. Cheaper than pgconn's context watcher on the hot
// path.
func (s *Session) watch(ctx context.Context) func() bool {
	dl, _ := ctx.Deadline() // zero time: no deadline
	_ = s.netConn.SetDeadline(dl)
	if ctx.Done() == nil {
		return nil
	}
	if s.fire == nil {
		s.fired = make(chan struct{}, 1)
		s.fire = func() {
			_ = s.netConn.SetDeadline(time.Unix(1, 0))
			s.fired <- struct{}{}
		}
	}
	return context.AfterFunc(ctx, s.fire)
}

func (s *Session) unwatch(stop func() bool) {
	if stop != nil && !stop() {
		// The func started: let it finish before the next call sets its
		// own deadline, or it could cut that call short.
		<-s.fired
	}
}

// ctxErr turns an I/O error caused by our own deadline into the context's
// error, so callers see "context deadline exceeded" rather than an i/o
// timeout. The socket's deadline and the context's timer fire at the same
// instant in either order: a passed deadline counts even before the
// context notices it.
func (s *Session) ctxErr(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if dl, ok := ctx.Deadline(); cerr == nil && ok && !time.Now().Before(dl) {
		cerr = context.DeadlineExceeded
	}
	if cerr == nil {
		return err
	}
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w (%w)", cerr, err)
	}
	return err
}

// abort marks the session over and closes the connection without ceremony.
func (s *Session) abort(err error) {
	if s.err == nil {
		s.err = err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = s.pc.Close(ctx)
}

// Close ends the channel the polite way: CopyDone, wait for the server's
// CopyDone, CommandComplete and ReadyForQuery, then Terminate. It falls back
// to closing the socket when ctx ends first or the session had already
// failed.
func (s *Session) Close(ctx context.Context) error {
	if s.err != nil {
		s.abort(s.err)
		return nil
	}
	s.err = ErrSessionClosed
	if s.mode == ModeRaw {
		return s.pc.Close(ctx)
	}
	defer s.unwatch(s.watch(ctx))
	s.pc.Frontend().Send(&pgproto3.CopyDone{})
	if err := s.pc.Frontend().Flush(); err != nil {
		_ = s.pc.Close(ctx)
		return fmt.Errorf("closing the channel: %w", err)
	}
	for {
		msg, err := s.pc.ReceiveMessage(context.Background())
		if err != nil {
			_ = s.pc.Close(ctx)
			return fmt.Errorf("closing the channel: %w", s.ctxErr(ctx, err))
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	_ = s.netConn.SetDeadline(time.Time{})
	return s.pc.Close(ctx)
}

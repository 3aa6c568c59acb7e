// Package conntest is a fake primary for unit tests of the channel's Go
// side: a listener that speaks enough of the PostgreSQL protocol (trust
// authentication, a simple-Query CALL answered with CopyBothResponse) and of
// the channel protocol (hello, ping, N) to drive internal/conn, and lets a
// test script every request: answer late, with the wrong id, not at all, or
// end the connection. Real servers are for the end-to-end tests; this is for
// the cases a real server cannot be made to play on cue.
package conntest

import (
	"encoding/binary"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/standbyd/standbyd/internal/protocol"
)

// Handler answers one request. It may use c to reply (Reply, ErrorReply,
// Send), to hang up (Close, Fatal), or do nothing (no reply). It returns
// false to end the connection after it.
type Handler func(c *Conn, req Request) bool

// Primary is a fake primary listening on a loopback port.
type Primary struct {
	t  testing.TB
	ln net.Listener

	mu         sync.Mutex
	hello      protocol.HelloReply // what hello answers
	onCopyDone func()
	handlers   map[uint16]Handler
	conns      []*Conn
	wal        uint64

	accepted atomic.Int32
	received sync.Map // op -> *atomic.Int32
	wg       sync.WaitGroup
}

// Start starts a fake primary; it stops at the end of the test.
func Start(t testing.TB) *Primary {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Primary{t: t, ln: ln, handlers: map[uint16]Handler{},
		hello: protocol.HelloReply{Version: protocol.MaxVersion, ServerVersionNum: 150020, SystemIdentifier: 7,
			Timeline: 1, MaxFrameSize: protocol.DefaultMaxFrameSize}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Stop)
	return p
}

// Stop closes the listener and every connection and waits for them.
func (p *Primary) Stop() {
	_ = p.ln.Close()
	p.KillAll()
	p.wg.Wait()
}

// Config is a pgconn config that reaches this primary.
func (p *Primary) Config() *pgconn.Config {
	port := p.ln.Addr().(*net.TCPAddr).Port
	cfg, err := pgconn.ParseConfig("host=127.0.0.1 user=standbyd dbname=postgres sslmode=disable connect_timeout=5 port=" + strconv.Itoa(port))
	if err != nil {
		p.t.Fatal(err)
	}
	return cfg
}

// Handle sets the handler of op (nil restores the default).
func (p *Primary) Handle(op uint16, h Handler) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if h == nil {
		delete(p.handlers, op)
		return
	}
	p.handlers[op] = h
}

// SetOps sets the operations hello offers.
func (p *Primary) SetOps(ops []protocol.OpInfo) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hello.Ops = ops
}

// SetMaxVersion sets the highest protocol version hello agrees to (1: an
// older extension, one request at a time and no goodbye).
func (p *Primary) SetMaxVersion(v uint16) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hello.Version = v
}

// SetMaxFrameSize sets the max frame size hello announces.
func (p *Primary) SetMaxFrameSize(n uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hello.MaxFrameSize = n
}

// SetWAL sets the WAL position pings report.
func (p *Primary) SetWAL(pos uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wal = pos
}

// OnCopyDone sets a function called when a client ends the channel with
// CopyDone, before the answer (nil: none).
func (p *Primary) OnCopyDone(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onCopyDone = f
}

// Conns are the connections open now.
func (p *Primary) Conns() []*Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Conn(nil), p.conns...)
}

// Accepted is how many connections were accepted.
func (p *Primary) Accepted() int { return int(p.accepted.Load()) }

// Received is how many requests of op reached the primary.
func (p *Primary) Received(op uint16) int {
	v, ok := p.received.Load(op)
	if !ok {
		return 0
	}
	return int(v.(*atomic.Int32).Load())
}

// KillAll closes every open connection without a word, as a crash would.
func (p *Primary) KillAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// TerminateAll ends every open connection as pg_terminate_backend does:
// on a version-2 channel a goodbye naming the last request read, then
// FATAL 57P01, then EOF.
func (p *Primary) TerminateAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Terminate()
	}
}

func (p *Primary) accept() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		c := &Conn{nc: nc, be: pgproto3.NewBackend(nc, nc), pid: uint32(1000 + p.accepted.Load())}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			p.serve(c)
		}()
	}
}

func (p *Primary) count(op uint16) {
	v, _ := p.received.LoadOrStore(op, new(atomic.Int32))
	v.(*atomic.Int32).Add(1)
}

func (p *Primary) serve(c *Conn) {
	msg, err := c.be.ReceiveStartupMessage()
	if err != nil {
		return
	}
	if _, ok := msg.(*pgproto3.StartupMessage); !ok {
		return
	}
	c.be.Send(&pgproto3.AuthenticationOk{})
	c.be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.20"})
	c.be.Send(&pgproto3.BackendKeyData{ProcessID: c.pid, SecretKey: []byte{0, 0, 0, 1}})
	c.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if c.be.Flush() != nil {
		return
	}
	for {
		msg, err := c.be.Receive()
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			c.mu.Lock()
			c.queries = append(c.queries, m.String)
			c.mu.Unlock()
			if len(m.String) >= 5 && m.String[:5] == "CALL " {
				c.be.Send(&pgproto3.CopyBothResponse{})
				if c.be.Flush() != nil {
					return
				}
				p.channel(c)
				return
			}
			c.be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SET")})
			c.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			if c.be.Flush() != nil {
				return
			}
		case *pgproto3.Terminate:
			return
		default:
			return
		}
	}
}

// channel serves frames in COPY BOTH until the client leaves.
func (p *Primary) channel(c *Conn) {
	for {
		msg, err := c.be.Receive()
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			req, err := ParseRequest(m.Data)
			if err != nil {
				c.Fatal(pgerrcode.ProtocolViolation, "malformed frame")
				return
			}
			req.Payload = append([]byte(nil), req.Payload...)
			c.lastRead.Store(req.ID)
			p.count(req.Op)
			p.mu.Lock()
			h := p.handlers[req.Op]
			p.mu.Unlock()
			if h == nil {
				h = p.builtin
			}
			if !h(c, req) {
				return
			}
		case *pgproto3.CopyDone:
			p.mu.Lock()
			f := p.onCopyDone
			p.mu.Unlock()
			if f != nil {
				f()
			}
			c.be.Send(&pgproto3.CopyDone{})
			c.be.Send(&pgproto3.CommandComplete{CommandTag: []byte("CALL")})
			c.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			_ = c.be.Flush()
		case *pgproto3.Terminate:
			return
		default:
			return
		}
	}
}

// builtin is the default handler: hello, ping and N as the extension
// answers them; anything else gets 42883.
func (p *Primary) builtin(c *Conn, req Request) bool {
	p.mu.Lock()
	hello, wal := p.hello, p.wal
	p.mu.Unlock()
	switch req.Op {
	case protocol.OpHello:
		if len(req.Payload) < 8 {
			return c.ErrorReply(req, pgerrcode.InvalidParameterValue, "hello payload must be at least 8 bytes")
		}
		lo, hi := binary.BigEndian.Uint16(req.Payload), binary.BigEndian.Uint16(req.Payload[2:])
		if lo > hello.Version || hi < protocol.Version1 {
			return c.ErrorReply(req, pgerrcode.ProtocolViolation, "no common protocol version")
		}
		hello.Version = min(hello.Version, hi)
		c.version.Store(uint32(hello.Version))
		return c.Reply(req, AppendHelloReply(nil, hello))
	case protocol.OpPing:
		return c.Reply(req, AppendPingReply(nil, protocol.PingReply{ServerTime: time.Now(), WALPosition: wal, Timeline: 1}))
	case protocol.OpN:
		args, err := protocol.ParseN(req.Payload)
		if err != nil {
			return c.ErrorReply(req, pgerrcode.InvalidParameterValue, err.Error())
		}
		out, err := protocol.ApplyN(args)
		if err != nil {
			return c.ErrorReply(req, pgerrcode.NumericValueOutOfRange, err.Error())
		}
		return c.Reply(req, protocol.AppendN(nil, out))
	}
	return c.ErrorReply(req, pgerrcode.UndefinedFunction, "unknown op "+protocol.OpName(req.Op))
}

// Conn is one client connection to the fake primary.
type Conn struct {
	nc      net.Conn
	be      *pgproto3.Backend
	pid     uint32
	wmu     sync.Mutex
	mu      sync.Mutex
	queries []string
	once    sync.Once

	version  atomic.Uint32 // chosen by hello
	lastRead atomic.Uint32 // id of the last request read
}

// LastRead is the id of the last request this connection read.
func (c *Conn) LastRead() uint32 { return c.lastRead.Load() }

// Goodbye sends a goodbye frame naming the last request read, as the
// extension does before a FATAL on a version-2 channel.
func (c *Conn) Goodbye(code, msg string) bool {
	return c.Send(AppendGoodbye(nil, c.lastRead.Load(), code, msg))
}

// Terminate ends the connection as pg_terminate_backend does: a goodbye
// on a version-2 channel, FATAL 57P01, EOF.
func (c *Conn) Terminate() {
	const msg = "terminating connection due to administrator command"
	if c.version.Load() >= uint32(protocol.Version2) {
		c.Goodbye(pgerrcode.AdminShutdown, msg)
	}
	c.Fatal(pgerrcode.AdminShutdown, msg)
}

// PID is the fake backend's process id.
func (c *Conn) PID() uint32 { return c.pid }

// Queries are the simple-Query strings the client sent before the channel.
func (c *Conn) Queries() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.queries...)
}

// Send sends one CopyData with data as it is.
func (c *Conn) Send(data []byte) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.be.Send(&pgproto3.CopyData{Data: data})
	return c.be.Flush() == nil
}

// SendRaw writes bytes as they are, outside any message framing.
func (c *Conn) SendRaw(b []byte) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(b)
	return err == nil
}

// Reply answers req with an ok reply.
func (c *Conn) Reply(req Request, payload []byte) bool {
	return c.Send(AppendReply(nil, req.Op, req.ID, protocol.StatusOK, payload))
}

// ErrorReply answers req with an error reply in the layout of the
// connection's version.
func (c *Conn) ErrorReply(req Request, sqlstate, msg string) bool {
	return c.ErrorReplyFull(req, protocol.ServerError{SQLState: sqlstate, Message: msg})
}

// ErrorReplyFull answers req with an error reply carrying a detail and a
// hint on a version-3 channel (dropped before; hello's errors keep the
// version-1 layout, as the extension's do).
func (c *Conn) ErrorReplyFull(req Request, se protocol.ServerError) bool {
	if c.version.Load() < uint32(protocol.Version3) || req.Op == protocol.OpHello {
		return c.Send(AppendErrorReply(nil, req.Op, req.ID, se.SQLState, se.Message))
	}
	return c.Send(AppendReply(nil, req.Op, req.ID, protocol.StatusError, protocol.AppendErrorPayloadV3(nil, se)))
}

// Fatal sends a FATAL ErrorResponse and closes the connection.
func (c *Conn) Fatal(code, msg string) {
	c.wmu.Lock()
	c.be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
	_ = c.be.Flush()
	c.wmu.Unlock()
	c.Close()
}

// Abort closes the connection with a reset, as a backend that exits with
// requests still unread in its socket does.
func (c *Conn) Abort() {
	c.once.Do(func() {
		if tc, ok := c.nc.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.nc.Close()
	})
}

// Close closes the connection without a word.
func (c *Conn) Close() { c.once.Do(func() { _ = c.nc.Close() }) }

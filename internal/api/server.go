package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"os/user"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/protocol"
)

// Channel is what the API needs of the supervisor.
type Channel interface {
	Call(ctx context.Context, op uint16, payload []byte) ([]byte, error)
	Status() conn.Status
	// ResolveOp resolves an op name, refreshing the primary's op list when
	// the name is unknown.
	ResolveOp(ctx context.Context, ref string) (uint16, error)
}

// ServerConfig configures the API server.
type ServerConfig struct {
	Socket     string
	SocketMode fs.FileMode
	// SocketGroup, if set, owns the socket (its members may call).
	SocketGroup    string
	DefaultTimeout time.Duration
	MaxTimeout     time.Duration
	// MaxPayload is the largest request payload accepted (the frame limit
	// less the header).
	MaxPayload int
	// MaxConns bounds the connections served at once (0: 1024).
	MaxConns int
	// CallSlots bounds the calls whose body is read and that wait for or
	// use a session (the queue limit plus the sessions); a call takes its
	// slot before its body is read. 0: only MaxConns bounds them.
	CallSlots int
	// Allow is the per-op allow-list; nil lets every caller call every op.
	Allow *Policy
	// Denied is told of every call that Allow refused (a metric).
	Denied func(op uint16)
	// SlowThreshold: a call still running after this long is logged with
	// its caller (0: never).
	SlowThreshold time.Duration
	// FastMaxInFlight bounds the requests one fast path connection has
	// in flight; more are answered busy (0: DefaultFastMaxInFlight).
	FastMaxInFlight int
	// FastFrameTimeout: a fast path frame that has begun must be complete
	// within it, or its connection is closed (0: DefaultFastFrameTimeout).
	FastFrameTimeout time.Duration
	// SQLCalls gives the counter of the calls of a SQL session's database
	// and role (identify frames), by result ("ok" or the error kind); nil:
	// not counted.
	SQLCalls func(database, role string) func(result string)
	Logger   *zap.Logger
}

// Server serves the local API on a Unix socket.
type Server struct {
	cfg       ServerConfig
	ch        Channel
	ln        *limitListener
	split     *splitListener
	srv       *http.Server
	log       *zap.Logger
	slots     chan struct{} // nil: no bound but MaxConns
	activated bool          // the socket came from systemd, which owns its path
	stopping  atomic.Bool

	serveMu    sync.Mutex
	fastMu     sync.Mutex
	fastConns  map[*fastConn]struct{}
	fastClosed bool
}

// Listen takes the socket from systemd (socket activation), or creates it
// (replacing a stale one left by a crash) with the configured mode and
// group.
func Listen(cfg ServerConfig, ch Channel) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 1024
	}
	if cfg.FastMaxInFlight <= 0 {
		cfg.FastMaxInFlight = DefaultFastMaxInFlight
	}
	if cfg.FastFrameTimeout <= 0 {
		cfg.FastFrameTimeout = DefaultFastFrameTimeout
	}
	ln, err := systemdListener()
	if err != nil {
		return nil, err
	}
	activated := ln != nil
	if !activated {
		gid := -1
		if cfg.SocketGroup != "" {
			g, err := user.LookupGroup(cfg.SocketGroup)
			if err != nil {
				return nil, fmt.Errorf("api.socket_group: %w", err)
			}
			gid, _ = strconv.Atoi(g.Gid)
		}
		ul, err := createSocket(cfg.Socket, cfg.SocketMode, gid)
		if err != nil {
			return nil, err
		}
		ln = ul
	}
	s := &Server{cfg: cfg, ch: ch, ln: newLimitListener(ln, cfg.MaxConns), log: cfg.Logger, activated: activated,
		fastConns: map[*fastConn]struct{}{}}
	s.split = newSplitListener(s.ln, cfg.Logger, s.serveFast)
	if cfg.CallSlots > 0 {
		s.slots = make(chan struct{}, cfg.CallSlots)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/call/{op}", s.handleCall)
	mux.HandleFunc("GET /v1/status", s.handleStatus)
	mux.HandleFunc("GET /v1/ops", s.handleOps)
	s.srv = &http.Server{
		Handler:     mux,
		ConnContext: connContext,
		// A client that sends slowly holds only its own connection, and
		// not for long; a call may take up to MaxTimeout to answer.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      cfg.MaxTimeout + 30*time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          zap.NewStdLog(cfg.Logger.Named("api")),
	}
	return s, nil
}

// Activated reports whether the socket came from systemd.
func (s *Server) Activated() bool { return s.activated }

// Addr is the socket's path (the one systemd passed, with activation).
func (s *Server) Addr() string {
	if s.activated {
		return s.ln.Addr().String()
	}
	return s.cfg.Socket
}

// Serve answers requests until StopAccepting or Shutdown.
func (s *Server) Serve() error {
	// Under serveMu, so that Shutdown's wait cannot race this Add: either
	// the accept loop counts before StopAccepting, or it never starts.
	s.serveMu.Lock()
	if s.stopping.Load() {
		s.serveMu.Unlock()
		return nil
	}
	s.split.wg.Add(1)
	s.serveMu.Unlock()
	go s.split.run()
	err := s.srv.Serve(s.split)
	if errors.Is(err, http.ErrServerClosed) || s.stopping.Load() {
		return nil
	}
	return err
}

// StopAccepting closes the socket: new callers are refused (nothing of
// theirs is read), calls in progress go on. The path is removed unless
// systemd owns it.
func (s *Server) StopAccepting() {
	s.serveMu.Lock()
	already := s.stopping.Swap(true)
	s.serveMu.Unlock()
	if already {
		return
	}
	_ = s.split.Close()
	if !s.activated {
		_ = os.Remove(s.cfg.Socket)
	}
}

// Shutdown stops accepting, waits for requests in progress until ctx ends,
// and removes the socket.
func (s *Server) Shutdown(ctx context.Context) error {
	s.StopAccepting()
	s.drainFast()
	fastDone := make(chan struct{})
	go func() { defer close(fastDone); s.split.wg.Wait() }()
	err := s.srv.Shutdown(ctx)
	select {
	case <-fastDone:
	case <-ctx.Done():
		s.closeFast()
		<-fastDone
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}

func (s *Server) handleCall(w http.ResponseWriter, r *http.Request) {
	peer := peerFrom(r.Context())
	name := r.PathValue("op")
	// ResolveOp may say hello again to learn a handler registered since;
	// the allow-list is then checked against what that hello offered.
	op, err := s.ch.ResolveOp(r.Context(), name)
	if err != nil {
		writeError(w, http.StatusBadRequest, client.ErrorDetail{Kind: client.KindBadRequest, Message: err.Error()})
		return
	}
	who := slices.Clip(append(peer.fields(), zap.String("op", protocol.OpName(op))))
	if ce := s.log.Check(zap.DebugLevel, "call"); ce != nil {
		ce.Write(who...)
	}
	if d := s.allowed(op, peer); !d.allowed {
		// Refused before the body is read: no payload is held or logged.
		s.log.Warn("call refused by api.allow", who...)
		if s.cfg.Denied != nil {
			s.cfg.Denied(op)
		}
		refuse(w, http.StatusForbidden, client.ErrorDetail{Kind: client.KindForbidden, Message: deniedMessage(name, peer)})
		return
	}
	timeout := s.cfg.DefaultTimeout
	if t := r.URL.Query().Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, client.ErrorDetail{Kind: client.KindBadRequest,
				Message: fmt.Sprintf("timeout %q is not a positive duration like 5s", t)})
			return
		}
		timeout = min(d, s.cfg.MaxTimeout)
	}
	if s.slots != nil {
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		default:
			refuse(w, http.StatusTooManyRequests, client.ErrorDetail{Kind: client.KindBusy,
				Message: fmt.Sprintf("%d calls are already waiting or running", cap(s.slots))})
			return
		}
	}
	body, err := s.readBody(w, r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			refuse(w, http.StatusRequestEntityTooLarge, client.ErrorDetail{Kind: client.KindPayloadTooLarge,
				Message: fmt.Sprintf("payload larger than %d bytes", s.cfg.MaxPayload)})
			return
		}
		writeError(w, http.StatusBadRequest, client.ErrorDetail{Kind: client.KindBadRequest, Message: "reading the body: " + err.Error()})
		return
	}
	payload, err := DecodeCallBody(r.Header.Get("Content-Type"), body)
	if err != nil {
		writeError(w, http.StatusBadRequest, client.ErrorDetail{Kind: client.KindBadRequest, Message: err.Error()})
		return
	}
	if len(payload) > s.cfg.MaxPayload {
		writeError(w, http.StatusRequestEntityTooLarge, client.ErrorDetail{Kind: client.KindPayloadTooLarge,
			Message: fmt.Sprintf("payload larger than %d bytes", s.cfg.MaxPayload)})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	if s.cfg.SlowThreshold > 0 {
		start := time.Now()
		slow := time.AfterFunc(s.cfg.SlowThreshold, func() {
			s.log.Warn("call slow", append(who, zap.Duration("waiting", time.Since(start)))...)
		})
		defer slow.Stop()
	}
	reply, err := s.ch.Call(ctx, op, payload)
	if err != nil {
		code, detail := classify(err)
		writeError(w, code, detail)
		return
	}
	if isJSON(r.Header.Get("Content-Type")) || wantsJSON(r.Header.Get("Accept")) {
		writeJSON(w, http.StatusOK, encodeCallResponse(protocol.OpName(op), op, reply))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(reply)))
	_, _ = w.Write(reply)
}

// readBody reads a call's body, no more than a frame can carry: the raw
// payload, or its JSON form, which may be up to twice as long (hex) plus
// the JSON around it.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := int64(s.cfg.MaxPayload)
	if isJSON(r.Header.Get("Content-Type")) {
		limit = limit*2 + 1024
	}
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
}

// outcomeReporter is how a call error says that its request was written
// and no reply came (conn.CallError says so; fakes in tests may too).
type outcomeReporter interface{ OutcomeUnknown() bool }

// classify maps a call error to an HTTP status and an error kind.
func classify(err error) (int, client.ErrorDetail) {
	var se *protocol.ServerError
	var ce *conn.CallError
	var ou outcomeReporter
	switch {
	case errors.As(err, &se):
		return http.StatusUnprocessableEntity, client.ErrorDetail{Kind: client.KindPrimaryError, Message: se.Message, SQLState: se.SQLState,
			Detail: se.Detail, Hint: se.Hint}
	case errors.Is(err, conn.ErrBusy):
		return http.StatusTooManyRequests, client.ErrorDetail{Kind: client.KindBusy, Message: err.Error()}
	case errors.Is(err, conn.ErrNotStandby):
		return http.StatusConflict, client.ErrorDetail{Kind: client.KindNotStandby, Message: err.Error()}
	case errors.Is(err, conn.ErrStopped):
		return http.StatusServiceUnavailable, client.ErrorDetail{Kind: client.KindShuttingDown, Message: err.Error()}
	case errors.As(err, &ou) && ou.OutcomeUnknown():
		return http.StatusGatewayTimeout, client.ErrorDetail{Kind: client.KindOutcomeUnknown, Message: err.Error()}
	case errors.Is(err, conn.ErrUnavailable):
		return http.StatusServiceUnavailable, client.ErrorDetail{Kind: client.KindChannelUnavailable, Message: err.Error()}
	case errors.As(err, &ce):
		// Not sent: a local refusal such as an oversize frame.
		return http.StatusBadRequest, client.ErrorDetail{Kind: client.KindBadRequest, Message: err.Error()}
	}
	return http.StatusServiceUnavailable, client.ErrorDetail{Kind: client.KindChannelUnavailable, Message: err.Error()}
}

func (s *Server) handleStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, statusResponse(s.ch.Status()))
}

func (s *Server) handleOps(w http.ResponseWriter, _ *http.Request) {
	st := s.ch.Status()
	if st.State != conn.StateReady {
		writeError(w, http.StatusServiceUnavailable, client.ErrorDetail{Kind: client.KindChannelUnavailable,
			Message: "the channel is " + st.State.String() + "; the primary's ops are known once it is ready"})
		return
	}
	resp := client.OpsResponse{Ops: []client.Op{}}
	for _, o := range st.Hello.Ops {
		resp.Ops = append(resp.Ops, client.Op{Code: o.Op, Name: o.Name, Builtin: o.Builtin})
	}
	writeJSON(w, http.StatusOK, resp)
}

// refuse answers a call whose body was not read, and closes the
// connection: net/http would otherwise read the body (up to 256 KiB) before
// answering, to keep the connection usable.
func refuse(w http.ResponseWriter, code int, d client.ErrorDetail) {
	w.Header().Set("Connection", "close")
	writeError(w, code, d)
}

func writeError(w http.ResponseWriter, code int, d client.ErrorDetail) {
	writeJSON(w, code, client.ErrorBody{Error: d})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// isJSON reports whether a Content-Type value names JSON.
func isJSON(v string) bool {
	mt, _, err := mime.ParseMediaType(v)
	return err == nil && mt == "application/json"
}

package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"time"

	"go.uber.org/zap"

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
	Logger     *zap.Logger
}

// Server serves the local API on a Unix socket.
type Server struct {
	cfg ServerConfig
	ch  Channel
	ln  net.Listener
	srv *http.Server
	log *zap.Logger
}

// Listen creates the socket (replacing a stale one left by a crash) with the
// configured mode.
func Listen(cfg ServerConfig, ch Channel) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if fi, err := os.Lstat(cfg.Socket); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("api socket %s exists and is not a socket", cfg.Socket)
		}
		// A socket nobody answers on is stale; one that answers belongs to
		// another running daemon.
		if c, err := net.DialTimeout("unix", cfg.Socket, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("api socket %s is in use by another process", cfg.Socket)
		}
		if err := os.Remove(cfg.Socket); err != nil {
			return nil, fmt.Errorf("removing stale api socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		return nil, fmt.Errorf("api socket: %w", err)
	}
	if err := os.Chmod(cfg.Socket, cfg.SocketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api socket mode: %w", err)
	}
	if cfg.SocketGroup != "" {
		g, err := user.LookupGroup(cfg.SocketGroup)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("api socket group: %w", err)
		}
		gid, _ := strconv.Atoi(g.Gid)
		if err := os.Chown(cfg.Socket, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("api socket group %s: %w", cfg.SocketGroup, err)
		}
	}
	s := &Server{cfg: cfg, ch: ch, ln: ln, log: cfg.Logger}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/call/{op}", s.handleCall)
	mux.HandleFunc("GET /v1/status", s.handleStatus)
	mux.HandleFunc("GET /v1/ops", s.handleOps)
	s.srv = &http.Server{
		Handler: mux,
		// A client that sends slowly holds only its own connection, and
		// not for long; a call may take up to MaxTimeout to answer.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      cfg.MaxTimeout + 30*time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          zap.NewStdLog(cfg.Logger.Named("api")),
	}
	return s, nil
}

// Serve answers requests until Shutdown.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, waits for requests in progress until ctx ends,
// and removes the socket.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	_ = os.Remove(s.cfg.Socket)
	return err
}

func (s *Server) handleCall(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("op")
	op, err := s.ch.ResolveOp(r.Context(), name)
	if err != nil {
		writeError(w, http.StatusBadRequest, ErrorDetail{Kind: KindBadRequest, Message: err.Error()})
		return
	}
	timeout := s.cfg.DefaultTimeout
	if t := r.URL.Query().Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, ErrorDetail{Kind: KindBadRequest,
				Message: fmt.Sprintf("timeout %q is not a positive duration like 5s", t)})
			return
		}
		timeout = min(d, s.cfg.MaxTimeout)
	}
	// The JSON form may be larger than the payload it carries (base64).
	limit := int64(s.cfg.MaxPayload)
	if isJSON(r.Header.Get("Content-Type")) {
		limit = limit*2 + 1024
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, ErrorDetail{Kind: KindPayloadTooLarge,
				Message: fmt.Sprintf("payload larger than %d bytes", s.cfg.MaxPayload)})
			return
		}
		writeError(w, http.StatusBadRequest, ErrorDetail{Kind: KindBadRequest, Message: "reading the body: " + err.Error()})
		return
	}
	payload, err := DecodeCallBody(r.Header.Get("Content-Type"), body)
	if err != nil {
		writeError(w, http.StatusBadRequest, ErrorDetail{Kind: KindBadRequest, Message: err.Error()})
		return
	}
	if len(payload) > s.cfg.MaxPayload {
		writeError(w, http.StatusRequestEntityTooLarge, ErrorDetail{Kind: KindPayloadTooLarge,
			Message: fmt.Sprintf("payload larger than %d bytes", s.cfg.MaxPayload)})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	reply, err := s.ch.Call(ctx, op, payload)
	if err != nil {
		code, detail := classify(err)
		writeError(w, code, detail)
		return
	}
	if isJSON(r.Header.Get("Content-Type")) || isJSON(r.Header.Get("Accept")) {
		writeJSON(w, http.StatusOK, encodeCallResponse(protocol.OpName(op), op, reply))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(reply)))
	_, _ = w.Write(reply)
}

// classify maps a call error to an HTTP status and an error kind.
func classify(err error) (int, ErrorDetail) {
	var se *protocol.ServerError
	var ce *conn.CallError
	switch {
	case errors.As(err, &se):
		return http.StatusUnprocessableEntity, ErrorDetail{Kind: KindPrimaryError, Message: se.Message, SQLState: se.SQLState}
	case errors.Is(err, conn.ErrBusy):
		return http.StatusTooManyRequests, ErrorDetail{Kind: KindBusy, Message: err.Error()}
	case errors.Is(err, conn.ErrStopped):
		return http.StatusServiceUnavailable, ErrorDetail{Kind: KindShuttingDown, Message: err.Error()}
	case errors.As(err, &ce) && ce.OutcomeUnknown():
		return http.StatusGatewayTimeout, ErrorDetail{Kind: KindOutcomeUnknown, Message: err.Error()}
	case errors.Is(err, conn.ErrUnavailable):
		return http.StatusServiceUnavailable, ErrorDetail{Kind: KindChannelUnavailable, Message: err.Error()}
	case errors.As(err, &ce):
		// Not sent: a local refusal such as an oversize frame.
		return http.StatusBadRequest, ErrorDetail{Kind: KindBadRequest, Message: err.Error()}
	}
	return http.StatusServiceUnavailable, ErrorDetail{Kind: KindChannelUnavailable, Message: err.Error()}
}

func (s *Server) handleStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, statusResponse(s.ch.Status()))
}

func (s *Server) handleOps(w http.ResponseWriter, _ *http.Request) {
	st := s.ch.Status()
	if st.State != conn.StateReady {
		writeError(w, http.StatusServiceUnavailable, ErrorDetail{Kind: KindChannelUnavailable,
			Message: "the channel is " + st.State.String() + "; the primary's ops are known once it is ready"})
		return
	}
	resp := OpsResponse{Ops: []Op{}}
	for _, o := range st.Hello.Ops {
		resp.Ops = append(resp.Ops, Op{Code: o.Op, Name: o.Name, Builtin: o.Builtin})
	}
	writeJSON(w, http.StatusOK, resp)
}

func writeError(w http.ResponseWriter, code int, d ErrorDetail) {
	writeJSON(w, code, ErrorBody{Error: d})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func formatSysID(id uint64) string { return strconv.FormatUint(id, 10) }

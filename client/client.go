// Package client is the Go client of standbyd's local request API (the
// daemon's Unix socket, docs/api.md), for programs on the standby host that
// send requests through the channel to the primary. Calls take the fast
// path, a binary framing that carries every concurrent call of a Client on
// one connection; WithHTTP sends them as HTTP requests instead. Status and
// Ops are HTTP requests.
//
//	c := client.New("/run/standbyd/standbyd.sock")
//	defer c.Close()
//	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
//	defer cancel()
//	reply, err := c.Call(ctx, "last_order", nil) // a handler registered on the primary
//	var apiErr *client.Error
//	switch {
//	case errors.As(err, &apiErr) && apiErr.Kind == client.KindPrimaryError:
//		// the handler failed: apiErr.SQLState, apiErr.Message
//	case errors.As(err, &apiErr) && apiErr.Kind == client.KindOutcomeUnknown,
//		errors.Is(err, client.ErrOutcomeUnknown):
//		// sent, no reply: it may have run; do not blindly repeat a write
//	case err != nil:
//		// daemon unreachable, channel unavailable, busy, forbidden, ...
//	}
//
// The context's deadline is the call's deadline: the daemon gives up at it
// and says why.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync/atomic"
	"time"
)

// Client talks to a running standbyd through its API socket. It is safe for
// concurrent use.
type Client struct {
	hc       *http.Client
	socket   string
	maxReply int64
	fast     *fastTransport // nil: calls go over HTTP
}

// ErrDaemonUnreachable is wrapped by errors of calls that could not reach
// the daemon's socket (not running, wrong path, no permission): nothing was
// written to the daemon.
var ErrDaemonUnreachable = errors.New("standbyd not reachable")

// ErrOutcomeUnknown is wrapped by errors of calls whose request was handed
// to the daemon but whose answer never came (the daemon died, the
// connection broke, the deadline passed): the request may have run on the
// primary. Like an outcome_unknown answer, it must not be repeated blindly.
var ErrOutcomeUnknown = errors.New("request handed to standbyd, no answer")

// Default limits; see the Option functions.
const (
	// DefaultMaxReply is the largest reply read: the largest frame a daemon
	// can be configured for (channel.max_frame_size), with room for the
	// JSON forms.
	DefaultMaxReply = 256<<20 + 64<<10
	// DefaultPoolSize is how many idle connections to the daemon are kept.
	DefaultPoolSize = 4
)

// Option changes a Client's defaults.
type Option func(*options)

type options struct {
	maxReply int64
	pool     int
	http     bool
}

// WithHTTP makes Call send HTTP requests, one connection per concurrent
// call, as curl does, rather than take the fast path.
func WithHTTP() Option { return func(o *options) { o.http = true } }

// WithMaxReply bounds the size of a reply (or any answer) the client reads;
// a larger one is an error, never an allocation of its size.
func WithMaxReply(n int64) Option { return func(o *options) { o.maxReply = n } }

// WithPoolSize sets how many idle HTTP connections to the daemon are kept
// for reuse (Status, Ops, and calls WithHTTP): as many as the program makes
// concurrent HTTP requests.
func WithPoolSize(n int) Option { return func(o *options) { o.pool = n } }

// New returns a client for the socket at path.
func New(socket string, opts ...Option) *Client {
	o := options{maxReply: DefaultMaxReply, pool: DefaultPoolSize}
	for _, f := range opts {
		f(&o)
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", socket)
			if err != nil {
				return nil, err
			}
			return &countingConn{Conn: c}, nil
		},
		// Every connection goes to the one daemon: the per-host bound is the
		// pool (its default, 2, would close connections a pool of 4 keeps).
		MaxIdleConns:        o.pool,
		MaxIdleConnsPerHost: o.pool,
		IdleConnTimeout:     30 * time.Second,
	}
	c := &Client{hc: &http.Client{Transport: tr}, socket: socket, maxReply: o.maxReply}
	if !o.http {
		c.fast = &fastTransport{socket: socket, maxReply: o.maxReply}
	}
	return c
}

// Close releases the client's connections (a later call opens a new one).
// Calls in flight on the fast path end with ErrOutcomeUnknown.
func (c *Client) Close() {
	c.hc.CloseIdleConnections()
	if c.fast != nil {
		c.fast.close()
	}
}

// Error is an error answered by the daemon (see the Kind* constants).
type Error struct {
	HTTPStatus int
	ErrorDetail
}

func (e *Error) Error() string {
	if e.SQLState != "" {
		return fmt.Sprintf("%s: %s (SQLSTATE %s)", e.Kind, e.Message, e.SQLState)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Message)
}

// responseGrace is how long past the call's deadline the client waits for
// the daemon's answer: the daemon gives up at the deadline and then says why
// (channel unavailable, outcome unknown), which is worth more than a bare
// client-side timeout.
const responseGrace = 2 * time.Second

// Call sends payload to op (a name like "N" or "ping", or a number) and
// returns the reply payload. The context's deadline is passed to the daemon
// as the call's timeout.
//
// An error wraps ErrDaemonUnreachable only when nothing was written to the
// daemon, and ErrOutcomeUnknown when the request was written but no complete
// answer came back.
func (c *Client) Call(ctx context.Context, op string, payload []byte) ([]byte, error) {
	if c.fast != nil {
		out, err := c.fast.call(ctx, op, payload)
		if !errors.Is(err, errNoFastPath) {
			return out, err
		}
	}
	return c.httpCall(ctx, op, payload)
}

func (c *Client) httpCall(ctx context.Context, op string, payload []byte) ([]byte, error) {
	u := "http://standbyd/v1/call/" + url.PathEscape(op)
	if dl, ok := ctx.Deadline(); ok {
		d := time.Until(dl)
		if d <= 0 {
			return nil, fmt.Errorf("api call: %w: %w", ErrDaemonUnreachable, context.DeadlineExceeded)
		}
		u += "?timeout=" + url.QueryEscape(d.String())
		caller := ctx
		hctx, cancel := context.WithDeadline(context.WithoutCancel(caller), dl.Add(responseGrace))
		defer cancel()
		stop := context.AfterFunc(caller, func() {
			if !errors.Is(caller.Err(), context.DeadlineExceeded) {
				cancel() // cancelled by the caller: stop at once
			}
		})
		defer stop()
		ctx = hctx
	}
	w := &writeWatch{}
	ctx = httptrace.WithClientTrace(ctx, w.trace())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("api call: %w", err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(err, w.handedOver())
	}
	defer resp.Body.Close()
	body, err := c.readBody(resp)
	if err != nil {
		return nil, fmt.Errorf("api call: %w: reading the answer: %w", ErrOutcomeUnknown, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, decodeError(resp.StatusCode, body)
	}
	return body, nil
}

// Status returns the daemon's channel status.
func (c *Client) Status(ctx context.Context) (StatusResponse, error) {
	var st StatusResponse
	err := c.getJSON(ctx, "/v1/status", &st)
	return st, err
}

// Ops returns the operations the primary offers.
func (c *Client) Ops(ctx context.Context) (OpsResponse, error) {
	var ops OpsResponse
	err := c.getJSON(ctx, "/v1/ops", &ops)
	return ops, err
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	w := &writeWatch{}
	ctx = httptrace.WithClientTrace(ctx, w.trace())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://standbyd"+path, nil)
	if err != nil {
		return fmt.Errorf("api %s: %w", path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(err, w.handedOver())
	}
	defer resp.Body.Close()
	body, err := c.readBody(resp)
	if err != nil {
		return fmt.Errorf("api %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("api %s: decoding: %w", path, err)
	}
	return nil
}

// ErrReplyTooLarge is wrapped when an answer exceeds the client's limit
// (WithMaxReply).
var ErrReplyTooLarge = errors.New("answer larger than the client's limit")

// readBody reads an answer up to the client's limit.
func (c *Client) readBody(resp *http.Response) ([]byte, error) {
	if resp.ContentLength > c.maxReply {
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrReplyTooLarge, resp.ContentLength, c.maxReply)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxReply+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > c.maxReply {
		return nil, fmt.Errorf("%w (%d bytes)", ErrReplyTooLarge, c.maxReply)
	}
	return body, nil
}

// transportError words a failure of the HTTP exchange itself: unreachable
// when no byte reached the daemon, outcome unknown once one did.
func (c *Client) transportError(err error, handedOver bool) error {
	var op *net.OpError
	if handedOver {
		// The socket's address in a net error is the name the daemon bound,
		// not the path callers use: say the path.
		if errors.As(err, &op) {
			err = fmt.Errorf("%s: %w", op.Op, op.Err)
		}
		return fmt.Errorf("%w at %s: %w", ErrOutcomeUnknown, c.socket, err)
	}
	if errors.As(err, &op) && op.Op == "dial" {
		return fmt.Errorf("%w at %s: %w", ErrDaemonUnreachable, c.socket, op.Err)
	}
	return fmt.Errorf("%w at %s: %w", ErrDaemonUnreachable, c.socket, err)
}

func decodeError(status int, body []byte) error {
	var eb ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error.Kind == "" {
		return &Error{HTTPStatus: status, ErrorDetail: ErrorDetail{Kind: "http_error",
			Message: fmt.Sprintf("HTTP %d: %.200s", status, bytes.TrimSpace(body))}}
	}
	return &Error{HTTPStatus: status, ErrorDetail: eb.Error}
}

// countingConn counts the bytes written on a connection, so that a failed
// exchange can tell whether its request left this process.
type countingConn struct {
	net.Conn
	written atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// writeWatch follows the connections one request used (the transport may
// try a second one when the first was closed before any write).
type writeWatch struct {
	conns []*countingConn
	base  []int64
}

func (w *writeWatch) trace() *httptrace.ClientTrace {
	// GotConn runs in the request's goroutine before any write on conn, and
	// handedOver only after Do returned.
	return &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if cc, ok := info.Conn.(*countingConn); ok {
			w.conns = append(w.conns, cc)
			w.base = append(w.base, cc.written.Load())
		}
	}}
}

// handedOver reports whether any byte of the request was written.
func (w *writeWatch) handedOver() bool {
	for i, cc := range w.conns {
		if cc.written.Load() > w.base[i] {
			return true
		}
	}
	return false
}

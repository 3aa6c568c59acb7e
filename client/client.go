// Package client is the Go client of standbyd's local request API (HTTP over
// the daemon's Unix socket, docs/api.md), for programs on the standby host
// that send requests through the channel to the primary.
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
//	case errors.As(err, &apiErr) && apiErr.Kind == client.KindOutcomeUnknown:
//		// sent, no reply: it may have run; do not blindly repeat a write
//	case err != nil:
//		// daemon unreachable, channel unavailable, busy, ...
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
	"net/url"
	"time"
)

// Client talks to a running standbyd through its API socket. It is safe for
// concurrent use.
type Client struct {
	hc     *http.Client
	socket string
}

// ErrDaemonUnreachable is wrapped by errors of calls that could not reach
// the daemon's socket (not running, wrong path, no permission).
var ErrDaemonUnreachable = errors.New("standbyd not reachable")

func (c *Client) transportError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return fmt.Errorf("%w at %s: %w", ErrDaemonUnreachable, c.socket, op.Err)
	}
	return fmt.Errorf("api: %w", err)
}

// New returns a client for the socket at path.
func New(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:    4,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Client{hc: &http.Client{Transport: tr}, socket: socket}
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

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
func (c *Client) Call(ctx context.Context, op string, payload []byte) ([]byte, error) {
	u := "http://standbyd/v1/call/" + url.PathEscape(op)
	if dl, ok := ctx.Deadline(); ok {
		d := time.Until(dl)
		if d <= 0 {
			return nil, fmt.Errorf("api call: %w", context.DeadlineExceeded)
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("api call: %w", err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("api call: reading reply: %w", err)
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://standbyd"+path, nil)
	if err != nil {
		return fmt.Errorf("api %s: %w", path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
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

func decodeError(status int, body []byte) error {
	var eb ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error.Kind == "" {
		return &Error{HTTPStatus: status, ErrorDetail: ErrorDetail{Kind: "http_error",
			Message: fmt.Sprintf("HTTP %d: %.200s", status, bytes.TrimSpace(body))}}
	}
	return &Error{HTTPStatus: status, ErrorDetail: eb.Error}
}

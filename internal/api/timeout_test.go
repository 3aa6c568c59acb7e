package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/api/fastproto"
	"github.com/standbyd/standbyd/internal/protocol"
)

// deadlineChannel records how long each call had before its deadline.
type deadlineChannel struct {
	stubChannel
	left chan time.Duration
}

func (d *deadlineChannel) Call(ctx context.Context, _ uint16, _ []byte) ([]byte, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		d.left <- -1
	} else {
		d.left <- time.Until(dl)
	}
	return nil, nil
}

// A call's deadline: api.default_call_timeout when the caller gives none
// (no ?timeout= on HTTP, 0 in the fast path's timeout field), the caller's
// when it gives one, capped at api.max_call_timeout. Default 10s and cap
// 20s here; the deadline left when the channel sees the call must be at
// most the expected one and not more than 3s below it (a generous bound for
// a loaded machine; the values are 5s apart).
// claim: api.call-timeout-default-and-cap
// claim: api.fast-timeout-field
func TestCallDeadline(t *testing.T) {
	ch := &deadlineChannel{left: make(chan time.Duration, 1)}
	sock := serveCfg(t, ServerConfig{DefaultTimeout: 10 * time.Second, MaxTimeout: 20 * time.Second}, ch)
	check := func(what string, want time.Duration) {
		t.Helper()
		got := <-ch.left
		if got > want || got < want-3*time.Second {
			t.Errorf("%s: %v left, want %v", what, got, want)
		}
	}
	hc := unixHTTP(sock)
	defer hc.CloseIdleConnections()
	for query, want := range map[string]time.Duration{"": 10 * time.Second, "?timeout=5s": 5 * time.Second,
		"?timeout=15s": 15 * time.Second, "?timeout=1h": 20 * time.Second} {
		resp, err := hc.Post("http://standbyd/v1/call/N"+query, "application/octet-stream", strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%q: %d", query, resp.StatusCode)
		}
		check("http "+query, want)
	}
	c, _ := fastDial(t, sock)
	for ms, want := range map[uint32]time.Duration{0: 10 * time.Second, 5000: 5 * time.Second, 15000: 15 * time.Second, 3600000: 20 * time.Second} {
		_, _ = c.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: ms, Op: protocol.OpN, TimeoutMS: ms}))
		if h, _ := readFrame(t, c); h.ID != ms || h.Second != fastproto.StatusOK {
			t.Fatalf("fast path %d ms: %+v", ms, h)
		}
		check(fmt.Sprintf("fast path, timeout field %d ms", ms), want)
	}
}

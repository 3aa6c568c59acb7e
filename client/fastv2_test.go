package client

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/api/fastproto"
	"github.com/standbyd/standbyd/internal/testsock"
)

// serveErrorDaemon runs a daemon that speaks the fast path up to version
// max and answers every request with one primary error in the layout of
// the version it chose; offered receives the version each client offered.
func serveErrorDaemon(t *testing.T, max byte, e fastproto.ErrorReply) (string, <-chan byte) {
	t.Helper()
	offered := make(chan byte, 16)
	sock := testsock.Serve(t, func(c net.Conn) {
		v, o, err := fastproto.AcceptHandshake(c, fastproto.ServerPreamble{Version: max, MaxFrame: 1 << 16, MaxInFlight: 8})
		if err != nil {
			return
		}
		offered <- o
		for {
			var hdr [fastproto.HeaderSize]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			h := fastproto.ParseHeader(hdr[:])
			if _, err := io.CopyN(io.Discard, c, int64(h.Length)); err != nil {
				return
			}
			if _, err := c.Write(fastproto.AppendErrorV(nil, v, h.Op, h.ID, e)); err != nil {
				return
			}
		}
	})
	return sock, offered
}

// The client offers fast path version 2 and reads the primary's detail
// and hint from its error replies; a daemon that speaks only version 1
// still serves it, with the message alone.
// claim: api.fast-go-client-v2
func TestFastPathVersion2DetailAndHint(t *testing.T) {
	e := fastproto.ErrorReply{Kind: KindPrimaryError, SQLState: "P0001", Message: "out of stock", Detail: "item 7", Hint: "order fewer"}
	for _, tc := range []struct {
		daemon       byte
		detail, hint string
	}{{2, "item 7", "order fewer"}, {1, "", ""}} {
		sock, offered := serveErrorDaemon(t, tc.daemon, e)
		c := New(sock)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.Call(ctx, "echo", []byte("x"))
		cancel()
		c.Close()
		var ae *Error
		if !errors.As(err, &ae) || ae.Kind != KindPrimaryError || ae.SQLState != "P0001" || ae.Message != "out of stock" ||
			ae.Detail != tc.detail || ae.Hint != tc.hint {
			t.Fatalf("daemon version %d: %v (%+v)", tc.daemon, err, ae)
		}
		if v := <-offered; v != fastproto.Version2 {
			t.Fatalf("the client offered version %d", v)
		}
	}
}

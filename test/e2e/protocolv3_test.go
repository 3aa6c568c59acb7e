package e2e

import (
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/api/fastproto"
)

// opV3Raise raises an error with a detail and a hint on the primary.
const opV3Raise = 292

func installV3Raise(t *testing.T) {
	t.Helper()
	primarySQL(t, `CREATE OR REPLACE FUNCTION public.e2e_v3_raise(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'out of stock' USING ERRCODE = 'P0042', DETAIL = 'item 7 has 0 left', HINT = 'order fewer';
END $$;
GRANT EXECUTE ON FUNCTION public.e2e_v3_raise(bytea) TO standbyd_repl;
SELECT standbyd.register_handler(292, 'v3_raise', 'public.e2e_v3_raise(bytea)')`)
	t.Cleanup(func() {
		_, _ = env.PrimarySQL(context.Background(), "SELECT standbyd.unregister_handler(292); DROP FUNCTION public.e2e_v3_raise(bytea)")
	})
}

// fastRawV opens a fast path connection offering version v.
func fastRawV(t *testing.T, sock string, v byte) (net.Conn, fastproto.ServerPreamble) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	p, err := fastproto.Handshake(c, v)
	if err != nil {
		t.Fatal(err)
	}
	return c, p
}

// v3Answers calls the raising handler over HTTP and over the fast path
// (version 2) and returns both errors.
func v3Answers(t *testing.T, d *daemon) (client.ErrorDetail, fastproto.ErrorReply) {
	t.Helper()
	code, body := postJSON(t, d, "/v1/call/v3_raise", "", nil)
	var eb client.ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || code != 422 {
		t.Fatalf("HTTP: %d %s %v", code, body, err)
	}
	c, p := fastRawV(t, d.socket, fastproto.Version2)
	if p.Version != fastproto.Version2 {
		t.Fatalf("fast path version %d", p.Version)
	}
	if _, err := c.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 5, Op: opV3Raise})); err != nil {
		t.Fatal(err)
	}
	f := fastRead(t, c)
	if f.h.ID != 5 || f.h.Second != fastproto.StatusError {
		t.Fatalf("fast path reply %+v %q", f.h, f.body)
	}
	e, err := fastproto.ParseErrorV(fastproto.Version2, f.body)
	if err != nil {
		t.Fatal(err)
	}
	return eb.Error, e
}

// Over the channel's protocol version 3 (the default) a handler's DETAIL
// and HINT reach the HTTP caller (detail, hint) and the fast path's
// version 2 error reply.
// claim: protocol.v3-error-payload
// claim: api.error-detail-hint
// claim: api.fast-v2-error-layout
// claim: protocol.v3-callers
func TestProtocolV3DetailAndHintReachCallers(t *testing.T) {
	needEnv(t)
	installV3Raise(t)
	d := startDaemon(t, "")
	d.waitReady(30 * time.Second)
	if st := d.status(ctxT(t, 10*time.Second)); st.Primary == nil || st.Primary.ProtocolVersion != 3 {
		t.Fatalf("status %+v", st.Primary)
	}
	h, f := v3Answers(t, d)
	want := client.ErrorDetail{Kind: client.KindPrimaryError, SQLState: "P0042", Message: "out of stock",
		Detail: "item 7 has 0 left", Hint: "order fewer"}
	if h != want {
		t.Fatalf("HTTP error %+v", h)
	}
	if f != (fastproto.ErrorReply{Kind: want.Kind, SQLState: want.SQLState, Message: want.Message, Detail: want.Detail, Hint: want.Hint}) {
		t.Fatalf("fast path error %+v", f)
	}
	// The session went on: an error reply does not end it.
	if out, err := d.client().Call(ctxT(t, 10*time.Second), "N", []byte{0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3}); err != nil || len(out) != 12 {
		t.Fatalf("after the error: %v", err)
	}
}

// With channel.protocol_version 2 the same error carries its message only.
// claim: protocol.v3-negotiated
// claim: protocol.v3-callers
func TestProtocolV2ChannelGivesMessageOnly(t *testing.T) {
	needEnv(t)
	installV3Raise(t)
	d := startDaemon(t, "  protocol_version: 2\n")
	d.waitReady(30 * time.Second)
	if st := d.status(ctxT(t, 10*time.Second)); st.Primary == nil || st.Primary.ProtocolVersion != 2 {
		t.Fatalf("status %+v", st.Primary)
	}
	h, f := v3Answers(t, d)
	if h != (client.ErrorDetail{Kind: client.KindPrimaryError, SQLState: "P0042", Message: "out of stock"}) {
		t.Fatalf("HTTP error %+v", h)
	}
	if f != (fastproto.ErrorReply{Kind: client.KindPrimaryError, SQLState: "P0042", Message: "out of stock"}) {
		t.Fatalf("fast path error %+v", f)
	}
}

package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/api/fastproto"
	"github.com/standbyd/standbyd/internal/testsock"
)

// A fake daemon for the real extension. Several error kinds of
// docs/sqlcall.md's SQLSTATE table cannot be had from a real daemon by a
// correct standbyd.call(): the extension never sends a malformed request
// (bad_request), and it refuses to call on a primary before anything is
// sent, so the daemon's not_standby reaches it only in a race with a
// promotion. A fake fast-path peer answers each request with the error kind
// the test chooses, so that every row of the table that the daemon decides
// is checked against the real extension in a real standby backend.

// fakeAction is what the fake daemon does with the next request.
type fakeAction struct {
	reply fastproto.ErrorReply // the error reply to send
	close bool                 // close the connection instead of replying
	hang  bool                 // read on, never reply
}

type fakeDaemon struct {
	sock string
	mu   sync.Mutex
	next fakeAction
	reqs []fastproto.Request
}

// fakeMaxFrame is the max frame the fake announces: the real daemon's with
// the default channel.max_frame_size.
const fakeMaxFrame = 1<<20 + fastproto.TimeoutSize + 1 + fastproto.MaxNameSize

// startFakeDaemon serves the fast path on a socket that the standby's
// server (the postgres OS user) may open.
func startFakeDaemon(t *testing.T) *fakeDaemon {
	t.Helper()
	f := &fakeDaemon{}
	f.sock = testsock.Serve(t, f.serve)
	// testsock makes a 0700 directory; the standby's backends run as postgres.
	if err := os.Chmod(filepath.Dir(f.sock), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f.sock, 0o777); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeDaemon) set(a fakeAction) {
	f.mu.Lock()
	f.next = a
	f.mu.Unlock()
}

// requests returns the requests received so far and forgets them.
func (f *fakeDaemon) requests() []fastproto.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.reqs
	f.reqs = nil
	return r
}

func (f *fakeDaemon) serve(c net.Conn) {
	v, _, err := fastproto.AcceptHandshake(c, fastproto.ServerPreamble{
		Version: fastproto.MaxVersion, MaxFrame: fakeMaxFrame, MaxInFlight: 128})
	if err != nil {
		return
	}
	for {
		h, body, err := fastproto.ReadFrame(c, fakeMaxFrame-fastproto.HeaderSize)
		if err != nil {
			return
		}
		if h.Kind == fastproto.KindIdentify {
			continue
		}
		req, err := fastproto.ParseRequestBody(h, body)
		if err != nil {
			return
		}
		req.Payload = append([]byte(nil), req.Payload...)
		f.mu.Lock()
		f.reqs = append(f.reqs, req)
		a := f.next
		f.mu.Unlock()
		switch {
		case a.close:
			return
		case a.hang:
			continue
		}
		if _, err := c.Write(fastproto.AppendErrorV(nil, v, h.Op, h.ID, a.reply)); err != nil {
			return
		}
	}
}

// Every error kind of the daemon, answered by a fake daemon to a real
// standby backend, is raised with the SQLSTATE of docs/sqlcall.md's table;
// so are a connection lost after the request was sent (08007, the context
// saying the outcome is unknown), a statement_timeout that passes while
// the daemon has not answered (57014, and the request carried
// statement_timeout as its deadline, 0 when it is off: the deadline the
// daemon waits for the channel until) and no daemon at
// the socket's path (08001). The session goes on after each.
// claim: sqlcall.not-standby
// claim: sqlcall.bad-request
// claim: sqlcall.error-table
// claim: sqlcall.statement-timeout
// claim: sqlcall.channel-unavailable
func TestSQLCallFakeDaemonErrorKinds(t *testing.T) {
	needEnv(t)
	sqlcallInstall(t, env)
	f := startFakeDaemon(t)
	s := sqlConnect(t, env, "standby", "postgres")
	s.mustQuery("SET standbyd.socket = '" + f.sock + "'")
	ctx := ctxT(t, 120*time.Second)

	cases := []struct {
		name     string
		act      fakeAction
		sqlstate string
		// parts of the error that must be there
		message, detail, hint, where string
	}{
		{name: "primary_error", act: fakeAction{reply: fastproto.ErrorReply{Kind: fastproto.ErrorKindPrimaryError,
			SQLState: "SC777", Message: "the handler's message", Detail: "the handler's detail", Hint: "the handler's hint"}},
			sqlstate: "SC777", message: "the handler's message", detail: "the handler's detail", hint: "the handler's hint",
			where: `raised on the primary by handler "` + scEcho + `"`},
		{name: "outcome_unknown", act: fakeAction{reply: fastproto.ErrorReply{Kind: fastproto.ErrorKindOutcomeUnknown, Message: "the channel was lost"}},
			sqlstate: "08007", detail: "the channel was lost"},
		{name: "channel_unavailable", act: fakeAction{reply: fastproto.ErrorReply{Kind: fastproto.ErrorKindChannelUnavailable, Message: "no channel"}},
			sqlstate: "08006", message: "the channel to the primary is unavailable", detail: "no channel"},
		{name: "shutting_down", act: fakeAction{reply: fastproto.ErrorReply{Kind: fastproto.ErrorKindShuttingDown, Message: "stopping"}},
			sqlstate: "08006", message: "the channel to the primary is unavailable", detail: "stopping"},
		{name: "busy", act: fakeAction{reply: fastproto.ErrorReply{Kind: fastproto.ErrorKindBusy, Message: "queue full"}},
			sqlstate: "53000", detail: "queue full"},
		{name: "not_standby", act: fakeAction{reply: fastproto.ErrorReply{Kind: fastproto.ErrorKindNotStandby, Message: "this node was promoted"}},
			sqlstate: "55000", message: "no longer a standby", detail: "this node was promoted"},
		{name: "forbidden", act: fakeAction{reply: fastproto.ErrorReply{Kind: fastproto.ErrorKindForbidden, Message: "uid 999 may not call"}},
			sqlstate: "42501", detail: "uid 999 may not call", hint: "api.allow"},
		{name: "bad_request", act: fakeAction{reply: fastproto.ErrorReply{Kind: fastproto.ErrorKindBadRequest, Message: "malformed"}},
			sqlstate: "22023", detail: "malformed"},
		{name: "payload_too_large", act: fakeAction{reply: fastproto.ErrorReply{Kind: fastproto.ErrorKindPayloadTooLarge, Message: "payload larger than 12 bytes"}},
			sqlstate: "54000", detail: "payload larger than 12 bytes"},
		{name: "connection closed after sending", act: fakeAction{close: true},
			sqlstate: "08007", where: "its outcome there is unknown"},
	}
	for _, c := range cases {
		f.set(c.act)
		_, err := s.call(ctx, scEcho, []byte(c.name), false)
		pe := wantSQLState(t, err, c.sqlstate)
		for _, w := range []struct{ field, got, want string }{
			{"message", pe.Message, c.message}, {"detail", pe.Detail, c.detail},
			{"hint", pe.Hint, c.hint}, {"context", pe.Where, c.where}} {
			if !strings.Contains(w.got, w.want) {
				t.Errorf("%s: the %s %q does not contain %q", c.name, w.field, w.got, w.want)
			}
		}
		reqs := f.requests()
		if len(reqs) != 1 || reqs[0].Op != scEchoCode || string(reqs[0].Payload) != c.name || reqs[0].TimeoutMS != 0 {
			t.Fatalf("%s: the fake daemon received %+v, want one request for op %d with payload %q and no deadline (statement_timeout 0)",
				c.name, reqs, scEchoCode, c.name)
		}
	}

	// No answer: statement_timeout ends the call, and it was the request's
	// deadline too.
	f.set(fakeAction{hang: true})
	s.mustQuery("SET statement_timeout = '700ms'")
	_, err := s.call(ctx, scEcho, []byte("hang"), false)
	pe := wantSQLState(t, err, "57014")
	if !strings.Contains(pe.Where, "its outcome there is unknown") {
		t.Errorf("statement_timeout: the context %q does not say the outcome is unknown", pe.Where)
	}
	if reqs := f.requests(); len(reqs) != 1 || reqs[0].TimeoutMS != 700 {
		t.Fatalf("statement_timeout 700ms: the fake daemon received %+v, want one request with a deadline of 700 ms", reqs)
	}
	s.mustQuery("RESET statement_timeout")

	// Nothing at the socket's path.
	gone := filepath.Join(filepath.Dir(f.sock), "nosuch")
	s.mustQuery("SET standbyd.socket = '" + gone + "'")
	_, err = s.call(ctx, scEcho, []byte("gone"), false)
	pe = wantSQLState(t, err, "08001")
	if !strings.Contains(pe.Message, gone) {
		t.Errorf("daemon unreachable: the message %q does not name %s", pe.Message, gone)
	}
}

package api

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/api/fastproto"
	"github.com/standbyd/standbyd/internal/protocol"
)

// fastDialV opens a fast path connection offering version v and returns
// the daemon's preamble.
func fastDialV(t *testing.T, sock string, v byte) (net.Conn, fastproto.ServerPreamble) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	p, err := fastproto.Handshake(c, v)
	if err != nil {
		t.Fatal(err)
	}
	return c, p
}

// sqlCallsRecorder stands for the metric: it counts the counters made and
// the calls counted, by database, role and result.
type sqlCallsRecorder struct {
	mu     sync.Mutex
	made   int
	counts map[[3]string]int
}

func (r *sqlCallsRecorder) SQLCalls(database, role string) func(string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.made++
	return func(result string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.counts[[3]string{database, role, result}]++
	}
}

func (r *sqlCallsRecorder) get(database, role, result string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[[3]string{database, role, result}]
}

// The daemon answers the lower of the client's version and 2.
// claim: api.fast-v2-preamble
func TestFastPathVersionNegotiation(t *testing.T) {
	sock := serveCfg(t, ServerConfig{}, echoChannel())
	for offer, want := range map[byte]byte{1: 1, 2: 2, 3: 2, 255: 2} {
		if _, p := fastDialV(t, sock, offer); p.Version != want {
			t.Errorf("offered %d, answered %d, want %d", offer, p.Version, want)
		}
	}
}

// On a version 2 connection an error reply carries the primary's detail
// and hint; on version 1 the same error has the version 1 layout.
// claim: api.fast-v2-error-layout
// claim: api.fast-v2-empty-detail
func TestFastPathVersion2ErrorBody(t *testing.T) {
	ch := &stubChannel{reply: func(uint16, []byte) ([]byte, error) {
		return nil, &protocol.ServerError{SQLState: "P0001", Message: "no stock", Detail: "item 7 has 0 left", Hint: "order less"}
	}}
	sock := serveCfg(t, ServerConfig{}, ch)
	c, _ := fastDialV(t, sock, fastproto.Version2)
	_, _ = c.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 1, Op: protocol.OpN}))
	h, body := readFrame(t, c)
	e, err := fastproto.ParseErrorV(fastproto.Version2, body)
	want := fastproto.ErrorReply{Kind: client.KindPrimaryError, SQLState: "P0001", Message: "no stock", Detail: "item 7 has 0 left", Hint: "order less"}
	if h.ID != 1 || h.Second != fastproto.StatusError || err != nil || e != want {
		t.Fatalf("v2: %+v %+v %v", h, e, err)
	}
	// A primary error without detail and hint (as over a channel older than
	// protocol version 3) has them empty, in the same layout.
	se := &protocol.ServerError{SQLState: "P0001", Message: "no stock"}
	ch.reply = func(uint16, []byte) ([]byte, error) { return nil, se }
	_, _ = c.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 3, Op: protocol.OpN}))
	h, body = readFrame(t, c)
	e, err = fastproto.ParseErrorV(fastproto.Version2, body)
	if h.ID != 3 || err != nil || e != (fastproto.ErrorReply{Kind: client.KindPrimaryError, SQLState: "P0001", Message: "no stock"}) {
		t.Fatalf("v2 without detail and hint: %+v %+v %v", h, e, err)
	}
	c1, _ := fastDialV(t, sock, fastproto.Version1)
	_, _ = c1.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: 2, Op: protocol.OpN}))
	_, body = readFrame(t, c1)
	if e, err := fastproto.ParseError(body); err != nil || e.Message != "no stock" || e.SQLState != "P0001" {
		t.Fatalf("v1: %+v %v", e, err)
	}
}

// An identify frame attributes the requests read after it: every log line
// about them carries sql_pid, sql_role and sql_database, and the metric
// counts them by database, role and result; its counter is made once per
// identity, not per call. A later frame (a new role) applies to the
// requests after it; a malformed one is answered bad_request with id 0 and
// the connection goes on.
// claim: api.fast-identify
// claim: api.fast-identify-again
// claim: api.fast-identify-malformed
// claim: api.fast-identify-not-auth
func TestFastPathIdentifyAttributes(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	rec := &sqlCallsRecorder{counts: map[[3]string]int{}}
	sock := serveCfg(t, ServerConfig{Logger: zap.New(core), SQLCalls: rec.SQLCalls,
		Allow: &Policy{Rules: []AllowRule{{Ops: []string{"page"}, UIDs: []uint32{uint32(os.Getuid()) + 1}}}}}, echoChannel())
	c, _ := fastDialV(t, sock, fastproto.Version2)
	roundTrip := func(r fastproto.Request) (fastproto.Header, []byte) {
		t.Helper()
		if _, err := c.Write(fastproto.AppendRequest(nil, r)); err != nil {
			t.Fatal(err)
		}
		return readFrame(t, c)
	}
	// Before any identify frame: not counted.
	if h, _ := roundTrip(fastproto.Request{ID: 1, Op: protocol.OpN}); h.Second != fastproto.StatusOK {
		t.Fatalf("%+v", h)
	}
	_, _ = c.Write(fastproto.AppendIdentify(nil, fastproto.Identify{PID: 4242, Role: "app", Database: "shop"}))
	for id := uint32(2); id < 5; id++ {
		if h, body := roundTrip(fastproto.Request{ID: id, Op: protocol.OpN, Payload: []byte("x")}); h.ID != id || string(body) != "x" {
			t.Fatalf("%+v %q", h, body)
		}
	}
	if h, body := roundTrip(fastproto.Request{ID: 5, Name: "page"}); h.ID != 5 || errorKind(t, h, body) != client.KindForbidden {
		t.Fatalf("%+v %q", h, body)
	}
	// The same identity again costs nothing; a new role is a new identity.
	_, _ = c.Write(fastproto.AppendIdentify(nil, fastproto.Identify{PID: 4242, Role: "app", Database: "shop"}))
	_, _ = c.Write(fastproto.AppendIdentify(nil, fastproto.Identify{PID: 4242, Role: "admin", Database: "shop"}))
	if h, _ := roundTrip(fastproto.Request{ID: 6, Op: protocol.OpN}); h.ID != 6 || h.Second != fastproto.StatusOK {
		t.Fatalf("%+v", h)
	}
	// Malformed: a byte after the database.
	bad := fastproto.AppendIdentify(nil, fastproto.Identify{PID: 1, Role: "x", Database: "y"})
	bad[11]++
	_, _ = c.Write(append(bad, 0))
	h, body := readFrame(t, c)
	if h.ID != 0 || errorKind(t, h, body) != client.KindBadRequest {
		t.Fatalf("malformed identify: %+v %q", h, body)
	}
	if h, _ := roundTrip(fastproto.Request{ID: 7, Op: protocol.OpN}); h.ID != 7 || h.Second != fastproto.StatusOK {
		t.Fatalf("after a malformed identify: %+v", h)
	}
	// Another one is answered too, but not logged again.
	_, _ = c.Write(append(bad, 0))
	if h, body := readFrame(t, c); h.ID != 0 || errorKind(t, h, body) != client.KindBadRequest {
		t.Fatalf("second malformed identify: %+v %q", h, body)
	}
	// The longest identify frame has 516 bytes after its header (two names
	// of 255 bytes): taken. One of 517 is answered bad_request, and the
	// connection goes on.
	longest := fastproto.AppendIdentify(nil, fastproto.Identify{PID: 9, Role: strings.Repeat("r", 255), Database: strings.Repeat("d", 255)})
	if n := len(longest) - fastproto.HeaderSize; n != 516 {
		t.Fatalf("longest identify body: %d bytes", n)
	}
	_, _ = c.Write(longest)
	over := append(append([]byte(nil), longest...), 0)
	binary.BigEndian.PutUint32(over[8:], 517)
	_, _ = c.Write(over)
	if h, body := readFrame(t, c); h.ID != 0 || errorKind(t, h, body) != client.KindBadRequest {
		t.Fatalf("identify of 517 bytes: %+v %q", h, body)
	}
	if h, _ := roundTrip(fastproto.Request{ID: 8, Op: protocol.OpN}); h.ID != 8 || h.Second != fastproto.StatusOK {
		t.Fatalf("after an identify of 517 bytes: %+v", h)
	}
	if got := rec.get(strings.Repeat("d", 255), strings.Repeat("r", 255), "ok"); got != 1 {
		t.Errorf("the longest identify frame was not applied: %d calls counted", got)
	}

	if got := rec.get("shop", "app", "ok"); got != 3 {
		t.Errorf("shop/app ok: %d", got)
	}
	if got := rec.get("shop", "app", client.KindForbidden); got != 1 {
		t.Errorf("shop/app forbidden: %d", got)
	}
	if got := rec.get("shop", "admin", "ok"); got != 2 {
		t.Errorf("shop/admin ok: %d (the request after a malformed frame keeps the identity)", got)
	}
	if rec.made != 3 {
		t.Errorf("%d counters made for 3 identities", rec.made)
	}
	refused := logs.FilterMessage("call refused by api.allow").All()
	if len(refused) != 1 {
		t.Fatalf("refusal logs: %v", logs.All())
	}
	if m := refused[0].ContextMap(); m["sql_pid"] != uint32(4242) || m["sql_role"] != "app" || m["sql_database"] != "shop" || m["uid"] == nil {
		t.Fatalf("refusal log fields %v", m)
	}
	calls := logs.FilterMessage("call").All()
	if len(calls) != 8 {
		t.Fatalf("%d call log lines", len(calls))
	}
	for i, e := range calls {
		m := e.ContextMap()
		switch {
		case i == 0 && m["sql_pid"] != nil:
			t.Errorf("line %d attributed before any identify frame: %v", i, m)
		case i >= 1 && i <= 4 && m["sql_role"] != "app":
			t.Errorf("line %d: %v", i, m)
		case i == 7 && m["sql_role"] != strings.Repeat("r", 255):
			t.Errorf("line %d: %v", i, m)
		case i >= 5 && i < 7 && (m["sql_role"] != "admin" || m["sql_database"] != "shop" || m["sql_pid"] != uint32(4242)):
			t.Errorf("line %d: %v", i, m)
		}
	}
	if logs.FilterMessage("api fast path: malformed identify frame").Len() != 1 {
		t.Errorf("no log line for the malformed identify frame")
	}
}

// On a version 1 connection an identify frame is a frame of unknown kind.
// claim: api.fast-identify
// claim: api.fast-identify-malformed
func TestFastPathIdentifyOnVersion1(t *testing.T) {
	sock := serveCfg(t, ServerConfig{}, echoChannel())
	c, _ := fastDialV(t, sock, fastproto.Version1)
	_, _ = c.Write(fastproto.AppendIdentify(nil, fastproto.Identify{PID: 1, Role: "r", Database: "d"}))
	if h, body := readFrame(t, c); h.ID != 0 || errorKind(t, h, body) != client.KindBadRequest {
		t.Fatalf("%+v %q", h, body)
	}
	waitClosed(t, c)
}

// Attribution costs a request no allocation: a call of an identified
// session allocates as much as an anonymous one.
// claim: api.fast-identify-cost
func TestFastPathIdentifyCostsNoAllocation(t *testing.T) {
	rec := &sqlCallsRecorder{counts: map[[3]string]int{}}
	core, _ := observer.New(zap.InfoLevel)
	sock := serveCfg(t, ServerConfig{Logger: zap.New(core), SQLCalls: rec.SQLCalls,
		SlowThreshold: time.Hour}, echoChannel())
	measure := func(identify bool) float64 {
		c, _ := fastDialV(t, sock, fastproto.Version2)
		_ = c.SetDeadline(time.Time{})
		if identify {
			_, _ = c.Write(fastproto.AppendIdentify(nil, fastproto.Identify{PID: 7, Role: "app", Database: "shop"}))
		}
		req := fastproto.AppendRequest(nil, fastproto.Request{ID: 1, Op: protocol.OpN, Payload: []byte("12345678")})
		reply := make([]byte, fastproto.HeaderSize+8)
		call := func() {
			if _, err := c.Write(req); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, reply); err != nil {
				t.Fatal(err)
			}
		}
		call() // the connection's buffers are made
		return testing.AllocsPerRun(2000, call)
	}
	anonymous := measure(false)
	identified := measure(true)
	t.Logf("allocations per call: %.2f anonymous, %.2f identified", anonymous, identified)
	if identified > anonymous+0.5 {
		t.Fatalf("an identified call allocates %.2f times, an anonymous one %.2f", identified, anonymous)
	}
}

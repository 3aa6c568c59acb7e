package conn

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/standbyd/standbyd/internal/protocol"
)

// fakePatchedPrimary plays a server patched as in the original idea: after
// startup it answers CopyData 'N'+3×int32 on an idle session with 3×int32.
// No real server can play this part (Debian's PostgreSQL is not patched).
// It records what it saw so the test can check the bytes on the wire.
type fakePatchedPrimary struct {
	hangUp   bool // close the connection on the first CopyData, as a crash would
	ln       net.Listener
	received chan []byte
	done     chan struct{}
}

func startFakePatchedPrimary(t *testing.T, hangUp bool) *fakePatchedPrimary {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakePatchedPrimary{hangUp: hangUp, ln: ln, received: make(chan []byte, 16), done: make(chan struct{})}
	go f.serve(t)
	t.Cleanup(func() {
		ln.Close()
		<-f.done
	})
	return f
}

func (f *fakePatchedPrimary) serve(t *testing.T) {
	defer close(f.done)
	c, err := f.ln.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	be := pgproto3.NewBackend(c, c)
	msg, err := be.ReceiveStartupMessage()
	if err != nil {
		t.Errorf("fake: startup: %v", err)
		return
	}
	if _, ok := msg.(*pgproto3.StartupMessage); !ok {
		t.Errorf("fake: expected StartupMessage, got %T", msg)
		return
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.20"})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 4242, SecretKey: []byte{0, 0, 0, 1}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := be.Flush(); err != nil {
		return
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			data := append([]byte(nil), m.Data...)
			f.received <- data
			if f.hangUp || len(data) != 13 || data[0] != 'N' {
				return
			}
			out := make([]byte, 12)
			for i := 0; i < 3; i++ {
				v := int32(binary.BigEndian.Uint32(data[1+4*i:]))
				binary.BigEndian.PutUint32(out[4*i:], uint32(v+300))
			}
			be.Send(&pgproto3.CopyData{Data: out})
			if err := be.Flush(); err != nil {
				return
			}
		case *pgproto3.Terminate:
			return
		default:
			t.Errorf("fake: unexpected %T", msg)
			return
		}
	}
}

func fakeConfig(t *testing.T, addr net.Addr) *pgconn.Config {
	t.Helper()
	a := addr.(*net.TCPAddr)
	cfg, err := pgconn.ParseConfig("host=127.0.0.1 user=standbyd dbname=postgres sslmode=disable port=" + strconv.Itoa(a.Port))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// claim: protocol.raw-mode
func TestRawModeN(t *testing.T) {
	f := startFakePatchedPrimary(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// No hello: the system identifier cannot be checked, so an expected
	// one (which no hello could match) does not stop the session.
	s, err := Dial(ctx, DialOptions{Config: fakeConfig(t, f.ln.Addr()), Mode: ModeRaw, ExpectSystemIdentifier: 12345})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if s.Hello().Version != 0 || s.Hello().SystemIdentifier != 0 {
		t.Fatalf("raw mode has a hello: %+v", s.Hello())
	}
	if s.Pipelined() {
		t.Fatal("a raw-mode session is pipelined, want one request at a time")
	}
	reply, err := s.Call(ctx, protocol.OpN, protocol.AppendN(nil, [3]int32{100, 200, 300}))
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	got, err := protocol.ParseN(reply)
	if err != nil {
		t.Fatal(err)
	}
	if got != [3]int32{400, 500, 600} {
		t.Fatalf("N 100 200 300 = %v, want [400 500 600]", got)
	}
	wire := <-f.received // the first bytes on the channel: no hello before
	want := []byte{'N', 0, 0, 0, 100, 0, 0, 0, 200, 0, 0, 1, 44}
	if string(wire) != string(want) {
		t.Fatalf("raw frame on the wire = % x, want % x", wire, want)
	}

	if _, err := s.Call(ctx, protocol.OpPing, nil); err == nil {
		t.Fatal("ping in raw mode: want an error, got none")
	}
	if s.Err() != nil {
		t.Fatalf("a refused local call must not end the session: %v", s.Err())
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func TestRawModeServerGoesAway(t *testing.T) {
	f := startFakePatchedPrimary(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := Dial(ctx, DialOptions{Config: fakeConfig(t, f.ln.Addr()), Mode: ModeRaw})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer s.Close(ctx)
	_, err = s.Call(ctx, protocol.OpN, protocol.AppendN(nil, [3]int32{1, 2, 3}))
	var ce *CallError
	if !errors.As(err, &ce) || !ce.OutcomeUnknown() {
		t.Fatalf("want an outcome-unknown CallError, got %v", err)
	}
	if s.Err() == nil {
		t.Fatal("session should be over after EOF")
	}
}

package localnode

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/standbyd/standbyd/internal/pgcontrol"
)

// fakeNode answers the watcher's query as a node would: in recovery or
// not, and a timeline. A protocol-level fake, for the combination rules;
// the e2e tests ask real servers.
type fakeNode struct {
	ln         net.Listener
	inRecovery atomic.Bool
	timeline   atomic.Uint32
	wg         sync.WaitGroup
}

func startFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNode{ln: ln}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() { defer f.wg.Done(); f.serve(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f
}

func (f *fakeNode) serve(c net.Conn) {
	defer c.Close()
	be := pgproto3.NewBackend(c, c)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		if _, ok := msg.(*pgproto3.Query); !ok {
			return
		}
		rec := "f"
		if f.inRecovery.Load() {
			rec = "t"
		}
		be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
			{Name: []byte("pg_is_in_recovery"), DataTypeOID: 16, Format: 0},
			{Name: []byte("timeline"), DataTypeOID: 23, Format: 0}}})
		be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(rec), []byte(fmt.Sprint(f.timeline.Load()))}})
		be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		if be.Flush() != nil {
			return
		}
	}
}

func (f *fakeNode) conninfo() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", f.ln.Addr().(*net.TCPAddr).Port)
}

// Either source saying "not a standby" is enough; the connection decides
// alone when the files cannot be read; the timeline is the highest seen.
// claim: liveness.failover-local-connection
func TestSourcesCombined(t *testing.T) {
	f := startFakeNode(t)
	standbyDir := dataDir(t, true, pgcontrol.DBInArchiveRecovery, 1)
	promotedDir := dataDir(t, false, pgcontrol.DBInProduction, 1, "00000002.history")
	unreadable := t.TempDir()
	cases := []struct {
		name       string
		dir        string
		inRecovery bool
		tli        uint32
		role       Role
		timeline   uint32
	}{
		{"both say standby", standbyDir, true, 1, RoleStandby, 1},
		{"the server says promoted, standby.signal still there", standbyDir, false, 2, RolePrimary, 2},
		{"standby.signal gone, the server not out of recovery yet", promotedDir, true, 1, RolePrimary, 2},
		{"files unreadable: the server decides", unreadable, true, 3, RoleStandby, 3},
		{"files unreadable, the server promoted", unreadable, false, 4, RolePrimary, 4},
	}
	for _, c := range cases {
		f.inRecovery.Store(c.inRecovery)
		f.timeline.Store(c.tli)
		dir := c.dir
		w, err := NewWatcher(Options{DataDirectory: func() string { return dir }, Conninfo: f.conninfo()})
		if err != nil {
			t.Fatal(err)
		}
		n := w.Poll(context.Background())
		w.closeConn()
		if n.Role != c.role || n.Timeline != c.timeline || n.Source != "local connection" {
			t.Errorf("%s: %+v, want role %s timeline %d from the local connection", c.name, n, c.role, c.timeline)
		}
	}
}

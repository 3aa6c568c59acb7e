package e2e

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/standbyd/standbyd/internal/protocol"
	"github.com/standbyd/standbyd/internal/testcluster"
)

// Through the extended Query protocol the channel is entered and served:
// the Sync sent with the Execute is swallowed like any Sync in the channel,
// and the closing CommandComplete and ReadyForQuery come with the client's
// next Sync. A driver waiting for ReadyForQuery first (pgx's ExecParams)
// hangs until its own deadline, then closes the connection, which ends the
// backend.
// claim: protocol.extended-query
// claim: extension.extended-query
func TestExtendedProtocolEntersTheChannel(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{})

	t.Run("by hand", func(t *testing.T) {
		pc := connectTo(t, e, "")
		fe := pc.Frontend()
		fe.Send(&pgproto3.Parse{Query: "CALL standbyd.serve()"})
		fe.Send(&pgproto3.Bind{})
		fe.Send(&pgproto3.Describe{ObjectType: 'P'})
		fe.Send(&pgproto3.Execute{})
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		var seen []string
		for !strings.HasSuffix(strings.Join(seen, ","), "CopyBothResponse") {
			msg, err := pc.ReceiveMessage(ctxT(t, 10*time.Second))
			if err != nil {
				t.Fatalf("after %v: %v", seen, err)
			}
			seen = append(seen, strings.TrimPrefix(typeName(msg), "*pgproto3."))
		}
		if got := strings.Join(seen, ","); got != "ParseComplete,BindComplete,NoData,CopyBothResponse" {
			t.Fatalf("entering by the extended protocol: %s", got)
		}
		ch := &channel{t: t, pc: pc}
		r := ch.call(protocol.OpN, 1, protocol.AppendN(nil, [3]int32{1, 2, 3}))
		if n, err := protocol.ParseN(wantOK(t, r, "N")); err != nil || n != [3]int32{301, 302, 303} {
			t.Fatalf("N: %v %v", n, err)
		}
		fe.Send(&pgproto3.CopyDone{})
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		seen = nil
		for {
			msg, err := pc.ReceiveMessage(ctxT(t, 10*time.Second))
			if err != nil {
				t.Fatalf("after %v: %v", seen, err)
			}
			if cc, ok := msg.(*pgproto3.CommandComplete); ok {
				seen = append(seen, string(cc.CommandTag))
			} else {
				seen = append(seen, strings.TrimPrefix(typeName(msg), "*pgproto3."))
			}
			if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		if got := strings.Join(seen, ","); got != "CopyDone,CALL,ReadyForQuery" {
			t.Fatalf("closing: %s", got)
		}
		if _, err := pc.Exec(ctxT(t, 10*time.Second), "SELECT 1").ReadAll(); err != nil {
			t.Fatalf("the session after the channel: %v", err)
		}
	})

	t.Run("a driver waiting for ReadyForQuery", func(t *testing.T) {
		pc := connectTo(t, e, "application_name=extended")
		res := pc.ExecParams(ctxT(t, 3*time.Second), "CALL standbyd.serve()", nil, nil, nil, nil).Read()
		var te interface{ Timeout() bool }
		if res.Err == nil || !errors.As(res.Err, &te) || !te.Timeout() {
			t.Fatalf("ExecParams: %v, want the driver's own timeout", res.Err)
		}
		if !pc.IsClosed() {
			t.Fatal("the driver kept the connection after its timeout")
		}
		waitFor(t, 30*time.Second, "the backend to end", func() bool {
			out, err := e.PrimarySQL(ctxT(t, 10*time.Second), "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'extended'")
			return err == nil && out == "0"
		})
	})
}

// typeName is a message's type, for the sequence a test expects.
func typeName(v any) string { return fmt.Sprintf("%T", v) }

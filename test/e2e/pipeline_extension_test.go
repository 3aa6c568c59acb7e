package e2e

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/standbyd/standbyd/internal/protocol"
)

// helloVersion says hello offering versions 1 to max and returns the
// version the extension chose.
func (c *channel) helloVersion(id uint32, max uint16) uint16 {
	c.t.Helper()
	r := c.call(protocol.OpHello, id, protocol.HelloRequest{MinVersion: 1, MaxVersion: max, MaxFrameSize: 1 << 20, ClientName: "e2e"}.Append(nil))
	h, err := protocol.ParseHelloReply(r.Payload)
	if r.Err() != nil || err != nil {
		c.t.Fatalf("hello: %v %v", r.Err(), err)
	}
	return h.Version
}

// ending reads what the server sends after it was told to end: the
// goodbye frame if there is one (nil if not), then the FATAL.
func (c *channel) ending() (*protocol.Goodbye, *pgconn.PgError) {
	c.t.Helper()
	var g *protocol.Goodbye
	for {
		msg, err := c.pc.ReceiveMessage(ctxT(c.t, 10*time.Second))
		if err != nil {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				c.t.Fatalf("want a FATAL, got %v", err)
			}
			return g, pe
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if g != nil {
				c.t.Fatalf("a frame after the goodbye: %q", m.Data)
			}
			gb, err := protocol.ParseGoodbye(m.Data)
			if err != nil {
				c.t.Fatalf("a frame that is not a goodbye (%v): %q", err, m.Data)
			}
			g = &gb
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		default:
			c.t.Fatalf("unexpected %T", msg)
		}
	}
}

func terminate(t *testing.T, pid uint32) {
	t.Helper()
	if _, err := env.PrimarySQL(ctxT(t, 10*time.Second), fmt.Sprintf("SELECT pg_terminate_backend(%d)", pid)); err != nil {
		t.Fatal(err)
	}
}

// Version 2 on the real extension: requests written before any reply is
// read are answered in order; a termination ends the channel with a
// goodbye that names the last request read, then the FATAL.
// claim: protocol.goodbye-layout
// claim: protocol.pipeline-fifo
// claim: protocol.goodbye
// claim: protocol.goodbye-when
func TestPipelineExtensionOrderAndGoodbye(t *testing.T) {
	needEnv(t)
	registerHandlers(t)

	t.Run("pipelined", func(t *testing.T) {
		ch := enter(t, superuser(t, "primary", ""))
		if v := ch.helloVersion(1, 2); v != 2 {
			t.Fatalf("hello chose version %d, want 2", v)
		}
		const n = 40
		for i := 0; i < n; i++ {
			if i%5 == 4 {
				ch.send(protocol.AppendRequest(nil, protocol.OpPing, uint32(10+i), nil))
				continue
			}
			ch.send(protocol.AppendRequest(nil, opEcho, uint32(10+i), []byte("p"+strconv.Itoa(i))))
		}
		for i := 0; i < n; i++ {
			r := ch.reply()
			if r.ID != uint32(10+i) || r.Err() != nil {
				t.Fatalf("reply %d: id %d, %v; want id %d", i, r.ID, r.Err(), 10+i)
			}
			if i%5 != 4 && string(r.Payload) != "echo:p"+strconv.Itoa(i) {
				t.Fatalf("reply %d: %q", i, r.Payload)
			}
		}
		ch.finish()
	})

	t.Run("terminated during a handler", func(t *testing.T) {
		pc := superuser(t, "primary", "")
		ch := enter(t, pc)
		ch.helloVersion(1, 2)
		ch.send(protocol.AppendRequest(nil, opNap, 100, []byte("5")))
		ch.send(protocol.AppendRequest(nil, protocol.OpPing, 101, nil))
		waitFor(t, 10*time.Second, "the nap to run", func() bool {
			ev, _ := env.PrimarySQL(context.Background(), fmt.Sprintf("SELECT wait_event FROM pg_stat_activity WHERE pid = %d", pc.PID()))
			return ev == "PgSleep"
		})
		terminate(t, pc.PID())
		g, fatal := ch.ending()
		if g == nil || g.LastID != 100 || g.SQLState != "57P01" {
			t.Fatalf("goodbye %+v; want last id 100 (the nap, read; the ping after it never read), 57P01", g)
		}
		if fatal.Severity != "FATAL" || fatal.Code != "57P01" {
			t.Fatalf("after the goodbye: %v", fatal)
		}
	})

	t.Run("terminated while idle", func(t *testing.T) {
		pc := superuser(t, "primary", "")
		ch := enter(t, pc)
		ch.helloVersion(1, 2)
		if r := ch.call(protocol.OpPing, 2, nil); r.Err() != nil {
			t.Fatal(r.Err())
		}
		terminate(t, pc.PID())
		g, fatal := ch.ending()
		if g == nil || g.LastID != 2 || g.SQLState != "57P01" || g.Message == "" {
			t.Fatalf("goodbye %+v; want last id 2, 57P01 and a message", g)
		}
		if len(g.Message) > 200 || strings.IndexFunc(g.Message, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
			t.Fatalf("goodbye message %q: want printable ASCII, at most 200 bytes", g.Message)
		}
		if fatal.Code != "57P01" {
			t.Fatalf("after the goodbye: %v", fatal)
		}
	})

	t.Run("version 1 has no goodbye", func(t *testing.T) {
		pc := superuser(t, "primary", "")
		ch := enter(t, pc)
		if v := ch.helloVersion(1, 1); v != 1 {
			t.Fatalf("hello chose version %d, want 1", v)
		}
		terminate(t, pc.PID())
		if g, fatal := ch.ending(); g != nil || fatal.Code != "57P01" {
			t.Fatalf("version 1: goodbye %+v, %v; want the FATAL alone", g, fatal)
		}
	})
}

package api

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/standbyd/standbyd/internal/api/fastproto"
	"github.com/standbyd/standbyd/internal/protocol"
)

// A caller that closes its connection with calls in flight has them
// withdrawn, and the daemon logs it gone, with its SQL session.
// claim: api.fast-closed-in-flight
func TestFastPathCallerGoneWithdrawsItsCalls(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	g := newGate()
	sock := serveCfg(t, ServerConfig{Logger: zap.New(core), DefaultTimeout: 10 * time.Second, MaxTimeout: 10 * time.Second}, g)
	c, _ := fastDialV(t, sock, fastproto.Version2)
	buf := fastproto.AppendIdentify(nil, fastproto.Identify{PID: 99, Role: "app", Database: "shop"})
	buf = fastproto.AppendRequest(buf, fastproto.Request{ID: 1, Op: protocol.OpN, Payload: []byte("wait")})
	buf = fastproto.AppendRequest(buf, fastproto.Request{ID: 2, Op: protocol.OpN, Payload: []byte("wait")})
	_, _ = c.Write(buf)
	<-g.arrived
	<-g.arrived
	c.Close()
	for range 2 {
		select {
		case <-g.cancelled:
		case <-time.After(10 * time.Second):
			t.Fatal("a call of the closed connection was not withdrawn")
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for logs.FilterMessageSnippet("call withdrawn").Len() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	gone := logs.FilterMessage("api fast path: caller gone with requests in flight").All()
	if len(gone) != 1 || gone[0].ContextMap()["in_flight"] != int32(2) || gone[0].ContextMap()["sql_pid"] != uint32(99) {
		t.Fatalf("caller gone: %v", logs.All())
	}
	for _, e := range logs.FilterMessageSnippet("call withdrawn").All() {
		if e.ContextMap()["sql_role"] != "app" {
			t.Fatalf("withdrawn: %v", e.ContextMap())
		}
	}
	if n := logs.FilterMessageSnippet("call withdrawn").Len(); n != 2 {
		t.Fatalf("%d calls withdrawn", n)
	}
}

// A caller that closes as soon as it has its reply has nothing in flight:
// it is not logged as gone with requests in flight.
// claim: api.fast-closed-in-flight
func TestFastPathCallerClosingAfterItsReplyIsNotGone(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	cfg := ServerConfig{Socket: filepath.Join(shortDir(t), "s"), SocketMode: 0o600, DefaultTimeout: time.Second, MaxTimeout: time.Second,
		MaxPayload: 64, Logger: zap.New(core)}
	srv, err := Listen(cfg, echoChannel())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve() }()
	defer func() { _ = srv.Shutdown(context.Background()); <-done }()
	for i := range 300 {
		c, _ := fastDialV(t, cfg.Socket, fastproto.Version2)
		_, _ = c.Write(fastproto.AppendRequest(nil, fastproto.Request{ID: uint32(i), Op: protocol.OpN}))
		readFrame(t, c)
		c.Close()
	}
	// Every connection's reader has seen its close.
	deadline := time.Now().Add(10 * time.Second)
	for {
		srv.fastMu.Lock()
		n := len(srv.fastConns)
		srv.fastMu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d fast connections still open", n)
		}
		time.Sleep(time.Millisecond)
	}
	if n := logs.FilterMessageSnippet("caller gone").Len(); n != 0 {
		t.Fatalf("%d callers that had their replies logged as gone with requests in flight", n)
	}
}

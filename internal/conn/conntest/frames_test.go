package conntest

import (
	"errors"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/protocol"
)

// What this package encodes, standbyd parses back unchanged.
func TestFramesRoundTrip(t *testing.T) {
	req, err := ParseRequest(protocol.AppendRequest(nil, protocol.OpN, 7, []byte{1, 2, 3}))
	if err != nil || req.Op != protocol.OpN || req.ID != 7 || string(req.Payload) != "\x01\x02\x03" {
		t.Fatalf("request: %+v, %v", req, err)
	}
	if _, err := ParseRequest(AppendReply(nil, protocol.OpN, 1, protocol.StatusOK, nil)); !errors.Is(err, protocol.ErrWrongKind) {
		t.Fatalf("a reply parsed as a request: %v", err)
	}
	r, err := protocol.ParseReply(AppendErrorReply(nil, protocol.OpN, 3, "22003", "out of range"))
	var se *protocol.ServerError
	if err != nil || r.ID != 3 || !errors.As(r.Err(), &se) || se.SQLState != "22003" || se.Message != "out of range" {
		t.Fatalf("error reply: %+v, %v", r, err)
	}
	h := protocol.HelloReply{Version: 1, InRecovery: true, ServerVersionNum: 150020, SystemIdentifier: 42, Timeline: 3,
		MaxFrameSize: 4096, Ops: []protocol.OpInfo{{Op: protocol.OpPing, Builtin: true, Flags: protocol.OpFlagBuiltin, Name: "ping"}, {Op: 0x100, Name: "echo"}}}
	h2, err := protocol.ParseHelloReply(AppendHelloReply(nil, h))
	if err != nil || h2.SystemIdentifier != 42 || h2.Timeline != 3 || !h2.InRecovery || len(h2.Ops) != 2 || h2.Ops[0] != h.Ops[0] || h2.Ops[1] != h.Ops[1] {
		t.Fatalf("hello: %+v, %v", h2, err)
	}
	now := time.UnixMicro(time.Now().UnixMicro())
	p, err := protocol.ParsePingReply(AppendPingReply(nil, protocol.PingReply{ServerTime: now, WALPosition: 1 << 40, Timeline: 2}))
	if err != nil || !p.ServerTime.Equal(now) || p.WALPosition != 1<<40 || p.Timeline != 2 {
		t.Fatalf("ping: %+v, %v", p, err)
	}
	w, err := protocol.ParseWALReport(AppendWALReport(nil, protocol.WALReport{Timeline: 4, Flush: 99, LastReplayedCommit: now}))
	if err != nil || w.Timeline != 4 || w.Flush != 99 || !w.LastReplayedCommit.Equal(now) {
		t.Fatalf("wal: %+v, %v", w, err)
	}
}

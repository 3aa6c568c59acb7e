package conn

import (
	"context"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/conn/conntest"
	"github.com/standbyd/standbyd/internal/protocol"
)

// BenchmarkSessionCall is one caller's round trip on a session to the fake
// primary: what the session adds per call (deadline watcher, idle check).
func BenchmarkSessionCall(b *testing.B) {
	p := conntest.Start(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Dial(ctx, DialOptions{Config: p.Config()})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Close(context.Background()) }()
	payload := protocol.AppendN(nil, [3]int32{1, 2, 3})
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		if _, err := s.Call(cctx, protocol.OpN, payload); err != nil {
			b.Fatal(err)
		}
		ccancel()
	}
}

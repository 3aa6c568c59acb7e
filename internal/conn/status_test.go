package conn

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/standbyd/standbyd/internal/conn/conntest"
)

// With several sessions the status is ready while one is, describes that
// one, and lists every slot with its own state and error.
// claim: api.status
func TestStatusAggregatesSlots(t *testing.T) {
	p := conntest.Start(t)
	var n atomic.Int32
	cfg := fastConfig(p)
	cfg.Sessions = 2
	cfg.Dial = func(ctx context.Context, connected func()) (*Session, error) {
		if n.Add(1) == 1 {
			return Dial(ctx, DialOptions{Config: p.Config(), OnConnected: connected})
		}
		return nil, errors.New("second slot refused")
	}
	sup := run(t, cfg)
	waitFor(t, "one slot ready and one failing", func() bool {
		st := sup.Status()
		return st.Ready == 1 && (st.Sessions[0].LastError != "" || st.Sessions[1].LastError != "")
	})
	st := sup.Status()
	if st.State != StateReady || len(st.Sessions) != 2 || st.BackendPID == 0 || st.LastError != "" {
		t.Fatalf("status %+v: want ready, two slots, the ready one described", st)
	}
	var failing SessionStatus
	for _, s := range st.Sessions {
		if s.State != StateReady {
			failing = s
		}
	}
	if !strings.Contains(failing.LastError, "second slot refused") || failing.BackendPID != 0 {
		t.Fatalf("failing slot %+v", failing)
	}
}

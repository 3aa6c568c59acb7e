package replay

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNewRefusesBadConninfoWithoutShowingIt(t *testing.T) {
	_, err := New("host=h password=Geheim-7 port=notaport", time.Second, zap.NewNop(), func(uint64, bool) {})
	if err == nil || !strings.Contains(err.Error(), "standby.conninfo") || strings.Contains(err.Error(), "Geheim-7") {
		t.Fatalf("error %v", err)
	}
	if _, err := New("host=h", 0, zap.NewNop(), func(uint64, bool) {}); err == nil {
		t.Fatal("a zero interval was accepted")
	}
}

// An unreachable standby: every reading says unknown, the log says so once.
func TestUnreachableStandbyIsUnknownAndLoggedOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close() // nothing listens there now: connection refused
	core, logs := observer.New(zapcore.InfoLevel)
	var readings []bool
	w, err := New("host=127.0.0.1 port="+strconv.Itoa(addr.Port)+" user=u dbname=d connect_timeout=2", 20*time.Millisecond, zap.New(core),
		func(_ uint64, ok bool) { readings = append(readings, ok) })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	w.Run(ctx) // returns when ctx ends
	if len(readings) < 3 {
		t.Fatalf("%d readings in 1 s at 20 ms", len(readings))
	}
	for i, ok := range readings {
		if ok {
			t.Fatalf("reading %d says known", i)
		}
	}
	if n := logs.FilterMessageSnippet("replay position unknown").Len(); n != 1 {
		t.Fatalf("logged %d times, want once", n)
	}
}

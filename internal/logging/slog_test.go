package logging

import (
	"context"
	"log/slog"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestSlogWritesThroughZap(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	l := Slog(zap.New(core).Named("http"))
	l.Debug("below the level")
	l.With("component", "web").WithGroup("tls").Warn("handshake failed", "remote", "10.0.0.9:4711")
	l.Error("listener", "err", "closed")
	if logs.Len() != 2 {
		t.Fatalf("%d entries, want 2 (debug filtered)", logs.Len())
	}
	e := logs.All()[0]
	if e.Level != zapcore.WarnLevel || e.Message != "handshake failed" || e.LoggerName != "http" {
		t.Fatalf("entry %v %q", e.Level, e.Message)
	}
	fields := e.ContextMap()
	tls, _ := fields["tls"].(map[string]any)
	if fields["component"] != "web" || tls["remote"] != "10.0.0.9:4711" {
		t.Fatalf("fields %v", fields)
	}
	if logs.All()[1].Level != zapcore.ErrorLevel {
		t.Fatal("error level not kept")
	}
	if ctx := context.Background(); !l.Enabled(ctx, slog.LevelInfo) || l.Enabled(ctx, slog.LevelDebug) {
		t.Fatal("Enabled does not follow zap's level")
	}
}

package e2e

import (
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/conn"
	"github.com/standbyd/standbyd/internal/conninfo"
	"github.com/standbyd/standbyd/internal/pgconf"
	"github.com/standbyd/standbyd/internal/protocol"
)

// Before entering, the session lowers statement_timeout to the reply
// timeout less a margin, unless the role already set a shorter one: the
// channel's own setting (the setting op reads it) shows which.
// claim: liveness.statement-timeout-lowered
func TestStatementTimeoutCappedUnlessShorter(t *testing.T) {
	needEnv(t)
	cfg, err := pgconf.LoadDataDir(env.StandbyData, pgconf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := cfg.Get("primary_conninfo")
	res, err := conninfo.Parse(s.Value, conninfo.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	channelSetting := func() string {
		t.Helper()
		ctx := ctxT(t, 30*time.Second)
		sess, err := conn.Dial(ctx, conn.DialOptions{Config: res.Config, ClientName: "e2e",
			StatementTimeout: conn.StatementTimeoutFor(2 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close(ctx)
		out, err := sess.Call(ctx, protocol.OpSetting, []byte("statement_timeout"))
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	if got := channelSetting(); got != "1600ms" {
		t.Fatalf("statement_timeout of the channel: %s, want 1600ms (2s less a fifth)", got)
	}
	primarySQL(t, "ALTER ROLE standbyd_repl SET statement_timeout = '300ms'")
	t.Cleanup(func() { primarySQL(t, "ALTER ROLE standbyd_repl RESET statement_timeout") })
	if got := channelSetting(); got != "300ms" {
		t.Fatalf("statement_timeout of the channel with the role's 300ms: %s, want 300ms kept", got)
	}
	primarySQL(t, "ALTER ROLE standbyd_repl SET statement_timeout = '60s'")
	if got := channelSetting(); got != "1600ms" {
		t.Fatalf("statement_timeout of the channel with the role's 60s: %s, want 1600ms", got)
	}
}

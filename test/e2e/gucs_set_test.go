package e2e

import (
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/standbyd/standbyd/internal/protocol"
	"github.com/standbyd/standbyd/internal/testcluster"
)

// The settings are set with ALTER SYSTEM from a session that loaded the
// library (PostgreSQL 15 refuses it before), and max_frame_size per role:
// the role's channel announces it in hello.
// claim: extension.settings-how-to-set
func TestSettingsSetBySystemAndPerRole(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	exec := func(pc *pgconn.PgConn, sql string) error {
		_, err := pc.Exec(ctx, sql).ReadAll()
		return err
	}
	if testcluster.Major() == "15" {
		err := exec(connectTo(t, e, ""), "ALTER SYSTEM SET standbyd.idle_timeout = '30s'")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42704" {
			t.Fatalf("ALTER SYSTEM before LOAD on 15: %v, want 42704", err)
		}
	}
	admin := connectTo(t, e, "")
	for _, sql := range []string{"LOAD 'standbyd'", "ALTER SYSTEM SET standbyd.idle_timeout = '30s'", "SELECT pg_reload_conf()",
		"ALTER ROLE postgres SET standbyd.max_frame_size = '4MB'"} {
		if err := exec(admin, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	waitFor(t, 10*time.Second, "the reloaded idle_timeout", func() bool {
		out, err := e.PrimarySQL(ctx, "LOAD 'standbyd'; SELECT current_setting('standbyd.idle_timeout')")
		return err == nil && out == "30s"
	})
	ch := enter(t, connectTo(t, e, ""))
	r := ch.call(protocol.OpHello, 1, protocol.HelloRequest{MinVersion: 1, MaxVersion: 1}.Append(nil))
	h, err := protocol.ParseHelloReply(wantOK(t, r, "hello"))
	if err != nil || h.MaxFrameSize != 4<<20 {
		t.Fatalf("hello of the role's channel: max frame %d, %v; want 4MB", h.MaxFrameSize, err)
	}
	ch.finish()
}
